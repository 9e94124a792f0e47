//! The one invariant checker every scenario ends with, from the database
//! (the log, the work queue), an `imx replay export` + `imx replay verify`
//! of the whole log, and what the target server saw:
//!
//! 1. every acknowledged start has its run, and every run (children too)
//!    reaches an end state within the deadline;
//! 2. each step execution has at most one success (`step.succeeded`; for
//!    an approval its `approval.granted`, for a child workflow its
//!    `child_run.finished` with outcome `succeeded`), and exactly one when
//!    its run succeeded;
//! 3. every side effect the target saw carries an idempotency key, and each
//!    key belongs to one step execution;
//! 4. `imx replay verify` of a full export passes (and the hash chain
//!    verifies in process too); subscriptions seen gap-free (`Seqs`);
//! 5. nothing stays claimed: no task with an expired lease at the end.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use engine::store::prelude::*;
use engine::store::{RecordedEvent, Store};
use uuid::Uuid;

use crate::target::{Hit, Target};

/// How often the checker looks at the database while it waits.
pub const POLL_MS: u64 = 200;
/// How long a live node gets to take over (or drop) tasks whose lease
/// expired, before invariant 5 fails.
pub const LEASES_RELEASED_MS_MAX: u64 = 60_000;

/// What a scenario expects besides the invariants.
#[derive(Debug, Clone)]
pub struct Expect {
    /// Run ids whose start was acknowledged to the client.
    pub acknowledged: Vec<Uuid>,
    /// How long the runs get to reach an end state.
    pub within: Duration,
    /// Every acknowledged run must have succeeded (not just ended).
    pub all_succeed: bool,
}

/// The figures of one check, printed by the scenarios.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub runs: usize,
    pub acknowledged: usize,
    pub succeeded: usize,
    pub failed: usize,
    pub cancelled: usize,
    pub events: usize,
    pub step_successes: usize,
    /// Step executions with more than one success (must be 0).
    pub duplicated: usize,
    /// Acknowledged starts without a run (must be 0).
    pub lost: usize,
    pub side_effects: usize,
    pub side_effect_keys: usize,
    /// Keys the target saw more than once (retries, takeovers: allowed).
    pub repeated_keys: usize,
    pub expired_leases: u64,
    pub settle_ms: u128,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "runs {} (acknowledged {}, succeeded {}, failed {}, cancelled {}), events {}, \
             step successes {}, lost: {}, duplicated: {}, side effects {} under {} keys \
             ({} keys repeated), expired leases {}, settled in {} ms; invariants 1-5 hold",
            self.runs,
            self.acknowledged,
            self.succeeded,
            self.failed,
            self.cancelled,
            self.events,
            self.step_successes,
            self.lost,
            self.duplicated,
            self.side_effects,
            self.side_effect_keys,
            self.repeated_keys,
            self.expired_leases,
            self.settle_ms,
        )
    }
}

/// Checks the five invariants; panics naming the first one broken.
/// Some node must still be up (it takes expired leases over).
pub async fn check(url: &str, expect: &Expect, target: &Target) -> Report {
    let store = engine::store::open(url).await.expect("open the store");
    let started = Instant::now();
    let mut log = Log::default();
    let deadline = Instant::now() + expect.within;
    let ended = loop {
        log.catch_up(&store).await;
        if log.all_ended(&expect.acknowledged) {
            break true;
        }
        if Instant::now() >= deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
    };
    let settle_ms = started.elapsed().as_millis();
    let mut report = Report {
        settle_ms,
        acknowledged: expect.acknowledged.len(),
        ..Report::default()
    };
    // Invariant 1.
    let lost: Vec<&Uuid> = expect
        .acknowledged
        .iter()
        .filter(|id| !log.started.contains(id))
        .collect();
    report.lost = lost.len();
    assert!(
        lost.is_empty(),
        "invariant 1: acknowledged starts without a run: {lost:?} (last error reading the log: {:?})",
        log.error
    );
    let open: Vec<&Uuid> = log
        .started
        .iter()
        .filter(|id| !log.ended.contains_key(id))
        .collect();
    if !(ended && open.is_empty()) {
        let mut histories = String::new();
        for run_id in open.iter().take(3) {
            histories.push_str(&tail_of(&store, **run_id).await);
        }
        panic!(
            "invariant 1: {} runs did not end within {:?}: {:?}\nwhere the first ones stand:\n{histories}",
            open.len(),
            expect.within,
            open.iter().take(10).collect::<Vec<_>>()
        );
    }
    report.runs = log.started.len();
    for status in log.ended.values() {
        match status.as_str() {
            "run.succeeded" => report.succeeded += 1,
            "run.cancelled" => report.cancelled += 1,
            _ => report.failed += 1,
        }
    }
    if expect.all_succeed {
        let unsuccessful: Vec<_> = expect
            .acknowledged
            .iter()
            .filter(|id| log.ended.get(id).map(String::as_str) != Some("run.succeeded"))
            .map(|id| (id, log.ended.get(id)))
            .collect();
        assert!(
            unsuccessful.is_empty(),
            "acknowledged runs that did not succeed: {unsuccessful:?}"
        );
    }
    // Invariant 2.
    check_successes(&log, &mut report);
    // Invariant 3.
    // What the target saw once every run ended.
    check_side_effects(&log, &target.hits(), &mut report);
    // Invariant 4.
    engine::chain::verify_log(&engine::chain::LogHead::genesis(), &log.events)
        .unwrap_or_else(|error| panic!("invariant 4: the hash chain does not verify: {error}"));
    export_and_verify(url, log.events.len()).await;
    report.events = log.events.len();
    // Invariant 5: a live node takes over an expired lease (and drops the
    // task of an ended run); one that stays expired is claimed forever.
    let deadline = Instant::now() + Duration::from_millis(LEASES_RELEASED_MS_MAX);
    let (released, expired) = loop {
        let expired = store
            .expired_leases(chrono::Utc::now())
            .await
            .unwrap_or(u64::MAX);
        if expired == 0 || Instant::now() >= deadline {
            break (expired == 0, expired);
        }
        tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
    };
    report.expired_leases = expired;
    assert!(
        released,
        "invariant 5: {expired} tasks keep an expired lease"
    );
    report
}

/// The log read so far and what it says about runs and executions.
#[derive(Debug, Default)]
struct Log {
    events: Vec<RecordedEvent>,
    started: HashSet<Uuid>,
    ended: HashMap<Uuid, String>,
    /// The last error reading the log (a node may be restarting it).
    error: Option<String>,
}

impl Log {
    async fn catch_up(&mut self, store: &Store) {
        loop {
            let page = match store.read_log(self.events.len() as u64, 1_000).await {
                Ok(page) => page,
                Err(error) => {
                    self.error = Some(error.to_string());
                    return;
                }
            };
            if page.is_empty() {
                return;
            }
            for event in &page {
                match event.event_type.as_str() {
                    "run.started" => {
                        self.started.insert(event.run_id);
                    }
                    "run.succeeded" | "run.failed" | "run.cancelled" => {
                        self.ended.insert(event.run_id, event.event_type.clone());
                    }
                    _ => {}
                }
            }
            self.events.extend(page);
        }
    }

    fn all_ended(&self, acknowledged: &[Uuid]) -> bool {
        acknowledged.iter().all(|id| self.ended.contains_key(id))
            && self.started.iter().all(|id| self.ended.contains_key(id))
    }
}

/// An execution: run, step, `for_each` index.
type Execution = (Uuid, String, Option<u64>);

fn execution(event: &RecordedEvent) -> Execution {
    (
        event.run_id,
        event.payload["step"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        event.payload["index"].as_u64(),
    )
}

fn check_successes(log: &Log, report: &mut Report) {
    let mut successes: BTreeMap<Execution, usize> = BTreeMap::new();
    let mut scheduled: BTreeMap<Execution, ()> = BTreeMap::new();
    let mut skipped: HashSet<Execution> = HashSet::new();
    for event in &log.events {
        match event.event_type.as_str() {
            // An approval step succeeds by its grant, a workflow step by
            // its child's end with outcome `succeeded`.
            "step.succeeded" | "approval.granted" => {
                *successes.entry(execution(event)).or_default() += 1;
            }
            "child_run.finished" if event.payload["outcome"] == "succeeded" => {
                *successes.entry(execution(event)).or_default() += 1;
            }
            "step.scheduled" => {
                scheduled.insert(execution(event), ());
            }
            "step.skipped" | "step.cancelled" => {
                skipped.insert(execution(event));
            }
            _ => {}
        }
    }
    report.step_successes = successes.values().sum();
    let twice: Vec<_> = successes.iter().filter(|(_, n)| **n > 1).collect();
    report.duplicated = twice.len();
    assert!(
        twice.is_empty(),
        "invariant 2: executions with more than one step.succeeded: {twice:?}"
    );
    let missing: Vec<_> = scheduled
        .keys()
        .filter(|(run, _, _)| log.ended.get(run).map(String::as_str) == Some("run.succeeded"))
        .filter(|exec| !skipped.contains(*exec) && !successes.contains_key(*exec))
        .collect();
    assert!(
        missing.is_empty(),
        "invariant 2: succeeded runs with an execution that never succeeded: {missing:?}"
    );
}

fn check_side_effects(log: &Log, hits: &[Hit], report: &mut Report) {
    let mut owners: HashMap<String, HashSet<Execution>> = HashMap::new();
    for event in log
        .events
        .iter()
        .filter(|e| e.event_type == "step.scheduled")
    {
        if let Some(key) = event.payload["idempotency_key"].as_str() {
            owners
                .entry(key.to_owned())
                .or_default()
                .insert(execution(event));
        }
    }
    let shared: Vec<_> = owners.iter().filter(|(_, execs)| execs.len() > 1).collect();
    assert!(
        shared.is_empty(),
        "invariant 3: one idempotency key on several executions: {shared:?}"
    );
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for hit in hits {
        let key = hit.key.as_deref().unwrap_or_else(|| {
            panic!("invariant 3: a side effect without an idempotency key: {hit:?}")
        });
        assert!(
            owners.contains_key(key),
            "invariant 3: a side effect under a key no step execution has: {hit:?}"
        );
        *seen.entry(key).or_default() += 1;
    }
    report.side_effects = hits.len();
    report.side_effect_keys = seen.len();
    report.repeated_keys = seen.values().filter(|n| **n > 1).count();
}

/// `imx replay export` of the whole log into a file, then `imx replay
/// verify` of that file: both must exit 0 and the export hold every event.
async fn export_and_verify(url: &str, events: usize) {
    let folder = tempfile::tempdir().expect("temp dir");
    let file = folder.path().join("export.jsonl");
    let url = url.to_owned();
    let path = file.clone();
    let exported = tokio::task::spawn_blocking(move || {
        let out = std::fs::File::create(&path).expect("create the export file");
        std::process::Command::new(crate::binary::imx())
            .args(["--database-url", &url, "replay", "export"])
            .stdout(out)
            .output()
            .expect("imx replay export runs")
    })
    .await
    .expect("export task");
    assert!(
        exported.status.success(),
        "invariant 4: imx replay export failed: {}",
        String::from_utf8_lossy(&exported.stderr)
    );
    let text = std::fs::read_to_string(&file).expect("read the export");
    let lines = text.lines().filter(|line| !line.trim().is_empty()).count();
    assert!(
        lines >= events,
        "invariant 4: the export has {lines} lines for {events} events"
    );
    let verified = crate::binary::run_async(vec![
        "replay".into(),
        "verify".into(),
        file.display().to_string(),
    ])
    .await;
    assert_eq!(
        verified.code, 0,
        "invariant 4: imx replay verify refused the export: {verified:?}"
    );
}

/// Seqs a subscriber received per run; gap-free from where it joined.
#[derive(Debug, Default)]
pub struct Seqs(pub BTreeMap<Uuid, Vec<u64>>);

impl Seqs {
    /// Panics when a run's seqs have a gap or go back (invariant 4).
    pub fn assert_gap_free(&self) {
        for (run, seqs) in &self.0 {
            for pair in seqs.windows(2) {
                assert_eq!(
                    pair[1],
                    pair[0] + 1,
                    "invariant 4: the subscription skipped or repeated a seq of run {run}: {seqs:?}"
                );
            }
        }
    }
}

/// The last events of a run that did not end, one per line, for the report
/// of a broken invariant 1 (the scratch database is dropped afterwards).
async fn tail_of(store: &Store, run_id: Uuid) -> String {
    const SHOWN: usize = 12;
    let mut events: Vec<RecordedEvent> = Vec::new();
    loop {
        let after = events.last().map_or(0, |event| event.seq);
        match store
            .read_stream(run_id, after, engine::store::PAGE_SIZE_MAX)
            .await
        {
            Ok(page) if page.is_empty() => break,
            Ok(page) => events.extend(page),
            Err(error) => return format!("run {run_id}: cannot read its events: {error}\n"),
        }
    }
    let mut text = format!("run {run_id}: {} events, the last ones:\n", events.len());
    for event in events.iter().skip(events.len().saturating_sub(SHOWN)) {
        text.push_str(&format!(
            "  {} {} {} {}\n",
            event.seq, event.recorded_at, event.event_type, event.payload
        ));
    }
    text
}
