//! Live progress of one run for `imx run --wait`: one line per step with its
//! status and duration, as indicatif spinners on a terminal and as plain
//! lines (one per status change) otherwise. Everything goes to stderr, so
//! `--json` output on stdout stays clean.

use std::collections::HashMap;
use std::time::Duration;

use chrono::TimeDelta;
use engine::core::state::{RunState, StepState, StepStatus};
use engine::store::RunId;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Spinner refresh period on a terminal, in ms.
const SPINNER_TICK_MS: u64 = 100;

#[derive(Debug)]
pub struct Progress {
    terminal: bool,
    run_id: RunId,
    bars: MultiProgress,
    /// Last status shown per step, and its spinner on a terminal.
    shown: HashMap<String, (StepStatus, Option<ProgressBar>)>,
    width: usize,
}

impl Progress {
    pub fn new(terminal: bool, run_id: RunId) -> Progress {
        let target = match terminal {
            true => ProgressDrawTarget::stderr(),
            false => ProgressDrawTarget::hidden(),
        };
        Progress {
            terminal,
            run_id,
            bars: MultiProgress::with_draw_target(target),
            shown: HashMap::new(),
            width: 0,
        }
    }

    /// Shows what changed since the last call.
    pub fn update(&mut self, state: &RunState) {
        self.width = state.steps.keys().map(String::len).max().unwrap_or(0);
        let mut steps: Vec<(&String, &StepState)> = state
            .steps
            .iter()
            .filter(|(_, step)| step.status != StepStatus::Pending)
            .collect();
        steps.sort_by_key(|(id, step)| (step.started_at.or(step.finished_at), (*id).clone()));
        for (id, step) in steps {
            if self
                .shown
                .get(id)
                .is_some_and(|(shown, _)| *shown == step.status)
            {
                continue;
            }
            let line = self.line(id, step);
            if step.status == StepStatus::Waiting {
                let hint = format!("  waiting: imx approve {} {id}", self.run_id);
                self.print(&hint);
            }
            let bar = self.shown.remove(id).and_then(|(_, bar)| bar);
            let bar = match (self.terminal, bar) {
                (false, _) => {
                    eprintln!("{line}");
                    None
                }
                (true, Some(bar)) => Some(bar),
                (true, None) => Some(self.spinner()),
            };
            if let Some(bar) = &bar {
                match step.status.is_terminal() {
                    true => {
                        let style = ProgressStyle::with_template("{prefix} {msg}")
                            .unwrap_or_else(|_| ProgressStyle::default_spinner());
                        bar.set_style(style);
                        bar.set_prefix(mark(step.status));
                        bar.finish_with_message(line);
                    }
                    false => bar.set_message(line),
                }
            }
            self.shown.insert(id.clone(), (step.status, bar));
        }
    }

    /// Leaves the lines shown on a terminal.
    pub fn finish(&mut self) {
        for (_, bar) in self.shown.values() {
            if let Some(bar) = bar
                && !bar.is_finished()
            {
                bar.abandon();
            }
        }
    }

    fn spinner(&self) -> ProgressBar {
        let bar = self.bars.add(ProgressBar::new_spinner());
        let style = ProgressStyle::with_template("{spinner} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        bar.set_style(style);
        bar.enable_steady_tick(Duration::from_millis(SPINNER_TICK_MS));
        bar
    }

    fn print(&self, text: &str) {
        match self.terminal {
            true => {
                let _ = self.bars.println(text);
            }
            false => eprintln!("{text}"),
        }
    }

    fn line(&self, id: &str, step: &StepState) -> String {
        let duration = match (step.started_at, step.finished_at) {
            (Some(start), Some(end)) => duration_text(end - start),
            _ => String::new(),
        };
        let attempts = match (&step.items, step.attempts()) {
            (Some(items), _) if items.len() == 1 => "(1 item) ".to_owned(),
            (Some(items), _) => format!("({} items) ", items.len()),
            (None, 0 | 1) => String::new(),
            (None, n) => format!("({n} attempts) "),
        };
        let reason = match step.status {
            StepStatus::Failed | StepStatus::Skipped | StepStatus::Cancelled => step
                .reason
                .as_deref()
                .map(|reason| format!(" {reason}"))
                .unwrap_or_default(),
            _ => String::new(),
        };
        let width = self.width;
        format!(
            "{id:<width$}  {:<9} {attempts}{duration}{reason}",
            step.status.as_str()
        )
    }
}

/// The mark a finished step's line starts with on a terminal.
fn mark(status: StepStatus) -> &'static str {
    match status {
        StepStatus::Succeeded => "✓",
        StepStatus::Failed => "✗",
        _ => "-",
    }
}

/// `35ms`, `1.2s`, `3m04s`.
pub fn duration_text(delta: TimeDelta) -> String {
    let ms = delta.num_milliseconds().max(0);
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..60_000 => format!("{:.1}s", ms as f64 / 1_000.0),
        _ => format!("{}m{:02}s", ms / 60_000, (ms % 60_000) / 1_000),
    }
}
