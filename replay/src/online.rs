//! The audit commands against a live store: verify the whole log in pages,
//! and find the runs in flight that a new workflow version would take over.

use engine::chain::LogHead;
use engine::core::state::RunState;
use engine::core::version::version_of;
use engine::core::workflow::Workflow;
use engine::store::RunQuery;
use engine::store::prelude::*;

use crate::Error;
use crate::check::{RunCheck, compatibility, removed_steps};
use crate::format::Scope;
use crate::inspect::inspect_store;
use crate::verify::{Options, Problem, Summary, Verifier};

/// Events read per page while verifying the store.
pub const VERIFY_PAGE_EVENTS: u32 = 1_000;
/// Runs listed per page while looking for runs in flight.
pub const CHECK_PAGE_RUNS: u32 = 100;

/// Verifies the store's whole log from genesis: every run chain, the log
/// chain, every payload's schema. `Ok(Err(problem))`: the log is damaged.
pub async fn verify_store<S: EventStore>(
    store: &S,
    options: Options,
) -> Result<Result<Summary, Problem>, Error> {
    let mut verifier = Verifier::new(Scope::default(), LogHead::genesis(), options);
    if let Err(problem) = verifier.check_start() {
        return Ok(Err(problem));
    }
    let end = store.log_head().await?;
    let mut after = 0;
    while after < end.position {
        let page = store.read_log(after, VERIFY_PAGE_EVENTS).await?;
        let Some(last) = page.last() else { break };
        after = last.position;
        for event in page.iter().filter(|event| event.position <= end.position) {
            if let Err(problem) = verifier.event(event) {
                return Ok(Err(problem));
            }
        }
    }
    Ok(verifier.finish())
}

/// Every run of `new.name` that is not finished and is pinned to another
/// version, with what keeps `new` from taking it over. The old model comes
/// from the store's workflow registry; `fallback` (e.g. `--old FILE`) serves
/// runs whose version the registry lacks. Without either, only removed
/// steps are checked.
pub async fn check_runs<S: EventStore>(
    store: &S,
    new: &Workflow,
    fallback: Option<&Workflow>,
) -> Result<Vec<RunCheck>, Error> {
    let new_version = version_of(new);
    let fallback = fallback.map(|workflow| (version_of(workflow), workflow));
    let mut checks = Vec::new();
    let mut query = RunQuery {
        workflow: Some(new.name.clone()),
        limit: CHECK_PAGE_RUNS,
        ..RunQuery::default()
    };
    loop {
        let page = store.list_runs(&query).await?;
        for record in &page.items {
            let row = &record.row;
            if row.version == new_version || is_finished(&row.status) {
                continue;
            }
            let state = inspect_store(store, row.run_id, None).await?.state;
            if state.is_finished() {
                continue;
            }
            let old = match registered(store, &row.workflow, &row.version).await? {
                Some(old) => Some(old),
                None => fallback
                    .as_ref()
                    .filter(|(version, _)| *version == row.version)
                    .map(|(_, old)| (*old).clone()),
            };
            checks.push(run_check(&state, new, old));
        }
        match page.next {
            Some(next) => query.after = Some(next),
            None => return Ok(checks),
        }
    }
}

/// The registered model of `name` at `version`, if any.
async fn registered<S: EventStore>(
    store: &S,
    name: &str,
    version: &str,
) -> Result<Option<Workflow>, Error> {
    let Some(record) = store.get_workflow(name, Some(version)).await? else {
        return Ok(None);
    };
    serde_json::from_value(record.model)
        .map(Some)
        .map_err(|error| Error::Registry {
            name: name.to_owned(),
            version: version.to_owned(),
            detail: error.to_string(),
        })
}

fn is_finished(status: &str) -> bool {
    matches!(status, "succeeded" | "failed" | "cancelled")
}

fn run_check(state: &RunState, new: &Workflow, old: Option<Workflow>) -> RunCheck {
    let incompatibilities = match &old {
        Some(old) => compatibility(old, new, state),
        None => removed_steps(new, state),
    };
    RunCheck {
        run_id: state.run_id.unwrap_or_default(),
        version: state.version.clone(),
        status: state.status.as_str().to_owned(),
        seq: state.seq,
        old_model_known: old.is_some(),
        incompatibilities,
    }
}
