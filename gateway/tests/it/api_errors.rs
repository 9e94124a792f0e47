//! Engine errors over the wire: the coarse `extensions.code` and the
//! engine's `extensions.imxCode` agree whichever path an error took (a store
//! read or a runtime command); an INTERNAL error shows a correlation id and
//! no detail, and the real server's log holds the detail under that id.

use engine::runtime::Error as RuntimeError;
use engine::store::Error as StoreError;
use imx_gateway::api::error::{ApiError, Code};
use serde_json::{Value, json};
use sqlx::Connection;
use uuid::Uuid;

use crate::api::*;
use crate::served::Served;

/// The `extensions` of the first error.
fn extensions(body: &Value) -> &Value {
    &body["errors"][0]["extensions"]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_and_store_errors_reach_the_client_with_their_imx_code() {
    for url in database_urls() {
        let api = TestApi::start(&url, config(), true).await;
        let admin = api.api_key(&["admin"]).await;

        // The runtime path: a command the runtime refuses.
        let (_, unknown_workflow) = api
            .post(
                Some(&admin),
                START,
                json!({"workflow": format!("missing-{}", Uuid::now_v7().simple())}),
            )
            .await;
        // The store path: a read of a run the store does not have.
        let (_, unknown_run) = api
            .post(
                Some(&admin),
                "query($id: ID!) { run(id: $id) { status } }",
                json!({"id": Uuid::now_v7().to_string()}),
            )
            .await;
        assert_eq!(
            (extensions(&unknown_workflow), extensions(&unknown_run)),
            (
                &json!({"code": "NOT_FOUND", "imxCode": "IMX0402"}),
                &json!({"code": "NOT_FOUND", "imxCode": "IMX0314"})
            ),
            "{unknown_workflow} {unknown_run}"
        );

        // Bad input caught by the runtime: VALIDATION, with the message as before.
        let (name, source) = named(NOOP_WORKFLOW, "errors");
        register(&api, &admin, &source).await;
        let (_, bad_key) = api
            .post(Some(&admin), START, json!({"workflow": name, "key": ""}))
            .await;
        assert_eq!(
            extensions(&bad_key),
            &json!({"code": "VALIDATION", "imxCode": "IMX0411"}),
            "{bad_key}"
        );
        let message = bad_key["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(message.starts_with("IMX0411: "), "{bad_key}");

        // Errors of the API itself carry no imxCode.
        let (_, bad_id) = api
            .post(Some(&admin), "{ run(id: \"nope\") { status } }", json!({}))
            .await;
        assert_eq!(extensions(&bad_id), &json!({"code": "VALIDATION"}));
        api.stop().await;
    }
}

/// Broke: the API had two conversions of engine errors; a lost lease was
/// CONFLICT from a store call and INTERNAL (with the raw message) when it
/// came through the runtime.
#[test]
fn lost_lease_is_conflict_through_the_runtime_as_from_the_store() {
    let lost = || StoreError::LeaseLost {
        task_id: Uuid::now_v7(),
    };
    for error in [
        ApiError::from(lost()),
        ApiError::from(RuntimeError::Store(lost())),
    ] {
        assert_eq!(error.code, Code::Conflict, "{error:?}");
        assert_eq!(error.imx_code, Some("IMX0302"));
        assert!(error.message.starts_with("IMX0302: the lease on task"));
        assert_eq!(error.correlation_id, None);
    }
}

async fn serve() -> Served {
    Served::start("api-errors", &[], &[]).await
}

/// The client's correlation id, after checking the error shows nothing else.
fn internal_error(body: &Value, imx_code: &str, hidden: &str) -> String {
    let error = &body["errors"][0];
    assert_eq!(error["extensions"]["code"], "INTERNAL", "{body}");
    assert_eq!(error["extensions"]["imxCode"], imx_code, "{body}");
    let id = error["extensions"]["correlationId"]
        .as_str()
        .unwrap_or_else(|| panic!("no correlationId: {body}"));
    let id = Uuid::parse_str(id).expect("a UUID");
    assert_eq!(id.get_version_num(), 7, "{body}");
    let message = error["message"].as_str().unwrap_or_default();
    assert!(message.contains(&id.to_string()), "{body}");
    assert!(!body.to_string().contains(hidden), "detail leaked: {body}");
    id.to_string()
}

/// The detail of the server's ERROR line with this correlation id.
fn logged_detail(lines: &[String], id: &str) -> String {
    lines
        .iter()
        .filter_map(|text| serde_json::from_str::<Value>(text).ok())
        .find(|line| line["level"] == "ERROR" && line["fields"]["correlation_id"] == id)
        .map(|line| line["fields"].to_string())
        .unwrap_or_else(|| panic!("no ERROR line with correlation_id {id} in {lines:#?}"))
}

async fn wait_waiting(served: &Served, run_id: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let body = served
            .post(
                "query($id: ID!) { run(id: $id) { status } }",
                json!({"id": run_id}),
            )
            .await;
        if body["data"]["run"]["status"] == "WAITING" {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never waiting: {body}"
        );
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_errors_show_a_correlation_id_that_the_server_log_has_with_the_detail() {
    let served = serve().await;
    let (name, source) = named(APPROVAL_WORKFLOW, "internal");
    let register = "mutation($s: String!) { registerWorkflow(source: $s) { __typename } }";
    served.post(register, json!({"s": source})).await;
    let started = served.post(START, json!({"workflow": name})).await;
    let run_id = started["data"]["startRun"]["run"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no run: {started}"))
        .to_owned();
    wait_waiting(&served, &run_id).await;

    // Damage the store behind the server's back: a run row whose input is
    // not JSON, and an event of a type no imx knows after the waiting run's last.
    let mut db = sqlx::SqliteConnection::connect(&served.url)
        .await
        .expect("the database opens");
    let broken_run = Uuid::now_v7().to_string();
    sqlx::query(
        "INSERT INTO runs (run_id, workflow, version, status, input, created_at, updated_at)
         VALUES (?, 'broken', 'sha256:00', 'running', 'not json at all',
                 '2026-01-01T00:00:00.000000Z', '2026-01-01T00:00:00.000000Z')",
    )
    .bind(&broken_run)
    .execute(&mut db)
    .await
    .expect("the run row goes in");
    sqlx::query(
        "INSERT INTO events (position, run_id, seq, event_type, schema_version, payload,
                             recorded_at, prev_hash, hash, log_hash, append_id)
         SELECT (SELECT MAX(position) + 1 FROM events), ?1, MAX(seq) + 1, 'forged.event', 1,
                '{}', '2026-01-01T00:00:00.000000Z', 'x', 'x', 'x', 'forged'
         FROM events WHERE run_id = ?1",
    )
    .bind(&run_id)
    .execute(&mut db)
    .await
    .expect("the event goes in");
    db.close().await.expect("closes");

    // The store path: reading the broken run row.
    let read = served
        .post(
            "query($id: ID!) { run(id: $id) { status } }",
            json!({"id": broken_run}),
        )
        .await;
    let read_id = internal_error(&read, "IMX0312", "bad JSON column");
    // The runtime path: a command on the run with the forged event.
    let cancel = served
        .post(
            "mutation($id: ID!) { cancelRun(id: $id) { status } }",
            json!({"id": run_id}),
        )
        .await;
    let cancel_id = internal_error(&cancel, "IMX0408", "forged.event");
    assert_ne!(read_id, cancel_id);

    let lines = served.stop().await;
    let detail = logged_detail(&lines, &read_id);
    assert!(detail.contains("bad JSON column"), "{detail}");
    assert!(detail.contains("IMX0312"), "{detail}");
    let detail = logged_detail(&lines, &cancel_id);
    assert!(detail.contains("forged.event"), "{detail}");
    assert!(detail.contains("IMX0408"), "{detail}");
}
