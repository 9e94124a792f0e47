//! The template sandbox: an [`Evaluator`] that runs evaluations in a pool of
//! long-lived child processes (the `imx` binary's hidden
//! `__template-sandbox` subcommand, [`serve_child`]), each limited by the
//! kernel in address space and CPU time and killed by the parent at its
//! wall-clock deadline. Fuel and byte budgets bound what minijinja counts;
//! the process bounds what it does not (formatting a huge lazy value for
//! `~`, a deep comparison, a large allocation).
//!
//! Plain requests (text and variable paths, see [`is_plain`]) cannot build
//! anything bigger than their scope and are evaluated on the calling thread.
//!
//! Children are not tied to their parent by `PR_SET_PDEATHSIG`: it fires
//! when the *thread* that spawned the child ends, and the blocking threads
//! that spawn children come and go. A child instead ends when its stdin
//! closes (the parent died or dropped it), after at most one evaluation,
//! which its own `RLIMIT_CPU` bounds.

mod child;
mod frame;

use std::io::{self, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use nix::sys::signal::Signal;
use serde::Serialize;

use crate::core::Secrets;
use crate::core::template::{self, Error, Evaluated, Evaluator, Request, is_plain};

pub use child::{ChildLimits, SANDBOX_CPU_SLACK_S, SANDBOX_FILES_MAX, serve_child};
pub use frame::{SANDBOX_ANSWER_BYTES_MAX, SANDBOX_REQUEST_BYTES_MAX};

/// Address space of one sandbox process, in bytes (the binary and its
/// libraries included): past it, an allocation fails and the child aborts.
pub const SANDBOX_MEMORY_BYTES_MAX: u64 = 512 * 1024 * 1024;
/// Wall-clock time one evaluation in the sandbox may take, in ms.
pub const TEMPLATE_EVALUATION_MS_MAX: u64 = 2_000;
/// Sandbox processes of a node: evaluations beyond this many wait for one.
pub const SANDBOX_PROCESSES_DEFAULT: usize = 2;
/// The hidden `imx` subcommand that serves as a sandbox child.
pub const SANDBOX_SUBCOMMAND: &str = "__template-sandbox";

/// How to start the sandbox's children and what limits them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxConfig {
    /// The child program; it is given `args`, then
    /// `--memory-bytes-max N --evaluation-ms-max N`.
    pub program: PathBuf,
    pub args: Vec<String>,
    /// Most children alive at once (started lazily, at least 1).
    pub processes: usize,
    pub memory_bytes_max: u64,
    pub evaluation_ms_max: u64,
}

impl SandboxConfig {
    /// Children run `program args…` with the default limits.
    pub fn for_program<A: Into<String>>(
        program: impl Into<PathBuf>,
        args: impl IntoIterator<Item = A>,
    ) -> Self {
        SandboxConfig {
            program: program.into(),
            args: args.into_iter().map(Into::into).collect(),
            processes: SANDBOX_PROCESSES_DEFAULT,
            memory_bytes_max: SANDBOX_MEMORY_BYTES_MAX,
            evaluation_ms_max: TEMPLATE_EVALUATION_MS_MAX,
        }
    }
}

/// Evaluates templates in child processes (see the module docs).
#[derive(Debug)]
pub struct Sandbox {
    config: SandboxConfig,
    pool: Mutex<Pool>,
    /// Signalled when a child goes back to the pool or a slot frees up.
    freed: Condvar,
    started: AtomicU64,
}

#[derive(Debug, Default)]
struct Pool {
    idle: Vec<Child>,
    /// Children alive: idle ones and those evaluating.
    live: usize,
}

impl Sandbox {
    pub fn new(config: SandboxConfig) -> Self {
        Sandbox {
            config,
            pool: Mutex::new(Pool::default()),
            freed: Condvar::new(),
            started: AtomicU64::new(0),
        }
    }

    /// Children started so far (a replaced child counts again).
    pub fn children_started(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }

    fn in_child(&self, request: &Request<'_>, secrets: &Secrets) -> Result<Evaluated, Error> {
        let frame = encode(request, secrets)?;
        let mut child = self.take()?;
        let deadline = Duration::from_millis(self.config.evaluation_ms_max);
        let answer = match child
            .stdin
            .write_all(&frame)
            .and_then(|()| child.stdin.flush())
        {
            Ok(()) => child.answers.recv_timeout(deadline),
            Err(error) => Ok(Err(error)),
        };
        match answer {
            Ok(Ok(body)) => match serde_json::from_slice::<frame::Answer>(&body) {
                Ok(answer) => {
                    self.give_back(child);
                    answer
                }
                Err(error) => {
                    child.kill();
                    self.discard();
                    Err(sandbox_error(format!(
                        "the sandbox answered garbage: {error}"
                    )))
                }
            },
            Ok(Err(_)) | Err(RecvTimeoutError::Disconnected) => {
                let status = child.kill();
                self.discard();
                Err(self.death(status))
            }
            Err(RecvTimeoutError::Timeout) => {
                child.kill();
                self.discard();
                Err(sandbox_error(format!(
                    "it went past its time limit of {} ms",
                    self.config.evaluation_ms_max
                )))
            }
        }
    }

    /// An idle child, or a new one when fewer than `processes` are alive.
    fn take(&self) -> Result<Child, Error> {
        let mut pool = self.lock();
        loop {
            if let Some(mut child) = pool.idle.pop() {
                // One killed from outside while idle is replaced, not handed a request.
                if matches!(child.process.try_wait(), Ok(None)) {
                    return Ok(child);
                }
                drop(child);
                pool.live = pool.live.saturating_sub(1);
                continue;
            }
            if pool.live < self.config.processes.max(1) {
                pool.live += 1;
                drop(pool);
                return self.spawn().inspect_err(|_| self.discard());
            }
            pool = self
                .freed
                .wait(pool)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }

    fn give_back(&self, child: Child) {
        self.lock().idle.push(child);
        self.freed.notify_one();
    }

    /// A child is gone (killed and reaped by its owner): its slot is free.
    fn discard(&self) {
        let mut pool = self.lock();
        pool.live = pool.live.saturating_sub(1);
        drop(pool);
        self.freed.notify_one();
    }

    fn lock(&self) -> MutexGuard<'_, Pool> {
        // The pool's invariants hold between statements: a panic elsewhere
        // does not leave it half-changed.
        self.pool
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn spawn(&self) -> Result<Child, Error> {
        let config = &self.config;
        let mut command = Command::new(&config.program);
        command
            .args(&config.args)
            .arg("--memory-bytes-max")
            .arg(config.memory_bytes_max.to_string())
            .arg("--evaluation-ms-max")
            .arg(config.evaluation_ms_max.to_string())
            // Secrets travel with each request, never in the child's environment.
            .env_clear()
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let cannot_start = |error: io::Error| {
            sandbox_error(format!(
                "cannot start the sandbox process {}: {error}",
                config.program.display()
            ))
        };
        let mut process = command.spawn().map_err(cannot_start)?;
        self.started.fetch_add(1, Ordering::Relaxed);
        let (stdin, stdout) = match (process.stdin.take(), process.stdout.take()) {
            (Some(stdin), Some(stdout)) => (stdin, stdout),
            _ => {
                let _ = process.kill();
                let _ = process.wait();
                return Err(cannot_start(io::Error::other("no pipes")));
            }
        };
        let (sender, answers) = mpsc::sync_channel(1);
        // One reader per child: the parent waits on the channel with a
        // deadline; the reader ends when the child's stdout closes.
        let reader = std::thread::Builder::new()
            .name("imx-sandbox-reader".to_owned())
            .spawn(move || {
                let mut stdout = BufReader::new(stdout);
                loop {
                    let frame = frame::read_frame(&mut stdout, SANDBOX_ANSWER_BYTES_MAX)
                        .and_then(|frame| frame.ok_or_else(|| io::ErrorKind::UnexpectedEof.into()));
                    let failed = frame.is_err();
                    if sender.send(frame).is_err() || failed {
                        return;
                    }
                }
            });
        let child = Child {
            process,
            stdin,
            answers,
        };
        match reader {
            Ok(_) => Ok(child),
            Err(error) => Err(cannot_start(error)),
        }
    }

    /// Why a child ended, from its exit status.
    fn death(&self, status: Option<ExitStatus>) -> Error {
        let signal = status
            .and_then(|status| status.signal())
            .and_then(|number| Signal::try_from(number).ok());
        sandbox_error(match signal {
            // Rust aborts on a failed allocation; RLIMIT_AS makes it fail.
            Some(Signal::SIGABRT) => format!(
                "it went past its memory limit of {} bytes",
                self.config.memory_bytes_max
            ),
            Some(Signal::SIGXCPU) => format!(
                "it went past its CPU time limit ({} ms and {SANDBOX_CPU_SLACK_S} s of slack)",
                self.config.evaluation_ms_max
            ),
            _ => match status {
                Some(status) => format!("the sandbox process died: {status}"),
                None => "the sandbox process died".to_owned(),
            },
        })
    }
}

impl Evaluator for Sandbox {
    fn evaluate(&self, request: &Request<'_>, secrets: &Secrets) -> Result<Evaluated, Error> {
        if is_plain(request) {
            return template::evaluate(request, secrets);
        }
        self.in_child(request, secrets)
    }
}

/// One child process; killed and reaped when dropped.
#[derive(Debug)]
struct Child {
    process: std::process::Child,
    stdin: ChildStdin,
    answers: Receiver<io::Result<Vec<u8>>>,
}

impl Child {
    /// Kills (if still running) and reaps the process: its exit status.
    fn kill(&mut self) -> Option<ExitStatus> {
        let _ = self.process.kill();
        self.process.wait().ok()
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The request frame, checked against the limit before a child is taken.
fn encode(request: &Request<'_>, secrets: &Secrets) -> Result<Vec<u8>, Error> {
    #[derive(Serialize)]
    struct Outgoing<'a, 'b> {
        request: &'a Request<'b>,
        secrets: &'a Secrets,
    }
    let mut frame = vec![0; 4];
    serde_json::to_writer(&mut frame, &Outgoing { request, secrets })
        .map_err(|error| sandbox_error(format!("cannot encode the request: {error}")))?;
    let length = frame.len() - 4;
    if length > SANDBOX_REQUEST_BYTES_MAX {
        return Err(sandbox_error(format!(
            "the request (template and scope) is {length} bytes, more than the limit of {SANDBOX_REQUEST_BYTES_MAX} bytes"
        )));
    }
    frame[..4].copy_from_slice(&(length as u32).to_be_bytes());
    Ok(frame)
}

fn sandbox_error(detail: String) -> Error {
    Error::Sandbox { detail }
}
