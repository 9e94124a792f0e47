//! `imx agent --queue Q -- COMMAND…`: takes `uses: agent` tasks of queue `Q`
//! with a lease (renewed while the command runs), runs COMMAND once per task
//! with the task JSON on stdin and `IMX_IDEMPOTENCY_KEY` in its environment;
//! its stdout (JSON) is the step's output, a non-zero exit fails the attempt.
//! Several agents may share a queue.

use std::process::{ExitCode, Stdio};
use std::sync::Arc;

use engine::core::workflow::StepKind;
use engine::executor::{Attempt, BoxFuture, Executor, Outcome};
use engine::runtime::{Config, OUTPUT_BYTES_MAX, agent_queue};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::cli::AgentArgs;
use crate::serve::{open_runtime, shutdown_signal};

/// Most bytes of stderr quoted in a failure message.
const STDERR_QUOTE_BYTES_MAX: usize = 2_000;

pub async fn agent(url: &str, args: &AgentArgs) -> anyhow::Result<ExitCode> {
    let config = Config {
        workers: args.workers,
        ..Config::default()
    };
    let runtime = open_runtime(url, config).await?;
    let executor: Arc<dyn Executor> = Arc::new(CommandAgent {
        command: args.command.clone(),
    });
    let handle = runtime.start_agent(agent_queue(&args.queue), executor);
    eprintln!(
        "imx agent: taking tasks of queue {} on {url}; Ctrl-C stops",
        args.queue
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
        Box::pin(async move {
            match self.run(attempt).await {
                Ok(outcome) => outcome,
                Err(error) => Outcome::failed(error, true),
            }
        })
    }
}

impl CommandAgent {
    async fn run(&self, attempt: &Attempt) -> Result<Outcome, String> {
        let Some((program, arguments)) = self.command.split_first() else {
            return Ok(Outcome::failed("the agent has no command", false));
        };
        let task = json!({
            "run_id": attempt.run_id,
            "step": attempt.step,
            "index": attempt.index,
            "attempt": attempt.attempt,
            "idempotency_key": attempt.idempotency_key,
            "input": attempt.input,
        });
        // kill_on_drop: a cancelled or timed-out attempt leaves no process behind.
        let mut child = tokio::process::Command::new(program)
            .args(arguments)
            .env("IMX_IDEMPOTENCY_KEY", &attempt.idempotency_key)
            .env("IMX_RUN_ID", attempt.run_id.to_string())
            .env("IMX_ATTEMPT", attempt.attempt.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|error| format!("cannot start `{program}`: {error}"))?;
        if let Some(mut stdin) = child.stdin.take() {
            let text = task.to_string();
            // A command that does not read its stdin is fine.
            let _ = stdin.write_all(text.as_bytes()).await;
        }
        let mut stdout = Vec::new();
        if let Some(out) = child.stdout.take() {
            out.take(OUTPUT_BYTES_MAX as u64 + 1)
                .read_to_end(&mut stdout)
                .await
                .map_err(|error| format!("reading the command's stdout: {error}"))?;
        }
        let mut stderr = Vec::new();
        if let Some(err) = child.stderr.take() {
            let _ = err
                .take(STDERR_QUOTE_BYTES_MAX as u64)
                .read_to_end(&mut stderr)
                .await;
        }
        let status = child
            .wait()
            .await
            .map_err(|error| format!("waiting for the command: {error}"))?;
        if !status.success() {
            let stderr = String::from_utf8_lossy(&stderr);
            return Ok(Outcome::failed(
                format!("`{program}` exited with {status}: {}", stderr.trim()),
                true,
            ));
        }
        if stdout.len() > OUTPUT_BYTES_MAX {
            return Ok(Outcome::failed(
                format!(
                    "the command printed more than {OUTPUT_BYTES_MAX} bytes (OUTPUT_BYTES_MAX)"
                ),
                false,
            ));
        }
        let text = String::from_utf8_lossy(&stdout);
        if text.trim().is_empty() {
            return Ok(Outcome::Succeeded {
                output: Value::Null,
            });
        }
        match serde_json::from_str(&text) {
            Ok(output) => Ok(Outcome::Succeeded { output }),
            Err(error) => Ok(Outcome::failed(
                format!("the command's stdout is not JSON: {error}"),
                false,
            )),
        }
    }
}
