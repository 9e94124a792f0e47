//! Operations: SIGTERM lets an in-flight request and a running step finish
//! (grace) while new connections are refused; `/readyz` is 503 whenever the
//! database's migrations are not exactly this node's.

use std::process::Stdio;

use engine::store::prelude::*;
use serde_json::{Value, json};
use sqlx::Connection;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;
use tokio::sync::mpsc;

use crate::api::*;

/// Waits for the next stderr line containing `needle`.
async fn line_with(lines: &mut mpsc::UnboundedReceiver<String>, needle: &str) -> String {
    tokio::time::timeout(WAIT, async {
        while let Some(line) = lines.recv().await {
            if line.contains(needle) {
                return line;
            }
        }
        panic!("imx serve ended without logging {needle:?}");
    })
    .await
    .unwrap_or_else(|_| panic!("no {needle:?} in time"))
}

async fn post(base: &str, query: &str, variables: Value) -> Result<Value, reqwest::Error> {
    reqwest::Client::new()
        .post(format!("{base}/graphql"))
        .json(&json!({"query": query, "variables": variables}))
        .send()
        .await?
        .json()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_the_in_flight_request_and_step() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("api-stop-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).expect("a folder");
    // The step blocks reading this FIFO until the test writes to it.
    let fifo = dir.join("release");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    assert!(made.expect("mkfifo runs").success());
    let url = format!("sqlite://{}/imx.db", dir.display());
    let mut child = Command::new(env!("CARGO_BIN_EXE_imx"))
        .args(["--database-url", &url, "serve", "--listen", "127.0.0.1:0"])
        .args(["--insecure-no-auth", "--enable-exec"])
        .env("IMX_LOG", "info,engine=debug,imx_gateway=debug")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("imx serve starts");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let (sender, mut lines) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(Some(line)) = stderr.next_line().await {
            let _ = sender.send(line);
        }
    });
    let line = line_with(&mut lines, "API on http://").await;
    let address = line
        .split("API on http://")
        .nth(1)
        .and_then(|r| r.split('/').next());
    let base = format!("http://{}", address.expect("an address"));

    let (name, source) = named(
        &format!(
            "name: NAME\nsteps:\n  wait:\n    uses: exec\n    with: {{ command: [\"head\", \"-c\", \"1\", \"{}\"] }}\n",
            fifo.display()
        ),
        "stop",
    );
    let registered = post(&base, REGISTER, json!({"source": source})).await;
    assert_eq!(
        registered.expect("registers")["data"]["registerWorkflow"]["__typename"],
        "Workflow"
    );
    let started = post(&base, START, json!({"workflow": name}))
        .await
        .expect("starts");
    let run_id = started["data"]["startRun"]["run"]["id"]
        .as_str()
        .expect("a run id")
        .to_owned();
    line_with(&mut lines, "attempt started").await;

    // An operation held in flight by the store's write lock.
    let mut lock = sqlx::SqliteConnection::connect(&url)
        .await
        .expect("a connection");
    sqlx::raw_sql("BEGIN IMMEDIATE")
        .execute(&mut lock)
        .await
        .expect("the write lock");
    let (late_name, late_source) = named(NOOP_WORKFLOW, "late");
    let in_flight = tokio::spawn({
        let base = base.clone();
        async move { post(&base, REGISTER, json!({"source": late_source})).await }
    });
    line_with(&mut lines, "operation received").await;

    // A subscriber is connected when the signal comes.
    let mut ws = Ws::connect_to(&base, "none").await.expect("connects");
    let updates = "subscription { runUpdates { event { type } } }";
    ws.subscribe("u", updates, json!({})).await;

    let pid = child.id().expect("a pid").to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().await;
    assert!(killed.expect("kill runs").success());
    line_with(&mut lines, "shutting down the API").await;
    let refused = post(&base, "{ __typename }", json!({})).await;
    assert!(
        refused.is_err(),
        "a new request was served after SIGTERM: {refused:?}"
    );

    sqlx::raw_sql("ROLLBACK")
        .execute(&mut lock)
        .await
        .expect("rollback");
    let answered = tokio::time::timeout(WAIT, in_flight)
        .await
        .expect("in time");
    let answered = answered
        .expect("the task ends")
        .expect("the in-flight request is answered");
    assert_eq!(
        answered["data"]["registerWorkflow"]["__typename"], "Workflow",
        "{answered}"
    );
    let mut release = tokio::fs::OpenOptions::new()
        .write(true)
        .open(&fifo)
        .await
        .expect("the FIFO opens");
    release.write_all(b"x").await.expect("the step is released");
    drop(release);
    // The subscription ends and the socket closes; the process does not wait on it.
    let mut ended = Vec::new();
    while let Some(message) = ws.next().await {
        let kind = message["type"].as_str().unwrap_or_default().to_owned();
        let closed = kind == "closed";
        ended.push(kind);
        if closed {
            break;
        }
    }
    assert!(ended.contains(&"complete".to_owned()), "{ended:?}");
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .expect("stops in time");
    assert_eq!(status.expect("exit status").code(), Some(0));

    // What was in flight is recorded: the late workflow and the step's success.
    let store = engine::store::open(&url).await.expect("the store opens");
    let late = store.get_workflow(&late_name, None).await.expect("reads");
    assert!(late.is_some(), "the in-flight registration was lost");
    let run = uuid::Uuid::parse_str(&run_id).expect("a uuid");
    let steps = store.get_steps(run).await.expect("steps");
    let wait = steps
        .iter()
        .find(|step| step.step_id == "wait")
        .expect("the step");
    assert_eq!(wait.status, "succeeded", "{steps:?}");
}

/// Sets the SQLite database's migration table out of step with this node.
async fn migrations(url: &str, sql: &str) {
    let mut connection = sqlx::SqliteConnection::connect(url)
        .await
        .expect("a connection");
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&mut connection)
        .await
        .expect("the migration table changes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_needs_exactly_this_nodes_migrations() {
    // SQLite only: the PostgreSQL database is shared with the other tests.
    let url = database_urls().remove(0);
    let api = TestApi::start(&url, config(), false).await;
    assert_eq!(api.get("/readyz").await, (200, "ready\n".to_owned()));
    // Ahead: a migration from a newer imx.
    migrations(&url, "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES (99990101000000, 'from a newer imx', 1, x'00', 0)").await;
    let (status, text) = api.get("/readyz").await;
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("run a newer imx"), "{text}");
    migrations(
        &url,
        "DELETE FROM _sqlx_migrations WHERE version = 99990101000000",
    )
    .await;
    assert_eq!(api.get("/readyz").await.0, 200);
    // Behind: the latest migration is not applied.
    migrations(&url, "UPDATE _sqlx_migrations SET success = 0 WHERE version = (SELECT MAX(version) FROM _sqlx_migrations)").await;
    let (status, text) = api.get("/readyz").await;
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("imx migrate"), "{text}");
    assert_eq!(api.get("/healthz").await.0, 200, "alive, though not ready");
    api.stop().await;
}
