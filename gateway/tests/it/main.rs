//! The `imx` binary's one integration test binary: runs the real executable.

mod abuse;
mod api;
mod api_auth;
mod api_binary;
mod api_errors;
mod api_flow;
mod api_jwks;
mod api_limits;
mod api_logs;
mod api_metrics;
mod api_ops;
mod api_pagination;
mod api_schedules;
mod api_schema;
mod api_shutdown;
mod api_surgery;
mod audit;
mod bench;
mod error_codes;
mod isolation;
mod kafka;
mod replay;
mod run;
mod runs_cancel;
mod runs_surgery;
mod schedules;
mod served;
mod template_sandbox;
mod ui;
mod ui_browser;
mod validate;
mod webhook;
mod workflows;

use std::path::{Path, PathBuf};
use std::process::Command;

/// The output and exit code of one `imx` invocation.
#[derive(Debug)]
pub struct Outcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `imx` with `args` from the repository root.
pub fn imx(args: &[&str]) -> Outcome {
    let output = Command::new(env!("CARGO_BIN_EXE_imx"))
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

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("gateway/ has a parent")
        .to_path_buf()
}
