//! The shape of `with` for each step kind: required and known keys, and the
//! types of values that are not templates (templates are checked at render time).

use super::diagnostic::Code;
use super::fields::{self, Sink, Spec, is_template};
use super::parse::is_valid_name;
use super::yaml::{Node, Pos, Value};
use crate::workflow::StepKind;

/// HTTP methods an `http` step may use.
pub const HTTP_METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

/// (known keys, required keys) of `with` per kind; `None`: any value (noop).
fn keys(kind: StepKind) -> Option<(&'static [&'static str], &'static [&'static str])> {
    match kind {
        StepKind::Noop => None,
        StepKind::Fail => Some((&["message"], &[])),
        StepKind::Sleep => Some((&["duration"], &["duration"])),
        StepKind::Http => Some((
            &[
                "method", "url", "headers", "query", "json", "body", "timeout",
            ],
            &["method", "url"],
        )),
        StepKind::Exec => Some((&["command", "env", "cwd", "stdin"], &["command"])),
        StepKind::Approval => Some((&["role", "message"], &[])),
        StepKind::Workflow => Some((&["name", "input"], &["name"])),
        StepKind::Agent => Some((&["queue", "payload"], &["queue"])),
        StepKind::KafkaPublish => Some((&["topic", "key", "value", "headers"], &["topic"])),
    }
}

/// Checks `with` of a step of `kind`; `anchor` is the step id's position.
pub(crate) fn check(sink: &mut Sink, kind: StepKind, step: &str, anchor: Pos, with: Option<&Node>) {
    let Some((known, required)) = keys(kind) else {
        return;
    };
    let what = format!("`with` of {step} (uses {kind})");
    let Some(with) = with else {
        if !required.is_empty() {
            let message = format!(
                "{step} (uses {kind}) needs `with` with {}",
                fields::quoted_list(required.iter().copied())
            );
            sink.error(Code::InvalidWith, anchor, message, None);
        }
        return;
    };
    if with.value == Value::Null && required.is_empty() {
        return;
    }
    let spec = Spec {
        unknown_code: Code::InvalidWith,
        missing_code: Code::InvalidWith,
        ..Spec::new(&what, known, required, with.pos)
    };
    let Some(fields) = fields::fields(sink, with, spec) else {
        return;
    };
    let mut checker = Checker { sink, what: &what };
    match kind {
        StepKind::Fail => checker.string(fields.get("message")),
        StepKind::Sleep => checker.duration(fields.get("duration"), "`duration`", false),
        StepKind::Http => {
            checker.method(fields.get("method"));
            checker.url(fields.get("url"));
            checker.mapping(fields.get("headers"));
            checker.mapping(fields.get("query"));
            checker.string(fields.get("body"));
            checker.duration(fields.get("timeout"), "`timeout`", true);
            if let (Some(_), Some((key, _))) = (fields.get("json"), fields.entry("body")) {
                let message = format!("{what} has both `json` and `body`; send one of them");
                checker
                    .sink
                    .error(Code::InvalidWith, key.pos, message, None);
            }
        }
        StepKind::Exec => {
            checker.command(fields.get("command"));
            checker.mapping(fields.get("env"));
            checker.string(fields.get("cwd"));
        }
        StepKind::Approval => {
            checker.string(fields.get("role"));
            checker.string(fields.get("message"));
        }
        StepKind::Workflow => checker.workflow_name(fields.get("name")),
        StepKind::Agent => checker.string(fields.get("queue")),
        StepKind::KafkaPublish => {
            checker.string(fields.get("topic"));
            checker.string(fields.get("key"));
            checker.mapping(fields.get("headers"));
        }
        StepKind::Noop => {}
    }
}

struct Checker<'s, 'w> {
    sink: &'s mut Sink,
    what: &'w str,
}

impl Checker<'_, '_> {
    fn report(&mut self, node: &Node, message: String, hint: Option<String>) {
        self.sink.error(
            Code::InvalidWith,
            node.pos,
            format!("{}: {message}", self.what),
            hint,
        );
    }

    fn string(&mut self, node: Option<&Node>) {
        let Some(node) = node else { return };
        if !matches!(node.value, Value::String(_)) {
            self.report(
                node,
                format!("expected a string, found {}", node.value.kind()),
                None,
            );
        }
    }

    fn mapping(&mut self, node: Option<&Node>) {
        let Some(node) = node else { return };
        if !matches!(node.value, Value::Map(_)) && !is_template(node) {
            self.report(
                node,
                format!("expected a mapping, found {}", node.value.kind()),
                None,
            );
        }
    }

    fn duration(&mut self, node: Option<&Node>, key: &str, positive: bool) {
        let Some(node) = node else { return };
        if !is_template(node) {
            let _ = fields::duration(self.sink, node, key, positive);
        }
    }

    fn method(&mut self, node: Option<&Node>) {
        let Some(node) = node else { return };
        let Value::String(method) = &node.value else {
            return self.string(Some(node));
        };
        if !is_template(node) && !HTTP_METHODS.contains(&method.as_str()) {
            let upper = method.to_uppercase();
            let hint = if HTTP_METHODS.contains(&upper.as_str()) {
                format!("write `{upper}`")
            } else {
                format!("expected one of: {}", fields::quoted_list(HTTP_METHODS))
            };
            self.report(node, format!("unknown HTTP method `{method}`"), Some(hint));
        }
    }

    fn url(&mut self, node: Option<&Node>) {
        let Some(node) = node else { return };
        let Value::String(url) = &node.value else {
            return self.string(Some(node));
        };
        let starts_with_template = url.trim_start().starts_with("{{");
        if !starts_with_template && !url.starts_with("http://") && !url.starts_with("https://") {
            self.report(
                node,
                format!("`url` `{url}` must start with http:// or https://"),
                None,
            );
        }
    }

    fn command(&mut self, node: Option<&Node>) {
        let Some(node) = node else { return };
        match &node.value {
            Value::Seq(items) if items.is_empty() => {
                self.report(node, "`command` must not be empty".to_owned(), None);
            }
            Value::Seq(items) => {
                for item in items
                    .iter()
                    .filter(|item| !matches!(item.value, Value::String(_)))
                {
                    self.report(
                        item,
                        format!(
                            "`command` entries must be strings, found {}",
                            item.value.kind()
                        ),
                        None,
                    );
                }
            }
            _ if is_template(node) => {}
            other => {
                let hint = Some(
                    "write the program and its arguments as a list: `command: [echo, hello]`"
                        .to_owned(),
                );
                self.report(
                    node,
                    format!(
                        "`command` must be a list of strings, found {}",
                        other.kind()
                    ),
                    hint,
                );
            }
        }
    }

    fn workflow_name(&mut self, node: Option<&Node>) {
        let Some(node) = node else { return };
        let Value::String(name) = &node.value else {
            return self.string(Some(node));
        };
        if !is_template(node) && !is_valid_name(name) {
            self.report(
                node,
                format!("`{name}` is not a workflow name (`[a-z0-9][a-z0-9_.-]*`)"),
                None,
            );
        }
    }
}
