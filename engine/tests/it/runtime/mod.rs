//! Runtime tests: real workflows run to their end state through the runtime
//! on SQLite and on a real PostgreSQL (`scripts/test-postgres`), plus the

mod commit;
mod context;
mod fanout;
mod finally;
mod flows;
mod gated;
mod keys;
mod matrix;
mod recovery;
mod steering;
mod work;

use std::sync::Arc;
use std::time::Duration;

use engine::core::state::RunState;
use engine::core::workflow::StepKind;
use engine::executor::{Attempt, BoxFuture, Executor, Outcome};
use engine::runtime::{Config, Runtime, RuntimeHandle, StartRequest};
use engine::store::prelude::*;
use engine::store::{RunId, Store, StoreConfig};
use serde_json::{Value, json};

/// How long a test waits for a run to end before failing.
const RUN_WAIT_MS_MAX: u64 = 30_000;

/// A runtime node on a test store, with the test executor for `http`.
pub struct Node {
    pub runtime: Arc<Runtime<Store>>,
    pub handle: Option<RuntimeHandle>,
}

/// Fast polling and short leases for tests.
pub fn test_config() -> Config {
    Config {
        workers: 4,
        poll_ms: 20,
        lease_ms: 5_000,
        shutdown_grace_ms: 2_000,
        ..Config::default()
    }
}

impl Node {
    pub async fn start(url: &str) -> Node {
        Node::start_with(url, test_config()).await
    }

    pub async fn start_with(url: &str, config: Config) -> Node {
        Node::start_with_store(url, config, StoreConfig::default()).await
    }

    pub async fn start_with_store(url: &str, config: Config, store: StoreConfig) -> Node {
        let store = engine::store::open_with(url, store)
            .await
            .expect("open the store");
        let executors: Vec<Arc<dyn Executor>> = vec![Arc::new(Scripted)];
        let runtime = Runtime::new(Arc::new(store), executors, config);
        let handle = runtime.start().await.expect("start the runtime");
        Node {
            runtime,
            handle: Some(handle),
        }
    }

    pub async fn stop(mut self) {
        if let Some(handle) = self.handle.take() {
            handle.shutdown().await;
        }
    }

    pub async fn register(&self, yaml: &str) {
        self.runtime
            .register_source(yaml)
            .await
            .expect("register the workflow");
    }

    pub async fn start_run(&self, workflow: &str, input: Value) -> RunId {
        let request = StartRequest {
            workflow: workflow.to_owned(),
            input,
            ..StartRequest::default()
        };
        self.runtime
            .start_run(request)
            .await
            .expect("start the run")
            .run_id
    }

    /// Waits (with a deadline) until `done` holds for the run's state.
    pub async fn wait_for(&self, run_id: RunId, done: impl Fn(&RunState) -> bool) -> RunState {
        self.wait_within(run_id, RUN_WAIT_MS_MAX, done).await
    }

    /// [`Node::wait_for`] with a deadline of `wait_ms`.
    pub async fn wait_within(
        &self,
        run_id: RunId,
        wait_ms: u64,
        done: impl Fn(&RunState) -> bool,
    ) -> RunState {
        let within = Duration::from_millis(wait_ms);
        testkit::poll::run_state(&self.runtime, run_id, within, done).await
    }

    /// Asserts the store holds no run: a refused start wrote nothing.
    pub async fn assert_no_runs(&self) {
        let runs = self
            .runtime
            .store()
            .list_runs(&engine::store::RunQuery {
                limit: 10,
                ..engine::store::RunQuery::default()
            })
            .await;
        assert!(runs.expect("list").items.is_empty(), "nothing was written");
    }

    pub async fn finished(&self, run_id: RunId) -> Value {
        self.wait_for(run_id, RunState::is_finished)
            .await
            .document()
    }
}

/// Executions started per idempotency key, over every test's `Scripted`.
pub static CALLS: std::sync::LazyLock<std::sync::Mutex<std::collections::BTreeMap<String, u32>>> =
    std::sync::LazyLock::new(Default::default);

/// How many times an attempt of `key` started executing.
pub fn calls(key: &str) -> u32 {
    CALLS
        .lock()
        .map_or(0, |calls| calls.get(key).copied().unwrap_or(0))
}

/// The `http` kind in tests, scripted by `with.json`: waits `delay_ms`,
/// fails retryably while `attempt <= fail_times`, returns `output_bytes`
/// bytes when asked, else succeeds with `{echo, attempt, key}`.
#[derive(Debug)]
pub struct Scripted;

impl Executor for Scripted {
    fn kind(&self) -> StepKind {
        StepKind::Http
    }

    fn execute<'a>(&'a self, attempt: &'a Attempt) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let script = attempt.input.get("json").cloned().unwrap_or(Value::Null);
            if let Ok(mut calls) = CALLS.lock() {
                *calls.entry(attempt.idempotency_key.clone()).or_default() += 1;
            }
            if let Some(delay) = script.get("delay_ms").and_then(Value::as_u64) {
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
            let fail_times = script.get("fail_times").and_then(Value::as_u64);
            if fail_times.is_some_and(|times| u64::from(attempt.attempt) <= times) {
                return Outcome::failed(format!("scripted failure {}", attempt.attempt), true);
            }
            if let Some(bytes) = script.get("output_bytes").and_then(Value::as_u64) {
                let text = "x".repeat(bytes as usize);
                return Outcome::Succeeded {
                    output: json!({ "text": text }),
                };
            }
            let echo = script.get("echo").cloned().unwrap_or(Value::Null);
            Outcome::Succeeded {
                output: json!({
                    "echo_bytes": echo.as_str().map(str::len),
                    "echo": echo,
                    "attempt": attempt.attempt,
                    "key": attempt.idempotency_key,
                }),
            }
        })
    }
}

/// The events of a run, by type, in order.
pub async fn event_types<S: EventStore>(store: &S, run_id: RunId) -> Vec<String> {
    let mut types = Vec::new();
    loop {
        let page = store
            .read_stream(run_id, types.len() as u64, 1_000)
            .await
            .expect("read the stream");
        let done = page.len() < 1_000;
        types.extend(page.into_iter().map(|event| event.event_type));
        if done {
            return types;
        }
    }
}

/// Instantiates each case for SQLite and PostgreSQL.
macro_rules! both_backends {
    ($module:ident: $($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let database = $crate::store::sqlite_database();
                    super::$case(&database.url).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    // Holds the shared lock on the test cluster (the store's
                    // restart test takes it exclusively).
                    if let Some(database) = $crate::store::postgres_database().await {
                        super::$case(&database.url).await;
                    }
                }
            )*
        }
    };
}
pub(crate) use both_backends;
