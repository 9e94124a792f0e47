//! The HTTP surface: `/graphql` (POST operations, GET GraphiQL or WebSocket
//! upgrade), `/graphql/ws`, `/healthz`, `/readyz`, `/metrics`. Everything a
//! request can be refused for (size, credentials, rate, JSON, batching) is
//! checked here, before the schema sees it.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_graphql::ErrorExtensions;
use async_graphql::http::ALL_WEBSOCKET_PROTOCOLS;
use async_graphql_axum::GraphQLProtocol;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Request, State, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use engine::store::prelude::*;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tracing::Instrument;

use super::auth::{Authenticator, Principal};
use super::config::ApiConfig;
use super::error::{ApiError, Code, code_for_engine_message};
use super::metrics::Metrics;
use super::schema::ApiSchema;
use super::ui::session;

/// Shared by every handler.
#[derive(Clone)]
pub struct AppState {
    pub schema: ApiSchema,
    pub auth: Authenticator,
    pub limiter: Arc<DefaultKeyedRateLimiter<String>>,
    pub metrics: Arc<Metrics>,
    pub store: Arc<engine::store::Store>,
    pub tail: Arc<super::tail::LogTail>,
    pub graphiql: bool,
    pub timeout: Duration,
    pub body_bytes_max: usize,
    /// `websocket_init_timeout_ms`.
    pub websocket_init_timeout: Duration,
    /// The web UI's browser sessions (`api/ui/session.rs`).
    pub sessions: Arc<super::ui::session::Sessions>,
}

/// The main listener's routes; `/metrics` only when it has no listener of
/// its own (`metrics_listen`).
pub fn router(config: &ApiConfig, state: AppState) -> Router {
    let routes = Router::new()
        .route("/graphql", get(graphql_get).post(graphql_post))
        .route("/graphql/ws", get(graphql_get))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz));
    let routes = match config.metrics_listen {
        Some(_) => routes,
        None => routes.route("/metrics", get(metrics)),
    };
    routes
        // Bodies over the limit are refused with 413 before any parsing.
        .layer(DefaultBodyLimit::max(config.limits.body_bytes_max))
        .with_state(state)
}

/// The routes of the `metrics_listen` listener: `/metrics` and `/healthz`.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .with_state(state)
}

pub fn rate_limiter(config: &ApiConfig) -> DefaultKeyedRateLimiter<String> {
    let rate = NonZeroU32::new(config.limits.rate_per_second).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(config.limits.rate_burst).unwrap_or(NonZeroU32::MIN);
    RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
}

/// A JSON GraphQL-style error body with an HTTP status.
fn error_response(status: StatusCode, error: &ApiError) -> Response {
    let body = serde_json::json!({
        "errors": [{"message": error.message, "extensions": error.extensions_json()}]
    });
    let mut response = (status, axum::Json(body)).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
    }
    response
}

/// The caller of a request: its `Authorization` header, or else the web
/// UI's session cookie, which counts only with the session's CSRF token
/// (`X-Imx-Csrf`) and from this origin.
async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Principal, Response> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let authenticated = match (authorization, session::cookie(headers)) {
        (None, Some(token)) => {
            let found = match state.sessions.find(&token).await {
                Ok(Some(found)) => found,
                Ok(None) => {
                    let error = ApiError::new(
                        Code::Unauthenticated,
                        "the web UI session ended (signed out or expired); sign in again",
                    );
                    return Err(error_response(StatusCode::UNAUTHORIZED, &error));
                }
                Err(error) => return Err(error_response(StatusCode::SERVICE_UNAVAILABLE, &error)),
            };
            if super::ui::cross_origin(headers) || !session::csrf_matches(headers, &found.csrf) {
                let error = ApiError::forbidden(
                    "a request with the web UI's session cookie needs the session's CSRF token in X-Imx-Csrf, from the UI's own origin",
                );
                return Err(error_response(StatusCode::FORBIDDEN, &error));
            }
            state.auth.session_principal(&found).await
        }
        (authorization, _) => state.auth.authenticate(authorization.as_deref()).await,
    };
    authenticated.map_err(|error| {
        let status = match error.code {
            Code::Unauthenticated => StatusCode::UNAUTHORIZED,
            Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        error_response(status, &error)
    })
}

/// The request body, at most `limit` bytes. `Err(None)`: longer than
/// that (the rest is drained within bounds first, see `LINGER_BYTES_MAX`);
/// `Err(Some(_))`: it could not be read.
async fn read_body(body: axum::body::Body, limit: usize) -> Result<Bytes, Option<axum::Error>> {
    use futures_util::StreamExt;
    let mut stream = body.into_data_stream();
    let mut read = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(Some)?;
        if read.len() + chunk.len() > limit {
            let mut drained = 0usize;
            let drain = async {
                while let Some(Ok(chunk)) = stream.next().await {
                    drained += chunk.len();
                    if drained > LINGER_BYTES_MAX {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(LINGER_AFTER_REFUSAL, drain).await;
            return Err(None);
        }
        read.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(read))
}

/// After refusing an oversized body, read and drop at most this many more
/// of its bytes, for at most `LINGER_AFTER_REFUSAL`, before answering: a
/// server that answers and closes while the client is still sending makes
/// the client's kernel see a reset, and the client loses the 413 (it
/// reports a broken pipe instead of the limit). Like nginx's lingering close.
const LINGER_BYTES_MAX: usize = 16 * 1024 * 1024;
/// How long an oversized body is drained at most before the 413.
const LINGER_AFTER_REFUSAL: Duration = Duration::from_secs(2);

async fn graphql_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let began = Instant::now();
    let response = match read_body(body, state.body_bytes_max).await {
        Ok(body) => graphql_operation(&state, &headers, &body).await,
        Err(None) => error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            &ApiError::limit(format!(
                "the request body is larger than {} bytes (body_bytes_max)",
                state.body_bytes_max
            )),
        ),
        Err(Some(error)) => error_response(
            StatusCode::BAD_REQUEST,
            &ApiError::validation(format!("the request body cannot be read: {error}")),
        ),
    };
    state
        .metrics
        .api_seconds
        .observe(began.elapsed().as_secs_f64());
    let outcome = match response.status().as_u16() {
        200 => "ok",
        400 | 413 => "invalid",
        401 => "unauthenticated",
        403 => "forbidden",
        429 => "rate_limited",
        _ => "error",
    };
    state
        .metrics
        .api_operations
        .with_label_values(&[outcome])
        .inc();
    response
}

async fn graphql_operation(state: &AppState, headers: &HeaderMap, body: &[u8]) -> Response {
    let principal = match authenticate(state, headers).await {
        Ok(principal) => principal,
        Err(response) => return response,
    };
    if state.limiter.check_key(&principal.id).is_err() {
        let error = ApiError::limit(
            "rate limit exceeded for this caller (rate_per_second/rate_burst); slow down and retry",
        );
        return error_response(StatusCode::TOO_MANY_REQUESTS, &error);
    }
    // A JSON array (a batch) does not parse as one request: batching is refused.
    let request: async_graphql::Request = match serde_json::from_slice(body) {
        Ok(request) => request,
        Err(error) => {
            let message = format!(
                "the body is not one GraphQL request as JSON ({{\"query\": …, \"variables\": …}}; batches are not accepted): {error}"
            );
            return error_response(StatusCode::BAD_REQUEST, &ApiError::validation(message));
        }
    };
    let span =
        tracing::info_span!("graphql", caller = %principal.id, operation = ?request.operation_name);
    span.in_scope(|| tracing::debug!("operation received"));
    let request = request.data(principal);
    let execution = state.schema.execute(request).instrument(span);
    let Ok(mut response) = tokio::time::timeout(state.timeout, execution).await else {
        let error = ApiError::limit(format!(
            "the operation took longer than {} ms (request_timeout_ms)",
            state.timeout.as_millis()
        ));
        return error_response(StatusCode::REQUEST_TIMEOUT, &error);
    };
    let status = classify(&mut response);
    (status, axum::Json(response)).into_response()
}

/// Gives every error a code (async-graphql's own parse, validation and
/// limit errors have none) and picks the HTTP status: 403 when a FORBIDDEN
/// error left no data, 400 when the operation failed before execution.
fn classify(response: &mut async_graphql::Response) -> StatusCode {
    let mut forbidden = false;
    let mut before_execution = !response.errors.is_empty();
    for error in &mut response.errors {
        let code = error
            .extensions
            .as_ref()
            .and_then(|extensions| extensions.get("code"))
            .and_then(|value| match value {
                async_graphql::Value::String(code) => Some(code.clone()),
                _ => None,
            });
        let code = code.unwrap_or_else(|| {
            let code = code_for_engine_message(&error.message);
            error.extensions = ApiError::new(code, error.message.clone())
                .extend()
                .extensions;
            code.as_str().to_owned()
        });
        forbidden |= code == Code::Forbidden.as_str();
        before_execution &= error.path.is_empty();
    }
    let no_data = response.data == async_graphql::Value::Null;
    if forbidden && no_data {
        StatusCode::FORBIDDEN
    } else if before_execution && no_data {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    }
}

/// GET /graphql: a WebSocket upgrade for subscriptions, else GraphiQL.
async fn graphql_get(State(state): State<AppState>, request: Request) -> Response {
    let (mut parts, _) = request.into_parts();
    let is_upgrade = parts
        .headers
        .get(header::UPGRADE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.eq_ignore_ascii_case("websocket"));
    if !is_upgrade {
        if !state.graphiql {
            return (
                StatusCode::NOT_FOUND,
                "GraphiQL is switched off on this server",
            )
                .into_response();
        }
        return super::ui::graphiql::page();
    }
    let protocol = match GraphQLProtocol::from_request_parts(&mut parts, &state).await {
        Ok(protocol) => protocol,
        Err(rejection) => return rejection.into_response(),
    };
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &state).await {
        Ok(upgrade) => upgrade,
        Err(rejection) => return rejection.into_response(),
    };
    let header_authorization = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    // Without a header, the web UI's session cookie, from this origin only;
    // `connection_init` must then carry the session's CSRF token.
    let mut ui_session = None;
    if header_authorization.is_none()
        && let Some(token) = session::cookie(&parts.headers)
    {
        if super::ui::cross_origin(&parts.headers) {
            let error = ApiError::forbidden(
                "a WebSocket from another site cannot use the web UI's session",
            );
            return error_response(StatusCode::FORBIDDEN, &error);
        }
        ui_session = match state.sessions.find(&token).await {
            Ok(found) => found,
            Err(error) => return error_response(StatusCode::SERVICE_UNAVAILABLE, &error),
        };
    }
    // A frame or message over the body limit ends the socket before it is
    // buffered or parsed; `connection_init` is parsed before authentication.
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .max_message_size(state.body_bytes_max)
        .max_frame_size(state.body_bytes_max)
        .on_upgrade(move |socket| {
            super::websocket::serve(socket, state, protocol, header_authorization, ui_session)
        })
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<AppState>) -> Response {
    match state.store.ready().await {
        Ok(true) => (StatusCode::OK, "ready\n").into_response(),
        Ok(false) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the database's migrations differ from this node's: run `imx migrate` when it is behind, or run a newer imx when the database is ahead\n",
        )
            .into_response(),
        Err(error) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {error}\n"),
        )
            .into_response(),
    }
}

/// Longest a scrape waits for the log tail to reach the log's head, in ms.
pub const METRICS_CATCH_UP_MS: u64 = 2_000;

/// The run and step counters come from the log tail: a scrape first lets the
/// tail reach the head of the log as of the scrape, so what finished before
/// the scrape began is counted (unless the tail is over
/// [`METRICS_CATCH_UP_MS`] behind; `imx_log_position` then shows by how much).
async fn metrics(State(state): State<AppState>) -> Response {
    match state.store.log_head().await {
        Ok(head) => {
            let wait = Duration::from_millis(METRICS_CATCH_UP_MS);
            if !state.tail.caught_up(head.position, wait).await {
                tracing::warn!(
                    head = head.position,
                    "the log tail did not reach the head within {METRICS_CATCH_UP_MS} ms"
                );
            }
        }
        Err(error) => tracing::warn!(%error, "reading the log head failed"),
    }
    match state.store.queue_depth().await {
        Ok(depth) => state.metrics.queue_depth.set(depth as i64),
        Err(error) => tracing::warn!(%error, "reading the queue depth failed"),
    }
    match state.store.expired_leases(chrono::Utc::now()).await {
        Ok(count) => state.metrics.expired_leases.set(count as i64),
        Err(error) => tracing::warn!(%error, "counting expired leases failed"),
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}
