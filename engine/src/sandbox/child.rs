//! The sandbox child: limits itself (address space, CPU time, files,
//! processes, no new privileges), then answers evaluation requests on
//! stdin/stdout until its parent closes stdin.

use std::io::{self, BufReader, BufWriter};

use nix::sys::resource::{Resource, UsageWho, getrlimit, getrusage, setrlimit};

use super::frame::{
    Answer, Envelope, SANDBOX_ANSWER_BYTES_MAX, SANDBOX_REQUEST_BYTES_MAX, read_frame, write_frame,
};
use crate::core::template::{self, Error};

/// Open files a child may hold: stdin, stdout, stderr and a few the runtime
/// library opens at start.
pub const SANDBOX_FILES_MAX: u64 = 16;
/// CPU seconds a child may spend on one evaluation beyond its time limit
/// before the kernel stops it (SIGXCPU): the backstop for a parent that
/// died and so cannot kill it.
pub const SANDBOX_CPU_SLACK_S: u64 = 2;

/// The limits a child sets on itself, given on its command line by the parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChildLimits {
    pub memory_bytes_max: u64,
    pub evaluation_ms_max: u64,
}

/// Runs the sandbox child on this process's stdin and stdout: the body of
/// `imx __template-sandbox`. Returns when the parent closes stdin.
pub fn serve_child(limits: ChildLimits) -> io::Result<()> {
    limit_self(limits)?;
    let mut input = BufReader::new(io::stdin().lock());
    let mut output = BufWriter::new(io::stdout().lock());
    while let Some(frame) = read_frame(&mut input, SANDBOX_REQUEST_BYTES_MAX)? {
        limit_cpu(limits.evaluation_ms_max)?;
        let answer: Answer = match serde_json::from_slice::<Envelope>(&frame) {
            Ok(envelope) => template::evaluate(&envelope.request, &envelope.secrets),
            Err(error) => Err(Error::Sandbox {
                detail: format!("the sandbox could not read the request: {error}"),
            }),
        };
        drop(frame);
        write_frame(&mut output, &answer, SANDBOX_ANSWER_BYTES_MAX)?;
    }
    Ok(())
}

fn limit_self(limits: ChildLimits) -> io::Result<()> {
    // An allocation past the address-space limit fails, and Rust aborts the
    // process on it: the parent sees SIGABRT.
    setrlimit(
        Resource::RLIMIT_AS,
        limits.memory_bytes_max,
        limits.memory_bytes_max,
    )?;
    setrlimit(
        Resource::RLIMIT_NOFILE,
        SANDBOX_FILES_MAX,
        SANDBOX_FILES_MAX,
    )?;
    // No threads or processes of its own (the count is per user, so 0 stops any fork).
    setrlimit(Resource::RLIMIT_NPROC, 0, 0)?;
    setrlimit(Resource::RLIMIT_CORE, 0, 0)?;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    nix::sys::prctl::set_no_new_privs()?;
    Ok(())
}

/// RLIMIT_CPU counts the whole life of the process, and a child lives for
/// many evaluations: before each one the soft limit is moved to the CPU time
/// used so far plus this evaluation's allowance.
fn limit_cpu(evaluation_ms_max: u64) -> io::Result<()> {
    let usage = getrusage(UsageWho::RUSAGE_SELF)?;
    let used_s = (usage.user_time().tv_sec() + usage.system_time().tv_sec()).max(0) as u64;
    let allowance_s = evaluation_ms_max.div_ceil(1000) + SANDBOX_CPU_SLACK_S;
    let (_, hard) = getrlimit(Resource::RLIMIT_CPU)?;
    setrlimit(
        Resource::RLIMIT_CPU,
        (used_s + allowance_s + 1).min(hard),
        hard,
    )?;
    Ok(())
}
