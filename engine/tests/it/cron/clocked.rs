//! Schedules on a manual clock: each scheduler pass sees an exact "now", so
//! pause and resume, catch-up, overlap and backfill are checked instant by
//! instant on both backends.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use engine::runtime::Error;
use engine::store::prelude::*;
use engine::store::{Clock, FireOutcome, FireRecord, ManualClock, StoreConfig};
use engine::triggers::cron::{self as scheduler, PassReport, backfill, pass, set_paused};

use super::fires_by_trigger;
use crate::runtime::{Node, both_backends, test_config};

both_backends!(cron_clocked:
    paused_schedule_fires_nothing_and_resume_does_not_catch_up,
    catch_up_after_downtime_starts_none_the_latest_or_all_missed_fires,
    overlap_skip_records_the_skipped_tick_while_the_previous_run_waits,
    backfill_twice_starts_nothing_new_and_shares_keys_with_live_fires,
    fire_recorded_by_a_node_that_died_is_started_by_the_next_pass,
    fire_whose_input_fails_the_schema_is_recorded_failed_and_other_schedules_still_fire,
);

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("RFC 3339")
        .with_timezone(&Utc)
}

/// A node whose store reads `clock`; nothing resumes, no scheduler loop:
/// the test calls [`pass`] itself.
async fn clocked_node(url: &str, start: &str) -> (Node, ManualClock) {
    let clock = ManualClock::new(at(start));
    let store = StoreConfig {
        clock: Arc::new(clock.clone()),
        ..StoreConfig::default()
    };
    (
        Node::start_with_store(url, test_config(), store).await,
        clock,
    )
}

async fn pass_at(node: &Node, clock: &ManualClock, now: &str) -> PassReport {
    let delta = at(now) - clock.now();
    clock.advance_ms(delta.num_milliseconds());
    pass(&node.runtime).await.expect("pass").0
}

fn times(fires: &[DateTime<Utc>]) -> Vec<String> {
    fires.iter().map(|at| at.format("%T").to_string()).collect()
}

const MINUTELY: &str = r#"
name: minutely
triggers:
  - cron: "0 * * * * *"
steps:
  a: { uses: noop }
"#;

async fn paused_schedule_fires_nothing_and_resume_does_not_catch_up(url: &str) {
    let (node, clock) = clocked_node(url, "2027-01-01T12:00:30Z").await;
    node.register(MINUTELY).await;
    assert_eq!(
        pass_at(&node, &clock, "2027-01-01T12:00:30Z").await,
        PassReport::default()
    );
    let paused = set_paused(&node.runtime, "minutely", None, Some("ops"))
        .await
        .expect("pause");
    assert_eq!(paused, ["cron"]);
    let listed = scheduler::list(&node.runtime).await.expect("list");
    assert_eq!(
        (listed[0].state, listed[0].paused_by.as_deref()),
        ("paused", Some("ops"))
    );
    assert!(listed[0].next_fires.is_empty());
    assert_eq!(
        pass_at(&node, &clock, "2027-01-01T12:03:30Z").await.started,
        0
    );
    set_paused(&node.runtime, "minutely", Some("cron"), None)
        .await
        .expect("resume");
    // 12:01, 12:02 and 12:03 passed while paused: none of them starts.
    assert_eq!(
        pass_at(&node, &clock, "2027-01-01T12:04:01Z").await.started,
        1
    );
    let fires = fires_by_trigger(&node.runtime, "minutely").await;
    assert_eq!(times(&fires["cron"]), ["12:04:00"]);
    let listed = scheduler::list(&node.runtime).await.expect("list");
    assert_eq!(listed[0].state, "active");
    assert_eq!(listed[0].last_fire_at, Some(at("2027-01-01T12:04:00Z")));
    assert_eq!(listed[0].next_fires.len(), 5);
    assert_eq!(listed[0].next_fires[0], at("2027-01-01T12:05:00Z"));
    let unknown = set_paused(&node.runtime, "minutely", Some("nope"), Some("ops")).await;
    assert!(
        matches!(unknown, Err(ref error @ Error::ScheduleNotFound { .. }) if error.code() == "IMX0420"),
        "{unknown:?}"
    );
    node.stop().await;
}

const CATCHING_UP: &str = r#"
name: catching-up
triggers:
  - { id: none, cron: "0 * * * * *", catch_up: none }
  - { id: latest, cron: "0 * * * * *" }
  - { id: all, cron: "0 * * * * *", catch_up: all }
steps:
  a: { uses: noop }
"#;

async fn catch_up_after_downtime_starts_none_the_latest_or_all_missed_fires(url: &str) {
    let (node, clock) = clocked_node(url, "2027-01-01T12:00:05Z").await;
    node.register(CATCHING_UP).await;
    // Every node was down for two hours: the schedules last considered 10:00:05.
    for trigger in ["none", "latest", "all"] {
        node.runtime
            .store()
            .ensure_schedule("catching-up", trigger, at("2027-01-01T10:00:05Z"))
            .await
            .expect("old schedule");
    }
    let report = pass_at(&node, &clock, "2027-01-01T12:00:05Z").await;
    let fires = fires_by_trigger(&node.runtime, "catching-up").await;
    assert_eq!(times(&fires["none"]), ["12:00:00"]);
    assert_eq!(times(&fires["latest"]), ["11:59:00", "12:00:00"]);
    let all = &fires["all"];
    // The newest CATCH_UP_FIRES_MAX missed fires, then the on-time one.
    assert_eq!(all.len(), engine::core::cron::CATCH_UP_FIRES_MAX + 1);
    assert_eq!(times(&all[..2]), ["10:20:00", "10:21:00"]);
    assert_eq!(report.started, 1 + 2 + all.len());
    // Nothing is due again at the same instant.
    assert_eq!(
        pass_at(&node, &clock, "2027-01-01T12:00:06Z").await.started,
        0
    );
    node.stop().await;
}

const OVERLAPPING: &str = r#"
name: overlapping
triggers:
  - cron: "0 * * * * *"
    overlap: skip
steps:
  ask: { uses: approval, with: { role: ops, message: "go?" } }
"#;

async fn overlap_skip_records_the_skipped_tick_while_the_previous_run_waits(url: &str) {
    let (node, clock) = clocked_node(url, "2027-01-01T12:00:30Z").await;
    node.register(OVERLAPPING).await;
    pass_at(&node, &clock, "2027-01-01T12:00:30Z").await;
    assert_eq!(
        pass_at(&node, &clock, "2027-01-01T12:01:00Z").await.started,
        1
    );
    // The 12:01 run waits for its approval: 12:02 is skipped, and recorded.
    let report = pass_at(&node, &clock, "2027-01-01T12:02:00Z").await;
    assert_eq!((report.started, report.skipped), (0, 1));
    let ledger = node
        .runtime
        .store()
        .list_fires("overlapping", "cron", 10)
        .await
        .expect("ledger");
    assert_eq!(ledger[0].scheduled_at, at("2027-01-01T12:02:00Z"));
    assert_eq!(ledger[0].outcome, FireOutcome::Skipped);
    assert!(
        ledger[0]
            .reason
            .as_deref()
            .unwrap_or_default()
            .contains("overlap")
    );
    let listed = scheduler::list(&node.runtime).await.expect("list");
    assert_eq!(
        (listed[0].skipped, listed[0].last_skipped_at),
        (1, Some(at("2027-01-01T12:02:00Z")))
    );
    // Once the run ended, the next tick starts again.
    let fires = fires_by_trigger(&node.runtime, "overlapping").await;
    assert_eq!(times(&fires["cron"]), ["12:01:00"]);
    let run = super::runs_of(node.runtime.store(), "overlapping").await[0]
        .row
        .run_id;
    node.runtime
        .cancel_run(run, Some("test".to_owned()), None)
        .await
        .expect("cancel");
    node.wait_for(run, engine::core::RunState::is_finished)
        .await;
    assert_eq!(
        pass_at(&node, &clock, "2027-01-01T12:03:00Z").await.started,
        1
    );
    node.stop().await;
}

async fn backfill_twice_starts_nothing_new_and_shares_keys_with_live_fires(url: &str) {
    let (node, clock) = clocked_node(url, "2027-01-01T11:59:30Z").await;
    node.register(MINUTELY).await;
    pass_at(&node, &clock, "2027-01-01T11:59:30Z").await;
    assert_eq!(
        pass_at(&node, &clock, "2027-01-01T12:00:01Z").await.started,
        1
    );
    let (from, to) = (at("2027-01-01T11:55:00Z"), at("2027-01-01T12:00:00Z"));
    let first = backfill(&node.runtime, "minutely", None, from, to)
        .await
        .expect("backfill");
    // 11:55..12:00 inclusive: six fires, 12:00 started live already.
    assert_eq!((first.fires, first.started, first.existing), (6, 5, 1));
    let second = backfill(&node.runtime, "minutely", Some("cron"), from, to)
        .await
        .expect("again");
    assert_eq!((second.fires, second.started, second.existing), (6, 0, 6));
    let fires = fires_by_trigger(&node.runtime, "minutely").await;
    assert_eq!(
        times(&fires["cron"]),
        [
            "11:55:00", "11:56:00", "11:57:00", "11:58:00", "11:59:00", "12:00:00"
        ]
    );
    let too_wide = backfill(
        &node.runtime,
        "minutely",
        None,
        from,
        from + chrono::Duration::days(1),
    )
    .await;
    let inverted = backfill(&node.runtime, "minutely", None, to, from).await;
    let unknown = backfill(&node.runtime, "minutely", Some("nope"), from, to).await;
    let codes: Vec<_> = [too_wide, inverted, unknown]
        .iter()
        .map(|result| result.as_ref().map_err(Error::code).err())
        .collect();
    assert_eq!(codes, [Some("IMX0421"), Some("IMX0422"), Some("IMX0420")]);
    // Nothing started by a refusal.
    assert_eq!(
        super::runs_of(node.runtime.store(), "minutely").await.len(),
        6
    );
    node.stop().await;
}

async fn fire_recorded_by_a_node_that_died_is_started_by_the_next_pass(url: &str) {
    let (node, clock) = clocked_node(url, "2027-01-01T12:00:30Z").await;
    node.register(MINUTELY).await;
    pass_at(&node, &clock, "2027-01-01T12:00:30Z").await;
    // A node recorded the 12:01 fire, then died before starting its run
    // (and before moving the cursor).
    let instant = at("2027-01-01T12:01:00Z");
    node.runtime
        .store()
        .record_fire(&FireRecord {
            workflow: "minutely".to_owned(),
            trigger: "cron".to_owned(),
            scheduled_at: instant,
            outcome: FireOutcome::Started,
            reason: None,
            idempotency_key: engine::core::cron::fire_key("minutely", "cron", instant),
            recorded_at: instant,
        })
        .await
        .expect("record");
    assert!(
        super::runs_of(node.runtime.store(), "minutely")
            .await
            .is_empty()
    );
    assert_eq!(
        pass_at(&node, &clock, "2027-01-01T12:01:02Z").await.started,
        1
    );
    let fires = fires_by_trigger(&node.runtime, "minutely").await;
    assert_eq!(times(&fires["cron"]), ["12:01:00"]);
    node.stop().await;
}

async fn fire_whose_input_fails_the_schema_is_recorded_failed_and_other_schedules_still_fire(
    url: &str,
) {
    let (node, clock) = clocked_node(url, "2027-01-01T12:00:30Z").await;
    // The templated input is known only when it fires (`imx validate`
    // cannot check it): it renders a string where the schema wants a number.
    let (name, long_id) = ("typed".to_owned(), "broken".to_owned());
    let source = format!(
        "name: {name}\ninput: {{ type: object, required: [day], properties: {{ day: {{ type: integer }} }} }}\ntriggers:\n  - {{ id: {long_id}, cron: \"0 * * * * *\", input: {{ day: \"{{{{ trigger.id }}}}\" }} }}\n  - {{ id: short, cron: \"0 * * * * *\", input: {{ day: 1 }} }}\nsteps:\n  a: {{ uses: noop }}\n"
    );
    node.register(&source).await;
    pass_at(&node, &clock, "2027-01-01T12:00:30Z").await;
    let report = pass_at(&node, &clock, "2027-01-01T12:01:00Z").await;
    assert_eq!((report.started, report.failed, report.errors), (1, 1, 0));
    let ledger = node
        .runtime
        .store()
        .list_fires(&name, &long_id, 10)
        .await
        .expect("ledger");
    assert_eq!(ledger[0].outcome, FireOutcome::Failed);
    assert!(
        ledger[0]
            .reason
            .as_deref()
            .unwrap_or_default()
            .contains("does not match the workflow's `input` schema:   /day"),
        "{ledger:?}"
    );
    let fires = fires_by_trigger(&node.runtime, &name).await;
    assert_eq!(fires.keys().collect::<Vec<_>>(), ["short"]);
    // The failed fire is behind the cursor: it is not tried again.
    assert_eq!(
        pass_at(&node, &clock, "2027-01-01T12:01:30Z").await,
        PassReport::default()
    );
    node.stop().await;
}
