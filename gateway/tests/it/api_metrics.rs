//! `/metrics` after a real run: append latency from the runtime's hook, and
//! step durations labelled with the step's real kind.

use std::time::Duration;

use serde_json::json;

use crate::api::*;

/// The value of the sample line starting with `series` (0 when absent).
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|line| line.starts_with(series))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse::<f64>().ok())
        .unwrap_or(0.0)
}

const SERIES: [&str; 3] = [
    "imx_append_seconds_count",
    "imx_step_duration_seconds_count{kind=\"noop\",outcome=\"succeeded\"}",
    "imx_step_duration_seconds_count{kind=\"sleep\",outcome=\"succeeded\"}",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hello_run_shows_append_latency_and_step_kinds() {
    let hello = std::fs::read_to_string(crate::repo_root().join("workflows/hello.yaml"))
        .expect("workflows/hello.yaml");
    for url in database_urls() {
        let api = TestApi::start(&url, config(), true).await;
        let admin = api.api_key(&["admin"]).await;
        let (name, source) = named(&hello.replace("name: hello", "name: NAME"), "hello");
        register(&api, &admin, &source).await;
        let data = api
            .data(
                &admin,
                START,
                json!({"workflow": name, "input": {"names": ["Ada", "Grace"], "nap": "10ms"}}),
            )
            .await;
        let run_id = data["startRun"]["run"]["id"].as_str().expect("a run id");
        wait_status(&api, &admin, run_id, "SUCCEEDED").await;
        // The tail observes step ends once it has read them: poll with a deadline.
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let (status, text) = api.get("/metrics").await;
            assert_eq!(status, 200);
            if SERIES.iter().all(|series| sample(&text, series) >= 1.0) {
                assert!(
                    !text.contains("kind=\"step\""),
                    "a step without its kind:\n{text}"
                );
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "missing one of {SERIES:?}:\n{text}"
            );
            let mut changes = api.runtime.as_ref().expect("a runtime").changes();
            let _ =
                tokio::time::timeout(std::time::Duration::from_millis(100), changes.recv()).await;
        }
        api.stop().await;
    }
}

/// Runs started at once for the counter test.
const RUNS: usize = 300;

const SUCCEEDED: &str = "imx_runs_finished_total{status=\"succeeded\"}";

/// Succeeded runs of `workflow` in the store, read directly.
async fn succeeded_runs(api: &TestApi, workflow: &str) -> usize {
    use engine::store::RunQuery;
    use engine::store::prelude::*;
    let query = RunQuery {
        status: Some("succeeded".to_owned()),
        workflow: Some(workflow.to_owned()),
        after: None,
        limit: 1_000,
    };
    api.store
        .list_runs(&query)
        .await
        .expect("runs list")
        .items
        .len()
}

/// Regression: the counters lagged the log under load (one store read per
/// run in the tail, and no wake-up for appends that enqueue nothing). Now
/// one scrape right after N runs finished counts exactly N, with no polling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_n_runs_finish_one_scrape_counts_exactly_n() {
    for url in database_urls() {
        let mut config = config();
        config.limits.rate_per_second = 10_000;
        config.limits.rate_burst = 10_000;
        // The default: catching up must not rest on a short poll.
        config.limits.subscription_poll_ms = imx_gateway::api::config::SUBSCRIPTION_POLL_MS;
        let api = TestApi::start(&url, config, true).await;
        let admin = api.api_key(&["admin"]).await;
        let (name, source) = named(NOOP_WORKFLOW, "counted");
        register(&api, &admin, &source).await;
        let (status, before) = api.get("/metrics").await;
        assert_eq!(status, 200);
        let started_before = sample(&before, "imx_runs_started_total");
        let succeeded_before = sample(&before, SUCCEEDED);
        let starts = (0..RUNS).map(|_| start(&api, &admin, &name));
        futures_util::future::join_all(starts).await;
        let mut changes = api.runtime.as_ref().expect("a runtime").changes();
        let deadline = tokio::time::Instant::now() + WAIT * 3;
        while succeeded_runs(&api, &name).await < RUNS {
            assert!(
                tokio::time::Instant::now() < deadline,
                "runs did not finish"
            );
            let _ = tokio::time::timeout(Duration::from_millis(100), changes.recv()).await;
        }
        let (status, text) = api.get("/metrics").await;
        assert_eq!(status, 200);
        let started = (sample(&text, "imx_runs_started_total") - started_before) as usize;
        let succeeded = (sample(&text, SUCCEEDED) - succeeded_before) as usize;
        if url.starts_with("sqlite:") {
            assert_eq!((started, succeeded), (RUNS, RUNS), "{text}");
        } else {
            // Other tests share this PostgreSQL: their runs count too.
            assert!(started >= RUNS && succeeded >= RUNS, "{text}");
        }
        api.stop().await;
    }
}
