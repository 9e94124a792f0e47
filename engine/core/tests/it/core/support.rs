//! Renders logs and decisions as short text for snapshots: one line per
//! event, times as offsets from the history's start, `at` left out.

use imx_core::{Decision, Effect, Event, EventEnvelope};
use serde_json::Value;
use testkit::histories::t0;

/// One line per event: `seq type {payload without at}`.
pub fn render_log(events: &[EventEnvelope]) -> String {
    events
        .iter()
        .map(|envelope| format!("{} {}\n", envelope.seq, render_event(&envelope.event)))
        .collect()
}

/// Events then effects, one per line.
pub fn render_decision(decision: &Decision) -> String {
    let mut text = String::new();
    for event in &decision.events {
        text.push_str(&format!("event {}\n", render_event(event)));
    }
    for effect in &decision.effects {
        text.push_str(&format!("effect {}\n", render_effect(effect)));
    }
    if text.is_empty() {
        text.push_str("(nothing)\n");
    }
    text
}

pub fn render_event(event: &Event) -> String {
    let (event_type, _, payload) = event.to_payload();
    let mut payload = relative_times(payload);
    if let Value::Object(fields) = &mut payload {
        fields.remove("at");
        fields.retain(|_, value| !value.is_null());
    }
    format!("{event_type} {payload}")
}

pub fn render_effect(effect: &Effect) -> String {
    match effect {
        Effect::ScheduleStep {
            step,
            kind,
            index,
            attempt,
            input,
            deadline,
            ..
        } => format!(
            "ScheduleStep {kind} {step}{} #{attempt} input={input}{}",
            index.map(|i| format!("/{i}")).unwrap_or_default(),
            deadline
                .map(|d| format!(" deadline={}", offset(d)))
                .unwrap_or_default()
        ),
        Effect::StartTimer { id, fire_at } => format!("StartTimer {id} at {}", offset(*fire_at)),
        Effect::RequestApproval { key, request, .. } => {
            format!("RequestApproval {key} request={request}")
        }
        Effect::StartChildRun {
            child_run_id,
            workflow,
            input,
            parent,
        } => {
            format!(
                "StartChildRun {workflow} {child_run_id} input={input} parent={}",
                parent.step_key
            )
        }
        other => format!("{other:?}"),
    }
}

fn offset(time: chrono::DateTime<chrono::Utc>) -> String {
    format!("+{}ms", (time - t0()).num_milliseconds())
}

/// Replaces RFC 3339 times with `+<ms>ms` offsets from [`t0`].
fn relative_times(value: Value) -> Value {
    match value {
        Value::String(text) => match chrono::DateTime::parse_from_rfc3339(&text) {
            Ok(time) => Value::String(offset(time.with_timezone(&chrono::Utc))),
            Err(_) => Value::String(text),
        },
        Value::Array(items) => Value::Array(items.into_iter().map(relative_times).collect()),
        Value::Object(fields) => Value::Object(
            fields
                .into_iter()
                .map(|(key, value)| (key, relative_times(value)))
                .collect(),
        ),
        other => other,
    }
}

/// One terse line per event: `seq type step[/index][#attempt] {rest}`.
pub fn render_brief(events: &[EventEnvelope]) -> String {
    let mut text = String::new();
    for envelope in events {
        let (event_type, _, payload) = envelope.event.to_payload();
        let Value::Object(mut fields) = relative_times(payload) else {
            continue;
        };
        for noise in [
            "at",
            "idempotency_key",
            "steps",
            "version",
            "workflow",
            "max_attempts",
            "child_run_id",
        ] {
            fields.remove(noise);
        }
        fields.retain(|_, value| !value.is_null());
        let mut subject = String::new();
        if let Some(Value::String(step)) = fields.remove("step") {
            subject.push_str(&format!(" {step}"));
        }
        if let Some(index) = fields.remove("index") {
            subject.push_str(&format!("/{index}"));
        }
        if let Some(attempt) = fields.remove("attempt") {
            subject.push_str(&format!("#{attempt}"));
        }
        let rest = if fields.is_empty() {
            String::new()
        } else {
            format!(" {}", Value::Object(fields))
        };
        text.push_str(&format!("{} {event_type}{subject}{rest}\n", envelope.seq));
    }
    text
}
