//! The DSL parser and validator: one invalid fixture per diagnostic code,
//! a fixture with many errors, the design's example workflow, durations,
//! defaults, and properties (never panics, bounded on hostile input).

use std::path::PathBuf;

use engine::core::dsl::{self, Code, Parsed, Severity};
use expect_test::{Expect, expect};

mod fuzz;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn read_fixture(relative: &str) -> String {
    let path = fixtures().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

/// Every diagnostic rendered as the CLI prints it, one per line (hints indented).
fn rendered(parsed: &Parsed, file: &str) -> String {
    parsed
        .diagnostics
        .iter()
        .map(|diagnostic| diagnostic.render(file))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Parses `fixtures/invalid/<name>.yaml` and compares the rendered diagnostics.
fn check_fixture(name: &str, expect: Expect) {
    let file = format!("invalid/{name}.yaml");
    let parsed = dsl::parse(&read_fixture(&file));
    assert_eq!(parsed.workflow.is_some(), !parsed.has_errors(), "{file}");
    expect.assert_eq(&rendered(&parsed, &file));
}

fn code_of_fixture(name: &str) -> Option<Code> {
    Code::ALL
        .iter()
        .copied()
        .find(|code| name.starts_with(&code.as_str().to_lowercase()))
}

#[test]
fn every_code_has_a_fixture_that_reports_it_and_a_page_in_errors_md() {
    let errors_md = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/errors.md"),
    )
    .expect("docs/errors.md");
    let mut names: Vec<String> = std::fs::read_dir(fixtures().join("invalid"))
        .expect("fixtures/invalid")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    for code in Code::ALL {
        let name = names
            .iter()
            .find(|name| code_of_fixture(name) == Some(*code))
            .unwrap_or_else(|| panic!("no fixture for {code}"));
        let parsed = dsl::parse(&read_fixture(&format!("invalid/{name}")));
        assert!(
            parsed
                .diagnostics
                .iter()
                .any(|diagnostic| diagnostic.code == *code),
            "{name} does not report {code}: {:#?}",
            parsed.diagnostics
        );
        assert!(
            errors_md.contains(&format!("## {code}")),
            "docs/errors.md has no section for {code}"
        );
    }
}

#[test]
fn codes_are_stable_and_distinct() {
    let texts: Vec<&str> = Code::ALL.iter().map(|code| code.as_str()).collect();
    let expected: Vec<String> = (1..=Code::ALL.len())
        .map(|number| format!("IMX{number:04}"))
        .collect();
    assert_eq!(texts, expected);
    assert!(Code::ALL.iter().all(|code| !code.summary().is_empty()));
}

#[test]
fn several_different_errors_are_all_reported() {
    let parsed = dsl::parse(&read_fixture("invalid/several-errors.yaml"));
    assert!(parsed.workflow.is_none());
    expect![[r#"
        several-errors.yaml:1:7: error[IMX0008]: the workflow name `Several_Errors` must match `[a-z0-9][a-z0-9_.-]*`
          hint: use lowercase letters, digits, `_`, `.` and `-`, e.g. `several_errors`
        several-errors.yaml:2:10: error[IMX0015]: `timeout` must be a duration with a unit, found the number 90
          hint: write `90s` for seconds or `90ms` for milliseconds
        several-errors.yaml:4:11: error[IMX0017]: cron schedule `*/5 * * * *` has 5 fields; schedules start with a seconds field
          hint: prepend the seconds: `0 */5 * * * *`
        several-errors.yaml:7:11: error[IMX0010]: unknown step kind `htpp`
          hint: did you mean `http`?
        several-errors.yaml:10:20: error[IMX0012]: step `charge` needs `refund`, which is not a step
          hint: steps are: `charge`, `fetch`, `pack`, `ship`
        several-errors.yaml:11:9: error[IMX0021]: invalid `if` expression `steps.fetch.output.body.status ==`: syntax error: unexpected end of input, expected expression
        several-errors.yaml:14:28: error[IMX0016]: `max_attempts` is 500; it must be between 1 and 100
          hint: 1 means a single attempt, no retry
        several-errors.yaml:18:11: error[IMX0011]: `with` of step `pack` (uses agent) is missing the required key `queue`
        several-errors.yaml:18:22: error[IMX0025]: `item`: `item` is only in scope in `with` of a step with `for_each`
        several-errors.yaml:20:19: error[IMX0013]: `needs` forms a cycle: ship -> ship
          hint: a step cannot wait for itself; remove one of these `needs` entries
        several-errors.yaml:23:19: error[IMX0014]: unknown trigger rule `always`
          hint: expected one of: `all_success`, `all_done`, `one_failed`, `none_failed`"#]].assert_eq(&rendered(&parsed, "several-errors.yaml"));
    let mut codes: Vec<Code> = parsed
        .diagnostics
        .iter()
        .map(|diagnostic| diagnostic.code)
        .collect();
    codes.sort();
    codes.dedup();
    assert!(
        codes.len() >= 10,
        "only {} distinct codes: {codes:?}",
        codes.len()
    );
}

#[test]
fn the_design_example_parses_into_the_expected_model() {
    let parsed = dsl::parse(&read_fixture("valid/order-fulfilment.yaml"));
    assert_eq!(rendered(&parsed, "order-fulfilment.yaml"), "");
    let workflow = parsed.workflow.expect("a workflow");
    let canonical = serde_json_canonicalizer::to_string(&workflow).expect("canonical JSON");
    let tree: serde_json::Value = serde_json::from_str(&canonical).expect("JSON");
    expect![[r#"
        {
          "description": "Charge, pack and ship one order",
          "input": {
            "properties": {
              "order_id": {
                "type": "string"
              }
            },
            "required": [
              "order_id"
            ],
            "type": "object"
          },
          "name": "order-fulfilment",
          "output": {
            "tracking": "{{ steps.ship.output.tracking }}"
          },
          "steps": {
            "approve": {
              "id": "approve",
              "needs": [
                "charge",
                "pack"
              ],
              "retry": {
                "backoff": "exponential",
                "initial_interval_ms": 1000,
                "jitter": 0,
                "max_attempts": 3,
                "max_interval_ms": 60000,
                "multiplier": 2
              },
              "timeout_ms": 30000,
              "uses": "approval",
              "with": {
                "message": "Ship order {{ input.order_id }}?",
                "role": "finance"
              }
            },
            "charge": {
              "id": "charge",
              "if": "steps.fetch.output.body.status == \"unpaid\"",
              "needs": [
                "fetch"
              ],
              "retry": {
                "backoff": "exponential",
                "initial_interval_ms": 1000,
                "jitter": 0,
                "max_attempts": 5,
                "max_interval_ms": 60000,
                "multiplier": 2
              },
              "timeout_ms": 30000,
              "uses": "http",
              "with": {
                "json": {
                  "order": "{{ input.order_id }}"
                },
                "method": "POST",
                "url": "https://pay.example/charge"
              }
            },
            "cleanup": {
              "id": "cleanup",
              "needs": [
                "ship"
              ],
              "retry": {
                "backoff": "exponential",
                "initial_interval_ms": 1000,
                "jitter": 0,
                "max_attempts": 3,
                "max_interval_ms": 60000,
                "multiplier": 2
              },
              "timeout_ms": 30000,
              "trigger_rule": "all_done",
              "uses": "noop"
            },
            "fetch": {
              "id": "fetch",
              "retry": {
                "backoff": "exponential",
                "initial_interval_ms": 1000,
                "jitter": 0,
                "max_attempts": 3,
                "max_interval_ms": 60000,
                "multiplier": 2
              },
              "timeout_ms": 30000,
              "uses": "http",
              "with": {
                "method": "GET",
                "url": "https://shop.example/orders/{{ input.order_id }}"
              }
            },
            "pack": {
              "for_each": {
                "items": "{{ steps.fetch.output.body.items }}",
                "max_parallel": 16
              },
              "id": "pack",
              "needs": [
                "fetch"
              ],
              "retry": {
                "backoff": "exponential",
                "initial_interval_ms": 1000,
                "jitter": 0,
                "max_attempts": 3,
                "max_interval_ms": 60000,
                "multiplier": 2
              },
              "timeout_ms": 30000,
              "uses": "agent",
              "with": {
                "payload": "{{ item }}",
                "queue": "warehouse"
              }
            },
            "ship": {
              "id": "ship",
              "needs": [
                "approve"
              ],
              "retry": {
                "backoff": "exponential",
                "initial_interval_ms": 1000,
                "jitter": 0,
                "max_attempts": 3,
                "max_interval_ms": 60000,
                "multiplier": 2
              },
              "timeout_ms": 30000,
              "uses": "workflow",
              "with": {
                "input": {
                  "order": "{{ input.order_id }}"
                },
                "name": "shipping"
              }
            }
          },
          "timeout_ms": 3600000,
          "triggers": [
            {
              "cron": {
                "input": {
                  "order_id": "nightly"
                },
                "schedule": "0 0 2 * * *",
                "timezone": "Europe/Berlin"
              }
            },
            {
              "webhook": {
                "secret_env": "SHOP_WEBHOOK_SECRET"
              }
            },
            {
              "kafka": {
                "topic": "orders"
              }
            }
          ]
        }"#]]
    .assert_eq(&serde_json::to_string_pretty(&tree).expect("pretty"));
    let order: Vec<&str> = workflow.topological_order();
    assert_eq!(
        order,
        ["fetch", "charge", "pack", "approve", "ship", "cleanup"]
    );
}

#[test]
fn render_prints_file_line_column_code_and_hint() {
    let parsed = dsl::parse("name: x\nsteps:\n  a:\n    uses: nop\n");
    let diagnostic = &parsed.diagnostics[0];
    assert_eq!(
        (diagnostic.line, diagnostic.column, diagnostic.severity),
        (4, 11, Severity::Error)
    );
    expect![[r#"
        workflows/x.yaml:4:11: error[IMX0010]: unknown step kind `nop`
          hint: did you mean `noop`?"#]]
    .assert_eq(&diagnostic.render("workflows/x.yaml"));
}

#[test]
fn warnings_alone_keep_the_workflow() {
    let parsed = dsl::parse(&read_fixture("invalid/imx0031-duplicate-need.yaml"));
    let workflow = parsed.workflow.expect("warnings do not reject a workflow");
    assert_eq!(workflow.steps["pack"].needs, ["fetch"]);
}

#[test]
fn durations() {
    let cases = [
        "500ms",
        "30s",
        "1m",
        "1h30m",
        "2d",
        "1d2h3m4s5ms",
        "0s",
        "365d",
        "366d",
        "",
        "30",
        "s",
        "1x",
        "1s1h",
        "1m1m",
        "99999999999999999999s",
        " 5s ",
    ];
    let results: Vec<String> = cases
        .iter()
        .map(|text| match dsl::duration::parse_duration_ms(text) {
            Ok(ms) => format!("{text:?} = {ms} ms"),
            Err(error) => format!("{text:?} ! {error}"),
        })
        .collect();
    expect![[r#"
        "500ms" = 500 ms
        "30s" = 30000 ms
        "1m" = 60000 ms
        "1h30m" = 5400000 ms
        "2d" = 172800000 ms
        "1d2h3m4s5ms" = 93784005 ms
        "0s" = 0 ms
        "365d" = 31536000000 ms
        "366d" ! `366d` is longer than the limit of 365d
        "" ! empty duration
        "30" ! `30` has a number without a unit
        "s" ! `s` has a unit without a number before `s`
        "1x" ! `1x` has an unknown unit `x`
        "1s1h" ! `1s1h`: units must go from largest to smallest, each once (d, h, m, s, ms)
        "1m1m" ! `1m1m`: units must go from largest to smallest, each once (d, h, m, s, ms)
        "99999999999999999999s" ! `99999999999999999999s` is longer than the limit of 365d
        " 5s " = 5000 ms"#]]
    .assert_eq(&results.join("\n"));
}

#[test]
fn defaults_merge_into_every_step_and_step_retry_overrides_field_by_field() {
    let source = r#"
name: merge
defaults:
  timeout: 30s
  retry: { max_attempts: 3, backoff: fixed, initial_interval: 2s, max_interval: 10s, jitter: 0.5 }
steps:
  plain:
    uses: noop
  own_timeout:
    uses: noop
    timeout: 5m
  own_retry:
    uses: noop
    retry: { max_attempts: 7, backoff: exponential }
"#;
    let workflow = dsl::parse(source).workflow.expect("valid");
    let lines: Vec<String> = workflow
        .steps
        .values()
        .map(|step| {
            format!(
                "{}: timeout_ms={:?} retry={:?}",
                step.id, step.timeout_ms, step.retry
            )
        })
        .collect();
    expect![[r#"
        own_retry: timeout_ms=Some(30000) retry=RetryPolicy { max_attempts: 7, backoff: Exponential, initial_interval_ms: 2000, max_interval_ms: 10000, multiplier: 2.0, jitter: 0.5 }
        own_timeout: timeout_ms=Some(300000) retry=RetryPolicy { max_attempts: 3, backoff: Fixed, initial_interval_ms: 2000, max_interval_ms: 10000, multiplier: 2.0, jitter: 0.5 }
        plain: timeout_ms=Some(30000) retry=RetryPolicy { max_attempts: 3, backoff: Fixed, initial_interval_ms: 2000, max_interval_ms: 10000, multiplier: 2.0, jitter: 0.5 }"#]].assert_eq(&lines.join("\n"));
}

#[test]
fn without_defaults_a_step_has_no_timeout_and_a_single_attempt() {
    let workflow = dsl::parse("name: bare\nsteps:\n  only:\n    uses: noop\n")
        .workflow
        .expect("valid");
    let step = &workflow.steps["only"];
    assert_eq!(step.timeout_ms, None);
    assert_eq!(step.retry, engine::core::workflow::RetryPolicy::default());
    assert_eq!(step.for_each, None);
}

#[test]
fn for_each_max_parallel_defaults_and_is_read_from_the_step() {
    let source = "name: fan\nsteps:\n  a:\n    uses: noop\n    for_each: [1, 2]\n  b:\n    uses: noop\n    for_each: [3]\n    max_parallel: 2\n    with: { n: \"{{ item }}-{{ index }}\" }\n";
    let workflow = dsl::parse(source).workflow.expect("valid");
    let parallel: Vec<u32> = workflow
        .steps
        .values()
        .map(|step| step.for_each.as_ref().expect("for_each").max_parallel)
        .collect();
    assert_eq!(
        parallel,
        [engine::core::workflow::FOR_EACH_MAX_PARALLEL_DEFAULT, 2]
    );
}

#[test]
fn a_template_may_read_a_step_that_is_upstream_only_transitively() {
    let source = "name: chain\nsteps:\n  a:\n    uses: noop\n  b:\n    needs: a\n    uses: noop\n  c:\n    needs: [b]\n    uses: noop\n    if: steps.a.status == 'succeeded'\n    with: { x: \"{{ steps.a.output }}\", r: \"{{ run.attempt }}\", s: \"{{ secrets.TOKEN }}\" }\n";
    let parsed = dsl::parse(source);
    assert_eq!(rendered(&parsed, "chain.yaml"), "");
    assert_eq!(parsed.workflow.expect("valid").steps["b"].needs, ["a"]);
}

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
          hint: did you mean `input`?
        invalid/imx0022-unknown-scope-root.yaml:5:50: error[IMX0022]: `env.HOME`: `env` is not in scope
          hint: expected one of: `input`, `steps`, `run`, `item`, `index`, `secrets`"#]],
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
        invalid/imx0025-item-outside-for-each.yaml:5:18: error[IMX0025]: `item.sku`: `item` is only in scope in `with` of a step with `for_each`
        invalid/imx0025-item-outside-for-each.yaml:5:46: error[IMX0025]: `index`: `index` is only in scope in `with` of a step with `for_each`"#]],
    );
}

#[test]
fn imx0026_unknown_run_field() {
    check_fixture(
        "imx0026-unknown-run-field",
        expect![[r#"
        invalid/imx0026-unknown-run-field.yaml:5:18: error[IMX0026]: `run.run_id`: `run` has no field `run_id`
          hint: expected one of: `id`, `workflow`, `attempt`"#]],
    );
}

#[test]
fn imx0027_unknown_step_field() {
    check_fixture(
        "imx0027-unknown-step-field",
        expect![[r#"
        invalid/imx0027-unknown-step-field.yaml:8:20: error[IMX0027]: `steps.fetch.outputs.items`: a step has `output` and `status`, not `outputs`
          hint: did you mean `output`?"#]],
    );
}

#[test]
fn imx0028_invalid_trigger() {
    check_fixture(
        "imx0028-invalid-trigger",
        expect![[r#"
        invalid/imx0028-invalid-trigger.yaml:3:5: error[IMX0028]: a trigger has several kinds (`cron`, `kafka`); write one trigger per entry
        invalid/imx0028-invalid-trigger.yaml:5:28: error[IMX0028]: `secret_env` `shop-secret` is not an environment variable name
          hint: use uppercase letters, digits and `_`, e.g. `SHOP_WEBHOOK_SECRET`
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
        invalid/imx0029-invalid-for-each.yaml:5:5: error[IMX0029]: `max_parallel` only applies to a step with `for_each`
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
