//! The `imx` binary: parses the command line once into a validated command and
//! hands it to the module that carries it out.

mod cli;
mod validate;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: cli::Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        cli::Command::Validate(args) => validate::validate(&args),
        cli::Command::Graph(args) => validate::graph(&args),
        cli::Command::Apikey(args) => {
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(imx_gateway::api::apikey::run(args))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
