//! `imx run`, `imx runs`, `imx approve|reject`, `imx serve` and `imx agent`
//! through the real binary on a SQLite store in a temporary folder.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Outcome, imx};

/// How long a test waits for a background `imx` to finish a run.
const WAIT_MS_MAX: u64 = 30_000;

/// A fresh SQLite store in a temporary folder, and `imx` on it.
pub struct Store {
    pub folder: tempfile::TempDir,
    url: String,
}

impl Store {
    pub fn new() -> Store {
        let folder = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}/imx.db", folder.path().display());
        Store { folder, url }
    }

    pub fn imx(&self, args: &[&str]) -> Outcome {
        let mut all = vec!["--database-url", self.url.as_str()];
        all.extend_from_slice(args);
        imx(&all)
    }

    pub fn file(&self, name: &str, text: &str) -> String {
        let path = self.folder.path().join(name);
        std::fs::write(&path, text).expect("write a workflow file");
        path.display().to_string()
    }

    fn spawn(&self, args: &[&str]) -> Background {
        let child = Command::new(env!("CARGO_BIN_EXE_imx"))
            .arg("--database-url")
            .arg(&self.url)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn imx");
        Background(child)
    }

    pub fn document(&self, run_id: &str) -> Value {
        let shown = self.imx(&["runs", "show", run_id, "--json"]);
        assert_eq!(shown.code, 0, "{shown:?}");
        serde_json::from_str(&shown.stdout).expect("run document")
    }

    /// Polls (with a deadline) until the run has `status`.
    fn wait_for(&self, run_id: &str, status: &str) -> Value {
        let deadline = Instant::now() + Duration::from_millis(WAIT_MS_MAX);
        loop {
            let document = self.document(run_id);
            if document["status"] == status {
                return document;
            }
            assert!(
                Instant::now() < deadline,
                "run never got {status}: {document}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn runs(&self) -> Vec<Value> {
        let listed = self.imx(&["runs", "--json"]);
        assert_eq!(listed.code, 0, "{listed:?}");
        serde_json::from_str::<Vec<Value>>(&listed.stdout).expect("runs JSON")
    }
}

/// A background `imx`, killed when dropped.
struct Background(Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn hello() -> String {
    let root = super::repo_root();
    Path::new(&root)
        .join("workflows/hello.yaml")
        .display()
        .to_string()
}

fn parse(outcome: &Outcome) -> Value {
    serde_json::from_str(&outcome.stdout).unwrap_or_else(|_| panic!("JSON on stdout: {outcome:?}"))
}

#[test]
fn run_wait_json_prints_the_finished_run() {
    let store = Store::new();
    let input = r#"{"names": ["ada", "grace"], "nap": "50ms"}"#;
    let ran = store.imx(&["run", &hello(), "--input", input, "--wait", "--json"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    let document = parse(&ran);
    assert_eq!(document["status"], "succeeded");
    assert_eq!(document["workflow"], "hello");
    assert_eq!(document["output"]["greeted"], 2);
    assert_eq!(document["output"]["first"], "Hello, ada!");
    assert!(
        ran.stderr.contains("nap"),
        "progress lines on stderr: {}",
        ran.stderr
    );
    let id = document["id"].as_str().expect("id");
    assert_eq!(
        store.document(id),
        document,
        "runs show gives the same document"
    );
    let runs = store.runs();
    assert_eq!(
        (runs.len(), &runs[0]["status"]),
        (1, &Value::from("succeeded"))
    );
    // By name now that it is registered; input from a file.
    let input_file = store.file("input.json", r#"{"names": ["x"], "nap": "10ms"}"#);
    let by_name = store.imx(&[
        "run",
        "hello",
        "--input",
        &format!("@{input_file}"),
        "--wait",
    ]);
    assert_eq!(by_name.code, 0, "{by_name:?}");
    assert!(by_name.stdout.contains("succeeded"), "{by_name:?}");
}

#[test]
fn failed_run_exits_1() {
    let store = Store::new();
    let file = store.file(
        "broken.yaml",
        "name: broken\nsteps:\n  a: { uses: fail, with: { message: on purpose }, retry: { max_attempts: 1 } }\n",
    );
    let ran = store.imx(&["run", &file, "--wait", "--json"]);
    assert_eq!(ran.code, 1, "{ran:?}");
    let document = parse(&ran);
    assert_eq!(document["status"], "failed");
    assert!(
        document["error"]
            .as_str()
            .unwrap_or_default()
            .contains("on purpose")
    );
}

#[test]
fn bad_input_is_refused_and_nothing_is_written() {
    let store = Store::new();
    let malformed = store.imx(&["run", &hello(), "--input", "{names: ["]);
    assert_eq!(malformed.code, 2, "{malformed:?}");
    assert!(
        malformed.stderr.contains("--input is not valid JSON"),
        "{malformed:?}"
    );
    let invalid = store.imx(&["run", &hello(), "--input", r#"{"names": [7], "x": 1}"#]);
    assert_eq!(invalid.code, 2, "{invalid:?}");
    assert!(invalid.stderr.contains("IMX0404"), "{invalid:?}");
    assert!(
        invalid.stderr.contains("/names/0"),
        "JSON pointer: {invalid:?}"
    );
    let unknown = store.imx(&["run", "no-such-workflow"]);
    assert_eq!(unknown.code, 2, "{unknown:?}");
    assert!(unknown.stderr.contains("IMX0402"), "{unknown:?}");
    let yaml = store.file("bad.yaml", "name: bad\nsteps:\n  a: { uses: teleport }\n");
    let broken = store.imx(&["run", &yaml]);
    assert_eq!(broken.code, 2, "{broken:?}");
    assert!(
        broken.stderr.contains("bad.yaml:3:"),
        "file:line:col: {broken:?}"
    );
    let missing_file = store.file("input.json", "");
    let empty = store.imx(&["run", &hello(), "--input", &format!("@{missing_file}.nope")]);
    assert_eq!(empty.code, 2, "{empty:?}");
    assert_eq!(store.runs(), Vec::<Value>::new(), "nothing was written");
}

#[test]
fn serve_carries_out_a_run_started_without_wait() {
    let store = Store::new();
    let input = r#"{"names": ["ada"], "nap": "100ms"}"#;
    let started = store.imx(&["run", &hello(), "--input", input]);
    assert_eq!(started.code, 0, "{started:?}");
    let run_id = started.stdout.trim().to_owned();
    assert_eq!(
        store.document(&run_id)["status"],
        "running",
        "only recorded, not carried out"
    );
    let _serve = store.spawn(&["serve", "--listen", "127.0.0.1:0"]);
    let document = store.wait_for(&run_id, "succeeded");
    assert_eq!(document["steps"]["nap"]["status"], "succeeded");
}

const GATE: &str = r#"
name: gate
steps:
  ask: { uses: approval, with: { message: "go?" } }
  go: { needs: [ask], uses: noop, with: { by: "{{ steps.ask.output.by }}" } }
"#;

#[test]
fn approve_and_reject_from_the_command_line() {
    let store = Store::new();
    let file = store.file("gate.yaml", GATE);
    let first = store.imx(&["run", &file]);
    let second = store.imx(&["run", "gate"]);
    let (first, second) = (
        first.stdout.trim().to_owned(),
        second.stdout.trim().to_owned(),
    );
    assert_eq!(store.document(&first)["status"], "waiting");
    let approved = store.imx(&["approve", &first, "ask", "--by", "ada", "--comment", "ok"]);
    assert_eq!(approved.code, 0, "{approved:?}");
    let document = store.document(&first);
    assert_eq!(document["status"], "succeeded");
    assert_eq!(document["steps"]["go"]["output"]["by"], "ada");
    let rejected = store.imx(&["reject", &second, "ask", "--comment", "no"]);
    assert_eq!(rejected.code, 0, "{rejected:?}");
    assert_eq!(store.document(&second)["status"], "failed");
    let twice = store.imx(&["approve", &first, "ask"]);
    assert_eq!(twice.code, 1, "{twice:?}");
    assert!(twice.stderr.contains("IMX0406"), "{twice:?}");
}

#[test]
fn agents_carry_out_agent_steps() {
    let store = Store::new();
    let file = store.file(
        "agented.yaml",
        r#"
name: agented
steps:
  work: { uses: agent, with: { queue: builders, payload: { n: 21 } } }
output: { got: "{{ steps.work.output }}" }
"#,
    );
    // Two agents and a run open the new store at once: their migrations race.
    let script = r#"read task; printf '{"key": "%s", "task": %s}' "$IMX_IDEMPOTENCY_KEY" "$task""#;
    let _agents = [
        store.spawn(&["agent", "--queue", "builders", "--", "sh", "-c", script]),
        store.spawn(&["agent", "--queue", "builders", "--", "sh", "-c", script]),
    ];
    let ran = store.imx(&["run", &file, "--wait", "--json"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    let document = parse(&ran);
    let got = &document["output"]["got"];
    let run_id = document["id"].as_str().expect("id");
    assert_eq!(got["key"], format!("{run_id}/work"));
    assert_eq!(got["task"]["input"]["payload"]["n"], 21);
    assert_eq!(got["task"]["attempt"], 1);
}

#[test]
fn exec_runs_only_where_enabled() {
    let store = Store::new();
    let file = store.file(
        "local.yaml",
        r#"
name: local
steps:
  say: { uses: exec, with: { command: [echo, "hello {{ run.workflow }}"] } }
output: { said: "{{ steps.say.output.stdout }}" }
"#,
    );
    let started = store.imx(&["run", &file]);
    let run_id = started.stdout.trim().to_owned();
    // A node without exec leaves the step alone instead of failing it: give
    // it the time of another run (a nap) to do the wrong thing.
    let _plain = store.spawn(&["serve"]);
    let input = r#"{"names": ["x"], "nap": "500ms"}"#;
    let other = store.imx(&["run", &hello(), "--input", input, "--wait"]);
    assert_eq!(other.code, 0, "{other:?}");
    let waiting = store.document(&run_id);
    assert_eq!(waiting["steps"]["say"]["status"], "running", "{waiting}");
    let ran = store.imx(&["run", &file, "--enable-exec", "--wait", "--json"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    assert_eq!(parse(&ran)["output"]["said"], "hello local\n");
    let _exec = store.spawn(&["serve", "--enable-exec"]);
    store.wait_for(&run_id, "succeeded");
}

#[test]
fn http_steps_reach_a_real_server() {
    let store = Store::new();
    let site = tempfile::tempdir().expect("site folder");
    std::fs::write(site.path().join("order.json"), r#"{"items": ["a", "b"]}"#).expect("write");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port");
    let _server = Background(
        Command::new("python3")
            .args([
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .current_dir(site.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 -m http.server"),
    );
    let file = store.file(
        "fetch.yaml",
        r#"
name: fetch
input: { type: object, required: [base_url] }
steps:
  get:
    uses: http
    with: { method: GET, url: "{{ input.base_url }}/order.json" }
    retry: { max_attempts: 20, backoff: fixed, initial_interval: 100ms }
  each: { needs: [get], for_each: "{{ steps.get.output.body['items'] }}", uses: noop, with: { item: "{{ item }}" } }
output: { count: "{{ steps.each.output | length }}", status: "{{ steps.get.output.status }}" }
"#,
    );
    let input = format!(r#"{{"base_url": "http://127.0.0.1:{port}"}}"#);
    // Retries cover the moments before the server listens. The server is on
    // loopback, which the node egress policy denies unless allowed.
    let ran = store.imx(&[
        "run",
        &file,
        "--input",
        &input,
        "--wait",
        "--json",
        "--egress-allow",
        "127.0.0.1/32",
    ]);
    assert_eq!(ran.code, 0, "{ran:?}");
    let document = parse(&ran);
    assert_eq!(
        document["output"],
        serde_json::json!({"count": 2, "status": 200})
    );
}
