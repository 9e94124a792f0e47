//! Every refusal over the wire, with its status and codes, and each time a
//! check that nothing was started.

use imx_gateway::api::webhook::WEBHOOK_BODY_BYTES_MAX;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{
    DARK, HOOKED, Hooks, LOG_WAIT, MATH, MULTI, OTHER_SECRET, PLAIN, RAW, SECRET, assert_refused,
    github, imx, unix_now,
};
use crate::api::WAIT;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_wrong_signature_is_refused_without_saying_which() {
    let hooks = Hooks::start(&[], &[RAW]).await;
    let body = br#"{"action": "opened"}"#;
    let mut tampered = github(SECRET, body, None);
    tampered[0].1.replace_range(7..9, "00");
    let cases = [
        Vec::new(),
        github(OTHER_SECRET, body, None),
        tampered,
        imx(OTHER_SECRET, unix_now(), body),
        vec![("x-imx-signature".to_owned(), "v1=00".to_owned())],
    ];
    let mut messages = std::collections::BTreeSet::new();
    for headers in cases {
        let answer = hooks.post("raw", &headers, body).await;
        assert_refused(&answer, 401, "UNAUTHENTICATED", "IMX0851");
        messages.insert(answer.1["message"].to_string());
    }
    assert_eq!(
        messages.len(),
        1,
        "one message for every case: {messages:?}"
    );
    // A body changed after signing.
    let signed = github(SECRET, body, None);
    let answer = hooks.post("raw", &signed, br#"{"action": "closed"}"#).await;
    assert_refused(&answer, 401, "UNAUTHENTICATED", "IMX0851");
    assert!(hooks.runs("raw").await.is_empty(), "nothing started");
    assert_eq!(hooks.webhooks_counted("refused", "signature").await, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_workflow_or_trigger_is_not_found() {
    let hooks = Hooks::start(&[], &[MULTI, PLAIN]).await;
    let body = br#"{}"#;
    let signed = github(SECRET, body, None);
    for path in ["nowhere", "plain", "nowhere/webhook"] {
        let answer = hooks.post(path, &signed, body).await;
        assert_refused(&answer, 404, "NOT_FOUND", "IMX0853");
    }
    // Several webhook triggers: the path must name one, and the answer lists them.
    for path in ["multi", "multi/nope"] {
        let answer = hooks.post(path, &signed, body).await;
        assert_refused(&answer, 404, "NOT_FOUND", "IMX0853");
        let message = answer.1["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("`github`") && message.contains("`imx`"),
            "{message}"
        );
    }
    assert!(hooks.runs("multi").await.is_empty(), "nothing started");
    assert!(hooks.runs("plain").await.is_empty(), "nothing started");
    // Each trigger by its id, each with its own secret.
    let answer = hooks.post("multi/github", &signed, body).await;
    assert_eq!(answer.0, 202, "{}", answer.1);
    let answer = hooks
        .post("multi/imx", &imx(OTHER_SECRET, unix_now(), body), body)
        .await;
    assert_eq!(answer.0, 202, "{}", answer.1);
    let answer = hooks.post("multi/imx", &signed, body).await;
    assert_refused(&answer, 401, "UNAUTHENTICATED", "IMX0851");
    assert_eq!(hooks.runs("multi").await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_whose_secret_is_unset_is_off_and_logged() {
    let hooks = Hooks::start(&[], &[DARK]).await;
    let body = br#"{}"#;
    let answer = hooks.post("dark", &github(SECRET, body, None), body).await;
    assert_refused(&answer, 404, "NOT_FOUND", "IMX0854");
    let message = answer.1["message"].as_str().unwrap_or_default();
    assert!(
        !message.contains("DARK_HOOK_SECRET"),
        "the variable is for the log, not the caller: {message}"
    );
    assert!(
        hooks
            .server
            .logged(
                &["webhook refused", "IMX_SECRET_DARK_HOOK_SECRET"],
                LOG_WAIT
            )
            .await,
        "a log line names the variable: {:?}",
        hooks.server.logs.lock().unwrap()
    );
    assert!(hooks.runs("dark").await.is_empty(), "nothing started");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_over_the_limit_is_refused() {
    let hooks = Hooks::start(&[], &[RAW]).await;
    let body = vec![b' '; WEBHOOK_BODY_BYTES_MAX + 1];
    let answer = hooks.post("raw", &github(SECRET, &body, None), &body).await;
    assert_refused(&answer, 413, "LIMIT", "IMX0855");
    assert!(hooks.runs("raw").await.is_empty(), "nothing started");
}

/// Sends a request head (and `first_bytes` of body) by hand; the answer's status line.
async fn raw_request(addr: &str, head: &str, first_bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(head.as_bytes()).await.expect("write head");
    stream.write_all(first_bytes).await.expect("write body");
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    // The server answers without the rest of the body: it never comes.
    let read = async {
        while !answer.windows(4).any(|window| window == b"\r\n\r\n") {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(read) => answer.extend_from_slice(&buffer[..read]),
            }
        }
    };
    tokio::time::timeout(WAIT, read)
        .await
        .expect("an answer before the body is complete");
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_length_over_the_limit_is_refused_before_the_body_is_read() {
    let hooks = Hooks::start(&[], &[RAW]).await;
    let length = WEBHOOK_BODY_BYTES_MAX * 40;
    let head = format!(
        "POST /hooks/raw HTTP/1.1\r\nHost: {}\r\ncontent-type: application/json\r\n\
         content-length: {length}\r\n\r\n",
        hooks.server.addr
    );
    let status = raw_request(&hooks.server.addr, &head, b"{\"action\":").await;
    assert!(status.starts_with("HTTP/1.1 413"), "{status}");
    assert!(hooks.runs("raw").await.is_empty(), "nothing started");
    assert_eq!(hooks.webhooks_counted("refused", "too_large").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_body_over_the_limit_is_refused_while_reading() {
    let hooks = Hooks::start(&[], &[RAW]).await;
    let head = format!(
        "POST /hooks/raw HTTP/1.1\r\nHost: {}\r\ncontent-type: application/json\r\n\
         transfer-encoding: chunked\r\n\r\n",
        hooks.server.addr
    );
    // One chunk just over the limit, and no last chunk: the rest never comes.
    let size = WEBHOOK_BODY_BYTES_MAX + 1;
    let mut chunk = format!("{size:x}\r\n").into_bytes();
    chunk.extend(std::iter::repeat_n(b' ', size));
    chunk.extend_from_slice(b"\r\n");
    let status = raw_request(&hooks.server.addr, &head, &chunk).await;
    assert!(status.starts_with("HTTP/1.1 413"), "{status}");
    assert!(hooks.runs("raw").await.is_empty(), "nothing started");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_that_is_not_json_is_a_bad_request() {
    let hooks = Hooks::start(&[], &[RAW]).await;
    for body in [&b"{\"action\": "[..], b"action=opened", b""] {
        let answer = hooks.post("raw", &github(SECRET, body, None), body).await;
        assert_refused(&answer, 400, "VALIDATION", "IMX0856");
    }
    assert!(hooks.runs("raw").await.is_empty(), "nothing started");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_failing_the_schema_is_unprocessable_with_every_pointer() {
    let hooks = Hooks::start(&[], &[RAW, HOOKED]).await;
    let body = br#"{"action": 5, "number": "seven"}"#;
    let answer = hooks.post("raw", &github(SECRET, body, None), body).await;
    assert_refused(&answer, 422, "VALIDATION", "IMX0404");
    let pointers: Vec<&str> = answer.1["problems"]
        .as_array()
        .unwrap_or_else(|| panic!("problems: {}", answer.1))
        .iter()
        .filter_map(|problem| problem["pointer"].as_str())
        .collect();
    assert_eq!(pointers, ["/action", "/number"], "{}", answer.1);
    // Through a template: the rendered input is what is checked.
    let body = br#"{"repository": {"full_name": 42}}"#;
    let answer = hooks
        .post("hooked", &github(SECRET, body, None), body)
        .await;
    assert_refused(&answer, 422, "VALIDATION", "IMX0404");
    assert_eq!(answer.1["problems"][0]["pointer"], "/repo", "{}", answer.1);
    assert!(hooks.runs("raw").await.is_empty(), "nothing started");
    assert!(hooks.runs("hooked").await.is_empty(), "nothing started");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_that_cannot_render_the_request_is_unprocessable() {
    let hooks = Hooks::start(&[], &[MATH]).await;
    let body = br#"{"n": "seven"}"#;
    let answer = hooks.post("math", &github(SECRET, body, None), body).await;
    assert_refused(&answer, 422, "VALIDATION", "IMX0413");
    assert!(hooks.runs("math").await.is_empty(), "nothing started");
    let body = br#"{"n": 7}"#;
    let answer = hooks.post("math", &github(SECRET, body, None), body).await;
    assert_eq!(answer.0, 202, "{}", answer.1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_id_that_cannot_be_a_key_is_a_bad_request() {
    let hooks = Hooks::start(&[], &[RAW]).await;
    let body = br#"{"action": "opened"}"#;
    let long = "d".repeat(engine::triggers::webhook::DELIVERY_ID_BYTES_MAX + 1);
    let answer = hooks
        .post("raw", &github(SECRET, body, Some(&long)), body)
        .await;
    assert_refused(&answer, 400, "VALIDATION", "IMX0857");
    assert!(hooks.runs("raw").await.is_empty(), "nothing started");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_over_the_rate_are_refused_per_workflow() {
    // A burst of two, then one a second: ten requests in a row cannot all
    // pass unless they took eight seconds. The admin's GraphQL calls have
    // a bucket of their own.
    let hooks = Hooks::start(&["--rate-per-second", "1", "--rate-burst", "2"], &[RAW]).await;
    let body = br#"{"action": "opened"}"#;
    let signed = github(SECRET, body, None);
    let (mut accepted, mut limited) = (0, 0);
    for _ in 0..10 {
        let answer = hooks.post("raw", &signed, body).await;
        if answer.0 == 202 {
            accepted += 1;
        } else {
            assert_refused(&answer, 429, "LIMIT", "IMX0858");
            limited += 1;
        }
    }
    assert!(accepted >= 2, "the burst passes ({accepted} accepted)");
    assert!(limited >= 1, "the rest is limited ({limited} refused)");
    assert_eq!(
        hooks.runs("raw").await.len(),
        accepted,
        "the refused ones started nothing"
    );
    assert_eq!(
        hooks.webhooks_counted("refused", "rate_limited").await,
        limited as u64
    );
}
