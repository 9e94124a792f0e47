//! Cron schedules end to end (docs/triggers-cron.md): per-second schedules
//! on the real clock on SQLite and PostgreSQL, two scheduler nodes on one
//! PostgreSQL, and, on a manual clock so every instant is exact: pause and
//! resume, catch-up after downtime, overlap skips, backfills and a fire
//! recorded by a node that died before starting its run.

mod clocked;
mod nodes;

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use engine::core::event::TriggerContext;
use engine::runtime::Runtime;
use engine::store::prelude::*;
use engine::store::{RunQuery, RunRecord, Store};
use engine::triggers::cron::spawn_scheduler;
use serde_json::json;

use crate::runtime::{Node, both_backends};

/// How long a test waits for the ticks it needs, in ms.
const TICKS_WAIT_MS_MAX: u64 = 60_000;

/// Every run of `workflow`, oldest first.
pub async fn runs_of(store: &Store, workflow: &str) -> Vec<RunRecord> {
    let mut runs = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .list_runs(&RunQuery {
                workflow: Some(workflow.to_owned()),
                after: after.clone(),
                limit: 1_000,
                ..RunQuery::default()
            })
            .await
            .expect("list runs");
        runs.extend(page.items);
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    runs.reverse();
    runs
}

/// The scheduled instant of each of the workflow's runs by trigger id, from
/// what `run.started` recorded; also checks each run's key names it.
pub async fn fires_by_trigger(
    runtime: &Runtime<Store>,
    workflow: &str,
) -> BTreeMap<String, Vec<DateTime<Utc>>> {
    let mut fires: BTreeMap<String, Vec<DateTime<Utc>>> = BTreeMap::new();
    for run in runs_of(runtime.store(), workflow).await {
        let state = runtime.state(run.row.run_id).await.expect("state");
        let Some(TriggerContext::Cron {
            trigger,
            scheduled_at,
        }) = state.trigger
        else {
            panic!(
                "run {} has no cron trigger: {:?}",
                run.row.run_id, state.trigger
            );
        };
        let key = engine::core::cron::fire_key(workflow, &trigger, scheduled_at);
        assert_eq!(run.row.idempotency_key.as_deref(), Some(key.as_str()));
        fires.entry(trigger).or_default().push(scheduled_at);
    }
    for instants in fires.values_mut() {
        instants.sort();
    }
    fires
}

/// Waits until `workflow` has at least `count` runs, woken by the nodes'
/// run changes (a new run is one), failing after [`TICKS_WAIT_MS_MAX`].
pub async fn wait_for_runs(nodes: &[&Runtime<Store>], workflow: &str, count: usize) {
    let mut changes: Vec<_> = nodes.iter().map(|node| node.changes()).collect();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(TICKS_WAIT_MS_MAX);
    loop {
        let seen = runs_of(nodes[0].store(), workflow).await.len();
        if seen >= count {
            return;
        }
        let any_change = futures_util::future::select_all(
            changes.iter_mut().map(|receiver| Box::pin(receiver.recv())),
        );
        if tokio::time::timeout_at(deadline, any_change).await.is_err() {
            panic!("{workflow}: {seen} runs, not {count}, within {TICKS_WAIT_MS_MAX} ms");
        }
    }
}

/// Asserts `instants` (sorted) are consecutive seconds: no gap, no duplicate.
pub fn assert_every_second_once(instants: &[DateTime<Utc>]) {
    for pair in instants.windows(2) {
        assert_eq!(
            (pair[1] - pair[0]).num_milliseconds(),
            1_000,
            "ticks {} and {} are not one second apart (a gap or a duplicate) in {instants:?}",
            pair[0],
            pair[1]
        );
    }
}

const EVERY_SECOND: &str = r#"
name: every-second
input:
  type: object
  required: [at, trigger]
  properties: { at: { type: string }, trigger: { type: string } }
triggers:
  - cron: "* * * * * *"
    catch_up: all    # a loaded machine that lags a tick still fires it
    input: { at: "{{ trigger.scheduled_at }}", trigger: "{{ trigger.id }}" }
steps:
  a: { uses: noop }
"#;

both_backends!(cron_live: every_second_schedule_fires_each_tick_once_with_its_instant_in_the_input);

async fn every_second_schedule_fires_each_tick_once_with_its_instant_in_the_input(url: &str) {
    let node = Node::start(url).await;
    node.register(EVERY_SECOND).await;
    let scheduler = spawn_scheduler(node.runtime.clone());
    let store = node.runtime.store().clone();
    wait_for_runs(&[&node.runtime], "every-second", 5).await;
    scheduler.shutdown().await;
    let fires = fires_by_trigger(&node.runtime, "every-second").await;
    let instants = &fires["cron"];
    assert!(instants.len() >= 5);
    assert_every_second_once(instants);
    for run in runs_of(&store, "every-second").await {
        let state = node.runtime.state(run.row.run_id).await.expect("state");
        let Some(TriggerContext::Cron { scheduled_at, .. }) = state.trigger else {
            panic!("not a cron run");
        };
        let at = scheduled_at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
        assert_eq!(run.row.input, json!({ "at": at, "trigger": "cron" }));
    }
    node.stop().await;
}

#[test]
fn every_example_workflows_cron_triggers_are_scheduled() {
    let mut scheduled = 0;
    let folder = crate::repo_path("workflows");
    for entry in std::fs::read_dir(&folder).expect("workflows/") {
        let path = entry.expect("an entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let source = std::fs::read_to_string(&path).expect("readable");
        let (workflow, version) =
            engine::runtime::parse_source(&source).unwrap_or_else(|e| panic!("{path:?}: {e}"));
        let crons = workflow
            .triggers
            .iter()
            .filter(|trigger| matches!(trigger, engine::core::workflow::Trigger::Cron { .. }))
            .count();
        let triggers = engine::triggers::cron::triggers_of(&workflow, &version);
        assert_eq!(
            triggers.len(),
            crons,
            "{path:?}: a cron trigger did not load"
        );
        let now = chrono::Utc::now();
        for trigger in &triggers {
            assert!(
                trigger.schedule.fires_after(now).next().is_some(),
                "{path:?}: `{}` never fires again",
                trigger.trigger
            );
        }
        scheduled += triggers.len();
    }
    assert!(scheduled > 0, "the examples have cron triggers");
}
