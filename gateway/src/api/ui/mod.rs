//! The web UI (#20): a small single-page application, plain JavaScript
//! modules embedded in the binary (no build step), served at `/` and
//! `/ui/assets/*`, that talks to the public GraphQL API only. Signing in
//! and out goes through `/ui/session` (session.rs). Every UI response
//! carries a strict Content-Security-Policy (no inline script or style)
//! and the other security headers; assets are gzip-compressed when the
//! browser accepts it. Decision and layout: docs/ui.md.

pub mod graphiql;
pub mod session;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use tower_http::compression::CompressionLayer;

use super::auth::{Authenticator, Permission, Principal};
use session::Sessions;

/// The UI's Content-Security-Policy: scripts, styles and connections to
/// this origin only (no inline script or style, no eval), nothing framed,
/// no framing by others.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// Largest sign-in body (a JSON object holding one JWT or API key).
pub const SIGN_IN_BYTES_MAX: usize = 16 * 1024;

/// One embedded file: name under `/ui/assets/`, content type, bytes.
type Asset = (&'static str, &'static str, &'static [u8]);

macro_rules! asset {
    ($name:literal, $type:expr) => {
        (
            $name,
            $type,
            include_bytes!(concat!("../../../ui/", $name)) as &[u8],
        )
    };
}

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// Every file of the UI, embedded at build time.
pub const ASSETS: &[Asset] = &[
    asset!("app.css", CSS),
    asset!("graphiql.css", CSS),
    asset!("graphiql.js", JS),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("dom.js", JS),
    asset!("dag.js", JS),
    asset!("runs.js", JS),
    asset!("run.js", JS),
    asset!("workflows.js", JS),
    asset!("favicon.svg", "image/svg+xml"),
];

const INDEX: &[u8] = include_bytes!("../../../ui/index.html");

/// What the UI's handlers share.
#[derive(Clone, Debug)]
pub struct UiState {
    pub auth: Authenticator,
    pub sessions: Arc<Sessions>,
    pub insecure_no_auth: bool,
}

/// `/`, `/ui/assets/{file}` and `/ui/session`, with the security headers
/// and compression; `/ui/vendor/{file}` (GraphiQL's files) uncompressed.
pub fn router(state: UiState) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/ui/assets/{file}", get(asset))
        .route("/ui/session", get(current).post(sign_in).delete(sign_out))
        .layer(axum::middleware::map_response(security_headers))
        .layer(CompressionLayer::new().gzip(true))
        .route("/ui/vendor/{file}", get(graphiql::vendored))
        .with_state(state)
}

async fn security_headers(response: Response) -> Response {
    with_security_headers(response)
}

/// `response` with the UI's CSP and the other security headers.
pub fn with_security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let set = [
        ("content-security-policy", CONTENT_SECURITY_POLICY),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        ("x-frame-options", "DENY"),
        ("cross-origin-opener-policy", "same-origin"),
    ];
    for (name, value) in set {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

async fn index() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        INDEX,
    )
        .into_response()
}

async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, content_type, bytes)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            *bytes,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such file\n").into_response(),
    }
}

fn refusal(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"code": code, "message": message})),
    )
        .into_response()
}

/// A browser request from another site: its `Origin` names another host
/// than the one it was sent to. (Browsers send `Origin` on every POST,
/// DELETE and WebSocket upgrade.)
pub fn cross_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let origin_host = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .unwrap_or(origin);
    origin_host != host
}

fn signed_in(principal: &Principal, csrf: &str, insecure: bool) -> serde_json::Value {
    json!({
        "id": principal.id,
        "roles": principal.roles,
        "mayOperate": principal.may(Permission::Operate),
        "mayApprove": principal.may(Permission::Approve),
        "csrf": csrf,
        "insecureNoAuth": insecure,
    })
}

/// `POST /ui/session` `{"credential": "<API key or JWT>"}`: checks the
/// credential as `/graphql` would and starts a session.
async fn sign_in(State(state): State<UiState>, headers: HeaderMap, body: Bytes) -> Response {
    if cross_origin(&headers) {
        return refusal(
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
            "sign-in from another site is refused",
        );
    }
    if body.len() > SIGN_IN_BYTES_MAX {
        return refusal(
            StatusCode::PAYLOAD_TOO_LARGE,
            "LIMIT",
            "the sign-in body is too large",
        );
    }
    let credential = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|value| value.get("credential")?.as_str().map(str::to_owned));
    let Some(credential) = credential else {
        return refusal(
            StatusCode::BAD_REQUEST,
            "VALIDATION",
            "send {\"credential\": \"<API key or JWT>\"}",
        );
    };
    let credential = credential.trim();
    if credential.is_empty() && !state.insecure_no_auth {
        return refusal(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "enter an API key (imx apikey create) or a JWT",
        );
    }
    let authorization = format!("Bearer {credential}");
    let opened = match state.auth.sign_in(&authorization).await {
        Ok((principal, basis)) => state
            .sessions
            .create(&principal, basis)
            .await
            .map(|session| (principal, session)),
        Err(error) => Err(error),
    };
    match opened {
        Ok((principal, (token, csrf))) => {
            let cookie = session::set_cookie(&token, session::over_tls(&headers));
            let mut response =
                axum::Json(signed_in(&principal, &csrf, state.insecure_no_auth)).into_response();
            if let Ok(value) = HeaderValue::from_str(&cookie) {
                response.headers_mut().insert(header::SET_COOKIE, value);
            }
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(error) => store_or_credential_refusal(&error),
    }
}

/// 401 for a refused credential, 503 when the store did not answer.
fn store_or_credential_refusal(error: &super::error::ApiError) -> Response {
    match error.code {
        super::error::Code::Unauthenticated => {
            refusal(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", &error.message)
        }
        _ => refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            "the session store cannot be reached; try again",
        ),
    }
}

/// `GET /ui/session`: the signed-in caller and the CSRF token, or 401.
/// The stored credential is checked again, so a revoked key or an
/// expired JWT shows as signed out.
async fn current(State(state): State<UiState>, headers: HeaderMap) -> Response {
    let signed_out = |message: &str| {
        let mut response = refusal(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", message);
        response.headers_mut().insert(
            "x-imx-insecure-no-auth",
            HeaderValue::from_static(if state.insecure_no_auth { "1" } else { "0" }),
        );
        response
    };
    let Some(token) = session::cookie(&headers) else {
        return signed_out("not signed in");
    };
    let found = match state.sessions.find(&token).await {
        Ok(Some(found)) => found,
        Ok(None) => return signed_out("the session ended; sign in again"),
        Err(error) => return store_or_credential_refusal(&error),
    };
    match state.auth.session_principal(&found).await {
        Ok(principal) => {
            let mut response =
                axum::Json(signed_in(&principal, &found.csrf, state.insecure_no_auth))
                    .into_response();
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(error) if error.code == super::error::Code::Unauthenticated => {
            // A revoked key: the session goes too (a failed delete only
            // leaves a row that is refused again next time).
            let _ = state.sessions.end(&token).await;
            signed_out(&error.message)
        }
        Err(error) => store_or_credential_refusal(&error),
    }
}

/// `DELETE /ui/session` (with the CSRF header): ends the session here and
/// clears the cookie.
async fn sign_out(State(state): State<UiState>, headers: HeaderMap) -> Response {
    let Some(token) = session::cookie(&headers) else {
        return refusal(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", "not signed in");
    };
    let found = match state.sessions.find(&token).await {
        Ok(Some(found)) => found,
        Ok(None) => {
            return refusal(
                StatusCode::UNAUTHORIZED,
                "UNAUTHENTICATED",
                "the session ended already",
            );
        }
        Err(error) => return store_or_credential_refusal(&error),
    };
    if cross_origin(&headers) || !session::csrf_matches(&headers, &found.csrf) {
        return refusal(
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
            "missing or wrong CSRF token (X-Imx-Csrf)",
        );
    }
    if let Err(error) = state.sessions.end(&token).await {
        return store_or_credential_refusal(&error);
    }
    let cookie = session::clear_cookie(session::over_tls(&headers));
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}
