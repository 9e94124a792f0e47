//! Checks across workflows: a `uses: workflow` step names a workflow of the
//! set being checked, and its `input` fits that workflow's `input` schema.
//! Run by `imx validate` over a set of files (the codes are not reported by
//! [`super::parse`], which sees one file). Pure: the set comes as data.

use std::collections::BTreeMap;

use serde_json::Value as Json;

use super::diagnostic::{Code, Diagnostic, Severity};
use super::fields::suggest;
use super::parse::locate;
use super::yaml::{self, Node, Pos, Value};

/// Most schema violations reported for one step's `input`.
const INPUT_ERRORS_REPORTED_MAX: usize = 10;

/// The workflows a set of files defines: name → `input` schema (`None`: any input).
pub type Catalog = BTreeMap<String, Option<Json>>;

/// Every `uses: workflow` step of `source` whose `with.name` is not in
/// `catalog`, or whose `with.input` violates the named workflow's schema.
/// Names and input leaves that are templates are known only at run time
/// and are not judged. `source` is expected to have parsed without errors.
pub fn check_calls(source: &str, catalog: &Catalog) -> Vec<Diagnostic> {
    let mut diagnostics = Vec::new();
    let Ok(root) = yaml::parse(source) else {
        return diagnostics;
    };
    for (id, step) in entries(&root, "steps") {
        if string_at(step, "uses") != Some("workflow") {
            continue;
        }
        let Some(with) = entry(step, "with") else {
            continue;
        };
        let Some(name_node) = entry(with, "name") else {
            continue;
        };
        let Value::String(name) = &name_node.value else {
            continue;
        };
        if is_template(name) {
            continue;
        }
        let Some(schema) = catalog.get(name) else {
            diagnostics.push(unknown(id, name, name_node.pos, catalog));
            continue;
        };
        let Some(schema) = schema else { continue };
        let input_node = entry(with, "input");
        let input = input_node.map(Node::to_json).unwrap_or(Json::Null);
        let anchor = input_node.unwrap_or(name_node);
        diagnostics.extend(check_input(id, name, schema, &input, anchor));
    }
    diagnostics.sort_by_key(|d| (d.line, d.column));
    diagnostics
}

fn unknown(id: &str, name: &str, pos: Pos, catalog: &Catalog) -> Diagnostic {
    let hint = match suggest(name, catalog.keys().map(String::as_str)) {
        Some(best) => format!("did you mean `{best}`?"),
        None => "the child must be among the files checked, beside a file checked, or (for \
                 `imx workflows register`) registered already; check them together: \
                 `imx validate FOLDER`"
            .to_owned(),
    };
    error(
        Code::UnknownWorkflow,
        pos,
        format!("step `{id}` runs the workflow `{name}`, which is not among the workflows checked"),
        Some(hint),
    )
}

fn check_input(id: &str, name: &str, schema: &Json, input: &Json, node: &Node) -> Vec<Diagnostic> {
    // The child's own file reports a schema that does not compile (IMX0019).
    let Ok(validator) = jsonschema::draft202012::new(schema) else {
        return Vec::new();
    };
    validator
        .iter_errors(input)
        .filter(|error| !under_template(input, &error.instance_path().to_string()))
        .take(INPUT_ERRORS_REPORTED_MAX)
        .map(|error| {
            let pointer = error.instance_path().to_string();
            let at = if pointer.is_empty() {
                String::new()
            } else {
                format!(" at `{pointer}`")
            };
            error_at(id, name, locate(node, &pointer), format!("{at}: {error}"))
        })
        .collect()
}

fn error_at(id: &str, name: &str, pos: Pos, detail: String) -> Diagnostic {
    error(
        Code::ChildInputInvalid,
        pos,
        format!(
            "the `input` of step `{id}` does not fit the `input` schema of workflow `{name}`{detail}"
        ),
        Some(format!("see `input:` in the file of `{name}`")),
    )
}

/// Whether the value at `pointer` is, or lies inside, a template string:
/// its value is known only when the step runs.
fn under_template(input: &Json, pointer: &str) -> bool {
    let mut current = input;
    for token in pointer.split('/').skip(1) {
        if matches!(current, Json::String(text) if is_template(text)) {
            return true;
        }
        let token = token.replace("~1", "/").replace("~0", "~");
        let next = match current {
            Json::Object(fields) => fields.get(&token),
            Json::Array(items) => token.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        };
        match next {
            Some(next) => current = next,
            None => return false,
        }
    }
    matches!(current, Json::String(text) if is_template(text))
}

fn is_template(text: &str) -> bool {
    text.contains("{{") || text.contains("{%")
}

fn error(code: Code, pos: Pos, message: String, hint: Option<String>) -> Diagnostic {
    Diagnostic {
        code,
        severity: Severity::Error,
        message,
        hint,
        line: pos.line.max(1),
        column: pos.column.max(1),
    }
}

fn entry<'a>(node: &'a Node, key: &str) -> Option<&'a Node> {
    match &node.value {
        Value::Map(entries) => entries
            .iter()
            .find(|(k, _)| k.text.as_deref() == Some(key))
            .map(|(_, value)| value),
        _ => None,
    }
}

fn entries<'a>(node: &'a Node, key: &str) -> Vec<(&'a str, &'a Node)> {
    match entry(node, key).map(|node| &node.value) {
        Some(Value::Map(entries)) => entries
            .iter()
            .filter_map(|(k, value)| Some((k.text.as_deref()?, value)))
            .collect(),
        _ => Vec::new(),
    }
}

fn string_at<'a>(node: &'a Node, key: &str) -> Option<&'a str> {
    match &entry(node, key)?.value {
        Value::String(text) => Some(text),
        _ => None,
    }
}
