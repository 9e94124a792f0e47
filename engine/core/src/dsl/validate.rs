//! Checks across steps: `needs` names real steps and forms no cycle, and
//! every template reads only what is in scope where it is rendered.

use std::collections::BTreeMap;

use super::dag::{Dag, step_hint, unknown_needs};
use super::diagnostic::Code;
use super::fields::{Sink, quoted_list, suggest};
use super::habits;
use super::parse::Sources;
use super::step::StepSource;
use super::yaml::{Node, Pos, Value};
use crate::template::{Error as TemplateError, expression_references, template_references};

/// Variables a template may read (minijinja's global functions are allowed too).
pub const SCOPE_ROOTS: [&str; 8] = [
    "input", "steps", "run", "vars", "item", "index", "matrix", "secrets",
];
/// Variables a `vars` template may read: it is rendered once, before any step.
pub const VARS_SCOPE_ROOTS: [&str; 2] = ["input", "run"];
const TEMPLATE_GLOBALS: [&str; 4] = ["range", "dict", "namespace", "debug"];
/// Whether `name` is one of minijinja's global functions templates may call.
pub(crate) fn is_template_global(name: &str) -> bool {
    TEMPLATE_GLOBALS.contains(&name)
}

/// Fields of `run` in template scope.
pub const RUN_FIELDS: [&str; 7] = [
    "id",
    "workflow",
    "attempt",
    "started_at",
    "status",
    "error",
    "trigger",
];
/// Fields of `steps.<id>` in template scope.
pub const STEP_FIELDS: [&str; 3] = ["output", "status", "error"];

/// Runs every cross-step check.
pub(crate) fn validate(sink: &mut Sink, sources: &Sources<'_>) {
    unknown_needs(sink, &sources.steps);
    needs_across_finally(sink, &sources.steps);
    let dag = Dag::new(&sources.steps);
    dag.report_cycles(sink, &sources.steps);
    let var_names: Vec<&str> = sources.vars.keys().map(String::as_str).collect();
    // The scope of a template: in a step (`Some((id, index))`) or at the
    // workflow level, inside `vars` or not.
    let scope_at = |step, in_vars| Scope {
        all_steps: &sources.steps,
        dag: &dag,
        step,
        item_allowed: false,
        matrix: None,
        vars: &var_names,
        in_vars,
    };
    for node in sources.vars.values() {
        check_templates(sink, &scope_at(None, true), node);
    }
    for (index, (id, source)) in sources.steps.iter().enumerate() {
        let mut scope = scope_at(Some((id.as_str(), index)), false);
        if let Some((expression, pos)) = &source.condition {
            check_expression(sink, &scope, expression, *pos);
        }
        if let Some(node) = source.for_each.or(source.matrix) {
            check_templates(sink, &scope, node);
        }
        if let Some(node) = source.with {
            scope.item_allowed = source.for_each.is_some() || source.matrix.is_some();
            scope.matrix = source.matrix.map(|_| source.matrix_names.as_slice());
            check_templates(sink, &scope, node);
        }
    }
    if let Some(output) = sources.output {
        check_templates(sink, &scope_at(None, false), output);
    }
}

/// Where a template is rendered: in a step (with its upstream steps) or in the run output.
struct Scope<'a> {
    all_steps: &'a BTreeMap<String, StepSource<'a>>,
    dag: &'a Dag<'a>,
    /// The step's id and index in `dag`.
    step: Option<(&'a str, usize)>,
    item_allowed: bool,
    /// In `with` of a `matrix` step: the names `matrix.<name>` may read.
    matrix: Option<&'a [String]>,
    /// The names `vars` declares.
    vars: &'a [&'a str],
    /// In a `vars` template: only `input` and `run` are in scope.
    in_vars: bool,
}

fn check_templates(sink: &mut Sink, scope: &Scope<'_>, node: &Node) {
    match &node.value {
        Value::String(text)
            if text.contains("{{") || text.contains("{%") || text.contains("{#") =>
        {
            match template_references(text) {
                Ok(references) => check_references(sink, scope, &references, node.pos),
                Err(error) => sink.error(Code::TemplateSyntax, node.pos, error.to_string(), None),
            }
        }
        Value::Seq(items) => items
            .iter()
            .for_each(|item| check_templates(sink, scope, item)),
        Value::Map(entries) => entries
            .iter()
            .for_each(|(_, value)| check_templates(sink, scope, value)),
        _ => {}
    }
}

fn check_expression(sink: &mut Sink, scope: &Scope<'_>, expression: &str, pos: Pos) {
    if let Some(hint) = habits::github_condition_hint(expression) {
        let message = format!(
            "invalid `if` expression `{expression}`: `${{{{ }}}}` is GitHub Actions' syntax"
        );
        sink.error(Code::ExpressionSyntax, pos, message, Some(hint));
        return;
    }
    match expression_references(expression) {
        Ok(references) => check_references(sink, scope, &references, pos),
        Err(error) => {
            let hint = expression
                .contains("{{")
                .then(|| "`if` is a bare expression: drop the `{{ }}`".to_owned());
            let detail = match error {
                TemplateError::Syntax { detail, .. } => detail,
                other => other.to_string(),
            };
            let message = format!("invalid `if` expression `{expression}`: {detail}");
            sink.error(Code::ExpressionSyntax, pos, message, hint);
        }
    }
}

fn check_references(sink: &mut Sink, scope: &Scope<'_>, references: &[String], pos: Pos) {
    for reference in references {
        check_reference(sink, scope, reference, pos);
    }
}

fn check_reference(sink: &mut Sink, scope: &Scope<'_>, reference: &str, pos: Pos) {
    let parts: Vec<&str> = reference.split('.').collect();
    let root = parts[0];
    if scope.in_vars && !VARS_SCOPE_ROOTS.contains(&root) && !TEMPLATE_GLOBALS.contains(&root) {
        let message = format!(
            "`{reference}`: `vars` are rendered once when the run starts, where only `input` and `run` are in scope"
        );
        let hint = Some("read it in the step that needs it instead".to_owned());
        sink.error(Code::UnknownScopeRoot, pos, message, hint);
        return;
    }
    match root {
        "vars" => {
            if let Some(name) = parts.get(1).filter(|name| !scope.vars.contains(name)) {
                let hint = match suggest(name, scope.vars.iter().copied()) {
                    Some(best) => format!("did you mean `{best}`?"),
                    None if scope.vars.is_empty() => {
                        "declare it under `vars:` at the top of the workflow".to_owned()
                    }
                    None => format!("declared: {}", quoted_list(scope.vars.iter().copied())),
                };
                let message = format!("`{reference}`: there is no var `{name}`");
                sink.error(Code::UnknownScopeRoot, pos, message, Some(hint));
            }
        }
        "input" | "secrets" => {}
        "run" => {
            if let Some(field) = parts.get(1).filter(|field| !RUN_FIELDS.contains(field)) {
                let hint = one_of(field, &RUN_FIELDS);
                sink.error(
                    Code::UnknownRunField,
                    pos,
                    format!("`{reference}`: `run` has no field `{field}`"),
                    Some(hint),
                );
            }
        }
        "item" | "index" if !scope.item_allowed => {
            let message = format!(
                "`{reference}`: `{root}` is only in scope in `with` of a step with `for_each` or `matrix`"
            );
            sink.error(Code::ItemOutsideForEach, pos, message, None);
        }
        "matrix" => check_matrix_reference(sink, scope, reference, &parts, pos),
        "item" | "index" => {}
        "steps" => check_step_reference(sink, scope, reference, &parts, pos),
        _ if TEMPLATE_GLOBALS.contains(&root) => {}
        _ => {
            let hint =
                habits::reference_hint(reference).unwrap_or_else(|| one_of(root, &SCOPE_ROOTS));
            sink.error(
                Code::UnknownScopeRoot,
                pos,
                format!("`{reference}`: `{root}` is not in scope"),
                Some(hint),
            );
        }
    }
}

fn check_step_reference(
    sink: &mut Sink,
    scope: &Scope<'_>,
    reference: &str,
    parts: &[&str],
    pos: Pos,
) {
    let Some(target) = parts.get(1).copied() else {
        if let Some((id, _)) = scope.step {
            let message = format!("step `{id}` reads all of `steps`; name the step it needs");
            let hint = Some("write `steps.<id>.output`, with `<id>` listed (directly or transitively) in `needs`".to_owned());
            sink.error(Code::StepNotUpstream, pos, message, hint);
        }
        return;
    };
    let Some(target_index) = scope.dag.index(target) else {
        let hint = step_hint(sink, target, scope.all_steps, None);
        let message = format!("`{reference}`: there is no step `{target}`");
        sink.error(Code::UnknownStepReference, pos, message, hint);
        return;
    };
    let target_is_finally = scope.all_steps.get(target).is_some_and(|t| t.finally);
    let in_finally = scope
        .step
        .is_some_and(|(id, _)| scope.all_steps.get(id).is_some_and(|s| s.finally));
    if target_is_finally && !in_finally {
        let message = match scope.step {
            Some((id, _)) => format!(
                "step `{id}` reads `{reference}`, but `finally:` steps run after every step under `steps:`"
            ),
            None => format!(
                "the run `output` reads `{reference}`, but it is rendered before the `finally:` steps run"
            ),
        };
        sink.error(Code::StepNotUpstream, pos, message, None);
        return;
    }
    if let Some((id, index)) = scope.step {
        if target == id {
            let message = format!("step `{id}` reads its own result `{reference}`");
            sink.error(Code::StepNotUpstream, pos, message, None);
            return;
        }
        // A `finally:` step reads every main step: they have all ended.
        let main_from_finally = in_finally && !target_is_finally;
        if !main_from_finally && !scope.dag.is_ancestor(index, target_index) {
            let message = format!(
                "step `{id}` reads `{reference}`, but `{target}` is not guaranteed to finish before `{id}`"
            );
            let hint = Some(format!(
                "add `{target}` to `needs` of `{id}` (directly or through another step)"
            ));
            sink.error(Code::StepNotUpstream, pos, message, hint);
            return;
        }
    }
    if let Some(field) = parts.get(2).filter(|field| !STEP_FIELDS.contains(field)) {
        let hint = habits::reference_hint(reference).unwrap_or_else(|| one_of(field, &STEP_FIELDS));
        let message =
            format!("`{reference}`: a step has `output`, `status` and `error`, not `{field}`");
        sink.error(Code::UnknownStepField, pos, message, Some(hint));
    }
}

/// A `needs` entry between a step under `steps:` and one under `finally:`
/// (either way): `finally:` steps start only after every other step ended,
/// so they need only each other, and no main step can wait for them.
fn needs_across_finally(sink: &mut Sink, steps: &BTreeMap<String, StepSource<'_>>) {
    for (id, source) in steps {
        for (need, pos) in &source.needs {
            let Some(target) = steps.get(need) else {
                continue;
            };
            let (message, hint) = match (source.finally, target.finally) {
                (true, false) => (
                    format!("`finally:` step `{id}` needs `{need}`, a step under `steps:`"),
                    "`finally:` steps start after every step under `steps:` ended; drop the entry, and test how it ended with `if: steps.<id>.status == \"failed\"`",
                ),
                (false, true) => (
                    format!("step `{id}` needs `{need}`, a `finally:` step"),
                    "`finally:` steps run after every step under `steps:`, so none can wait for one",
                ),
                _ => continue,
            };
            sink.error(Code::FinallyNeed, *pos, message, Some(hint.to_owned()));
        }
    }
}

fn check_matrix_reference(
    sink: &mut Sink,
    scope: &Scope<'_>,
    reference: &str,
    parts: &[&str],
    pos: Pos,
) {
    let Some(names) = scope.matrix else {
        let message =
            format!("`{reference}`: `matrix` is only in scope in `with` of a step with `matrix`");
        sink.error(Code::ItemOutsideForEach, pos, message, None);
        return;
    };
    if let Some(name) = parts
        .get(1)
        .filter(|name| !names.iter().any(|n| n == *name))
    {
        let hint = match suggest(name, names.iter().map(String::as_str)) {
            Some(best) => Some(format!("did you mean `{best}`?")),
            None if names.is_empty() => None,
            None => Some(format!(
                "axes and included keys: {}",
                quoted_list(names.iter().map(String::as_str))
            )),
        };
        let message = format!("`{reference}`: the matrix has no axis `{name}`");
        sink.error(Code::InvalidMatrix, pos, message, hint);
    }
}

/// "did you mean `x`?" or the whole list.
fn one_of(name: &str, known: &[&str]) -> String {
    match suggest(name, known.iter().copied()) {
        Some(best) => format!("did you mean `{best}`?"),
        None => format!("expected one of: {}", quoted_list(known.iter().copied())),
    }
}
