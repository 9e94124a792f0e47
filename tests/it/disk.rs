//! Scenario 6, the database refuses writes: a node's SQLite store on a
//! small filesystem (a tmpfs the test mounts, hence run as root, like CI;
//! unmounted at the end) that fills up — clear errors, no corruption, the
//! engine continues once space is freed; and PostgreSQL unreachable when `imx
//! serve` starts — it waits with backoff, logs why, and comes up once the
//! database answers.

use std::io::Write;
use std::time::{Duration, Instant};

use e2e::checker::{self, Expect};
use e2e::cluster::{Node, NodeOptions};
use e2e::graphql::{self, Answer};
use e2e::proxy::Proxy;
use e2e::target::Target;
use serde_json::json;
use testkit::postgres::{ClusterUse, ScratchDatabase};
use uuid::Uuid;

/// The filesystem the SQLite store lives on.
const FILESYSTEM_BYTES: u64 = 16 * 1024 * 1024;
/// Runs started before the disk fills and after it is freed.
const RUNS: usize = 5;
/// How long the filesystem stays full (the fault's length).
const FULL_MS: u64 = 3_000;
const WAIT_MS_MAX: u64 = 120_000;
/// The password in the unreachable database's URL.
const PASSWORD: &str = "e2e-password-never-logged";

const WORKFLOW: &str = r#"
name: e2e-disk
input: { type: object, required: [pad] }
steps:
  a: { uses: noop, with: { pad: "{{ input.pad }}" } }
  nap: { needs: [a], uses: sleep, with: { duration: 200ms } }
  b: { needs: [nap], uses: noop, with: { pad: "{{ input.pad }}" } }
"#;

async fn start_run(node: &Node) -> Answer {
    let variables = json!({"workflow": "e2e-disk", "input": {"pad": "p".repeat(20_000)}});
    match graphql::post(&graphql::client(), &node.base, graphql::START, variables).await {
        Ok(answer) => answer,
        Err(error) => panic!("the node answers: {error}; its log: {:#?}", node.lines()),
    }
}

fn run_id(answer: &Answer) -> Option<Uuid> {
    answer.body["data"]["startRun"]["run"]["id"]
        .as_str()
        .and_then(|id| Uuid::parse_str(id).ok())
}

/// A tmpfs of [`FILESYSTEM_BYTES`] on a folder, unmounted when dropped.
struct Tmpfs(String);

impl Tmpfs {
    fn mount(dir: &str) -> Tmpfs {
        let size = format!("size={FILESYSTEM_BYTES}");
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &size, "tmpfs", dir])
            .output()
            .expect("mount runs");
        assert!(
            mounted.status.success(),
            "scenario 6 mounts a tmpfs and needs root (CI runs as root): {}",
            String::from_utf8_lossy(&mounted.stderr)
        );
        Tmpfs(dir.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a node that has not ended yet keeps its files until it does.
        let _ = std::process::Command::new("umount")
            .args(["-l", &self.0])
            .status();
    }
}

/// Fills the filesystem holding `path` until it refuses a write.
fn fill(path: &std::path::Path) -> u64 {
    let mut file = std::fs::File::create(path).expect("create the filler");
    let chunk = vec![0u8; 64 * 1024];
    let mut written = 0;
    while file.write_all(&chunk).is_ok() {
        written += chunk.len() as u64;
    }
    let _ = file.sync_all();
    written
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_on_a_full_filesystem_fails_clearly_and_continues_once_space_is_freed() {
    let _alone = e2e::one_at_a_time().await;
    let began = Instant::now();
    let folder = tempfile::tempdir().expect("temp dir");
    let dir = folder.path().display().to_string();
    // Not a mount namespace of the node's own (`unshare -m`): SQLite
    // resolves the symbolic link `/proc/PID/root` when the checker opens the
    // file through it, and would read the folder outside the namespace.
    let _mounted = Tmpfs::mount(&dir);
    let url = format!("sqlite://{dir}/imx.db");
    let node = Node::start(&url, &NodeOptions::default()).await;
    assert!(
        !node.base.is_empty(),
        "the node starts: {:#?}",
        node.lines()
    );
    let inside = folder.path().to_path_buf();
    let outside_url = url.clone();
    let answer = graphql::post(
        &graphql::client(),
        &node.base,
        graphql::REGISTER,
        json!({"source": WORKFLOW}),
    )
    .await
    .expect("register");
    assert_eq!(
        answer.body["data"]["registerWorkflow"]["__typename"], "Workflow",
        "{answer:?}"
    );
    let mut acknowledged: Vec<Uuid> = Vec::new();
    for _ in 0..RUNS {
        acknowledged.push(run_id(&start_run(&node).await).expect("a start before the disk fills"));
    }
    let filler = inside.join("filler");
    let filled = tokio::task::spawn_blocking({
        let filler = filler.clone();
        move || fill(&filler)
    })
    .await
    .expect("fill task");
    let within = Duration::from_millis(WAIT_MS_MAX);
    let deadline = Instant::now() + within;
    let refusal = loop {
        let answer = start_run(&node).await;
        match run_id(&answer) {
            // Free pages inside the database can still take a start.
            Some(id) => acknowledged.push(id),
            None => break answer,
        }
        assert!(
            Instant::now() < deadline,
            "no start was refused for the full disk"
        );
        tokio::time::sleep(Duration::from_millis(testkit::poll::POLL_EVERY_MS)).await;
    };
    assert!(refusal.status < 500, "{refusal:?}");
    let codes = refusal.error_codes();
    let message = refusal.body["errors"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        codes.iter().all(|code| code != "INTERNAL") && message.contains("full"),
        "a full disk is a clear error, not INTERNAL: {}: {:?}",
        refusal.body,
        node.lines()
            .iter()
            .filter(|line| line.contains("correlation"))
            .collect::<Vec<_>>()
    );
    // The fault's length, not a wait for something.
    tokio::time::sleep(Duration::from_millis(FULL_MS)).await;
    std::fs::remove_file(&filler).expect("free the space");
    for _ in 0..RUNS {
        acknowledged
            .push(run_id(&start_run(&node).await).expect("a start after the space is freed"));
    }
    let target = Target::start().await;
    let expect = Expect {
        acknowledged,
        within,
        all_succeed: true,
    };
    let report = checker::check(&outside_url, &expect, &target).await;
    let pool = sqlx::SqlitePool::connect(&outside_url)
        .await
        .expect("open the file");
    let integrity: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&pool)
        .await
        .expect("integrity check");
    assert_eq!(integrity, "ok", "the SQLite file is not corrupt");
    pool.close().await;
    let log = node.lines();
    node.stop().await;
    e2e::figures(
        "scenario 6 (a full filesystem under SQLite)",
        &format!(
            "{FILESYSTEM_BYTES}-byte tmpfs filled with {filled} bytes for {FULL_MS} ms, refusal {codes:?} \"{message}\", {} log lines, integrity_check ok, {:.1} s in all; {report}",
            log.len(),
            began.elapsed().as_secs_f64()
        ),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_waits_for_an_unreachable_postgres_with_backoff_and_logs_why() {
    let _alone = e2e::one_at_a_time().await;
    let Some(db) = ScratchDatabase::create(
        "unreachable PostgreSQL",
        "imx_e2e_unreachable",
        ClusterUse::Shared,
    )
    .await
    else {
        return;
    };
    let began = Instant::now();
    // A free loopback port nobody listens on (yet).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let (head, name) = db.url.rsplit_once('/').expect("a database URL");
    let upstream: std::net::SocketAddr = head
        .rsplit_once('@')
        .map(|(_, addr)| addr)
        .and_then(|a| a.parse().ok())
        .expect("host:port");
    let (host, _) = head.rsplit_once(':').expect("a port");
    // Trust authentication ignores a password: this one must never be logged.
    let url = format!("{host}:{port}/{name}").replacen('@', &format!(":{PASSWORD}@"), 1);
    let (mut child, log) = e2e::cluster::spawn(&url, &NodeOptions::default());
    let within = Duration::from_millis(WAIT_MS_MAX);
    let retries = |log: &e2e::cluster::Log| {
        log.lock()
            .expect("log")
            .iter()
            .filter(|line| line.contains("cannot reach the store"))
            .count()
    };
    testkit::poll::until("the node logs two failed tries", within, || {
        retries(&log) >= 2
    })
    .await;
    assert!(
        child.try_wait().expect("wait").is_none(),
        "the node keeps waiting: {log:?}"
    );
    let waited = began.elapsed();
    // The database appears on that port.
    let _proxy = Proxy::start_on(port, upstream).await;
    let base = testkit::poll::until_some("the node comes up", within, || {
        let found = log.lock().expect("log").iter().find_map(|line| {
            line.split("API on http://")
                .nth(1)
                .and_then(|rest| rest.split('/').next())
                .map(|a| format!("http://{a}"))
        });
        async move { found }
    })
    .await;
    let ready = graphql::client()
        .get(format!("{base}/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status().as_u16(), 200);
    let lines = log.lock().expect("log").clone();
    let first = lines
        .iter()
        .find(|line| line.contains("cannot reach the store"))
        .cloned()
        .unwrap_or_default();
    assert!(first.contains("IMX0307"), "the log says why: {first}");
    assert!(
        first.contains(":***@") && lines.iter().all(|line| !line.contains(PASSWORD)),
        "the database password stays out of the log: {:#?}",
        lines
            .iter()
            .filter(|line| line.contains(PASSWORD))
            .collect::<Vec<_>>()
    );
    let _ = child.start_kill();
    let _ = child.wait().await;
    e2e::figures(
        "scenario 6 (PostgreSQL unreachable at start)",
        &format!(
            "{} tries logged over {:.1} s before the database appeared, up {:.1} s after start; first: {first}",
            retries(&log),
            waited.as_secs_f64(),
            began.elapsed().as_secs_f64()
        ),
    );
}
