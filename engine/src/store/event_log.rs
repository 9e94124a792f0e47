//! The [`EventLog`] trait: appending transitions (events, projection rows
//! and work in one transaction) and rebuilding the read models from the
//! log. Reading the log is [`LogReader`](super::LogReader).

use std::future::Future;

use super::error::Error;
use super::read_models::ReadModels;
use super::types::*;

/// Writing the append-only, hash-chained log of every run's events.
pub trait EventLog: Send + Sync {
    /// Appends many runs' transitions in ONE transaction (group commit).
    /// The outer error fails the whole batch (nothing written); the inner
    /// results are per request: a request that conflicts, lost its lease or
    /// reuses a taken idempotency key is left out, the others are written.
    fn append_batch(
        &self,
        requests: Vec<AppendRequest>,
    ) -> impl Future<Output = Result<Vec<Result<Appended, Error>>, Error>> + Send;

    /// Appends one run's transition; see [`AppendRequest`].
    fn append(
        &self,
        request: AppendRequest,
    ) -> impl Future<Output = Result<Appended, Error>> + Send {
        async move {
            let mut results = self.append_batch(vec![request]).await?;
            results
                .pop()
                .unwrap_or_else(|| Err(Error::corrupt("an append produced no result")))
        }
    }

    /// Starts a run (`expected_seq` 0). When the run row's idempotency key
    /// already names a run, returns that run and writes nothing.
    fn start_run(
        &self,
        request: AppendRequest,
    ) -> impl Future<Output = Result<StartOutcome, Error>> + Send
    where
        Self: ReadModels,
    {
        async move {
            if request.expected_seq != 0 {
                return Err(Error::invalid("a run starts at expected_seq 0"));
            }
            match self.append(request).await {
                Ok(appended) => Ok(StartOutcome::Started(appended)),
                Err(Error::IdempotencyKeyTaken { run_id, .. }) => match self.get_run(run_id).await?
                {
                    Some(existing) => Ok(StartOutcome::Existing(Box::new(existing))),
                    None => Err(Error::RunNotFound { run_id }),
                },
                Err(error) => Err(error),
            }
        }
    }

    /// Replaces the runs and steps read models with what `fold` computes
    /// from each run's full stream, in one transaction that holds off appends.
    fn rebuild_projections<F>(
        &self,
        fold: F,
    ) -> impl Future<Output = Result<RebuildStats, Error>> + Send
    where
        F: FnMut(&[RecordedEvent]) -> ProjectionUpdate + Send;
}
