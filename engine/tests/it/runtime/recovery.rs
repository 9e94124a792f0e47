//! Durability: a `sleep` (a store timer) outlives the runtime that set it,
//! and a new runtime on the same store finishes the run with each step's
//! success recorded once.

use serde_json::json;

use super::{Node, both_backends, event_types};

both_backends!(recovery: sleep_survives_a_runtime_restart);

async fn sleep_survives_a_runtime_restart(url: &str) {
    let first = Node::start(url).await;
    first
        .register(
            r#"
name: napper
steps:
  before: { uses: noop }
  nap: { needs: [before], uses: sleep, with: { duration: 300ms } }
  call:
    needs: [nap]
    uses: http
    with: { method: GET, url: "http://test.invalid/x", json: { echo: woke } }
"#,
        )
        .await;
    let run_id = first.start_run("napper", json!({})).await;
    first.stop().await;
    let state = {
        let second = Node::start(url).await;
        let state = second.runtime.state(run_id).await.expect("state");
        assert!(!state.is_finished(), "the sleep outlived the first runtime");
        let document = second.finished(run_id).await;
        second.stop().await;
        document
    };
    assert_eq!(state["status"], "succeeded", "{state}");
    assert_eq!(state["steps"]["call"]["output"]["echo"], "woke");
    let store = engine::store::open(url).await.expect("open");
    let types = event_types(&store, run_id).await;
    let successes = types.iter().filter(|t| *t == "step.succeeded").count();
    assert_eq!(successes, 3, "one success per step: {types:?}");
}
