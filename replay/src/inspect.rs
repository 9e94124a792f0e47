//! `imx replay inspect`: the state of one run as of a seq, folded with the
//! core's own `RunState::apply` (no second implementation), and a readable
//! timeline with the waits and run times between an attempt's events.

use std::collections::HashMap;
use std::io::BufRead;

use chrono::{DateTime, Utc};
use engine::chain::RecordedEvent;
use engine::core::event::EventEnvelope;
use engine::core::state::RunState;
use engine::core::surgery::attribution;
use engine::store::prelude::*;
use serde::Serialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::Error;
use crate::format::{LINE_BYTES_MAX, Line};

/// Events read from the store per page.
pub const INSPECT_PAGE_EVENTS: u32 = 1_000;

/// One event of the timeline.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TimelineEntry {
    pub seq: u64,
    /// When the fact was decided (the payload's `at`).
    pub at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    pub event_type: String,
    pub step: Option<String>,
    pub index: Option<u64>,
    pub attempt: Option<u64>,
    /// `queued 120ms`, `ran 3s`, `retry in 2s`…
    pub note: Option<String>,
}

/// A run as of one seq.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Inspection {
    pub run_id: Uuid,
    pub seq: u64,
    pub state: RunState,
    pub timeline: Vec<TimelineEntry>,
}

impl Inspection {
    /// `--json`: the run document of DESIGN.md, the full folded state and the timeline.
    pub fn to_json(&self) -> Value {
        json!({
            "run_id": self.run_id,
            "seq": self.seq,
            "document": self.state.document(),
            "state": self.state,
            "timeline": self.timeline,
        })
    }

    /// The text form: the run, its steps, and the timeline table.
    pub fn render(&self) -> String {
        let state = &self.state;
        let mut text = format!(
            "run {} of {} ({})\nas of seq {}: {}\n",
            self.run_id,
            state.workflow,
            state.version,
            self.seq,
            state.status.as_str()
        );
        if let Some(failure) = &state.failure {
            text.push_str(&format!("failure: {failure}\n"));
        }
        text.push_str("\nsteps:\n");
        for (id, step) in &state.steps {
            let reason = step
                .reason
                .as_deref()
                .map(|r| format!("  ({r})"))
                .unwrap_or_default();
            text.push_str(&format!(
                "  {id:<20} {:<10} attempts {}{reason}\n",
                step.status.as_str(),
                step.attempts()
            ));
        }
        text.push_str(&format!(
            "\n{:>5}  {:<27}  {:<21}  {:<20}  {:>7}  {}\n",
            "seq", "at", "event", "step", "attempt", "note"
        ));
        for entry in &self.timeline {
            let step = match (&entry.step, entry.index) {
                (Some(step), Some(index)) => format!("{step}[{index}]"),
                (Some(step), None) => step.clone(),
                _ => String::new(),
            };
            let attempt = entry.attempt.map(|a| a.to_string()).unwrap_or_default();
            let at = engine::chain::format_recorded_at(entry.at);
            let note = entry.note.as_deref().unwrap_or("");
            let row = format!(
                "{:>5}  {at:<27}  {:<21}  {step:<20}  {attempt:>7}  {note}",
                entry.seq, entry.event_type
            );
            text.push_str(row.trim_end());
            text.push('\n');
        }
        text
    }
}

/// (step, index, attempt).
type AttemptKey = (String, Option<u64>, Option<u64>);
/// When an attempt was scheduled and started.
type AttemptTimes = (DateTime<Utc>, Option<DateTime<Utc>>);

/// Folds one run's events up to `at` (the last one when `None`).
#[derive(Debug)]
pub struct Inspector {
    run_id: Uuid,
    at: Option<u64>,
    state: RunState,
    timeline: Vec<TimelineEntry>,
    attempts: HashMap<AttemptKey, AttemptTimes>,
}

impl Inspector {
    pub fn new(run_id: Uuid, at: Option<u64>) -> Self {
        Inspector {
            run_id,
            at,
            state: RunState::new(),
            timeline: Vec::new(),
            attempts: HashMap::new(),
        }
    }

    /// True once `at` is reached: later events are not needed.
    pub fn done(&self) -> bool {
        self.at.is_some_and(|at| self.state.seq >= at)
    }

    /// Applies the run's next event (events of other runs are ignored).
    pub fn push(&mut self, event: &RecordedEvent) -> Result<(), Error> {
        if event.run_id != self.run_id || self.done() {
            return Ok(());
        }
        let envelope = EventEnvelope::from_stored(
            event.run_id,
            event.seq,
            &event.event_type,
            event.schema_version,
            &event.payload,
        )
        .map_err(|source| Error::Event {
            run_id: event.run_id,
            seq: event.seq,
            source,
        })?;
        self.state.apply(&envelope)?;
        let entry = self.entry(event, envelope.event.at());
        self.timeline.push(entry);
        Ok(())
    }

    fn entry(&mut self, event: &RecordedEvent, at: DateTime<Utc>) -> TimelineEntry {
        let payload = &event.payload;
        let step = payload
            .get("step")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let index = payload.get("index").and_then(Value::as_u64);
        let attempt = payload.get("attempt").and_then(Value::as_u64);
        let note = operator_note(&event.event_type, payload).or_else(|| {
            step.as_ref().and_then(|step| {
                self.note(
                    &event.event_type,
                    (step.clone(), index, attempt),
                    at,
                    payload,
                )
            })
        });
        TimelineEntry {
            seq: event.seq,
            at,
            recorded_at: event.recorded_at,
            event_type: event.event_type.clone(),
            step,
            index,
            attempt,
            note,
        }
    }

    fn note(
        &mut self,
        event_type: &str,
        key: AttemptKey,
        at: DateTime<Utc>,
        payload: &Value,
    ) -> Option<String> {
        match event_type {
            "step.scheduled" => {
                self.attempts.insert(key, (at, None));
                None
            }
            "step.started" => {
                let entry = self.attempts.get_mut(&key)?;
                entry.1 = Some(at);
                Some(format!("queued {}", span(entry.0, at)))
            }
            "step.succeeded" | "step.failed" => {
                let (scheduled, started) = self.attempts.remove(&key)?;
                Some(format!("ran {}", span(started.unwrap_or(scheduled), at)))
            }
            "step.retry_scheduled" => {
                let fire_at = payload.get("fire_at").and_then(Value::as_str)?;
                let fire_at = DateTime::parse_from_rfc3339(fire_at)
                    .ok()?
                    .with_timezone(&Utc);
                Some(format!("retry in {}", span(at, fire_at)))
            }
            _ => None,
        }
    }

    pub fn finish(self) -> Result<Inspection, Error> {
        if self.state.seq == 0 {
            return Err(Error::RunNotFound {
                run_id: self.run_id,
            });
        }
        if let Some(at) = self.at
            && at > self.state.seq
        {
            return Err(Error::AtBeyondEnd {
                run_id: self.run_id,
                at,
                last: self.state.seq,
            });
        }
        Ok(Inspection {
            run_id: self.run_id,
            seq: self.state.seq,
            state: self.state,
            timeline: self.timeline,
        })
    }
}

/// Who changed the run and why, for the events an operator asks for (run
/// surgery, cancel) and where a fork's outputs came from.
fn operator_note(event_type: &str, payload: &Value) -> Option<String> {
    let text = |value: &Value, key: &str| value.get(key).and_then(Value::as_str).map(str::to_owned);
    let attributed = |value: &Value| match (text(value, "by"), text(value, "reason")) {
        (Some(by), Some(reason)) => Some(attribution(&by, &reason)),
        (Some(by), None) => Some(format!("by {by}")),
        (None, reason) => reason,
    };
    match event_type {
        "run.rewound"
        | "run.paused"
        | "run.resumed"
        | "step.bypassed"
        | "run.cancel_requested"
        | "run.retry_requested" => attributed(payload),
        "run.started" => {
            let fork = payload.get("fork")?;
            let (source, step) = (text(fork, "run_id")?, text(fork, "step")?);
            let why = attributed(fork).map_or_else(String::new, |why| format!(", {why}"));
            Some(format!("fork of {source} at {step}{why}"))
        }
        "step.adopted" => Some(format!("taken over from {}", text(payload, "from_run")?)),
        _ => None,
    }
}

/// `1.5s`, `120ms`, `2m03s`.
fn span(from: DateTime<Utc>, to: DateTime<Utc>) -> String {
    let ms = (to - from).num_milliseconds();
    match ms {
        ..1_000 => format!("{ms}ms"),
        1_000..60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        _ => format!("{}m{:02}s", ms / 60_000, (ms % 60_000) / 1000),
    }
}

/// Inspects a run from the store, reading only up to `at`.
pub async fn inspect_store<S: EventStore>(
    store: &S,
    run_id: Uuid,
    at: Option<u64>,
) -> Result<Inspection, Error> {
    let mut inspector = Inspector::new(run_id, at);
    let mut after_seq = 0;
    while !inspector.done() {
        let page = store
            .read_stream(run_id, after_seq, INSPECT_PAGE_EVENTS)
            .await?;
        let Some(last) = page.last() else { break };
        after_seq = last.seq;
        for event in &page {
            inspector.push(event)?;
        }
    }
    inspector.finish()
}

/// Inspects a run from an export file. The file is not verified here: run
/// `imx replay verify` on it first.
pub fn inspect_reader(
    mut reader: impl BufRead,
    run_id: Uuid,
    at: Option<u64>,
) -> Result<Inspection, Error> {
    let mut inspector = Inspector::new(run_id, at);
    let mut buffer = String::new();
    let mut number = 0;
    while !inspector.done() {
        buffer.clear();
        number += 1;
        let limit = u64::try_from(LINE_BYTES_MAX).unwrap_or(u64::MAX);
        if std::io::Read::take(&mut reader, limit).read_line(&mut buffer)? == 0 {
            break;
        }
        let malformed = |detail: String| {
            Error::Export(crate::verify::Problem {
                run_id: None,
                seq: None,
                position: None,
                line: Some(number),
                fault: Box::new(crate::verify::Fault::Malformed {
                    line: number,
                    detail,
                }),
            })
        };
        match Line::parse(buffer.trim_end()) {
            Ok(Line::Event(line)) if line.run_id == run_id => {
                let event = line
                    .into_recorded()
                    .map_err(|value| malformed(format!("recorded_at {value:?}")))?;
                inspector.push(&event)?;
            }
            Ok(_) => {}
            Err(error) => return Err(malformed(error.to_string())),
        }
    }
    inspector.finish()
}
