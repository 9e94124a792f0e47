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
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check workflow files and print every problem as FILE:LINE:COL: error[CODE]: message.
    Validate(ValidateArgs),
    /// Draw a workflow's DAG as Mermaid or Graphviz DOT.
    Graph(GraphArgs),
    /// Manage API keys for `imx serve` (create prints the key once).
    Apikey(imx_gateway::api::apikey::ApiKeyArgs),
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
