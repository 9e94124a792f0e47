//! Webhook triggers: a signed HTTP request starts one run of the newest
//! version of a workflow. The HTTP side (routes, body limits, rate limit,
//! status codes) is the gateway's (`gateway/src/api/webhook.rs`); this
//! module finds the trigger, holds the rules (signatures, delivery ids,
//! the template scope) and starts the run (docs/triggers-webhook.md).

pub mod signature;

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::core::event::TriggerContext;
use crate::core::workflow::{Trigger, Workflow};
use crate::runtime::{self, Runtime, StartRequest, Started};
use crate::store::EventStore;

pub use signature::{Scheme, TIMESTAMP_TOLERANCE_SECONDS};

/// A request's headers: names lower-cased, a repeated header's values
/// joined with `", "` (as HTTP allows), values that are not text left out.
pub type Headers = BTreeMap<String, String>;

/// Longest delivery id accepted, in bytes (GitHub's are 36-character GUIDs).
pub const DELIVERY_ID_BYTES_MAX: usize = 128;

/// The headers that name a delivery, in the order they are read.
pub const DELIVERY_HEADERS: [&str; 2] = ["x-github-delivery", "x-imx-delivery"];

/// Headers never shown to the `input` template (and so never stored in the
/// run's input): the signatures, and credentials a proxy may have added.
pub const HIDDEN_HEADERS: [&str; 6] = [
    signature::GITHUB_SIGNATURE_HEADER,
    signature::GITHUB_SIGNATURE_SHA1_HEADER,
    signature::IMX_SIGNATURE_HEADER,
    "authorization",
    "proxy-authorization",
    "cookie",
];

/// Why a webhook request started nothing. Codes `IMX08xx`; the gateway maps
/// each to an HTTP status (docs/triggers-webhook.md has the table).
#[derive(Debug, thiserror::Error, strum::EnumDiscriminants)]
#[strum_discriminants(
    name(ErrorKind),
    vis(pub),
    derive(strum::VariantArray, Hash, PartialOrd, Ord)
)]
#[non_exhaustive]
pub enum Error {
    // Which part was wrong is deliberately not said: that would help a forger.
    #[error(
        "IMX0851: the webhook signature is missing or wrong; sign the exact body with the trigger's secret (X-Hub-Signature-256: sha256=<hex>, or X-Imx-Timestamp with X-Imx-Signature: v1=<hex>)"
    )]
    BadSignature,
    #[error(
        "IMX0852: X-Imx-Timestamp {timestamp} is more than {TIMESTAMP_TOLERANCE_SECONDS} s away from the server's clock ({now}); sign each request when it is sent, with a synchronised clock"
    )]
    Stale { timestamp: i64, now: i64 },
    #[error("IMX0853: no webhook at /hooks/{path}: {reason}")]
    NotFound { path: String, reason: String },
    #[error(
        "IMX0854: the webhook `{trigger}` of workflow `{workflow}` is off on this node: its secret is not configured (the server log names the variable)"
    )]
    SecretUnset {
        workflow: String,
        trigger: String,
        /// The environment variable to set; logged, not sent to the client.
        variable: String,
    },
    #[error(
        "IMX0855: the request body is larger than {limit_bytes} bytes; webhook bodies are limited (WEBHOOK_BODY_BYTES_MAX)"
    )]
    BodyTooLarge { limit_bytes: usize },
    #[error(
        "IMX0859: the request body did not arrive within {limit_ms} ms (the API's request_timeout_ms)"
    )]
    BodyTimeout { limit_ms: u64 },
    #[error("IMX0856: the request body is not JSON: {detail}")]
    NotJson { detail: String },
    #[error(
        "IMX0857: the delivery id (X-GitHub-Delivery or X-Imx-Delivery) {problem}; send 1 to {DELIVERY_ID_BYTES_MAX} bytes of printable text, the same for every redelivery"
    )]
    InvalidDelivery { problem: String },
    #[error(
        "IMX0858: too many webhook requests for workflow `{workflow}`; retry later (the API's rate_per_second/rate_burst per workflow)"
    )]
    RateLimited { workflow: String },
    /// Rendering the input or starting the run failed: keeps the runtime's
    /// code (IMX0404 for input that fails the workflow's schema).
    #[error(transparent)]
    Runtime(#[from] runtime::Error),
}

impl ErrorKind {
    /// The stable code of errors of this kind (`docs/errors.md`); `None` for
    /// [`ErrorKind::Runtime`], whose errors keep the runtime's code.
    pub const fn code(self) -> Option<&'static str> {
        Some(match self {
            ErrorKind::BadSignature => "IMX0851",
            ErrorKind::Stale => "IMX0852",
            ErrorKind::NotFound => "IMX0853",
            ErrorKind::SecretUnset => "IMX0854",
            ErrorKind::BodyTooLarge => "IMX0855",
            ErrorKind::NotJson => "IMX0856",
            ErrorKind::BodyTimeout => "IMX0859",
            ErrorKind::InvalidDelivery => "IMX0857",
            ErrorKind::RateLimited => "IMX0858",
            ErrorKind::Runtime => return None,
        })
    }
}

impl Error {
    /// The stable code (`docs/errors.md`) as data.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Runtime(error) => error.code(),
            other => ErrorKind::from(other).code().unwrap_or("IMX0851"),
        }
    }
}

/// A webhook trigger of the newest version of a workflow, with its secret.
pub struct Target {
    pub workflow: Arc<Workflow>,
    /// The version found; the run is pinned to it, so the trigger that
    /// checked the request is the one of the version that runs.
    pub version: String,
    /// The trigger's id (`triggers_with_ids`).
    pub trigger: String,
    input: Value,
    secret: String,
}

impl std::fmt::Debug for Target {
    // The secret stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("workflow", &self.workflow.name)
            .field("version", &self.version)
            .field("trigger", &self.trigger)
            .finish_non_exhaustive()
    }
}

/// The node secret a `secret_env: NAME` names: `IMX_SECRET_<NAME>`, read
/// like every secret of the node (taken out of the environment at start-up).
pub fn secret_variable(secret_env: &str) -> String {
    format!("{}{secret_env}", crate::secrets::SECRET_ENV_PREFIX)
}

/// The webhook trigger `trigger` (or the only one) of the newest version of
/// `workflow`, with its secret from this node's secrets.
/// [`Error::SecretUnset`] when the secret is unset or empty.
pub async fn find<S: EventStore>(
    runtime: &Runtime<S>,
    workflow: &str,
    trigger: Option<&str>,
) -> Result<Target, Error> {
    let path = match trigger {
        Some(trigger) => format!("{workflow}/{trigger}"),
        None => workflow.to_owned(),
    };
    let not_found = |reason: String| Error::NotFound {
        path: path.clone(),
        reason,
    };
    let (model, version) = match runtime.workflow(workflow, None).await {
        Ok(found) => found,
        Err(runtime::Error::UnknownWorkflow { .. }) => {
            return Err(not_found(
                "no workflow of that name has a webhook trigger".to_owned(),
            ));
        }
        Err(other) => return Err(other.into()),
    };
    let mut hooks: Vec<(String, String, Value)> = model
        .triggers_with_ids()
        .into_iter()
        .filter_map(|(id, found)| match found {
            Trigger::Webhook {
                secret_env, input, ..
            } => Some((id, secret_env.clone(), input.clone())),
            _ => None,
        })
        .collect();
    if hooks.is_empty() {
        return Err(not_found(
            "no workflow of that name has a webhook trigger".to_owned(),
        ));
    }
    let ids = hooks
        .iter()
        .map(|(id, _, _)| format!("`{id}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let position = match trigger {
        None if hooks.len() == 1 => 0,
        None => {
            return Err(not_found(format!(
                "workflow `{workflow}` has several webhook triggers ({ids}); POST to /hooks/{workflow}/<trigger id>"
            )));
        }
        Some(wanted) => hooks
            .iter()
            .position(|(id, _, _)| id == wanted)
            .ok_or_else(|| {
                not_found(format!(
                    "workflow `{workflow}` has no webhook trigger `{wanted}`; its webhook triggers: {ids}"
                ))
            })?,
    };
    let (id, secret_env, input) = hooks.swap_remove(position);
    let secret = runtime
        .config()
        .secrets
        .get(&secret_env)
        .filter(|secret| !secret.is_empty())
        .map(str::to_owned);
    let Some(secret) = secret else {
        return Err(Error::SecretUnset {
            workflow: model.name.clone(),
            trigger: id,
            variable: secret_variable(&secret_env),
        });
    };
    Ok(Target {
        workflow: model,
        version,
        trigger: id,
        input,
        secret,
    })
}

/// The delivery id of a request (`X-GitHub-Delivery`, else `X-Imx-Delivery`),
/// checked: 1 to [`DELIVERY_ID_BYTES_MAX`] bytes, no control characters.
pub fn delivery(headers: &Headers) -> Result<Option<String>, Error> {
    let Some(found) = DELIVERY_HEADERS.iter().find_map(|name| headers.get(*name)) else {
        return Ok(None);
    };
    let problem = if found.is_empty() {
        "is empty".to_owned()
    } else if found.len() > DELIVERY_ID_BYTES_MAX {
        format!("is {} bytes long", found.len())
    } else if found.chars().any(char::is_control) {
        "holds a control character".to_owned()
    } else {
        return Ok(Some(found.clone()));
    };
    Err(Error::InvalidDelivery { problem })
}

/// The run's idempotency key for a delivery: a redelivery of the same
/// delivery to the same trigger returns the run the first one started.
/// `webhook:<workflow>:<trigger>:<delivery>`, hashed when too long
/// ([`super::run_key`]).
pub fn idempotency_key(workflow: &str, trigger: &str, delivery: &str) -> String {
    super::run_key("webhook", &[workflow, trigger, delivery])
}

/// What the request's `input` template sees: `body`, `headers` (without
/// [`HIDDEN_HEADERS`]) and `trigger` (`id`, `delivery`).
pub fn scope(
    trigger: &str,
    delivery: Option<&str>,
    headers: &Headers,
    body: Value,
) -> Map<String, Value> {
    let shown: Map<String, Value> = headers
        .iter()
        .filter(|(name, _)| !HIDDEN_HEADERS.contains(&name.as_str()))
        .map(|(name, value)| (name.clone(), Value::String(value.clone())))
        .collect();
    let mut scope = Map::new();
    scope.insert("body".to_owned(), body);
    scope.insert("headers".to_owned(), Value::Object(shown));
    scope.insert(
        "trigger".to_owned(),
        serde_json::json!({"id": trigger, "delivery": delivery}),
    );
    scope
}

/// Verifies the signature, reads the body as JSON, maps it to the run input
/// and starts the run (or finds the one this delivery started). Nothing is
/// written unless every check passed.
pub async fn accept<S: EventStore>(
    runtime: &Runtime<S>,
    target: &Target,
    headers: &Headers,
    body: Vec<u8>,
    now: DateTime<Utc>,
) -> Result<Started, Error> {
    // Hashing and parsing up to a body limit is CPU work: off the async workers.
    let secret = target.secret.clone();
    let checked_headers = headers.clone();
    let body = runtime::off_workers("webhook check", move || -> Result<Value, Error> {
        signature::verify(secret.as_bytes(), &checked_headers, &body, now)?;
        serde_json::from_slice(&body).map_err(|error| Error::NotJson {
            detail: error.to_string(),
        })
    })
    .await??;
    let delivery = delivery(headers)?;
    let input = if target.input.is_null() {
        body
    } else {
        let scope = scope(&target.trigger, delivery.as_deref(), headers, body);
        runtime
            .render_trigger_input(&target.workflow.name, &target.trigger, &target.input, scope)
            .await?
    };
    let idempotency_key = delivery
        .as_deref()
        .map(|delivery| idempotency_key(&target.workflow.name, &target.trigger, delivery));
    let request = StartRequest {
        workflow: target.workflow.name.clone(),
        version: Some(target.version.clone()),
        input,
        idempotency_key,
        trigger: Some(TriggerContext::Webhook {
            trigger: target.trigger.clone(),
            delivery,
        }),
    };
    Ok(runtime.start_run(request).await?)
}
