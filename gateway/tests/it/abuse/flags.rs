//! Environment flags (issue #13, item 9): every boolean accepts the usual
//! spellings (1/0, true/false, yes/no, on/off, any case), and the HS256
//! secret can come from a file instead of a flag that `ps` shows.

use serde_json::json;
use tokio::process::Command;

use super::Server;
use crate::api::{AUDIENCE, ISSUER, SECRET, WAIT, jwt};

const ANY_RUNS: &str = "{ runs(first: 1) { edges { cursor } } }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insecure_no_auth_env_accepts_1_and_the_other_boolean_spellings() {
    for spelling in ["1", "yes", "ON", "True"] {
        let server = Server::start(&[], &[("IMX_INSECURE_NO_AUTH", spelling)]).await;
        let (status, body) = server.graphql(None, ANY_RUNS, json!({})).await;
        assert_eq!(status, 200, "IMX_INSECURE_NO_AUTH={spelling}: {body}");
    }
    let refused = Command::new(env!("CARGO_BIN_EXE_imx"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("IMX_INSECURE_NO_AUTH", "maybe")
        .kill_on_drop(true)
        .output();
    let refused = tokio::time::timeout(WAIT, refused)
        .await
        .expect("refused in time")
        .expect("imx runs");
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("'maybe'"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enable_exec_env_accepts_1() {
    let folder = tempfile::tempdir().expect("a temporary folder");
    let file = folder.path().join("say.yaml");
    let source = "name: say\nsteps:\n  say: { uses: exec, with: { command: [echo, hi] } }\n";
    std::fs::write(&file, source).expect("write the workflow");
    let url = format!("sqlite://{}/imx.db", folder.path().display());
    let file = file.display().to_string();
    let ran = Command::new(env!("CARGO_BIN_EXE_imx"))
        .args(["--database-url", &url, "run", &file, "--wait", "--json"])
        .env("IMX_ENABLE_EXEC", "1")
        .kill_on_drop(true)
        .output();
    let ran = tokio::time::timeout(WAIT, ran)
        .await
        .expect("the run ends in time")
        .expect("imx runs");
    assert_eq!(ran.status.code(), Some(0), "{ran:?}");
    let document: serde_json::Value =
        serde_json::from_slice(&ran.stdout).expect("the run document");
    assert_eq!(document["steps"]["say"]["output"]["stdout"], "hi\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_secret_file_is_read_without_its_trailing_newline() {
    let folder = tempfile::tempdir().expect("a temporary folder");
    let secret_file = folder.path().join("jwt-secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).expect("write the secret");
    let secret_file = secret_file.display().to_string();
    let args = [
        "--jwt-algorithm",
        "HS256",
        "--jwt-secret-file",
        &secret_file,
        "--jwt-issuer",
        ISSUER,
        "--jwt-audience",
        AUDIENCE,
    ];
    let server = Server::start(&args, &[]).await;
    let token = jwt(&["viewer"], 60);
    let (status, body) = server.graphql(Some(&token), ANY_RUNS, json!({})).await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = server.graphql(None, ANY_RUNS, json!({})).await;
    assert_eq!(status, 401);
    server.assert_healthy().await;
}
