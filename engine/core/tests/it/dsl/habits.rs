//! Habits of other workflow tools (`tests/fixtures/habits/*.yaml`): each
//! refusal names its position and the imx form to write instead.

use expect_test::expect;
use imx_core::dsl::duration::{format_ms, iso8601_ms, parse_duration_ms};

use super::check_file;

#[test]
fn github_actions_keys_expressions_and_references_point_to_the_imx_form() {
    check_file(
        "habits/github-actions.yaml",
        expect![[r#"
            habits/github-actions.yaml:3:1: error[IMX0005]: unknown key `on` in the workflow
              hint: imx lists what starts runs under `triggers:` (`cron`, `webhook`, `kafka`); a cron schedule has a seconds field first: GitHub's `cron: "0 2 * * *"` is `- cron: "0 0 2 * * *"`
            habits/github-actions.yaml:5:1: error[IMX0005]: unknown key `concurrency` in the workflow
              hint: `concurrency` (limits across runs, as GitHub Actions' `concurrency` or Argo's `synchronization`) is not built yet in imx; within one run, `max_parallel` bounds a `for_each`
            habits/github-actions.yaml:6:1: error[IMX0005]: unknown key `timeout-minutes` in the workflow
              hint: imx writes a timeout as a duration: `timeout: 30m`
            habits/github-actions.yaml:10:5: error[IMX0005]: unknown key `timeout-minutes` in step `build`
              hint: imx writes a timeout as a duration: `timeout: 10m`
            habits/github-actions.yaml:11:5: error[IMX0005]: unknown key `strategy` in step `build`
              hint: imx writes GitHub Actions' `strategy` on the step itself: `matrix: { os: [linux, macos], include: [...], exclude: [...] }` (read `matrix.os`), `fail_fast: true|false` and `max_parallel: N`
            habits/github-actions.yaml:16:9: error[IMX0021]: invalid `if` expression `${{ needs.build.outputs.tag != '' }}`: `${{ }}` is GitHub Actions' syntax
              hint: `if` is a bare expression without `${{ }}`: `if: steps.build.output.tag != ''`
            habits/github-actions.yaml:18:12: error[IMX0022]: `needs.build.outputs.tag`: `needs` is not in scope
              hint: `needs.build.outputs.tag` (GitHub Actions) is `steps.build.output.tag` in imx
            habits/github-actions.yaml:19:11: error[IMX0027]: `steps.build.outcome`: a step has `output`, `status` and `error`, not `outcome`
              hint: `steps.build.outcome` (GitHub Actions) is `steps.build.status` in imx
            habits/github-actions.yaml:23:9: error[IMX0021]: invalid `if` expression `${{ failure() }}`: `${{ }}` is GitHub Actions' syntax
              hint: imx writes GitHub Actions' `failure()` as a step that runs when a step it `needs` failed: `trigger_rule: one_failed` (no `if`)
            habits/github-actions.yaml:27:9: error[IMX0021]: invalid `if` expression `${{ always() }}`: `${{ }}` is GitHub Actions' syntax
              hint: imx writes GitHub Actions' `always()` as a step that runs whatever its `needs` ended with: `trigger_rule: all_done` (no `if`); to run also after a cancel or the run timeout, put it under `finally:`
            habits/github-actions.yaml:28:5: error[IMX0005]: unknown key `run` in step `report`
              hint: imx runs a command with `uses: exec` and `with: { command: [sh, -c, "…"] }` (exec is off unless the server enables it)
            habits/github-actions.yaml:30:11: error[IMX0010]: unknown step kind `actions/checkout@v4`
              hint: imx runs its own step kinds, not GitHub Actions or plugins of other tools: `noop`, `fail`, `sleep`, `http`, `exec`, `approval`, `workflow`, `agent`, `kafka.publish`; a command runs with `uses: exec`, a container or script elsewhere through `uses: agent`
            habits/github-actions.yaml:31:5: error[IMX0005]: unknown key `runs-on` in step `checkout`
              hint: imx steps run on whichever node claims them; `uses: agent` with `with.queue` sends a step to workers you run (`imx agent`)"#]],
    );
}

#[test]
fn argo_keys_and_references_point_to_the_imx_form() {
    check_file(
        "habits/argo.yaml",
        expect![[r#"
            habits/argo.yaml:3:1: error[IMX0005]: unknown key `entrypoint` in the workflow
              hint: imx has no entrypoint: every step in `steps:` belongs to the run
            habits/argo.yaml:4:1: error[IMX0005]: unknown key `onExit` in the workflow
              hint: imx runs cleanup and failure handlers as `finally:` steps (a mapping like `steps:`): they run once every step ended, whatever the ending (also a cancel or the run timeout), and read `run.status`, `run.error` and `steps.<id>.error`; a handler for one step is a step with `trigger_rule: one_failed` that `needs` it
            habits/argo.yaml:8:5: error[IMX0005]: unknown key `activeDeadlineSeconds` in step `flip_coin`
              hint: imx writes a timeout as a duration: `timeout: 1m30s`
            habits/argo.yaml:9:5: error[IMX0005]: unknown key `retryStrategy` in step `flip_coin`
              hint: imx writes `retry: { max_attempts: N, backoff: exponential }`; `max_attempts` counts the first attempt too (Argo's `limit: 2` is `max_attempts: 3`)
            habits/argo.yaml:12:5: error[IMX0005]: unknown key `depends` in step `heads`
              hint: imx writes what a step waits for as `needs: [flip_coin, setup]`; `needs` waits for all of them, and `trigger_rule` (`all_success`, `all_done`, `one_failed`, `none_failed`) says which of their endings let the step run
            habits/argo.yaml:13:5: error[IMX0005]: unknown key `when` in step `heads`
              hint: imx writes a step's condition as `if:`, a bare expression without braces, e.g. `if: steps.flip_coin.output == "heads"`
            habits/argo.yaml:16:5: error[IMX0005]: unknown key `dependencies` in step `tails`
              hint: imx writes what a step waits for as `needs: [flip_coin]`
            habits/argo.yaml:17:5: error[IMX0005]: unknown key `template` in step `tails`
              hint: imx runs another workflow with `uses: workflow` and `with: { name, input }`
            habits/argo.yaml:20:13: error[IMX0012]: step `show` needs `flip-coin`, which is not a step
              hint: did you mean `flip_coin`?
            habits/argo.yaml:25:15: error[IMX0027]: `steps.flip_coin.outputs.result`: a step has `output`, `status` and `error`, not `outputs`
              hint: `steps.flip_coin.outputs.result` (Argo Workflows) is `steps.flip_coin.output` in imx
            habits/argo.yaml:26:16: error[IMX0022]: `inputs.parameters.message`: `inputs` is not in scope
              hint: `inputs.parameters.message` (Argo Workflows) is `input.message` in imx
            habits/argo.yaml:26:16: error[IMX0022]: `workflow.name`: `workflow` is not in scope
              hint: `workflow.name` (Argo Workflows and Kestra) is `run.workflow` in imx"#]],
    );
}

#[test]
fn kestra_keys_and_references_point_to_the_imx_form() {
    check_file(
        "habits/kestra.yaml",
        expect![[r#"
            habits/kestra.yaml:2:1: error[IMX0005]: unknown key `id` in the workflow
              hint: imx names a workflow with `name:` (`[a-z0-9][a-z0-9_.-]*`)
            habits/kestra.yaml:3:1: error[IMX0005]: unknown key `namespace` in the workflow
              hint: imx has no namespaces: a workflow `name` is unique per store; a prefix such as `team.flow` groups names
            habits/kestra.yaml:5:1: error[IMX0005]: unknown key `errors` in the workflow
              hint: imx runs cleanup and failure handlers as `finally:` steps (a mapping like `steps:`): they run once every step ended, whatever the ending (also a cancel or the run timeout), and read `run.status`, `run.error` and `steps.<id>.error`; a handler for one step is a step with `trigger_rule: one_failed` that `needs` it
            habits/kestra.yaml:8:5: error[IMX0005]: unknown key `type` in step `fetch`
              hint: imx names a step's kind with `uses:` (`http`, `exec`, `workflow`, …)
            habits/kestra.yaml:9:11: error[IMX0010]: unknown step kind `io.kestra.plugin.core.http.Request`
              hint: imx runs its own step kinds, not GitHub Actions or plugins of other tools: `noop`, `fail`, `sleep`, `http`, `exec`, `approval`, `workflow`, `agent`, `kafka.publish`; a command runs with `uses: exec`, a container or script elsewhere through `uses: agent`
            habits/kestra.yaml:14:16: error[IMX0022]: `execution.id`: `execution` is not in scope
              hint: `execution.id` (Argo Workflows, Kestra and GitHub Actions) is `run.id` in imx
            habits/kestra.yaml:14:16: error[IMX0022]: `inputs.user`: `inputs` is not in scope
              hint: `inputs.user` (GitHub Actions and Kestra) is `input.user` in imx
            habits/kestra.yaml:14:16: error[IMX0022]: `outputs.fetch.body`: `outputs` is not in scope
              hint: `outputs.fetch.body` (Kestra) is `steps.fetch.output.body` in imx"#]],
    );
}

#[test]
fn suggested_step_ids_are_valid_step_ids() {
    check_file(
        "habits/suggested-ids.yaml",
        expect![[r#"
        habits/suggested-ids.yaml:4:3: error[IMX0009]: step id `Flip-Coin` must match `[a-z][a-z0-9_]*`
          hint: templates read steps as `steps.<id>`, where `-` or `.` would not parse; try `flip_coin`
        habits/suggested-ids.yaml:6:3: error[IMX0009]: step id `2nd` must match `[a-z][a-z0-9_]*`
          hint: templates read steps as `steps.<id>`, where `-` or `.` would not parse; try `step_2nd`
        habits/suggested-ids.yaml:12:13: error[IMX0012]: step `heads` needs `flip-coin`, which is not a step
          hint: did you mean `flip_coins`?
        habits/suggested-ids.yaml:12:24: error[IMX0012]: step `heads` needs `flip_coin`, which is not a step
          hint: did you mean `flip_coins`?"#]],
    );
}

#[test]
fn iso8601_durations_convert_to_the_imx_form_that_reads_back_the_same() {
    let cases = [
        ("PT1H", Some("1h")),
        ("PT1H30M", Some("1h30m")),
        ("P1DT12H", Some("1d12h")),
        ("PT0.5S", Some("500ms")),
        ("pt90s", Some("1m30s")),
        ("P1M", None),
        ("P1Y", None),
        ("PT", None),
        ("PT1.0001S", None),
        ("P400D", None),
        ("1h", None),
    ];
    for (iso, imx) in cases {
        let formatted = iso8601_ms(iso).map(format_ms);
        assert_eq!(formatted.as_deref(), imx, "{iso}");
        if let Some(imx) = imx {
            assert_eq!(parse_duration_ms(imx).ok(), iso8601_ms(iso), "{imx}");
        }
    }
}
