//! Hostile workflows against a real `imx serve` (issue #13, items 1–3): a
//! template bomb that passes `imx validate`, a `for_each` past 500 items,
//! and secrets transformed on their way into the log. Each run must end
//! (never wedge), `/healthz` must answer while they run, the server's
//! memory stays bounded, and no form of the secret reaches the event log,
//! the export, `runs show` or GraphQL.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::process::Command;

use super::Server;

const REGISTER: &str =
    r#"mutation($source: String!) { registerWorkflow(source: $source) { __typename } }"#;
const START: &str =
    r#"mutation($workflow: String!) { startRun(workflow: $workflow) { run { id } } }"#;
const RUN: &str = r#"query($id: ID!) {
  run(id: $id) { status error output steps { id status error output } } }"#;

/// Time a hostile run gets to end, polled, in ms (the sandbox's time limit
/// is 2 s per evaluation; a debug build on 2 busy cores is slow).
const RUN_END_MS_MAX: u64 = 120_000;
/// How long `/healthz` may take while the server validates, generous for a
/// debug build on 2 busy cores.
const HEALTHZ_WAIT: Duration = Duration::from_secs(5);
/// What the node knows as `secrets.CANARY`.
const CANARY: &str = "c4nary-s3cret-v4lue";

const BOMBS: &str = r#"
name: bombs
steps:
  lazy: { uses: noop, with: { x: "{{ [[1] * 100000000] * 100000000 }}" } }
  concat: { uses: noop, with: { x: "{{ '' ~ ([[1] * 100000000] * 100000000) }}" } }
  shared: { uses: noop, with: { x: "{% set ns = namespace(x=[1]) %}{% for i in range(60) %}{% set ns.x = [ns.x, ns.x] %}{% endfor %}{{ ns.x }}" } }
  fine: { uses: noop, with: { x: "{{ 'still ' ~ 'works' }}" } }
"#;

const WIDE: &str = r#"
name: wide
steps:
  first: { uses: noop }
  each: { needs: [first], for_each: "{{ range(2000) | list }}", uses: noop, with: { i: "{{ index }}" } }
  total: { needs: [each], uses: noop, with: { n: "{{ steps.each.output | length }}" } }
"#;

const LEAKS: &str = r#"
name: leaks
steps:
  leak:
    uses: noop
    with:
      upper: "{{ secrets.CANARY | upper }}"
      slice: "{{ secrets.CANARY[0:12] }}"
      chars: "{{ secrets.CANARY | list }}"
      replaced: "x {{ secrets.CANARY | replace('-', '+') }}"
      as_key: "{{ {secrets.CANARY: 1} }}"
      dump: "{{ debug() }}"
      plain: "{{ secrets.CANARY }}"
output:
  echoed: "{{ steps.leak.output }}"
"#;

struct Client<'a> {
    server: &'a Server,
    token: String,
}

impl Client<'_> {
    async fn register(&self, source: &str) {
        let (status, body) = self
            .server
            .graphql(Some(&self.token), REGISTER, json!({"source": source}))
            .await;
        assert!(status == 200 && body["errors"].is_null(), "{body}");
    }

    async fn start(&self, workflow: &str) -> String {
        let (_, body) = self
            .server
            .graphql(Some(&self.token), START, json!({"workflow": workflow}))
            .await;
        body["data"]["startRun"]["run"]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("a run id: {body}"))
            .to_owned()
    }

    /// Polls the run until it ended, checking `/healthz` on every round.
    async fn ended(&self, id: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(RUN_END_MS_MAX);
        loop {
            self.server.assert_healthy().await;
            let (_, body) = self
                .server
                .graphql(Some(&self.token), RUN, json!({"id": id}))
                .await;
            let run = body["data"]["run"].clone();
            if matches!(
                run["status"].as_str(),
                Some("SUCCEEDED" | "FAILED" | "CANCELLED")
            ) {
                return run;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "run {id} did not end in {RUN_END_MS_MAX} ms: {body}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn client(server: &Server) -> Client<'_> {
    Client {
        token: server.api_key("admin").await,
        server,
    }
}

fn step<'a>(run: &'a Value, id: &str) -> &'a Value {
    run["steps"]
        .as_array()
        .and_then(|steps| steps.iter().find(|step| step["id"] == id))
        .unwrap_or_else(|| panic!("step {id} in {run}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_bombs_fail_their_steps_while_the_server_keeps_answering() {
    let server = Server::start(&[], &[]).await;
    let client = client(&server).await;
    client.register(BOMBS).await;
    // Two at once: each used to pin a worker thread forever.
    let first = client.start("bombs").await;
    let second = client.start("bombs").await;
    for id in [first, second] {
        let run = client.ended(&id).await;
        assert_eq!(run["status"], "FAILED", "{run}");
        for bomb in ["lazy", "concat", "shared"] {
            let failed = step(&run, bomb);
            assert_eq!(failed["status"], "FAILED", "{failed}");
            let error = failed["error"].as_str().unwrap_or_default();
            assert!(
                error.contains("more than 524288 bytes") || error.contains("sandbox"),
                "{bomb}: {error}"
            );
        }
        assert_eq!(step(&run, "fine")["output"], json!({"x": "still works"}));
    }
    server.assert_healthy().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn for_each_of_2000_items_after_another_step_succeeds() {
    let server = Server::start(&[], &[]).await;
    let client = client(&server).await;
    client.register(WIDE).await;
    let run = client.ended(&client.start("wide").await).await;
    assert_eq!(run["status"], "SUCCEEDED", "{}", run["error"]);
    assert_eq!(step(&run, "total")["output"], json!({"n": 2000}));
    server.assert_healthy().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transformed_secrets_reach_no_record_of_the_run() {
    let server = Server::start(&[], &[("IMX_SECRET_CANARY", CANARY)]).await;
    let client = client(&server).await;
    client.register(LEAKS).await;
    let id = client.start("leaks").await;
    let run = client.ended(&id).await;
    assert_eq!(run["status"], "SUCCEEDED", "{run}");
    let output = &step(&run, "leak")["output"];
    for field in ["upper", "slice", "chars", "replaced", "as_key", "plain"] {
        assert_eq!(
            output[field], "***",
            "{field} is recorded as *** whole: {output}"
        );
    }
    // `debug()` names the secret without its value: the dump is kept.
    assert!(
        output["dump"]
            .as_str()
            .unwrap_or_default()
            .contains("CANARY")
    );
    let shown = Command::new(env!("CARGO_BIN_EXE_imx"))
        .args([
            "--database-url",
            &server.database_url,
            "runs",
            "show",
            &id,
            "--json",
        ])
        .output()
        .await
        .expect("imx runs show");
    let export = Command::new(env!("CARGO_BIN_EXE_imx"))
        .args([
            "--database-url",
            &server.database_url,
            "replay",
            "export",
            "--run",
            &id,
        ])
        .output()
        .await
        .expect("imx replay export");
    assert_eq!(export.status.code(), Some(0), "{export:?}");
    let records = [
        ("GraphQL", run.to_string()),
        (
            "runs show",
            String::from_utf8_lossy(&shown.stdout).into_owned(),
        ),
        (
            "export",
            String::from_utf8_lossy(&export.stdout).into_owned(),
        ),
    ];
    let upper = CANARY.to_uppercase();
    let forms = [CANARY, upper.as_str(), &CANARY[..12], "c4nary+s3cret"];
    for (record, text) in &records {
        assert!(text.len() > 100, "{record} shows the run: {text}");
        for form in forms {
            assert!(!text.contains(form), "{record} holds `{form}`:\n{text}");
        }
        // The one-character-per-item list form.
        assert!(
            !text.contains(r#""c","4","n""#),
            "{record} holds the characters"
        );
    }
    server.assert_healthy().await;
}

/// 1,000 steps, each needing the 64 before it (issue #13, item 5: 13.8 s and
/// 795 MB in `imx validate`; two such registrations stalled `/healthz`).
fn dense_workflow(name: &str) -> String {
    let mut source = format!("name: {name}\nsteps:\n");
    for step in 0..1_000_u32 {
        let needs: Vec<String> = (step.saturating_sub(64)..step)
            .map(|need| format!("s{need}"))
            .collect();
        source.push_str(&format!(
            "  s{step}: {{ uses: noop, needs: [{}] }}\n",
            needs.join(",")
        ));
    }
    source
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_dense_workflows_register_while_healthz_answers() {
    let server = Server::start(&["--body-bytes-max", "1048576"], &[]).await;
    let client = client(&server).await;
    let (first, second) = (dense_workflow("dense-a"), dense_workflow("dense-b"));
    let registering = async {
        tokio::join!(client.register(&first), client.register(&second));
    };
    let probing = async {
        // `/healthz` keeps answering, promptly, while both are validated
        // (validation on the async workers held it for the whole 13.8 s).
        for _ in 0..10 {
            tokio::time::timeout(HEALTHZ_WAIT, server.assert_healthy())
                .await
                .expect("/healthz answers while workflows are validated");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::join!(registering, probing);
    server.assert_healthy().await;
}
