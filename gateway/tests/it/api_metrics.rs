//! `/metrics` after a real run: append latency from the runtime's hook, and
//! step durations labelled with the step's real kind.

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
