//! Idempotency keys at the run start, on both backends: a key longer than
//! `IDEMPOTENCY_KEY_BYTES_MAX` or holding a control character (NUL cannot
//! be stored in PostgreSQL text) is refused with IMX0411 and writes nothing;
//! a key of exactly the limit is stored and finds its run again.

use engine::runtime::{Error, IDEMPOTENCY_KEY_BYTES_MAX, StartRequest};
use serde_json::json;

use super::{Node, both_backends};

both_backends!(keys:
    idempotency_key_with_nul_or_too_long_is_refused_and_writes_nothing,
    idempotency_key_of_exactly_the_limit_is_stored_and_found_again,
);

const ONE_STEP: &str = r#"
name: one-step
steps:
  a: { uses: noop }
"#;

fn start(key: &str) -> StartRequest {
    StartRequest {
        workflow: "one-step".to_owned(),
        input: json!({}),
        idempotency_key: Some(key.to_owned()),
        ..StartRequest::default()
    }
}

async fn idempotency_key_with_nul_or_too_long_is_refused_and_writes_nothing(url: &str) {
    let node = Node::start(url).await;
    node.register(ONE_STEP).await;
    let too_long = "k".repeat(IDEMPOTENCY_KEY_BYTES_MAX + 1);
    for (key, expected) in [
        ("order\u{0}7", "control character U+0000 at byte 5"),
        ("line\nbreak", "control character U+000A at byte 4"),
        ("", "is empty"),
        (too_long.as_str(), "is 256 bytes, more than 255"),
    ] {
        let refused = node.runtime.start_run(start(key)).await;
        let error = refused.expect_err("the key is refused");
        assert!(
            matches!(error, Error::InvalidIdempotencyKey { .. }),
            "{error}"
        );
        let message = error.to_string();
        assert!(
            message.starts_with("IMX0411: ") && message.contains(expected),
            "{message}"
        );
    }
    node.assert_no_runs().await;
    node.stop().await;
}

async fn idempotency_key_of_exactly_the_limit_is_stored_and_found_again(url: &str) {
    let node = Node::start(url).await;
    node.register(ONE_STEP).await;
    // Multi-byte characters: the limit counts bytes, not characters.
    let key = "é".repeat(IDEMPOTENCY_KEY_BYTES_MAX / 2) + "k";
    assert_eq!(key.len(), IDEMPOTENCY_KEY_BYTES_MAX);
    let first = node.runtime.start_run(start(&key)).await.expect("first");
    let second = node.runtime.start_run(start(&key)).await.expect("second");
    assert_eq!((first.existing, second.existing), (false, true));
    assert_eq!(first.run_id, second.run_id);
    node.stop().await;
}
