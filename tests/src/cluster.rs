//! Real `imx serve` processes on one database: start N, SIGKILL, SIGSTOP,
//! SIGCONT and restart any of them, read what each logged. Every node
//! listens on a free loopback port it picks itself (`127.0.0.1:0`) and
//! names it in its log; http steps may reach loopback only
//! (`--egress-allow 127.0.0.1/32`).

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// How long a node may take to name its API address (a loaded, shared
/// 2-core machine: generous).
pub const NODE_START_MS_MAX: u64 = 90_000;

/// How every node of a cluster is started.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    pub lease_ms: u64,
    pub workers: usize,
    /// Extra `imx serve` arguments.
    pub args: Vec<String>,
    /// Extra environment (e.g. `FAILPOINTS`).
    pub env: Vec<(String, String)>,
}

impl Default for NodeOptions {
    fn default() -> Self {
        NodeOptions {
            lease_ms: 1_000,
            workers: 16,
            args: Vec::new(),
            env: Vec::new(),
        }
    }
}

/// Every line a node wrote to stderr (its JSON log), shared with the
/// reader task.
pub type Log = Arc<Mutex<Vec<String>>>;

/// One `imx serve` process.
#[derive(Debug)]
pub struct Node {
    child: tokio::process::Child,
    pub pid: i32,
    /// `http://127.0.0.1:PORT` of its API.
    pub base: String,
    pub log: Log,
}

impl Node {
    /// Starts `imx serve` on `url`; returns once it named its API address,
    /// or once it ended without (`base` empty then: a failpoint, a refusal).
    pub async fn start(url: &str, options: &NodeOptions) -> Node {
        let (mut child, log) = spawn(url, options);
        let pid = child.id().expect("a pid") as i32;
        let deadline = std::time::Instant::now() + Duration::from_millis(NODE_START_MS_MAX);
        let base = loop {
            if let Some(base) = api_address(&log.lock().expect("log lock")) {
                break base;
            }
            if child.try_wait().ok().flatten().is_some() {
                break String::new();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "imx serve did not name its API address within {NODE_START_MS_MAX} ms: {:#?}",
                log.lock().expect("log lock")
            );
            tokio::time::sleep(Duration::from_millis(testkit::poll::POLL_EVERY_MS)).await;
        };
        Node {
            child,
            pid,
            base,
            log,
        }
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: Signal) {
        nix::sys::signal::kill(Pid::from_raw(self.pid), signal).expect("signal the node");
    }

    /// SIGKILL, then reaps it.
    pub async fn kill(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }

    /// SIGTERM (a graceful stop); its exit code.
    pub async fn stop(mut self) -> Option<i32> {
        // A stopped process does not act on SIGTERM until continued.
        let _ = nix::sys::signal::kill(Pid::from_raw(self.pid), Signal::SIGCONT);
        self.signal(Signal::SIGTERM);
        match tokio::time::timeout(Duration::from_secs(60), self.child.wait()).await {
            Ok(status) => status.ok().and_then(|status| status.code()),
            Err(_) => {
                let _ = self.child.start_kill();
                let _ = self.child.wait().await;
                None
            }
        }
    }

    /// Whether the process has ended, with its exit status then.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The lines it logged so far.
    pub fn lines(&self) -> Vec<String> {
        self.log.lock().expect("log lock").clone()
    }
}

/// Spawns `imx serve` without waiting for it; its stderr is collected.
pub fn spawn(url: &str, options: &NodeOptions) -> (tokio::process::Child, Log) {
    let mut child = Command::new(crate::binary::imx())
        .args(["--database-url", url, "serve", "--listen", "127.0.0.1:0"])
        .args(["--insecure-no-auth", "--egress-allow", "127.0.0.1/32"])
        .args(["--lease-ms", &options.lease_ms.to_string()])
        .args(["--workers", &options.workers.to_string()])
        .args(&options.args)
        .envs(options.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("imx serve starts");
    let log: Log = Arc::default();
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let sink = Arc::clone(&log);
    // Read stderr to its end, so that the pipe never fills.
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            sink.lock().expect("log lock").push(line);
        }
    });
    (child, log)
}

fn api_address(lines: &[String]) -> Option<String> {
    lines.iter().find_map(|line| {
        let rest = line.split("API on http://").nth(1)?;
        rest.split('/').next().map(|addr| format!("http://{addr}"))
    })
}

/// N nodes on one database; a slot is empty while its node is down.
#[derive(Debug)]
pub struct Cluster {
    pub url: String,
    pub options: NodeOptions,
    nodes: Vec<Option<Node>>,
    /// The API bases of the nodes that are up, for clients that must
    /// follow restarts (the approver, the starters).
    pub bases: Arc<Mutex<Vec<String>>>,
    /// Logs of the processes that ended (killed or stopped).
    pub past_logs: Vec<Vec<String>>,
}

impl Cluster {
    pub async fn start(url: &str, nodes: usize, options: NodeOptions) -> Cluster {
        let mut cluster = Cluster {
            url: url.to_owned(),
            options,
            nodes: (0..nodes).map(|_| None).collect(),
            bases: Arc::default(),
            past_logs: Vec::new(),
        };
        for index in 0..nodes {
            cluster.restart(index).await;
        }
        cluster
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn node(&self, index: usize) -> Option<&Node> {
        self.nodes[index].as_ref()
    }

    pub fn node_mut(&mut self, index: usize) -> Option<&mut Node> {
        self.nodes[index].as_mut()
    }

    /// Starts node `index` when it is down.
    pub async fn restart(&mut self, index: usize) {
        if self.nodes[index].is_none() {
            let node = Node::start(&self.url, &self.options).await;
            self.nodes[index] = Some(node);
            self.publish_bases();
        }
    }

    /// SIGKILLs node `index` (when up); whether there was one to kill.
    pub async fn kill(&mut self, index: usize) -> bool {
        let Some(node) = self.nodes[index].take() else {
            return false;
        };
        self.publish_bases();
        let log = Arc::clone(&node.log);
        node.kill().await;
        self.past_logs.push(log.lock().expect("log lock").clone());
        true
    }

    /// Takes node `index` out of the cluster as it is (ended by itself,
    /// e.g. by a failpoint); its log is kept.
    pub async fn reap(&mut self, index: usize) -> Option<std::process::ExitStatus> {
        let mut node = self.nodes[index].take()?;
        self.publish_bases();
        let status = node.child.wait().await.ok();
        self.past_logs.push(node.lines());
        status
    }

    /// Restarts every node that is down.
    pub async fn restart_all(&mut self) {
        for index in 0..self.nodes.len() {
            self.restart(index).await;
        }
    }

    /// Stops every node gracefully; every log (past ones first).
    pub async fn shutdown(mut self) -> Vec<Vec<String>> {
        let mut logs = std::mem::take(&mut self.past_logs);
        for node in self.nodes.iter_mut().filter_map(Option::take) {
            let log = Arc::clone(&node.log);
            node.stop().await;
            logs.push(log.lock().expect("log lock").clone());
        }
        logs
    }

    fn publish_bases(&self) {
        let bases = self
            .nodes
            .iter()
            .flatten()
            .filter(|node| !node.base.is_empty())
            .map(|node| node.base.clone())
            .collect();
        *self.bases.lock().expect("bases lock") = bases;
    }
}
