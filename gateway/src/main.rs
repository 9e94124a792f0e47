//! The `imx` binary: parses the command line once into a validated command and
//! hands it to the module that carries it out.

mod agent;
mod bench;
mod cli;
mod kafka_triggers;
mod keys;
mod progress;
mod replay;
mod run;
mod runs;
mod schedules;
mod serve;
mod surgery;
mod validate;
mod workflows;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    // Before any thread: a node that runs steps takes its secrets out of its
    // environment (re-executing itself when there are any), so that child
    // processes cannot read them from /proc (engine::secrets).
    let runs_steps = matches!(
        cli.command,
        cli::Command::Serve(_) | cli::Command::Run(_) | cli::Command::Agent(_)
    );
    if runs_steps && let Err(err) = engine::secrets::take_from_environment() {
        eprintln!("error: {err}");
        return ExitCode::FAILURE;
    }
    // The fault battery's crash points (feature `failpoints`; docs/reliability.md).
    match engine::failpoint::configure_from_env() {
        Ok(armed) if !armed.is_empty() => eprintln!("imx: failpoints armed: {}", armed.join(", ")),
        Ok(_) => {}
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::FAILURE;
        }
    }
    match run(cli) {
        Ok(code) => code,
        Err(err) => match err.downcast_ref::<run::Refused>() {
            Some(refused) => {
                eprintln!("error: {refused}");
                ExitCode::from(run::EXIT_REFUSED)
            }
            None => {
                eprintln!("error: {err:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn run(cli: cli::Cli) -> anyhow::Result<ExitCode> {
    if let cli::Command::TemplateSandbox(args) = &cli.command {
        // First, before any thread or logger: the child limits itself.
        engine::sandbox::serve_child(engine::sandbox::ChildLimits {
            memory_bytes_max: args.memory_bytes_max,
            evaluation_ms_max: args.evaluation_ms_max,
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    let url = cli.store.database_url.clone();
    // `serve` logs JSON lines; everything else plain warnings (the runtime's).
    if !matches!(cli.command, cli::Command::Serve(_)) {
        imx_gateway::api::init_text_logging();
    }
    match cli.command {
        cli::Command::Validate(args) => validate::validate(&args),
        cli::Command::Graph(args) => validate::graph(&args),
        cli::Command::Run(args) => block_on(run::run(&url, &args)),
        cli::Command::Workflows(args) => block_on(workflows::workflows(&url, &args)),
        cli::Command::Runs(args) => match &args.command {
            Some(cli::RunsCommand::Show(show)) => block_on(runs::show(&url, show)),
            Some(cli::RunsCommand::Cancel(cancel)) => block_on(runs::cancel(&url, cancel)),
            Some(cli::RunsCommand::Rewind(rewind)) => block_on(surgery::rewind(&url, rewind)),
            Some(cli::RunsCommand::Fork(fork)) => block_on(surgery::fork(&url, fork)),
            Some(cli::RunsCommand::Pause(pause)) => block_on(surgery::pause(&url, pause, true)),
            Some(cli::RunsCommand::Resume(resume)) => block_on(surgery::pause(&url, resume, false)),
            Some(cli::RunsCommand::Skip(skip)) => block_on(surgery::skip(&url, skip)),
            None => block_on(runs::list(&url, &args)),
        },
        cli::Command::Approve(args) => block_on(runs::decide(&url, &args, true)),
        cli::Command::Reject(args) => block_on(runs::decide(&url, &args, false)),
        cli::Command::Serve(args) => block_on(serve::serve(&url, &args)),
        cli::Command::Agent(args) => block_on(agent::agent(&url, &args)),
        cli::Command::Replay(args) => replay::run(args, &url),
        cli::Command::Keys(args) => keys::run(&args),
        cli::Command::Bench(args) => match args.command {
            cli::BenchCommand::Run(args) => block_on(bench::run(args)),
        },
        cli::Command::Schedules(args) => block_on(schedules::schedules(&url, &args)),
        cli::Command::Apikey(args) => block_on(async move {
            imx_gateway::api::apikey::run(&url, args).await?;
            Ok(ExitCode::SUCCESS)
        }),
        cli::Command::TemplateSandbox(_) => Ok(ExitCode::SUCCESS),
    }
}

fn block_on<T>(future: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(future)
}
