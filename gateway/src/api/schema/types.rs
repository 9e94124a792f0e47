//! The GraphQL output types and their conversion from engine types at the
//! edge (STYLE.md rule 5: only the gateway knows wire formats).

use async_graphql::{ComplexObject, Context, Enum, Json, Object, SimpleObject, Union};
use chrono::{DateTime, Utc};
use engine::core::state::{RunState, StepState};
use engine::store::prelude::*;
use engine::store::{RecordedEvent, RunRecord};
use serde_json::Value;
use std::sync::Arc;

use super::{ApiContext, cursor};
use crate::api::error::ApiError;
use engine::store::WorkflowRecord;

#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
pub enum RunStatus {
    Pending,
    Running,
    Waiting,
    /// An operator paused it (`pauseRun`); `resumeRun` goes on.
    Paused,
    Succeeded,
    Failed,
    Cancelled,
}

impl RunStatus {
    pub fn parse(text: &str) -> Option<RunStatus> {
        Some(match text {
            "pending" => RunStatus::Pending,
            "running" => RunStatus::Running,
            "waiting" => RunStatus::Waiting,
            "paused" => RunStatus::Paused,
            "succeeded" => RunStatus::Succeeded,
            "failed" => RunStatus::Failed,
            "cancelled" => RunStatus::Cancelled,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Pending => "pending",
            RunStatus::Running => "running",
            RunStatus::Waiting => "waiting",
            RunStatus::Paused => "paused",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        }
    }
}

#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
pub enum StepStatus {
    Pending,
    Running,
    Waiting,
    Succeeded,
    Failed,
    Skipped,
    Cancelled,
}

impl StepStatus {
    fn parse(text: &str) -> StepStatus {
        match text {
            "running" => StepStatus::Running,
            "waiting" => StepStatus::Waiting,
            "succeeded" => StepStatus::Succeeded,
            "failed" => StepStatus::Failed,
            "skipped" => StepStatus::Skipped,
            "cancelled" => StepStatus::Cancelled,
            _ => StepStatus::Pending,
        }
    }
}

/// Relay page information.
#[derive(SimpleObject, Clone, Debug, Default)]
pub struct PageInfo {
    pub has_next_page: bool,
    pub has_previous_page: bool,
    pub start_cursor: Option<String>,
    pub end_cursor: Option<String>,
}

/// Most ids `Run.steps(ids:)` takes (a workflow's step limit).
pub const STEPS_BY_ID_MAX: usize = engine::core::dsl::STEPS_MAX;

/// Most forks `Run.forks` lists.
pub const FORKS_LISTED_MAX: u32 = 100;

/// A workflow run, as its read model has it; details come from its log.
#[derive(Debug)]
pub struct Run(pub RunRecord);

impl Run {
    /// One field of the run's `run.started` event's payload.
    async fn started_field(
        &self,
        ctx: &Context<'_>,
        field: &str,
    ) -> async_graphql::Result<Option<Json<Value>>> {
        let api = ctx.data::<ApiContext>()?;
        let first = api
            .store
            .read_stream(self.0.row.run_id, 0, 1)
            .await
            .map_err(ApiError::from)?;
        Ok(first
            .first()
            .and_then(|started| started.payload.get(field).cloned())
            .map(Json))
    }

    /// The run's state after its last event (bounded by
    /// `history_events_max`): this node's kept fold, caught up with the log.
    async fn folded(&self, ctx: &Context<'_>) -> async_graphql::Result<Arc<RunState>> {
        let api = ctx.data::<ApiContext>()?;
        Ok(api
            .states
            .current(&api.store, self.0.row.run_id, api.limits.history_events_max)
            .await?)
    }
}

#[Object]
impl Run {
    async fn id(&self) -> async_graphql::ID {
        async_graphql::ID(self.0.row.run_id.to_string())
    }
    async fn workflow(&self) -> &str {
        &self.0.row.workflow
    }
    /// The pinned workflow version (`sha256:…`).
    async fn version(&self) -> &str {
        &self.0.row.version
    }
    async fn status(&self) -> RunStatus {
        RunStatus::parse(&self.0.row.status).unwrap_or(RunStatus::Pending)
    }
    async fn input(&self) -> Json<Value> {
        Json(self.0.row.input.clone())
    }
    async fn output(&self) -> Option<Json<Value>> {
        self.0.row.output.clone().map(Json)
    }
    async fn error(&self) -> Option<&str> {
        self.0.row.error.as_deref()
    }
    async fn parent_run_id(&self) -> Option<async_graphql::ID> {
        self.0
            .row
            .parent_run_id
            .map(|id| async_graphql::ID(id.to_string()))
    }
    async fn idempotency_key(&self) -> Option<&str> {
        self.0.row.idempotency_key.as_deref()
    }
    /// The run this one was forked from (`forkRun`); who forked it, at
    /// which step and why are in its `run.started` event (`fork`).
    async fn forked_from(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Run>> {
        let Some(source) = self.0.row.forked_from else {
            return Ok(None);
        };
        let api = ctx.data::<ApiContext>()?;
        let record = api.store.get_run(source).await.map_err(ApiError::from)?;
        Ok(record.map(Run))
    }
    /// The runs forked from this one, oldest first (at most `FORKS_LISTED_MAX`, 100).
    #[graphql(complexity = "10 * child_complexity")]
    async fn forks(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Run>> {
        let api = ctx.data::<ApiContext>()?;
        let forks = api
            .store
            .list_forks(self.0.row.run_id, FORKS_LISTED_MAX)
            .await
            .map_err(ApiError::from)?;
        Ok(forks.into_iter().map(Run).collect())
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.row.created_at
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.row.updated_at
    }
    /// Seq of the run's last event.
    async fn last_seq(&self) -> u64 {
        self.0.last_seq
    }
    /// What started the run, from its `run.started` event: `{kind: "cron",
    /// trigger, scheduled_at}`, `{kind: "webhook", trigger, delivery}` or
    /// `{kind: "kafka", trigger, topic, partition, offset}`; null for runs
    /// started through the API, the CLI or a parent run.
    #[graphql(complexity = 5)]
    async fn trigger(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Json<Value>>> {
        self.started_field(ctx, "trigger").await
    }
    /// Where a forked run came from, from its `run.started` event:
    /// `{run_id, step, by, reason}` (the source run, the step run again with
    /// everything downstream of it, who forked it and why); null for a run
    /// that was not forked.
    #[graphql(complexity = 5)]
    async fn fork(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Json<Value>>> {
        if self.0.row.forked_from.is_none() {
            return Ok(None);
        }
        self.started_field(ctx, "fork").await
    }
    /// Every step, in step id order, folded from the run's log; only the
    /// steps named in `ids` when given (ids the run lacks are left out), so
    /// a live client asks again for just the steps new events named.
    #[graphql(complexity = "10 * child_complexity")]
    async fn steps(
        &self,
        ctx: &Context<'_>,
        ids: Option<Vec<String>>,
    ) -> async_graphql::Result<Vec<Step>> {
        let state = self.folded(ctx).await?;
        Ok(match ids {
            None => Step::all(&state),
            Some(ids) => {
                if ids.len() > STEPS_BY_ID_MAX {
                    return Err(ApiError::limit(format!(
                        "steps takes at most {STEPS_BY_ID_MAX} ids"
                    ))
                    .into());
                }
                ids.iter().filter_map(|id| Step::of(&state, id)).collect()
            }
        })
    }
    /// One step by id; NOT_FOUND when the workflow has no such step.
    async fn step(&self, ctx: &Context<'_>, id: String) -> async_graphql::Result<Step> {
        let state = self.folded(ctx).await?;
        Ok(Step::of(&state, &id).ok_or_else(|| {
            ApiError::not_found(format!("run {} has no step {id:?}", self.0.row.run_id))
        })?)
    }
    /// The run's events in seq order, paginated: `first` events after
    /// `after`, or the `last` events before `before` (`last` alone: the
    /// newest). Seqs are gap-free, so any page is one indexed read.
    #[graphql(complexity = "first.or(last).unwrap_or(20).max(0) as usize * child_complexity")]
    async fn events(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> async_graphql::Result<RunEventConnection> {
        let api = ctx.data::<ApiContext>()?;
        let backward = last.is_some() || before.is_some();
        if backward && (first.is_some() || after.is_some()) {
            return Err(ApiError::validation(
                "page with `first`/`after` or with `last`/`before`, not both",
            )
            .into());
        }
        let decode = |text: Option<String>| text.as_deref().map(cursor::decode_event).transpose();
        let (after_seq, count) = if backward {
            let size = api.page_size(last)?;
            let before_seq = decode(before)?.unwrap_or(self.0.last_seq + 1);
            let from = before_seq.saturating_sub(u64::from(size)).max(1);
            (from - 1, before_seq.saturating_sub(from) as u32)
        } else {
            (decode(after)?.unwrap_or(0), api.page_size(first)?)
        };
        let mut events = api
            .store
            .read_stream(self.0.row.run_id, after_seq, count + 1)
            .await
            .map_err(ApiError::from)?;
        let has_more = events.len() > count as usize;
        events.truncate(count as usize);
        let edges: Vec<RunEventEdge> = events
            .into_iter()
            .map(|event| RunEventEdge {
                cursor: cursor::encode_event(event.seq),
                node: RunEvent(event),
            })
            .collect();
        Ok(RunEventConnection {
            page_info: PageInfo {
                has_next_page: has_more,
                has_previous_page: after_seq > 0,
                start_cursor: edges.first().map(|edge| edge.cursor.clone()),
                end_cursor: edges.last().map(|edge| edge.cursor.clone()),
            },
            edges,
        })
    }
}

/// One execution of a step: the step itself, or one item of a `for_each`.
#[derive(SimpleObject, Clone, Debug)]
pub struct StepExecution {
    /// The item's index for a `for_each` step; 0 for a plain step.
    pub index: u32,
    /// `pending`, `scheduled`, `running`, `waiting`, `retry_pending`,
    /// `retry_waiting`, `succeeded`, `failed`, `cancelled`, `skipped`.
    pub status: String,
    /// The current (or last) attempt number.
    pub attempt: u32,
    pub max_attempts: u32,
    pub idempotency_key: Option<String>,
    /// The rendered input of the current attempt, secrets as `***`.
    pub input: Json<Value>,
    pub output: Option<Json<Value>>,
    pub error: Option<String>,
    pub scheduled_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// When the next attempt is due after a retryable failure.
    pub retry_at: Option<DateTime<Utc>>,
    /// An approval's decision: `{granted, by, comment, at}`.
    pub approval: Option<Json<Value>>,
    pub child_run_id: Option<async_graphql::ID>,
}

/// One step of a run: a view into the run's folded state (shared, not
/// copied: a for_each step of thousands of items costs nothing until a
/// field that needs them is asked for).
#[derive(Clone, Debug)]
pub struct Step {
    state: Arc<RunState>,
    id: String,
}

/// Most executions one `Step.executions` page holds.
pub const EXECUTIONS_PAGE_MAX: u32 = 100;

#[Object]
impl Step {
    async fn id(&self) -> &str {
        &self.id
    }
    async fn status(&self) -> StepStatus {
        StepStatus::parse(self.step().status.as_str())
    }
    /// Attempts over all executions (for_each items included).
    async fn attempts(&self) -> u32 {
        self.step().attempts()
    }
    async fn output(&self) -> Option<Json<Value>> {
        self.step().output.clone().map(Json)
    }
    /// Why it failed, was skipped or cancelled.
    async fn error(&self) -> Option<&str> {
        self.step().reason.as_deref()
    }
    async fn started_at(&self) -> Option<DateTime<Utc>> {
        self.step().started_at
    }
    async fn finished_at(&self) -> Option<DateTime<Utc>> {
        self.step().finished_at
    }
    async fn duration_ms(&self) -> Option<i64> {
        let step = self.step();
        step.started_at
            .zip(step.finished_at)
            .map(|(start, end)| (end - start).num_milliseconds())
    }
    /// Items of a for_each step, once expanded.
    async fn items(&self) -> Option<u32> {
        self.step().items.as_ref().map(|items| items.len() as u32)
    }
    /// Items of a for_each step that ended (succeeded, failed, cancelled
    /// or skipped), once expanded.
    async fn items_done(&self) -> Option<u32> {
        let step = self.step();
        step.items.as_ref().map(|_| {
            step.executions
                .iter()
                .filter(|exec| exec.status.is_terminal())
                .count() as u32
        })
    }
    /// The rendered `with` of an approval step waiting for a decision.
    async fn approval_request(&self) -> Option<Json<Value>> {
        self.step()
            .executions
            .iter()
            .find(|exec| exec.approval_request.is_some() && exec.approval.is_none())
            .and_then(|exec| exec.approval_request.clone())
            .map(Json)
    }
    /// How many times surgery reset the step after it had run (`rewindRun`,
    /// `skipStep`); its idempotency keys end in `@<generation>` when > 0.
    async fn generation(&self) -> u32 {
        self.step().generation
    }
    /// `by <caller>: <reason>` when an operator skipped the step (`skipStep`).
    async fn skipped_by(&self) -> Option<&str> {
        self.step().bypassed.as_deref()
    }
    /// The source run whose output a fork took over for this step.
    async fn adopted_from(&self) -> Option<async_graphql::ID> {
        self.step()
            .adopted_from
            .map(|run| async_graphql::ID(run.to_string()))
    }
    /// The step's executions (one, or one per for_each item), from
    /// `offset`, at most `limit` (≤ 100).
    #[graphql(complexity = "limit.max(0) as usize * child_complexity")]
    async fn executions(
        &self,
        #[graphql(default = 0)] offset: u32,
        #[graphql(default = 20)] limit: i32,
    ) -> async_graphql::Result<Vec<StepExecution>> {
        if limit < 0 || limit as u32 > EXECUTIONS_PAGE_MAX {
            return Err(ApiError::limit(format!(
                "executions takes a limit from 0 to {EXECUTIONS_PAGE_MAX}"
            ))
            .into());
        }
        Ok(self
            .step()
            .executions
            .iter()
            .enumerate()
            .skip(offset as usize)
            .take(limit as usize)
            .map(|(index, exec)| StepExecution {
                index: index as u32,
                status: exec.status.as_str().to_owned(),
                attempt: exec.attempt,
                max_attempts: exec.max_attempts,
                idempotency_key: exec.idempotency_key.clone(),
                input: Json(exec.input.clone()),
                output: exec.output.clone().map(Json),
                error: exec.error.clone(),
                scheduled_at: exec.scheduled_at,
                started_at: exec.started_at,
                finished_at: exec.finished_at,
                retry_at: exec.retry_at,
                approval: exec
                    .approval
                    .as_ref()
                    .and_then(|decision| serde_json::to_value(decision).ok())
                    .map(Json),
                child_run_id: exec
                    .child_run_id
                    .map(|id| async_graphql::ID(id.to_string())),
            })
            .collect())
    }
}

impl Step {
    /// Every step of `state`, in step id order.
    pub fn all(state: &Arc<RunState>) -> Vec<Step> {
        state
            .steps
            .keys()
            .map(|id| Step {
                state: Arc::clone(state),
                id: id.clone(),
            })
            .collect()
    }

    /// The step `id` of `state`, when the run has it.
    pub fn of(state: &Arc<RunState>, id: &str) -> Option<Step> {
        state.steps.contains_key(id).then(|| Step {
            state: Arc::clone(state),
            id: id.to_owned(),
        })
    }

    fn step(&self) -> &StepState {
        // Built only for ids the state has (`all`, `of`).
        &self.state.steps[&self.id]
    }
}

/// The state of a run as of one seq, replayed with the core.
#[derive(SimpleObject, Debug)]
pub struct RunSnapshot {
    pub run_id: async_graphql::ID,
    pub seq: u64,
    pub status: RunStatus,
    pub workflow: String,
    pub version: String,
    pub input: Json<Value>,
    pub output: Option<Json<Value>>,
    pub error: Option<String>,
    pub steps: Vec<Step>,
    /// The run document (as `imx run --json` prints it).
    pub document: Json<Value>,
}

impl RunSnapshot {
    pub fn of(state: &Arc<RunState>) -> RunSnapshot {
        RunSnapshot {
            run_id: async_graphql::ID(state.run_id.map(|id| id.to_string()).unwrap_or_default()),
            seq: state.seq,
            status: RunStatus::parse(state.status.as_str()).unwrap_or(RunStatus::Pending),
            workflow: state.workflow.clone(),
            version: state.version.clone(),
            input: Json(state.input.clone()),
            output: state.output.clone().map(Json),
            error: state.failure.clone(),
            steps: Step::all(state),
            document: Json(state.document()),
        }
    }
}

/// One event of a run's log.
#[derive(Debug)]
pub struct RunEvent(pub RecordedEvent);

#[Object]
impl RunEvent {
    async fn run_id(&self) -> async_graphql::ID {
        async_graphql::ID(self.0.run_id.to_string())
    }
    /// Gap-free per run, from 1.
    async fn seq(&self) -> u64 {
        self.0.seq
    }
    /// Position in the global log.
    async fn position(&self) -> u64 {
        self.0.position
    }
    /// e.g. `step.succeeded`.
    async fn r#type(&self) -> &str {
        &self.0.event_type
    }
    async fn schema_version(&self) -> u32 {
        self.0.schema_version
    }
    async fn payload(&self) -> Json<Value> {
        Json(self.0.payload.clone())
    }
    async fn recorded_at(&self) -> DateTime<Utc> {
        self.0.recorded_at
    }
    /// This event's link in the run's hash chain.
    async fn hash(&self) -> &str {
        &self.0.hash
    }
}

#[derive(SimpleObject, Debug)]
pub struct RunEventEdge {
    pub cursor: String,
    pub node: RunEvent,
}

#[derive(SimpleObject, Debug)]
pub struct RunEventConnection {
    pub edges: Vec<RunEventEdge>,
    pub page_info: PageInfo,
}

#[derive(SimpleObject, Debug)]
pub struct RunEdge {
    pub cursor: String,
    pub node: Run,
}

#[derive(SimpleObject, Debug)]
pub struct RunConnection {
    pub edges: Vec<RunEdge>,
    pub page_info: PageInfo,
}

/// A registered workflow version.
#[derive(SimpleObject, Clone, Debug)]
#[graphql(complex)]
pub struct Workflow {
    pub name: String,
    pub version: String,
    pub source: String,
    pub registered_at: DateTime<Utc>,
}

#[ComplexObject]
impl Workflow {
    /// The DAG as a Mermaid flowchart.
    async fn mermaid(&self) -> async_graphql::Result<String> {
        let parsed = super::mutation::parse_off_workers(self.source.clone()).await?;
        let workflow = parsed
            .workflow
            .ok_or_else(|| ApiError::validation("the stored source no longer parses"))?;
        Ok(engine::core::graph::mermaid(&workflow))
    }

    /// The DAG placed by a layered layout (boxes and edge curves), for
    /// clients that draw it: the web UI.
    async fn layout(&self) -> async_graphql::Result<super::layout::DagLayout> {
        let source = self.source.clone();
        let placed = tokio::task::spawn_blocking(move || {
            engine::core::dsl::parse(&source)
                .workflow
                .map(|workflow| super::layout::layout(&workflow))
        })
        .await
        .map_err(|stopped| ApiError::internal(&stopped, None))?;
        Ok(placed.ok_or_else(|| ApiError::validation("the stored source no longer parses"))?)
    }

    /// What the validator says about the stored source (warnings; a
    /// registered version has no errors).
    async fn diagnostics(&self) -> async_graphql::Result<Vec<Diagnostic>> {
        let parsed = super::mutation::parse_off_workers(self.source.clone()).await?;
        Ok(parsed.diagnostics.iter().map(Diagnostic::from).collect())
    }

    /// The JSON Schema of the run input (`input:`), null when the workflow
    /// takes any input.
    async fn input_schema(&self) -> async_graphql::Result<Option<Json<Value>>> {
        let parsed = super::mutation::parse_off_workers(self.source.clone()).await?;
        Ok(parsed
            .workflow
            .and_then(|workflow| workflow.input)
            .map(Json))
    }
}

impl From<WorkflowRecord> for Workflow {
    fn from(record: WorkflowRecord) -> Self {
        Workflow {
            name: record.name,
            version: record.version,
            source: record.source,
            registered_at: record.registered_at,
        }
    }
}

/// One problem the validator found in a workflow source.
#[derive(SimpleObject, Clone, Debug)]
pub struct Diagnostic {
    /// Stable code, e.g. `IMX0012`.
    pub code: String,
    /// `error` or `warning`.
    pub severity: String,
    pub message: String,
    pub hint: Option<String>,
    pub line: u32,
    pub column: u32,
}

impl From<&engine::core::dsl::Diagnostic> for Diagnostic {
    fn from(diagnostic: &engine::core::dsl::Diagnostic) -> Self {
        Diagnostic {
            code: diagnostic.code.as_str().to_owned(),
            severity: diagnostic.severity.as_str().to_owned(),
            message: diagnostic.message.clone(),
            hint: diagnostic.hint.clone(),
            line: diagnostic.line,
            column: diagnostic.column,
        }
    }
}

/// The source was rejected; nothing was registered.
#[derive(SimpleObject, Clone, Debug)]
pub struct WorkflowRejected {
    pub diagnostics: Vec<Diagnostic>,
}

#[derive(Union, Debug)]
pub enum RegisterWorkflowResult {
    Workflow(Workflow),
    WorkflowRejected(WorkflowRejected),
}

/// What startRun did.
#[derive(SimpleObject, Debug)]
pub struct StartRunPayload {
    pub run: Run,
    /// False when the idempotency key returned an existing run.
    pub created: bool,
}

/// A change to a run, for `runUpdates`.
#[derive(SimpleObject, Debug)]
pub struct RunUpdate {
    /// The event that changed the run.
    pub event: RunEvent,
    /// The run after the event (read model; may already be newer).
    pub run: Run,
}
