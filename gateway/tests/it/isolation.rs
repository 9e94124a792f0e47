//! What a workflow cannot reach through a node: the node's secrets from an
//! `exec` step's process (it reads /proc of its parent, the node), and
//! addresses the egress policy denies, checked with the real `imx` inside an
//! empty network namespace (`unshare -n`: only a loopback that is down).

use std::process::Command;

use serde_json::Value;

use super::Outcome;

/// The canary secret; the tests look for it (and for it reversed, which the
/// node's redaction of secret values would not hide).
const CANARY: &str = "canary-5f0c2a9e-secret";

/// A SQLite store and workflow files in a temporary folder.
struct Folder {
    folder: tempfile::TempDir,
}

impl Folder {
    fn new() -> Folder {
        Folder {
            folder: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn url(&self) -> String {
        format!("sqlite://{}/imx.db", self.folder.path().display())
    }

    fn file(&self, name: &str, text: &str) -> String {
        let path = self.folder.path().join(name);
        std::fs::write(&path, text).expect("write a workflow file");
        path.display().to_string()
    }
}

fn outcome(output: std::process::Output) -> Outcome {
    Outcome {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn document(ran: &Outcome) -> Value {
    serde_json::from_str(&ran.stdout).unwrap_or_else(|_| panic!("a run document: {ran:?}"))
}

#[test]
fn exec_steps_cannot_read_the_nodes_secrets_from_proc() {
    let folder = Folder::new();
    // The step's process is the node's child: $PPID is the node. It prints
    // the node's environment and the memory file named there, reversed.
    let peek = r#"tr '\0' '\n' < /proc/$PPID/environ | rev; fd=$(tr '\0' '\n' < /proc/$PPID/environ | sed -n 's/^IMX_SECRETS_FD=//p'); echo "fd=$fd"; if [ -n "$fd" ]; then cat /proc/$PPID/fd/$fd | rev; fi; env | rev"#;
    let file = folder.file(
        "peek.yaml",
        &format!(
            r#"
name: peek
steps:
  peek:
    uses: exec
    with: {{ command: [sh, -c, {peek:?}] }}
    retry: {{ max_attempts: 1 }}
  given:
    uses: exec
    with: {{ command: [sh, -c, 'printf %s "$TOKEN" | rev'], env: {{ TOKEN: "{{{{ secrets.CANARY }}}}" }} }}
    retry: {{ max_attempts: 1 }}
"#
        ),
    );
    let ran = outcome(
        Command::new(env!("CARGO_BIN_EXE_imx"))
            .args(["--database-url", &folder.url(), "run", &file])
            .args(["--enable-exec", "--wait", "--json"])
            .env("IMX_SECRET_CANARY", CANARY)
            .output()
            .expect("the imx binary runs"),
    );
    assert_eq!(ran.code, 0, "{ran:?}");
    let run = document(&ran);
    let reversed: String = CANARY.chars().rev().collect();
    // The step that was given the secret got it: the node still has it.
    assert_eq!(run["steps"]["given"]["output"]["stdout"], reversed.as_str());
    let seen = run["steps"]["peek"]["output"]["stdout"]
        .as_str()
        .expect("peek prints text");
    assert!(!seen.contains(&reversed), "the secret leaked: {seen}");
    assert!(!seen.contains(CANARY), "the secret leaked: {seen}");
    assert!(
        !seen.contains("***"),
        "the secret leaked (redacted): {seen}"
    );
    // The memory file named by the node's IMX_SECRETS_FD was read, and empty.
    assert!(
        seen.contains(&"IMX_SECRETS_FD=".chars().rev().collect::<String>()),
        "the node runs re-executed, with the descriptor variable: {seen}"
    );
    assert!(seen.contains("fd="), "{seen}");
    assert!(!ran.stdout.contains(CANARY), "{ran:?}");
}

/// `imx run --wait --json` of a one-step workflow fetching `url`, inside an
/// empty network namespace, with `extra` arguments.
fn fetch_in_empty_namespace(url: &str, extra: &[&str]) -> Value {
    let folder = Folder::new();
    let file = folder.file(
        "fetch.yaml",
        &format!(
            "name: fetch\nsteps:\n  get:\n    uses: http\n    with: {{ method: GET, url: \"{url}\" }}\n    retry: {{ max_attempts: 1 }}\n"
        ),
    );
    let ran = outcome(
        Command::new("unshare")
            .args(["-n", env!("CARGO_BIN_EXE_imx")])
            .args([
                "--database-url",
                &folder.url(),
                "run",
                &file,
                "--wait",
                "--json",
            ])
            .args(extra)
            .output()
            .expect("unshare runs"),
    );
    assert_eq!(ran.code, 1, "the step cannot succeed here: {ran:?}");
    document(&ran)
}

#[test]
fn egress_allow_lets_a_denied_address_through_to_connect_inside_an_empty_network_namespace() {
    let empty = Command::new("unshare")
        .args(["-n", "true"])
        .status()
        .expect("unshare runs");
    assert!(empty.success(), "unshare -n needs root or user namespaces");
    // Inside the namespace no route exists: nothing can leave this machine.
    let url = "http://169.254.169.254/latest/meta-data/";
    let refused = fetch_in_empty_namespace(url, &[]);
    let error = refused["error"].as_str().unwrap_or_default();
    assert!(error.contains("IMX0601"), "{refused}");
    assert!(
        error.contains("--egress-allow 169.254.169.254/32"),
        "{refused}"
    );
    let allowed = fetch_in_empty_namespace(url, &["--egress-allow", "169.254.169.254/32"]);
    let error = allowed["error"].as_str().unwrap_or_default();
    assert!(!error.contains("IMX0601"), "{allowed}");
    assert!(error.contains("Network is unreachable"), "{allowed}");
    // A deny wins over an allow.
    let denied = fetch_in_empty_namespace(
        url,
        &[
            "--egress-allow",
            "169.254.0.0/16",
            "--egress-deny",
            "169.254.169.254",
        ],
    );
    let error = denied["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("`--egress-deny 169.254.169.254/32`"),
        "{denied}"
    );
}

#[test]
fn a_malformed_egress_rule_stops_the_node_before_it_starts() {
    let folder = Folder::new();
    let file = folder.file("noop.yaml", "name: noop\nsteps:\n  a: { uses: noop }\n");
    let ran = outcome(
        Command::new(env!("CARGO_BIN_EXE_imx"))
            .args(["--database-url", &folder.url(), "run", &file, "--wait"])
            .env("IMX_EGRESS_ALLOW", "127.0.0.1/32,10.0.0.0/99")
            .output()
            .expect("the imx binary runs"),
    );
    assert_eq!(ran.code, 1, "{ran:?}");
    assert!(
        ran.stderr
            .contains("invalid egress policy: --egress-allow: egress rule `10.0.0.0/99`"),
        "{ran:?}"
    );
}

/// A background `imx`, killed when dropped.
struct Background(std::process::Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn agent_commands_inherit_the_agents_environment_but_not_its_secrets() {
    let folder = Folder::new();
    let file = folder.file(
        "agented.yaml",
        "name: agented\nsteps:\n  work: { uses: agent, with: { queue: isolated, payload: { n: 1 } } }\n",
    );
    // The environment reversed (the node's redaction would hide the plain
    // canary), with only characters that need no escaping in JSON.
    let script = r#"read task; printf '{"env": "%s"}' "$(env | rev | tr -cd 'A-Za-z0-9_=.\n-' | tr '\n' ' ')""#;
    let _agent = Background(
        Command::new(env!("CARGO_BIN_EXE_imx"))
            .args([
                "--database-url",
                &folder.url(),
                "agent",
                "--queue",
                "isolated",
            ])
            .args(["--", "sh", "-c", script])
            .env("IMX_SECRET_CANARY", CANARY)
            .env("AGENT_MARKER", "visible-marker")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn imx agent"),
    );
    let ran = outcome(
        Command::new(env!("CARGO_BIN_EXE_imx"))
            .args([
                "--database-url",
                &folder.url(),
                "run",
                &file,
                "--wait",
                "--json",
            ])
            .output()
            .expect("the imx binary runs"),
    );
    assert_eq!(ran.code, 0, "{ran:?}");
    let run = document(&ran);
    let env = run["steps"]["work"]["output"]["env"]
        .as_str()
        .unwrap_or_else(|| panic!("the command's environment: {run}"));
    let reversed = |text: &str| text.chars().rev().collect::<String>();
    assert!(
        env.contains(&reversed("AGENT_MARKER=visible-marker")),
        "{env}"
    );
    assert!(!env.contains(&reversed(CANARY)), "the secret leaked: {env}");
    assert!(!env.contains(&reversed("IMX_SECRET")), "{env}");
    assert!(!env.contains(&reversed("IMX_SECRETS_FD")), "{env}");
}
