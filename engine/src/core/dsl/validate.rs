//! Checks across steps: `needs` names real steps and forms no cycle, and
//! every template reads only what is in scope where it is rendered.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use super::diagnostic::Code;
use super::fields::{Sink, quoted_list, suggest};
use super::parse::Sources;
use super::step::StepSource;
use super::yaml::{Node, Pos, Value};
use crate::core::template::{Error as TemplateError, expression_references, template_references};

/// Variables a template may read (minijinja's global functions are allowed too).
pub const SCOPE_ROOTS: [&str; 6] = ["input", "steps", "run", "item", "index", "secrets"];
const TEMPLATE_GLOBALS: [&str; 4] = ["range", "dict", "namespace", "debug"];
/// Fields of `run` in template scope.
pub const RUN_FIELDS: [&str; 3] = ["id", "workflow", "attempt"];
/// Fields of `steps.<id>` in template scope.
pub const STEP_FIELDS: [&str; 2] = ["output", "status"];

/// Runs every cross-step check.
pub(crate) fn validate(sink: &mut Sink, sources: &Sources<'_>) {
    unknown_needs(sink, &sources.steps);
    cycles(sink, &sources.steps);
    let ancestors = ancestors(&sources.steps);
    let empty = BTreeSet::new();
    for (id, source) in &sources.steps {
        let upstream = ancestors.get(id.as_str()).unwrap_or(&empty);
        let mut scope = Scope {
            all_steps: &sources.steps,
            step: Some((id, upstream)),
            item_allowed: false,
        };
        if let Some((expression, pos)) = &source.condition {
            check_expression(sink, &scope, expression, *pos);
        }
        if let Some(node) = source.for_each {
            check_templates(sink, &scope, node);
        }
        if let Some(node) = source.with {
            scope.item_allowed = source.for_each.is_some();
            check_templates(sink, &scope, node);
        }
    }
    if let Some(output) = sources.output {
        let scope = Scope {
            all_steps: &sources.steps,
            step: None,
            item_allowed: false,
        };
        check_templates(sink, &scope, output);
    }
}

fn unknown_needs(sink: &mut Sink, steps: &BTreeMap<String, StepSource<'_>>) {
    for (id, source) in steps {
        for (need, pos) in &source.needs {
            if steps.contains_key(need) {
                continue;
            }
            let hint = match suggest(
                need,
                steps
                    .keys()
                    .map(String::as_str)
                    .filter(|other| *other != id),
            ) {
                Some(best) => format!("did you mean `{best}`?"),
                None => format!(
                    "steps are: {}",
                    quoted_list(steps.keys().map(String::as_str))
                ),
            };
            sink.error(
                Code::UnknownNeed,
                *pos,
                format!("step `{id}` needs `{need}`, which is not a step"),
                Some(hint),
            );
        }
    }
}

/// Reports each distinct cycle once, as `a -> b -> a` starting at its smallest id.
fn cycles(sink: &mut Sink, steps: &BTreeMap<String, StepSource<'_>>) {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    let mut marks: BTreeMap<&str, Mark> = steps.keys().map(|id| (id.as_str(), Mark::New)).collect();
    let mut seen_cycles: HashSet<Vec<&str>> = HashSet::new();
    let edges = |id: &str| -> Vec<&str> {
        steps[id]
            .needs
            .iter()
            .map(|(need, _)| need.as_str())
            .filter(|need| steps.contains_key(*need))
            .collect()
    };
    for start in steps.keys() {
        if marks[start.as_str()] != Mark::New {
            continue;
        }
        // Iterative DFS: (node, index of the next edge to follow). `path` mirrors the open nodes.
        let mut stack: Vec<(&str, usize)> = vec![(start.as_str(), 0)];
        marks.insert(start.as_str(), Mark::Open);
        while let Some((node, next)) = stack.last().copied() {
            let targets = edges(node);
            let Some(&target) = targets.get(next) else {
                marks.insert(node, Mark::Done);
                stack.pop();
                continue;
            };
            if let Some(top) = stack.last_mut() {
                top.1 += 1;
            }
            match marks[target] {
                Mark::New => {
                    marks.insert(target, Mark::Open);
                    stack.push((target, 0));
                }
                Mark::Open => {
                    let begin = stack
                        .iter()
                        .position(|(open, _)| *open == target)
                        .unwrap_or(0);
                    let cycle: Vec<&str> = stack[begin..].iter().map(|(open, _)| *open).collect();
                    report_cycle(sink, steps, cycle, &mut seen_cycles);
                }
                Mark::Done => {}
            }
        }
    }
}

fn report_cycle<'a>(
    sink: &mut Sink,
    steps: &BTreeMap<String, StepSource<'_>>,
    mut cycle: Vec<&'a str>,
    seen: &mut HashSet<Vec<&'a str>>,
) {
    let smallest = (0..cycle.len())
        .min_by_key(|index| cycle[*index])
        .unwrap_or(0);
    cycle.rotate_left(smallest);
    if !seen.insert(cycle.clone()) {
        return;
    }
    let first = cycle[0];
    let second = cycle.get(1).copied().unwrap_or(first);
    let pos = steps[first]
        .needs
        .iter()
        .find(|(need, _)| need == second)
        .map(|(_, pos)| *pos)
        .unwrap_or(steps[first].pos);
    let mut path = cycle.join(" -> ");
    path.push_str(" -> ");
    path.push_str(first);
    let message = format!("`needs` forms a cycle: {path}");
    let hint =
        Some("a step cannot wait for itself; remove one of these `needs` entries".to_owned());
    sink.error(Code::Cycle, pos, message, hint);
}

/// For each step, every step that must finish before it (transitively through `needs`).
fn ancestors<'a>(
    steps: &'a BTreeMap<String, StepSource<'_>>,
) -> BTreeMap<&'a str, BTreeSet<&'a str>> {
    let mut result = BTreeMap::new();
    for id in steps.keys() {
        let mut seen: BTreeSet<&str> = BTreeSet::new();
        let mut queue: Vec<&str> = vec![id.as_str()];
        while let Some(current) = queue.pop() {
            let Some(source) = steps.get(current) else {
                continue;
            };
            for (need, _) in &source.needs {
                if let Some((key, _)) = steps.get_key_value(need.as_str())
                    && seen.insert(key.as_str())
                {
                    queue.push(key.as_str());
                }
            }
        }
        result.insert(id.as_str(), seen);
    }
    result
}

/// Where a template is rendered: in a step (with its upstream steps) or in the run output.
struct Scope<'a> {
    all_steps: &'a BTreeMap<String, StepSource<'a>>,
    step: Option<(&'a str, &'a BTreeSet<&'a str>)>,
    item_allowed: bool,
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
    match root {
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
                "`{reference}`: `{root}` is only in scope in `with` of a step with `for_each`"
            );
            sink.error(Code::ItemOutsideForEach, pos, message, None);
        }
        "item" | "index" => {}
        "steps" => check_step_reference(sink, scope, reference, &parts, pos),
        _ if TEMPLATE_GLOBALS.contains(&root) => {}
        _ => {
            let hint = one_of(root, &SCOPE_ROOTS);
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
    if !scope.all_steps.contains_key(target) {
        let hint = match suggest(target, scope.all_steps.keys().map(String::as_str)) {
            Some(best) => format!("did you mean `{best}`?"),
            None => format!(
                "steps are: {}",
                quoted_list(scope.all_steps.keys().map(String::as_str))
            ),
        };
        let message = format!("`{reference}`: there is no step `{target}`");
        sink.error(Code::UnknownStepReference, pos, message, Some(hint));
        return;
    }
    if let Some((id, upstream)) = scope.step {
        if target == id {
            let message = format!("step `{id}` reads its own result `{reference}`");
            sink.error(Code::StepNotUpstream, pos, message, None);
            return;
        }
        if !upstream.contains(target) {
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
        let hint = one_of(field, &STEP_FIELDS);
        let message = format!("`{reference}`: a step has `output` and `status`, not `{field}`");
        sink.error(Code::UnknownStepField, pos, message, Some(hint));
    }
}

/// "did you mean `x`?" or the whole list.
fn one_of(name: &str, known: &[&str]) -> String {
    match suggest(name, known.iter().copied()) {
        Some(best) => format!("did you mean `{best}`?"),
        None => format!("expected one of: {}", quoted_list(known.iter().copied())),
    }
}
