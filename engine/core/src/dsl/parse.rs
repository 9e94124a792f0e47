//! The positioned YAML tree to the [`Workflow`] model: top-level keys,
//! defaults, retry policies, triggers and the input schema. Steps are in
//! `step.rs`; cross-step checks (graph, templates) are in `validate.rs`.

use std::collections::BTreeMap;

use serde_json::Value as Json;

use super::diagnostic::Code;
use super::fields::{self, Sink, Spec, suggest};
use super::habits::Place;
use super::step;
use super::yaml::{Node, Pos, Value};
use crate::workflow::{Backoff, RetryPolicy, Trigger, Workflow};

/// Longest workflow name, in bytes.
pub const NAME_BYTES_MAX: usize = 128;
/// Most triggers on one workflow.
pub const TRIGGERS_MAX: usize = 32;
/// Most attempts a retry policy may ask for (the first attempt included).
pub const RETRY_MAX_ATTEMPTS_MAX: u64 = 100;
/// Largest growth factor of exponential backoff.
pub const RETRY_MULTIPLIER_MAX: f64 = 10.0;
/// Most meta-schema violations reported for one `input` schema.
const SCHEMA_ERRORS_REPORTED_MAX: usize = 10;

const ROOT_KEYS: &[&str] = &[
    "name",
    "description",
    "input",
    "defaults",
    "timeout",
    "vars",
    "triggers",
    "steps",
    "finally",
    "output",
];
const DEFAULTS_KEYS: &[&str] = &["timeout", "retry"];
const RETRY_KEYS: &[&str] = &[
    "max_attempts",
    "backoff",
    "initial_interval",
    "max_interval",
    "multiplier",
    "jitter",
];

/// Source positions that `validate.rs` needs after parsing.
#[derive(Debug, Default)]
pub(crate) struct Sources<'a> {
    pub steps: BTreeMap<String, step::StepSource<'a>>,
    pub output: Option<&'a Node>,
    /// Each `vars` entry's template tree.
    pub vars: BTreeMap<String, &'a Node>,
}

/// Defaults that every step inherits.
#[derive(Debug, Default, Clone)]
pub(crate) struct Defaults {
    pub timeout_ms: Option<u64>,
    pub retry: RetryPolicy,
}

/// Fields of a `retry:` mapping that were written; the rest are inherited.
#[derive(Debug, Default, Clone)]
pub(crate) struct RetryPatch {
    pub max_attempts: Option<u32>,
    pub backoff: Option<Backoff>,
    pub initial_interval_ms: Option<u64>,
    pub max_interval_ms: Option<u64>,
    pub multiplier: Option<f64>,
    pub jitter: Option<f64>,
}

impl RetryPatch {
    /// `base` with every written field replaced.
    pub fn apply(&self, base: &RetryPolicy) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.max_attempts.unwrap_or(base.max_attempts),
            backoff: self.backoff.unwrap_or(base.backoff),
            initial_interval_ms: self.initial_interval_ms.unwrap_or(base.initial_interval_ms),
            max_interval_ms: self.max_interval_ms.unwrap_or(base.max_interval_ms),
            multiplier: self.multiplier.unwrap_or(base.multiplier),
            jitter: self.jitter.unwrap_or(base.jitter),
        }
    }
}

/// Reads the whole document; the workflow is best effort when `sink` has errors.
pub(crate) fn document<'a>(root: &'a Node, sink: &mut Sink) -> (Workflow, Sources<'a>) {
    let mut workflow = Workflow {
        name: String::new(),
        description: None,
        input: None,
        timeout_ms: None,
        vars: BTreeMap::new(),
        triggers: Vec::new(),
        steps: BTreeMap::new(),
        output: None,
    };
    let mut sources = Sources::default();
    if root.value == Value::Null {
        sink.error(
            Code::MissingKey,
            root.pos,
            "the workflow is empty",
            Some("a workflow needs at least `name` and `steps`".to_owned()),
        );
        return (workflow, sources);
    }
    let spec = Spec {
        allow_extensions: true,
        place: Place::Root,
        ..Spec::new("the workflow", ROOT_KEYS, &["name", "steps"], root.pos)
    };
    let Some(fields) = fields::fields(sink, root, spec) else {
        return (workflow, sources);
    };
    if let Some(node) = fields.get("name") {
        workflow.name =
            name(sink, node, Code::InvalidName, "the workflow name").unwrap_or_default();
    }
    if let Some(node) = fields.get("description") {
        workflow.description = fields::string(sink, node, "`description`").map(str::to_owned);
    }
    if let Some(node) = fields.get("input") {
        workflow.input = input_schema(sink, node);
    }
    let defaults = fields
        .get("defaults")
        .map(|node| defaults(sink, node))
        .unwrap_or_default();
    if let Some(node) = fields.get("timeout") {
        workflow.timeout_ms = fields::duration(sink, node, "`timeout`", true);
    }
    if let Some(node) = fields.get("vars") {
        sources.vars = vars(sink, node);
        workflow.vars = sources
            .vars
            .iter()
            .map(|(name, node)| (name.clone(), node.to_json()))
            .collect();
    }
    if let Some(node) = fields.get("triggers") {
        workflow.triggers = triggers(sink, node);
    }
    if let (Some(schema), Some(schema_node)) = (&workflow.input, fields.get("input")) {
        let triggers = fields.get("triggers");
        super::trigger::check_inputs(sink, schema, schema_node.pos, triggers);
    }
    if let Some((key, node)) = fields.entry("steps") {
        let (steps, step_sources) = step::steps(sink, key.pos, node, &defaults);
        workflow.steps = steps;
        sources.steps = step_sources;
    }
    if let Some((key, node)) = fields.entry("finally") {
        let (steps, step_sources) = step::steps(sink, key.pos, node, &defaults);
        step::merge_finally(
            sink,
            &mut workflow.steps,
            &mut sources.steps,
            steps,
            step_sources,
        );
    }
    if let Some(node) = fields.get("output") {
        workflow.output = Some(node.to_json());
        sources.output = Some(node);
    }
    (workflow, sources)
}

/// Checks a name against `[a-z0-9][a-z0-9_.-]*` and [`NAME_BYTES_MAX`].
pub(crate) fn name(sink: &mut Sink, node: &Node, code: Code, what: &str) -> Option<String> {
    let text = fields::string(sink, node, what)?;
    if text.len() > NAME_BYTES_MAX {
        sink.error(
            Code::LimitExceeded,
            node.pos,
            format!(
                "{what} is {} bytes long, more than the limit of {NAME_BYTES_MAX}",
                text.len()
            ),
            None,
        );
        return None;
    }
    if !is_valid_name(text) {
        let hint = match valid_name_from(text) {
            Some(fixed) => {
                format!("use lowercase letters, digits, `_`, `.` and `-`, e.g. `{fixed}`")
            }
            None => {
                "use lowercase letters, digits, `_`, `.` and `-`, starting with a letter or digit"
                    .to_owned()
            }
        };
        sink.error(
            code,
            node.pos,
            format!("{what} `{text}` must match `[a-z0-9][a-z0-9_.-]*`"),
            Some(hint),
        );
        return None;
    }
    Some(text.to_owned())
}

/// The valid name closest to what was written (`Order Fulfilment` →
/// `order-fulfilment`), for hints; `None` when there is none.
fn valid_name_from(text: &str) -> Option<String> {
    let mapped: String = text
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    let trimmed = mapped.trim_start_matches(|c: char| !c.is_ascii_alphanumeric());
    let fixed: String = trimmed.chars().take(NAME_BYTES_MAX).collect();
    is_valid_name(&fixed).then_some(fixed)
}

pub(crate) fn is_valid_name(text: &str) -> bool {
    let mut chars = text.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.-".contains(c))
}

/// Most entries in `vars`.
pub const VARS_MAX: usize = 64;

/// `vars:` a mapping from a name (`[a-z][a-z0-9_]*`, as step ids: read as
/// `vars.NAME`) to a template tree; the templates are checked in `validate.rs`.
fn vars<'a>(sink: &mut Sink, node: &'a Node) -> BTreeMap<String, &'a Node> {
    let mut vars = BTreeMap::new();
    let Value::Map(entries) = &node.value else {
        let message = format!(
            "`vars` must be a mapping from a name to a value or template, found {}",
            node.value.kind()
        );
        sink.error(Code::WrongType, node.pos, message, None);
        return vars;
    };
    if entries.len() > VARS_MAX {
        let message = format!(
            "{} `vars`, more than the limit of {VARS_MAX}",
            entries.len()
        );
        sink.error(Code::LimitExceeded, node.pos, message, None);
    }
    for (key, value) in entries.iter().take(VARS_MAX) {
        let Some(name) = fields::plain_key(sink, key) else {
            continue;
        };
        if vars.contains_key(name) {
            let message = format!("duplicate key `{name}` in `vars`");
            sink.error(Code::DuplicateKey, key.pos, message, None);
            continue;
        }
        if !step::is_valid_step_id(name) {
            let message = format!(
                "`vars` name `{name}` must match `[a-z][a-z0-9_]*` (at most {} bytes)",
                step::STEP_ID_BYTES_MAX
            );
            let hint = step::valid_step_id_from(name).map(|fixed| {
                format!("templates read it as `vars.<name>`, where `-` or `.` would not parse; try `{fixed}`")
            });
            sink.error(Code::InvalidVar, key.pos, message, hint);
            continue;
        }
        vars.insert(name.to_owned(), value);
    }
    vars
}

fn defaults(sink: &mut Sink, node: &Node) -> Defaults {
    let mut defaults = Defaults::default();
    let Some(fields) = fields::fields(
        sink,
        node,
        Spec::new("`defaults`", DEFAULTS_KEYS, &[], node.pos),
    ) else {
        return defaults;
    };
    if let Some(node) = fields.get("timeout") {
        defaults.timeout_ms = fields::duration(sink, node, "`defaults.timeout`", true);
    }
    if let Some(node) = fields.get("retry") {
        let patch = retry_patch(sink, node, "`defaults.retry`");
        defaults.retry = patch.apply(&RetryPolicy::default());
        check_intervals(sink, node.pos, &defaults.retry);
    }
    defaults
}

/// Reads a `retry:` mapping field by field, reporting each bad value.
pub(crate) fn retry_patch(sink: &mut Sink, node: &Node, what: &str) -> RetryPatch {
    let mut patch = RetryPatch::default();
    let Some(fields) = fields::fields(sink, node, Spec::new(what, RETRY_KEYS, &[], node.pos))
    else {
        return patch;
    };
    if let Some(node) = fields.get("max_attempts") {
        patch.max_attempts = fields::unsigned(sink, node, "`max_attempts`").and_then(|attempts| {
            if (1..=RETRY_MAX_ATTEMPTS_MAX).contains(&attempts) {
                u32::try_from(attempts).ok()
            } else {
                let message = format!("`max_attempts` is {attempts}; it must be between 1 and {RETRY_MAX_ATTEMPTS_MAX}");
                let hint = Some("1 means a single attempt, no retry".to_owned());
                sink.error(Code::InvalidRetry, node.pos, message, hint);
                None
            }
        });
    }
    if let Some(node) = fields.get("backoff") {
        patch.backoff = fields::string(sink, node, "`backoff`").and_then(|text| match text {
            "fixed" => Some(Backoff::Fixed),
            "exponential" => Some(Backoff::Exponential),
            other => {
                let message =
                    format!("`backoff` is `{other}`; it must be `fixed` or `exponential`");
                let hint = suggest(other, ["fixed", "exponential"])
                    .map(|best| format!("did you mean `{best}`?"));
                sink.error(Code::InvalidRetry, node.pos, message, hint);
                None
            }
        });
    }
    if let Some(node) = fields.get("initial_interval") {
        patch.initial_interval_ms = fields::duration(sink, node, "`initial_interval`", false);
    }
    if let Some(node) = fields.get("max_interval") {
        patch.max_interval_ms = fields::duration(sink, node, "`max_interval`", false);
    }
    if let Some(node) = fields.get("multiplier") {
        patch.multiplier = bounded_float(sink, node, "`multiplier`", 1.0, RETRY_MULTIPLIER_MAX);
    }
    if let Some(node) = fields.get("jitter") {
        patch.jitter = bounded_float(sink, node, "`jitter`", 0.0, 1.0);
    }
    patch
}

fn bounded_float(sink: &mut Sink, node: &Node, what: &str, low: f64, high: f64) -> Option<f64> {
    let number = fields::float(sink, node, what)?;
    if (low..=high).contains(&number) {
        Some(number)
    } else {
        let message = format!("{what} is {number}; it must be between {low:?} and {high:?}");
        sink.error(Code::InvalidRetry, node.pos, message, None);
        None
    }
}

/// A merged policy must not start above its own cap.
pub(crate) fn check_intervals(sink: &mut Sink, pos: Pos, policy: &RetryPolicy) {
    if policy.max_interval_ms < policy.initial_interval_ms {
        let message = format!(
            "`max_interval` ({} ms) is shorter than `initial_interval` ({} ms)",
            policy.max_interval_ms, policy.initial_interval_ms
        );
        sink.error(
            Code::InvalidRetry,
            pos,
            message,
            Some("raise `max_interval` or lower `initial_interval`".to_owned()),
        );
    }
}

fn input_schema(sink: &mut Sink, node: &Node) -> Option<Json> {
    let schema = node.to_json();
    if !matches!(schema, Json::Object(_) | Json::Bool(_)) {
        let message = format!(
            "`input` must be a JSON Schema (a mapping or a boolean), found {}",
            node.value.kind()
        );
        sink.error(Code::InvalidInputSchema, node.pos, message, None);
        return None;
    }
    if let Some(declared) = schema.get("$schema").and_then(Json::as_str)
        && !declared.contains("2020-12")
    {
        let message = format!(
            "`input` declares `$schema: {declared}`; only JSON Schema 2020-12 is supported"
        );
        sink.error(Code::InvalidInputSchema, node.pos, message, None);
        return None;
    }
    let validator = jsonschema::draft202012::meta::validator();
    let mut valid = true;
    for error in validator
        .iter_errors(&schema)
        .take(SCHEMA_ERRORS_REPORTED_MAX)
    {
        valid = false;
        let pointer = error.instance_path().to_string();
        let pos = locate(node, &pointer);
        let at = if pointer.is_empty() {
            String::new()
        } else {
            format!(" at `{pointer}`")
        };
        sink.error(
            Code::InvalidInputSchema,
            pos,
            format!("`input` is not a valid JSON Schema{at}: {error}"),
            None,
        );
    }
    valid.then_some(schema)
}

/// The node a JSON pointer names inside `node`, or the deepest one found.
pub(crate) fn locate(node: &Node, pointer: &str) -> Pos {
    let mut current = node;
    for token in pointer.split('/').skip(1) {
        let token = token.replace("~1", "/").replace("~0", "~");
        let next = match &current.value {
            Value::Map(entries) => entries
                .iter()
                .find(|(key, _)| key.text.as_deref() == Some(token.as_str()))
                .map(|(_, value)| value),
            Value::Seq(items) => token
                .parse::<usize>()
                .ok()
                .and_then(|index| items.get(index)),
            _ => None,
        };
        match next {
            Some(next) => current = next,
            None => break,
        }
    }
    current.pos
}

fn triggers(sink: &mut Sink, node: &Node) -> Vec<Trigger> {
    let Some(items) = fields::list(sink, node, "`triggers`") else {
        return Vec::new();
    };
    if items.len() > TRIGGERS_MAX {
        let message = format!(
            "{} triggers, more than the limit of {TRIGGERS_MAX}",
            items.len()
        );
        sink.error(Code::LimitExceeded, node.pos, message, None);
    }
    let parsed: Vec<(&Node, Trigger)> = items
        .iter()
        .take(TRIGGERS_MAX)
        .filter_map(|item| Some((item, super::trigger::trigger(sink, item)?)))
        .collect();
    super::trigger::check_triggers(sink, &parsed);
    parsed.into_iter().map(|(_, trigger)| trigger).collect()
}
