//! Operational behaviour over the wire: a blocked operation gets a timeout
//! answer instead of hanging, operations sent over WebSocket draw from the
//! same per-caller rate limit as HTTP ones, and subscriptions on a node
//! without a runtime follow runs another node carries out.

use serde_json::{Value, json};
use sqlx::Connection;

use crate::api::*;

/// Holds the store's write side busy until dropped: SQLite's write lock
/// (`BEGIN IMMEDIATE` on a connection of our own), or on PostgreSQL a SHARE
/// lock on `workflows`, which blocks inserts but not reads.
enum WriteLock {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl WriteLock {
    async fn take(url: &str) -> WriteLock {
        if url.starts_with("sqlite:") {
            let mut connection = sqlx::SqliteConnection::connect(url)
                .await
                .expect("a second SQLite connection");
            sqlx::raw_sql("BEGIN IMMEDIATE")
                .execute(&mut connection)
                .await
                .expect("the write lock");
            WriteLock::Sqlite(connection)
        } else {
            let mut connection = sqlx::PgConnection::connect(url)
                .await
                .expect("a second PostgreSQL connection");
            sqlx::raw_sql("BEGIN; LOCK TABLE workflows IN SHARE MODE")
                .execute(&mut connection)
                .await
                .expect("the table lock");
            WriteLock::Postgres(connection)
        }
    }

    async fn release(self) {
        match self {
            WriteLock::Sqlite(mut connection) => {
                sqlx::raw_sql("ROLLBACK")
                    .execute(&mut connection)
                    .await
                    .expect("rollback");
            }
            WriteLock::Postgres(mut connection) => {
                sqlx::raw_sql("ROLLBACK")
                    .execute(&mut connection)
                    .await
                    .expect("rollback");
            }
        }
    }
}

/// Timeout of the operation under test: far below the store's own busy and
/// lock waits (seconds), so only the API's timeout can end it.
const TIMEOUT_MS: u64 = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_operation_gets_a_timeout_answer_not_a_hang() {
    for url in database_urls() {
        let mut config = config();
        config.limits.request_timeout_ms = TIMEOUT_MS;
        let api = TestApi::start(&url, config, true).await;
        let admin = api.api_key(&["admin"]).await;
        let (name, source) = named(NOOP_WORKFLOW, "timeout");
        let lock = WriteLock::take(&url).await;
        let began = std::time::Instant::now();
        let (status, body) = api
            .post(Some(&admin), REGISTER, json!({"source": source}))
            .await;
        let waited = began.elapsed();
        assert_eq!((status, code(&body)), (408, "LIMIT".to_owned()), "{body}");
        let message = body["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(message.contains("request_timeout_ms"), "{message}");
        assert!(
            waited < WAIT,
            "the answer came after {waited:?}, not at the timeout"
        );
        // The same over the WebSocket: `next` with the LIMIT error, then `complete`.
        let mut ws = Ws::connect(&api, &admin).await.expect("connects");
        ws.subscribe("t", REGISTER, json!({"source": source})).await;
        let answer = ws.next().await.expect("an answer");
        assert_eq!(
            (
                &answer["id"],
                &answer["payload"]["errors"][0]["extensions"]["code"]
            ),
            (&json!("t"), &json!("LIMIT")),
            "{answer}"
        );
        let complete = ws.next().await.expect("complete");
        assert_eq!(complete["type"], "complete", "{complete}");
        ws.close().await;
        // Reads do not wait on the lock: the server keeps answering.
        let data = api.data(&admin, "{ workflows { name } }", json!({})).await;
        assert!(data["workflows"].is_array(), "{data}");
        lock.release().await;
        // The abandoned operation left nothing behind: registering works.
        register(&api, &admin, &source).await;
        let data = api
            .data(
                &admin,
                "query($name: String!) { workflow(name: $name) { name } }",
                json!({"name": name}),
            )
            .await;
        assert_eq!(data["workflow"]["name"], name.as_str());
        api.stop().await;
    }
}

/// Sends `{ __typename }` as a WebSocket operation and returns its first answer.
async fn ws_operation(ws: &mut Ws, id: &str) -> Value {
    ws.subscribe(id, "{ __typename }", json!({})).await;
    let answer = ws.next().await.expect("an answer");
    assert_eq!(answer["id"], id, "{answer}");
    let complete = ws.next().await.expect("complete");
    assert_eq!(
        (&complete["type"], &complete["id"]),
        (&json!("complete"), &json!(id))
    );
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_operations_count_against_the_callers_rate_limit() {
    let (api, one, other) = rate_limited_api().await;
    // Two HTTP operations and one over the socket use up the burst of 3.
    for _ in 0..2 {
        assert_eq!(
            api.post(Some(&one), "{ __typename }", json!({})).await.0,
            200
        );
    }
    let mut ws = Ws::connect(&api, &one).await.expect("connects");
    let first = ws_operation(&mut ws, "a").await;
    assert_eq!(first["payload"]["data"]["__typename"], "Query", "{first}");
    let refused = ws_operation(&mut ws, "b").await;
    assert_eq!(refused["type"], "next", "{refused}");
    assert_eq!(
        refused["payload"]["errors"][0]["extensions"]["code"], "LIMIT",
        "{refused}"
    );
    assert!(refused["payload"].get("data").is_none_or(Value::is_null));
    // Subscriptions are refused the same way, and the socket stays open.
    ws.subscribe(
        "c",
        "subscription { runUpdates { event { seq } } }",
        json!({}),
    )
    .await;
    let refused = ws.next().await.expect("an answer");
    assert_eq!(
        (
            &refused["id"],
            &refused["payload"]["errors"][0]["extensions"]["code"]
        ),
        (&json!("c"), &json!("LIMIT")),
        "{refused}"
    );
    // The bucket is the caller's: HTTP is refused too, another caller is not.
    let (status, body) = api.post(Some(&one), "{ __typename }", json!({})).await;
    assert_eq!((status, code(&body)), (429, "LIMIT".to_owned()));
    let mut other_ws = Ws::connect(&api, &other).await.expect("connects");
    let answer = ws_operation(&mut other_ws, "a").await;
    assert_eq!(answer["payload"]["data"]["__typename"], "Query", "{answer}");
    ws.close().await;
    other_ws.close().await;
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_on_one_node_see_runs_carried_out_by_another() {
    for url in database_urls() {
        // The watcher has no runtime: everything it sees comes through the store.
        let watcher = TestApi::start(&url, config(), false).await;
        let worker = TestApi::start(&url, config(), true).await;
        let admin = worker.api_key(&["admin"]).await;
        let (name, source) = named(NOOP_WORKFLOW, "across");
        register(&worker, &admin, &source).await;
        let mut updates = Ws::connect(&watcher, &admin).await.expect("connects");
        let filter = json!({"filter": {"workflow": name}});
        updates
            .subscribe(
                "u",
                "subscription($filter: RunUpdatesFilter) { runUpdates(filter: $filter) { event { type } run { id status } } }",
                filter,
            )
            .await;
        let run_id = start(&worker, &admin, &name).await;
        let mut events = Ws::connect(&watcher, &admin).await.expect("connects");
        let query = "subscription($id: ID!) { runEvents(runId: $id, afterSeq: 0) { seq type } }";
        events.subscribe("e", query, json!({"id": run_id})).await;
        let mut seqs = Vec::new();
        let mut last = String::new();
        loop {
            let message = events.next().await.expect("a message");
            if message["type"] == "complete" {
                break;
            }
            let event = &message["payload"]["data"]["runEvents"];
            assert!(event.is_object(), "{message}");
            seqs.push(event["seq"].as_u64().expect("a seq"));
            last = event["type"].as_str().unwrap_or_default().to_owned();
        }
        let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
        assert_eq!(seqs, expected, "every event once, in order");
        assert_eq!(last, "run.succeeded");
        // runUpdates reaches the run's end too.
        loop {
            let message = updates.next().await.expect("an update");
            let update = &message["payload"]["data"]["runUpdates"];
            assert_eq!(update["run"]["id"], run_id.as_str(), "{message}");
            if update["event"]["type"] == "run.succeeded" {
                assert_eq!(update["run"]["status"], "SUCCEEDED");
                break;
            }
        }
        events.close().await;
        updates.close().await;
        worker.stop().await;
        watcher.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_errors_carry_codes_like_http_ones() {
    let url = database_urls().remove(0);
    let api = TestApi::start(&url, config(), false).await;
    let viewer = api.api_key(&["viewer"]).await;
    let depth_100 = format!(
        "subscription {{ runUpdates {{ run {{ {}__typename{} }} }} }}",
        "steps { ".repeat(50),
        " }".repeat(50)
    );
    let cases = [
        ("depth 100", depth_100.as_str()),
        ("syntax error", "subscription { runUpdates("),
        ("unknown field", "subscription { nope }"),
        (
            "unknown run",
            "subscription { runEvents(runId: \"00000000-0000-7000-8000-000000000000\") { seq } }",
        ),
    ];
    let mut ws = Ws::connect(&api, &viewer).await.expect("connects");
    let mut table = String::new();
    for (id, (name, query)) in cases.iter().enumerate() {
        ws.subscribe(&id.to_string(), query, json!({})).await;
        let answer = ws.next().await.expect("an answer");
        let code = answer["payload"]["errors"][0]["extensions"]["code"]
            .as_str()
            .unwrap_or("<none>")
            .to_owned();
        table.push_str(&format!("{name:14} {} {code}\n", answer["type"]));
        let complete = ws.next().await.expect("complete");
        assert_eq!(complete["type"], "complete", "{complete}");
    }
    expect_test::expect![[r#"
        depth 100      "next" LIMIT
        syntax error   "next" VALIDATION
        unknown field  "next" VALIDATION
        unknown run    "next" NOT_FOUND
    "#]]
    .assert_eq(&table);
    ws.close().await;
    api.stop().await;
}
