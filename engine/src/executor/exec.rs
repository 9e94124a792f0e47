//! The `exec` executor: runs a local program (argv, no shell) for a step, off
//! unless the node enables it, through [`super::command::run_command`].

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use super::command::{
    CommandSpec, PATH_FALLBACK, STDERR_TAIL_BYTES_MAX, STDOUT_BYTES_MAX, StdoutFormat, run_command,
};
use super::input::{self, kind_of};
use super::{Attempt, BoxFuture, Executor, Outcome, deadline_passed, time_left};
use crate::core::workflow::StepKind;

/// The `imx serve` / `imx run` flag that enables `exec` steps.
pub const ENABLE_EXEC_FLAG: &str = "--enable-exec";
/// The environment variable that enables `exec` steps (`IMX_ENABLE_EXEC=1`).
pub const ENABLE_EXEC_ENV: &str = "IMX_ENABLE_EXEC";
/// Time limit of a command whose attempt has no deadline: 1 hour, in ms.
pub const EXEC_TIMEOUT_MS_DEFAULT: u64 = 60 * 60 * 1000;
/// Most arguments in `with.command`.
pub const COMMAND_ARGS_MAX: usize = 4096;

/// The `with` fields of an `exec` step.
const FIELDS: [&str; 4] = ["command", "env", "cwd", "stdin"];

/// How this node runs `exec` steps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecConfig {
    /// Off by default: an `exec` step runs any program as the engine's user.
    pub enabled: bool,
    /// `PATH` of every command (the only variable taken from the engine).
    pub path: String,
    pub stdout_bytes_max: usize,
    pub stderr_tail_bytes_max: usize,
    /// Time limit when the attempt has no deadline.
    pub timeout_ms_default: u64,
}

impl Default for ExecConfig {
    /// Disabled; `PATH` from the engine's environment.
    fn default() -> ExecConfig {
        ExecConfig {
            enabled: false,
            path: std::env::var("PATH").unwrap_or_else(|_| PATH_FALLBACK.to_owned()),
            stdout_bytes_max: STDOUT_BYTES_MAX,
            stderr_tail_bytes_max: STDERR_TAIL_BYTES_MAX,
            timeout_ms_default: EXEC_TIMEOUT_MS_DEFAULT,
        }
    }
}

impl ExecConfig {
    /// The default config, enabled.
    pub fn enabled() -> ExecConfig {
        ExecConfig {
            enabled: true,
            ..ExecConfig::default()
        }
    }
}

/// Runs `exec` steps.
#[derive(Debug, Clone)]
pub struct ExecExecutor {
    config: ExecConfig,
}

impl ExecExecutor {
    pub fn new(config: ExecConfig) -> ExecExecutor {
        ExecExecutor { config }
    }

    async fn run(&self, attempt: &Attempt) -> Outcome {
        if !self.config.enabled {
            return Outcome::failed(
                format!(
                    "exec steps are disabled on this node; start it with `{ENABLE_EXEC_FLAG}` \
                     or `{ENABLE_EXEC_ENV}=1` to allow workflows to run local programs"
                ),
                false,
            );
        }
        if let Some(late) = deadline_passed(attempt) {
            return late;
        }
        match self.spec(attempt) {
            Ok(spec) => run_command(spec).await,
            Err(message) => Outcome::failed(message, false),
        }
    }

    /// The command an attempt asks for, or why its `with` is unusable.
    fn spec(&self, attempt: &Attempt) -> Result<CommandSpec, String> {
        let fields = input::object(&attempt.input, "exec", &FIELDS)?;
        let argv = command(fields.get("command"))?;
        let env = input::text_map(fields, "env")?;
        if let Some(name) = env.keys().find(|name| !is_variable_name(name)) {
            return Err(format!(
                "`with.env` has an invalid variable name `{name}` (letters, digits, `_`)"
            ));
        }
        if let Some(name) = env
            .iter()
            .find(|(_, value)| value.contains('\0'))
            .map(|(n, _)| n)
        {
            return Err(format!("`with.env.{name}` contains a NUL byte"));
        }
        let timeout_ms = time_left(attempt.deadline)
            .map(|left| left.as_millis().try_into().unwrap_or(u64::MAX))
            .unwrap_or(self.config.timeout_ms_default);
        let mut spec = CommandSpec::new(argv, Duration::from_millis(timeout_ms));
        spec.env = [("PATH".to_owned(), self.config.path.clone())].into();
        // The author's variables may replace PATH; the attempt's IMX_* come last.
        spec.env.extend(env);
        spec = spec.with_attempt_env(attempt);
        spec.cwd = input::optional_string(fields, "cwd")?.map(PathBuf::from);
        spec.stdin = match fields.get("stdin") {
            None | Some(Value::Null) => None,
            Some(Value::String(text)) => Some(text.clone().into_bytes()),
            Some(other) => Some(serde_json::to_vec(other).map_err(|err| err.to_string())?),
        };
        spec.stdout_format = StdoutFormat::JsonOrText;
        spec.stdout_bytes_max = self.config.stdout_bytes_max;
        spec.stderr_tail_bytes_max = self.config.stderr_tail_bytes_max;
        Ok(spec)
    }
}

impl Executor for ExecExecutor {
    fn kind(&self) -> StepKind {
        StepKind::Exec
    }

    fn execute<'a>(&'a self, attempt: &'a Attempt) -> BoxFuture<'a, Outcome> {
        Box::pin(self.run(attempt))
    }
}

/// `with.command`: a non-empty list of strings without NUL bytes.
fn command(value: Option<&Value>) -> Result<Vec<String>, String> {
    let items = match value {
        Some(Value::Array(items)) => items,
        None | Some(Value::Null) => return Err("`with.command` is missing".to_owned()),
        Some(other) => {
            return Err(format!(
                "`with.command` must be a list of strings (program, then arguments), found {}",
                kind_of(other)
            ));
        }
    };
    if items.is_empty() {
        return Err("`with.command` is empty: name a program to run".to_owned());
    }
    if items.len() > COMMAND_ARGS_MAX {
        return Err(format!(
            "`with.command` has {} entries, more than the limit of {COMMAND_ARGS_MAX}",
            items.len()
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(index, item)| match item {
            Value::String(text) if text.contains('\0') => {
                Err(format!("`with.command[{index}]` contains a NUL byte"))
            }
            Value::String(text) if index == 0 && text.is_empty() => {
                Err("`with.command[0]` (the program) is empty".to_owned())
            }
            Value::String(text) => Ok(text.clone()),
            // Numbers are common arguments (`[head, -n, 5]` parses 5 as a number).
            Value::Number(number) => Ok(number.to_string()),
            other => Err(format!(
                "`with.command[{index}]` must be a string, found {}",
                kind_of(other)
            )),
        })
        .collect()
}

fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
