//! What a Kafka trigger makes of one message, without a broker: the
//! template scope, the dead-letter reasons, idempotency keys and groups.

use engine::runtime::IDEMPOTENCY_KEY_BYTES_MAX;
use engine::triggers::kafka::{
    DeadLetterReason, Received, TRIGGER_MESSAGE_BYTES_MAX, default_dead_letter_topic,
    default_group, idempotency_key, scope,
};
use serde_json::json;

fn received<'a>(value: Option<&'a [u8]>, key: Option<&'a [u8]>) -> Received<'a> {
    Received {
        topic: "orders",
        partition: 2,
        offset: 41,
        key,
        value,
        headers: vec![("source", Some(b"shop".as_slice())), ("empty", None)],
    }
}

#[test]
fn the_scope_holds_value_key_headers_and_position() {
    let message = received(Some(br#"{"id": 7}"#), Some(b"k-1"));
    assert_eq!(
        scope(&message).expect("usable"),
        json!({
            "value": { "id": 7 }, "key": "k-1",
            "headers": { "source": "shop", "empty": null },
            "topic": "orders", "partition": 2, "offset": 41,
        })
    );
}

#[test]
fn a_message_that_is_not_json_not_text_or_too_large_is_rejected_with_its_reason() {
    let reason = |message: &Received<'_>| scope(message).map(|_| ()).map_err(|r| r.reason);
    assert_eq!(
        reason(&received(Some(b"not json"), None)),
        Err(DeadLetterReason::NotJson)
    );
    assert_eq!(
        reason(&received(None, None)),
        Err(DeadLetterReason::NotJson)
    );
    assert_eq!(
        reason(&received(Some(b"1"), Some(&[0xff, 0x00]))),
        Err(DeadLetterReason::NotUtf8)
    );
    let big = format!("\"{}\"", "x".repeat(TRIGGER_MESSAGE_BYTES_MAX));
    assert_eq!(
        reason(&received(Some(big.as_bytes()), None)),
        Err(DeadLetterReason::TooLarge)
    );
    let rejected = scope(&received(Some(b"{"), None)).expect_err("not JSON");
    assert!(
        rejected
            .message()
            .starts_with("IMX0608: the message value is not JSON")
    );
}

#[test]
fn keys_name_workflow_trigger_and_position_and_long_ones_are_hashed_to_fit() {
    assert_eq!(
        idempotency_key("orders", "kafka", "shop.orders", 2, 41),
        "kafka:orders:kafka:shop.orders:2:41"
    );
    let long = "t".repeat(249);
    let key = idempotency_key("orders", "kafka", &long, 2, 41);
    assert!(key.starts_with("kafka:sha256:") && key.len() <= IDEMPOTENCY_KEY_BYTES_MAX);
    assert_ne!(key, idempotency_key("orders", "kafka", &long, 2, 42));
}

#[test]
fn groups_are_per_workflow_unless_two_triggers_share_a_topic() {
    assert_eq!(default_group("orders", "kafka", false), "imx.orders");
    assert_eq!(default_group("orders", "audit", true), "imx.orders.audit");
    assert_eq!(default_dead_letter_topic("orders"), "orders.dlq");
}
