//! Webhook signatures: HMAC-SHA256 of the body with the trigger's secret,
//! in GitHub's scheme (`X-Hub-Signature-256: sha256=<hex>`) or imx's
//! timestamped one (`X-Imx-Timestamp` + `X-Imx-Signature: v1=<hex of
//! HMAC("{timestamp}.{body}")>`). Pure: the clock is an argument. Tags are
//! compared in constant time (`hmac`'s `verify_slice`, through `subtle`).

use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::{Error, Headers};

/// Widest distance between `X-Imx-Timestamp` and the server's clock, either
/// way, in seconds: a signed request older than this is refused (a replay),
/// and so is one dated this far ahead (a request signed now for use later).
pub const TIMESTAMP_TOLERANCE_SECONDS: i64 = 300;

/// GitHub's header: `sha256=<64 hex digits>` over the body.
pub const GITHUB_SIGNATURE_HEADER: &str = "x-hub-signature-256";
/// GitHub's older SHA-1 header: never accepted, and never shown to templates.
pub const GITHUB_SIGNATURE_SHA1_HEADER: &str = "x-hub-signature";
/// imx's header: `v1=<64 hex digits>` over `{timestamp}.{body}`.
pub const IMX_SIGNATURE_HEADER: &str = "x-imx-signature";
/// Unix seconds, as decimal digits, that the imx signature covers.
pub const IMX_TIMESTAMP_HEADER: &str = "x-imx-timestamp";

/// Which scheme a request was signed with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    GitHub,
    Imx,
}

/// Checks the request's signature with `secret`. With `X-Imx-Signature`
/// present the imx scheme applies (and GitHub's header is ignored), else
/// GitHub's. Every way of being wrong (no header, not hex, wrong length,
/// another key, another body) is the same [`Error::BadSignature`]; only a
/// request correctly signed at a time outside the window is
/// [`Error::Stale`], so that a sender whose clock is off can tell.
pub fn verify(
    secret: &[u8],
    headers: &Headers,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<Scheme, Error> {
    if let Some(signature) = headers.get(IMX_SIGNATURE_HEADER) {
        let timestamp = headers
            .get(IMX_TIMESTAMP_HEADER)
            .ok_or(Error::BadSignature)?;
        verify_imx(secret, timestamp, signature, body, now)?;
        return Ok(Scheme::Imx);
    }
    let signature = headers
        .get(GITHUB_SIGNATURE_HEADER)
        .ok_or(Error::BadSignature)?;
    let tag = tag_hex(signature, "sha256=")?;
    let mut mac = new_mac(secret);
    mac.update(body);
    mac.verify_slice(&tag).map_err(|_| Error::BadSignature)?;
    Ok(Scheme::GitHub)
}

fn verify_imx(
    secret: &[u8],
    timestamp: &str,
    signature: &str,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<(), Error> {
    // Digits only: `+5` or ` 5` would parse, and then the signed text and
    // the time it names could be written several ways.
    if timestamp.is_empty() || !timestamp.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(Error::BadSignature);
    }
    let seconds: i64 = timestamp.parse().map_err(|_| Error::BadSignature)?;
    let tag = tag_hex(signature, "v1=")?;
    let mut mac = new_mac(secret);
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&tag).map_err(|_| Error::BadSignature)?;
    let skew = now.timestamp().saturating_sub(seconds);
    if skew.unsigned_abs() > TIMESTAMP_TOLERANCE_SECONDS.unsigned_abs() {
        return Err(Error::Stale {
            timestamp: seconds,
            now: now.timestamp(),
        });
    }
    Ok(())
}

/// The tag bytes of `<prefix><64 hex digits>`.
fn tag_hex(header: &str, prefix: &str) -> Result<Vec<u8>, Error> {
    let hex_digits = header
        .trim()
        .strip_prefix(prefix)
        .ok_or(Error::BadSignature)?;
    hex::decode(hex_digits).map_err(|_| Error::BadSignature)
}

fn new_mac(secret: &[u8]) -> Hmac<Sha256> {
    <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC takes a key of any length")
}
