//! Browser sessions of the web UI. Signing in with an API key or a JWT
//! (`POST /ui/session`) creates a session in the store (`ui_sessions`,
//! shared by every node on the database and kept across restarts): the
//! browser gets a random id in an `HttpOnly`, `SameSite=Strict` cookie
//! (`Secure` when the request came over TLS) and a CSRF token bound to the
//! session, which script reads from `GET /ui/session` and sends with every
//! GraphQL operation (`X-Imx-Csrf`). The store keeps only the SHA-256 of
//! the id, and of an API key: a key session is checked against the key on
//! every use (a revoked key ends it); a JWT session ends at the token's
//! `exp` at the latest. Signing out (`DELETE /ui/session`) deletes the row,
//! so every node refuses the cookie from then on.

use std::sync::Arc;

use axum::http::{HeaderMap, header};
use chrono::{DateTime, TimeDelta, Utc};
use engine::store::{Store, UiSessionRecord, UiSessions};
use sha2::{Digest, Sha256};

use crate::api::auth::Principal;
use crate::api::error::ApiError;

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "imx_session";
/// Header that carries the CSRF token on requests made with the cookie.
pub const CSRF_HEADER: &str = "x-imx-csrf";
/// A session unused for this long ends.
pub const SESSION_IDLE_S: u64 = 8 * 3600;
/// A session ends this long after sign-in, used or not.
pub const SESSION_LIFETIME_S: u64 = 24 * 3600;
/// A use moves a session's idle end only when it moved more than this long
/// ago: not one write per request.
pub const SESSION_TOUCH_S: u64 = 60;
/// Most sessions the store keeps; signing in beyond it ends the least
/// recently used.
pub const SESSIONS_MAX: u32 = 10_000;
/// Random bytes in a session id and in a CSRF token.
const TOKEN_BYTES: usize = 32;

const _: () = assert!(SESSION_TOUCH_S < SESSION_IDLE_S && SESSION_IDLE_S <= SESSION_LIFETIME_S);

/// What a request's session cookie stands for.
#[derive(Clone)]
pub struct Found {
    pub csrf: String,
    /// Who signed in and with which roles (a JWT's claims at sign-in).
    pub principal: Principal,
    /// Signed in with an API key: its hash, to check the key again.
    pub key_hash: Option<String>,
}

impl std::fmt::Debug for Found {
    /// Not the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Found")
            .field("principal", &self.principal.id)
            .finish_non_exhaustive()
    }
}

/// What a sign-in's credential says about the session it opens.
#[derive(Clone, Debug, Default)]
pub struct Basis {
    /// An API key's hash.
    pub key_hash: Option<String>,
    /// A JWT's `exp`: the session ends then at the latest.
    pub expires_at: Option<DateTime<Utc>>,
}

/// The sessions, in the store.
#[derive(Clone)]
pub struct Sessions {
    store: Arc<Store>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions").finish_non_exhaustive()
    }
}

fn random_token() -> String {
    let bytes: [u8; TOKEN_BYTES] = rand::random();
    hex::encode(bytes)
}

fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn seconds(s: u64) -> TimeDelta {
    TimeDelta::seconds(i64::try_from(s).unwrap_or(i64::MAX))
}

impl Sessions {
    pub fn new(store: Arc<Store>) -> Sessions {
        Sessions { store }
    }

    /// A new session for `principal`: its cookie value and CSRF token.
    pub async fn create(
        &self,
        principal: &Principal,
        basis: Basis,
    ) -> Result<(String, String), ApiError> {
        let token = random_token();
        let csrf = random_token();
        let now = Utc::now();
        let lifetime_end = now + seconds(SESSION_LIFETIME_S);
        let record = UiSessionRecord {
            session_hash: hash(&token),
            csrf: csrf.clone(),
            principal: principal.id.clone(),
            roles: principal.roles.clone(),
            key_hash: basis.key_hash,
            created_at: now,
            expires_at: basis
                .expires_at
                .map_or(lifetime_end, |exp| exp.min(lifetime_end)),
            idle_expires_at: now + seconds(SESSION_IDLE_S),
        };
        self.store.create_ui_session(&record, SESSIONS_MAX).await?;
        Ok((token, csrf))
    }

    /// The live session of `token`, marked used.
    pub async fn find(&self, token: &str) -> Result<Option<Found>, ApiError> {
        let now = Utc::now();
        let key = hash(token);
        let Some(record) = self.store.find_ui_session(&key, now).await? else {
            return Ok(None);
        };
        let idle_end = now + seconds(SESSION_IDLE_S);
        if idle_end - record.idle_expires_at > seconds(SESSION_TOUCH_S) {
            self.store.touch_ui_session(&key, idle_end).await?;
        }
        Ok(Some(Found {
            csrf: record.csrf,
            principal: Principal {
                id: record.principal,
                roles: record.roles,
            },
            key_hash: record.key_hash,
        }))
    }

    /// Ends the session of `token` on every node; true when there was one.
    pub async fn end(&self, token: &str) -> Result<bool, ApiError> {
        Ok(self.store.end_ui_session(&hash(token)).await?)
    }
}

/// The session cookie's value in a request, if any.
pub fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.trim().to_owned())
        .filter(|value| !value.is_empty())
}

/// True when the CSRF header of `headers` carries `expected`. Compares
/// digests, so the time taken says nothing about the token.
pub fn csrf_matches(headers: &HeaderMap, expected: &str) -> bool {
    headers
        .get(CSRF_HEADER)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|given| csrf_equal(given, expected))
}

/// True when `given` is the CSRF token `expected` (compared as digests).
pub fn csrf_equal(given: &str, expected: &str) -> bool {
    !given.is_empty() && Sha256::digest(given.as_bytes()) == Sha256::digest(expected.as_bytes())
}

/// True when the request reached the proxy in front of this server over
/// TLS (`X-Forwarded-Proto: https`); `imx serve` itself speaks plain HTTP.
pub fn over_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.trim().eq_ignore_ascii_case("https"))
}

/// `Set-Cookie` for a new session (`Max-Age` = the session's lifetime).
pub fn set_cookie(token: &str, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={SESSION_LIFETIME_S}{secure}"
    )
}

/// `Set-Cookie` that removes the session cookie.
pub fn clear_cookie(secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_is_read_among_others_and_the_csrf_header_must_match() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            "a=b; imx_session=abc ; c=d".parse().unwrap(),
        );
        headers.insert(CSRF_HEADER, "token".parse().unwrap());
        assert_eq!(cookie(&headers).as_deref(), Some("abc"));
        assert!(csrf_matches(&headers, "token"));
        assert!(!csrf_matches(&headers, "other"));
        assert!(!csrf_matches(&HeaderMap::new(), "token"));
        let cookie_text = set_cookie("abc", true);
        for part in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/"] {
            assert!(cookie_text.contains(part), "{cookie_text}");
        }
        assert!(!set_cookie("abc", false).contains("Secure"));
    }
}
