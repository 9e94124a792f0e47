//! Retrying a failed run: one `run.retry_requested` fact, after which the
//! core schedules the failed and skipped steps again (same run id; the
//! outputs of steps that succeeded stay).

use chrono::{DateTime, Utc};

use crate::core::event::{Event, RunRetryRequested};
use crate::core::state::{RunState, RunStatus};
use crate::store::{EventStore, RunId};

use super::advance::Advanced;
use super::{Error, Runtime};

impl<S: EventStore> Runtime<S> {
    /// Records `run.retry_requested` on a failed run and settles it.
    pub async fn retry_run(&self, run_id: RunId, by: Option<String>) -> Result<RunState, Error> {
        let facts = move |state: &RunState, now: DateTime<Utc>| {
            if state.status != RunStatus::Failed || state.timed_out {
                return Err(Error::NotRetryable {
                    run_id,
                    status: if state.timed_out {
                        "timed out".to_owned()
                    } else {
                        state.status.as_str().to_owned()
                    },
                });
            }
            Ok(vec![Event::RunRetryRequested(RunRetryRequested {
                at: now,
                by: by.clone(),
            })])
        };
        match self.advance(run_id, facts, None).await? {
            Advanced::Appended(state) => Ok(*state),
            Advanced::Stale(error) => Err(Error::Corrupt {
                what: error.to_string(),
            }),
        }
    }
}
