//! Wide fan-outs: a `for_each` up to the documented 10,000 items records its
//! events over several bounded appends, on a first step and after another
//! step; an append the store refuses ends the run instead of wedging it.

use engine::core::state::RunStatus;
use engine::store::StoreConfig;
use serde_json::{Value, json};

use super::{Node, both_backends, event_types, test_config};

both_backends!(fanout:
    regression_for_each_of_600_items_on_a_first_step_was_refused,
    regression_for_each_of_600_items_after_another_step_wedged_the_run,
    for_each_of_10000_items_the_documented_maximum_succeeds,
    an_append_the_store_refuses_stops_the_run_with_the_reason,
);

fn fan_out(name: &str, items: usize, after_task: bool) -> String {
    let first = if after_task {
        "  first: { uses: http, with: { method: GET, url: \"http://test.invalid/x\" } }\n"
    } else {
        ""
    };
    let needs = if after_task { "needs: [first], " } else { "" };
    format!(
        r#"
name: {name}
steps:
{first}  each: {{ {needs}for_each: "{{{{ range({items}) | list }}}}", uses: noop, with: {{ i: "{{{{ index }}}}" }} }}
  total: {{ needs: [each], uses: noop, with: {{ n: "{{{{ steps.each.output | length }}}}" }} }}
"#
    )
}

/// Time a fan-out of 10,000 items gets in a debug build on a busy 2-core
/// machine (about 30 s measured there), in ms.
const FAN_OUT_WAIT_MS_MAX: u64 = 180_000;

/// Runs `workflow` to its end and checks every item succeeded exactly once.
async fn run_fan_out(node: &Node, workflow: &str, items: usize) -> Value {
    let run_id = node.start_run(workflow, json!({})).await;
    let document = node
        .wait_within(run_id, FAN_OUT_WAIT_MS_MAX, |state| state.is_finished())
        .await
        .document();
    assert_eq!(document["status"], "succeeded", "{}", document["status"]);
    assert_eq!(document["steps"]["total"]["output"], json!({"n": items}));
    let outputs = document["steps"]["each"]["output"]
        .as_array()
        .expect("a list");
    assert_eq!(outputs.len(), items);
    assert_eq!(outputs[items - 1], json!({"i": items - 1}));
    let types = event_types(node.runtime.store().as_ref(), run_id).await;
    let succeeded = types.iter().filter(|t| *t == "step.succeeded").count();
    // Every item once, plus `total` (and `first`, when there is one).
    assert!(
        succeeded == items + 1 || succeeded == items + 2,
        "{succeeded} step.succeeded events for {items} items"
    );
    document
}

async fn regression_for_each_of_600_items_on_a_first_step_was_refused(url: &str) {
    // 1,203 events in the start's one append: the store refused the start (IMX0304).
    let node = Node::start(url).await;
    node.register(&fan_out("wide-first", 600, false)).await;
    run_fan_out(&node, "wide-first", 600).await;
    node.stop().await;
}

async fn regression_for_each_of_600_items_after_another_step_wedged_the_run(url: &str) {
    // The append after `first` was refused; the task was handed out forever.
    let node = Node::start(url).await;
    node.register(&fan_out("wide-after", 600, true)).await;
    run_fan_out(&node, "wide-after", 600).await;
    node.stop().await;
}

async fn for_each_of_10000_items_the_documented_maximum_succeeds(url: &str) {
    let node = Node::start(url).await;
    node.register(&fan_out("widest", 10_000, true)).await;
    run_fan_out(&node, "widest", 10_000).await;
    node.stop().await;
}

async fn an_append_the_store_refuses_stops_the_run_with_the_reason(url: &str) {
    // A store tighter than the engine's settle budget refuses the append
    // after `first`: the run is stopped with the refusal as its reason.
    let store = StoreConfig {
        events_per_append_max: 100,
        ..StoreConfig::default()
    };
    let node = Node::start_with_store(url, test_config(), store).await;
    node.register(&fan_out("refused", 600, true)).await;
    let run_id = node.start_run("refused", json!({})).await;
    let state = node.wait_for(run_id, |state| state.is_finished()).await;
    assert_eq!(state.status, RunStatus::Cancelled);
    let reason = state.document()["error"].to_string();
    assert!(
        reason.contains("the store refused") && reason.contains("IMX0304"),
        "{reason}"
    );
    node.stop().await;
}
