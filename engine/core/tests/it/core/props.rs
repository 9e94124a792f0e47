//! Properties over random valid DAGs (proptest): when every step succeeds,
//! the run succeeds, each step succeeds exactly once, no step is scheduled
//! before all of its needs succeeded, and replay gives the live state.

use std::collections::BTreeMap;

use imx_core::event::Event;
use imx_core::state::{RunStatus, StepStatus};
use imx_core::workflow::{StepKind, Workflow};
use imx_core::{Secrets, replay};
use proptest::prelude::*;
use serde_json::json;
use testkit::histories::{step, workflow};

use super::driver::{Driver, Obedient};

/// For each step `i`, the earlier steps it needs (as bit choices) and its kind.
fn dag() -> impl Strategy<Value = Workflow> {
    prop::collection::vec((prop::collection::vec(any::<bool>(), 0..12), 0..3u8), 1..14).prop_map(
        |nodes| {
            let steps = nodes
                .iter()
                .enumerate()
                .map(|(i, (picks, kind))| {
                    let needs: Vec<String> = picks
                        .iter()
                        .take(i)
                        .enumerate()
                        .filter(|(_, pick)| **pick)
                        .map(|(j, _)| format!("s{j:02}"))
                        .collect();
                    let kind = [StepKind::Noop, StepKind::Http, StepKind::Agent][*kind as usize];
                    let mut s = step(&format!("s{i:02}"), kind).with(json!({"i": i}));
                    s.needs = needs;
                    s
                })
                .collect();
            workflow("dag", steps)
        },
    )
}

proptest! {
    #[test]
    fn all_steps_succeeding_means_the_run_succeeds_in_needs_order(flow in dag()) {
        let mut driver = Driver::new(&flow, Secrets::none());
        prop_assert_eq!(driver.run(json!({}), &mut Obedient), Ok(()));
        prop_assert_eq!(driver.state.status, RunStatus::Succeeded);
        let mut succeeded_at = BTreeMap::<String, u64>::new();
        for envelope in &driver.log {
            match &envelope.event {
                Event::StepScheduled(scheduled) => {
                    for need in &flow.steps[&scheduled.step].needs {
                        prop_assert!(
                            succeeded_at.contains_key(need),
                            "{} scheduled before its need {} succeeded", scheduled.step, need
                        );
                    }
                }
                Event::StepSucceeded(done) => {
                    prop_assert!(succeeded_at.insert(done.step.clone(), envelope.seq).is_none(), "{} succeeded twice", done.step);
                }
                _ => {}
            }
        }
        prop_assert_eq!(succeeded_at.len(), flow.steps.len());
        for id in flow.steps.keys() {
            prop_assert_eq!(driver.state.step_status(id), StepStatus::Succeeded);
        }
        prop_assert_eq!(replay(&driver.log).ok(), Some(driver.state.clone()));
    }
}
