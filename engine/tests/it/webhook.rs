//! Webhook rules without HTTP: both signature schemes (GitHub's published
//! test vector, the imx scheme's time window both ways), delivery ids, the
//! idempotency key and what the `input` template sees. The HTTP side is
//! tested over the wire in gateway/tests/it/webhook.

use chrono::{DateTime, Duration, TimeZone, Utc};
use engine::triggers::webhook::{
    self, Error, Headers, Scheme, TIMESTAMP_TOLERANCE_SECONDS, signature,
};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::json;
use sha2::Sha256;

/// GitHub's example (docs.github.com, "Validating webhook deliveries").
const GITHUB_SECRET: &str = "It's a Secret to Everybody";
const GITHUB_PAYLOAD: &str = "Hello, World!";
const GITHUB_SIGNATURE: &str =
    "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

const SECRET: &str = "a webhook secret";
const BODY: &str = r#"{"repository":{"full_name":"acme/shop"}}"#;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 7, 4, 0, 0).unwrap()
}

fn headers(pairs: &[(&str, &str)]) -> Headers {
    pairs
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect()
}

/// `v1=<hex>` over `{timestamp}.{body}`, computed here independently of the engine.
fn imx_signature(secret: &str, timestamp: &str, body: &str) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.{body}").as_bytes());
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

fn imx_headers(secret: &str, at: DateTime<Utc>, body: &str) -> Headers {
    let timestamp = at.timestamp().to_string();
    let signature = imx_signature(secret, &timestamp, body);
    headers(&[
        ("x-imx-timestamp", &timestamp),
        ("x-imx-signature", &signature),
    ])
}

#[test]
fn github_published_test_vector_is_accepted() {
    let found = headers(&[("x-hub-signature-256", GITHUB_SIGNATURE)]);
    let scheme = signature::verify(
        GITHUB_SECRET.as_bytes(),
        &found,
        GITHUB_PAYLOAD.as_bytes(),
        now(),
    );
    assert_eq!(scheme.unwrap(), Scheme::GitHub);
}

#[test]
fn github_signature_of_another_body_or_secret_is_refused() {
    let found = headers(&[("x-hub-signature-256", GITHUB_SIGNATURE)]);
    let other_body = signature::verify(GITHUB_SECRET.as_bytes(), &found, b"Hello, World?", now());
    assert!(
        matches!(other_body, Err(Error::BadSignature)),
        "{other_body:?}"
    );
    let other_secret = signature::verify(b"another", &found, GITHUB_PAYLOAD.as_bytes(), now());
    assert!(
        matches!(other_secret, Err(Error::BadSignature)),
        "{other_secret:?}"
    );
}

#[test]
fn malformed_or_missing_signatures_are_one_refusal() {
    let truncated = &GITHUB_SIGNATURE[..GITHUB_SIGNATURE.len() - 2];
    let cases = [
        headers(&[]),
        headers(&[("x-hub-signature-256", truncated)]),
        headers(&[("x-hub-signature-256", &GITHUB_SIGNATURE[7..])]),
        headers(&[("x-hub-signature-256", "sha256=not hex")]),
        // The SHA-1 header alone is never enough.
        headers(&[(
            "x-hub-signature",
            "sha1=01dc10d0c83e72ed246219cdd91669667fe2ca59",
        )]),
        // An imx signature without its timestamp.
        headers(&[("x-imx-signature", "v1=00")]),
    ];
    for case in cases {
        let verdict = signature::verify(
            GITHUB_SECRET.as_bytes(),
            &case,
            GITHUB_PAYLOAD.as_bytes(),
            now(),
        );
        assert!(
            matches!(verdict, Err(Error::BadSignature)),
            "{case:?}: {verdict:?}"
        );
    }
}

#[test]
fn imx_scheme_is_accepted_within_the_window_both_ways() {
    let window = Duration::seconds(TIMESTAMP_TOLERANCE_SECONDS);
    for at in [now(), now() - window, now() + window] {
        let signed = imx_headers(SECRET, at, BODY);
        let verdict = signature::verify(SECRET.as_bytes(), &signed, BODY.as_bytes(), now());
        assert_eq!(verdict.unwrap(), Scheme::Imx, "signed at {at}");
    }
}

#[test]
fn imx_scheme_is_refused_outside_the_window_both_ways() {
    let beyond = Duration::seconds(TIMESTAMP_TOLERANCE_SECONDS + 1);
    for at in [now() - beyond, now() + beyond] {
        let signed = imx_headers(SECRET, at, BODY);
        let verdict = signature::verify(SECRET.as_bytes(), &signed, BODY.as_bytes(), now());
        match verdict {
            Err(Error::Stale {
                timestamp,
                now: seen,
            }) => {
                assert_eq!(timestamp, at.timestamp());
                assert_eq!(seen, now().timestamp());
            }
            other => panic!("signed at {at}: {other:?}"),
        }
    }
}

#[test]
fn imx_stale_is_said_only_of_a_correct_signature() {
    let old = now() - Duration::seconds(TIMESTAMP_TOLERANCE_SECONDS * 10);
    let signed = imx_headers("another secret", old, BODY);
    let verdict = signature::verify(SECRET.as_bytes(), &signed, BODY.as_bytes(), now());
    assert!(matches!(verdict, Err(Error::BadSignature)), "{verdict:?}");
}

#[test]
fn imx_signature_covers_the_timestamp() {
    let mut signed = imx_headers(SECRET, now(), BODY);
    signed.insert(
        "x-imx-timestamp".to_owned(),
        (now().timestamp() + 1).to_string(),
    );
    let verdict = signature::verify(SECRET.as_bytes(), &signed, BODY.as_bytes(), now());
    assert!(matches!(verdict, Err(Error::BadSignature)), "{verdict:?}");
}

#[test]
fn imx_timestamp_must_be_plain_digits() {
    for timestamp in ["+1796616000", " 1796616000", "1796616000.0", "", "-5"] {
        let signature = imx_signature(SECRET, timestamp, BODY);
        let signed = headers(&[
            ("x-imx-timestamp", timestamp),
            ("x-imx-signature", &signature),
        ]);
        let verdict = signature::verify(SECRET.as_bytes(), &signed, BODY.as_bytes(), now());
        assert!(
            matches!(verdict, Err(Error::BadSignature)),
            "{timestamp:?}: {verdict:?}"
        );
    }
}

#[test]
fn imx_scheme_wins_over_github_when_both_are_sent() {
    let mut signed = imx_headers(SECRET, now(), BODY);
    signed.insert("x-hub-signature-256".to_owned(), "sha256=00".to_owned());
    let verdict = signature::verify(SECRET.as_bytes(), &signed, BODY.as_bytes(), now());
    assert_eq!(verdict.unwrap(), Scheme::Imx);
}

#[test]
fn delivery_id_comes_from_github_then_imx_and_is_checked() {
    let both = headers(&[("x-github-delivery", "gh-1"), ("x-imx-delivery", "imx-1")]);
    assert_eq!(webhook::delivery(&both).unwrap().as_deref(), Some("gh-1"));
    let imx = headers(&[("x-imx-delivery", "imx-1")]);
    assert_eq!(webhook::delivery(&imx).unwrap().as_deref(), Some("imx-1"));
    assert_eq!(webhook::delivery(&headers(&[])).unwrap(), None);
    let long = "d".repeat(webhook::DELIVERY_ID_BYTES_MAX + 1);
    for bad in ["", "a\u{7}b", long.as_str()] {
        let refused = webhook::delivery(&headers(&[("x-imx-delivery", bad)]));
        assert!(
            matches!(refused, Err(Error::InvalidDelivery { .. })),
            "{bad:?}: {refused:?}"
        );
    }
}

#[test]
fn idempotency_key_names_workflow_trigger_and_delivery() {
    assert_eq!(
        webhook::idempotency_key("deploy", "webhook", "72d3162e"),
        "webhook:deploy:webhook:72d3162e"
    );
}

#[test]
fn template_scope_hides_signatures_and_credentials() {
    let found = headers(&[
        ("x-github-event", "push"),
        ("x-hub-signature-256", "sha256=00"),
        ("x-hub-signature", "sha1=00"),
        ("x-imx-signature", "v1=00"),
        ("authorization", "Bearer t"),
        ("cookie", "c=1"),
    ]);
    let scope = webhook::scope("github", Some("d-1"), &found, json!({"a": 1}));
    assert_eq!(
        serde_json::Value::Object(scope),
        json!({
            "body": {"a": 1},
            "headers": {"x-github-event": "push"},
            "trigger": {"id": "github", "delivery": "d-1"},
        })
    );
}

#[test]
fn a_key_over_the_limit_is_hashed_and_stays_one_per_delivery() {
    let workflow = "w".repeat(engine::core::dsl::NAME_BYTES_MAX);
    let trigger = "t".repeat(engine::core::dsl::TRIGGER_ID_BYTES_MAX);
    let first = webhook::idempotency_key(&workflow, &trigger, &"a".repeat(128));
    let second = webhook::idempotency_key(&workflow, &trigger, &"b".repeat(128));
    assert!(first.starts_with("webhook:sha256:"), "{first}");
    assert!(first.len() <= engine::runtime::IDEMPOTENCY_KEY_BYTES_MAX);
    assert_ne!(first, second);
    assert!(engine::runtime::check_idempotency_key(&first).is_ok());
}
