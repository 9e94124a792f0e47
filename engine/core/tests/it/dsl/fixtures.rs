//! One invalid fixture per diagnostic code (`tests/fixtures/invalid/imx00NN-*.yaml`)
//! and its rendered diagnostics, exactly as `imx validate` prints them.

use expect_test::expect;

use super::check_fixture;

#[test]
fn imx0001_yaml_syntax() {
    check_fixture(
        "imx0001-yaml-syntax",
        expect!["invalid/imx0001-yaml-syntax.yaml:5:11: error[IMX0001]: unclosed bracket '{'"],
    );
}

#[test]
fn imx0002_yaml_limit() {
    check_fixture(
        "imx0002-yaml-limit",
        expect![[r#"
        invalid/imx0002-yaml-limit.yaml:6:36: error[IMX0002]: alias replay limit exceeded: total_replayed_events=100001 > 100000
          hint: workflows are small documents; remove deep nesting and alias chains"#]],
    );
}

#[test]
fn imx0003_duplicate_key() {
    check_fixture(
        "imx0003-duplicate-key",
        expect![[r#"
        invalid/imx0003-duplicate-key.yaml:6:5: error[IMX0003]: duplicate key `timeout` in step `fetch`
          hint: first defined at line 5, column 5"#]],
    );
}

#[test]
fn imx0004_duplicate_step_id() {
    check_fixture(
        "imx0004-duplicate-step-id",
        expect![[r#"
        invalid/imx0004-duplicate-step-id.yaml:7:3: error[IMX0004]: duplicate step id `fetch`
          hint: the first step `fetch` is at line 3, column 3; rename one of them"#]],
    );
}

#[test]
fn imx0005_unknown_key() {
    check_fixture(
        "imx0005-unknown-key",
        expect![[r#"
        invalid/imx0005-unknown-key.yaml:2:1: error[IMX0005]: unknown key `descripton` in the workflow
          hint: did you mean `description`?
        invalid/imx0005-unknown-key.yaml:7:5: error[IMX0005]: unknown key `need` in step `pack`
          hint: did you mean `needs`?
        invalid/imx0005-unknown-key.yaml:9:14: error[IMX0005]: unknown key `max_atempts` in `retry` of step `pack`
          hint: did you mean `max_attempts`?"#]],
    );
}

#[test]
fn imx0006_missing_key() {
    check_fixture(
        "imx0006-missing-key",
        expect![[r#"
        invalid/imx0006-missing-key.yaml:1:1: error[IMX0006]: the workflow is missing the required key `name`
        invalid/imx0006-missing-key.yaml:3:3: error[IMX0006]: step `fetch` is missing the required key `uses`"#]],
    );
}

#[test]
fn imx0007_wrong_type() {
    check_fixture(
        "imx0007-wrong-type",
        expect![[r#"
        invalid/imx0007-wrong-type.yaml:2:14: error[IMX0007]: `description` must be a string, found a list
        invalid/imx0007-wrong-type.yaml:6:24: error[IMX0007]: `continue_on_error` must be `true` or `false`, found a string
        invalid/imx0007-wrong-type.yaml:9:12: error[IMX0007]: `needs` must be a list of step ids, found a mapping"#]],
    );
}

#[test]
fn imx0008_invalid_name() {
    check_fixture(
        "imx0008-invalid-name",
        expect![[r#"
        invalid/imx0008-invalid-name.yaml:1:7: error[IMX0008]: the workflow name `Order Fulfilment` must match `[a-z0-9][a-z0-9_.-]*`
          hint: use lowercase letters, digits, `_`, `.` and `-`, e.g. `order-fulfilment`"#]],
    );
}

#[test]
fn imx0009_invalid_step_id() {
    check_fixture(
        "imx0009-invalid-step-id",
        expect![[r#"
        invalid/imx0009-invalid-step-id.yaml:3:3: error[IMX0009]: step id `fetch-order` must match `[a-z][a-z0-9_]*`
          hint: templates read steps as `steps.<id>`, where `-` or `.` would not parse; try `fetch_order`
        invalid/imx0009-invalid-step-id.yaml:5:3: error[IMX0009]: step id `Pack` must match `[a-z][a-z0-9_]*`
          hint: templates read steps as `steps.<id>`, where `-` or `.` would not parse; try `pack`"#]],
    );
}

#[test]
fn imx0010_unknown_step_kind() {
    check_fixture(
        "imx0010-unknown-step-kind",
        expect![[r#"
        invalid/imx0010-unknown-step-kind.yaml:4:11: error[IMX0010]: unknown step kind `htp`
          hint: did you mean `http`?
        invalid/imx0010-unknown-step-kind.yaml:6:11: error[IMX0010]: unknown step kind `kafka`
          hint: known kinds: `noop`, `fail`, `sleep`, `http`, `exec`, `approval`, `workflow`, `agent`, `kafka.publish`"#]],
    );
}

#[test]
fn imx0011_invalid_with() {
    check_fixture(
        "imx0011-invalid-with",
        expect![[r#"
        invalid/imx0011-invalid-with.yaml:5:11: error[IMX0011]: `with` of step `fetch` (uses http) is missing the required key `url`
        invalid/imx0011-invalid-with.yaml:5:21: error[IMX0011]: `with` of step `fetch` (uses http): unknown HTTP method `get`
          hint: write `GET`
        invalid/imx0011-invalid-with.yaml:5:26: error[IMX0011]: unknown key `uri` in `with` of step `fetch` (uses http)
          hint: did you mean `url`?
        invalid/imx0011-invalid-with.yaml:6:3: error[IMX0011]: step `wait` (uses sleep) needs `with` with `duration`
        invalid/imx0011-invalid-with.yaml:10:22: error[IMX0011]: `with` of step `run` (uses exec): `command` must be a list of strings, found a string
          hint: write the program and its arguments as a list: `command: [echo, hello]`
        invalid/imx0011-invalid-with.yaml:13:19: error[IMX0011]: `with` of step `child` (uses workflow): `Shipping` is not a workflow name (`[a-z0-9][a-z0-9_.-]*`)"#]],
    );
}

#[test]
fn imx0012_unknown_need() {
    check_fixture(
        "imx0012-unknown-need",
        expect![[r#"
        invalid/imx0012-unknown-need.yaml:6:13: error[IMX0012]: step `pack` needs `fech`, which is not a step
          hint: did you mean `fetch`?
        invalid/imx0012-unknown-need.yaml:6:19: error[IMX0012]: step `pack` needs `ship`, which is not a step
          hint: steps are: `fetch`, `pack`"#]],
    );
}

#[test]
fn imx0013_cycle() {
    check_fixture(
        "imx0013-cycle",
        expect![[r#"
        invalid/imx0013-cycle.yaml:4:13: error[IMX0013]: `needs` forms a cycle: a -> c -> b -> a
          hint: a step cannot wait for itself; remove one of these `needs` entries
        invalid/imx0013-cycle.yaml:13:13: error[IMX0013]: `needs` forms a cycle: d -> d
          hint: a step cannot wait for itself; remove one of these `needs` entries"#]],
    );
}

#[test]
fn imx0014_invalid_trigger_rule() {
    check_fixture(
        "imx0014-invalid-trigger-rule",
        expect![[r#"
        invalid/imx0014-invalid-trigger-rule.yaml:7:19: error[IMX0014]: unknown trigger rule `all_finished`
          hint: expected one of: `all_success`, `all_done`, `one_failed`, `none_failed`"#]],
    );
}

#[test]
fn imx0015_invalid_duration() {
    check_fixture(
        "imx0015-invalid-duration",
        expect![[r#"
            invalid/imx0015-invalid-duration.yaml:2:10: error[IMX0015]: invalid `timeout`: `1 hour` has a number without a unit
              hint: write a number followed by d, h, m, s or ms, e.g. `30s` or `1h30m`
            invalid/imx0015-invalid-duration.yaml:4:12: error[IMX0015]: `defaults.timeout` must be a duration with a unit, found the number 30
              hint: write `30s` for seconds or `30ms` for milliseconds
            invalid/imx0015-invalid-duration.yaml:8:23: error[IMX0015]: invalid `duration`: `5x` has an unknown unit `x`
              hint: write a number followed by d, h, m, s or ms, e.g. `30s` or `1h30m`
            invalid/imx0015-invalid-duration.yaml:11:14: error[IMX0015]: invalid `timeout`: `30s1h`: units must go from largest to smallest, each once (d, h, m, s, ms)
              hint: write a number followed by d, h, m, s or ms, e.g. `30s` or `1h30m`"#]],
    );
}

#[test]
fn imx0016_invalid_retry() {
    check_fixture(
        "imx0016-invalid-retry",
        expect![[r#"
        invalid/imx0016-invalid-retry.yaml:3:26: error[IMX0016]: `max_attempts` is 0; it must be between 1 and 100
          hint: 1 means a single attempt, no retry
        invalid/imx0016-invalid-retry.yaml:3:38: error[IMX0016]: `backoff` is `linear`; it must be `fixed` or `exponential`
        invalid/imx0016-invalid-retry.yaml:7:12: error[IMX0016]: `max_interval` (60000 ms) is shorter than `initial_interval` (300000 ms)
          hint: raise `max_interval` or lower `initial_interval`
        invalid/imx0016-invalid-retry.yaml:7:26: error[IMX0016]: `multiplier` is 0.5; it must be between 1.0 and 10.0
        invalid/imx0016-invalid-retry.yaml:7:39: error[IMX0016]: `jitter` is 2; it must be between 0.0 and 1.0"#]],
    );
}

#[test]
fn imx0017_invalid_cron() {
    check_fixture(
        "imx0017-invalid-cron",
        expect![[r#"
            invalid/imx0017-invalid-cron.yaml:3:11: error[IMX0017]: cron schedule `0 2 * * *` has 5 fields; schedules start with a seconds field
              hint: prepend the seconds: `0 0 2 * * *`
            invalid/imx0017-invalid-cron.yaml:4:11: error[IMX0017]: invalid cron schedule `0 0 25 * * *`: Hours must be less than 23. ('25' specified.)
            invalid/imx0017-invalid-cron.yaml:5:11: error[IMX0017]: cron schedule `every day` has 2 fields; expected 6 or 7
              hint: sec min hour day-of-month month day-of-week [year], e.g. `0 0 2 * * *`"#]],
    );
}

#[test]
fn imx0018_unknown_timezone() {
    check_fixture(
        "imx0018-unknown-timezone",
        expect![[r#"
        invalid/imx0018-unknown-timezone.yaml:4:15: error[IMX0018]: unknown timezone `Europe/Berln`
          hint: did you mean `Europe/Berlin`?"#]],
    );
}

#[test]
fn imx0019_invalid_input_schema() {
    check_fixture(
        "imx0019-invalid-input-schema",
        expect![[r#"
        invalid/imx0019-invalid-input-schema.yaml:4:13: error[IMX0019]: `input` is not a valid JSON Schema at `/required`: "order_id" is not of type "array"
        invalid/imx0019-invalid-input-schema.yaml:6:23: error[IMX0019]: `input` is not a valid JSON Schema at `/properties/order_id/type`: "text" is not valid under any of the schemas listed in the 'anyOf' keyword"#]],
    );
}

#[test]
fn imx0020_template_syntax() {
    check_fixture(
        "imx0020-template-syntax",
        expect![
            "invalid/imx0020-template-syntax.yaml:5:18: error[IMX0020]: invalid template `https://example.test/{{ input.order_id }`: syntax error: unexpected `}`, expected end of variable block"
        ],
    );
}

#[test]
fn imx0021_expression_syntax() {
    check_fixture(
        "imx0021-expression-syntax",
        expect![[r#"
            invalid/imx0021-expression-syntax.yaml:7:9: error[IMX0021]: invalid `if` expression `{{ steps.fetch.output.paid == false }}`: syntax error: unexpected `}`, expected `:`
              hint: `if` is a bare expression: drop the `{{ }}`"#]],
    );
}

#[test]
fn imx0022_unknown_scope_root() {
    check_fixture(
        "imx0022-unknown-scope-root",
        expect![[r#"
            invalid/imx0022-unknown-scope-root.yaml:5:20: error[IMX0022]: `inputs.order_id`: `inputs` is not in scope
              hint: `inputs.order_id` (GitHub Actions and Kestra) is `input.order_id` in imx
            invalid/imx0022-unknown-scope-root.yaml:5:50: error[IMX0022]: `env.HOME`: `env` is not in scope
              hint: expected one of: `input`, `steps`, `run`, `vars`, `item`, `index`, `matrix`, `secrets`"#]],
    );
}

#[test]
fn imx0023_unknown_step_reference() {
    check_fixture(
        "imx0023-unknown-step-reference",
        expect![[r#"
        invalid/imx0023-unknown-step-reference.yaml:6:13: error[IMX0023]: `steps.fetch_order.output.tracking`: there is no step `fetch_order`
          hint: steps are: `fetch`"#]],
    );
}

#[test]
fn imx0024_step_not_upstream() {
    check_fixture(
        "imx0024-step-not-upstream",
        expect![[r#"
        invalid/imx0024-step-not-upstream.yaml:7:21: error[IMX0024]: step `charge` reads `steps.fetch.output.total`, but `fetch` is not guaranteed to finish before `charge`
          hint: add `fetch` to `needs` of `charge` (directly or through another step)
        invalid/imx0024-step-not-upstream.yaml:11:19: error[IMX0024]: step `pack` reads its own result `steps.pack.output`
        invalid/imx0024-step-not-upstream.yaml:11:51: error[IMX0024]: step `pack` reads all of `steps`; name the step it needs
          hint: write `steps.<id>.output`, with `<id>` listed (directly or transitively) in `needs`"#]],
    );
}

#[test]
fn imx0025_item_outside_for_each() {
    check_fixture(
        "imx0025-item-outside-for-each",
        expect![[r#"
            invalid/imx0025-item-outside-for-each.yaml:5:18: error[IMX0025]: `item.sku`: `item` is only in scope in `with` of a step with `for_each` or `matrix`
            invalid/imx0025-item-outside-for-each.yaml:5:46: error[IMX0025]: `index`: `index` is only in scope in `with` of a step with `for_each` or `matrix`"#]],
    );
}

#[test]
fn imx0026_unknown_run_field() {
    check_fixture(
        "imx0026-unknown-run-field",
        expect![[r#"
            invalid/imx0026-unknown-run-field.yaml:5:18: error[IMX0026]: `run.run_id`: `run` has no field `run_id`
              hint: expected one of: `id`, `workflow`, `attempt`, `started_at`, `status`, `error`, `trigger`"#]],
    );
}

#[test]
fn imx0027_unknown_step_field() {
    check_fixture(
        "imx0027-unknown-step-field",
        expect![[r#"
            invalid/imx0027-unknown-step-field.yaml:8:20: error[IMX0027]: `steps.fetch.outputs.items`: a step has `output`, `status` and `error`, not `outputs`
              hint: `steps.fetch.outputs.items` (GitHub Actions) is `steps.fetch.output.items` in imx"#]],
    );
}

#[test]
fn imx0028_invalid_trigger() {
    check_fixture(
        "imx0028-invalid-trigger",
        expect![[r#"
            invalid/imx0028-invalid-trigger.yaml:3:5: error[IMX0028]: a trigger has several kinds (`cron`, `kafka`); write one trigger per entry
            invalid/imx0028-invalid-trigger.yaml:5:28: error[IMX0028]: `secret_env` `shop-secret` is not an environment variable name
              hint: use letters, digits and `_`, e.g. `SHOP_WEBHOOK_SECRET`
            invalid/imx0028-invalid-trigger.yaml:6:5: error[IMX0005]: unknown key `schedule` in a trigger
              hint: expected one of: `cron`, `webhook`, `kafka`
            invalid/imx0028-invalid-trigger.yaml:6:5: error[IMX0028]: a trigger needs one of `cron`, `webhook` or `kafka`"#]],
    );
}

#[test]
fn imx0029_invalid_for_each() {
    check_fixture(
        "imx0029-invalid-for-each",
        expect![[r#"
            invalid/imx0029-invalid-for-each.yaml:5:5: error[IMX0029]: `max_parallel` only applies to a step with `for_each` or `matrix`
            invalid/imx0029-invalid-for-each.yaml:8:15: error[IMX0029]: `for_each` must be a template such as `{{ steps.fetch.output.items }}` or a list, found a string
            invalid/imx0029-invalid-for-each.yaml:9:19: error[IMX0029]: `max_parallel` is 0; it must be between 1 and 1000"#]],
    );
}

#[test]
fn imx0030_limit_exceeded() {
    check_fixture(
        "imx0030-limit-exceeded",
        expect![
            "invalid/imx0030-limit-exceeded.yaml:3:3: error[IMX0030]: step id `fetch_the_order_from_the_shop_then_check_that_it_is_complete_and_paid` is longer than the limit of 64 bytes"
        ],
    );
}

#[test]
fn imx0031_duplicate_need() {
    check_fixture(
        "imx0031-duplicate-need",
        expect![
            "invalid/imx0031-duplicate-need.yaml:6:20: warning[IMX0031]: `needs` lists `fetch` twice"
        ],
    );
}

#[test]
fn imx0032_trigger_input_invalid() {
    check_fixture(
        "imx0032-trigger-input-invalid",
        expect![[r#"
            invalid/imx0032-trigger-input-invalid.yaml:8:24: error[IMX0032]: the cron trigger's input does not match the `input` schema at `/order_id`: 42 is not of type "string"
            invalid/imx0032-trigger-input-invalid.yaml:9:5: error[IMX0032]: the cron trigger's input does not match the `input` schema: null is not of type "object"
              hint: give the trigger an `input:` that the schema accepts"#]],
    );
}

#[test]
fn imx0035_template_not_allowed() {
    check_fixture(
        "imx0035-template-not-allowed",
        expect![[r#"
        invalid/imx0035-template-not-allowed.yaml:3:10: error[IMX0035]: `timeout` is a template; templates are not allowed here
          hint: `timeout` is read when the workflow is registered, before any run exists: write the value itself
        invalid/imx0035-template-not-allowed.yaml:7:14: error[IMX0015]: `timeout` `PT1H30M` is an ISO-8601 duration
          hint: imx writes it `1h30m`
        invalid/imx0035-template-not-allowed.yaml:8:28: error[IMX0035]: `max_attempts` is a template; templates are not allowed here
          hint: `max_attempts` is read when the workflow is registered, before any run exists: write the value itself
        invalid/imx0035-template-not-allowed.yaml:8:70: error[IMX0015]: `initial_interval` `PT0.5S` is an ISO-8601 duration
          hint: imx writes it `500ms`
        invalid/imx0035-template-not-allowed.yaml:10:11: error[IMX0035]: `uses` is a template; templates are not allowed here
          hint: `uses` is read when the workflow is registered, before any run exists: write the value itself
        invalid/imx0035-template-not-allowed.yaml:11:13: error[IMX0035]: a `needs` entry is a template; templates are not allowed here
          hint: a `needs` entry is read when the workflow is registered, before any run exists: write the value itself
        invalid/imx0035-template-not-allowed.yaml:12:19: error[IMX0035]: `trigger_rule` is a template; templates are not allowed here
          hint: `trigger_rule` is read when the workflow is registered, before any run exists: write the value itself
        invalid/imx0035-template-not-allowed.yaml:15:14: error[IMX0015]: `timeout` `P1M` is not a duration imx reads
          hint: ISO-8601 durations are not read; write a number followed by d, h, m, s or ms (no months or years), e.g. `30d`
        invalid/imx0035-template-not-allowed.yaml:16:24: error[IMX0035]: `continue_on_error` is a template; templates are not allowed here
          hint: `continue_on_error` is read when the workflow is registered, before any run exists: write the value itself
        invalid/imx0035-template-not-allowed.yaml:18:19: error[IMX0035]: `max_parallel` is a template; templates are not allowed here
          hint: `max_parallel` is read when the workflow is registered, before any run exists: write the value itself"#]],
    );
}

#[test]
fn imx0038_invalid_var() {
    check_fixture(
        "imx0038-invalid-var",
        expect![[r#"
        invalid/imx0038-invalid-var.yaml:3:3: error[IMX0038]: `vars` name `Region-Name` must match `[a-z][a-z0-9_]*` (at most 64 bytes)
          hint: templates read it as `vars.<name>`, where `-` or `.` would not parse; try `region_name`
        invalid/imx0038-invalid-var.yaml:4:13: error[IMX0022]: `steps.a.output`: `vars` are rendered once when the run starts, where only `input` and `run` are in scope
          hint: read it in the step that needs it instead
        invalid/imx0038-invalid-var.yaml:10:12: error[IMX0022]: `vars.greting`: there is no var `greting`
          hint: did you mean `greeting`?"#]],
    );
}

#[test]
fn imx0039_finally_need() {
    check_fixture(
        "imx0039-finally-need",
        expect![[r#"
        invalid/imx0039-finally-need.yaml:5:20: error[IMX0039]: step `ship` needs `notify`, a `finally:` step
          hint: `finally:` steps run after every step under `steps:`, so none can wait for one
        invalid/imx0039-finally-need.yaml:7:19: error[IMX0024]: step `ship` reads `steps.cleanup.output`, but `finally:` steps run after every step under `steps:`
        invalid/imx0039-finally-need.yaml:10:13: error[IMX0039]: `finally:` step `cleanup` needs `build`, a step under `steps:`
          hint: `finally:` steps start after every step under `steps:` ended; drop the entry, and test how it ended with `if: steps.<id>.status == "failed"`
        invalid/imx0039-finally-need.yaml:16:3: error[IMX0004]: `finally:` step `build` has the id of a step under `steps:`
          hint: the step `build` is at line 3, column 3; step ids are shared by `steps` and `finally`, rename one of them
        invalid/imx0039-finally-need.yaml:18:12: error[IMX0024]: the run `output` reads `steps.cleanup.output`, but it is rendered before the `finally:` steps run"#]],
    );
}

#[test]
fn imx0040_invalid_matrix() {
    check_fixture(
        "imx0040-invalid-matrix",
        expect![[r#"
        invalid/imx0040-invalid-matrix.yaml:6:7: error[IMX0040]: matrix axis `node-version` must match `[a-z][a-z0-9_]*`
          hint: templates read it as `matrix.<axis>`, where `-` or `.` would not parse; try `node_version`
        invalid/imx0040-invalid-matrix.yaml:7:13: error[IMX0040]: matrix axis `arch` must be a non-empty list or a template yielding one, found an empty list
        invalid/imx0040-invalid-matrix.yaml:9:24: error[IMX0040]: `exclude` names `nod`, which is not a matrix axis
          hint: axes: `os`
        invalid/imx0040-invalid-matrix.yaml:10:16: error[IMX0040]: `matrix.include` must be a list of mappings, found a string
        invalid/imx0040-invalid-matrix.yaml:11:16: error[IMX0007]: `fail_fast` must be `true` or `false`, found a string
        invalid/imx0040-invalid-matrix.yaml:13:21: error[IMX0040]: `matrix.oss`: the matrix has no axis `oss`
          hint: did you mean `os`?
        invalid/imx0040-invalid-matrix.yaml:15:5: error[IMX0029]: `fail_fast` only applies to a step with `for_each` or `matrix`
        invalid/imx0040-invalid-matrix.yaml:17:17: error[IMX0025]: `matrix.os`: `matrix` is only in scope in `with` of a step with `matrix`
        invalid/imx0040-invalid-matrix.yaml:20:5: error[IMX0040]: a step has `for_each` or `matrix`, not both
          hint: list the combinations in `for_each`, or move the list into a matrix axis"#]],
    );
}
