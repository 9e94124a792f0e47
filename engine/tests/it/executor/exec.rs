//! The `exec` executor and the shared command runner against real child
//! processes (`echo`, `cat`, `env`, `sh`, `sleep`, `yes`).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use engine::core::workflow::StepKind;
use engine::executor::command::{CommandSpec, StdoutFormat, run_command};
use engine::executor::exec::{ExecConfig, ExecExecutor};
use engine::executor::{Executor, Outcome};
use expect_test::expect;
use serde_json::{Value, json};
use uuid::Uuid;

use super::{RUN_ID, attempt, render, with_deadline_ms};
use testkit::poll::eventually;

fn executor() -> ExecExecutor {
    ExecExecutor::new(ExecConfig::enabled())
}

async fn run(input: Value) -> String {
    render(
        &executor().execute(&attempt(StepKind::Exec, input)).await,
        &[],
    )
}

#[tokio::test]
async fn json_stdout_becomes_the_output() {
    let line = run(json!({ "command": ["echo", r#"{"files": 3, "names": ["a", "b"]}"#] })).await;
    expect![[r#"ok {"files":3,"names":["a","b"]}"#]].assert_eq(&line);
}

#[tokio::test]
async fn other_stdout_becomes_stdout_stderr_and_exit_code() {
    let line =
        run(json!({ "command": ["sh", "-c", "printf '12\\tdata\\n'; echo note >&2"] })).await;
    expect![[r#"ok {"exit_code":0,"stderr":"note","stdout":"12\tdata\n"}"#]].assert_eq(&line);
}

#[tokio::test]
async fn stdin_is_written_as_text_or_as_json() {
    let line = run(json!({ "command": ["cat"], "stdin": { "order": "o-1" } })).await;
    expect![[r#"ok {"order":"o-1"}"#]].assert_eq(&line);
    let line = run(json!({ "command": ["cat"], "stdin": "plain text" })).await;
    expect![[r#"ok {"exit_code":0,"stderr":"","stdout":"plain text"}"#]].assert_eq(&line);
}

#[tokio::test]
async fn non_zero_exit_fails_retryably_with_the_stderr_tail() {
    let line =
        run(json!({ "command": ["sh", "-c", "echo partial; echo 'disk full' >&2; exit 3"] })).await;
    expect![[r#"failed(retryable) `sh` exited with code 3; stderr: disk full"#]].assert_eq(&line);
    let line = run(json!({ "command": ["sh", "-c", "kill -9 $$"] })).await;
    expect![[r#"failed(retryable) `sh` was killed by signal 9 (stderr was empty)"#]]
        .assert_eq(&line);
}

#[tokio::test]
async fn long_stderr_is_cut_to_its_tail() {
    let script = "i=0; while [ $i -lt 3000 ]; do echo line $i >&2; i=$((i+1)); done; exit 1";
    let line = run(json!({ "command": ["sh", "-c", script] })).await;
    assert!(
        line.starts_with("failed(retryable) `sh` exited with code 1; stderr: …"),
        "{line}"
    );
    assert!(line.ends_with("line 2999"), "{line}");
    assert!(line.len() < 4096 + 100, "{} bytes", line.len());
}

#[tokio::test]
async fn environment_is_clean_but_for_path_env_and_the_attempt() {
    let mut attempt = attempt(
        StepKind::Exec,
        json!({ "command": ["env"], "env": { "REGION": "eu", "RETRIES": 2 } }),
    );
    attempt.index = Some(4);
    attempt.attempt = 2;
    let outcome = executor().execute(&attempt).await;
    let Outcome::Succeeded { output } = outcome else {
        panic!("{outcome:?}");
    };
    let stdout = output["stdout"].as_str().expect("env prints text");
    let mut lines: Vec<&str> = stdout
        .lines()
        .filter(|line| !line.starts_with("PATH="))
        .collect();
    lines.sort_unstable();
    expect![[r#"
        IMX_ATTEMPT=2
        IMX_IDEMPOTENCY_KEY=01930000-0000-7000-8000-0000000000aa/work
        IMX_INDEX=4
        IMX_RUN_ID=01930000-0000-7000-8000-0000000000aa
        IMX_STEP=work
        REGION=eu
        RETRIES=2"#]]
    .assert_eq(&lines.join("\n"));
    assert!(
        stdout.lines().any(|line| line.starts_with("PATH=")),
        "{stdout}"
    );
    assert_eq!(attempt.idempotency_key, format!("{RUN_ID}/work"));
}

#[tokio::test]
async fn argv_is_not_interpreted_by_a_shell() {
    let literal = "a; echo injected $(id) `id` $HOME | cat > /tmp/x &";
    let line = run(json!({ "command": ["echo", literal] })).await;
    let expected = json!({ "exit_code": 0, "stderr": "", "stdout": format!("{literal}\n") });
    assert_eq!(line, format!("ok {expected}"));
}

#[tokio::test]
async fn cwd_is_where_the_program_runs() {
    let line = run(json!({ "command": ["pwd"], "cwd": "/" })).await;
    expect![[r#"ok {"exit_code":0,"stderr":"","stdout":"/\n"}"#]].assert_eq(&line);
}

#[tokio::test]
async fn disabled_executor_refuses_and_says_how_to_enable_it() {
    let executor = ExecExecutor::new(ExecConfig::default());
    let outcome = executor
        .execute(&attempt(
            StepKind::Exec,
            json!({ "command": ["echo", "hi"] }),
        ))
        .await;
    expect![[r#"failed(final) exec steps are disabled on this node; start it with `--enable-exec` or `IMX_ENABLE_EXEC=1` to allow workflows to run local programs"#]]
        .assert_eq(&render(&outcome, &[]));
}

#[tokio::test]
async fn invalid_with_and_unstartable_programs_fail_for_good() {
    let cases = [
        json!({ "command": "echo hi" }),
        json!({ "command": [] }),
        json!({ "command": ["echo", { "a": 1 }] }),
        json!({ "command": ["echo"], "env": { "BAD-NAME": "x" } }),
        json!({ "command": ["echo"], "env": { "A": [1] } }),
        json!({ "command": ["echo"], "shell": true }),
        json!({ "command": ["echo"], "cwd": "/no/such/folder" }),
        json!({ "command": ["imx-no-such-program-anywhere"] }),
    ];
    // An executable file that is no program (no ELF header, no `#!`).
    let folder = std::env::temp_dir().join(format!("imx-exec-test-{}", Uuid::now_v7()));
    std::fs::create_dir_all(&folder).expect("temp folder");
    let not_a_program = folder.join("imx-not-a-program");
    std::fs::write(&not_a_program, [0_u8, 1, 2, 3]).expect("write");
    std::fs::set_permissions(&not_a_program, std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    let path = not_a_program.display().to_string();
    let mut lines = String::new();
    for input in cases.into_iter().chain([json!({ "command": [path] })]) {
        lines.push_str(&run(input).await.replace(&path, "NOT_A_PROGRAM"));
        lines.push('\n');
    }
    let _ = std::fs::remove_dir_all(&folder);
    expect![[r#"
        failed(final) `with.command` must be a list of strings (program, then arguments), found a string
        failed(final) `with.command` is empty: name a program to run
        failed(final) `with.command[1]` must be a string, found a mapping
        failed(final) `with.env` has an invalid variable name `BAD-NAME` (letters, digits, `_`)
        failed(final) `with.env.A` must be a string, number or boolean, found a list
        failed(final) `with.shell` is not a field of `uses: exec` (known: command, env, cwd, stdin)
        failed(final) working directory `/no/such/folder` is not a directory
        failed(final) program `imx-no-such-program-anywhere` was not found (searched the command's PATH)
        failed(final) `NOT_A_PROGRAM` is not a program this system can run: Exec format error (os error 8)
    "#]].assert_eq(&lines);
}

#[tokio::test]
async fn stdout_over_the_limit_kills_the_program() {
    let config = ExecConfig {
        stdout_bytes_max: 10_000,
        ..ExecConfig::enabled()
    };
    // `yes` never ends on its own: only the limit stops it.
    let outcome = ExecExecutor::new(config)
        .execute(&attempt(StepKind::Exec, json!({ "command": ["yes"] })))
        .await;
    expect![[r#"failed(final) `yes` wrote more than 10000 bytes to stdout; it was killed"#]]
        .assert_eq(&render(&outcome, &[]));
}

/// A fresh path for a pid file.
fn pid_file() -> PathBuf {
    std::env::temp_dir().join(format!("imx-exec-test-{}.pid", Uuid::now_v7()))
}

/// The pid written to `file`, once it is there.
fn read_pid(file: &Path) -> Option<i32> {
    std::fs::read_to_string(file).ok()?.trim().parse().ok()
}

/// Whether `pid` is gone or a zombie (dead, waiting to be reaped by init).
fn is_dead(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return true;
    };
    let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
    matches!(state.and_then(|rest| rest.chars().next()), Some('Z' | 'X'))
}

/// A shell that starts a background `sleep 100`, writes its pid, and waits for it.
fn sleeper(file: &Path) -> Value {
    json!({
        "command": ["sh", "-c", "sleep 100 & echo $! > \"$PID_FILE\"; wait"],
        "env": { "PID_FILE": file.display().to_string() },
    })
}

#[tokio::test]
async fn timeout_kills_the_whole_process_group() {
    let file = pid_file();
    // Generous, so that a loaded machine still starts the shell in time.
    let attempt = with_deadline_ms(attempt(StepKind::Exec, sleeper(&file)), 2000);
    let outcome = executor().execute(&attempt).await;
    let line = render(&outcome, &[]);
    assert!(
        line.starts_with("failed(retryable) `sh` did not finish within "),
        "{line}"
    );
    assert!(
        line.ends_with(" ms; its process group was killed"),
        "{line}"
    );
    let grandchild = read_pid(&file).expect("the shell started its background sleep");
    let _ = std::fs::remove_file(&file);
    assert!(
        eventually(Duration::from_secs(5), || is_dead(grandchild)).await,
        "grandchild {grandchild} outlived the timeout"
    );
}

#[tokio::test]
async fn dropping_the_attempt_kills_the_whole_process_group() {
    let file = pid_file();
    let attempt = attempt(StepKind::Exec, sleeper(&file));
    let executor = executor();
    let running = executor.execute(&attempt);
    let started = tokio::select! {
        outcome = running => panic!("the sleeper ended: {outcome:?}"),
        started = eventually(Duration::from_secs(5), || read_pid(&file).is_some()) => started,
    };
    assert!(started, "the shell never wrote its pid");
    // `running` is dropped here, as the runtime drops an attempt it cancels.
    let grandchild = read_pid(&file).expect("pid");
    let _ = std::fs::remove_file(&file);
    assert!(
        eventually(Duration::from_secs(5), || is_dead(grandchild)).await,
        "grandchild {grandchild} outlived the dropped attempt"
    );
}

#[tokio::test]
async fn background_children_do_not_outlive_a_finished_program() {
    let file = pid_file();
    let input = json!({
        "command": ["sh", "-c", "sleep 100 & echo $! > \"$PID_FILE\"; echo '{\"done\": true}'"],
        "env": { "PID_FILE": file.display().to_string() },
    });
    let line = run(input).await;
    assert_eq!(line, r#"ok {"done":true}"#);
    let grandchild = read_pid(&file).expect("pid");
    let _ = std::fs::remove_file(&file);
    assert!(eventually(Duration::from_secs(5), || is_dead(grandchild)).await);
}

#[tokio::test]
async fn command_contract_task_on_stdin_json_on_stdout() {
    // What `imx agent --queue Q -- COMMAND` does with a task.
    let task = json!({ "queue": "warehouse", "payload": { "sku": "A-1", "qty": 2 } });
    let script =
        r#"read -r task; printf '{"key": "%s", "task": %s}' "$IMX_IDEMPOTENCY_KEY" "$task""#;
    let argv = ["sh", "-c", script].map(str::to_owned).to_vec();
    let mut spec = CommandSpec::new(argv, Duration::from_secs(30))
        .with_attempt_env(&attempt(StepKind::Agent, task.clone()));
    let mut stdin = serde_json::to_vec(&task).expect("JSON");
    stdin.push(b'\n');
    spec.stdin = Some(stdin);
    let outcome = run_command(spec.clone()).await;
    let expected = json!({ "key": format!("{RUN_ID}/work"), "task": task });
    assert_eq!(outcome, Outcome::Succeeded { output: expected });
    // In the JSON format, text on stdout is a broken contract, not an output.
    spec.argv = ["echo", "not json"].map(str::to_owned).to_vec();
    expect![[r#"failed(final) `echo` succeeded but its stdout is not JSON: expected ident at line 1 column 2"#]]
        .assert_eq(&render(&run_command(spec.clone()).await, &[]));
    spec.argv = vec!["true".to_owned()];
    assert_eq!(
        run_command(spec.clone()).await,
        Outcome::Succeeded {
            output: Value::Null
        }
    );
    assert_eq!(spec.stdout_format, StdoutFormat::Json);
    assert!(
        !format!("{spec:?}").contains("warehouse"),
        "Debug hides stdin: {spec:?}"
    );
}

#[tokio::test]
async fn a_deadline_that_has_passed_starts_nothing() {
    let file = pid_file();
    let input = json!({
        "command": ["sh", "-c", "echo $$ > \"$PID_FILE\""],
        "env": { "PID_FILE": file.display().to_string() },
    });
    let attempt = with_deadline_ms(attempt(StepKind::Exec, input), -1);
    let outcome = executor().execute(&attempt).await;
    expect!["failed(retryable) the attempt's deadline passed before it started; nothing was done"]
        .assert_eq(&render(&outcome, &[]));
    assert!(!file.exists(), "the command ran");
}

#[tokio::test]
async fn an_agent_command_may_inherit_the_engine_environment() {
    // Any variable of the test process whose value is plain text (not JSON).
    let (name, value) = std::env::vars()
        .find(|(name, value)| {
            name != "PATH" && !value.contains('\n') && serde_json::from_str::<Value>(value).is_err()
        })
        .expect("the test process has a text variable");
    let argv = vec!["printenv".to_owned(), name.clone()];
    let mut spec = CommandSpec::new(argv, Duration::from_secs(30));
    spec.stdout_format = StdoutFormat::JsonOrText;
    // Not inherited by default: printenv exits 1.
    let outcome = run_command(spec.clone()).await;
    assert!(
        matches!(
            outcome,
            Outcome::Failed {
                retryable: true,
                ..
            }
        ),
        "{name}: {outcome:?}"
    );
    let outcome = run_command(spec.with_inherited_env()).await;
    let expected = json!({ "exit_code": 0, "stderr": "", "stdout": format!("{value}\n") });
    assert_eq!(outcome, Outcome::Succeeded { output: expected }, "{name}");
}
