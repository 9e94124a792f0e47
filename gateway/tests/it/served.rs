//! A real `imx serve` process on a fresh SQLite file whose stderr (the JSON
//! log) is collected, for tests that check what the server logged.

use std::process::Stdio;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::api::WAIT;

/// `imx serve --listen 127.0.0.1:0 --insecure-no-auth`, its log collected.
pub struct Served {
    child: tokio::process::Child,
    /// `http://127.0.0.1:PORT` of the API.
    pub base: String,
    /// The SQLite URL the server uses.
    pub url: String,
    log: tokio::task::JoinHandle<Vec<String>>,
}

impl Served {
    /// Starts the server with `args` after `serve …` and `env` set; returns
    /// once it has named its API address.
    pub async fn start(name: &str, args: &[&str], env: &[(&str, &str)]) -> Served {
        let url = Served::scratch_url(name);
        Served::start_on(&url, true, args, env).await
    }

    /// A fresh SQLite URL under the target's temporary folder.
    pub fn scratch_url(name: &str) -> String {
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("{name}-{}", uuid::Uuid::now_v7().simple()));
        format!("sqlite://{}/imx.db", dir.display())
    }

    /// `imx serve` on the store at `url`, with `--insecure-no-auth` or
    /// with authentication (API keys created beforehand on `url`).
    pub async fn start_on(
        url: &str,
        insecure: bool,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Served {
        let url = url.to_owned();
        let mut child = Command::new(env!("CARGO_BIN_EXE_imx"))
            .args(["--database-url", &url, "serve", "--listen", "127.0.0.1:0"])
            .args(insecure.then_some("--insecure-no-auth"))
            .args(args)
            .envs(env.iter().copied())
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("imx serve starts");
        let mut stderr = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let base = tokio::time::timeout(WAIT, async {
            while let Ok(Some(line)) = stderr.next_line().await {
                if let Some(rest) = line.split("API on http://").nth(1) {
                    return rest.split('/').next().map(|addr| format!("http://{addr}"));
                }
            }
            None
        })
        .await
        .expect("the API comes up in time")
        .expect("imx serve names its API address");
        // Read the rest of stderr from now on, so the pipe never fills.
        let log = tokio::spawn(async move {
            let mut lines = Vec::new();
            while let Ok(Some(line)) = stderr.next_line().await {
                lines.push(line);
            }
            lines
        });
        Served {
            child,
            base,
            url,
            log,
        }
    }

    /// A GraphQL request over HTTP; the JSON answer.
    pub async fn post(&self, query: &str, variables: Value) -> Value {
        reqwest::Client::new()
            .post(format!("{}/graphql", self.base))
            .json(&json!({"query": query, "variables": variables}))
            .send()
            .await
            .expect("the server answers")
            .json()
            .await
            .expect("a JSON answer")
    }

    /// Stops the server (SIGTERM), checks it exits 0, and returns its log.
    pub async fn stop(mut self) -> Vec<String> {
        let pid = self.child.id().expect("a pid").to_string();
        let killed = Command::new("kill").args(["-TERM", &pid]).status().await;
        assert!(killed.expect("kill runs").success());
        let status = tokio::time::timeout(WAIT, self.child.wait()).await;
        assert_eq!(
            status.expect("stops in time").expect("exit").code(),
            Some(0)
        );
        tokio::time::timeout(WAIT, self.log)
            .await
            .expect("stderr closes")
            .expect("the reader ends")
    }
}
