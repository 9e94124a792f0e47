//! Steering runs: approvals (also per `for_each` item), cancellation of a
//! run and of its child runs.

use engine::core::state::RunStatus;
use engine::runtime::Error;
use engine::store::RunQuery;
use engine::store::prelude::*;
use serde_json::json;

use super::{Node, both_backends};

both_backends!(steering:
    approval_granted_and_rejected,
    for_each_approvals_are_decided_per_item,
    cancel_stops_a_sleeping_run,
    cancelling_a_parent_cancels_its_child,
    a_child_start_the_database_refused_is_retried_without_a_restart,
);

const GATED: &str = r#"
name: gated
steps:
  ask: { uses: approval, with: { role: ops, message: "ship?" } }
  ship: { needs: [ask], uses: noop, with: { by: "{{ steps.ask.output.by }}" } }
"#;

async fn approval_granted_and_rejected(url: &str) {
    let node = Node::start(url).await;
    node.register(GATED).await;
    let granted = node.start_run("gated", json!({})).await;
    let waiting = node
        .wait_for(granted, |s| s.status == RunStatus::Waiting)
        .await;
    assert_eq!(waiting.document()["steps"]["ask"]["status"], "waiting");
    let early = node.runtime.approve(granted, "ship", "ada", None).await;
    assert!(matches!(early, Err(Error::NotWaiting { .. })), "{early:?}");
    node.runtime
        .approve(granted, "ask", "ada", Some("fine".to_owned()))
        .await
        .expect("approve");
    let document = node.finished(granted).await;
    assert_eq!(document["status"], "succeeded");
    assert_eq!(document["steps"]["ship"]["output"], json!({"by": "ada"}));
    let again = node.runtime.approve(granted, "ask", "ada", None).await;
    assert!(matches!(again, Err(Error::RunFinished { .. })), "{again:?}");

    let rejected = node.start_run("gated", json!({})).await;
    node.wait_for(rejected, |s| s.status == RunStatus::Waiting)
        .await;
    node.runtime
        .reject(rejected, "ask", "bob", Some("no".to_owned()))
        .await
        .expect("reject");
    let document = node.finished(rejected).await;
    assert_eq!(document["status"], "failed");
    assert_eq!(document["steps"]["ship"]["status"], "skipped");
    node.stop().await;
}

async fn cancel_stops_a_sleeping_run(url: &str) {
    let node = Node::start(url).await;
    node.register(
        r#"
name: sleepy
steps:
  nap: { uses: sleep, with: { duration: 1h } }
  after: { needs: [nap], uses: noop }
"#,
    )
    .await;
    let run_id = node.start_run("sleepy", json!({})).await;
    node.runtime
        .cancel_run(
            run_id,
            Some("ada".to_owned()),
            Some("changed my mind".to_owned()),
        )
        .await
        .expect("cancel");
    let document = node.finished(run_id).await;
    assert_eq!(document["status"], "cancelled");
    assert_eq!(document["steps"]["nap"]["status"], "cancelled");
    assert_eq!(document["steps"]["after"]["status"], "skipped");
    let again = node.runtime.cancel_run(run_id, None, None).await;
    assert!(matches!(again, Err(Error::RunFinished { .. })), "{again:?}");
    node.stop().await;
}

async fn cancelling_a_parent_cancels_its_child(url: &str) {
    let node = Node::start(url).await;
    node.register("name: dozing\nsteps:\n  nap: { uses: sleep, with: { duration: 1h } }\n")
        .await;
    node.register(
        "name: waiting-parent\nsteps:\n  call: { uses: workflow, with: { name: dozing } }\n",
    )
    .await;
    let run_id = node.start_run("waiting-parent", json!({})).await;
    let query = RunQuery {
        workflow: Some("dozing".to_owned()),
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
    assert_eq!(children.len(), 1, "the child started with the parent");
    let child = children[0].row.run_id;
    node.runtime
        .cancel_run(run_id, None, Some("enough".to_owned()))
        .await
        .expect("cancel");
    let parent = node.finished(run_id).await;
    assert_eq!(parent["status"], "cancelled", "{parent}");
    let child = node.finished(child).await;
    assert_eq!(child["status"], "cancelled", "{child}");
    assert_eq!(child["steps"]["nap"]["status"], "cancelled");
    node.stop().await;
}

async fn for_each_approvals_are_decided_per_item(url: &str) {
    let node = Node::start(url).await;
    node.register(
        r#"
name: reviews
steps:
  review:
    for_each: "{{ [1, 2] }}"
    uses: approval
    with: { message: "item {{ item }}" }
"#,
    )
    .await;
    let run_id = node.start_run("reviews", json!({})).await;
    node.wait_for(run_id, |s| s.status == RunStatus::Waiting)
        .await;
    node.runtime
        .approve(run_id, "review/1", "ada", None)
        .await
        .expect("approve item 1");
    let state = node.runtime.state(run_id).await.expect("state");
    assert_eq!(state.status, RunStatus::Waiting, "item 0 still waits");
    node.runtime
        .approve(run_id, "review/0", "bob", None)
        .await
        .expect("approve item 0");
    let document = node.finished(run_id).await;
    assert_eq!(document["status"], "succeeded", "{document}");
    let by: Vec<_> = document["steps"]["review"]["output"]
        .as_array()
        .expect("list")
        .iter()
        .map(|out| out["by"].clone())
        .collect();
    assert_eq!(by, ["bob", "ada"]);
    node.stop().await;
}

/// Follow-up work that reaches another run (here: starting a child) is
/// carried out after the parent's append; when the database refuses it (a
/// trigger stands in for a dropped connection), the running node tries it
/// again instead of leaving the parent waiting until some node restarts.
async fn a_child_start_the_database_refused_is_retried_without_a_restart(url: &str) {
    let node = Node::start(url).await;
    node.register("name: refused-child\nsteps:\n  work: { uses: noop, with: { done: \"yes\" } }\noutput: { done: \"{{ steps.work.output.done }}\" }\n")
        .await;
    node.register(concat!(
        "name: refused-parent\nsteps:\n",
        "  call: { uses: workflow, with: { name: refused-child } }\n",
        "  after: { needs: [call], uses: noop, with: { child: \"{{ steps.call.output.done }}\" } }\n",
    ))
    .await;
    let raw = crate::store::Raw::connect(url).await;
    let refuse: &[&'static str] = match raw {
        crate::store::Raw::Sqlite(_) => &[
            "CREATE TABLE refuse_children (on_purpose INTEGER)",
            "INSERT INTO refuse_children VALUES (1)",
            "CREATE TRIGGER refuse_child BEFORE INSERT ON runs \
             WHEN NEW.workflow = 'refused-child' AND EXISTS (SELECT 1 FROM refuse_children) \
             BEGIN SELECT RAISE(ABORT, 'refused by the test'); END",
        ],
        crate::store::Raw::Postgres(_) => &[
            "CREATE TABLE refuse_children (on_purpose INT)",
            "INSERT INTO refuse_children VALUES (1)",
            "CREATE FUNCTION refuse_child() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN IF EXISTS (SELECT 1 FROM refuse_children) THEN \
             RAISE EXCEPTION 'refused by the test'; END IF; RETURN NEW; END $$",
            "CREATE TRIGGER refuse_child BEFORE INSERT ON runs FOR EACH ROW \
             WHEN (NEW.workflow = 'refused-child') EXECUTE FUNCTION refuse_child()",
        ],
    };
    for sql in refuse {
        raw.execute(sql).await.expect("arm the refusal");
    }
    let run_id = node.start_run("refused-parent", json!({})).await;
    let children = RunQuery {
        workflow: Some("refused-child".to_owned()),
        limit: 10,
        ..RunQuery::default()
    };
    // The parent recorded its child's start; the child's own start was refused.
    node.wait_for(run_id, |state| {
        state
            .step("call")
            .is_some_and(|call| call.status == engine::core::state::StepStatus::Running)
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let none = node
        .runtime
        .store()
        .list_runs(&children)
        .await
        .expect("list");
    assert!(none.items.is_empty(), "the refusal is in force");

    raw.execute("DELETE FROM refuse_children")
        .await
        .expect("lift it");
    let document = node.finished(run_id).await;
    assert_eq!(document["status"], "succeeded", "{document}");
    assert_eq!(
        document["steps"]["after"]["output"],
        json!({"child": "yes"})
    );
    let started = node
        .runtime
        .store()
        .list_runs(&children)
        .await
        .expect("list");
    assert_eq!(started.items.len(), 1, "one child, started once");
    node.stop().await;
}
