//! The abuse suite: a real `imx serve` process on a fresh SQLite store on
//! a loopback port, fed hostile input over the wire; every probe asserts a
//! clean refusal with its code, that `/healthz` keeps answering, and that
//! the server's memory stays under [`RSS_PEAK_BYTES_MAX`].
//!
//! One file per probe family. A new probe starts a [`Server`] with the
//! flags it needs, does its damage, then calls [`Server::assert_healthy`].

mod cli_input;
mod engine;
mod flags;
mod idempotency;
mod metrics;
mod slow_clients;
mod websocket;

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use crate::api::WAIT;

/// Highest peak resident memory (VmHWM) the server may reach during a
/// probe, in bytes. An idle server holds ~30-60 MiB; the hostile inputs
/// of issue #13 took it past 250 MiB more.
pub const RSS_PEAK_BYTES_MAX: u64 = 300 * 1024 * 1024;

/// Most stderr lines a [`Server`] keeps for a test to look at.
pub const LOG_LINES_MAX: usize = 10_000;

/// A running `imx serve`, killed when dropped.
pub struct Server {
    child: Child,
    pub database_url: String,
    /// `127.0.0.1:PORT` of the API.
    pub addr: String,
    /// `127.0.0.1:PORT` of `--metrics-listen`, when given.
    pub metrics_addr: Option<String>,
    /// The server's stderr lines after start-up (up to [`LOG_LINES_MAX`]).
    pub logs: Arc<Mutex<Vec<String>>>,
    _folder: tempfile::TempDir,
}

/// Resident memory of a process, in bytes.
#[derive(Debug, Clone, Copy)]
pub struct Memory {
    pub rss_bytes: u64,
    pub peak_bytes: u64,
}

impl Server {
    /// `imx serve --listen 127.0.0.1:0 ARGS…` with `env`; API keys only
    /// unless `args` say otherwise.
    pub async fn start(args: &[&str], env: &[(&str, &str)]) -> Server {
        let folder = tempfile::tempdir().expect("a temporary folder");
        let database_url = format!("sqlite://{}/imx.db", folder.path().display());
        let mut command = Command::new(env!("CARGO_BIN_EXE_imx"));
        command
            .args([
                "--database-url",
                &database_url,
                "serve",
                "--listen",
                "127.0.0.1:0",
            ])
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("imx serve starts");
        let stderr = child.stderr.take().expect("stderr");
        let mut lines = BufReader::new(stderr).lines();
        let mut seen = Vec::new();
        let addr = tokio::time::timeout(WAIT, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(rest) = line.split("API on http://").nth(1) {
                    return rest.split('/').next().map(str::to_owned);
                }
                seen.push(line);
            }
            None
        })
        .await
        .expect("the API comes up in time");
        let Some(addr) = addr else {
            panic!("imx serve did not start:\n{}", seen.join("\n"));
        };
        // The metrics line comes after the API line (log lines may come between).
        let mut metrics_addr = None;
        if args.contains(&"--metrics-listen") {
            metrics_addr = tokio::time::timeout(WAIT, async {
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Some(rest) = line.split("metrics on http://").nth(1) {
                        return rest.split('/').next().map(str::to_owned);
                    }
                }
                None
            })
            .await
            .expect("the metrics line in time");
        }
        // Keep reading stderr so the server never blocks on a full pipe.
        let logs = Arc::new(Mutex::new(Vec::new()));
        let kept = logs.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let mut kept = kept.lock().unwrap_or_else(|p| p.into_inner());
                if kept.len() < LOG_LINES_MAX {
                    kept.push(line);
                }
            }
        });
        Server {
            child,
            database_url,
            addr,
            metrics_addr,
            logs,
            _folder: folder,
        }
    }

    /// Whether a stderr line holding every one of `needles` appears within `within`.
    pub async fn logged(&self, needles: &[&str], within: Duration) -> bool {
        testkit::poll::eventually(within, || {
            let logs = self.logs.lock().unwrap_or_else(|p| p.into_inner());
            logs.iter()
                .any(|line| needles.iter().all(|needle| line.contains(needle)))
        })
        .await
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The server's current and peak resident memory, from /proc.
    pub fn memory(&self) -> Memory {
        let pid = self.child.id().expect("the server runs");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
                .map(|kib| kib * 1024)
                .unwrap_or_else(|| panic!("{name} in /proc/{pid}/status"))
        };
        Memory {
            rss_bytes: field("VmRSS:"),
            peak_bytes: field("VmHWM:"),
        }
    }

    /// `/healthz` answers and the peak memory stayed under the bound.
    pub async fn assert_healthy(&self) {
        let health = reqwest::get(format!("{}/healthz", self.base()))
            .await
            .expect("healthz answers");
        assert_eq!(health.status().as_u16(), 200);
        let memory = self.memory();
        assert!(
            memory.rss_bytes <= memory.peak_bytes,
            "VmRSS is never above VmHWM ({memory:?})"
        );
        assert!(
            memory.peak_bytes < RSS_PEAK_BYTES_MAX,
            "peak RSS {} bytes, more than {RSS_PEAK_BYTES_MAX} ({memory:?})",
            memory.peak_bytes
        );
    }

    /// A new API key with `role`, made by `imx apikey create` on the server's store.
    pub async fn api_key(&self, role: &str) -> String {
        let created = Command::new(env!("CARGO_BIN_EXE_imx"))
            .args([
                "--database-url",
                &self.database_url,
                "apikey",
                "create",
                "--role",
                role,
            ])
            .output()
            .await
            .expect("imx apikey runs");
        assert_eq!(created.status.code(), Some(0), "{created:?}");
        String::from_utf8_lossy(&created.stdout).trim().to_owned()
    }

    /// POST /graphql; the status and the JSON body.
    pub async fn graphql(
        &self,
        token: Option<&str>,
        query: &str,
        variables: Value,
    ) -> (u16, Value) {
        let mut request = reqwest::Client::new()
            .post(format!("{}/graphql", self.base()))
            .json(&json!({"query": query, "variables": variables}));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("graphql answers");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

/// Opens a WebSocket to `/graphql` by hand (graphql-transport-ws), so that
/// a probe can write frames no well-behaved client library would.
pub async fn raw_websocket(addr: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "GET /graphql HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .expect("write the upgrade");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let byte = tokio::time::timeout(WAIT, stream.read_u8())
            .await
            .expect("the upgrade answer in time")
            .expect("the upgrade answer");
        head.push(byte);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    stream
}

/// Reads server frames until a close frame and returns its status code;
/// `None` when the connection ends without one.
pub async fn close_code(stream: &mut TcpStream) -> Option<u16> {
    let read = async {
        loop {
            let first = stream.read_u8().await.ok()?;
            let second = stream.read_u8().await.ok()?;
            let length = match second & 0x7f {
                126 => u64::from(stream.read_u16().await.ok()?),
                127 => stream.read_u64().await.ok()?,
                short => u64::from(short),
            };
            let mut payload = vec![0; usize::try_from(length).ok()?];
            stream.read_exact(&mut payload).await.ok()?;
            if first & 0x0f == 0x8 {
                return payload
                    .get(..2)
                    .map(|code| u16::from_be_bytes([code[0], code[1]]));
            }
        }
    };
    tokio::time::timeout(WAIT, read)
        .await
        .expect("the server answers or closes in time")
}

/// Polls with a deadline until `read` reports the end of the stream
/// (0 bytes or an error): the server closed the connection.
pub async fn wait_for_close(stream: &mut TcpStream, within: Duration) -> Result<(), String> {
    let mut buffer = [0u8; 4096];
    let outcome = tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await;
    outcome.map_err(|_| format!("the connection was still open after {within:?}"))
}
