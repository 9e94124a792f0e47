//! `POST /hooks/{workflow}` and `POST /hooks/{workflow}/{trigger}`: a signed
//! request starts a run (202 `{"run_id", "created"}`). No API credential:
//! the signature is the credential. Every refusal is a JSON body with a
//! coarse `code` and an `imx_code`, and starts nothing
//! (docs/triggers-webhook.md).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use engine::runtime::{Error as RuntimeError, Runtime};
use engine::store::Store;
use engine::triggers::webhook::{self, Error, Headers};
use futures_util::StreamExt;
use governor::DefaultKeyedRateLimiter;
use serde_json::{Value, json};

use super::error::{ApiError, Code};
use super::metrics::Metrics;

/// Largest webhook body, in bytes: `Content-Length` is checked against it
/// first, then the body is read up to it and no further (GitHub caps its
/// payloads at 25 MB, but nearly all are far smaller; configure the
/// sender to send `application/json`).
pub const WEBHOOK_BODY_BYTES_MAX: usize = 512 * 1024;
// The body can be the run input whole: it must fit in `run.started`
// beside the event's own fields.
const _: () = assert!(
    WEBHOOK_BODY_BYTES_MAX
        <= engine::store::PAYLOAD_BYTES_MAX - engine::store::EVENT_FIELDS_BYTES_MAX
);

/// What the webhook routes need.
#[derive(Clone)]
pub struct WebhookState {
    pub runtime: Arc<Runtime<Store>>,
    /// The API's limiter; webhooks take from the bucket `webhook:<workflow>`.
    pub limiter: Arc<DefaultKeyedRateLimiter<String>>,
    pub metrics: Arc<Metrics>,
    /// Longest wait for the whole body (`request_timeout_ms`).
    pub body_timeout: Duration,
}

impl std::fmt::Debug for WebhookState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookState")
            .field("body_timeout", &self.body_timeout)
            .finish_non_exhaustive()
    }
}

pub fn router(state: WebhookState) -> Router {
    Router::new()
        .route("/hooks/{workflow}", post(hook))
        .route("/hooks/{workflow}/{trigger}", post(hook_trigger))
        .with_state(state)
}

async fn hook(
    State(state): State<WebhookState>,
    Path(workflow): Path<String>,
    request: Request,
) -> Response {
    handle(&state, &workflow, None, request).await
}

async fn hook_trigger(
    State(state): State<WebhookState>,
    Path((workflow, trigger)): Path<(String, String)>,
    request: Request,
) -> Response {
    handle(&state, &workflow, Some(&trigger), request).await
}

async fn handle(
    state: &WebhookState,
    workflow: &str,
    trigger: Option<&str>,
    request: Request,
) -> Response {
    match accept(state, workflow, trigger, request).await {
        Ok(started) => {
            let reason = if started.existing {
                "redelivery"
            } else {
                "started"
            };
            state.metrics.count_webhook("accepted", reason);
            let body = json!({"run_id": started.run_id, "created": !started.existing});
            (StatusCode::ACCEPTED, axum::Json(body)).into_response()
        }
        Err(error) => {
            state.metrics.count_webhook("refused", reason(&error));
            refusal(workflow, error)
        }
    }
}

/// Every check in order: the trigger (404), the rate (429), the secret
/// (404), the size (413), then the signature, the JSON and the input, in
/// the engine.
async fn accept(
    state: &WebhookState,
    workflow: &str,
    trigger: Option<&str>,
    request: Request,
) -> Result<engine::runtime::Started, Error> {
    let found = webhook::find(&state.runtime, workflow, trigger).await;
    // Buckets only for workflows that exist, so that made-up names cannot
    // grow the limiter; an unsigned flood still uses up the workflow's budget.
    let registered = match &found {
        Ok(target) => Some(target.workflow.name.clone()),
        Err(Error::SecretUnset { workflow, .. }) => Some(workflow.clone()),
        Err(_) => None,
    };
    if let Some(name) = registered
        && state.limiter.check_key(&format!("webhook:{name}")).is_err()
    {
        return Err(Error::RateLimited { workflow: name });
    }
    let target = found.inspect_err(|error| {
        if let Error::SecretUnset {
            workflow,
            trigger,
            variable,
        } = error
        {
            tracing::warn!(
                %workflow, %trigger, %variable,
                "webhook refused: its secret is unset on this node; set {variable} to turn it on"
            );
        }
    })?;
    let (parts, body) = request.into_parts();
    let body = read_body(&parts.headers, body, state.body_timeout).await?;
    let headers = headers(&parts.headers);
    let now = chrono::Utc::now();
    let started = webhook::accept(&state.runtime, &target, &headers, body, now).await?;
    tracing::info!(
        workflow = %target.workflow.name,
        trigger = %target.trigger,
        run_id = %started.run_id,
        created = !started.existing,
        "webhook accepted"
    );
    Ok(started)
}

/// The body, refused as soon as it is known to be over
/// [`WEBHOOK_BODY_BYTES_MAX`]: by its `Content-Length`, else while reading.
async fn read_body(headers: &HeaderMap, body: Body, wait: Duration) -> Result<Vec<u8>, Error> {
    let too_large = || Error::BodyTooLarge {
        limit_bytes: WEBHOOK_BODY_BYTES_MAX,
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > WEBHOOK_BODY_BYTES_MAX as u64) {
        return Err(too_large());
    }
    let capacity = declared.map_or(0, |length| length as usize);
    let read = async {
        let mut buffer = Vec::with_capacity(capacity);
        let mut stream = body.into_data_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|error| Error::NotJson {
                detail: format!("the body could not be read: {error}"),
            })?;
            if buffer.len() + chunk.len() > WEBHOOK_BODY_BYTES_MAX {
                return Err(too_large());
            }
            buffer.extend_from_slice(&chunk);
        }
        Ok(buffer)
    };
    tokio::time::timeout(wait, read).await.unwrap_or_else(|_| {
        Err(Error::BodyTimeout {
            limit_ms: wait.as_millis() as u64,
        })
    })
}

/// Header names as HTTP gives them (lower-case); repeated values joined.
fn headers(map: &HeaderMap) -> Headers {
    let mut headers = Headers::new();
    for (name, value) in map {
        let Ok(value) = value.to_str() else { continue };
        headers
            .entry(name.as_str().to_owned())
            .and_modify(|joined: &mut String| {
                joined.push_str(", ");
                joined.push_str(value);
            })
            .or_insert_with(|| value.to_owned());
    }
    headers
}

/// The `reason` label of a refusal in `imx_webhooks_total`.
fn reason(error: &Error) -> &'static str {
    match error {
        Error::BadSignature => "signature",
        Error::Stale { .. } => "stale",
        Error::NotFound { .. } => "not_found",
        Error::SecretUnset { .. } => "secret_unset",
        Error::BodyTooLarge { .. } => "too_large",
        Error::BodyTimeout { .. } => "timeout",
        Error::NotJson { .. } => "not_json",
        Error::InvalidDelivery { .. } => "delivery",
        Error::RateLimited { .. } => "rate_limited",
        Error::Runtime(RuntimeError::InvalidInput { .. }) => "invalid_input",
        Error::Runtime(RuntimeError::TriggerInput { .. }) => "template",
        _ => "error",
    }
}

/// The status and JSON body of a refusal.
fn refusal(workflow: &str, error: Error) -> Response {
    let imx_code = error.code();
    let (status, code) = match &error {
        Error::BadSignature | Error::Stale { .. } => {
            (StatusCode::UNAUTHORIZED, Code::Unauthenticated)
        }
        Error::NotFound { .. } | Error::SecretUnset { .. } => {
            (StatusCode::NOT_FOUND, Code::NotFound)
        }
        Error::BodyTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, Code::Limit),
        Error::BodyTimeout { .. } => (StatusCode::REQUEST_TIMEOUT, Code::Limit),
        Error::NotJson { .. } | Error::InvalidDelivery { .. } => {
            (StatusCode::BAD_REQUEST, Code::Validation)
        }
        Error::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, Code::Limit),
        _ => return runtime_refusal(workflow, error),
    };
    let body = json!({"code": code.as_str(), "imx_code": imx_code, "message": error.to_string()});
    (status, axum::Json(body)).into_response()
}

/// A runtime error, through the API's one mapping (INTERNAL details go to
/// the log under a correlation id). Input that fails the workflow's schema
/// or its template is 422, with each problem's JSON pointer.
fn runtime_refusal(workflow: &str, error: Error) -> Response {
    let Error::Runtime(error) = error else {
        let api = ApiError::internal(&error, Some(error.code()));
        return api_response(StatusCode::INTERNAL_SERVER_ERROR, &api, None);
    };
    let problems = match &error {
        RuntimeError::InvalidInput { problems, .. } => Some(pointers(problems)),
        _ => None,
    };
    let unprocessable = matches!(
        error,
        RuntimeError::InvalidInput { .. } | RuntimeError::TriggerInput { .. }
    );
    let api = ApiError::from(error);
    let status = match api.code {
        Code::Validation if unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
        Code::Validation => StatusCode::BAD_REQUEST,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::Conflict => StatusCode::CONFLICT,
        Code::Limit => StatusCode::PAYLOAD_TOO_LARGE,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    tracing::debug!(%workflow, code = api.code.as_str(), "webhook refused by the runtime");
    api_response(status, &api, problems)
}

fn api_response(status: StatusCode, error: &ApiError, problems: Option<Value>) -> Response {
    let mut body = json!({
        "code": error.code.as_str(),
        "imx_code": error.imx_code,
        "message": error.message,
    });
    if let Some(correlation_id) = error.correlation_id {
        body["correlation_id"] = correlation_id.to_string().into();
    }
    if let Some(problems) = problems {
        body["problems"] = problems;
    }
    (status, axum::Json(body)).into_response()
}

/// `"  /repo: message"` problems as `{"pointer": "/repo", "message": …}`.
fn pointers(problems: &[String]) -> Value {
    problems
        .iter()
        .map(|problem| {
            let trimmed = problem.trim();
            match trimmed.split_once(": ") {
                Some((pointer, message)) if pointer.starts_with('/') => {
                    json!({"pointer": pointer, "message": message})
                }
                _ => json!({"pointer": "/", "message": trimmed}),
            }
        })
        .collect()
}
