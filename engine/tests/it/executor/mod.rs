//! Executors against the real things: a local HTTP server spawned per test,
//! and real child processes.

mod egress;
mod exec;
pub(crate) mod flows;
pub(crate) mod http;
mod surgery;

use chrono::Utc;
use engine::core::workflow::StepKind;
use engine::executor::{Attempt, ExecConfig, HttpConfig, Outcome, standard_executors};
use serde_json::Value;
use uuid::Uuid;

/// Instantiates each `async fn case(database: Database)` of the calling
/// module once per backend: `sqlite::case` and `postgres::case` (the latter
/// returns at once when no test cluster runs).
macro_rules! on_both_backends {
    ($($case:ident),* $(,)?) => {
        $crate::executor::on_both_backends!(@backend sqlite, Some($crate::store::sqlite_database()); $($case),*);
        $crate::executor::on_both_backends!(@backend postgres, $crate::store::postgres_database().await; $($case),*);
    };
    (@backend $backend:ident, $database:expr; $($case:ident),*) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    if let Some(database) = $database {
                        super::$case(database).await;
                    }
                }
            )*
        }
    };
}
pub(crate) use on_both_backends;

/// Run id of every test attempt, so that keys and variables can be snapshot.
const RUN_ID: Uuid = Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_00aa);

/// The default `http` config with loopback allowed: the test servers listen
/// on 127.0.0.1, which the node egress policy denies by default.
pub(crate) fn loopback_http() -> HttpConfig {
    HttpConfig {
        egress: engine::executor::EgressPolicy::allowing_loopback(),
        ..HttpConfig::default()
    }
}

/// The first attempt of step `work` with `input` as its rendered `with`, no deadline.
pub(crate) fn attempt(kind: StepKind, input: Value) -> Attempt {
    Attempt {
        run_id: RUN_ID,
        step: "work".to_owned(),
        index: None,
        attempt: 1,
        idempotency_key: format!("{RUN_ID}/work"),
        kind,
        input,
        deadline: None,
    }
}

/// `attempt` with a deadline `ms` milliseconds from now.
pub(crate) fn with_deadline_ms(mut attempt: Attempt, ms: i64) -> Attempt {
    attempt.deadline = Some(Utc::now() + chrono::Duration::milliseconds(ms));
    attempt
}

/// The outcome as one line (`ok <output>` or `failed(retryable) <error>`),
/// with `replace` pairs applied (ports and paths differ per run).
pub(crate) fn render(outcome: &Outcome, replace: &[(&str, &str)]) -> String {
    let text = match outcome {
        Outcome::Succeeded { output } => format!("ok {output}"),
        Outcome::Failed { error, retryable } => {
            let class = if *retryable { "retryable" } else { "final" };
            format!("failed({class}) {error}")
        }
    };
    replace
        .iter()
        .fold(text, |text, (from, to)| text.replace(from, to))
}

#[test]
fn standard_executors_cover_http_and_exec() {
    let executors = standard_executors(HttpConfig::default(), ExecConfig::default())
        .expect("default configs build");
    let kinds: Vec<StepKind> = executors.iter().map(|executor| executor.kind()).collect();
    assert_eq!(kinds, [StepKind::Http, StepKind::Exec]);
}
