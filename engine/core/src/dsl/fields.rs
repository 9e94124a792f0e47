//! Walking the positioned YAML tree: a sink collecting diagnostics, typed
//! accessors that report instead of failing, and key checks with suggestions.

use super::diagnostic::{Code, Diagnostic, Severity};
use super::duration::{self, DURATION_MS_MAX, parse_duration_ms};
use super::habits::{self, Place};
use super::yaml::{Key, Node, Pos, Value};

/// Longest name for which a "did you mean" suggestion is computed.
const SUGGEST_BYTES_MAX: usize = 64;

/// Collects diagnostics; nothing stops at the first problem.
#[derive(Debug, Default)]
pub(crate) struct Sink {
    pub diagnostics: Vec<Diagnostic>,
}

impl Sink {
    pub fn error(
        &mut self,
        code: Code,
        pos: Pos,
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        self.push(code, Severity::Error, pos, message.into(), hint);
    }

    pub fn warning(
        &mut self,
        code: Code,
        pos: Pos,
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        self.push(code, Severity::Warning, pos, message.into(), hint);
    }

    fn push(
        &mut self,
        code: Code,
        severity: Severity,
        pos: Pos,
        message: String,
        hint: Option<String>,
    ) {
        let pos = if pos.line == 0 {
            Pos { line: 1, column: 1 }
        } else {
            pos
        };
        self.diagnostics.push(Diagnostic {
            code,
            severity,
            message,
            hint,
            line: pos.line,
            column: pos.column,
        });
    }
}

/// What a mapping may and must contain, and how to report it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Spec<'s> {
    /// Where we are, for messages: "the workflow", "step `fetch`".
    pub what: &'s str,
    pub known: &'s [&'s str],
    pub required: &'s [&'s str],
    pub unknown_code: Code,
    pub missing_code: Code,
    /// Where to report a missing key: the key that owns this mapping.
    pub anchor: Pos,
    /// Accept and ignore `x-*` keys (a home for YAML anchors, as in Compose files).
    pub allow_extensions: bool,
    /// Which habits of other tools to recognise in unknown keys.
    pub place: Place,
}

impl<'s> Spec<'s> {
    pub fn new(what: &'s str, known: &'s [&'s str], required: &'s [&'s str], anchor: Pos) -> Self {
        Spec {
            what,
            known,
            required,
            unknown_code: Code::UnknownKey,
            missing_code: Code::MissingKey,
            anchor,
            allow_extensions: false,
            place: Place::Other,
        }
    }
}

/// The entries of a checked mapping; for a duplicated key the first one counts.
#[derive(Debug)]
pub(crate) struct Fields<'a> {
    entries: Vec<(&'a str, &'a Key, &'a Node)>,
}

impl<'a> Fields<'a> {
    pub fn get(&self, name: &str) -> Option<&'a Node> {
        self.entry(name).map(|(_, node)| node)
    }

    pub fn entry(&self, name: &str) -> Option<(&'a Key, &'a Node)> {
        self.entries
            .iter()
            .find(|(key, _, _)| *key == name)
            .map(|(_, key, node)| (*key, *node))
    }

    pub fn has(&self, name: &str) -> bool {
        self.entry(name).is_some()
    }
}

/// Checks a mapping against `spec`: reports non-mappings, duplicate keys,
/// unknown keys (with a suggestion) and missing required keys.
pub(crate) fn fields<'a>(sink: &mut Sink, node: &'a Node, spec: Spec<'_>) -> Option<Fields<'a>> {
    let Value::Map(entries) = &node.value else {
        sink.error(
            Code::WrongType,
            node.pos,
            format!(
                "{} must be a mapping, found {}",
                spec.what,
                node.value.kind()
            ),
            None,
        );
        return None;
    };
    let mut fields = Fields {
        entries: Vec::new(),
    };
    for (key, value) in entries {
        let Some(name) = plain_key(sink, key) else {
            continue;
        };
        if let Some((first, _)) = fields.entry(name) {
            sink.error(
                Code::DuplicateKey,
                key.pos,
                format!("duplicate key `{name}` in {}", spec.what),
                Some(format!(
                    "first defined at line {}, column {}",
                    first.pos.line, first.pos.column
                )),
            );
            continue;
        }
        if spec.allow_extensions && name.starts_with("x-") {
            continue;
        }
        if !spec.known.contains(&name) {
            sink.error(
                spec.unknown_code,
                key.pos,
                format!("unknown key `{name}` in {}", spec.what),
                Some(
                    habits::key_hint(spec.place, name, value)
                        .unwrap_or_else(|| unknown_hint(name, spec.known)),
                ),
            );
            continue;
        }
        fields.entries.push((name, key, value));
    }
    for required in spec.required {
        if !fields.has(required) {
            sink.error(
                spec.missing_code,
                spec.anchor,
                format!("{} is missing the required key `{required}`", spec.what),
                None,
            );
        }
    }
    Some(fields)
}

/// The text of a scalar key, or a diagnostic for a collection used as a key.
pub(crate) fn plain_key<'a>(sink: &mut Sink, key: &'a Key) -> Option<&'a str> {
    match &key.text {
        Some(text) => Some(text.as_str()),
        None => {
            sink.error(
                Code::WrongType,
                key.pos,
                "mapping keys must be plain strings",
                None,
            );
            None
        }
    }
}

/// "did you mean `needs`?" or the list of accepted keys.
pub(crate) fn unknown_hint(name: &str, known: &[&str]) -> String {
    match suggest(name, known.iter().copied()) {
        Some(best) => format!("did you mean `{best}`?"),
        None if known.is_empty() => "this mapping accepts no keys".to_owned(),
        None => format!("expected one of: {}", quoted_list(known.iter().copied())),
    }
}

/// The candidate closest to `name`, if it is close enough to be a likely typo.
pub(crate) fn suggest<'c>(
    name: &str,
    candidates: impl IntoIterator<Item = &'c str>,
) -> Option<&'c str> {
    // Edit distance is quadratic; a name this long is no typo of a short one.
    if name.len() > SUGGEST_BYTES_MAX {
        return None;
    }
    let lowered = name.to_lowercase();
    candidates
        .into_iter()
        .map(|candidate| (strsim::damerau_levenshtein(&lowered, candidate), candidate))
        .filter(|(distance, candidate)| {
            let longest = candidate.chars().count().max(lowered.chars().count());
            *distance <= (longest / 3).max(1) && *distance < longest
        })
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

pub(crate) fn quoted_list<'c>(items: impl IntoIterator<Item = &'c str>) -> String {
    items
        .into_iter()
        .map(|item| format!("`{item}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether a string value holds a `{{ }}` or `{% %}` template.
pub(crate) fn is_template(node: &Node) -> bool {
    matches!(&node.value, Value::String(text) if text.contains("{{") || text.contains("{%"))
}

/// Reports a template where the value must be known when the workflow is
/// registered (before any run exists to render it); true when it reported.
pub(crate) fn reject_template(sink: &mut Sink, node: &Node, what: &str) -> bool {
    if !is_template(node) {
        return false;
    }
    sink.error(
        Code::TemplateNotAllowed,
        node.pos,
        format!("{what} is a template; templates are not allowed here"),
        Some(format!(
            "{what} is read when the workflow is registered, before any run exists: write the value itself"
        )),
    );
    true
}

fn wrong_type(sink: &mut Sink, node: &Node, what: &str, expected: &str) {
    if reject_template(sink, node, what) {
        return;
    }
    sink.error(
        Code::WrongType,
        node.pos,
        format!("{what} must be {expected}, found {}", node.value.kind()),
        None,
    );
}

pub(crate) fn string<'a>(sink: &mut Sink, node: &'a Node, what: &str) -> Option<&'a str> {
    match &node.value {
        Value::String(text) => Some(text),
        _ => {
            wrong_type(sink, node, what, "a string");
            None
        }
    }
}

pub(crate) fn boolean(sink: &mut Sink, node: &Node, what: &str) -> Option<bool> {
    match &node.value {
        Value::Bool(flag) => Some(*flag),
        _ => {
            wrong_type(sink, node, what, "`true` or `false`");
            None
        }
    }
}

pub(crate) fn unsigned(sink: &mut Sink, node: &Node, what: &str) -> Option<u64> {
    match &node.value {
        Value::Number(number) if number.as_u64().is_some() => number.as_u64(),
        _ => {
            wrong_type(sink, node, what, "a whole number >= 0");
            None
        }
    }
}

pub(crate) fn float(sink: &mut Sink, node: &Node, what: &str) -> Option<f64> {
    match &node.value {
        Value::Number(number) => number.as_f64(),
        _ => {
            wrong_type(sink, node, what, "a number");
            None
        }
    }
}

pub(crate) fn list<'a>(sink: &mut Sink, node: &'a Node, what: &str) -> Option<&'a [Node]> {
    match &node.value {
        Value::Seq(items) => Some(items),
        _ => {
            wrong_type(sink, node, what, "a list");
            None
        }
    }
}

/// A duration string (`30s`, `1h30m`) in ms; `positive` rejects zero.
pub(crate) fn duration(sink: &mut Sink, node: &Node, what: &str, positive: bool) -> Option<u64> {
    let hint =
        || Some("write a number followed by d, h, m, s or ms, e.g. `30s` or `1h30m`".to_owned());
    if reject_template(sink, node, what) {
        return None;
    }
    let text = match &node.value {
        Value::String(text) => text,
        Value::Number(number) => {
            sink.error(
                Code::InvalidDuration,
                node.pos,
                format!("{what} must be a duration with a unit, found the number {number}"),
                Some(format!(
                    "write `{number}s` for seconds or `{number}ms` for milliseconds"
                )),
            );
            return None;
        }
        other => {
            sink.error(
                Code::InvalidDuration,
                node.pos,
                format!(
                    "{what} must be a duration such as `30s`, found {}",
                    other.kind()
                ),
                hint(),
            );
            return None;
        }
    };
    match parse_duration_ms(text) {
        Ok(0) if positive => {
            sink.error(
                Code::InvalidDuration,
                node.pos,
                format!("{what} must be longer than zero"),
                None,
            );
            None
        }
        Ok(ms) => Some(ms),
        Err(_) if text.trim().starts_with(['P', 'p']) => {
            let (message, hint) = match duration::iso8601_ms(text) {
                Some(ms) => (
                    format!("{what} `{}` is an ISO-8601 duration", text.trim()),
                    format!("imx writes it `{}`", duration::format_ms(ms)),
                ),
                None => (
                    format!("{what} `{}` is not a duration imx reads", text.trim()),
                    "ISO-8601 durations are not read; write a number followed by d, h, m, s or ms (no months or years), e.g. `30d`".to_owned(),
                ),
            };
            sink.error(Code::InvalidDuration, node.pos, message, Some(hint));
            None
        }
        Err(error) => {
            let hint = if matches!(error, super::duration::Error::TooLong { .. }) {
                Some(format!(
                    "the longest duration is {} days",
                    DURATION_MS_MAX / 86_400_000
                ))
            } else {
                hint()
            };
            sink.error(
                Code::InvalidDuration,
                node.pos,
                format!("invalid {what}: {error}"),
                hint,
            );
            None
        }
    }
}
