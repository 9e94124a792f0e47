//! The real `imx serve` binary: the API comes up beside the workers, the
//! insecure mode warns and refuses a public address, SIGTERM stops cleanly.

use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::api::WAIT;
use engine::store::ApiKeys;

fn database_url() -> String {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("api-bin-{}", uuid::Uuid::now_v7().simple()));
    format!("sqlite://{}/imx.db", dir.display())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_answers_and_stops_on_sigterm() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_imx"))
        .args([
            "--database-url",
            &database_url(),
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--insecure-no-auth",
        ])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("imx serve starts");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let mut warned = false;
    let address = tokio::time::timeout(WAIT, async {
        while let Ok(Some(line)) = lines.next_line().await {
            warned |= line.contains("WARNING: --insecure-no-auth");
            if let Some(rest) = line.split("API on http://").nth(1) {
                return rest.split('/').next().map(str::to_owned);
            }
        }
        None
    })
    .await
    .expect("the API comes up in time")
    .expect("imx serve names its API address");
    assert!(warned, "insecure mode must warn at start-up");
    let client = reqwest::Client::new();
    let health = client
        .get(format!("http://{address}/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status().as_u16(), 200);
    let body = serde_json::json!({"query": "{ runs(first: 1) { edges { cursor } } }"});
    let response = client
        .post(format!("http://{address}/graphql"))
        .json(&body)
        .send()
        .await
        .expect("graphql");
    assert_eq!(response.status().as_u16(), 200);
    let pid = child.id().expect("a pid").to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .expect("kill runs");
    assert!(killed.success());
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .expect("stops in time")
        .expect("exit status");
    assert_eq!(status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insecure_mode_refuses_a_public_address() {
    let output = Command::new(env!("CARGO_BIN_EXE_imx"))
        .args([
            "--database-url",
            &database_url(),
            "serve",
            "--listen",
            "0.0.0.0:0",
            "--insecure-no-auth",
        ])
        .output()
        .await
        .expect("imx runs");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("only a loopback address"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apikey_create_prints_the_key_once_and_stores_only_its_hash() {
    let url = database_url();
    let imx = |args: Vec<&str>| {
        let url = url.clone();
        let args: Vec<String> = args.into_iter().map(str::to_owned).collect();
        async move {
            Command::new(env!("CARGO_BIN_EXE_imx"))
                .arg("--database-url")
                .arg(&url)
                .args(&args)
                .output()
                .await
                .expect("imx runs")
        }
    };
    let created = imx(vec![
        "apikey", "create", "--role", "operator", "--role", "finance", "--name", "ci",
    ])
    .await;
    assert_eq!(
        created.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let key = String::from_utf8_lossy(&created.stdout).trim().to_owned();
    assert!(key.starts_with("imx_") && key.len() == 4 + 64, "{key}");
    let listed = imx(vec!["apikey", "list"]).await;
    let listing = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(listing.contains("\tci\toperator,finance\t"), "{listing}");
    assert!(
        !listing.contains(&key),
        "the key itself is never shown again"
    );
    let store = engine::store::open(&url).await.expect("the store opens");
    let stored = store.list_api_keys().await.expect("keys");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].key_hash, imx_gateway::api::auth::hash_key(&key));
    let refused = imx(vec!["apikey", "create", "--role", "finance"]).await;
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("at least one built-in role"));
}
