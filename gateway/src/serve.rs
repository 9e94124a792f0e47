//! `imx serve`: a runtime node on the configured store (workers, timers,
//! every unfinished run resumed) until SIGINT/SIGTERM, then a graceful stop.
//! [`start_node`] is what the HTTP/GraphQL server wires in.

use std::sync::Arc;

use anyhow::Context;
use engine::executor::exec::ExecConfig;
use engine::executor::http::HttpConfig;
use engine::executor::{Executor, standard_executors};
use engine::runtime::{Config, Runtime, RuntimeHandle};
use engine::store::Store;

use crate::cli::{ExecutorArgs, ServeArgs};

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
    executor_args: ExecutorArgs,
) -> anyhow::Result<Arc<Runtime<Store>>> {
    let store = engine::store::open(url)
        .await
        .with_context(|| format!("cannot open the store at {url}"))?;
    Ok(Runtime::new(
        Arc::new(store),
        executors(executor_args)?,
        config,
    ))
}

/// The executors of this node: `http` always, `exec` only when enabled. Step
/// kinds the core and runtime handle themselves need none (noop, fail, sleep,
/// approval, workflow); `agent` tasks are carried out by `imx agent`.
pub fn executors(args: ExecutorArgs) -> anyhow::Result<Vec<Arc<dyn Executor>>> {
    let exec = ExecConfig {
        enabled: args.enable_exec,
        ..ExecConfig::default()
    };
    standard_executors(HttpConfig::default(), exec).context("cannot set up the executors")
}

/// Opens the store and starts workers and timers; resumes unfinished runs
/// when `config.resume_on_start`.
pub async fn start_node(
    url: &str,
    config: Config,
    executor_args: ExecutorArgs,
) -> anyhow::Result<Node> {
    let runtime = open_runtime(url, config, executor_args).await?;
    let handle = runtime.start().await.context("cannot start the runtime")?;
    Ok(Node { runtime, handle })
}

pub async fn serve(url: &str, args: &ServeArgs) -> anyhow::Result<std::process::ExitCode> {
    let config = Config {
        workers: args.workers,
        lease_ms: args.lease_ms,
        ..Config::default()
    };
    // The API settings are checked before anything starts.
    let api_config = args
        .api
        .clone()
        .into_config()
        .context("invalid API settings")?;
    imx_gateway::api::init_json_logging();
    let node = start_node(url, config, args.executors).await?;
    let control: Arc<dyn imx_gateway::api::Control> = node.runtime.clone();
    let api = imx_gateway::api::bind_api(api_config, node.runtime.store().clone(), Some(control))
        .await
        .context("cannot start the API")?;
    eprintln!(
        "imx serve: working on {url} as {} ({} workers); API on http://{}/graphql; Ctrl-C stops",
        node.runtime.config().node,
        args.workers,
        api.local_addr()
            .map_or_else(|| "?".to_owned(), |addr| addr.to_string()),
    );
    api.serve(shutdown_signal())
        .await
        .context("the API failed")?;
    eprintln!("imx serve: stopping (running steps get a grace period)");
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
