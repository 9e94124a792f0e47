//! Reading an answer within the size limit, turning it into the step's output,
//! and sorting failures into retryable and not.

use std::error::Error as _;

use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderMap};
use serde_json::{Map, Value, json};

use super::ERROR_BODY_CHARS_MAX;
use super::request::Request;
use crate::executor::Outcome;

/// Bytes of an error answer's body read for the message (UTF-8 needs up to 4 per char).
const ERROR_BODY_BYTES_MAX: usize = ERROR_BODY_CHARS_MAX * 4;

/// Why no answer could be used.
pub(super) enum Failure {
    Transport(reqwest::Error),
    TooLarge { limit: usize },
}

impl From<reqwest::Error> for Failure {
    fn from(err: reqwest::Error) -> Failure {
        Failure::Transport(err)
    }
}

/// An answer read within the limits.
pub(super) struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    /// The whole body of a 2xx answer; the start of any other.
    body: Vec<u8>,
}

/// Reads `response`; a 2xx body larger than `limit` fails as soon as that is
/// known (from `Content-Length`, or while streaming), so at most `limit` bytes
/// (plus one network chunk) are ever held.
pub(super) async fn read(mut response: reqwest::Response, limit: usize) -> Result<Answer, Failure> {
    let status = response.status();
    let headers = std::mem::take(response.headers_mut());
    let body = if status.is_success() {
        let announced = response.content_length().unwrap_or(0);
        if usize::try_from(announced).map_or(true, |announced| announced > limit) {
            return Err(Failure::TooLarge { limit });
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            if body.len() + chunk.len() > limit {
                return Err(Failure::TooLarge { limit });
            }
            body.extend_from_slice(&chunk);
        }
        body
    } else {
        let mut body = Vec::new();
        // The status decides the outcome; the body only explains it, so a
        // broken or endless one is cut off rather than failing differently.
        while body.len() < ERROR_BODY_BYTES_MAX {
            match response.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                Ok(None) | Err(_) => break,
            }
        }
        body
    };
    Ok(Answer {
        status,
        headers,
        body,
    })
}

impl Answer {
    /// 2xx succeeds with `{status, headers, body}`; anything else fails,
    /// retryable for 5xx, 408 and 429.
    pub(super) fn outcome(self, request: &Request) -> Outcome {
        if self.status.is_success() {
            let body = body_value(&self.body, &self.headers);
            return Outcome::Succeeded {
                output: json!({
                    "status": self.status.as_u16(),
                    "headers": headers_value(&self.headers),
                    "body": body,
                }),
            };
        }
        let retryable = self.status.is_server_error()
            || self.status == StatusCode::REQUEST_TIMEOUT
            || self.status == StatusCode::TOO_MANY_REQUESTS;
        let text = String::from_utf8_lossy(&self.body);
        let mut excerpt: String = text.trim().chars().take(ERROR_BODY_CHARS_MAX).collect();
        if excerpt.len() < text.trim().len() {
            excerpt.push('…');
        }
        let explanation = if excerpt.is_empty() {
            String::new()
        } else {
            format!(": {}", request.redact(&excerpt))
        };
        Outcome::failed(
            format!("{}: HTTP {}{explanation}", request.describe(), self.status),
            retryable,
        )
    }
}

/// How a request that got no usable answer ended.
pub(super) fn failure(failure: Failure, request: &Request) -> Outcome {
    let err = match failure {
        Failure::TooLarge { limit } => {
            return Outcome::failed(
                format!(
                    "{}: the response body is larger than the limit of {limit} bytes",
                    request.describe()
                ),
                false,
            );
        }
        Failure::Transport(err) => err.without_url(),
    };
    // The policy refused a resolved address or a redirect target: the same
    // request is refused every time.
    if let Some(refusal) = super::guard::refusal_in(&err) {
        return Outcome::failed(format!("{}: {refusal}", request.describe()), false);
    }
    // Redirect loops and refused redirects, and requests that cannot be
    // built, end the same way every time; the network may do better next time.
    let retryable = !(err.is_redirect() || err.is_builder());
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    Outcome::failed(
        format!("{}: {}", request.describe(), request.redact(&message)),
        retryable,
    )
}

/// A JSON-typed body (`application/json`, `…+json`) is parsed; so is an
/// untyped or otherwise typed body holding a JSON object or array. Anything
/// else is text (invalid UTF-8 replaced); an empty body is `null`.
fn body_value(body: &[u8], headers: &HeaderMap) -> Value {
    if body.is_empty() {
        return Value::Null;
    }
    let json_typed = headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|mime| {
            let mime = mime.trim().to_ascii_lowercase();
            mime == "application/json" || mime.ends_with("+json")
        });
    match serde_json::from_slice::<Value>(body) {
        Ok(value) if json_typed || value.is_object() || value.is_array() => value,
        _ => Value::String(String::from_utf8_lossy(body).into_owned()),
    }
}

/// Headers by lower-case name; repeated headers joined with `, `.
fn headers_value(headers: &HeaderMap) -> Value {
    let mut fields = Map::new();
    for name in headers.keys() {
        let values: Vec<String> = headers
            .get_all(name)
            .iter()
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
            .collect();
        fields.insert(name.as_str().to_owned(), Value::String(values.join(", ")));
    }
    Value::Object(fields)
}
