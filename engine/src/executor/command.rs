//! Runs one program (no shell) with JSON on stdin and collects JSON from its
//! stdout, within size and time limits; shared by the `exec` executor and by
//! `imx agent --queue Q -- COMMAND…`.
//!
//! The contract a command keeps (docs/executors.md, "The command contract"):
//! * stdin: the task as JSON (for `exec`: `with.stdin`), or empty;
//! * environment: `PATH`, the variables the caller names and
//!   `IMX_IDEMPOTENCY_KEY`, `IMX_RUN_ID`, `IMX_STEP`, `IMX_ATTEMPT`
//!   (`IMX_INDEX` inside a `for_each`); nothing else is inherited;
//! * stdout: JSON, which becomes the step's output;
//! * exit 0 succeeds; a non-zero exit or a signal fails the attempt
//!   (retryable), and the error ends with the tail of stderr;
//! * the program runs in its own process group, which is killed (SIGKILL)
//!   when the program exits, when the time limit is reached and when the
//!   future is dropped: nothing it started outlives the attempt.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{ChildStdin, Command};

use super::{Attempt, Outcome};

/// Most bytes of stdout collected; more fails the attempt. The runtime's
/// output limit: more could not become a step's output anyway.
pub const STDOUT_BYTES_MAX: usize = super::OUTPUT_BYTES_MAX;
/// Bytes at the end of stderr kept for the error message and the output (4 KiB).
pub const STDERR_TAIL_BYTES_MAX: usize = 4 * 1024;
/// `PATH` given to commands when the engine's own environment has none.
pub const PATH_FALLBACK: &str = "/usr/local/bin:/usr/bin:/bin";

/// What stdout must hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StdoutFormat {
    /// JSON (empty stdout is `null`); anything else fails the attempt, not retryable.
    Json,
    /// JSON becomes the output as it is; any other stdout (also empty) becomes
    /// `{"stdout": text, "stderr": tail, "exit_code": 0}`.
    JsonOrText,
}

/// One command to run. `Debug` shows the program only: arguments,
/// environment and stdin may hold secrets.
#[derive(Clone)]
pub struct CommandSpec {
    /// Program and arguments, passed to the program as they are (no shell).
    pub argv: Vec<String>,
    /// The complete environment of the program (nothing else is inherited).
    pub env: BTreeMap<String, String>,
    pub cwd: Option<PathBuf>,
    /// Written to stdin, which is then closed; `None`: stdin is `/dev/null`.
    pub stdin: Option<Vec<u8>>,
    /// The program's process group is killed when this much time has passed.
    pub timeout: Duration,
    pub stdout_format: StdoutFormat,
    pub stdout_bytes_max: usize,
    pub stderr_tail_bytes_max: usize,
}

impl fmt::Debug for CommandSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CommandSpec")
            .field("program", &self.argv.first())
            .field("args", &self.argv.len().saturating_sub(1))
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("cwd", &self.cwd)
            .field("stdin_bytes", &self.stdin.as_ref().map(Vec::len))
            .field("timeout", &self.timeout)
            .field("stdout_format", &self.stdout_format)
            .finish()
    }
}

impl CommandSpec {
    /// A command with the engine's `PATH` (or [`PATH_FALLBACK`]) as its only
    /// variable, no stdin, JSON stdout and the default limits.
    pub fn new(argv: Vec<String>, timeout: Duration) -> CommandSpec {
        let path = std::env::var("PATH").unwrap_or_else(|_| PATH_FALLBACK.to_owned());
        CommandSpec {
            argv,
            env: BTreeMap::from([("PATH".to_owned(), path)]),
            cwd: None,
            stdin: None,
            timeout,
            stdout_format: StdoutFormat::Json,
            stdout_bytes_max: STDOUT_BYTES_MAX,
            stderr_tail_bytes_max: STDERR_TAIL_BYTES_MAX,
        }
    }

    /// Adds every variable of the engine's own environment (for `imx agent`,
    /// which an operator starts on purpose with the environment its command
    /// needs; `exec` steps never inherit).
    /// Never the node's secrets: they left the environment at start-up
    /// (`crate::secrets`), and the descriptor variable that carried them is dropped.
    pub fn with_inherited_env(mut self) -> CommandSpec {
        self.env
            .extend(std::env::vars_os().filter_map(|(key, value)| {
                let key = key.into_string().ok()?;
                let secret = key.starts_with(crate::secrets::SECRET_ENV_PREFIX)
                    || key == crate::secrets::SECRETS_FD_ENV;
                (!secret).then_some((key, value.into_string().ok()?))
            }));
        self
    }

    /// Adds `IMX_IDEMPOTENCY_KEY`, `IMX_RUN_ID`, `IMX_STEP`, `IMX_ATTEMPT` and,
    /// for a `for_each` item, `IMX_INDEX`; they replace variables of the same name.
    pub fn with_attempt_env(mut self, attempt: &Attempt) -> CommandSpec {
        self.env.extend(attempt_env(attempt));
        self
    }
}

/// The variables that tell a command which attempt it carries out.
pub fn attempt_env(attempt: &Attempt) -> BTreeMap<String, String> {
    let mut env = BTreeMap::from([
        (
            "IMX_IDEMPOTENCY_KEY".to_owned(),
            attempt.idempotency_key.clone(),
        ),
        ("IMX_RUN_ID".to_owned(), attempt.run_id.to_string()),
        ("IMX_STEP".to_owned(), attempt.step.clone()),
        ("IMX_ATTEMPT".to_owned(), attempt.attempt.to_string()),
    ]);
    if let Some(index) = attempt.index {
        env.insert("IMX_INDEX".to_owned(), index.to_string());
    }
    env
}

/// Runs `spec` to its end (or its time limit) and says how the attempt ended.
pub async fn run_command(spec: CommandSpec) -> Outcome {
    let Some((program, args)) = spec.argv.split_first() else {
        return Outcome::failed("the command is empty: name a program to run", false);
    };
    if let Some(cwd) = &spec.cwd
        && !cwd.is_dir()
    {
        return Outcome::failed(
            format!("working directory `{}` is not a directory", cwd.display()),
            false,
        );
    }
    let mut child = match command(&spec, program, args).spawn() {
        Ok(child) => child,
        Err(err) => return spawn_failure(program, &err),
    };
    // The child leads its own group (process_group(0)), so its pid is the group id.
    let group = ProcessGroup::new(child.id());
    let stdin = child.stdin.take();
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Outcome::failed("the command's output pipes were not set up", true);
    };
    let collect = async {
        let wait = async {
            let status = child.wait().await;
            // Whatever the program left behind goes with it; this also closes
            // pipes that background children hold open.
            group.kill_and_disarm();
            status
        };
        let stdout = async {
            let read = read_limited(stdout, spec.stdout_bytes_max).await;
            if matches!(read, Read::TooLarge) {
                group.kill();
            }
            read
        };
        tokio::join!(
            write_stdin(stdin, spec.stdin.as_deref()),
            wait,
            stdout,
            read_tail(stderr, spec.stderr_tail_bytes_max),
        )
    };
    let Ok(((), status, stdout, stderr)) = tokio::time::timeout(spec.timeout, collect).await else {
        // `collect` is gone (and with it the borrows); the guard kills the group.
        drop(group);
        return Outcome::failed(
            format!(
                "`{program}` did not finish within {} ms; its process group was killed",
                spec.timeout.as_millis()
            ),
            true,
        );
    };
    finish(&spec, program, status, stdout, &stderr)
}

/// The program in a new process group, with only `spec.env` and piped output.
fn command(spec: &CommandSpec, program: &str, args: &[String]) -> Command {
    let mut command = Command::new(program);
    command
        .args(args)
        .env_clear()
        .envs(&spec.env)
        .stdin(if spec.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(cwd) = &spec.cwd {
        command.current_dir(cwd);
    }
    command
}

/// Turns what was collected into the attempt's outcome.
fn finish(
    spec: &CommandSpec,
    program: &str,
    status: io::Result<ExitStatus>,
    stdout: Read,
    stderr: &str,
) -> Outcome {
    let status = match status {
        Ok(status) => status,
        Err(err) => return Outcome::failed(format!("waiting for `{program}` failed: {err}"), true),
    };
    let stdout = match stdout {
        Read::Complete(bytes) => bytes,
        Read::TooLarge => {
            return Outcome::failed(
                format!(
                    "`{program}` wrote more than {} bytes to stdout; it was killed",
                    spec.stdout_bytes_max
                ),
                false,
            );
        }
        Read::Failed(err) => {
            return Outcome::failed(format!("reading `{program}`'s stdout failed: {err}"), true);
        }
    };
    if !status.success() {
        let ended = match (status.code(), status.signal()) {
            (Some(code), _) => format!("exited with code {code}"),
            (None, Some(signal)) => format!("was killed by signal {signal}"),
            (None, None) => "ended abnormally".to_owned(),
        };
        let tail = if stderr.is_empty() {
            " (stderr was empty)".to_owned()
        } else {
            format!("; stderr: {stderr}")
        };
        return Outcome::failed(format!("`{program}` {ended}{tail}"), true);
    }
    match parse_stdout(&stdout, spec.stdout_format) {
        Ok(Some(output)) => Outcome::Succeeded { output },
        Ok(None) => Outcome::Succeeded {
            output: json!({
                "stdout": String::from_utf8_lossy(&stdout),
                "stderr": stderr,
                "exit_code": 0,
            }),
        },
        Err(err) => Outcome::failed(
            format!("`{program}` succeeded but its stdout is not JSON: {err}"),
            false,
        ),
    }
}

/// `Ok(None)`: not JSON, and the format allows text.
fn parse_stdout(stdout: &[u8], format: StdoutFormat) -> Result<Option<Value>, String> {
    let blank = stdout.iter().all(u8::is_ascii_whitespace);
    match (format, serde_json::from_slice::<Value>(stdout)) {
        (_, Ok(value)) => Ok(Some(value)),
        (StdoutFormat::Json, Err(_)) if blank => Ok(Some(Value::Null)),
        (StdoutFormat::Json, Err(err)) => Err(err.to_string()),
        (StdoutFormat::JsonOrText, Err(_)) => Ok(None),
    }
}

fn spawn_failure(program: &str, err: &io::Error) -> Outcome {
    match err.kind() {
        io::ErrorKind::NotFound => Outcome::failed(
            format!("program `{program}` was not found (searched the command's PATH)"),
            false,
        ),
        io::ErrorKind::PermissionDenied => Outcome::failed(
            format!("program `{program}` may not be executed: {err}"),
            false,
        ),
        _ if err.raw_os_error() == Some(nix::errno::Errno::ENOEXEC as i32) => Outcome::failed(
            format!("`{program}` is not a program this system can run: {err}"),
            false,
        ),
        // Out of processes or file descriptors: may well pass on another attempt.
        _ => Outcome::failed(format!("starting `{program}` failed: {err}"), true),
    }
}

async fn write_stdin(stdin: Option<ChildStdin>, bytes: Option<&[u8]>) {
    let (Some(mut stdin), Some(bytes)) = (stdin, bytes) else {
        return;
    };
    // A program that exits without reading its input is not an error
    // (broken pipe); its exit status tells how it went.
    let _ = stdin.write_all(bytes).await;
    let _ = stdin.shutdown().await;
}

enum Read {
    Complete(Vec<u8>),
    TooLarge,
    Failed(io::Error),
}

/// Bytes read from a child's pipe at a time.
const PIPE_READ_CHUNK_BYTES: usize = 16 * 1024;

/// Reads to the end, but never holds more than `max` bytes.
async fn read_limited(mut pipe: impl AsyncRead + Unpin, max: usize) -> Read {
    let mut collected = Vec::new();
    let mut buffer = vec![0_u8; PIPE_READ_CHUNK_BYTES];
    loop {
        match pipe.read(&mut buffer).await {
            Ok(0) => return Read::Complete(collected),
            Ok(read) if collected.len() + read > max => return Read::TooLarge,
            Ok(read) => collected.extend_from_slice(&buffer[..read]),
            Err(err) => return Read::Failed(err),
        }
    }
}

/// Reads to the end and keeps the last `max` bytes, as text (`…` marks a cut).
async fn read_tail(mut pipe: impl AsyncRead + Unpin, max: usize) -> String {
    let mut tail = Vec::new();
    let mut cut = false;
    let mut buffer = vec![0_u8; PIPE_READ_CHUNK_BYTES];
    while let Ok(read) = pipe.read(&mut buffer).await {
        if read == 0 {
            break;
        }
        tail.extend_from_slice(&buffer[..read]);
        // Trim in batches so that a chatty program costs linear time.
        if tail.len() > max.saturating_mul(2).max(buffer.len()) {
            tail.drain(..tail.len() - max);
            cut = true;
        }
    }
    if tail.len() > max {
        tail.drain(..tail.len() - max);
        cut = true;
    }
    let text = String::from_utf8_lossy(&tail);
    let text = text.trim_end();
    if cut {
        format!("…{text}")
    } else {
        text.to_owned()
    }
}

/// The program's process group; killed when dropped unless disarmed.
struct ProcessGroup {
    id: Option<Pid>,
    /// Set once the group was killed after its leader was reaped: from then on
    /// the id may be reused by an unrelated group and must not be signalled.
    disarmed: AtomicBool,
}

impl ProcessGroup {
    fn new(leader: Option<u32>) -> ProcessGroup {
        let id = leader
            .and_then(|pid| i32::try_from(pid).ok())
            .map(Pid::from_raw);
        ProcessGroup {
            id,
            disarmed: AtomicBool::new(false),
        }
    }

    fn kill(&self) {
        if let Some(id) = self.id
            && !self.disarmed.load(Ordering::SeqCst)
        {
            // ESRCH (the group is already gone) is the expected case.
            let _ = killpg(id, Signal::SIGKILL);
        }
    }

    fn kill_and_disarm(&self) {
        self.kill();
        self.disarmed.store(true, Ordering::SeqCst);
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.kill();
    }
}
