//! Idempotency keys over the wire (issue #13, item 11): a key with NUL
//! (which PostgreSQL text cannot store) or longer than 255 bytes is refused
//! by the engine's run start with IMX0411, as VALIDATION.

use serde_json::json;

use super::Server;

const REGISTER: &str =
    r#"mutation($source: String!) { registerWorkflow(source: $source) { __typename } }"#;
const START: &str = r#"mutation($key: String) {
  startRun(workflow: "keyed", idempotencyKey: $key) { created run { id } } }"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_key_with_nul_or_over_255_bytes_is_refused_over_the_api() {
    let server = Server::start(&[], &[]).await;
    let admin = server.api_key("admin").await;
    let source = "name: keyed\nsteps:\n  a: { uses: noop }\n";
    let (status, body) = server
        .graphql(Some(&admin), REGISTER, json!({"source": source}))
        .await;
    assert_eq!(status, 200, "{body}");
    for key in ["order\u{0}7".to_owned(), "k".repeat(256)] {
        let (_, body) = server
            .graphql(Some(&admin), START, json!({"key": key}))
            .await;
        let error = &body["errors"][0];
        assert_eq!(error["extensions"]["code"], "VALIDATION", "{body}");
        let message = error["message"].as_str().unwrap_or_default();
        assert!(message.starts_with("IMX0411: "), "{message}");
    }
    let (_, body) = server
        .graphql(Some(&admin), START, json!({"key": "k".repeat(255)}))
        .await;
    assert_eq!(body["data"]["startRun"]["created"], true, "{body}");
    server.assert_healthy().await;
}
