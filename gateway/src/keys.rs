//! `imx keys generate`: an Ed25519 key pair for signed checkpoints, in the
//! C2SP signed-note key format (`docs/checkpoints.md`); and the checkpoint
//! flags of `imx serve` (`--signing-key`, …).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Subcommand};
use engine::checkpoint::{
    CHECKPOINT_EVERY_EVENTS_DEFAULT, CHECKPOINT_EVERY_MS_DEFAULT, Config, PrivateKey, Witness,
};

/// Longest key file read, in bytes.
pub const KEY_FILE_BYTES_MAX: u64 = 4 * 1024;

#[derive(Debug, Args)]
pub struct KeysArgs {
    #[command(subcommand)]
    pub command: KeysCommand,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Write a new signing key to FILE (mode 0600) and its public key to FILE.pub;
    /// print the public key (give it to auditors: `--trusted-keys`).
    Generate {
        /// Where the private key goes; refused if it exists.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// The key's name (no spaces, no `+`), e.g. the log's host name.
        #[arg(long, default_value = "imx-log")]
        name: String,
    },
}

pub fn run(args: &KeysArgs) -> anyhow::Result<ExitCode> {
    match &args.command {
        KeysCommand::Generate { out, name } => generate(out, name),
    }
}

fn generate(out: &Path, name: &str) -> anyhow::Result<ExitCode> {
    let key = PrivateKey::from_seed(name, rand::random())?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(out)
        .with_context(|| format!("cannot create {} (it must not exist)", out.display()))?;
    file.write_all(format!("{}\n", key.to_text()).as_bytes())?;
    file.sync_all()?;
    let public = key.public().to_text();
    let public_path = PathBuf::from(format!("{}.pub", out.display()));
    std::fs::write(&public_path, format!("{public}\n"))
        .with_context(|| format!("cannot write {}", public_path.display()))?;
    eprintln!(
        "imx keys: private key in {} (keep it secret), public key in {}:",
        out.display(),
        public_path.display()
    );
    println!("{public}");
    Ok(ExitCode::SUCCESS)
}

/// Reads a private key file.
pub fn read_private_key(path: &Path) -> anyhow::Result<PrivateKey> {
    let bytes = imx_gateway::bounded::read_file(path, KEY_FILE_BYTES_MAX)
        .with_context(|| format!("cannot read the signing key {}", path.display()))?;
    let text = String::from_utf8(bytes).context("the signing key is not UTF-8")?;
    Ok(PrivateKey::parse(&text)?)
}

/// `imx serve`'s checkpoint flags.
#[derive(Debug, Clone, Args)]
pub struct CheckpointArgs {
    /// Sign checkpoints of the log with this key (`imx keys generate`); off without it.
    #[arg(long = "signing-key", env = "IMX_SIGNING_KEY", value_name = "FILE")]
    pub signing_key: Option<PathBuf>,
    /// A checkpoint after this many new events at most.
    #[arg(long = "checkpoint-every-events", env = "IMX_CHECKPOINT_EVERY_EVENTS", default_value_t = CHECKPOINT_EVERY_EVENTS_DEFAULT, value_parser = clap::value_parser!(u64).range(1..))]
    pub every_events: u64,
    /// A checkpoint of a growing log after this many ms at most.
    #[arg(long = "checkpoint-every-ms", env = "IMX_CHECKPOINT_EVERY_MS", default_value_t = CHECKPOINT_EVERY_MS_DEFAULT, value_parser = clap::value_parser!(u64).range(1..))]
    pub every_ms: u64,
    /// Append every checkpoint to this witness file too (repeatable), before the database.
    #[arg(
        long = "checkpoint-file",
        env = "IMX_CHECKPOINT_FILE",
        value_name = "FILE",
        value_delimiter = ','
    )]
    pub files: Vec<PathBuf>,
    /// POST every checkpoint to this witness URL too (repeatable), before the database.
    #[arg(
        long = "checkpoint-url",
        env = "IMX_CHECKPOINT_URL",
        value_name = "URL",
        value_delimiter = ','
    )]
    pub urls: Vec<String>,
    /// Publish every checkpoint to this Kafka topic too (repeatable; needs
    /// --kafka-brokers), before the database.
    #[arg(
        long = "checkpoint-topic",
        env = "IMX_CHECKPOINT_TOPIC",
        value_name = "TOPIC",
        value_delimiter = ','
    )]
    pub topics: Vec<String>,
    /// The log's name, the first line of every checkpoint.
    #[arg(
        long = "checkpoint-origin",
        env = "IMX_CHECKPOINT_ORIGIN",
        default_value = "imx-log"
    )]
    pub origin: String,
}

impl CheckpointArgs {
    /// The writer's settings, `None` without `--signing-key`; a flag that
    /// needs the key without it is refused, not ignored. The lease holder
    /// is left empty: the node fills in its name. `brokers`: the node's
    /// `--kafka-brokers`, which `--checkpoint-topic` needs.
    pub fn config(&self, brokers: Option<&str>) -> anyhow::Result<Option<Config>> {
        let Some(path) = &self.signing_key else {
            anyhow::ensure!(
                self.files.is_empty() && self.urls.is_empty() && self.topics.is_empty(),
                "--checkpoint-file, --checkpoint-url and --checkpoint-topic need --signing-key (IMX_SIGNING_KEY): checkpoints are signed"
            );
            return Ok(None);
        };
        let brokers = brokers.filter(|brokers| !brokers.trim().is_empty());
        anyhow::ensure!(
            self.topics.is_empty() || brokers.is_some(),
            "--checkpoint-topic needs --kafka-brokers (IMX_KAFKA_BROKERS): the brokers to publish checkpoints to"
        );
        anyhow::ensure!(
            self.topics.iter().all(|topic| !topic.trim().is_empty()),
            "--checkpoint-topic takes a non-empty topic name"
        );
        anyhow::ensure!(
            self.urls
                .iter()
                .all(|url| url.starts_with("http://") || url.starts_with("https://")),
            "--checkpoint-url takes http:// or https:// URLs"
        );
        anyhow::ensure!(
            !self.origin.is_empty() && !self.origin.contains('\n'),
            "--checkpoint-origin must be one non-empty line"
        );
        Ok(Some(Config {
            key: Arc::new(read_private_key(path)?),
            origin: self.origin.clone(),
            every_events: self.every_events,
            every_ms: self.every_ms,
            witnesses: self
                .files
                .iter()
                .cloned()
                .map(Witness::File)
                .chain(self.urls.iter().cloned().map(Witness::Url))
                .chain(self.topics.iter().map(|topic| Witness::Topic {
                    brokers: brokers.unwrap_or_default().to_owned(),
                    topic: topic.clone(),
                }))
                .collect(),
            holder: String::new(),
        }))
    }
}
