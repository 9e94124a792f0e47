//! `imx agent --queue Q -- COMMAND…`: takes `uses: agent` tasks of queue `Q`
//! with a lease (renewed while the command runs), runs COMMAND once per task
//! with the task JSON on stdin and `IMX_IDEMPOTENCY_KEY` in its environment;
//! its stdout (JSON) is the step's output, a non-zero exit fails the attempt.
//! Several agents may share a queue.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use engine::core::workflow::StepKind;
use engine::executor::command::{CommandSpec, run_command};
use engine::executor::{Attempt, BoxFuture, Executor, Outcome, time_left};
use engine::runtime::{Config, OUTPUT_BYTES_MAX, agent_queue};
use serde_json::json;

use crate::cli::{AgentArgs, ExecutorArgs};
use crate::serve::{open_runtime_with, shutdown_signal};

/// Time limit of a task whose step has no timeout.
const AGENT_TASK_TIMEOUT_DEFAULT: Duration = Duration::from_secs(3600);

pub async fn agent(url: &str, args: &AgentArgs) -> anyhow::Result<ExitCode> {
    let config = Config {
        workers: args.workers,
        evaluator: crate::serve::sandbox(&args.templates)?,
        ..Config::default()
    };
    // The agent carries out its queue's tasks only; it needs no executors.
    let runtime = open_runtime_with(url, config, ExecutorArgs::default(), true).await?;
    let executor: Arc<dyn Executor> = Arc::new(CommandAgent {
        command: args.command.clone(),
    });
    let handle = runtime.start_agent(agent_queue(&args.queue), executor);
    eprintln!(
        "imx agent: taking tasks of queue {} on {}; Ctrl-C stops",
        args.queue,
        crate::serve::without_password(url)
    );
    shutdown_signal().await;
    handle.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

/// Runs one command per task.
#[derive(Debug)]
struct CommandAgent {
    command: Vec<String>,
}

impl Executor for CommandAgent {
    fn kind(&self) -> StepKind {
        StepKind::Agent
    }

    fn execute<'a>(&'a self, attempt: &'a Attempt) -> BoxFuture<'a, Outcome> {
        Box::pin(self.run(attempt))
    }
}

impl CommandAgent {
    /// One task through the engine's command runner: its own process group
    /// (killed at the deadline or when the attempt is dropped), stdout and
    /// stderr read concurrently with limits, the agent's environment plus the
    /// attempt's `IMX_*` variables.
    async fn run(&self, attempt: &Attempt) -> Outcome {
        if self.command.is_empty() {
            return Outcome::failed("the agent has no command", false);
        }
        let task = json!({
            "run_id": attempt.run_id,
            "step": attempt.step,
            "index": attempt.index,
            "attempt": attempt.attempt,
            "idempotency_key": attempt.idempotency_key,
            "input": attempt.input,
        });
        let timeout = time_left(attempt.deadline).unwrap_or(AGENT_TASK_TIMEOUT_DEFAULT);
        let mut spec = CommandSpec::new(self.command.clone(), timeout)
            .with_inherited_env()
            .with_attempt_env(attempt);
        spec.stdin = Some(task.to_string().into_bytes());
        spec.stdout_bytes_max = OUTPUT_BYTES_MAX;
        run_command(spec).await
    }
}
