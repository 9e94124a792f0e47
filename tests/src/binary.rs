//! The `imx` binary under test. A package cannot depend on another
//! package's binary (`CARGO_BIN_EXE_*` names only its own), so the harness
//! builds it once per test process with `cargo build -p imx-gateway
//! --features failpoints` (a no-op when it is fresh) and runs the path
//! cargo reports; `IMX_E2E_BIN` names a binary to use instead.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// Names an `imx` binary to test instead of building one (it must have
/// been built with the `failpoints` feature for the failpoint scenario).
pub const BIN_ENV: &str = "IMX_E2E_BIN";

/// The path of the `imx` binary, built on first use.
pub fn imx() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| match std::env::var(BIN_ENV) {
        Ok(path) if !path.is_empty() => PathBuf::from(path),
        _ => build(),
    })
}

/// The repository root (the workspace).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

fn build() -> PathBuf {
    let output = Command::new(env!("CARGO"))
        .args(["build", "--locked", "-p", "imx-gateway", "--bin", "imx"])
        .args(["--features", "failpoints", "--message-format=json"])
        .current_dir(repo_root())
        .stderr(Stdio::inherit())
        .output()
        .expect("cargo runs");
    assert!(output.status.success(), "building imx failed");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|message| message["target"]["name"] == "imx")
        .find_map(|message| message["executable"].as_str().map(PathBuf::from))
        .expect("cargo names the imx executable")
}

/// The output and exit code of one `imx` invocation.
#[derive(Debug)]
pub struct Outcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `imx ARGS` to the end from the repository root.
pub fn run(args: &[&str]) -> Outcome {
    let output = Command::new(imx())
        .args(args)
        .current_dir(repo_root())
        .output()
        .expect("the imx binary runs");
    Outcome {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// [`run`] off the async workers.
pub async fn run_async(args: Vec<String>) -> Outcome {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&args)
    })
    .await
    .expect("imx task")
}
