//! From request to run: the `input` template with `body`, `headers` and
//! `trigger` in scope, the body itself without one, and what `run.started`
//! records about the delivery.

use serde_json::json;

use super::{ECHO, HOOKED, Hooks, RAW, SECRET, github, imx, unix_now};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_maps_the_request_into_the_run_input() {
    let hooks = Hooks::start(&[], &[HOOKED]).await;
    let body = br#"{"repository": {"full_name": "acme/shop"}, "ref": "refs/heads/main"}"#;
    let answer = hooks
        .post("hooked", &github(SECRET, body, Some("d-1")), body)
        .await;
    assert_eq!(answer.0, 202, "{}", answer.1);
    let run_id = answer.1["run_id"].as_str().expect("a run id").to_owned();
    let run = hooks.run(&run_id).await;
    assert_eq!(
        run["input"],
        json!({"repo": "acme/shop", "event": "push", "delivery": "d-1", "trigger": "webhook"}),
        "{run}"
    );
    assert_eq!(run["idempotencyKey"], "webhook:hooked:webhook:d-1", "{run}");
    let context = json!({"kind": "webhook", "trigger": "webhook", "delivery": "d-1"});
    assert_eq!(run["trigger"], context, "{run}");
    let started = &run["events"]["edges"][0]["node"];
    assert_eq!(started["type"], "run.started", "{run}");
    assert_eq!(started["payload"]["trigger"], context, "{run}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_template_the_body_is_the_input() {
    let hooks = Hooks::start(&[], &[RAW]).await;
    let body = br#"{"action": "opened", "number": 7}"#;
    let answer = hooks
        .post("raw", &imx(SECRET, unix_now(), body), body)
        .await;
    assert_eq!(answer.0, 202, "{}", answer.1);
    let run = hooks
        .run(answer.1["run_id"].as_str().expect("a run id"))
        .await;
    assert_eq!(
        run["input"],
        json!({"action": "opened", "number": 7}),
        "{run}"
    );
    assert_eq!(
        run["trigger"],
        json!({"kind": "webhook", "trigger": "webhook"}),
        "{run}"
    );
    assert_eq!(run["idempotencyKey"], serde_json::Value::Null, "{run}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_sees_headers_without_signatures_or_credentials() {
    let hooks = Hooks::start(&[], &[ECHO]).await;
    let body = br#"{"n": 1}"#;
    let mut headers = github(SECRET, body, Some("d-9"));
    headers.extend(imx(SECRET, unix_now(), body));
    // No API credential is needed; one sent anyway is neither checked nor kept.
    headers.push(("authorization".to_owned(), "Bearer not-a-key".to_owned()));
    headers.push(("x-custom".to_owned(), "kept".to_owned()));
    let answer = hooks.post("echo", &headers, body).await;
    assert_eq!(answer.0, 202, "{}", answer.1);
    let run = hooks
        .run(answer.1["run_id"].as_str().expect("a run id"))
        .await;
    let input = &run["input"];
    assert_eq!(input["body"], json!({"n": 1}), "{run}");
    assert_eq!(
        input["trigger"],
        json!({"id": "webhook", "delivery": "d-9"}),
        "{run}"
    );
    let seen = input["headers"].as_object().expect("headers as an object");
    assert_eq!(seen["x-custom"], "kept");
    assert_eq!(seen["x-github-event"], "push");
    assert_eq!(seen["x-github-delivery"], "d-9");
    assert!(seen.contains_key("x-imx-timestamp"), "{run}");
    for hidden in ["x-hub-signature-256", "x-imx-signature", "authorization"] {
        assert!(!seen.contains_key(hidden), "{hidden} shown: {run}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_workflows_webhooks_fire_as_written() {
    let read = |name: &str| {
        std::fs::read_to_string(crate::repo_root().join("workflows").join(name))
            .expect("an example workflow")
    };
    // The examples' http steps go to 127.0.0.1, which the node's default
    // egress policy refuses before connecting: nothing leaves the test.
    let sources = [
        read("incident-escalation.yaml"),
        read("order-fulfilment.yaml"),
    ];
    let hooks = Hooks::start_with(&[], &sources).await;
    let alert = br#"{"alert": {"id": "a-1", "severity": "critical", "summary": "disk full"}}"#;
    let answer = hooks
        .post(
            "incident-escalation/alerts",
            &github(SECRET, alert, Some("a-1")),
            alert,
        )
        .await;
    assert_eq!(answer.0, 202, "{}", answer.1);
    let run = hooks
        .run(answer.1["run_id"].as_str().expect("a run id"))
        .await;
    assert_eq!(
        run["input"],
        json!({"base_url": "http://127.0.0.1:8080",
               "alert": {"id": "a-1", "severity": "critical", "summary": "disk full"}}),
        "{run}"
    );
    let order = br#"{"order_id": "o-7", "base_url": "http://127.0.0.1:8080"}"#;
    let answer = hooks
        .post("order-fulfilment", &imx(SECRET, unix_now(), order), order)
        .await;
    assert_eq!(answer.0, 202, "{}", answer.1);
    let run = hooks
        .run(answer.1["run_id"].as_str().expect("a run id"))
        .await;
    assert_eq!(run["input"]["order_id"], "o-7", "{run}");
}
