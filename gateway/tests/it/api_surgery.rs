//! Run surgery over GraphQL, on SQLite and PostgreSQL: skip, rewind, fork,
//! pause and resume by an operator, the caller and reason recorded in each
//! event, the links between a fork and its source, `runAt` on both sides
//! of a rewind, and every refusal with its code.

use serde_json::{Value, json};

use crate::api::*;

const SKIP: &str = r#"mutation($id: ID!, $output: JSON, $reason: String!) {
  skipStep(runId: $id, step: "boom", output: $output, reason: $reason) { id status } }"#;
const REWIND: &str = r#"mutation($id: ID!, $step: String!, $reason: String!) {
  rewindRun(id: $id, step: $step, reason: $reason) { id status } }"#;
const FORK: &str = r#"mutation($id: ID!, $version: String, $reason: String!) {
  forkRun(id: $id, step: "boom", version: $version, reason: $reason) {
    id forkedFrom { id forks { id } } steps { id adoptedFrom } } }"#;
const PAUSE: &str = r#"mutation($id: ID!) { pauseRun(id: $id, reason: "hold") { id status } }"#;
const RESUME: &str = r#"mutation($id: ID!) { resumeRun(id: $id, reason: "go") { id status } }"#;

/// `{imxCode} {code}` of the first error.
fn refusal(body: &Value) -> String {
    let extensions = &body["errors"][0]["extensions"];
    format!(
        "{} {}",
        extensions["imxCode"].as_str().unwrap_or("<none>"),
        extensions["code"].as_str().unwrap_or("<none>")
    )
}

async fn events(api: &TestApi, token: &str, run_id: &str) -> Vec<Value> {
    let data = api
        .data(
            token,
            "query($id: ID!) { run(id: $id) { events(first: 100) { edges { node { seq type payload } } } } }",
            json!({"id": run_id}),
        )
        .await;
    data["run"]["events"]["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|edge| edge["node"].clone())
        .collect()
}

fn step<'a>(data: &'a Value, id: &str) -> &'a Value {
    data["run"]["steps"]
        .as_array()
        .and_then(|steps| steps.iter().find(|step| step["id"] == id))
        .expect("the step")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_rewind_and_fork_a_failed_run_with_who_and_why_recorded() {
    for url in database_urls() {
        let api = TestApi::start(&url, config(), true).await;
        let operator = api.api_key(&["operator"]).await;
        let (name, source) = named(FAILING_WORKFLOW, "surgery");
        register(&api, &operator, &source).await;
        let run_id = start(&api, &operator, &name).await;
        wait_status(&api, &operator, &run_id, "FAILED").await;

        // Skip the failed step: its dependent runs, the run succeeds.
        let vars = json!({"id": run_id, "output": {"fixed": true}, "reason": "fixed by hand"});
        let skipped = api.data(&operator, SKIP, vars).await;
        assert_eq!(skipped["skipStep"]["id"], run_id.as_str());
        let done = wait_status(&api, &operator, &run_id, "SUCCEEDED").await;
        assert_eq!(step(&done, "boom")["output"], json!({"fixed": true}));
        let log = events(&api, &operator, &run_id).await;
        let bypassed = log
            .iter()
            .find(|event| event["type"] == "step.bypassed")
            .expect("step.bypassed");
        assert_eq!(bypassed["payload"]["reason"], "fixed by hand");
        assert!(
            bypassed["payload"]["by"]
                .as_str()
                .is_some_and(|by| !by.is_empty()),
            "the caller is recorded: {bypassed}"
        );
        let rewind_seq = log.len() as u64 + 1;

        // Rewind the succeeded run to `prepare`: `boom` fails again.
        let vars = json!({"id": run_id, "step": "prepare", "reason": "replay from the top"});
        let rewound = api.data(&operator, REWIND, vars).await;
        assert_eq!(rewound["rewindRun"]["id"], run_id.as_str());
        wait_status(&api, &operator, &run_id, "FAILED").await;
        let around = api
            .data(
                &operator,
                "query($id: ID!, $before: Int!, $after: Int!) {
                   before: runAt(id: $id, seq: $before) { status steps { id generation } }
                   after: runAt(id: $id, seq: $after) { status steps { id generation } } }",
                json!({"id": run_id, "before": rewind_seq - 1, "after": rewind_seq}),
            )
            .await;
        assert_eq!(around["before"]["status"], "SUCCEEDED", "{around}");
        assert_eq!(around["after"]["status"], "RUNNING", "{around}");
        let generations: Vec<&Value> = around["after"]["steps"]
            .as_array()
            .expect("steps")
            .iter()
            .map(|step| &step["generation"])
            .collect();
        assert_eq!(generations, [&json!(1), &json!(1), &json!(1)], "{around}");

        // Fork at `boom` onto a version where it works.
        let fixed_source = source.replace("uses: fail", "uses: noop");
        let fixed = api
            .data(&operator, REGISTER, json!({"source": fixed_source}))
            .await;
        let version = fixed["registerWorkflow"]["version"].clone();
        let vars = json!({"id": run_id, "version": version, "reason": "boom fixed in v2"});
        let forked = api.data(&operator, FORK, vars).await;
        let fork = forked["forkRun"]["id"]
            .as_str()
            .expect("the fork's id")
            .to_owned();
        assert_ne!(fork, run_id);
        assert_eq!(forked["forkRun"]["forkedFrom"]["id"], run_id.as_str());
        assert_eq!(
            forked["forkRun"]["forkedFrom"]["forks"],
            json!([{"id": fork}]),
            "linked both ways"
        );
        let fork_done = wait_status(&api, &operator, &fork, "SUCCEEDED").await;
        assert_eq!(
            step(&fork_done, "prepare")["output"],
            json!({"ready": true})
        );
        let adopted = api
            .data(
                &operator,
                "query($id: ID!) { run(id: $id) { steps { id adoptedFrom } } }",
                json!({"id": fork}),
            )
            .await;
        assert_eq!(step(&adopted, "prepare")["adoptedFrom"], run_id.as_str());
        api.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_and_resume_a_waiting_run() {
    for url in database_urls() {
        let api = TestApi::start(&url, config(), true).await;
        let operator = api.api_key(&["operator"]).await;
        let (name, source) = named(APPROVAL_WORKFLOW, "pause");
        register(&api, &operator, &source).await;
        let run_id = start(&api, &operator, &name).await;
        wait_status(&api, &operator, &run_id, "WAITING").await;
        let paused = api.data(&operator, PAUSE, json!({"id": run_id})).await;
        assert_eq!(paused["pauseRun"]["status"], "PAUSED");
        let listed = api
            .data(
                &operator,
                "{ runs(first: 50, filter: {status: PAUSED}) { edges { node { id } } } }",
                json!({}),
            )
            .await;
        assert!(
            listed["runs"]["edges"].as_array().is_some_and(|edges| edges
                .iter()
                .any(|edge| edge["node"]["id"] == run_id.as_str())),
            "{listed}"
        );
        let resumed = api.data(&operator, RESUME, json!({"id": run_id})).await;
        assert_eq!(resumed["resumeRun"]["status"], "WAITING");
        api.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_names_why_with_its_code() {
    let url = database_urls().remove(0);
    let api = TestApi::start(&url, config(), true).await;
    let operator = api.api_key(&["operator"]).await;
    let (name, source) = named(FAILING_WORKFLOW, "refusals");
    register(&api, &operator, &source).await;
    let run_id = start(&api, &operator, &name).await;
    wait_status(&api, &operator, &run_id, "FAILED").await;
    let changed = source.replace(
        "uses: noop\n    with: { ready: true }",
        "uses: sleep\n    with: { duration: 1s }",
    );
    let changed = api
        .data(&operator, REGISTER, json!({"source": changed}))
        .await;
    let changed = changed["registerWorkflow"]["version"].clone();
    let cases = [
        ("pause a failed run", PAUSE, json!({"id": run_id})),
        (
            "resume a run that is not paused",
            RESUME,
            json!({"id": run_id}),
        ),
        (
            "rewind to an unknown step",
            REWIND,
            json!({"id": run_id, "step": "nope", "reason": "x"}),
        ),
        (
            "rewind without a reason",
            REWIND,
            json!({"id": run_id, "step": "boom", "reason": "  "}),
        ),
        (
            "skip a step that did not fail",
            SKIP.replace("\"boom\"", "\"prepare\"").as_str(),
            json!({"id": run_id, "reason": "x"}),
        ),
        (
            "fork onto a version that changed a kept step",
            FORK,
            json!({"id": run_id, "version": changed, "reason": "x"}),
        ),
        (
            "rewind an unknown run",
            REWIND,
            json!({"id": "00000000-0000-7000-8000-000000000000", "step": "boom", "reason": "x"}),
        ),
    ]
    .map(|(what, query, vars)| (what, query.to_owned(), vars));
    let mut table = String::new();
    for (what, query, vars) in cases {
        let (status, body) = api.post(Some(&operator), &query, vars).await;
        table.push_str(&format!("{what}: {status} {}\n", refusal(&body)));
    }
    expect_test::expect![[r#"
        pause a failed run: 200 IMX0414 CONFLICT
        resume a run that is not paused: 200 IMX0414 CONFLICT
        rewind to an unknown step: 200 IMX0415 VALIDATION
        rewind without a reason: 200 IMX0417 VALIDATION
        skip a step that did not fail: 200 IMX0414 CONFLICT
        fork onto a version that changed a kept step: 200 IMX0416 CONFLICT
        rewind an unknown run: 200 IMX0405 NOT_FOUND
    "#]]
    .assert_eq(&table);
    let unchanged = events(&api, &operator, &run_id).await;
    assert!(
        !unchanged.iter().any(|event| {
            let kind = event["type"].as_str().unwrap_or("");
            kind.starts_with("run.re") || kind == "run.paused" || kind == "step.bypassed"
        }),
        "a refusal records nothing"
    );
    api.stop().await;
}
