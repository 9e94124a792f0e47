//! The template sandbox (issue #13): template bombs that escape minijinja's
//! fuel are stopped by the sandbox process's limits, through `imx run` and
//! through `engine::sandbox::Sandbox` driving real `imx __template-sandbox`
//! children.

use std::borrow::Cow;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use engine::core::Secrets;
use engine::core::template::{Error, Evaluated, Evaluator, Request};
use engine::sandbox::{SANDBOX_SUBCOMMAND, Sandbox, SandboxConfig};
use serde_json::{Value, json};

/// How long `imx run` of a workflow full of bombs may take, all of them
/// stopped (each evaluation has a 2 s limit; the run settles a few times).
const RUN_MS_MAX: u64 = 60_000;
/// How often the test looks at the running `imx run`, in ms.
const POLL_MS: u64 = 50;
/// Memory of the sandbox children in the direct tests.
const MEMORY_BYTES_MAX: u64 = 512 * 1024 * 1024;
/// Two lists, each shared with itself 60 times: comparing them walks 2^60 pairs.
const TWO_DOUBLINGS: &str = "{% set ns = namespace(x=[1], y=[1]) %}{% for i in range(60) %}{% set ns.x = [ns.x, ns.x] %}{% set ns.y = [ns.y, ns.y] %}{% endfor %}";
/// The time limit in the direct tests, in ms.
const EVALUATION_MS_MAX: u64 = 1_000;

/// Shares a list with itself 60 times: 2^60 leaves behind 60 objects.
const NAMESPACE_DOUBLING: &str = "{% set ns = namespace(x=[1]) %}{% for i in range(60) %}{% set ns.x = [ns.x, ns.x] %}{% endfor %}";

fn sandbox(processes: usize) -> Sandbox {
    Sandbox::new(SandboxConfig {
        processes,
        memory_bytes_max: MEMORY_BYTES_MAX,
        evaluation_ms_max: EVALUATION_MS_MAX,
        ..SandboxConfig::for_program(env!("CARGO_BIN_EXE_imx"), [SANDBOX_SUBCOMMAND])
    })
}

fn render(sandbox: &Sandbox, template: &str) -> Result<Evaluated, Error> {
    let request = Request::Render {
        template: Cow::Owned(json!({ "x": template })),
        scope: Cow::Owned(json!({ "input": { "name": "imx" } })),
    };
    sandbox.evaluate(&request, &Secrets::default())
}

fn rendered_x(answer: Result<Evaluated, Error>) -> Value {
    match answer {
        Ok(Evaluated::Rendered(rendered)) => rendered.value["x"].clone(),
        other => panic!("expected a rendered value, got {other:?}"),
    }
}

fn sandbox_detail(answer: Result<Evaluated, Error>) -> String {
    match answer {
        Err(Error::Sandbox { detail }) => detail,
        other => panic!("expected a sandbox error, got {other:?}"),
    }
}

#[test]
fn an_evaluation_past_the_memory_limit_is_stopped_and_the_pool_recovers() {
    // Minijinja's fuel charges what templates allocate; what it does not
    // see (here: reading a scope bigger than the child may hold) meets the
    // address-space limit, and the child aborts.
    let memory_bytes_max = 160 * 1024 * 1024;
    let sandbox = Sandbox::new(SandboxConfig {
        processes: 1,
        memory_bytes_max,
        evaluation_ms_max: 30_000,
        ..SandboxConfig::for_program(env!("CARGO_BIN_EXE_imx"), [SANDBOX_SUBCOMMAND])
    });
    let request = Request::Render {
        template: Cow::Owned(json!({ "x": "{{ input.big | length }}" })),
        scope: Cow::Owned(json!({ "input": { "big": "x".repeat(60 * 1024 * 1024) } })),
    };
    let detail = sandbox_detail(sandbox.evaluate(&request, &Secrets::default()));
    assert!(
        detail.contains(&format!("memory limit of {memory_bytes_max} bytes")),
        "{detail}"
    );
    // The dead child was replaced: the next request is answered.
    assert_eq!(rendered_x(render(&sandbox, "{{ 1 + 2 }}")), json!(3));
    assert_eq!(sandbox.children_started(), 2);
}

#[test]
fn a_cpu_bomb_is_stopped_at_the_time_limit_and_the_pool_recovers() {
    let sandbox = sandbox(1);
    let bomb = format!("{TWO_DOUBLINGS}{{{{ ns.x == ns.y }}}}");
    let started = Instant::now();
    let detail = sandbox_detail(render(&sandbox, &bomb));
    let took = started.elapsed();
    assert!(
        detail.contains(&format!("time limit of {EVALUATION_MS_MAX} ms")),
        "{detail}"
    );
    // Stopped at its deadline, not whenever the walk would have ended.
    assert!(
        took < Duration::from_millis(EVALUATION_MS_MAX * 5),
        "{took:?}"
    );
    assert_eq!(
        rendered_x(render(&sandbox, "{{ input.name | upper }}")),
        json!("IMX")
    );
}

#[test]
fn shared_values_formatted_by_concatenation_are_stopped() {
    let sandbox = sandbox(1);
    let bomb = format!("{NAMESPACE_DOUBLING}{{{{ ns.x | length }}}}{{{{ '' ~ ns.x }}}}");
    let detail = sandbox_detail(render(&sandbox, &bomb));
    assert!(
        detail.contains("time limit") || detail.contains("memory limit"),
        "{detail}"
    );
    let lazy = "{{ '' ~ [[1] * 100000000] * 100000000 }}";
    let detail = sandbox_detail(render(&sandbox, lazy));
    assert!(
        detail.contains("time limit") || detail.contains("memory limit"),
        "{detail}"
    );
}

#[test]
fn plain_templates_never_start_a_child() {
    let sandbox = sandbox(2);
    let answer = render(&sandbox, "Hello {{ input.name }}, {{ input['name'] }}");
    assert_eq!(rendered_x(answer), json!("Hello imx, imx"));
    let condition = Request::Condition {
        expression: Cow::Borrowed("input.name == 'imx' and not input.missing_ok"),
        scope: Cow::Owned(json!({ "input": { "name": "imx", "missing_ok": false } })),
    };
    let answer = sandbox.evaluate(&condition, &Secrets::default());
    assert_eq!(answer, Ok(Evaluated::Condition(true)));
    assert_eq!(sandbox.children_started(), 0);
    // A filter is not plain: it goes to a child.
    assert_eq!(
        rendered_x(render(&sandbox, "{{ input.name | upper }}")),
        json!("IMX")
    );
    assert_eq!(sandbox.children_started(), 1);
}

#[test]
fn concurrent_requests_from_several_threads_all_answer() {
    let sandbox = sandbox(2);
    std::thread::scope(|scope| {
        let threads: Vec<_> = (0..6)
            .map(|thread| {
                let sandbox = &sandbox;
                scope.spawn(move || {
                    for round in 0..5 {
                        let template = format!("{{{{ {thread} * 100 + {round} }}}}");
                        let value = rendered_x(render(sandbox, &template));
                        assert_eq!(value, json!(thread * 100 + round));
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("a thread answered");
        }
    });
    assert!(
        sandbox.children_started() <= 2,
        "{}",
        sandbox.children_started()
    );
}

#[test]
fn secrets_reach_the_child_with_the_request_and_stay_tainted() {
    let sandbox = sandbox(1);
    let request = Request::Render {
        template: Cow::Owned(json!({ "auth": "{{ 'Bearer ' ~ secrets.TOKEN }}" })),
        scope: Cow::Owned(json!({})),
    };
    let secrets: Secrets = [("TOKEN", "s3cr3t")].into_iter().collect();
    match sandbox.evaluate(&request, &secrets) {
        Ok(Evaluated::Rendered(rendered)) => {
            assert_eq!(rendered.value, json!({ "auth": "Bearer s3cr3t" }));
            assert_eq!(rendered.tainted, vec!["/auth".to_owned()]);
        }
        other => panic!("expected a rendered value, got {other:?}"),
    }
}

/// The workflow of issue #13's report, and more bombs, each in a noop step's
/// `with`, next to a normal step.
const BOMBS: &str = r#"
name: bombs
steps:
  normal: { uses: noop, with: { greeting: "{{ 'hello ' ~ input.name | upper }}" } }
  lazy_list: { uses: noop, with: { x: "{{ [[1] * 100000000] * 100000000 }}" } }
  lazy_concat: { uses: noop, with: { x: "{{ '' ~ [[1] * 100000000] * 100000000 }}" } }
  shared: { uses: noop, with: { x: "{% set ns = namespace(x=[1]) %}{% for i in range(60) %}{% set ns.x = [ns.x, ns.x] %}{% endfor %}{{ ns.x | length }}{{ '' ~ ns.x }}" } }
  memory: { uses: noop, with: { x: "{% set ns = namespace(s='') %}{% for i in range(10) %}{% set ns.s = ns.s ~ ('x' * 100000000) %}{% endfor %}{{ ns.s | length }}" } }
  endless: { uses: noop, with: { x: "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}" } }
  compare: { uses: noop, with: { x: "{% set ns = namespace(x=[1], y=[1]) %}{% for i in range(60) %}{% set ns.x = [ns.x, ns.x] %}{% set ns.y = [ns.y, ns.y] %}{% endfor %}{{ ns.x == ns.y }}" } }
"#;

#[test]
fn template_bombs_that_pass_validate_fail_their_steps_and_a_normal_step_still_runs() {
    let folder = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}/imx.db", folder.path().display());
    let file = folder.path().join("bombs.yaml");
    std::fs::write(&file, BOMBS).expect("write the workflow");
    // Validation compiles templates but does not evaluate them.
    let validated = Command::new(env!("CARGO_BIN_EXE_imx"))
        .arg("validate")
        .arg(&file)
        .output()
        .expect("imx validate");
    assert!(validated.status.success(), "{validated:?}");
    let output = folder.path().join("run.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_imx"))
        .args(["--database-url", &url, "run"])
        .arg(&file)
        .args(["--input", r#"{"name": "imx"}"#, "--wait", "--json"])
        .stdout(std::fs::File::create(&output).expect("create run.json"))
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn imx run");
    // Every bomb is stopped, so the run ends: poll for that with a deadline.
    let deadline = Instant::now() + Duration::from_millis(RUN_MS_MAX);
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll imx run") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("imx run did not finish within {RUN_MS_MAX} ms");
        }
        std::thread::sleep(Duration::from_millis(POLL_MS));
    };
    assert_eq!(status.code(), Some(1), "{status:?}");
    let stdout = std::fs::read_to_string(&output).expect("read run.json");
    let document: Value = serde_json::from_str(&stdout).expect("run document");
    let steps = &document["steps"];
    assert_eq!(steps["normal"]["status"], "succeeded", "{document:#}");
    assert_eq!(
        steps["normal"]["output"]["greeting"], "hello IMX",
        "{document:#}"
    );
    // Each bomb is stopped by the first bound it meets, with its own message.
    let time_limit =
        "the template sandbox stopped the evaluation: it went past its time limit of 2000 ms";
    for (bomb, error) in [
        (
            "lazy_list",
            "renders to more than 524288 bytes, the limit for one template",
        ),
        ("lazy_concat", time_limit),
        ("shared", time_limit),
        ("compare", time_limit),
        ("memory", "engine ran out of fuel"),
        ("endless", "engine ran out of fuel"),
    ] {
        assert_eq!(steps[bomb]["status"], "failed", "{bomb}: {document:#}");
        let text = steps[bomb]["error"].as_str().unwrap_or_default();
        assert!(text.contains(error), "{bomb}: {text}");
    }
}

#[test]
fn the_time_limit_flag_reaches_the_sandbox_and_the_subcommand_stays_hidden() {
    let folder = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}/imx.db", folder.path().display());
    let file = folder.path().join("compare.yaml");
    let bomb = format!("{TWO_DOUBLINGS}{{{{ ns.x == ns.y }}}}");
    let workflow = json!({ "name": "compare", "steps": { "compare": { "uses": "noop", "with": { "x": bomb } } } });
    // JSON is YAML.
    std::fs::write(&file, workflow.to_string()).expect("write the workflow");
    let output = Command::new(env!("CARGO_BIN_EXE_imx"))
        .args(["--database-url", &url, "run"])
        .arg(&file)
        .args(["--wait", "--json", "--template-evaluation-ms-max", "300"])
        .stderr(Stdio::null())
        .output()
        .expect("imx run");
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let document: Value = serde_json::from_slice(&output.stdout).expect("run document");
    let error = document["steps"]["compare"]["error"]
        .as_str()
        .unwrap_or_default();
    assert!(error.contains("time limit of 300 ms"), "{error}");
    let help = Command::new(env!("CARGO_BIN_EXE_imx"))
        .arg("--help")
        .output()
        .expect("imx --help");
    assert!(!String::from_utf8_lossy(&help.stdout).contains(SANDBOX_SUBCOMMAND));
}
