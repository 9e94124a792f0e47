//! Workflows run to their end through the runtime: pure chains, failures
//! with `continue_on_error`, retries on durable timers, child runs,
//! `for_each`, idempotent starts, secrets and bad input.

use engine::core::state::RunStatus;
use engine::runtime::{Error, StartRequest};
use engine::store::RunQuery;
use engine::store::prelude::*;
use serde_json::json;

use super::{Node, both_backends, event_types};

both_backends!(flows:
    noop_chain_succeeds_inline,
    failure_with_continue_on_error,
    retries_wait_on_durable_timers,
    oversized_output_fails_without_retry,
    child_workflow_output_reaches_parent,
    for_each_items_in_order,
    idempotent_start_returns_the_same_run,
    bad_input_writes_nothing,
    secrets_reach_executors_but_never_the_log,
);

const CHAIN: &str = r#"
name: chain
input:
  type: object
  required: [who]
  properties: { who: { type: string } }
steps:
  a: { uses: noop, with: { hello: "{{ input.who }}" } }
  b: { needs: [a], uses: noop, with: { from_a: "{{ steps.a.output.hello }}" } }
  c: { needs: [b], uses: noop }
output:
  greeting: "{{ steps.b.output.from_a }}"
"#;

async fn noop_chain_succeeds_inline(url: &str) {
    let node = Node::start(url).await;
    node.register(CHAIN).await;
    let run_id = node.start_run("chain", json!({"who": "ada"})).await;
    // Pure steps are decided inline: the run ended within start_run.
    let state = node.runtime.state(run_id).await.expect("state");
    assert_eq!(state.status, RunStatus::Succeeded);
    assert_eq!(state.document()["output"], json!({"greeting": "ada"}));
    let row = node
        .runtime
        .store()
        .get_run(run_id)
        .await
        .expect("get")
        .expect("row");
    assert_eq!(row.row.status, "succeeded");
    let steps = node.runtime.store().get_steps(run_id).await.expect("steps");
    assert!(
        steps.iter().all(|step| step.status == "succeeded"),
        "{steps:?}"
    );
    node.stop().await;
}

async fn failure_with_continue_on_error(url: &str) {
    let node = Node::start(url).await;
    node.register(
        r#"
name: tolerant
steps:
  flaky: { uses: fail, with: { message: nope }, continue_on_error: true, retry: { max_attempts: 1 } }
  after: { needs: [flaky], uses: noop }
"#,
    )
    .await;
    node.register(
        r#"
name: strict
steps:
  broken: { uses: fail, with: { message: "boom" }, retry: { max_attempts: 1 } }
  after: { needs: [broken], uses: noop }
"#,
    )
    .await;
    let tolerant = node
        .finished(node.start_run("tolerant", json!({})).await)
        .await;
    assert_eq!(tolerant["status"], "succeeded");
    assert_eq!(tolerant["steps"]["flaky"]["status"], "failed");
    assert_eq!(tolerant["steps"]["after"]["status"], "succeeded");
    let strict = node
        .finished(node.start_run("strict", json!({})).await)
        .await;
    assert_eq!(strict["status"], "failed");
    assert_eq!(strict["steps"]["after"]["status"], "skipped");
    assert!(
        strict["error"]
            .as_str()
            .unwrap_or_default()
            .contains("boom"),
        "{strict}"
    );
    node.stop().await;
}

async fn retries_wait_on_durable_timers(url: &str) {
    let node = Node::start(url).await;
    node.register(
        r#"
name: retrying
steps:
  call:
    uses: http
    with: { method: POST, url: "http://test.invalid/x", json: { fail_times: 2, echo: hi } }
    retry: { max_attempts: 3, backoff: fixed, initial_interval: 50ms }
"#,
    )
    .await;
    let run_id = node.start_run("retrying", json!({})).await;
    let document = node.finished(run_id).await;
    assert_eq!(document["status"], "succeeded", "{document}");
    assert_eq!(document["steps"]["call"]["attempts"], 3);
    assert_eq!(document["steps"]["call"]["output"]["echo"], "hi");
    assert_eq!(
        document["steps"]["call"]["output"]["key"],
        format!("{run_id}/call")
    );
    let types = event_types(node.runtime.store().as_ref(), run_id).await;
    let count = |name: &str| types.iter().filter(|t| *t == name).count();
    assert_eq!(
        (
            count("step.failed"),
            count("step.retry_scheduled"),
            count("timer.fired")
        ),
        (2, 2, 2)
    );
    assert_eq!(count("step.succeeded"), 1);
    node.stop().await;
}

async fn oversized_output_fails_without_retry(url: &str) {
    let node = Node::start(url).await;
    node.register(
        r#"
name: big
steps:
  call:
    uses: http
    with: { method: GET, url: "http://test.invalid/x", json: { output_bytes: 300000 } }
    retry: { max_attempts: 3, initial_interval: 10ms }
"#,
    )
    .await;
    let document = node.finished(node.start_run("big", json!({})).await).await;
    assert_eq!(document["status"], "failed");
    assert_eq!(document["steps"]["call"]["attempts"], 1, "not retried");
    let error = document["steps"]["call"]["error"]
        .as_str()
        .unwrap_or_default();
    assert!(error.contains("OUTPUT_BYTES_MAX"), "{error}");
    node.stop().await;
}

async fn child_workflow_output_reaches_parent(url: &str) {
    let node = Node::start(url).await;
    node.register(
        r#"
name: child
input: { type: object, required: [n], properties: { n: { type: integer } } }
steps:
  nap: { uses: sleep, with: { duration: 20ms } }
  double: { needs: [nap], uses: noop, with: { value: "{{ input.n * 2 }}" } }
output: { value: "{{ steps.double.output.value }}" }
"#,
    )
    .await;
    node.register(
        r#"
name: parent
steps:
  call: { uses: workflow, with: { name: child, input: { n: 21 } } }
  bad: { uses: workflow, with: { name: child, input: { n: "x" } }, continue_on_error: true }
output: { answer: "{{ steps.call.output.value }}" }
"#,
    )
    .await;
    let run_id = node.start_run("parent", json!({})).await;
    let document = node.finished(run_id).await;
    assert_eq!(document["status"], "succeeded", "{document}");
    assert_eq!(document["output"], json!({"answer": 42}));
    let bad = document["steps"]["bad"]["error"]
        .as_str()
        .unwrap_or_default();
    assert!(
        bad.contains("/n"),
        "the child's input problem names its pointer: {bad}"
    );
    let query = RunQuery {
        workflow: Some("child".to_owned()),
        limit: 10,
        ..RunQuery::default()
    };
    let children = node
        .runtime
        .store()
        .list_runs(&query)
        .await
        .expect("list")
        .items;
    assert_eq!(children.len(), 1, "the child with bad input never started");
    assert_eq!(children[0].row.parent_run_id, Some(run_id));
    assert_eq!(children[0].row.status, "succeeded");
    node.stop().await;
}

async fn for_each_items_in_order(url: &str) {
    let node = Node::start(url).await;
    node.register(
        r#"
name: fan
input: { type: object, properties: { items: { type: array } } }
steps:
  each:
    for_each: "{{ input.items }}"
    max_parallel: 2
    uses: http
    with: { method: GET, url: "http://test.invalid/x", json: { echo: "{{ item }}-{{ index }}" } }
  total: { needs: [each], uses: noop, with: { n: "{{ steps.each.output | length }}" } }
"#,
    )
    .await;
    let items = json!(["a", "b", "c", "d", "e"]);
    let document = node
        .finished(node.start_run("fan", json!({"items": items})).await)
        .await;
    assert_eq!(document["status"], "succeeded", "{document}");
    let echoes: Vec<_> = document["steps"]["each"]["output"]
        .as_array()
        .expect("list")
        .iter()
        .map(|out| out["echo"].clone())
        .collect();
    assert_eq!(echoes, ["a-0", "b-1", "c-2", "d-3", "e-4"]);
    assert_eq!(document["steps"]["total"]["output"], json!({"n": 5}));
    node.stop().await;
}

async fn idempotent_start_returns_the_same_run(url: &str) {
    let node = Node::start(url).await;
    node.register(CHAIN).await;
    let request = StartRequest {
        workflow: "chain".to_owned(),
        input: json!({"who": "ada"}),
        idempotency_key: Some("order-7".to_owned()),
        ..StartRequest::default()
    };
    let first = node
        .runtime
        .start_run(request.clone())
        .await
        .expect("first");
    let second = node.runtime.start_run(request).await.expect("second");
    assert_eq!((first.existing, second.existing), (false, true));
    assert_eq!(first.run_id, second.run_id);
    let runs = node
        .runtime
        .store()
        .list_runs(&RunQuery {
            limit: 10,
            ..RunQuery::default()
        })
        .await;
    assert_eq!(runs.expect("list").items.len(), 1);
    node.stop().await;
}

async fn bad_input_writes_nothing(url: &str) {
    let node = Node::start(url).await;
    node.register(CHAIN).await;
    let start = |workflow: &str, input| StartRequest {
        workflow: workflow.to_owned(),
        input,
        ..StartRequest::default()
    };
    let invalid = node
        .runtime
        .start_run(start("chain", json!({"who": 7, "x": 1})))
        .await;
    let message = invalid.expect_err("schema violation").to_string();
    assert!(
        message.contains("IMX0404") && message.contains("/who"),
        "{message}"
    );
    let missing = node.runtime.start_run(start("chain", json!({}))).await;
    let message = missing.expect_err("required property").to_string();
    assert!(
        message.contains("  /: ") && message.contains("who"),
        "{message}"
    );
    let unknown = node.runtime.start_run(start("nope", json!({}))).await;
    assert!(
        matches!(unknown, Err(Error::UnknownWorkflow { .. })),
        "{unknown:?}"
    );
    let broken = node
        .runtime
        .register_source("name: broken\nsteps: {a: {uses: nope}}\n")
        .await;
    assert!(
        matches!(broken, Err(Error::InvalidWorkflow { .. })),
        "{broken:?}"
    );
    node.assert_no_runs().await;
    node.stop().await;
}

async fn secrets_reach_executors_but_never_the_log(url: &str) {
    const SECRET: &str = "s3cr3t-value";
    let config = engine::runtime::Config {
        secrets: [("TOKEN", SECRET)].into_iter().collect(),
        ..super::test_config()
    };
    let node = Node::start_with(url, config).await;
    node.register(
        r#"
name: secretive
steps:
  call:
    uses: http
    with: { method: GET, url: "http://test.invalid/x", json: { echo: "Bearer {{ secrets.TOKEN }}" } }
  note: { needs: [call], uses: noop, with: { token: "{{ secrets.TOKEN }}" } }
"#,
    )
    .await;
    let run_id = node.start_run("secretive", json!({})).await;
    let document = node.finished(run_id).await;
    assert_eq!(document["status"], "succeeded", "{document}");
    let call = &document["steps"]["call"]["output"];
    assert_eq!(
        call["echo_bytes"],
        "Bearer ".len() + SECRET.len(),
        "the executor saw the value"
    );
    assert_eq!(call["echo"], "Bearer ***", "its output was redacted");
    assert_eq!(document["steps"]["note"]["output"], json!({"token": "***"}));
    let events = node
        .runtime
        .store()
        .read_stream(run_id, 0, 1_000)
        .await
        .expect("read");
    let leaked: Vec<_> = events
        .iter()
        .filter(|event| event.payload.to_string().contains(SECRET))
        .map(|event| event.event_type.clone())
        .collect();
    assert!(leaked.is_empty(), "secret in {leaked:?}");
    node.stop().await;
}
