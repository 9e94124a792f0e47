//! Structured logs of a real `imx serve`: every JSON log line about a step
//! carries the run id and the step id (in its own fields or in a span it
//! is in), across attempts, a failed attempt, its retry timer and a `sleep`.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use crate::api::Ws;
use crate::served::Served;

const WORKFLOW: &str = r#"
name: logged
steps:
  greet:
    uses: exec
    with: { command: ["true"] }
  flaky:
    needs: [greet]
    uses: exec
    with: { command: ["false"] }
    retry: { max_attempts: 2, initial_interval: 10ms }
    continue_on_error: true
  nap:
    needs: [greet]
    uses: sleep
    with: { duration: 10ms }
"#;

/// Steps whose work goes through tasks (executors and timers), so logs name them.
const LOGGED_STEPS: [&str; 3] = ["greet", "flaky", "nap"];

/// Every field of a log line: its own, then those of each span it is in.
fn context(line: &Value) -> Map<String, Value> {
    let mut merged = Map::new();
    let spans = line["spans"].as_array().cloned().unwrap_or_default();
    for fields in spans.iter().chain([&line["span"], &line["fields"]]) {
        if let Some(fields) = fields.as_object() {
            merged.extend(fields.clone());
        }
    }
    merged
}

/// A line is about a step when anything in it names one, or its message
/// speaks of a step, an attempt or a timer.
fn about_a_step(line: &Value, context: &Map<String, Value>) -> bool {
    let message = line["fields"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_ascii_lowercase();
    context.contains_key("step")
        || ["step", "attempt", "timer"]
            .iter()
            .any(|word| message.contains(word))
}

async fn graphql(base: &str, query: &str, variables: Value) -> Value {
    let body: Value = reqwest::Client::new()
        .post(format!("{base}/graphql"))
        .json(&json!({"query": query, "variables": variables}))
        .send()
        .await
        .expect("the server answers")
        .json()
        .await
        .expect("a JSON answer");
    assert!(body.get("errors").is_none(), "{body}");
    body["data"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_log_line_about_a_step_names_its_run_and_step() {
    let served = Served::start(
        "api-logs",
        &["--enable-exec"],
        &[("IMX_LOG", "info,engine=debug")],
    )
    .await;
    let base = served.base.clone();

    let register = "mutation($s: String!) { registerWorkflow(source: $s) { __typename } }";
    graphql(&base, register, json!({"s": WORKFLOW})).await;
    let start = "mutation { startRun(workflow: \"logged\") { run { id } } }";
    let data = graphql(&base, start, json!({})).await;
    let run_id = data["startRun"]["run"]["id"]
        .as_str()
        .expect("a run id")
        .to_owned();
    // The subscription completes after the run's terminal event.
    let mut ws = Ws::connect_to(&base, "none").await.expect("connects");
    let events = "subscription($id: ID!) { runEvents(runId: $id) { type } }";
    ws.subscribe("1", events, json!({"id": run_id})).await;
    let mut last = String::new();
    while let Some(message) = ws.next().await {
        match message["type"].as_str() {
            Some("next") => {
                last = message["payload"]["data"]["runEvents"]["type"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
            }
            _ => break,
        }
    }
    assert!(last.starts_with("run."), "the run did not finish: {last}");
    ws.close().await;

    let lines = served.stop().await;

    let mut named_steps = BTreeSet::new();
    let mut messages = BTreeSet::new();
    for text in &lines {
        let Ok(line) = serde_json::from_str::<Value>(text) else {
            continue;
        };
        let context = context(&line);
        if !about_a_step(&line, &context) {
            continue;
        }
        assert_eq!(context.get("run_id"), Some(&json!(run_id)), "{text}");
        let step = context.get("step").and_then(Value::as_str);
        let step = step.unwrap_or_else(|| panic!("no step id: {text}"));
        named_steps.insert(step.to_owned());
        let message = line["fields"]["message"].as_str().unwrap_or_default();
        messages.insert(format!("{step}: {message}"));
    }
    let expected: BTreeSet<String> = LOGGED_STEPS.iter().map(|s| s.to_string()).collect();
    assert_eq!(named_steps, expected, "{messages:#?}");
    for wanted in [
        "greet: attempt succeeded",
        "flaky: attempt failed",
        "flaky: timer fired",
        "nap: timer fired",
    ] {
        assert!(messages.contains(wanted), "no {wanted:?} in {messages:#?}");
    }
}
