//! The command-line contract of `imx` (DESIGN.md "CLI contract"): scripts and
//! CI depend on these names and exit codes, so they change only additively.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Infinity Matrix: a durable, event-sourced workflow engine.
#[derive(Debug, Parser)]
#[command(name = "imx", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check workflow files and print every problem as FILE:LINE:COL: error[CODE]: message.
    Validate(ValidateArgs),
    /// Draw a workflow's DAG as Mermaid or Graphviz DOT.
    Graph(GraphArgs),
    /// Start a run of a workflow file or registered name; --wait carries it out here.
    Run(RunArgs),
    /// Register workflow files in the store (`register FILE|DIR…`) or list the registered ones (`list`).
    Workflows(crate::workflows::WorkflowsArgs),
    /// List runs, newest first; `imx runs show RUN_ID` shows one.
    Runs(RunsArgs),
    /// Grant a waiting approval step.
    Approve(DecisionArgs),
    /// Reject a waiting approval step (the step fails).
    Reject(DecisionArgs),
    /// Work on the store: workers, timers, and every unfinished run resumed.
    Serve(Box<ServeArgs>),
    /// Carry out `uses: agent` tasks of one queue with a local command.
    Agent(AgentArgs),
    /// Signing keys for checkpoints: `imx keys generate --out FILE`.
    Keys(crate::keys::KeysArgs),
    /// Audit the event log: export, verify, inspect a run, check a new version.
    Replay(crate::replay::ReplayArgs),
    /// List cron schedules; pause, resume or backfill one.
    Schedules(crate::schedules::SchedulesArgs),
    /// Manage API keys for `imx serve` (create prints the key once).
    Apikey(imx_gateway::api::apikey::ApiKeyArgs),
    /// Measure the engine: `imx bench run` prints runs/s and latencies.
    Bench(BenchArgs),
    /// A template sandbox process (started by `imx` itself, never by hand).
    #[command(name = "__template-sandbox", hide = true)]
    TemplateSandbox(TemplateSandboxArgs),
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Workflow files or folders (searched recursively for *.yaml and *.yml).
    #[arg(default_value = "workflows")]
    pub paths: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct GraphArgs {
    /// The workflow file to draw.
    pub file: PathBuf,
    #[arg(long, value_enum, default_value_t = GraphFormat::Mermaid)]
    pub format: GraphFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GraphFormat {
    Mermaid,
    Dot,
}

/// Options every command that opens the store shares.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// `sqlite://PATH` or `postgres://USER@HOST:PORT/DB`.
    #[arg(long, global = true, env = "IMX_DATABASE_URL", default_value = engine::store::DEFAULT_DATABASE_URL)]
    pub database_url: String,
}

/// Which executors a node that carries out steps has.
#[derive(Debug, Clone, Default, Args)]
pub struct ExecutorArgs {
    /// Allow `uses: exec` steps to run programs on this node (off by default).
    #[arg(
        long = "enable-exec",
        env = "IMX_ENABLE_EXEC",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub enable_exec: bool,
    /// Kafka bootstrap servers (`host:port,host:port`) for `uses: kafka.publish`
    /// steps; without them this node leaves those steps to a node that has them.
    #[arg(
        long = "kafka-brokers",
        env = "IMX_KAFKA_BROKERS",
        value_name = "HOST:PORT,…"
    )]
    pub kafka_brokers: Option<String>,
    /// Let `http` steps reach an address, CIDR network or host name that the
    /// node egress policy denies by default (loopback, link-local, metadata…);
    /// repeatable, e.g. `--egress-allow 127.0.0.1/32` for local development.
    #[arg(
        long = "egress-allow",
        env = "IMX_EGRESS_ALLOW",
        value_delimiter = ',',
        value_name = "CIDR|HOST"
    )]
    pub egress_allow: Vec<String>,
    /// Forbid `http` steps an address, CIDR network or host name (repeatable;
    /// wins over `--egress-allow`).
    #[arg(
        long = "egress-deny",
        env = "IMX_EGRESS_DENY",
        value_delimiter = ',',
        value_name = "CIDR|HOST"
    )]
    pub egress_deny: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub executors: ExecutorArgs,
    /// A workflow file (registered first) or the name of a registered workflow.
    pub workflow: String,
    /// The run input: JSON text, or @FILE to read it from a file.
    #[arg(long)]
    pub input: Option<String>,
    /// Starting again with the same key returns the run it started first.
    #[arg(long)]
    pub idempotency_key: Option<String>,
    /// Carry the run out here and wait for its end (exit 0 succeeded, 1 failed or cancelled).
    #[arg(long)]
    pub wait: bool,
    /// Print the run document as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub templates: TemplateArgs,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct RunsArgs {
    #[command(subcommand)]
    pub command: Option<RunsCommand>,
    /// Only runs with this status (pending running waiting paused succeeded failed cancelled).
    #[arg(long)]
    pub status: Option<String>,
    /// Only runs of this workflow.
    #[arg(long)]
    pub workflow: Option<String>,
    /// At most this many runs, newest first.
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// One run: status, input, output and every step.
    Show(ShowArgs),
    /// Cancel a run: pending steps are skipped, running ones cancelled.
    /// Exit 2 when the run is unknown or already ended.
    Cancel(CancelArgs),
    /// Rewind an ended run to STEP: that step and everything downstream of
    /// it run again in the same run, with new idempotency keys.
    Rewind(StepSurgeryArgs),
    /// Start a new run that takes over the outputs of the steps not
    /// downstream of STEP and runs the rest, optionally on another version.
    /// (Here `--version` names the workflow version, not imx's.)
    #[command(disable_version_flag = true)]
    Fork(ForkArgs),
    /// Pause a running or waiting run: no new attempt starts until resumed.
    Pause(SurgeryArgs),
    /// Resume a paused run.
    Resume(SurgeryArgs),
    /// Mark a failed or waiting step succeeded with --output; its dependents proceed.
    Skip(SkipArgs),
}

/// Who operates and why: both are recorded in the run's history.
#[derive(Debug, Args)]
pub struct SurgeryArgs {
    pub run_id: String,
    /// Why (required): recorded in the event with who asked.
    #[arg(long)]
    pub reason: String,
    /// Who operates (default: $USER).
    #[arg(long)]
    pub by: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StepSurgeryArgs {
    #[command(flatten)]
    pub surgery: SurgeryArgs,
    /// The step (a step id of the run's workflow).
    #[arg(long)]
    pub step: String,
}

#[derive(Debug, Args)]
pub struct ForkArgs {
    #[command(flatten)]
    pub surgery: SurgeryArgs,
    /// The step the fork runs again, with everything downstream of it.
    #[arg(long)]
    pub step: String,
    /// A version of the source's workflow (`sha256:…`); default: the source's.
    #[arg(long)]
    pub version: Option<String>,
    /// The fork's input (`JSON` or `@FILE`); default: the source's input.
    #[arg(long)]
    pub input: Option<String>,
}

#[derive(Debug, Args)]
pub struct SkipArgs {
    #[command(flatten)]
    pub surgery: SurgeryArgs,
    /// The failed or waiting step.
    #[arg(long)]
    pub step: String,
    /// The step's output (`JSON` or `@FILE`); default: null.
    #[arg(long)]
    pub output: Option<String>,
}

#[derive(Debug, Args)]
pub struct CancelArgs {
    pub run_id: String,
    /// Why, recorded in the run's `run.cancel_requested` event.
    #[arg(long)]
    pub reason: Option<String>,
    /// Who cancels (default: $USER).
    #[arg(long)]
    pub by: Option<String>,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    pub run_id: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DecisionArgs {
    pub run_id: String,
    /// The approval step (`STEP` or `STEP/INDEX` for a `for_each` item).
    pub step: String,
    #[arg(long)]
    pub comment: Option<String>,
    /// Who decides (default: $USER).
    #[arg(long)]
    pub by: Option<String>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub executors: ExecutorArgs,
    /// Concurrent step attempts on this node.
    #[arg(long, default_value_t = engine::runtime::WORKERS_DEFAULT)]
    pub workers: usize,
    /// Lease on a claimed task, in ms: after a crash, its tasks wait this long.
    #[arg(long, default_value_t = engine::runtime::LEASE_MS_DEFAULT)]
    pub lease_ms: u64,
    #[command(flatten)]
    pub templates: TemplateArgs,
    /// The GraphQL/HTTP API (listen address, auth, limits).
    #[command(flatten)]
    pub api: imx_gateway::api::ApiArgs,
    /// Kafka triggers and the log relay.
    #[command(flatten)]
    pub kafka: crate::kafka_triggers::KafkaTriggerArgs,
    /// Signed checkpoints of the log.
    #[command(flatten)]
    pub checkpoints: crate::keys::CheckpointArgs,
}

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// The queue to take tasks from (`with.queue` of `uses: agent` steps).
    #[arg(long)]
    pub queue: String,
    /// Tasks run at the same time.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    #[command(flatten)]
    pub templates: TemplateArgs,
    /// The command to run per task: task JSON on stdin, output JSON on stdout.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub command: BenchCommand,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Runs workflows through an in-process runtime on scratch databases and
    /// prints runs/s, step transitions/s and run latency beside the
    /// database's raw commit rate measured in the same run.
    Run(BenchRunArgs),
}

#[derive(Debug, Clone, Args)]
pub struct BenchRunArgs {
    /// Runs per measurement.
    #[arg(long, default_value_t = 1_000)]
    pub runs: usize,
    /// Runs in flight at once, one measurement each.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
    pub concurrency: Vec<usize>,
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "sqlite,postgres"
    )]
    pub backend: Vec<BenchBackend>,
    /// A PostgreSQL URL whose user may create databases (a scratch database
    /// is created next to it and dropped after).
    #[arg(long, env = "IMX_BENCH_POSTGRES_URL")]
    pub postgres_url: Option<String>,
    #[arg(long, value_enum, value_delimiter = ',', default_value = "noop,http")]
    pub workflow: Vec<BenchWorkflow>,
    /// Most appends per transaction (1: group commit off, for comparison).
    #[arg(long, default_value_t = engine::runtime::COMMIT_BATCH_MAX)]
    pub commit_batch_max: usize,
    /// Appends lease the attempts they make ready to this node (false:
    /// every task waits for a claim, for comparison).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub local_dispatch: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchBackend {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchWorkflow {
    /// Ten `noop` steps in a chain (decided inline: one commit per run).
    Noop,
    /// Ten `http` steps in a chain against a local server.
    Http,
    /// Ten `agent` steps in a chain, served by an `imx agent` process
    /// running `sh -c 'cat >/dev/null'` per task.
    Agent,
}

/// Limits of the template sandbox (docs/templates.md, "Limits and the sandbox").
#[derive(Debug, Clone, Args)]
pub struct TemplateArgs {
    /// Address space of a template sandbox process, in bytes.
    #[arg(long, env = "IMX_TEMPLATE_MEMORY_BYTES_MAX", default_value_t = engine::sandbox::SANDBOX_MEMORY_BYTES_MAX)]
    pub template_memory_bytes_max: u64,
    /// Wall-clock time one template evaluation in the sandbox may take, in ms.
    #[arg(long, env = "IMX_TEMPLATE_EVALUATION_MS_MAX", default_value_t = engine::sandbox::TEMPLATE_EVALUATION_MS_MAX)]
    pub template_evaluation_ms_max: u64,
}

impl Default for TemplateArgs {
    fn default() -> Self {
        TemplateArgs {
            template_memory_bytes_max: engine::sandbox::SANDBOX_MEMORY_BYTES_MAX,
            template_evaluation_ms_max: engine::sandbox::TEMPLATE_EVALUATION_MS_MAX,
        }
    }
}

/// The limits a sandbox child sets on itself, given by its parent.
#[derive(Debug, Args)]
pub struct TemplateSandboxArgs {
    #[arg(long)]
    pub memory_bytes_max: u64,
    #[arg(long)]
    pub evaluation_ms_max: u64,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// clap's own consistency checks over every subcommand (duplicate
    /// flags, like a `--version` clashing with the propagated one), which
    /// it otherwise runs only when that subcommand is parsed.
    #[test]
    fn every_subcommand_passes_claps_checks() {
        super::Cli::command().debug_assert();
    }
}
