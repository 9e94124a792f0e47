//! Fixtures: real stores (SQLite in a temp folder; PostgreSQL when
//! `IMX_TEST_POSTGRES_URL` names a cluster), histories appended to them the
//! way the runtime does (events and the run projection in one append), and
//! exports read back into lines.

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use engine::core::event::EventEnvelope;
use engine::core::state::RunState;
use engine::core::workflow::Workflow;
use engine::store::prelude::*;
use engine::store::{
    AppendRequest, Clock, ManualClock, NewEvent, ProjectionUpdate, RunRow, Store, StoreConfig,
};
use testkit::histories;
use testkit::postgres::{ClusterUse, ScratchDatabase};
use uuid::Uuid;

/// A store, its manual clock, and the folder or database that holds it.
pub struct Fixture {
    pub store: Store,
    pub clock: ManualClock,
    _folder: Option<tempfile::TempDir>,
    // Declared after `store`: the database is dropped once the store is.
    _scratch: Option<ScratchDatabase>,
}

/// The time the fixtures' clocks start at: 2026-11-24T12:00:00Z.
pub fn start_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0)
        .single()
        .expect("a valid time")
}

fn config(clock: &ManualClock) -> StoreConfig {
    StoreConfig {
        clock: Arc::new(clock.clone()),
        ..StoreConfig::default()
    }
}

/// A fresh SQLite store.
pub async fn sqlite() -> Fixture {
    let folder = tempfile::tempdir().expect("a temp folder");
    let url = format!("sqlite://{}/imx.db", folder.path().display());
    let clock = ManualClock::new(start_time());
    let store = Store::connect(&url, config(&clock))
        .await
        .expect("open SQLite");
    Fixture {
        store,
        clock,
        _folder: Some(folder),
        _scratch: None,
    }
}

/// A fresh database in the PostgreSQL cluster of `IMX_TEST_POSTGRES_URL`,
/// or `None` after a loud notice (a failure when `CI=true`).
pub async fn postgres() -> Option<Fixture> {
    let scratch =
        ScratchDatabase::create("a replay test", "imx_replay", ClusterUse::Shared).await?;
    let url = scratch.url.clone();
    let clock = ManualClock::new(start_time());
    let store = Store::connect(&url, config(&clock))
        .await
        .expect("open PostgreSQL");
    Some(Fixture {
        store,
        clock,
        _folder: None,
        _scratch: Some(scratch),
    })
}

/// The `runs` row the runtime would write for `state`.
pub fn run_row(state: &RunState, now: DateTime<Utc>) -> RunRow {
    RunRow {
        run_id: state.run_id.expect("a started run"),
        workflow: state.workflow.clone(),
        version: state.version.clone(),
        status: state.status.as_str().to_owned(),
        input: state.input.clone(),
        output: state.output.clone(),
        error: state.failure.clone(),
        parent_run_id: state.parent.as_ref().map(|parent| parent.run_id),
        forked_from: state.fork.as_ref().map(|fork| fork.run_id),
        idempotency_key: state.idempotency_key.clone(),
        created_at: state.started_at.unwrap_or(now),
        updated_at: now,
    }
}

/// One run's log to append, with the live state the run reached.
#[derive(Debug, Clone)]
pub struct RunLog {
    pub events: Vec<EventEnvelope>,
    pub live: RunState,
}

impl RunLog {
    /// A canned history given its own run id.
    pub fn canned(history: histories::History, run_id: Uuid) -> RunLog {
        let events: Vec<EventEnvelope> = history
            .events
            .into_iter()
            .map(|event| EventEnvelope { run_id, ..event })
            .collect();
        let live = engine::core::replay(&events).expect("a canned history folds");
        RunLog { events, live }
    }
}

/// Every canned history of the core, each as its own run.
pub fn canned_runs() -> Vec<RunLog> {
    let histories = [
        histories::retry_then_ok(),
        histories::retry_exhausted(),
        histories::step_timed_out(),
        histories::approval_granted(),
        histories::child_run_succeeded(),
        histories::cancel_while_running(),
        histories::run_timed_out(),
        histories::fan_out_item_done(),
        histories::failed_dependency(),
    ];
    histories
        .into_iter()
        .enumerate()
        .map(|(n, history)| RunLog::canned(history.settled(), run_id(n as u128 + 1)))
        .collect()
}

/// A fixed run id per test run number.
pub fn run_id(n: u128) -> Uuid {
    Uuid::from_u128(0x0196_0000_0000_7000_8000_0000_0000_0000 + n)
}

/// Appends the runs interleaved, `chunk` events of a run per append in
/// round robin, so that global positions mix the runs as a busy engine
/// would. The clock moves 1 ms per append; each append carries the run row.
pub async fn append_runs(fixture: &Fixture, runs: &[RunLog], chunk: usize) {
    let mut offsets = vec![0usize; runs.len()];
    let mut states: Vec<RunState> = vec![RunState::new(); runs.len()];
    loop {
        let mut appended = false;
        for (n, run) in runs.iter().enumerate() {
            let from = offsets[n];
            let to = (from + chunk).min(run.events.len());
            if from == to {
                continue;
            }
            for event in &run.events[from..to] {
                states[n].apply(event).expect("the run's events fold");
            }
            let events = run.events[from..to].iter().map(new_event).collect();
            let mut request = AppendRequest::new(run.events[0].run_id, from as u64, events);
            request.projection = ProjectionUpdate {
                run: Some(run_row(&states[n], fixture.clock.now())),
                steps: Vec::new(),
            };
            fixture.store.append(request).await.expect("append");
            fixture.clock.advance_ms(1);
            offsets[n] = to;
            appended = true;
        }
        if !appended {
            return;
        }
    }
}

fn new_event(event: &EventEnvelope) -> NewEvent {
    let (event_type, schema_version, payload) = event.event.to_payload();
    NewEvent {
        event_type: event_type.to_owned(),
        schema_version,
        payload,
    }
}

/// The whole log (or a scope of it) exported at a fixed time, as text.
pub async fn export_text(fixture: &Fixture, scope: replay::Scope) -> String {
    let mut out = Vec::new();
    replay::export(&fixture.store, scope, start_time(), &mut out)
        .await
        .expect("export");
    String::from_utf8(out).expect("UTF-8 export")
}

/// Runs an async test body on a fresh runtime.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(future)
}

/// The workflow of `workflows/<name>.yaml`.
pub fn example(name: &str) -> Workflow {
    let path = format!("{}/../workflows/{name}.yaml", env!("CARGO_MANIFEST_DIR"));
    let source = std::fs::read_to_string(&path).expect("read an example workflow");
    engine::core::dsl::parse(&source)
        .workflow
        .unwrap_or_else(|| panic!("{path} does not parse"))
}
