//! Triggers: `cron` (6 or 7 fields, IANA timezone), `webhook` and `kafka`.

use std::str::FromStr;

use super::diagnostic::Code;
use super::fields::{self, Sink, Spec, suggest};
use super::yaml::{Node, Pos, Value};
use crate::workflow::Trigger;

const KINDS: [&str; 3] = ["cron", "webhook", "kafka"];
const CRON_KEYS: &[&str] = &["cron", "timezone", "input"];

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
    let schedule_node = fields.get("cron")?;
    let schedule = fields::string(sink, schedule_node, "`cron`")
        .and_then(|text| check_schedule(sink, schedule_node, text));
    let timezone = match fields.get("timezone") {
        Some(zone_node) => Some(timezone(sink, zone_node)?),
        None => None,
    };
    let input = fields
        .get("input")
        .map(Node::to_json)
        .unwrap_or(serde_json::Value::Null);
    Some(Trigger::Cron {
        schedule: schedule?,
        timezone,
        input,
    })
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
        Spec::new("a webhook trigger", &["webhook"], &[], node.pos),
    )?;
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
        secret_env: secret_env.to_owned(),
    })
}

fn kafka(sink: &mut Sink, node: &Node) -> Option<Trigger> {
    let outer = fields::fields(
        sink,
        node,
        Spec::new("a kafka trigger", &["kafka"], &[], node.pos),
    )?;
    let (key, inner) = outer.entry("kafka")?;
    let fields = fields::fields(
        sink,
        inner,
        Spec::new("`kafka`", &["topic", "group"], &["topic"], key.pos),
    )?;
    let topic_node = fields.get("topic")?;
    let topic = fields::string(sink, topic_node, "`topic`")?;
    if topic.trim().is_empty() {
        sink.error(
            Code::InvalidTrigger,
            topic_node.pos,
            "`topic` must not be empty",
            None,
        );
        return None;
    }
    let group = match fields.get("group") {
        Some(group_node) => Some(fields::string(sink, group_node, "`group`")?.to_owned()),
        None => None,
    };
    Some(Trigger::Kafka {
        topic: topic.to_owned(),
        group,
    })
}

/// Most violations reported for one trigger's `input`.
const INPUT_ERRORS_REPORTED_MAX: usize = 5;

/// Compiles the (meta-valid) input schema and checks each cron trigger's
/// `input` against it: a cron run cannot be given another input later, so a
/// mismatch would fail every scheduled run.
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
