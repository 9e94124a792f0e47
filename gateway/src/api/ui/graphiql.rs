//! GraphiQL at `GET /graphql` under the UI's strict Content-Security-Policy:
//! the page (`gateway/ui/graphiql.html`) loads GraphiQL's released files,
//! vendored unchanged with their licences (`gateway/ui/vendor/README.md`),
//! and starts it from an external script (`graphiql.js`): no inline script,
//! no CDN. The vendored files carry their version in their names and are
//! cached by browsers for a year; they are not compressed on the fly
//! (3.5 MB of GraphiQL would be gzipped on an async worker per request).

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::Asset;

const PAGE: &[u8] = include_bytes!("../../../ui/graphiql.html");

macro_rules! vendored {
    ($name:literal, $type:expr) => {
        (
            $name,
            $type,
            include_bytes!(concat!("../../../ui/vendor/", $name)) as &[u8],
        )
    };
}

/// The vendored release files the page loads, served at `/ui/vendor/{file}`.
pub const VENDORED: &[Asset] = &[
    vendored!("graphiql-3.8.3.min.js", super::JS),
    vendored!("graphiql-3.8.3.min.css", super::CSS),
    vendored!("react-18.3.1.production.min.js", super::JS),
    vendored!("react-dom-18.3.1.production.min.js", super::JS),
];

/// The GraphiQL page, with the UI's security headers.
pub fn page() -> Response {
    super::with_security_headers(
        (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            PAGE,
        )
            .into_response(),
    )
}

/// `GET /ui/vendor/{file}`.
pub async fn vendored(Path(file): Path<String>) -> Response {
    let response = match VENDORED.iter().find(|(name, _, _)| *name == file) {
        Some((_, content_type, bytes)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
            ],
            *bytes,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such file\n").into_response(),
    };
    super::with_security_headers(response)
}
