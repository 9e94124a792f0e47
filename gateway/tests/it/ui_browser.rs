//! The web UI in a real browser (#20): Debian's `chromium` driven by
//! `playwright-core` (npm, installed by `scripts/bootstrap --tests` into
//! gateway/tests/ui/node_modules) against a real `imx serve` process with
//! authentication on, on SQLite and on PostgreSQL. Each test runs one scenario of
//! gateway/tests/ui/ui.test.mjs, which prints one `ok`/`not ok` line per
//! check, runs axe-core on every page it visits, and saves screenshots
//! under the target's temporary folder (`ui-shots/`).

use std::path::PathBuf;
use std::process::Stdio;

use serde_json::json;
use testkit::postgres::{ClusterUse, ScratchDatabase};
use tokio::process::Command;

use crate::served::Served;
use crate::{imx, repo_root};

/// Longest one scenario may take, browser start included (the run of
/// 10,000 events takes the longest to make).
const SCENARIO_S: u64 = 300;

fn tests_dir() -> PathBuf {
    repo_root().join("gateway/tests/ui")
}

/// Where the scenarios save their screenshots.
pub fn shots_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ui-shots")
}

pub fn api_key(url: &str, role: &str) -> String {
    let out = imx(&[
        "--database-url",
        url,
        "apikey",
        "create",
        "--role",
        role,
        "--name",
        role,
    ]);
    assert_eq!(out.code, 0, "imx apikey create: {}", out.stderr);
    out.stdout.trim().to_owned()
}

/// Runs the scenario on SQLite, then on PostgreSQL (a scratch database in
/// the `scripts/test-postgres` cluster; a failure in CI when there is none).
async fn scenario(name: &str) {
    scenario_on(name, &Served::scratch_url(&format!("ui-{name}"))).await;
    let what = format!("the browser scenario {name}");
    if let Some(database) = ScratchDatabase::create(&what, "imx_ui", ClusterUse::Shared).await {
        scenario_on(name, &database.url).await;
    }
}

/// Starts `imx serve` (authentication on) on `url` with admin, operator and
/// viewer keys, runs `node ui.test.mjs SCENARIO` and fails with its output
/// unless every check passed.
async fn scenario_on(name: &str, url: &str) {
    assert!(
        tests_dir().join("node_modules/playwright-core").is_dir(),
        "playwright-core is not installed: run scripts/bootstrap --tests (npm ci in gateway/tests/ui)"
    );
    assert!(
        std::path::Path::new("/usr/bin/chromium").exists(),
        "Debian's chromium is missing: run scripts/bootstrap --tests"
    );
    let keys = json!({
        "admin": api_key(url, "admin"),
        "operator": api_key(url, "operator"),
        "viewer": api_key(url, "viewer"),
    });
    let served = Served::start_on(url, false, &["--subscription-poll-ms", "50"], &[]).await;
    let run = Command::new("node")
        .arg("ui.test.mjs")
        .arg(name)
        .current_dir(tests_dir())
        .env("IMX_UI_BASE", &served.base)
        .env("IMX_UI_KEYS", keys.to_string())
        .env("IMX_UI_SHOTS", shots_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(std::time::Duration::from_secs(SCENARIO_S), run)
        .await
        .unwrap_or_else(|_| panic!("scenario {name} took longer than {SCENARIO_S} s"))
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    served.stop().await;
    assert!(
        output.status.success() && stdout.contains(&format!("{name}: passed")),
        "scenario {name} failed:\n{stdout}\n{stderr}"
    );
}

#[tokio::test]
async fn sign_in_then_the_runs_list_filters_pages_and_updates_live() {
    scenario("runs_list").await;
}

#[tokio::test]
async fn the_dag_changes_live_and_an_approval_from_the_ui_finishes_the_run() {
    scenario("live_run_and_approval").await;
}

#[tokio::test]
async fn cancel_and_retry_from_the_ui_viewers_see_no_actions_and_forged_mutations_fail() {
    scenario("actions_roles_csrf").await;
}

#[tokio::test]
async fn the_start_form_shows_field_errors_and_starts_nothing_until_the_input_is_valid() {
    scenario("start_form").await;
}

#[tokio::test]
async fn step_outputs_render_as_text_and_an_unknown_run_is_not_found() {
    scenario("escaping_and_not_found").await;
}

#[tokio::test]
async fn a_run_with_a_thousand_items_and_thousands_of_events_is_paged() {
    scenario("large_run").await;
}

#[tokio::test]
async fn a_run_of_ten_thousand_events_loads_pages_opens_steps_and_updates_live() {
    scenario("huge_run").await;
}

#[tokio::test]
async fn fork_from_the_run_page_opens_the_fork_and_workflows_show_warnings_at_their_line() {
    scenario("fork_and_warnings").await;
}

#[tokio::test]
async fn graphiql_runs_a_query_under_the_strict_csp() {
    scenario("graphiql").await;
}

#[tokio::test]
async fn pause_resume_reject_skip_and_rewind_from_the_ui() {
    scenario("surgery_and_reject").await;
}
