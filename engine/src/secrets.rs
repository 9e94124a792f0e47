//! The node's secrets (`IMX_SECRET_<NAME>`): read once at start-up and then
//! kept out of the process's environment block, so that a child process
//! (an `exec` step, an agent's command) cannot read them from
//! `/proc/<node pid>/environ` (docs/executors.md, "Secrets and child processes").
//!
//! Why a re-exec: `/proc/PID/environ` shows the environment the process was
//! started with; `std::env::remove_var` does not change it. So a node started
//! with secrets writes them to an anonymous memory file (memfd) and executes
//! itself again, same argv, without them and with `IMX_SECRETS_FD=<fd>`. The
//! new image reads the secrets from that descriptor and empties the file.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::sync::OnceLock;

use crate::core::scope::Secrets;

/// Environment variable prefix of secrets: `IMX_SECRET_<NAME>`.
pub const SECRET_ENV_PREFIX: &str = "IMX_SECRET_";

/// Names the descriptor that carries the secrets into the re-executed node.
pub const SECRETS_FD_ENV: &str = "IMX_SECRETS_FD";
/// Most bytes of secrets handed over (JSON): more than an environment holds.
pub const SECRETS_BYTES_MAX: usize = 4 * 1024 * 1024;

/// The secrets taken at start-up; unset in processes that never took them
/// (library users, tests), which read the environment instead.
static NODE_SECRETS: OnceLock<Secrets> = OnceLock::new();

/// Why the secrets could not be taken out of the environment. Codes `IMX07xx`.
#[derive(Debug, thiserror::Error, strum::EnumDiscriminants)]
#[strum_discriminants(
    name(ErrorKind),
    vis(pub),
    derive(strum::VariantArray, Hash, PartialOrd, Ord)
)]
#[non_exhaustive]
pub enum Error {
    #[error("`{SECRET_ENV_PREFIX}{name}` is not valid UTF-8; secrets must be text")]
    NotUtf8 { name: String },
    #[error("cannot hand the secrets over to a re-executed imx: {0}")]
    HandOver(String),
    #[error("cannot read the secrets from {SECRETS_FD_ENV}: {0}")]
    Receive(String),
}

impl ErrorKind {
    /// The stable code of errors of this kind (`docs/errors.md`). The
    /// message does not open with it: a command prints it at start-up as it always did, so it kept its wording.
    pub const fn code(self) -> &'static str {
        match self {
            ErrorKind::NotUtf8 => "IMX0701",
            ErrorKind::HandOver => "IMX0702",
            ErrorKind::Receive => "IMX0703",
        }
    }
}

impl Error {
    /// The stable code (`docs/errors.md`), as data.
    pub fn code(&self) -> &'static str {
        ErrorKind::from(self).code()
    }
}

/// Call at the start of every command that renders or runs steps, before a
/// thread is started. With `IMX_SECRET_*` variables set this does not return:
/// it re-executes the binary without them (an error is returned only if that
/// fails). In the re-executed process it takes the secrets from
/// `IMX_SECRETS_FD`. Either way it then marks the process non-dumpable, so a
/// same-user (non-root) child cannot read its memory or environment through /proc.
pub fn take_from_environment() -> Result<(), Error> {
    let found = secret_variables()?;
    let secrets = match std::env::var_os(SECRETS_FD_ENV) {
        Some(fd) if found.is_empty() => receive(&fd)?,
        Some(_) => {
            return Err(Error::Receive(format!(
                "both {SECRETS_FD_ENV} and {SECRET_ENV_PREFIX}* variables are set; \
                 set only {SECRET_ENV_PREFIX}* variables"
            )));
        }
        None if found.is_empty() => BTreeMap::new(),
        None => return Err(hand_over_and_reexec(&found)),
    };
    // A second call (tests) keeps the first set: the environment no longer has them.
    let _ = NODE_SECRETS.set(secrets.into_iter().collect());
    nix::sys::prctl::set_dumpable(false)
        .map_err(|err| Error::Receive(format!("cannot mark the process non-dumpable: {err}")))
}

/// `secrets.NAME` for this node: what [`take_from_environment`] took, or
/// else the `IMX_SECRET_<NAME>` variables of the environment.
pub fn node_secrets() -> Secrets {
    match NODE_SECRETS.get() {
        Some(secrets) => secrets.clone(),
        None => std::env::vars_os()
            .filter_map(|(key, value)| {
                let name = key.to_str()?.strip_prefix(SECRET_ENV_PREFIX)?.to_owned();
                Some((name, value.into_string().ok()?))
            })
            .filter(|(name, _)| !name.is_empty())
            .collect(),
    }
}

/// Every `IMX_SECRET_<NAME>` variable by name (without the prefix).
fn secret_variables() -> Result<BTreeMap<String, String>, Error> {
    let mut found = BTreeMap::new();
    for (key, value) in std::env::vars_os() {
        let Some(name) = key.to_str().and_then(|k| k.strip_prefix(SECRET_ENV_PREFIX)) else {
            continue;
        };
        let value = value.into_string().map_err(|_| Error::NotUtf8 {
            name: name.to_owned(),
        })?;
        // An empty name (`IMX_SECRET_=x`) is no secret but is removed all the same.
        found.insert(name.to_owned(), value);
    }
    Ok(found)
}

/// Writes the secrets to a memfd and executes this binary again without
/// them. Returns only on failure.
fn hand_over_and_reexec(found: &BTreeMap<String, String>) -> Error {
    let hand_over = || -> Result<std::io::Error, String> {
        let fd = nix::sys::memfd::memfd_create(c"imx-secrets", nix::sys::memfd::MFdFlags::empty())
            .map_err(|err| format!("memfd_create: {err}"))?;
        let number = fd.as_raw_fd();
        let mut file = File::from(fd);
        let secrets: BTreeMap<&String, &String> =
            found.iter().filter(|(name, _)| !name.is_empty()).collect();
        let json = serde_json::to_vec(&secrets).map_err(|err| err.to_string())?;
        file.write_all(&json).map_err(|err| err.to_string())?;
        let mut args = std::env::args_os();
        let argv0 = args.next().unwrap_or_else(|| OsString::from("imx"));
        // /proc/self/exe: the same binary even if argv[0] was relative and the
        // working directory changed, or the file was replaced since.
        let mut command = std::process::Command::new("/proc/self/exe");
        command.arg0(argv0).args(args);
        for name in found.keys() {
            command.env_remove(format!("{SECRET_ENV_PREFIX}{name}"));
        }
        command.env(SECRETS_FD_ENV, number.to_string());
        // `file` (the descriptor) must stay open across exec: no MFD_CLOEXEC.
        let failed = command.exec();
        drop(file);
        Ok(failed)
    };
    match hand_over() {
        Ok(exec_failed) => Error::HandOver(format!("exec /proc/self/exe: {exec_failed}")),
        Err(message) => Error::HandOver(message),
    }
}

/// Reads the secrets from the inherited descriptor `fd` and empties the
/// memory file. The descriptor itself stays open (closing a descriptor by
/// number needs `unsafe`, which this workspace forbids), but on an empty file.
fn receive(fd: &std::ffi::OsStr) -> Result<BTreeMap<String, String>, Error> {
    let number: u32 = fd
        .to_str()
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| Error::Receive(format!("`{}` is not a descriptor", fd.display())))?;
    let path = format!("/proc/self/fd/{number}");
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|err| Error::Receive(format!("open {path}: {err}")))?;
    let mut json = Vec::new();
    (&mut file)
        .take(SECRETS_BYTES_MAX as u64 + 1)
        .read_to_end(&mut json)
        .map_err(|err| Error::Receive(format!("read {path}: {err}")))?;
    file.set_len(0)
        .map_err(|err| Error::Receive(format!("empty {path}: {err}")))?;
    if json.len() > SECRETS_BYTES_MAX {
        return Err(Error::Receive(format!(
            "more than {SECRETS_BYTES_MAX} bytes of secrets"
        )));
    }
    if json.is_empty() {
        // Already taken: an `imx` started by a command that inherited the descriptor.
        return Ok(BTreeMap::new());
    }
    serde_json::from_slice(&json).map_err(|err| Error::Receive(format!("not a secrets map: {err}")))
}
