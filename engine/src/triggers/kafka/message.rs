//! One consumed message as a trigger sees it: the template scope
//! (`message.value`, `message.key`, `message.headers`, `message.topic`,
//! `message.partition`, `message.offset`), the run's idempotency key, and
//! the reasons a message cannot start a run. Pure: no broker, no store.

use serde_json::{Map, Value, json};

/// Largest message value a Kafka trigger turns into a run input, in bytes;
/// larger ones go to the dead-letter topic (`too_large`). Half the event
/// payload limit leaves room for the rest of `run.started`.
pub const TRIGGER_MESSAGE_BYTES_MAX: usize = 512 * 1024;
const _: () = assert!(TRIGGER_MESSAGE_BYTES_MAX <= crate::store::PAYLOAD_BYTES_MAX / 2);

/// A message as read from the broker, before it is checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    /// In the order the producer added them; a repeated name keeps its last value.
    pub headers: Vec<(&'a str, Option<&'a [u8]>)>,
}

/// Why a message cannot start a run; its label is the `imx-dlq-reason`
/// header and the metric's `reason`, its code opens the `imx-dlq-error` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, strum::VariantArray)]
pub enum DeadLetterReason {
    /// The value is absent or not JSON.
    NotJson,
    /// The key or a header value is not UTF-8 text.
    NotUtf8,
    /// The value is over [`TRIGGER_MESSAGE_BYTES_MAX`], or the run start over the store's limits.
    TooLarge,
    /// The trigger's `input` template failed on this message.
    Template,
    /// The input does not match the workflow's `input` schema.
    InvalidInput,
}

impl DeadLetterReason {
    /// The stable code (`docs/errors.md`).
    pub const fn code(self) -> &'static str {
        match self {
            DeadLetterReason::NotJson => "IMX0608",
            DeadLetterReason::NotUtf8 => "IMX0609",
            DeadLetterReason::TooLarge => "IMX0610",
            DeadLetterReason::Template => "IMX0611",
            DeadLetterReason::InvalidInput => "IMX0612",
        }
    }

    /// The stable label (header value, metric label).
    pub const fn label(self) -> &'static str {
        match self {
            DeadLetterReason::NotJson => "not_json",
            DeadLetterReason::NotUtf8 => "not_utf8",
            DeadLetterReason::TooLarge => "too_large",
            DeadLetterReason::Template => "template",
            DeadLetterReason::InvalidInput => "invalid_input",
        }
    }
}

/// A message that cannot start a run, and why, as the `imx-dlq-error` text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejected {
    pub reason: DeadLetterReason,
    pub detail: String,
}

impl Rejected {
    pub fn new(reason: DeadLetterReason, detail: impl Into<String>) -> Rejected {
        Rejected {
            reason,
            detail: detail.into(),
        }
    }

    /// `IMX06xx: detail`.
    pub fn message(&self) -> String {
        format!("{}: {}", self.reason.code(), self.detail)
    }
}

/// The `message` object of the template scope, or why the message is unusable.
pub fn scope(message: &Received<'_>) -> Result<Value, Rejected> {
    let bytes = message.value.map_or(0, <[u8]>::len);
    if bytes > TRIGGER_MESSAGE_BYTES_MAX {
        return Err(Rejected::new(
            DeadLetterReason::TooLarge,
            format!(
                "the message value is {bytes} bytes, more than the {TRIGGER_MESSAGE_BYTES_MAX} a \
                 Kafka trigger takes (TRIGGER_MESSAGE_BYTES_MAX); publish a reference instead"
            ),
        ));
    }
    let value = match message.value {
        None => {
            return Err(Rejected::new(
                DeadLetterReason::NotJson,
                "the message has no value (a tombstone); a run input must be JSON",
            ));
        }
        Some(bytes) => serde_json::from_slice::<Value>(bytes).map_err(|error| {
            Rejected::new(
                DeadLetterReason::NotJson,
                format!("the message value is not JSON: {error}"),
            )
        })?,
    };
    let key = message
        .key
        .map(|bytes| text(bytes, "the message key"))
        .transpose()?;
    let mut headers = Map::new();
    for (name, value) in &message.headers {
        let value = match value {
            Some(bytes) => Value::String(text(bytes, &format!("header `{name}`"))?),
            None => Value::Null,
        };
        headers.insert((*name).to_owned(), value);
    }
    Ok(json!({
        "value": value,
        "key": key,
        "headers": headers,
        "topic": message.topic,
        "partition": message.partition,
        "offset": message.offset,
    }))
}

fn text(bytes: &[u8], what: &str) -> Result<String, Rejected> {
    String::from_utf8(bytes.to_vec()).map_err(|error| {
        Rejected::new(
            DeadLetterReason::NotUtf8,
            format!(
                "{what} is not UTF-8 text (invalid byte at {}); templates see keys and headers as text",
                error.utf8_error().valid_up_to()
            ),
        )
    })
}

/// The run's idempotency key for the message at `offset` of `topic`'s
/// `partition`, as seen by `trigger` of `workflow`:
/// `kafka:<workflow>:<trigger>:<topic>:<partition>:<offset>`. The workflow
/// and trigger are part of it because two workflows may follow one topic,
/// and each message starts one run of each. A key over
/// the idempotency key limit (long names) becomes `kafka:sha256:<hex>`
/// of that text: still one key per message and trigger.
pub fn idempotency_key(
    workflow: &str,
    trigger: &str,
    topic: &str,
    partition: i32,
    offset: i64,
) -> String {
    let (partition, offset) = (partition.to_string(), offset.to_string());
    super::super::run_key("kafka", &[workflow, trigger, topic, &partition, &offset])
}

/// The consumer group of a trigger without `group:`: `imx.<workflow>`, or
/// `imx.<workflow>.<trigger>` when another Kafka trigger of the same
/// workflow follows the same topic (one group per topic and workflow would
/// split the messages between the two triggers).
pub fn default_group(workflow: &str, trigger: &str, shares_topic: bool) -> String {
    if shares_topic {
        format!("imx.{workflow}.{trigger}")
    } else {
        format!("imx.{workflow}")
    }
}

/// The dead-letter topic of a trigger without `dead_letter_topic:`.
pub fn default_dead_letter_topic(topic: &str) -> String {
    format!("{topic}.dlq")
}
