//! `imx serve`: a runtime node on the configured store (workers, timers,
//! every unfinished run resumed) until SIGINT/SIGTERM, then a graceful stop.
//! [`start_node`] is what the HTTP/GraphQL server wires in.

use std::sync::Arc;

use anyhow::Context;
use engine::executor::{
    EgressPolicy, ExecConfig, ExecExecutor, Executor, HttpConfig, HttpExecutor, KafkaConfig,
    KafkaExecutor,
};
use engine::runtime::{Config, Runtime, RuntimeHandle};
use engine::sandbox::{SANDBOX_SUBCOMMAND, Sandbox, SandboxConfig};
use engine::store::Store;

use crate::cli::{ExecutorArgs, ServeArgs, TemplateArgs};

/// A started runtime on an opened store.
#[derive(Debug)]
pub struct Node {
    pub runtime: Arc<Runtime<Store>>,
    pub handle: RuntimeHandle,
}

/// Opens the store at `url` (migrating it) with nothing started.
pub async fn open_runtime(
    url: &str,
    config: Config,
    which: ExecutorArgs,
) -> anyhow::Result<Arc<Runtime<Store>>> {
    open_runtime_with(url, config, which, false).await
}

/// [`open_runtime`]; `wait_for_database`: a database that cannot be reached
/// yet is waited for (long-running processes: `imx serve`, `imx agent`)
/// instead of failing at once (one-shot commands).
pub async fn open_runtime_with(
    url: &str,
    config: Config,
    which: ExecutorArgs,
    wait_for_database: bool,
) -> anyhow::Result<Arc<Runtime<Store>>> {
    let store = open_store(url, wait_for_database)
        .await
        .with_context(|| format!("cannot open the store at {}", without_password(url)))?;
    Ok(Runtime::new(Arc::new(store), executors(which)?, config))
}

/// Most attempts at opening a store whose migration raced another process.
const OPEN_ATTEMPTS_MAX: u32 = 5;
/// Wait between those attempts, in ms.
const OPEN_RETRY_MS: u64 = 200;
/// First wait after the database could not be reached at start, in ms;
/// it doubles after each failure up to [`UNREACHABLE_BACKOFF_MS_MAX`].
pub const UNREACHABLE_BACKOFF_MS_INITIAL: u64 = 500;
/// Longest wait between two tries to reach the database at start, in ms.
pub const UNREACHABLE_BACKOFF_MS_MAX: u64 = 10_000;

/// `url` with the password of its user part (`user:PASSWORD@`) replaced by
/// `***`, for logs.
pub(crate) fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => match rest[..at].split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***{}", &rest[at..]),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// Opens (and migrates) the store. Processes started together on a new
/// SQLite file race to migrate it; the loser sees a half-applied migration
/// and succeeds once the winner committed, so a failed migration is retried.
/// With `wait_for_database`, a database that cannot be reached (IMX0307,
/// retryable) is waited for
/// with a growing backoff, each failure logged with its reason, until it
/// answers or the process is stopped: a node started before its database
/// (a deploy, a reboot) comes up by itself.
async fn open_store(url: &str, wait_for_database: bool) -> Result<Store, engine::store::Error> {
    let mut attempt = 1;
    let mut backoff_ms = UNREACHABLE_BACKOFF_MS_INITIAL;
    loop {
        match engine::store::open(url).await {
            Err(engine::store::Error::Migrate { .. }) if attempt < OPEN_ATTEMPTS_MAX => {
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(OPEN_RETRY_MS)).await;
            }
            Err(error) if wait_for_database && error.is_retryable() => {
                eprintln!(
                    "imx: cannot reach the store at {} yet ({error}); trying again in {backoff_ms} ms",
                    without_password(url)
                );
                tokio::time::sleep(std::time::Duration::from_millis(backoff_ms)).await;
                backoff_ms = (backoff_ms * 2).min(UNREACHABLE_BACKOFF_MS_MAX);
            }
            other => return other,
        }
    }
}

/// The executors of this node. Kinds the core and the runtime handle
/// themselves need none: noop, fail, sleep, approval, workflow, agent. A
/// node without `exec` (or without Kafka brokers) does not claim `exec` (or
/// `kafka.publish`) steps at all (they wait for a node that has it) rather
/// than failing them.
pub fn executors(which: ExecutorArgs) -> anyhow::Result<Vec<Arc<dyn Executor>>> {
    let egress = EgressPolicy::parse(&which.egress_allow, &which.egress_deny)
        .map_err(|err| anyhow::anyhow!("invalid egress policy: {err}"))?;
    let http = HttpConfig {
        egress,
        ..HttpConfig::default()
    };
    let mut executors: Vec<Arc<dyn Executor>> = vec![Arc::new(
        HttpExecutor::new(http).context("cannot set up the http executor")?,
    )];
    if which.enable_exec {
        executors.push(Arc::new(ExecExecutor::new(ExecConfig::enabled())));
    }
    if let Some(brokers) = which.kafka_brokers {
        let kafka = KafkaExecutor::new(KafkaConfig::new(brokers))
            .context("cannot set up the kafka.publish executor")?;
        executors.push(Arc::new(kafka));
    }
    Ok(executors)
}

/// This node's template evaluator: a sandbox of `imx __template-sandbox`
/// children (this very binary) with the given limits.
pub fn sandbox(args: &TemplateArgs) -> anyhow::Result<Arc<dyn engine::core::template::Evaluator>> {
    let program =
        std::env::current_exe().context("cannot find the imx binary for the template sandbox")?;
    let config = SandboxConfig {
        memory_bytes_max: args.template_memory_bytes_max,
        evaluation_ms_max: args.template_evaluation_ms_max,
        ..SandboxConfig::for_program(program, [SANDBOX_SUBCOMMAND])
    };
    Ok(Arc::new(Sandbox::new(config)))
}

/// Opens the store and starts workers and timers; resumes unfinished runs
/// when `config.resume_on_start`.
pub async fn start_node(url: &str, config: Config, which: ExecutorArgs) -> anyhow::Result<Node> {
    let runtime = open_runtime_with(url, config, which, true).await?;
    let handle = runtime.start().await.context("cannot start the runtime")?;
    Ok(Node { runtime, handle })
}

pub async fn serve(url: &str, args: &ServeArgs) -> anyhow::Result<std::process::ExitCode> {
    let config = Config {
        workers: args.workers,
        lease_ms: args.lease_ms,
        evaluator: sandbox(&args.templates)?,
        ..Config::default()
    };
    // The API settings are checked before anything starts.
    let api_config = args
        .api
        .clone()
        .into_config()
        .context("invalid API settings")?;
    // So are the checkpoint settings (the key is read now).
    let checkpoint_config = args
        .checkpoints
        .config(args.executors.kafka_brokers.as_deref())?;
    imx_gateway::api::init_json_logging();
    let node = start_node(url, config, args.executors.clone()).await?;
    // Signed checkpoints (with --signing-key): one writer among the nodes.
    let checkpoints = checkpoint_config.map(|config| {
        let config = engine::checkpoint::Config {
            holder: node.runtime.config().node.clone(),
            ..config
        };
        engine::checkpoint::spawn(node.runtime.store().clone(), config)
    });
    // Cron triggers fire on every node; the store starts each tick once.
    let scheduler = engine::triggers::cron::spawn_scheduler(node.runtime.clone());
    let api = imx_gateway::api::bind_api(
        api_config,
        node.runtime.store().clone(),
        Some(node.runtime.clone()),
    )
    .await
    .context("cannot start the API")?;
    // Kafka triggers (with brokers) and the log relay (with --relay-topic).
    let kafka = crate::kafka_triggers::start(
        &node.runtime,
        args.executors.kafka_brokers.as_deref(),
        &args.kafka,
    )?;
    if let Some(stats) = kafka.stats() {
        api.register_metrics(Box::new(crate::kafka_triggers::TriggerCollector::new(
            stats,
        )?))?;
    }
    eprintln!(
        "imx serve: working on {} as {} ({} workers); API on http://{}/graphql; Ctrl-C stops",
        without_password(url),
        node.runtime.config().node,
        args.workers,
        api.local_addr()
            .map_or_else(|| "?".to_owned(), |addr| addr.to_string()),
    );
    if let Some(addr) = api.metrics_addr() {
        eprintln!("imx serve: metrics on http://{addr}/metrics (not on the API address)");
    }
    api.serve(shutdown_signal())
        .await
        .context("the API failed")?;
    eprintln!("imx serve: stopping (running steps get a grace period)");
    kafka.shutdown().await;
    if let Some(checkpoints) = checkpoints {
        checkpoints.shutdown().await;
    }
    scheduler.shutdown().await;
    node.handle.shutdown().await;
    Ok(std::process::ExitCode::SUCCESS)
}

/// SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
