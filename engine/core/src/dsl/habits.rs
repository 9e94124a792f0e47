//! What authors bring from other workflow tools (GitHub Actions, Argo
//! Workflows, Kestra): keys, expressions and references that imx writes
//! differently, each with the imx form to write instead. Only hints: the
//! codes stay those of the underlying problem (an unknown key is IMX0005
//! whoever wrote it), so scripts keyed on codes keep working.

use super::duration::format_ms;
use super::step::valid_step_id_from;
use super::yaml::{Node, Value};

/// Which mapping an unknown key was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Place {
    /// The top level of a workflow.
    Root,
    /// One step.
    Step,
    /// Anywhere else: no habits are recognised there.
    Other,
}

/// The hint for a key another tool uses and imx does not, or `None` when
/// `name` is no such habit here (the caller falls back to "did you mean").
pub(crate) fn key_hint(place: Place, name: &str, value: &Node) -> Option<String> {
    let common = match name {
        "concurrency" => Some(
            "`concurrency` (limits across runs, as GitHub Actions' `concurrency` or Argo's \
             `synchronization`) is not built yet in imx; within one run, `max_parallel` \
             bounds a `for_each`"
                .to_owned(),
        ),
        "timeout-minutes" | "timeout_minutes" => Some(match whole_number(value) {
            Some(minutes) => format!(
                "imx writes a timeout as a duration: `timeout: {}`",
                format_ms(minutes.saturating_mul(60_000))
            ),
            None => "imx writes a timeout as a duration: `timeout: 30m`".to_owned(),
        }),
        "activeDeadlineSeconds" => Some(match whole_number(value) {
            Some(seconds) => format!(
                "imx writes a timeout as a duration: `timeout: {}`",
                format_ms(seconds.saturating_mul(1_000))
            ),
            None => "imx writes a timeout as a duration: `timeout: 30m`".to_owned(),
        }),
        "retryStrategy" => Some(
            "imx writes `retry: { max_attempts: N, backoff: exponential }`; \
             `max_attempts` counts the first attempt too (Argo's `limit: 2` is `max_attempts: 3`)"
                .to_owned(),
        ),
        _ => None,
    };
    common.or_else(|| match place {
        Place::Root => root_hint(name),
        Place::Step => step_hint(name, value),
        Place::Other => None,
    })
}

fn root_hint(name: &str) -> Option<String> {
    let text = match name {
        "on" => {
            "imx lists what starts runs under `triggers:` (`cron`, `webhook`, `kafka`); \
             a cron schedule has a seconds field first: GitHub's `cron: \"0 2 * * *\"` is \
             `- cron: \"0 0 2 * * *\"`"
        }
        "jobs" => {
            "imx has one `steps:` mapping (the key is the step id); a job becomes a step, \
             and its `needs` stay `needs`"
        }
        "tasks" | "templates" => {
            "imx writes the work as `steps:`, a mapping from step id to step, ordered by `needs`"
        }
        "entrypoint" => "imx has no entrypoint: every step in `steps:` belongs to the run",
        "id" => "imx names a workflow with `name:` (`[a-z0-9][a-z0-9_.-]*`)",
        "namespace" => {
            "imx has no namespaces: a workflow `name` is unique per store; a prefix such as \
             `team.flow` groups names"
        }
        "inputs" => {
            "imx describes the run input with one JSON Schema under `input:`, e.g. \
             `input: { type: object, properties: { env: { type: string } } }`"
        }
        "outputs" => "imx writes the run's result as `output:`, a template tree",
        "env" | "variables" => {
            "imx computes named values once, when the run starts, with `vars:` (read as \
             `{{ vars.NAME }}`); secrets are `secrets.NAME`"
        }
        "errors" | "onExit" => {
            "imx runs cleanup and failure handlers as `finally:` steps (a mapping like \
             `steps:`): they run once every step ended, whatever the ending (also a cancel or \
             the run timeout), and read `run.status`, `run.error` and `steps.<id>.error`; a \
             handler for one step is a step with `trigger_rule: one_failed` that `needs` it"
        }
        _ => return None,
    };
    Some(text.to_owned())
}

fn step_hint(name: &str, value: &Node) -> Option<String> {
    let text = match name {
        "depends" => return Some(depends_hint(value)),
        "dependencies" | "depends_on" | "dependsOn" => {
            return Some(needs_hint(value, "imx writes what a step waits for as"));
        }
        "when" => {
            "imx writes a step's condition as `if:`, a bare expression without braces, \
             e.g. `if: steps.flip_coin.output == \"heads\"`"
        }
        "strategy" => {
            "imx writes GitHub Actions' `strategy` on the step itself: `matrix: { os: [linux, \
             macos], include: [...], exclude: [...] }` (read `matrix.os`), `fail_fast: true|false` \
             and `max_parallel: N`"
        }
        "run" => {
            "imx runs a command with `uses: exec` and `with: { command: [sh, -c, \"…\"] }` \
             (exec is off unless the server enables it)"
        }
        "runs-on" => {
            "imx steps run on whichever node claims them; `uses: agent` with `with.queue` sends \
             a step to workers you run (`imx agent`)"
        }
        "type" => "imx names a step's kind with `uses:` (`http`, `exec`, `workflow`, …)",
        "template" | "templateRef" => {
            "imx runs another workflow with `uses: workflow` and `with: { name, input }`"
        }
        "arguments" | "inputs" => "imx passes a step's parameters in `with:`",
        "outputs" => "a step's result is its output: later steps read it as `steps.<id>.output`",
        "steps" | "tasks" => {
            "step groups are not built yet; put the inner steps in a workflow of their own \
             and call it with `uses: workflow`"
        }
        "id" | "name" => "a step's id is its key under `steps:`",
        "env" => "imx passes values to a step in `with:` (`with.env` for `exec`)",
        _ => return None,
    };
    Some(text.to_owned())
}

/// Argo's `depends: "a && b.Succeeded"` as `needs: [a, b]`.
fn depends_hint(value: &Node) -> String {
    let Value::String(expression) = &value.value else {
        return needs_hint(value, "imx writes what a step waits for as");
    };
    let mut ids: Vec<String> = Vec::new();
    for word in expression.split(|c: char| "&|!() \t\n".contains(c)) {
        // `a.Succeeded`, `a.Failed`: the task is the part before the dot.
        let task = word.split('.').next().unwrap_or("");
        if let Some(id) = valid_step_id_from(task)
            && !ids.contains(&id)
        {
            ids.push(id);
        }
    }
    let mut hint = format!(
        "imx writes what a step waits for as `needs: [{}]`",
        ids.join(", ")
    );
    if expression.contains("||") || expression.contains('!') || expression.contains('.') {
        hint.push_str(
            "; `needs` waits for all of them, and `trigger_rule` (`all_success`, `all_done`, \
             `one_failed`, `none_failed`) says which of their endings let the step run",
        );
    }
    hint
}

/// `needs: [a, b]` from a list of names (made valid step ids).
fn needs_hint(value: &Node, lead: &str) -> String {
    let ids: Vec<String> = match &value.value {
        Value::Seq(items) => items
            .iter()
            .filter_map(|item| match &item.value {
                Value::String(text) => valid_step_id_from(text),
                _ => None,
            })
            .collect(),
        Value::String(text) => valid_step_id_from(text).into_iter().collect(),
        _ => Vec::new(),
    };
    if ids.is_empty() {
        format!("{lead} `needs: [step_id, …]`")
    } else {
        format!("{lead} `needs: [{}]`", ids.join(", "))
    }
}

fn whole_number(node: &Node) -> Option<u64> {
    match &node.value {
        Value::Number(number) => number.as_u64(),
        _ => None,
    }
}

/// For `if: ${{ … }}` (GitHub Actions): the hint, with the expression inside
/// when it was not one of the status functions. `None` when `expression` is
/// not written that way.
pub(crate) fn github_condition_hint(expression: &str) -> Option<String> {
    let inner = expression
        .trim()
        .strip_prefix("${{")?
        .strip_suffix("}}")?
        .trim();
    let status = match inner {
        "failure()" => Some(
            "a step that runs when a step it `needs` failed: `trigger_rule: one_failed` (no `if`)",
        ),
        "always()" => Some(
            "a step that runs whatever its `needs` ended with: `trigger_rule: all_done` (no `if`); \
             to run also after a cancel or the run timeout, put it under `finally:`",
        ),
        "success()" => Some("nothing: `trigger_rule: all_success` is the default (no `if`)"),
        "cancelled()" => Some(
            "a `finally:` step with `if: run.status == \"cancelled\"`: `finally:` steps run \
             after a cancel too",
        ),
        _ => None,
    };
    Some(match status {
        Some(text) => format!("imx writes GitHub Actions' `{inner}` as {text}"),
        None => {
            let translated = translate_references(inner);
            format!("`if` is a bare expression without `${{{{ }}}}`: `if: {translated}`")
        }
    })
}

/// A template reference other tools spell differently, in imx's spelling
/// (`needs.build.outputs.tag` → `steps.build.output.tag`), with the tool's
/// name; `None` when it is no such habit.
pub(crate) fn reference_hint(reference: &str) -> Option<String> {
    let (imx, tool) = translate_reference(reference)?;
    Some(format!("`{reference}` ({tool}) is `{imx}` in imx"))
}

fn translate_reference(reference: &str) -> Option<(String, &'static str)> {
    let parts: Vec<&str> = reference.split('.').collect();
    let rest = |from: usize| -> String {
        parts
            .get(from..)
            .filter(|tail| !tail.is_empty())
            .map(|tail| format!(".{}", tail.join(".")))
            .unwrap_or_default()
    };
    let step = |index: usize| parts.get(index).and_then(|id| valid_step_id_from(id));
    match parts.as_slice() {
        ["needs", _, "outputs", ..] => Some((
            format!("steps.{}.output{}", step(1)?, rest(3)),
            "GitHub Actions",
        )),
        ["needs", _, "result", ..] => {
            Some((format!("steps.{}.status", step(1)?), "GitHub Actions"))
        }
        ["steps" | "tasks", _, "outputs", "result", ..] => Some((
            format!("steps.{}.output{}", step(1)?, rest(4)),
            "Argo Workflows",
        )),
        ["steps" | "tasks", _, "outputs", "parameters", ..] => Some((
            format!("steps.{}.output{}", step(1)?, rest(4)),
            "Argo Workflows",
        )),
        ["steps", _, "outputs", ..] => Some((
            format!("steps.{}.output{}", step(1)?, rest(3)),
            "GitHub Actions",
        )),
        ["steps", _, "outcome" | "conclusion", ..] => {
            Some((format!("steps.{}.status", step(1)?), "GitHub Actions"))
        }
        ["outputs", _, ..] => Some((format!("steps.{}.output{}", step(1)?, rest(2)), "Kestra")),
        ["inputs" | "workflow", "parameters", ..] => {
            Some((format!("input{}", rest(2)), "Argo Workflows"))
        }
        ["github", "event", "inputs", ..] => Some((format!("input{}", rest(3)), "GitHub Actions")),
        ["inputs", ..] => Some((format!("input{}", rest(1)), "GitHub Actions and Kestra")),
        ["workflow", "name"] | ["flow", "id"] => {
            Some(("run.workflow".to_owned(), "Argo Workflows and Kestra"))
        }
        ["workflow", "uid"] | ["execution", "id"] | ["github", "run_id"] => Some((
            "run.id".to_owned(),
            "Argo Workflows, Kestra and GitHub Actions",
        )),
        ["github", "run_attempt"] => Some(("run.attempt".to_owned(), "GitHub Actions")),
        ["workflow", "creationTimestamp"] | ["execution", "startDate"] => {
            Some(("run.started_at".to_owned(), "Argo Workflows and Kestra"))
        }
        ["workflow", "status"] | ["job", "status"] => {
            Some(("run.status".to_owned(), "Argo Workflows and GitHub Actions"))
        }
        _ => None,
    }
}

/// Every reference in `expression` that another tool spells differently,
/// rewritten; the rest is kept as written.
fn translate_references(expression: &str) -> String {
    let mut out = String::with_capacity(expression.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        match translate_reference(word) {
            Some((imx, _)) => out.push_str(&imx),
            None => out.push_str(word),
        }
        word.clear();
    };
    for c in expression.chars() {
        if c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-' {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}
