//! Reading a `kafka.publish` attempt's `with` into the one message it sends:
//! topic, key, value (as JSON text) and headers, checked against the limits
//! before anything goes to a broker.

use std::collections::BTreeMap;

use serde_json::Value;

use super::IDEMPOTENCY_KEY_HEADER;
use crate::executor::Attempt;
use crate::executor::input::{self, kind_of, scalar_text};

/// Longest topic name Kafka accepts, in characters.
pub const TOPIC_CHARS_MAX: usize = 249;
/// Most headers an author may add (the idempotency key header comes on top).
pub const HEADERS_MAX: usize = 64;

/// The `with` fields of a `kafka.publish` step.
const FIELDS: [&str; 4] = ["topic", "key", "value", "headers"];

/// One message, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Message {
    pub topic: String,
    pub key: String,
    /// The JSON text of `with.value`; `None` when the field is absent (a
    /// message without a value: a tombstone on a compacted topic).
    pub value: Option<Vec<u8>>,
    /// The author's headers, then the idempotency key header.
    pub headers: Vec<(String, String)>,
}

impl Message {
    /// The message an attempt asks for, or why its `with` is unusable.
    pub(crate) fn parse(attempt: &Attempt, bytes_max: usize) -> Result<Message, String> {
        let fields = input::object(&attempt.input, "kafka.publish", &FIELDS)?;
        let topic = input::required_string(fields, "topic")?;
        check_topic(topic)?;
        let key = match fields.get("key") {
            None | Some(Value::Null) => attempt.idempotency_key.clone(),
            Some(value) => scalar_text(value).ok_or_else(|| {
                format!(
                    "`with.key` must be a string (or a number or boolean), found {}",
                    kind_of(value)
                )
            })?,
        };
        let value = match fields.get("value") {
            None => None,
            Some(value) => {
                Some(serde_json::to_vec(value).map_err(|err| format!("`with.value`: {err}"))?)
            }
        };
        let headers = headers(input::text_map(fields, "headers")?, attempt)?;
        let message = Message {
            topic: topic.to_owned(),
            key,
            value,
            headers,
        };
        let size = message.size_bytes();
        if size > bytes_max {
            return Err(format!(
                "the message to `{}` is {size} bytes (value, key and headers), more than the \
                 limit of {bytes_max} bytes; publish a reference to the data (a URL, an object \
                 store key) instead of the data itself",
                message.topic
            ));
        }
        Ok(message)
    }

    /// Bytes of value, key and headers: what counts against the size limit.
    pub(crate) fn size_bytes(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|(name, value)| name.len() + value.len())
            .sum();
        self.value.as_ref().map_or(0, Vec::len) + self.key.len() + headers
    }
}

/// The author's headers (valid names, none reserved) plus the idempotency key.
fn headers(
    authored: BTreeMap<String, String>,
    attempt: &Attempt,
) -> Result<Vec<(String, String)>, String> {
    if authored.len() > HEADERS_MAX {
        return Err(format!(
            "`with.headers` has {} entries, more than the limit of {HEADERS_MAX}",
            authored.len()
        ));
    }
    if authored.keys().any(String::is_empty) {
        return Err("`with.headers` has an empty header name".to_owned());
    }
    if let Some(name) = authored
        .keys()
        .find(|name| name.eq_ignore_ascii_case(IDEMPOTENCY_KEY_HEADER))
    {
        return Err(format!(
            "`with.headers.{name}` is reserved: imx sets `{IDEMPOTENCY_KEY_HEADER}` to the \
             step's idempotency key on every message; remove it from `with.headers`"
        ));
    }
    let mut headers: Vec<(String, String)> = authored.into_iter().collect();
    headers.push((
        IDEMPOTENCY_KEY_HEADER.to_owned(),
        attempt.idempotency_key.clone(),
    ));
    Ok(headers)
}

/// Kafka's rule for topic names: 1 to 249 of `[A-Za-z0-9._-]`, not `.` or `..`.
fn check_topic(topic: &str) -> Result<(), String> {
    if topic.is_empty() {
        return Err("`with.topic` is empty".to_owned());
    }
    if topic == "." || topic == ".." {
        return Err(format!("`with.topic` cannot be `{topic}`"));
    }
    if topic.chars().count() > TOPIC_CHARS_MAX {
        return Err(format!(
            "`with.topic` is longer than {TOPIC_CHARS_MAX} characters (Kafka's limit)"
        ));
    }
    if let Some(bad) = topic
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "`with.topic` `{}` has the character {bad:?}; topic names use only letters, \
             digits, `.`, `_` and `-`",
            topic.escape_debug()
        ));
    }
    Ok(())
}
