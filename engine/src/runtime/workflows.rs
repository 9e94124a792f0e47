//! Workflow definitions for the runtime: parsing YAML at run time (all
//! problems at once), registering versions in the store, and loading the
//! exact version a run is pinned to (cached: versions are immutable).

use std::sync::Arc;

use crate::core::dsl;
use crate::core::version::version_of;
use crate::core::workflow::Workflow;
use crate::store::{EventStore, NewWorkflow};

use super::{Error, Runtime};

/// A workflow version now in the registry.
#[derive(Clone, Debug, PartialEq)]
pub struct Registered {
    pub name: String,
    pub version: String,
}

/// Parses and validates `source`; every error diagnostic is in the message
/// as `LINE:COL: error[CODE]: message`.
pub fn parse_source(source: &str) -> Result<(Workflow, String), Error> {
    let parsed = dsl::parse(source);
    match parsed.workflow {
        Some(workflow) if !parsed.has_errors() => {
            let version = version_of(&workflow);
            Ok((workflow, version))
        }
        _ => {
            let diagnostics = parsed
                .diagnostics
                .iter()
                .filter(|diagnostic| diagnostic.is_error())
                .map(|diagnostic| diagnostic.to_string())
                .collect::<Vec<_>>()
                .join("\n");
            Err(Error::InvalidWorkflow { diagnostics })
        }
    }
}

impl<S: EventStore> Runtime<S> {
    /// Parses `source` and registers its version (idempotent).
    pub async fn register_source(&self, source: &str) -> Result<Registered, Error> {
        // Validation is CPU work (bounded by the DSL's limits): off the async workers.
        let owned = source.to_owned();
        let (workflow, version) =
            super::off_workers("validation", move || parse_source(&owned)).await??;
        let model = serde_json::to_value(&workflow).map_err(Error::corrupt)?;
        let record = self
            .store
            .register_workflow(NewWorkflow {
                name: workflow.name.clone(),
                version: version.clone(),
                source: source.to_owned(),
                model,
            })
            .await?;
        self.cache_workflow(&record.name, &record.version, Arc::new(workflow));
        Ok(Registered {
            name: record.name,
            version: record.version,
        })
    }

    /// The workflow `name` at `version` (`None`: the latest), and its version.
    pub async fn workflow(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> Result<(Arc<Workflow>, String), Error> {
        if let Some(version) = version
            && let Some(workflow) = self.cached_workflow(name, version)
        {
            return Ok((workflow, version.to_owned()));
        }
        let record = self
            .store
            .get_workflow(name, version)
            .await?
            .ok_or_else(|| Error::UnknownWorkflow {
                name: name.to_owned(),
                version: version.map(str::to_owned),
            })?;
        // "Latest" must be asked of the store, but its model is immutable:
        // a version seen before is not loaded again.
        if let Some(workflow) = self.cached_workflow(name, &record.version) {
            return Ok((workflow, record.version));
        }
        let workflow: Workflow = serde_json::from_value(record.model).map_err(|error| {
            Error::corrupt(format!(
                "workflow {name} {}: model does not load: {error}",
                record.version
            ))
        })?;
        let workflow = Arc::new(workflow);
        self.cache_workflow(name, &record.version, Arc::clone(&workflow));
        Ok((workflow, record.version))
    }

    fn cached_workflow(&self, name: &str, version: &str) -> Option<Arc<Workflow>> {
        let cache = self.cache.lock().ok()?;
        cache
            .workflows
            .get(&(name.to_owned(), version.to_owned()))
            .cloned()
    }

    fn cache_workflow(&self, name: &str, version: &str, workflow: Arc<Workflow>) {
        if let Ok(mut cache) = self.cache.lock() {
            cache
                .workflows
                .insert((name.to_owned(), version.to_owned()), workflow);
        }
    }
}
