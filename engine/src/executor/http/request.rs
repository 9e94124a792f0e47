//! An `http` step's rendered `with` checked and turned into the request to send.

use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, Url};
use serde_json::Value;

use super::{HttpConfig, IDEMPOTENCY_KEY_HEADER};
use crate::core::dsl::HTTP_METHODS;
use crate::core::scope::Secrets;
use crate::executor::Attempt;
use crate::executor::input;

/// The `with` fields of an `http` step.
const FIELDS: [&str; 7] = [
    "method", "url", "headers", "query", "json", "body", "timeout",
];
/// Header and query values at least this long are hidden in error messages
/// (shorter ones would blank out unrelated text and are no credentials).
const HIDDEN_VALUE_CHARS_MIN: usize = 6;

/// A checked request. `Debug` is derived but header values are marked
/// sensitive and the body is not shown.
pub(super) struct Request {
    method: Method,
    url: Url,
    headers: HeaderMap,
    body: Option<Vec<u8>>,
    pub(super) timeout: Option<Duration>,
    /// Values that were sent and must not appear in messages.
    hidden: Secrets,
}

impl Request {
    pub(super) fn parse(attempt: &Attempt, config: &HttpConfig) -> Result<Request, String> {
        let fields = input::object(&attempt.input, "http", &FIELDS)?;
        let method_text = input::required_string(fields, "method")?.to_ascii_uppercase();
        if !HTTP_METHODS.contains(&method_text.as_str()) {
            return Err(format!(
                "`with.method` `{method_text}` is not one of {}",
                HTTP_METHODS.join(", ")
            ));
        }
        let method = Method::from_bytes(method_text.as_bytes())
            .map_err(|_| format!("`with.method` `{method_text}` is not a method"))?;
        let mut url = Url::parse(input::required_string(fields, "url")?)
            .map_err(|err| format!("`with.url` is not a valid URL: {err}"))?;
        if !config.allowed_schemes.iter().any(|s| s == url.scheme()) {
            return Err(format!(
                "`with.url` uses `{}`; this node allows {}",
                url.scheme(),
                config.allowed_schemes.join(", ")
            ));
        }
        let query = input::text_map(fields, "query")?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(&query);
        }
        let header_texts = input::text_map(fields, "headers")?;
        let mut headers = headers(&header_texts)?;
        let key = HeaderValue::from_str(&attempt.idempotency_key)
            .map_err(|_| "the idempotency key is not a valid header value".to_owned())?;
        // Ours wins over an author's header of the same name: retries must match.
        headers.insert(IDEMPOTENCY_KEY_HEADER, key);
        let body = body(fields, &mut headers)?;
        let timeout = input::optional_duration_ms(fields, "timeout")?.map(Duration::from_millis);
        let hidden = header_texts
            .into_values()
            .chain(query.into_values())
            .chain(url.password().map(str::to_owned))
            .filter(|value| value.chars().count() >= HIDDEN_VALUE_CHARS_MIN)
            .enumerate()
            .map(|(index, value)| (index.to_string(), value))
            .collect();
        Ok(Request {
            method,
            url,
            headers,
            body,
            timeout,
            hidden,
        })
    }

    pub(super) fn build(&self, client: &reqwest::Client) -> reqwest::Result<reqwest::Request> {
        let mut builder = client
            .request(self.method.clone(), self.url.clone())
            .headers(self.headers.clone());
        if let Some(body) = &self.body {
            builder = builder.body(body.clone());
        }
        builder.build()
    }

    /// The URL's host as written in it (`[…]` around IPv6); empty without one.
    pub(super) fn host(&self) -> &str {
        self.url.host_str().unwrap_or_default()
    }

    /// `METHOD scheme://host:port/path`, without credentials or query (they may hold secrets).
    pub(super) fn describe(&self) -> String {
        format!(
            "{} {}{}",
            self.method,
            self.url.origin().ascii_serialization(),
            self.url.path()
        )
    }

    /// `text` with every header and query value of this request replaced by `***`.
    pub(super) fn redact(&self, text: &str) -> String {
        self.hidden.redact_text(text)
    }
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("request", &self.describe())
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("body_bytes", &self.body.as_ref().map(Vec::len))
            .finish()
    }
}

/// `with.headers` as a header map; messages name headers, never values.
fn headers(texts: &std::collections::BTreeMap<String, String>) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::new();
    for (name, text) in texts {
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("`with.headers` has an invalid header name `{name}`"))?;
        let mut value = HeaderValue::from_str(text).map_err(|_| {
            format!("`with.headers.{name}` is not a valid header value (control characters?)")
        })?;
        value.set_sensitive(true);
        headers.append(header, value);
    }
    Ok(headers)
}

/// The body from `with.json` (sets `Content-Type: application/json` unless the
/// author set one) or `with.body` (sent as it is).
fn body(
    fields: &serde_json::Map<String, Value>,
    headers: &mut HeaderMap,
) -> Result<Option<Vec<u8>>, String> {
    let json = fields.get("json").filter(|value| !value.is_null());
    let text = input::optional_string(fields, "body")?;
    match (json, text) {
        (Some(_), Some(_)) => Err("`with` has both `json` and `body`; send one of them".to_owned()),
        (Some(json), None) => {
            if !headers.contains_key(CONTENT_TYPE) {
                headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            }
            serde_json::to_vec(json)
                .map(Some)
                .map_err(|err| format!("`with.json` cannot be sent as JSON: {err}"))
        }
        (None, Some(text)) => Ok(Some(text.as_bytes().to_vec())),
        // `json: null` counts as no body.
        (None, None) => Ok(None),
    }
}
