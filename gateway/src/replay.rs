//! `imx replay export|verify|inspect|check`: the auditor's commands, a thin
//! layer over the `replay` crate (argument parsing, store, output, exit codes).

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use engine::core::workflow::Workflow;
use engine::store::{AuditTrail, Store};
use uuid::Uuid;

#[derive(Debug, Args)]
pub struct ReplayArgs {
    #[command(subcommand)]
    pub command: ReplayCommand,
}

#[derive(Debug, Subcommand)]
pub enum ReplayCommand {
    /// Write the event log (or one run) as JSON Lines to stdout; the head to keep goes to stderr.
    Export {
        /// Only this run's events.
        #[arg(long)]
        run: Option<Uuid>,
        /// Only events after this global position.
        #[arg(long, default_value_t = 0)]
        since: u64,
    },
    /// Recompute every hash chain of an export FILE (offline) or of the store; exit 1 at the first problem.
    Verify {
        file: Option<PathBuf>,
        /// The head recorded at export time: detects a truncated or rewritten tail.
        #[arg(long)]
        expect_head: Option<String>,
        /// The log hash recorded for a position (repeatable): checked wherever
        /// the history proves that position's log hash, the header's `start` included.
        #[arg(long, value_name = "POSITION:HASH")]
        expect: Vec<replay::verify::Expectation>,
        /// Public keys whose signed checkpoints the history must match (one per line;
        /// several for rotation); exit 3 if part of the history is covered by none.
        #[arg(long, value_name = "KEYS")]
        trusted_keys: Option<PathBuf>,
        /// Checkpoint notes (a witness file; repeatable). Default for the store: its
        /// `checkpoints` table; an export FILE needs one.
        #[arg(long, value_name = "FILE", requires = "trusted_keys")]
        checkpoints: Vec<PathBuf>,
        /// Checkpoint notes from this Kafka topic (a witness topic, read from its
        /// start to its end; repeatable; needs --kafka-brokers).
        #[arg(long, value_name = "TOPIC", requires_all = ["trusted_keys", "kafka_brokers"])]
        checkpoints_topic: Vec<String>,
        /// Kafka bootstrap servers (`host:port,…`) for --checkpoints-topic.
        #[arg(long, env = "IMX_KAFKA_BROKERS", value_name = "HOST:PORT,…")]
        kafka_brokers: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Print a Merkle proof as JSON: that an event is in the log (`--run R --seq S`),
    /// or that the log of NEW events extends the log of OLD (`--consistency OLD NEW`).
    Prove {
        #[arg(long, requires = "seq", conflicts_with = "consistency")]
        run: Option<Uuid>,
        #[arg(long, requires = "run")]
        seq: Option<u64>,
        /// The tree size to prove in (default: the newest checkpoint's, else the log's length).
        #[arg(long, conflicts_with = "consistency")]
        tree_size: Option<u64>,
        #[arg(long, num_args = 2, value_names = ["OLD", "NEW"], required_unless_present = "run")]
        consistency: Option<Vec<u64>>,
    },
    /// Verify a proof FILE offline (no database); exit 1 if it does not verify.
    VerifyProof {
        file: PathBuf,
        /// The root you trust for the proof's tree size (e.g. from a checkpoint).
        #[arg(long, value_name = "HASH")]
        root: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// The state of a run as of a seq, rebuilt with the core's own replay, and its timeline.
    Inspect {
        run: Uuid,
        #[arg(long)]
        at: Option<u64>,
        /// Read an export instead of the store.
        #[arg(long)]
        file: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// List runs in flight on other versions and whether NEW.yaml could take them over; exit 1 if any is affected.
    Check {
        new: PathBuf,
        /// An old version's YAML, for runs whose version the registry lacks.
        #[arg(long)]
        old: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

/// Runs `imx replay …` on the store at `url` (the global `--database-url`).
pub fn run(args: ReplayArgs, url: &str) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(dispatch(args, url))
}

async fn open(url: &str) -> anyhow::Result<Store> {
    engine::store::open(url).await.with_context(|| {
        format!(
            "cannot open the store {}",
            crate::serve::without_password(url)
        )
    })
}

async fn dispatch(args: ReplayArgs, url: &str) -> anyhow::Result<ExitCode> {
    match args.command {
        ReplayCommand::Export { run, since } => {
            let store = open(url).await?;
            let mut out = BufWriter::new(std::io::stdout().lock());
            let scope = replay::Scope { run, since };
            let trailer = replay::export(&store, scope, chrono::Utc::now(), &mut out).await?;
            out.flush()?;
            eprintln!(
                "exported {} events up to position {}; keep this head apart from the file:\n{}\n(check later with `imx replay verify FILE --expect-head {}`)",
                trailer.events, trailer.position, trailer.head, trailer.head
            );
            Ok(ExitCode::SUCCESS)
        }
        ReplayCommand::Verify {
            file,
            expect_head,
            expect,
            trusted_keys,
            checkpoints,
            checkpoints_topic,
            kafka_brokers,
            json,
        } => {
            let mut options = replay::Options {
                expect_head,
                expect,
                checkpoints: trusted_keys.is_some(),
            };
            if let Some(keys) = &trusted_keys {
                let sources = CheckpointSources {
                    files: &checkpoints,
                    topics: &checkpoints_topic,
                    brokers: kafka_brokers.as_deref().unwrap_or_default(),
                    store: file.is_none().then_some(url),
                };
                let trusted = trusted_checkpoints(keys, &sources).await?;
                if trusted.untrusted > 0 {
                    eprintln!(
                        "note: {} checkpoints are signed by no trusted key: not used",
                        trusted.untrusted
                    );
                }
                options.expect.extend(trusted.expectations());
            }
            let outcome = match file {
                Some(path) => {
                    let reader = BufReader::new(
                        File::open(&path)
                            .with_context(|| format!("cannot open {}", path.display()))?,
                    );
                    replay::verify_reader(reader, options)
                }
                None => replay::online::verify_store(&open(url).await?, options).await?,
            };
            report_verification(outcome, json)
        }
        ReplayCommand::Inspect {
            run,
            at,
            file,
            json,
        } => {
            let inspection = match file {
                Some(path) => {
                    let reader = BufReader::new(
                        File::open(&path)
                            .with_context(|| format!("cannot open {}", path.display()))?,
                    );
                    replay::inspect::inspect_reader(reader, run, at)?
                }
                None => replay::inspect::inspect_store(&open(url).await?, run, at).await?,
            };
            if json {
                println!("{:#}", inspection.to_json());
            } else {
                print!("{}", inspection.render());
            }
            Ok(ExitCode::SUCCESS)
        }
        ReplayCommand::Check { new, old, json } => check(url, &new, old.as_deref(), json).await,
        ReplayCommand::Prove {
            run,
            seq,
            tree_size,
            consistency,
        } => {
            let store = open(url).await?;
            let proof = match (run, seq, consistency.as_deref()) {
                (Some(run), Some(seq), _) => {
                    replay::proof::prove_inclusion(&store, run, seq, tree_size).await?
                }
                (_, _, Some([old, new])) => {
                    replay::proof::prove_consistency(&store, *old, *new).await?
                }
                _ => anyhow::bail!("pass --run R --seq S, or --consistency OLD NEW"),
            };
            println!("{}", serde_json::to_string_pretty(&proof)?);
            Ok(ExitCode::SUCCESS)
        }
        ReplayCommand::VerifyProof { file, root, json } => verify_proof(&file, root, json),
    }
}

/// Where `verify --trusted-keys` reads checkpoints from.
struct CheckpointSources<'a> {
    /// `--checkpoints` files.
    files: &'a [PathBuf],
    /// `--checkpoints-topic` topics of `brokers`.
    topics: &'a [String],
    brokers: &'a str,
    /// The store's table, when no file or topic is named (a store verify).
    store: Option<&'a str>,
}

/// Reads `--trusted-keys` and the checkpoints (the `--checkpoints` files and
/// `--checkpoints-topic` topics, else the store's table when verifying it).
async fn trusted_checkpoints(
    keys: &Path,
    sources: &CheckpointSources<'_>,
) -> anyhow::Result<replay::trusted::TrustedCheckpoints> {
    let text = read_text(keys, KEYS_FILE_BYTES_MAX)?;
    let keys = engine::checkpoint::TrustedKey::parse_all(&text)
        .with_context(|| format!("in --trusted-keys {}", keys.display()))?;
    anyhow::ensure!(
        !keys.is_empty(),
        "--trusted-keys names no key: one public key (`imx keys generate`) per line"
    );
    let mut notes = Vec::new();
    for file in sources.files {
        let text = read_text(file, CHECKPOINTS_FILE_BYTES_MAX)?;
        notes.extend(engine::checkpoint::split_notes(&text));
    }
    for topic in sources.topics {
        let (brokers, topic) = (sources.brokers.to_owned(), topic.clone());
        // librdkafka's consumer blocks: off the async workers.
        let read = tokio::task::spawn_blocking(move || {
            engine::checkpoint::read_topic(&brokers, &topic, CHECKPOINTS_FILE_BYTES_MAX)
        })
        .await??;
        notes.extend(read);
    }
    if sources.files.is_empty() && sources.topics.is_empty() {
        let Some(url) = sources.store else {
            anyhow::bail!(
                "--trusted-keys with an export FILE needs --checkpoints FILE or --checkpoints-topic TOPIC: the checkpoints kept outside the database (a witness)"
            );
        };
        let store = open(url).await?;
        let mut after = 0;
        loop {
            let page = store.checkpoints(after, CHECKPOINTS_PAGE).await?;
            let Some(last) = page.last() else { break };
            after = last.tree_size;
            notes.extend(page.into_iter().map(|record| record.note));
        }
    }
    Ok(replay::trusted::TrustedCheckpoints::from_notes(
        &keys,
        notes.iter().map(String::as_str),
    )?)
}

/// Longest `--trusted-keys` file read, in bytes.
const KEYS_FILE_BYTES_MAX: u64 = 1024 * 1024;
/// Longest `--checkpoints` file read, in bytes.
const CHECKPOINTS_FILE_BYTES_MAX: u64 = 256 * 1024 * 1024;
/// Checkpoints read from the store per query.
const CHECKPOINTS_PAGE: u32 = 1_000;

fn read_text(path: &Path, bytes_max: u64) -> anyhow::Result<String> {
    let bytes = imx_gateway::bounded::read_file(path, bytes_max)
        .with_context(|| format!("cannot read {}", path.display()))?;
    String::from_utf8(bytes).with_context(|| format!("{} is not UTF-8", path.display()))
}

fn report_verification(
    outcome: Result<replay::Summary, replay::Problem>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    match outcome {
        Ok(summary) => {
            let unprovable = summary
                .coverage
                .as_ref()
                .is_some_and(|coverage| coverage.unprovable.is_some());
            if json {
                println!(
                    "{:#}",
                    serde_json::json!({ "ok": true, "summary": summary })
                );
            } else {
                print!("{}", summary.render());
            }
            // Chains that verify but that no trusted checkpoint covers are
            // not a clean bill: exit 3 (docs/auditing.md).
            Ok(if unprovable {
                ExitCode::from(3)
            } else {
                ExitCode::SUCCESS
            })
        }
        Err(problem) => {
            if json {
                println!(
                    "{:#}",
                    serde_json::json!({ "ok": false, "problem": problem })
                );
            }
            // `verify failed: IMX05xx: run … seq … at line …: what`, then what to do.
            eprintln!("verify failed: {problem}\n  hint: {}", problem.fault.hint());
            Ok(ExitCode::FAILURE)
        }
    }
}

fn verify_proof(path: &Path, root: Option<String>, json: bool) -> anyhow::Result<ExitCode> {
    let bytes = imx_gateway::bounded::read_file(path, replay::proof::PROOF_BYTES_MAX)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let text = String::from_utf8(bytes).map_err(|_| replay::Error::ProofFile {
        detail: "not UTF-8".to_owned(),
    });
    let outcome = text
        .and_then(|text| replay::proof::verify_proof(&text))
        .and_then(|proven| match &root {
            Some(trusted) if !trusted.eq_ignore_ascii_case(&proven.root) => {
                Err(replay::Error::ProofInvalid {
                    detail: format!(
                        "it ends at root {}, not at the trusted root {trusted}",
                        proven.root
                    ),
                })
            }
            _ => Ok(proven),
        });
    match outcome {
        Ok(proven) => {
            if json {
                println!("{:#}", serde_json::json!({ "ok": true, "proven": proven }));
            } else {
                println!("ok: {}", proven.statement);
                if root.is_none() {
                    println!(
                        "note: no --root given: the root is the file's own claim; compare it with a signed checkpoint of size {}",
                        proven.tree_size
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(error @ (replay::Error::ProofInvalid { .. } | replay::Error::ProofFile { .. })) => {
            if json {
                println!(
                    "{:#}",
                    serde_json::json!({ "ok": false, "code": error.code(), "error": error.to_string() })
                );
            }
            eprintln!("verify-proof failed: {error}");
            Ok(ExitCode::FAILURE)
        }
        Err(error) => Err(error.into()),
    }
}

fn load_workflow(path: &Path) -> anyhow::Result<Option<Workflow>> {
    let source = crate::validate::read_workflow_source(path)
        .map_err(|message| anyhow::anyhow!("{}: {message}", path.display()))?;
    let parsed = engine::core::dsl::parse(&source);
    for diagnostic in &parsed.diagnostics {
        eprintln!("{}", diagnostic.render(&path.display().to_string()));
    }
    Ok(parsed.workflow)
}

async fn check(url: &str, new: &Path, old: Option<&Path>, json: bool) -> anyhow::Result<ExitCode> {
    let Some(new_workflow) = load_workflow(new)? else {
        return Ok(ExitCode::FAILURE);
    };
    let old_workflow = match old {
        Some(path) => match load_workflow(path)? {
            Some(workflow) => Some(workflow),
            None => return Ok(ExitCode::FAILURE),
        },
        None => None,
    };
    let store = open(url).await?;
    // Old models come from the registry; --old serves versions it lacks.
    let runs = replay::online::check_runs(&store, &new_workflow, old_workflow.as_ref()).await?;
    let version = engine::core::version::version_of(&new_workflow);
    if json {
        println!(
            "{:#}",
            serde_json::json!({ "workflow": new_workflow.name, "version": version, "runs": runs })
        );
    } else {
        print!(
            "{}",
            replay::check::render_report(&new_workflow.name, &version, &runs)
        );
    }
    let affected = runs.iter().any(|run| !run.is_safe());
    Ok(if affected {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
