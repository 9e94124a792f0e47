//! A store wrapper for group-commit tests: records the size of every
//! `append_batch` and, while its gate is shut, holds appends back, so a test
//! can let requests queue behind a commit in flight and know the batch that
//! follows.

use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use engine::store::*;
use tokio::sync::watch;

#[derive(Debug)]
pub struct Gated {
    inner: Store,
    /// True while appends are held back.
    shut: watch::Sender<bool>,
    batches: Mutex<Vec<usize>>,
}

impl Gated {
    pub async fn open(url: &str) -> Gated {
        let inner = engine::store::open(url).await.expect("open the store");
        Gated::wrap(inner)
    }

    fn wrap(inner: Store) -> Gated {
        Gated {
            inner,
            shut: watch::Sender::new(false),
            batches: Mutex::new(Vec::new()),
        }
    }

    /// Appends from now on wait for [`Gated::release`].
    pub fn shut(&self) {
        self.shut.send_replace(true);
    }

    pub fn release(&self) {
        self.shut.send_replace(false);
    }

    /// The size of every `append_batch` call so far, in order.
    pub fn batches(&self) -> Vec<usize> {
        self.batches.lock().expect("batches").clone()
    }
}

// Everything but `append_batch` goes straight to the inner store.

impl Database for Gated {
    async fn connect(url: &str, config: StoreConfig) -> Result<Self, Error> {
        Ok(Gated::wrap(Store::connect(url, config).await?))
    }

    fn config(&self) -> &StoreConfig {
        self.inner.config()
    }

    async fn migrate(&self) -> Result<(), Error> {
        self.inner.migrate().await
    }

    async fn ping(&self) -> Result<(), Error> {
        self.inner.ping().await
    }

    async fn migrations_current(&self) -> Result<bool, Error> {
        self.inner.migrations_current().await
    }
}

impl EventLog for Gated {
    async fn append_batch(
        &self,
        requests: Vec<AppendRequest>,
    ) -> Result<Vec<Result<Appended, Error>>, Error> {
        self.batches.lock().expect("batches").push(requests.len());
        let mut shut = self.shut.subscribe();
        let _ = shut.wait_for(|shut| !*shut).await;
        self.inner.append_batch(requests).await
    }

    async fn rebuild_projections<F>(&self, fold: F) -> Result<RebuildStats, Error>
    where
        F: FnMut(&[RecordedEvent]) -> ProjectionUpdate + Send,
    {
        self.inner.rebuild_projections(fold).await
    }
}

impl LogReader for Gated {
    async fn read_stream(
        &self,
        run_id: RunId,
        after_seq: u64,
        max: u32,
    ) -> Result<Vec<RecordedEvent>, Error> {
        self.inner.read_stream(run_id, after_seq, max).await
    }

    async fn read_log(&self, after_position: u64, max: u32) -> Result<Vec<RecordedEvent>, Error> {
        self.inner.read_log(after_position, max).await
    }

    async fn log_head(&self) -> Result<LogHead, Error> {
        self.inner.log_head().await
    }
}

impl ReadModels for Gated {
    async fn get_run(&self, run_id: RunId) -> Result<Option<RunRecord>, Error> {
        self.inner.get_run(run_id).await
    }

    async fn find_run_by_key(&self, key: &str) -> Result<Option<RunRecord>, Error> {
        self.inner.find_run_by_key(key).await
    }

    async fn get_steps(&self, run_id: RunId) -> Result<Vec<StepRow>, Error> {
        self.inner.get_steps(run_id).await
    }

    async fn list_runs(&self, query: &RunQuery) -> Result<Page<RunRecord, RunCursor>, Error> {
        self.inner.list_runs(query).await
    }

    async fn list_forks(&self, run_id: RunId, limit: u32) -> Result<Vec<RunRecord>, Error> {
        self.inner.list_forks(run_id, limit).await
    }

    async fn run_ids_newer(&self, query: &NewerRunsQuery) -> Result<Vec<RunId>, Error> {
        self.inner.run_ids_newer(query).await
    }
}

impl WorkQueue for Gated {
    async fn claim_tasks(
        &self,
        worker: &str,
        queue: &str,
        max: u32,
        lease_ms: u64,
    ) -> Result<Vec<ClaimedTask>, Error> {
        self.inner.claim_tasks(worker, queue, max, lease_ms).await
    }

    async fn renew_lease(
        &self,
        task_id: TaskId,
        token: LeaseToken,
        lease_ms: u64,
    ) -> Result<Lease, Error> {
        self.inner.renew_lease(task_id, token, lease_ms).await
    }

    async fn complete_task(&self, task_id: TaskId, token: LeaseToken) -> Result<(), Error> {
        self.inner.complete_task(task_id, token).await
    }

    async fn due_timers(&self, now: DateTime<Utc>, max: u32) -> Result<Vec<FiredTimer>, Error> {
        self.inner.due_timers(now, max).await
    }

    async fn wait_for_work(&self, timeout: Duration) -> Result<bool, Error> {
        self.inner.wait_for_work(timeout).await
    }

    async fn queue_depth(&self) -> Result<u64, Error> {
        self.inner.queue_depth().await
    }

    async fn expired_leases(&self, now: DateTime<Utc>) -> Result<u64, Error> {
        self.inner.expired_leases(now).await
    }
}

impl WorkflowRegistry for Gated {
    async fn register_workflow(&self, workflow: NewWorkflow) -> Result<WorkflowRecord, Error> {
        self.inner.register_workflow(workflow).await
    }

    async fn get_workflow(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> Result<Option<WorkflowRecord>, Error> {
        self.inner.get_workflow(name, version).await
    }

    async fn list_workflows(&self) -> Result<Vec<WorkflowRecord>, Error> {
        self.inner.list_workflows().await
    }

    async fn newest_workflow_versions(&self) -> Result<Vec<(String, String)>, Error> {
        self.inner.newest_workflow_versions().await
    }
}

impl ApiKeys for Gated {
    async fn create_api_key(&self, key: &ApiKeyRecord) -> Result<(), Error> {
        self.inner.create_api_key(key).await
    }

    async fn find_api_key(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>, Error> {
        self.inner.find_api_key(key_hash).await
    }

    async fn list_api_keys(&self) -> Result<Vec<ApiKeyRecord>, Error> {
        self.inner.list_api_keys().await
    }

    async fn revoke_api_key(&self, key_id: uuid::Uuid, at: DateTime<Utc>) -> Result<bool, Error> {
        self.inner.revoke_api_key(key_id, at).await
    }
}

impl UiSessions for Gated {
    async fn create_ui_session(
        &self,
        session: &UiSessionRecord,
        sessions_max: u32,
    ) -> Result<(), Error> {
        self.inner.create_ui_session(session, sessions_max).await
    }

    async fn find_ui_session(
        &self,
        session_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<UiSessionRecord>, Error> {
        self.inner.find_ui_session(session_hash, now).await
    }

    async fn touch_ui_session(
        &self,
        session_hash: &str,
        idle_expires_at: DateTime<Utc>,
    ) -> Result<(), Error> {
        self.inner
            .touch_ui_session(session_hash, idle_expires_at)
            .await
    }

    async fn end_ui_session(&self, session_hash: &str) -> Result<bool, Error> {
        self.inner.end_ui_session(session_hash).await
    }
}

impl Relay for Gated {
    async fn acquire_relay(
        &self,
        name: &str,
        holder: &str,
        token: &str,
        lease_ms: u64,
    ) -> Result<Option<RelayLease>, Error> {
        self.inner
            .acquire_relay(name, holder, token, lease_ms)
            .await
    }

    async fn advance_relay(
        &self,
        name: &str,
        token: &str,
        position: u64,
        lease_ms: u64,
    ) -> Result<bool, Error> {
        self.inner
            .advance_relay(name, token, position, lease_ms)
            .await
    }

    async fn release_relay(&self, name: &str, token: &str) -> Result<bool, Error> {
        self.inner.release_relay(name, token).await
    }

    async fn relay_lease(&self, name: &str) -> Result<Option<RelayLease>, Error> {
        self.inner.relay_lease(name).await
    }
}

impl Schedules for Gated {
    async fn ensure_schedule(
        &self,
        workflow: &str,
        trigger: &str,
        cursor_at: DateTime<Utc>,
    ) -> Result<ScheduleRecord, Error> {
        self.inner
            .ensure_schedule(workflow, trigger, cursor_at)
            .await
    }

    async fn list_schedules(&self) -> Result<Vec<ScheduleRecord>, Error> {
        self.inner.list_schedules().await
    }

    async fn advance_schedule(
        &self,
        workflow: &str,
        trigger: &str,
        cursor_at: DateTime<Utc>,
    ) -> Result<(), Error> {
        self.inner
            .advance_schedule(workflow, trigger, cursor_at)
            .await
    }

    async fn set_schedule_paused(
        &self,
        workflow: &str,
        trigger: &str,
        paused: Option<(DateTime<Utc>, String)>,
        now: DateTime<Utc>,
    ) -> Result<(), Error> {
        self.inner
            .set_schedule_paused(workflow, trigger, paused, now)
            .await
    }

    async fn record_fire(&self, fire: &FireRecord) -> Result<FireRecord, Error> {
        self.inner.record_fire(fire).await
    }

    async fn latest_started_fire(
        &self,
        workflow: &str,
        trigger: &str,
        before: DateTime<Utc>,
    ) -> Result<Option<FireRecord>, Error> {
        self.inner
            .latest_started_fire(workflow, trigger, before)
            .await
    }

    async fn list_fires(
        &self,
        workflow: &str,
        trigger: &str,
        max: u32,
    ) -> Result<Vec<FireRecord>, Error> {
        self.inner.list_fires(workflow, trigger, max).await
    }
}

impl AuditTrail for Gated {
    async fn leaf_hashes(&self, after: u64, max: u32) -> Result<Vec<String>, Error> {
        self.inner.leaf_hashes(after, max).await
    }

    async fn merkle_nodes(
        &self,
        level: u32,
        first: u64,
        last: u64,
    ) -> Result<Vec<(u64, String)>, Error> {
        self.inner.merkle_nodes(level, first, last).await
    }

    async fn merkle_width(&self, level: u32) -> Result<u64, Error> {
        self.inner.merkle_width(level).await
    }

    async fn append_merkle_nodes(&self, nodes: &[MerkleNode]) -> Result<(), Error> {
        self.inner.append_merkle_nodes(nodes).await
    }

    async fn append_checkpoint(&self, checkpoint: &CheckpointRecord) -> Result<bool, Error> {
        self.inner.append_checkpoint(checkpoint).await
    }

    async fn checkpoints(&self, after_size: u64, max: u32) -> Result<Vec<CheckpointRecord>, Error> {
        self.inner.checkpoints(after_size, max).await
    }

    async fn latest_checkpoint(&self) -> Result<Option<CheckpointRecord>, Error> {
        self.inner.latest_checkpoint().await
    }
}
