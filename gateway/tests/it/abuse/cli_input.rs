//! Unbounded reads (issue #13, item 8): every file the CLI reads goes
//! through a bounded reader, whatever its metadata says (`/dev/zero`
//! reports 0 bytes and never ends); `imx run` refuses an oversized input
//! with exit 2 before parsing it.

use std::process::Output;

use tokio::process::Command;

use crate::api::WAIT;

/// `imx ARGS…` on a fresh store, which must end within the test wait.
async fn imx_within(args: &[&str]) -> Output {
    let folder = tempfile::tempdir().expect("a temporary folder");
    let url = format!("sqlite://{}/imx.db", folder.path().display());
    let run = Command::new(env!("CARGO_BIN_EXE_imx"))
        .args(["--database-url", &url])
        .args(args)
        .current_dir(crate::repo_root())
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(WAIT, run)
        .await
        .unwrap_or_else(|_| panic!("imx {args:?} did not end within {WAIT:?}"))
        .expect("imx runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_of_dev_zero_is_refused_without_reading_it_all() {
    let output = imx_within(&["validate", "/dev/zero"]).await;
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains(
            "/dev/zero:1:1: error[IMX0033]: file is more than the limit of 1048576 bytes"
        ),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_input_from_dev_zero_is_refused_with_exit_2() {
    let output = imx_within(&["run", "workflows/hello.yaml", "--input", "@/dev/zero"]).await;
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("--input @/dev/zero: the file is more than the limit of 1048576 bytes"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_input_of_16_mib_is_refused_with_exit_2_before_parsing() {
    let folder = tempfile::tempdir().expect("a temporary folder");
    let file = folder.path().join("input.json");
    // Valid JSON of 16 MiB: millions of small values, the shape that took
    // the parse to 1.5 GB before the old 1 MiB refusal.
    let mut json = String::from("[0");
    while json.len() < 16 * 1024 * 1024 {
        json.push_str(",0");
    }
    json.push(']');
    std::fs::write(&file, json).expect("write the input");
    let input = format!("@{}", file.display());
    let output = imx_within(&["run", "workflows/hello.yaml", "--input", &input]).await;
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(
        text(&output.stderr).contains("more than the limit of 1048576 bytes"),
        "{output:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_file_the_cli_reads_stops_at_its_limit() {
    let serve = |algorithm: &'static str, flag: &'static str| {
        vec![
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--jwt-issuer",
            "imx",
            "--jwt-audience",
            "imx",
            "--jwt-algorithm",
            algorithm,
            flag,
            "/dev/zero",
        ]
    };
    let cases: Vec<Vec<&str>> = vec![
        vec!["graph", "/dev/zero"],
        vec!["replay", "check", "/dev/zero"],
        serve("HS256", "--jwt-secret-file"),
        serve("RS256", "--jwt-public-key"),
        serve("RS256", "--jwt-jwks"),
    ];
    for args in cases {
        let output = imx_within(&args).await;
        assert_eq!(output.status.code(), Some(1), "{args:?}: {output:?}");
        let stderr = text(&output.stderr);
        assert!(
            stderr.contains("more than the limit of") || stderr.contains("larger than"),
            "{args:?}: {stderr}"
        );
    }
}
