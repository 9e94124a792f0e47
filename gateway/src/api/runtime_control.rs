//! The runtime behind the API: [`Control`] for `engine::runtime::Runtime`,
//! converting its errors into the API's codes at the edge.

use engine::runtime::{Error as RuntimeError, Runtime, StartRequest};
use engine::store::Store;
use engine::store::prelude::*;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use serde_json::Value;
use uuid::Uuid;

use super::control::{Control, ControlError, Decision, Started, WorkflowRecord};

fn convert(error: RuntimeError) -> ControlError {
    let message = error.to_string();
    match error {
        RuntimeError::UnknownWorkflow { .. } | RuntimeError::RunNotFound { .. } => {
            ControlError::NotFound(message)
        }
        RuntimeError::InvalidWorkflow { .. }
        | RuntimeError::InvalidInput { .. }
        | RuntimeError::InvalidIdempotencyKey { .. } => ControlError::Invalid(message),
        RuntimeError::RunFinished { .. }
        | RuntimeError::NotRetryable { .. }
        | RuntimeError::NotWaiting { .. }
        | RuntimeError::Contended { .. } => ControlError::Conflict(message),
        RuntimeError::Store(store) => store_error(store),
        _ => ControlError::Internal(message),
    }
}

fn store_error(error: engine::store::Error) -> ControlError {
    use engine::store::Error as E;
    let message = error.to_string();
    match error {
        E::Unavailable { .. } => ControlError::Unavailable(message),
        E::RunNotFound { .. } => ControlError::NotFound(message),
        E::Conflict { .. } | E::IdempotencyKeyTaken { .. } => ControlError::Conflict(message),
        E::PayloadTooLarge { .. } | E::LimitExceeded { .. } => ControlError::Limit(message),
        E::InvalidRequest { .. } => ControlError::Invalid(message),
        _ => ControlError::Internal(message),
    }
}

fn record(record: engine::store::WorkflowRecord) -> WorkflowRecord {
    WorkflowRecord {
        name: record.name,
        version: record.version,
        source: record.source,
        registered_at: record.registered_at,
    }
}

/// `step` or `step/INDEX`, as the runtime names one execution.
fn execution_name(decision: &Decision) -> String {
    match decision.index {
        Some(index) => format!("{}/{index}", decision.step),
        None => decision.step.clone(),
    }
}

impl Control for Runtime<Store> {
    fn list_workflows(&self) -> BoxFuture<'_, Result<Vec<WorkflowRecord>, ControlError>> {
        async move {
            let records = self.store().list_workflows().await.map_err(store_error)?;
            Ok(records.into_iter().map(record).collect())
        }
        .boxed()
    }

    fn get_workflow<'a>(
        &'a self,
        name: &'a str,
        version: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Option<WorkflowRecord>, ControlError>> {
        async move {
            let found = self
                .store()
                .get_workflow(name, version)
                .await
                .map_err(store_error)?;
            Ok(found.map(record))
        }
        .boxed()
    }

    fn register_workflow<'a>(
        &'a self,
        source: &'a str,
    ) -> BoxFuture<'a, Result<WorkflowRecord, ControlError>> {
        async move {
            let registered = self.register_source(source).await.map_err(convert)?;
            let found = self
                .store()
                .get_workflow(&registered.name, Some(&registered.version))
                .await
                .map_err(store_error)?;
            found
                .map(record)
                .ok_or_else(|| ControlError::Internal("a registered workflow vanished".to_owned()))
        }
        .boxed()
    }

    fn start_run<'a>(
        &'a self,
        workflow: &'a str,
        version: Option<&'a str>,
        input: Value,
        idempotency_key: Option<String>,
    ) -> BoxFuture<'a, Result<Started, ControlError>> {
        async move {
            let started = Runtime::start_run(
                self,
                StartRequest {
                    workflow: workflow.to_owned(),
                    version: version.map(str::to_owned),
                    input,
                    idempotency_key,
                },
            )
            .await
            .map_err(convert)?;
            Ok(Started {
                run_id: started.run_id,
                created: !started.existing,
            })
        }
        .boxed()
    }

    fn cancel_run<'a>(
        &'a self,
        run_id: Uuid,
        by: &'a str,
        reason: Option<String>,
    ) -> BoxFuture<'a, Result<(), ControlError>> {
        async move {
            Runtime::cancel_run(self, run_id, Some(by.to_owned()), reason)
                .await
                .map_err(convert)?;
            Ok(())
        }
        .boxed()
    }

    fn retry_run<'a>(
        &'a self,
        run_id: Uuid,
        by: &'a str,
    ) -> BoxFuture<'a, Result<(), ControlError>> {
        async move {
            Runtime::retry_run(self, run_id, Some(by.to_owned()))
                .await
                .map_err(convert)?;
            Ok(())
        }
        .boxed()
    }

    fn approve(&self, decision: Decision) -> BoxFuture<'_, Result<(), ControlError>> {
        async move {
            Runtime::approve(
                self,
                decision.run_id,
                &execution_name(&decision),
                &decision.by,
                decision.comment.clone(),
            )
            .await
            .map_err(convert)?;
            Ok(())
        }
        .boxed()
    }

    fn reject(&self, decision: Decision) -> BoxFuture<'_, Result<(), ControlError>> {
        async move {
            Runtime::reject(
                self,
                decision.run_id,
                &execution_name(&decision),
                &decision.by,
                decision.comment.clone(),
            )
            .await
            .map_err(convert)?;
            Ok(())
        }
        .boxed()
    }

    fn append_timings(&self) -> Option<tokio::sync::broadcast::Receiver<std::time::Duration>> {
        Some(Runtime::append_timings(self))
    }
}
