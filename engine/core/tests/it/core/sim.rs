//! Deterministic simulation (TigerBeetle's VOPR, scaled down): per seed, a
//! random workflow runs against a simulated clock and a world with random
//! outcomes, latencies, hangs, timeouts, duplicate and late results, cancel
//! requests and crashes (in-memory state dropped and rebuilt from the log).
//! An operator pauses and resumes, skips failed or waiting steps, and
//! rewinds ended runs. After each run: replay equals the live state, no
//! execution succeeds twice in one generation (per idempotency key), seq is gap-free, the run ended with nothing left to do, no secret
//! reached the log, every event validates against its JSON Schema, and the
//! same seed gives the same log.
//!
//! `IMX_SIM_SEEDS=N` runs N seeds (default 10,000); `IMX_SIM_SEED=S` replays one.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use imx_core::event::{ChildOutcome, Event, EventEnvelope};
use imx_core::workflow::{Backoff, RetryPolicy, Step, StepKind, TriggerRule, Workflow};
use imx_core::{Host, Secrets, decide, outstanding, replay};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use testkit::histories::{step, workflow};

use super::driver::{Driver, Outcome, Surgery, World};

/// A secret value that must never appear in an event.
pub const CANARY: &str = "canary-7f3a9c";
const SEEDS_DEFAULT: u64 = 10_000;

/// SplitMix64: small, fast, and the same on every machine.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    pub fn percent(&mut self, p: u64) -> bool {
        self.below(100) < p
    }
}

/// A random valid workflow: a DAG over `s0..sN` where each step needs only
/// earlier ones, with every step kind, rule and policy the core knows.
pub fn random_workflow(rng: &mut Rng) -> Workflow {
    let count = 2 + rng.below(6) as usize;
    let mut steps: Vec<Step> = (0..count).map(|i| random_step(rng, i)).collect();
    // `finally:` steps: they run after the main part whatever its ending,
    // and a cancel or the run timeout may stop them in turn.
    if rng.percent(30) {
        steps.push(random_finally_step(rng, "f0", &[]));
        if rng.percent(50) {
            steps.push(random_finally_step(rng, "f1", &["f0"]));
        }
    }
    let mut flow = workflow("sim", steps);
    if rng.percent(20) {
        flow.timeout_ms = Some(2_000 + rng.below(20_000));
    }
    if rng.percent(40) {
        let last = format!("s{}", count - 1);
        flow.output = Some(
            json!({"last": format!("{{{{ steps.{last}.status }}}}"), "token": "{{ secrets.TOKEN }}"}),
        );
    }
    flow
}

fn random_step(rng: &mut Rng, i: usize) -> Step {
    const KINDS: [StepKind; 8] = [
        StepKind::Http,
        StepKind::Http,
        StepKind::Noop,
        StepKind::Fail,
        StepKind::Agent,
        StepKind::Approval,
        StepKind::Workflow,
        StepKind::Sleep,
    ];
    let kind = KINDS[rng.below(KINDS.len() as u64) as usize];
    let with = match kind {
        StepKind::Workflow => {
            json!({"name": "child", "input": {"n": "{{ input.n }}", "auth": "{{ secrets.TOKEN }}"}})
        }
        StepKind::Fail => json!({"message": "failed with {{ secrets.TOKEN }}"}),
        _ => {
            json!({"n": "{{ input.n }}", "auth": "Bearer {{ secrets.TOKEN }}", "attempt": "{{ run.attempt }}"})
        }
    };
    let mut step = step(&format!("s{i}"), kind).with(with);
    let needs: BTreeSet<String> = (0..rng.below(3))
        .filter(|_| i > 0)
        .map(|_| format!("s{}", rng.below(i as u64)))
        .collect();
    step.needs = needs.into_iter().collect();
    if rng.percent(15) {
        step = step.for_each("{{ input.items }}", 1 + rng.below(3) as u32);
        step.fail_fast = [None, Some(true), Some(false)][rng.below(3) as usize];
    }
    step.retry = RetryPolicy {
        max_attempts: 1 + rng.below(4) as u32,
        backoff: if rng.percent(50) {
            Backoff::Fixed
        } else {
            Backoff::Exponential
        },
        initial_interval_ms: 100 + rng.below(2_000),
        max_interval_ms: 5_000,
        multiplier: 1.5 + rng.below(3) as f64 * 0.5,
        jitter: if rng.percent(50) { 0.5 } else { 0.0 },
    };
    if rng.percent(30) {
        step.timeout_ms = Some(200 + rng.below(3_000));
    }
    if rng.percent(25) {
        step.trigger_rule = TriggerRule::ALL[rng.below(4) as usize];
    }
    step.continue_on_error = rng.percent(10);
    if rng.percent(10) {
        step.condition = Some("input.flag".to_owned());
    }
    step
}

fn random_finally_step(rng: &mut Rng, id: &str, needs: &[&str]) -> Step {
    const KINDS: [StepKind; 3] = [StepKind::Http, StepKind::Noop, StepKind::Fail];
    let kind = KINDS[rng.below(KINDS.len() as u64) as usize];
    let with = json!({"status": "{{ run.status }}", "error": "{{ run.error }}", "s0": "{{ steps.s0.error }}"});
    let mut step = step(id, kind).with(with).needs(needs).in_finally();
    if rng.percent(50) {
        step.trigger_rule = TriggerRule::AllDone;
    }
    if rng.percent(40) {
        step.timeout_ms = Some(200 + rng.below(3_000));
    }
    step.retry.max_attempts = 1 + rng.below(2) as u32;
    step
}

/// Random outcomes and chaos, all drawn from the seed.
#[derive(Debug)]
struct SimWorld {
    rng: Rng,
    /// Steps that may hang: something (a timeout) will end them.
    hangable: BTreeSet<String>,
    /// Steps with a timeout of their own: the only ones that may hang after
    /// a rewind (a rewound run has no whole-run timeout).
    timed_steps: BTreeSet<String>,
    cancel_at_ms: Option<u64>,
    /// Pauses with their resumes, and skips, while the run is under way.
    surgery: Vec<(u64, Surgery)>,
    rewinds: u32,
}

/// Most times the simulated operator rewinds one run.
const REWINDS_MAX: u32 = 2;

impl World for SimWorld {
    fn outcome(&mut self, step: &str, index: Option<u32>, attempt: u32, _: &Value) -> Outcome {
        match self.rng.below(100) {
            0..65 => Outcome::Succeed(json!({"step": step, "index": index, "attempt": attempt})),
            65..80 => Outcome::Fail {
                error: "HTTP 503".into(),
                retryable: true,
            },
            80..88 => Outcome::Fail {
                error: "HTTP 400".into(),
                retryable: false,
            },
            88..95 if self.hangable.contains(step) => Outcome::Hang,
            _ => Outcome::Succeed(json!({"late": true})),
        }
    }
    fn latency_ms(&mut self) -> u64 {
        self.rng.below(1_500)
    }
    fn work_ms(&mut self, _: &str, _: Option<u32>, _: u32) -> u64 {
        self.rng.below(3_000)
    }
    fn approve(&mut self, _: &str) -> bool {
        self.rng.percent(80)
    }
    fn child_outcome(&mut self, _: &str, input: &Value) -> (ChildOutcome, Value) {
        let outcome = if self.rng.percent(80) {
            ChildOutcome::Succeeded
        } else {
            ChildOutcome::Failed
        };
        (outcome, json!({"n": input["n"]}))
    }
    fn duplicate(&mut self) -> bool {
        self.rng.percent(5)
    }
    fn crash(&mut self) -> bool {
        self.rng.percent(3)
    }
    fn cancel_at_ms(&mut self) -> Option<u64> {
        self.cancel_at_ms
    }
    fn surgery(&mut self) -> Vec<(u64, Surgery)> {
        std::mem::take(&mut self.surgery)
    }
    fn rewind(&mut self, state: &imx_core::RunState) -> Option<String> {
        if self.rewinds >= REWINDS_MAX || !self.rng.percent(25) {
            return None;
        }
        self.rewinds += 1;
        self.hangable = self.timed_steps.clone();
        let steps: Vec<&String> = state.steps.keys().collect();
        Some(steps[self.rng.below(steps.len() as u64) as usize].clone())
    }
}

/// Operator surgery drawn from the seed: a pause with its resume, a skip.
fn random_surgery(rng: &mut Rng) -> Vec<(u64, Surgery)> {
    let mut surgery = Vec::new();
    if rng.percent(15) {
        let at = rng.below(4_000);
        surgery.push((at, Surgery::Pause));
        surgery.push((at + 1 + rng.below(3_000), Surgery::Resume));
    }
    if rng.percent(15) {
        surgery.push((
            rng.below(6_000),
            Surgery::Skip {
                pick: rng.next_u64(),
            },
        ));
    }
    surgery
}

/// What one seed produced.
#[derive(Debug)]
pub struct SeedRun {
    pub log: Vec<EventEnvelope>,
    pub hash: String,
    pub crashes: usize,
    pub rejected: usize,
}

/// Runs one seed and checks every invariant.
pub fn run_seed(seed: u64) -> Result<SeedRun, String> {
    let mut rng = Rng::new(seed);
    let flow = random_workflow(&mut rng);
    let input = json!({
        "n": rng.below(100),
        "flag": rng.percent(50),
        "items": (0..rng.below(4)).collect::<Vec<u64>>(),
    });
    let ends_anyway = flow.timeout_ms.is_some();
    let hangable = flow
        .steps
        .values()
        // A `finally:` step may start after the run timeout fired: only its own ends it.
        .filter(|step| (ends_anyway && !step.finally) || step.timeout_ms.is_some())
        .map(|step| step.id.clone())
        .collect();
    let cancel_at_ms = rng.percent(15).then(|| rng.below(5_000));
    let surgery = random_surgery(&mut rng);
    let timed_steps = flow
        .steps
        .values()
        .filter(|step| step.timeout_ms.is_some())
        .map(|step| step.id.clone())
        .collect();
    let mut world = SimWorld {
        rng,
        hangable,
        timed_steps,
        cancel_at_ms,
        surgery,
        rewinds: 0,
    };
    let secrets: Secrets = [("TOKEN", CANARY)].into_iter().collect();
    let mut driver = Driver::new(&flow, secrets.clone());
    driver.run(input, &mut world)?;
    check_invariants(&flow, &driver, &secrets).map_err(|why| {
        let tail: Vec<String> = driver
            .log
            .iter()
            .rev()
            .take(12)
            .rev()
            .map(|e| format!("{} {} {}", e.seq, e.event_type(), e.payload()))
            .collect();
        format!("{why}\nlast events:\n{}", tail.join("\n"))
    })?;
    let mut hasher = Sha256::new();
    for envelope in &driver.log {
        hasher.update(envelope.to_json().to_string().as_bytes());
        hasher.update(b"\n");
    }
    Ok(SeedRun {
        hash: hex::encode(hasher.finalize()),
        log: driver.log,
        crashes: driver.crashes,
        rejected: driver.rejected,
    })
}

fn check_invariants(flow: &Workflow, driver: &Driver<'_>, secrets: &Secrets) -> Result<(), String> {
    let state = &driver.state;
    if !state.is_finished() {
        return Err(format!(
            "the run ended {} (not terminal)",
            state.status.as_str()
        ));
    }
    let replayed = replay(&driver.log).map_err(|err| format!("the log does not replay: {err}"))?;
    if &replayed != state {
        return Err("replaying the log does not give the live state".to_owned());
    }
    for (position, envelope) in driver.log.iter().enumerate() {
        if envelope.seq != position as u64 + 1 {
            return Err(format!("seq {} at position {position}", envelope.seq));
        }
        let json = envelope.to_json().to_string();
        if json.contains(CANARY) {
            return Err(format!("the secret reached event {}: {json}", envelope.seq));
        }
        let (event_type, _, payload) = envelope.event.to_payload();
        if let Some(error) = validators()[event_type].iter_errors(&payload).next() {
            return Err(format!(
                "event {} breaks the {event_type} schema: {error}",
                envelope.seq
            ));
        }
    }
    let mut in_flight = BTreeMap::<(String, Option<u32>), u32>::new();
    for envelope in &driver.log {
        // A result always belongs to the attempt handed out last.
        let (step, index, attempt) = match &envelope.event {
            Event::StepScheduled(e) => {
                in_flight.insert((e.step.clone(), e.index), e.attempt);
                continue;
            }
            Event::StepStarted(e) => (&e.step, e.index, e.attempt),
            Event::StepSucceeded(e) => (&e.step, e.index, e.attempt),
            Event::StepFailed(e) if e.attempt > 0 => (&e.step, e.index, e.attempt),
            _ => continue,
        };
        let current = in_flight.get(&(step.clone(), index)).copied().unwrap_or(0);
        if attempt != current {
            return Err(format!(
                "event {} reports attempt {attempt} of {step}/{index:?}, attempt {current} is current",
                envelope.seq
            ));
        }
    }
    // Each execution succeeds at most once per generation: per idempotency
    // key (a rewind or skip gives the executions it resets a new one).
    let mut keys = BTreeMap::<(String, Option<u32>), String>::new();
    let mut successes = BTreeSet::<String>::new();
    for envelope in &driver.log {
        match &envelope.event {
            Event::StepScheduled(e) => {
                keys.insert((e.step.clone(), e.index), e.idempotency_key.clone());
            }
            Event::StepSucceeded(e) => {
                let key = keys.get(&(e.step.clone(), e.index)).cloned();
                let key = key.ok_or_else(|| {
                    format!("event {} succeeds an unscheduled execution", envelope.seq)
                })?;
                if !successes.insert(key.clone()) {
                    return Err(format!("{key} succeeded twice"));
                }
            }
            _ => {}
        }
    }
    let left = decide(flow, state, driver.now, Host::in_process(secrets));
    if !left.is_empty() {
        return Err(format!("the finished run still decides {left:?}"));
    }
    let owed = outstanding(flow, state, Host::in_process(secrets));
    if !owed.is_empty() {
        return Err(format!("the finished run still owes {owed:?}"));
    }
    Ok(())
}

/// A compiled validator per event type, from the generated schemas.
pub fn validators() -> &'static BTreeMap<&'static str, jsonschema::Validator> {
    static VALIDATORS: OnceLock<BTreeMap<&'static str, jsonschema::Validator>> = OnceLock::new();
    VALIDATORS.get_or_init(|| {
        Event::schemas()
            .into_iter()
            .map(|(event_type, schema)| {
                let schema = serde_json::to_value(&schema).unwrap_or_default();
                let validator = jsonschema::options()
                    .should_validate_formats(true)
                    .build(&schema)
                    .unwrap_or_else(|err| {
                        panic!("the {event_type} schema does not compile: {err}")
                    });
                (event_type, validator)
            })
            .collect()
    })
}

fn replay_command(seed: u64) -> String {
    format!("IMX_SIM_SEED={seed} cargo test -p imx-engine --test it core::sim -- --nocapture")
}

#[test]
fn simulated_runs_keep_every_invariant() {
    let seeds: Vec<u64> = match std::env::var("IMX_SIM_SEED") {
        Ok(seed) => vec![
            seed.parse()
                .unwrap_or_else(|_| panic!("IMX_SIM_SEED must be a number")),
        ],
        Err(_) => {
            let count = std::env::var("IMX_SIM_SEEDS")
                .ok()
                .and_then(|count| count.parse().ok())
                .unwrap_or(SEEDS_DEFAULT);
            (0..count).collect()
        }
    };
    let (mut events, mut crashes, mut rejected, mut statuses) =
        (0, 0, 0, BTreeMap::<String, u64>::new());
    let mut surgery = BTreeMap::<&'static str, u64>::new();
    let mut finales = BTreeMap::<String, u64>::new();
    for &seed in &seeds {
        let run = run_seed(seed).unwrap_or_else(|why| {
            panic!(
                "simulation seed {seed} failed: {why}\nreplay it: {}",
                replay_command(seed)
            )
        });
        let again = run_seed(seed)
            .unwrap_or_else(|why| panic!("seed {seed} failed on its second run: {why}"));
        assert_eq!(
            run.hash,
            again.hash,
            "seed {seed} is not deterministic\nreplay it: {}",
            replay_command(seed)
        );
        events += run.log.len();
        crashes += run.crashes;
        rejected += run.rejected;
        if let Some(last) = run.log.last() {
            *statuses.entry(last.event_type().to_owned()).or_default() += 1;
        }
        for envelope in &run.log {
            if let Event::RunFinalizing(finalizing) = &envelope.event {
                let outcome = serde_json::to_value(finalizing.outcome).unwrap_or_default();
                *finales
                    .entry(outcome.as_str().unwrap_or_default().to_owned())
                    .or_default() += 1;
            }
            let kind = envelope.event_type();
            if matches!(
                kind,
                "run.rewound" | "run.paused" | "run.resumed" | "step.bypassed"
            ) {
                *surgery.entry(kind).or_default() += 1;
            }
        }
    }
    println!(
        "sim: {} seeds, {events} events, {crashes} crashes, {rejected} rejected facts, endings {statuses:?}, surgery {surgery:?}",
        seeds.len()
    );
    // The scenarios must reach every ending, or the simulation tests too little.
    if seeds.len() >= 1_000 {
        for ending in [
            "run.succeeded",
            "run.failed",
            "run.cancelled",
            "run.timed_out",
        ] {
            assert!(
                statuses.contains_key(ending),
                "no seed ended with {ending}: {statuses:?}"
            );
        }
        for outcome in ["succeeded", "failed", "cancelled", "timed_out"] {
            assert!(
                finales.contains_key(outcome),
                "no seed ran `finally:` steps after the main part {outcome}: {finales:?}"
            );
        }
        assert!(
            crashes > 0 && rejected > 0,
            "no crash or no rejected fact was simulated"
        );
        assert_eq!(
            surgery.len(),
            4,
            "every kind of surgery among the faults: {surgery:?}"
        );
    }
}
