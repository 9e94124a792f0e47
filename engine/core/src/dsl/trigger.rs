//! Triggers: `cron` (6 or 7 fields, IANA timezone, catch-up and overlap
//! policies), `webhook` and `kafka`; each may have an `id` and an `input`
//! (a template tree mapping what fired to the run input).

use std::str::FromStr;

use super::diagnostic::Code;
use super::fields::{self, Sink, Spec, suggest};
use super::yaml::{Node, Pos, Value};
use crate::template::template_references;
use crate::workflow::{CatchUp, Overlap, Trigger, trigger_ids};

const KINDS: [&str; 3] = ["cron", "webhook", "kafka"];
const CRON_KEYS: &[&str] = &["id", "cron", "timezone", "input", "catch_up", "overlap"];
const WEBHOOK_KEYS: &[&str] = &["id", "webhook", "input"];
const KAFKA_KEYS: &[&str] = &["id", "kafka", "input"];

/// Longest trigger id, in bytes: with the workflow name
/// ([`super::NAME_BYTES_MAX`]) and an RFC 3339 instant it keeps a cron
/// fire's run key (`cron:<workflow>:<trigger>:<instant>`) within the
/// idempotency key limit of 255 bytes.
pub const TRIGGER_ID_BYTES_MAX: usize = 64;
const _: () = assert!(
    "cron:".len()
        + super::NAME_BYTES_MAX
        + 1
        + TRIGGER_ID_BYTES_MAX
        + 1
        + "2026-01-01T00:00:00.000000000+00:00".len()
        <= 255
);

/// Variables a trigger's `input` templates may read, by kind.
pub const CRON_INPUT_ROOTS: [&str; 1] = ["trigger"];
pub const WEBHOOK_INPUT_ROOTS: [&str; 3] = ["body", "headers", "trigger"];
pub const KAFKA_INPUT_ROOTS: [&str; 2] = ["message", "trigger"];

/// Reads one entry of `triggers`.
pub(crate) fn trigger(sink: &mut Sink, node: &Node) -> Option<Trigger> {
    let Value::Map(entries) = &node.value else {
        let message = format!(
            "a trigger must be a mapping such as `cron: \"0 0 2 * * *\"`, found {}",
            node.value.kind()
        );
        sink.error(Code::InvalidTrigger, node.pos, message, None);
        return None;
    };
    let kinds: Vec<&str> = KINDS
        .into_iter()
        .filter(|kind| {
            entries
                .iter()
                .any(|(key, _)| key.text.as_deref() == Some(kind))
        })
        .collect();
    match kinds.as_slice() {
        ["cron"] => cron(sink, node),
        ["webhook"] => webhook(sink, node),
        ["kafka"] => kafka(sink, node),
        [] => {
            // Unknown keys are likely misspelt kinds: let the key check suggest one.
            let _ = fields::fields(sink, node, Spec::new("a trigger", &KINDS, &[], node.pos));
            let message = "a trigger needs one of `cron`, `webhook` or `kafka`";
            sink.error(Code::InvalidTrigger, node.pos, message, None);
            None
        }
        several => {
            let message = format!(
                "a trigger has several kinds ({}); write one trigger per entry",
                fields::quoted_list(several.iter().copied())
            );
            sink.error(Code::InvalidTrigger, node.pos, message, None);
            None
        }
    }
}

fn cron(sink: &mut Sink, node: &Node) -> Option<Trigger> {
    let fields = fields::fields(
        sink,
        node,
        Spec::new("a cron trigger", CRON_KEYS, &["cron"], node.pos),
    )?;
    let id = trigger_id(sink, &fields);
    let schedule_node = fields.get("cron")?;
    let schedule = fields::string(sink, schedule_node, "`cron`")
        .and_then(|text| check_schedule(sink, schedule_node, text));
    let timezone = match fields.get("timezone") {
        Some(zone_node) => Some(timezone(sink, zone_node)?),
        None => None,
    };
    let catch_up = match fields.get("catch_up") {
        Some(node) => policy(sink, node, "`catch_up`", &CatchUp::ALL.map(CatchUp::name))
            .and_then(CatchUp::from_name),
        None => Some(CatchUp::default()),
    };
    let overlap = match fields.get("overlap") {
        Some(node) => policy(sink, node, "`overlap`", &Overlap::ALL.map(Overlap::name))
            .and_then(Overlap::from_name),
        None => Some(Overlap::default()),
    };
    Some(Trigger::Cron {
        id: id?,
        schedule: schedule?,
        timezone,
        input: input(&fields),
        catch_up: catch_up?,
        overlap: overlap?,
    })
}

/// The optional `id`: a name like a workflow's.
fn trigger_id(sink: &mut Sink, fields: &fields::Fields<'_>) -> Option<Option<String>> {
    let Some(node) = fields.get("id") else {
        return Some(None);
    };
    let text = fields::string(sink, node, "`id`")?;
    if text.len() > TRIGGER_ID_BYTES_MAX {
        let message = format!(
            "trigger id is {} bytes long, more than the limit of {TRIGGER_ID_BYTES_MAX}",
            text.len()
        );
        let hint = Some("a trigger id names it in keys and URLs: keep it short".to_owned());
        sink.error(Code::LimitExceeded, node.pos, message, hint);
        return None;
    }
    if !super::parse::is_valid_name(text) {
        let message = format!("trigger id `{text}` is not a valid name");
        let hint =
            Some("use lowercase letters, digits, `_`, `.` and `-`, e.g. `nightly`".to_owned());
        sink.error(Code::InvalidTrigger, node.pos, message, hint);
        return None;
    }
    Some(Some(text.to_owned()))
}

/// The optional `input` template tree (Null when absent).
fn input(fields: &fields::Fields<'_>) -> serde_json::Value {
    fields
        .get("input")
        .map(Node::to_json)
        .unwrap_or(serde_json::Value::Null)
}

/// One of a fixed set of names.
fn policy<'a>(sink: &mut Sink, node: &'a Node, what: &str, known: &[&str]) -> Option<&'a str> {
    let text = fields::string(sink, node, what)?;
    if known.contains(&text) {
        return Some(text);
    }
    let message = format!(
        "{what} `{text}` is not one of {}",
        fields::quoted_list(known.iter().copied())
    );
    let hint = suggest(text, known.iter().copied()).map(|best| format!("did you mean `{best}`?"));
    sink.error(Code::InvalidTrigger, node.pos, message, hint);
    None
}

fn check_schedule(sink: &mut Sink, node: &Node, text: &str) -> Option<String> {
    let field_count = text.split_whitespace().count();
    if field_count == 5 {
        let message =
            format!("cron schedule `{text}` has 5 fields; schedules start with a seconds field");
        let hint = Some(format!("prepend the seconds: `0 {text}`"));
        sink.error(Code::InvalidCron, node.pos, message, hint);
        return None;
    }
    if !(6..=7).contains(&field_count) {
        let message = format!("cron schedule `{text}` has {field_count} fields; expected 6 or 7");
        let hint = Some(
            "sec min hour day-of-month month day-of-week [year], e.g. `0 0 2 * * *`".to_owned(),
        );
        sink.error(Code::InvalidCron, node.pos, message, hint);
        return None;
    }
    match cron::Schedule::try_from(text) {
        Ok(_) => Some(text.to_owned()),
        Err(error) => {
            // The crate's message repeats the expression with a caret; keep its last line.
            let full = error.to_string();
            let reason = full
                .lines()
                .rev()
                .find(|line| !line.trim().is_empty())
                .unwrap_or("invalid");
            let message = format!("invalid cron schedule `{text}`: {}", reason.trim());
            sink.error(Code::InvalidCron, node.pos, message, None);
            None
        }
    }
}

fn timezone(sink: &mut Sink, node: &Node) -> Option<String> {
    let text = fields::string(sink, node, "`timezone`")?;
    match chrono_tz::Tz::from_str(text) {
        Ok(zone) => Some(zone.name().to_owned()),
        Err(_) => {
            let names = chrono_tz::TZ_VARIANTS.iter().map(|zone| zone.name());
            let hint = match suggest(text, names) {
                Some(best) => format!("did you mean `{best}`?"),
                None => "use an IANA name such as `Europe/Berlin` or `UTC`".to_owned(),
            };
            sink.error(
                Code::UnknownTimezone,
                node.pos,
                format!("unknown timezone `{text}`"),
                Some(hint),
            );
            None
        }
    }
}

fn webhook(sink: &mut Sink, node: &Node) -> Option<Trigger> {
    let outer = fields::fields(
        sink,
        node,
        Spec::new("a webhook trigger", WEBHOOK_KEYS, &[], node.pos),
    )?;
    let id = trigger_id(sink, &outer);
    let (key, inner) = outer.entry("webhook")?;
    let fields = fields::fields(
        sink,
        inner,
        Spec::new("`webhook`", &["secret_env"], &["secret_env"], key.pos),
    )?;
    let secret_node = fields.get("secret_env")?;
    let secret_env = fields::string(sink, secret_node, "`secret_env`")?;
    // The same rule as `schemas/workflow.schema.json`: a POSIX-portable name.
    let valid = secret_env.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && secret_env
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        let message = format!("`secret_env` `{secret_env}` is not an environment variable name");
        let hint = Some("use letters, digits and `_`, e.g. `SHOP_WEBHOOK_SECRET`".to_owned());
        sink.error(Code::InvalidTrigger, secret_node.pos, message, hint);
        return None;
    }
    Some(Trigger::Webhook {
        id: id?,
        secret_env: secret_env.to_owned(),
        input: input(&outer),
    })
}

fn kafka(sink: &mut Sink, node: &Node) -> Option<Trigger> {
    let outer = fields::fields(
        sink,
        node,
        Spec::new("a kafka trigger", KAFKA_KEYS, &[], node.pos),
    )?;
    let id = trigger_id(sink, &outer);
    let (key, inner) = outer.entry("kafka")?;
    let fields = fields::fields(
        sink,
        inner,
        Spec::new(
            "`kafka`",
            &["topic", "group", "dead_letter_topic"],
            &["topic"],
            key.pos,
        ),
    )?;
    let topic = topic_name(sink, fields.get("topic")?, "`topic`");
    let group = match fields.get("group") {
        Some(group_node) => Some(fields::string(sink, group_node, "`group`")?.to_owned()),
        None => None,
    };
    let dead_letter_topic = match fields.get("dead_letter_topic") {
        Some(node) => Some(topic_name(sink, node, "`dead_letter_topic`")?.to_owned()),
        None => None,
    };
    Some(Trigger::Kafka {
        id: id?,
        topic: topic?.to_owned(),
        group,
        input: input(&outer),
        dead_letter_topic,
    })
}

/// Whether any string in `value` is a template.
fn has_template(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::String(text) => {
            text.contains("{{") || text.contains("{%") || text.contains("{#")
        }
        serde_json::Value::Array(items) => items.iter().any(has_template),
        serde_json::Value::Object(entries) => entries.values().any(has_template),
        _ => false,
    }
}

/// Longest Kafka topic name the brokers accept.
pub const TOPIC_CHARS_MAX: usize = 249;

/// A Kafka topic name: 1 to 249 of `a-z A-Z 0-9 . _ -`.
fn topic_name<'a>(sink: &mut Sink, node: &'a Node, what: &str) -> Option<&'a str> {
    let text = fields::string(sink, node, what)?;
    let legal = |c: char| c.is_ascii_alphanumeric() || "._-".contains(c);
    if text.is_empty() || text.len() > TOPIC_CHARS_MAX || !text.chars().all(legal) {
        let message = format!("{what} `{text}` is not a Kafka topic name");
        let hint = Some(format!(
            "use 1 to {TOPIC_CHARS_MAX} letters, digits, `.`, `_` and `-`"
        ));
        sink.error(Code::InvalidTrigger, node.pos, message, hint);
        return None;
    }
    Some(text)
}

/// Checks what needs every trigger at once: ids are unique (defaults
/// included, see `Workflow::triggers_with_ids`), and each `input` template
/// compiles and reads only what its kind puts in scope.
pub(crate) fn check_triggers(sink: &mut Sink, parsed: &[(&Node, Trigger)]) {
    let triggers: Vec<Trigger> = parsed.iter().map(|(_, trigger)| trigger.clone()).collect();
    let mut seen = std::collections::BTreeSet::new();
    for (id, (node, trigger)) in trigger_ids(&triggers).into_iter().zip(parsed) {
        if !seen.insert(id.clone()) {
            let message = format!("two triggers have the id `{id}`");
            let hint = Some("give each trigger of the same kind its own `id:`".to_owned());
            sink.error(Code::InvalidTrigger, node.pos, message, hint);
        }
        let roots: &[&str] = match trigger {
            Trigger::Cron { .. } => &CRON_INPUT_ROOTS,
            Trigger::Webhook { .. } => &WEBHOOK_INPUT_ROOTS,
            Trigger::Kafka { .. } => &KAFKA_INPUT_ROOTS,
        };
        if let Value::Map(entries) = &node.value
            && let Some((_, input)) = entries
                .iter()
                .find(|(key, _)| key.text.as_deref() == Some("input"))
        {
            check_input_templates(sink, trigger.kind(), roots, input);
        }
    }
}

fn check_input_templates(sink: &mut Sink, kind: &str, roots: &[&str], node: &Node) {
    match &node.value {
        Value::String(text)
            if text.contains("{{") || text.contains("{%") || text.contains("{#") =>
        {
            let references = match template_references(text) {
                Ok(references) => references,
                Err(error) => {
                    sink.error(Code::TemplateSyntax, node.pos, error.to_string(), None);
                    return;
                }
            };
            for reference in references {
                let root = reference.split('.').next().unwrap_or_default();
                if roots.contains(&root) || super::validate::is_template_global(root) {
                    continue;
                }
                let message =
                    format!("`{reference}`: a {kind} trigger's `input` cannot read `{root}`");
                let hint = Some(format!(
                    "in scope: {}",
                    fields::quoted_list(roots.iter().copied())
                ));
                sink.error(Code::UnknownScopeRoot, node.pos, message, hint);
            }
        }
        Value::Seq(items) => items
            .iter()
            .for_each(|item| check_input_templates(sink, kind, roots, item)),
        Value::Map(entries) => entries
            .iter()
            .for_each(|(_, value)| check_input_templates(sink, kind, roots, value)),
        _ => {}
    }
}

/// Most violations reported for one trigger's `input`.
const INPUT_ERRORS_REPORTED_MAX: usize = 5;

/// Compiles the (meta-valid) input schema and checks each cron trigger's
/// `input` against it: a cron run cannot be given another input later, so a
/// mismatch would fail every scheduled run. An input with templates is
/// known only when the schedule fires; the run start checks it then.
pub(crate) fn check_inputs(
    sink: &mut Sink,
    schema: &serde_json::Value,
    schema_pos: Pos,
    triggers: Option<&Node>,
) {
    let validator = match jsonschema::draft202012::new(schema) {
        Ok(validator) => validator,
        Err(error) => {
            let message = format!("`input` schema cannot be compiled: {error}");
            sink.error(Code::InvalidInputSchema, schema_pos, message, None);
            return;
        }
    };
    let Some(Node {
        value: Value::Seq(items),
        ..
    }) = triggers
    else {
        return;
    };
    for item in items {
        let Value::Map(entries) = &item.value else {
            continue;
        };
        let entry = |name: &str| {
            entries
                .iter()
                .find(|(key, _)| key.text.as_deref() == Some(name))
        };
        let Some((cron_key, _)) = entry("cron") else {
            continue;
        };
        let input_node = entry("input").map(|(_, node)| node);
        let input = input_node.map_or(serde_json::Value::Null, Node::to_json);
        // A run starts with the schema's defaults filled in: check what it would see.
        let input = crate::defaults::with_defaults(Some(schema), input);
        if has_template(&input) {
            // Known only when it fires: `start_run` checks the rendered input.
            continue;
        }
        for error in validator
            .iter_errors(&input)
            .take(INPUT_ERRORS_REPORTED_MAX)
        {
            let pointer = error.instance_path().to_string();
            let pos = input_node.map_or(cron_key.pos, |node| super::parse::locate(node, &pointer));
            let at = if pointer.is_empty() {
                String::new()
            } else {
                format!(" at `{pointer}`")
            };
            let message =
                format!("the cron trigger's input does not match the `input` schema{at}: {error}");
            let hint = (input.is_null())
                .then(|| "give the trigger an `input:` that the schema accepts".to_owned());
            sink.error(Code::TriggerInputInvalid, pos, message, hint);
        }
    }
}
