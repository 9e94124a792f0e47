//! Browser sessions of the web UI. Signing in with an API key or a JWT
//! (`POST /ui/session`) creates a session on this node: the browser gets a
//! random id in an `HttpOnly`, `SameSite=Strict` cookie (`Secure` when the
//! request came over TLS) and a CSRF token that script reads from
//! `GET /ui/session` and sends with every GraphQL operation
//! (`X-Imx-Csrf`). The credential itself stays on the server: every
//! operation authenticates it again, so an expired JWT or a revoked key
//! ends the session, and roles apply exactly as over the API. Signing out
//! (`DELETE /ui/session`) removes the session here.
//!
//! Sessions live in this node's memory (see docs/ui.md: with several nodes
//! behind one address, the balancer keeps a browser on one node).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, header};
use sha2::{Digest, Sha256};

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "imx_session";
/// Header that carries the CSRF token on requests made with the cookie.
pub const CSRF_HEADER: &str = "x-imx-csrf";
/// A session unused for this long ends.
pub const SESSION_IDLE_S: u64 = 8 * 3600;
/// A session ends this long after sign-in, used or not.
pub const SESSION_LIFETIME_S: u64 = 24 * 3600;
/// Most sessions one node keeps; signing in beyond it ends the oldest.
pub const SESSIONS_MAX: usize = 10_000;
/// Random bytes in a session id and in a CSRF token.
const TOKEN_BYTES: usize = 32;

/// One signed-in browser.
#[derive(Clone)]
struct Session {
    /// The `Authorization` value the browser signed in with.
    authorization: String,
    csrf: String,
    created: Instant,
    last_used: Instant,
}

/// What a request's session cookie stands for.
#[derive(Clone)]
pub struct Found {
    pub authorization: String,
    pub csrf: String,
}

impl std::fmt::Debug for Found {
    /// Neither the credential nor the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Found").finish_non_exhaustive()
    }
}

/// The sessions of this node, keyed by the SHA-256 of their cookie value.
#[derive(Default)]
pub struct Sessions {
    by_hash: Mutex<HashMap<String, Session>>,
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

impl Sessions {
    /// A new session for `authorization`: its cookie value and CSRF token.
    pub fn create(&self, authorization: String) -> (String, String) {
        let token = random_token();
        let csrf = random_token();
        let now = Instant::now();
        let mut sessions = self
            .by_hash
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        sessions.retain(|_, session| alive(session, now));
        if sessions.len() >= SESSIONS_MAX
            && let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, session)| session.last_used)
                .map(|(key, _)| key.clone())
        {
            sessions.remove(&oldest);
        }
        sessions.insert(
            hash(&token),
            Session {
                authorization,
                csrf: csrf.clone(),
                created: now,
                last_used: now,
            },
        );
        (token, csrf)
    }

    /// The live session of `token`, marked used.
    pub fn find(&self, token: &str) -> Option<Found> {
        let now = Instant::now();
        let key = hash(token);
        let mut sessions = self
            .by_hash
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let session = sessions.get_mut(&key)?;
        if !alive(session, now) {
            sessions.remove(&key);
            return None;
        }
        session.last_used = now;
        Some(Found {
            authorization: session.authorization.clone(),
            csrf: session.csrf.clone(),
        })
    }

    /// Ends the session of `token`; true when there was one.
    pub fn end(&self, token: &str) -> bool {
        let mut sessions = self
            .by_hash
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        sessions.remove(&hash(token)).is_some()
    }
}

fn alive(session: &Session, now: Instant) -> bool {
    now.duration_since(session.last_used) < Duration::from_secs(SESSION_IDLE_S)
        && now.duration_since(session.created) < Duration::from_secs(SESSION_LIFETIME_S)
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
    fn a_session_is_found_by_its_cookie_until_it_is_ended() {
        let sessions = Sessions::default();
        let (token, csrf) = sessions.create("Bearer imx_x".to_owned());
        let found = sessions.find(&token).expect("the session is found");
        assert_eq!(found.authorization, "Bearer imx_x");
        assert_eq!(found.csrf, csrf);
        assert!(sessions.find("not-a-session").is_none());
        assert!(sessions.end(&token));
        assert!(sessions.find(&token).is_none());
        assert!(!sessions.end(&token));
    }

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
