//! The `http` executor against a real HTTP server on 127.0.0.1 that records
//! every request it gets and answers according to the path.

pub(crate) mod server;

use std::time::Duration;

use engine::core::workflow::StepKind;
use engine::executor::Executor;
use engine::executor::http::{HttpConfig, HttpExecutor};
use expect_test::expect;
use serde_json::{Value, json};

use super::{RUN_ID, attempt, loopback_http, render, with_deadline_ms};
use server::Server;

fn executor() -> HttpExecutor {
    HttpExecutor::new(loopback_http()).expect("default config builds")
}

fn get(url: String) -> Value {
    json!({ "method": "GET", "url": url })
}

#[tokio::test]
async fn request_arrives_as_sent_with_the_idempotency_key() {
    let server = Server::start().await;
    let input = json!({
        "method": "POST",
        "url": server.url("/json?fixed=1"),
        "headers": { "X-Trace": "abc", "X-Count": 3 },
        "query": { "page": 2, "q": "a b&c" },
        "json": { "order": "o-1", "items": [1, 2], "rush": true },
    });
    let outcome = executor().execute(&attempt(StepKind::Http, input)).await;
    expect![[r#"ok {"body":{"ok":true},"headers":{"content-length":"11","content-type":"application/json","date":"*"},"status":200}"#]]
        .assert_eq(&render(&outcome, &[]).replace(&date_of(&outcome), "*"));
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/json");
    assert_eq!(request.query, "fixed=1&page=2&q=a+b%26c");
    assert_eq!(request.header("x-trace"), Some("abc"));
    assert_eq!(request.header("x-count"), Some("3"));
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(
        request.header("idempotency-key"),
        Some(format!("{RUN_ID}/work").as_str())
    );
    assert!(
        request
            .header("user-agent")
            .is_some_and(|agent| agent.starts_with("imx/"))
    );
    let body: Value = serde_json::from_slice(&request.body).expect("a JSON body");
    assert_eq!(
        body,
        json!({ "order": "o-1", "items": [1, 2], "rush": true })
    );
}

/// The `date` header of a successful outcome, which changes every second.
fn date_of(outcome: &engine::executor::Outcome) -> String {
    match outcome {
        engine::executor::Outcome::Succeeded { output } => output["headers"]["date"]
            .as_str()
            .unwrap_or("no date")
            .to_owned(),
        engine::executor::Outcome::Failed { .. } => "no date".to_owned(),
    }
}

#[tokio::test]
async fn text_body_is_sent_as_is_and_methods_are_case_insensitive() {
    let server = Server::start().await;
    let input = json!({
        "method": "put",
        "url": server.url("/text"),
        "headers": { "Content-Type": "text/csv" },
        "body": "a,b\n1,2\n",
    });
    let outcome = executor().execute(&attempt(StepKind::Http, input)).await;
    assert!(matches!(
        outcome,
        engine::executor::Outcome::Succeeded { .. }
    ));
    let request = &server.requests()[0];
    assert_eq!(request.method, "PUT");
    assert_eq!(request.header("content-type"), Some("text/csv"));
    assert_eq!(request.body, b"a,b\n1,2\n");
}

#[tokio::test]
async fn bodies_are_json_by_content_type_or_shape_and_text_otherwise() {
    let server = Server::start().await;
    let executor = executor();
    let mut bodies = String::new();
    for path in [
        "/json",
        "/text",
        "/json-as-text",
        "/number-as-text",
        "/empty",
    ] {
        let outcome = executor
            .execute(&attempt(StepKind::Http, get(server.url(path))))
            .await;
        let engine::executor::Outcome::Succeeded { output } = outcome else {
            panic!("{path}: {outcome:?}");
        };
        bodies.push_str(&format!("{path} {} {}\n", output["status"], output["body"]));
    }
    expect![[r#"
        /json 200 {"ok":true}
        /text 200 "hello"
        /json-as-text 200 {"a":1}
        /number-as-text 200 "42"
        /empty 204 null
    "#]]
    .assert_eq(&bodies);
}

#[tokio::test]
async fn status_codes_decide_whether_a_failure_is_retryable() {
    let server = Server::start().await;
    let executor = executor();
    let mut lines = String::new();
    for code in [500, 503, 408, 429, 400, 404, 409, 304] {
        let url = server.url(&format!("/status/{code}"));
        let outcome = executor.execute(&attempt(StepKind::Http, get(url))).await;
        lines.push_str(&render(&outcome, &[(&server.base, "http://SERVER")]));
        lines.push('\n');
    }
    expect![[r#"
        failed(retryable) GET http://SERVER/status/500: HTTP 500 Internal Server Error: status 500
        failed(retryable) GET http://SERVER/status/503: HTTP 503 Service Unavailable: status 503
        failed(retryable) GET http://SERVER/status/408: HTTP 408 Request Timeout: status 408
        failed(retryable) GET http://SERVER/status/429: HTTP 429 Too Many Requests: status 429
        failed(final) GET http://SERVER/status/400: HTTP 400 Bad Request: status 400
        failed(final) GET http://SERVER/status/404: HTTP 404 Not Found: status 404
        failed(final) GET http://SERVER/status/409: HTTP 409 Conflict: status 409
        failed(final) GET http://SERVER/status/304: HTTP 304 Not Modified
    "#]]
    .assert_eq(&lines);
}

#[tokio::test]
async fn secrets_in_headers_and_query_never_reach_the_error_message() {
    let server = Server::start().await;
    let input = json!({
        "method": "GET",
        "url": server.url("/echo-error"),
        "headers": { "Authorization": "Bearer s3cr3t-token" },
        "query": { "api_key": "k3y-value-123" },
    });
    let outcome = executor().execute(&attempt(StepKind::Http, input)).await;
    let line = render(&outcome, &[(&server.base, "http://SERVER")]);
    // The server echoes the request line and the credentials back.
    expect![[r#"failed(final) GET http://SERVER/echo-error: HTTP 401 Unauthorized: /echo-error?api_key=*** authorization=***"#]]
        .assert_eq(&line);
    assert_eq!(
        server.requests()[0].header("authorization"),
        Some("Bearer s3cr3t-token")
    );
}

#[tokio::test]
async fn an_endless_body_fails_at_the_limit_without_being_buffered() {
    let server = Server::start().await;
    let config = HttpConfig {
        response_bytes_max: 100_000,
        ..loopback_http()
    };
    let executor = HttpExecutor::new(config).expect("config");
    // The server never ends this body: reading it all would never finish.
    let outcome = tokio::time::timeout(
        Duration::from_secs(20),
        executor.execute(&attempt(StepKind::Http, get(server.url("/endless")))),
    )
    .await
    .expect("the limit ends the read");
    expect![[r#"failed(final) GET http://SERVER/endless: the response body is larger than the limit of 100000 bytes"#]]
        .assert_eq(&render(&outcome, &[(&server.base, "http://SERVER")]));
    // An announced length over the limit fails before the body is read: this
    // server announces 1 MB and then sends nothing, so a read would hang.
    let outcome = tokio::time::timeout(
        Duration::from_secs(20),
        executor.execute(&attempt(
            StepKind::Http,
            get(server.url("/announced-large")),
        )),
    )
    .await
    .expect("the announced length ends the attempt");
    expect![[r#"failed(final) GET http://SERVER/announced-large: the response body is larger than the limit of 100000 bytes"#]]
        .assert_eq(&render(&outcome, &[(&server.base, "http://SERVER")]));
}

#[tokio::test]
async fn a_redirect_loop_stops_at_the_limit() {
    let server = Server::start().await;
    let config = HttpConfig {
        redirects_max: 3,
        ..loopback_http()
    };
    let executor = HttpExecutor::new(config).expect("config");
    let outcome = executor
        .execute(&attempt(StepKind::Http, get(server.url("/loop"))))
        .await;
    expect![[r#"failed(final) GET http://SERVER/loop: error following redirect: stopped after 3 redirects (the limit)"#]]
        .assert_eq(&render(&outcome, &[(&server.base, "http://SERVER")]));
    // The first request and three redirects.
    assert_eq!(server.requests().len(), 4);
    let keys: Vec<_> = server
        .requests()
        .iter()
        .map(|request| request.header("idempotency-key").map(str::to_owned))
        .collect();
    assert!(
        keys.iter()
            .all(|key| key.as_deref() == Some(&*format!("{RUN_ID}/work")))
    );
}

#[tokio::test]
async fn redirects_are_followed_within_the_allowed_schemes() {
    let server = Server::start().await;
    let executor = executor();
    let outcome = executor
        .execute(&attempt(StepKind::Http, get(server.url("/to-json"))))
        .await;
    assert!(
        render(&outcome, &[]).starts_with(r#"ok {"body":{"ok":true}"#),
        "{outcome:?}"
    );
    let outcome = executor
        .execute(&attempt(StepKind::Http, get(server.url("/to-ftp"))))
        .await;
    expect![[r#"failed(final) GET http://SERVER/to-ftp: error following redirect: refused a redirect to a `ftp` URL (allowed: http, https)"#]]
        .assert_eq(&render(&outcome, &[(&server.base, "http://SERVER")]));
}

#[tokio::test]
async fn connection_refused_is_retryable() {
    // A port that was just free: bound, then released.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address");
    drop(listener);
    let url = format!("http://{address}/x");
    let outcome = executor().execute(&attempt(StepKind::Http, get(url))).await;
    let line = render(&outcome, &[(&address.to_string(), "ADDRESS")]);
    assert!(
        line.starts_with("failed(retryable) GET http://ADDRESS/x: error sending request"),
        "{line}"
    );
    assert!(line.contains("Connection refused"), "{line}");
}

#[tokio::test]
async fn a_silent_server_times_out_by_with_timeout_or_by_deadline() {
    let server = Server::start().await;
    let executor = executor();
    let input = json!({ "method": "GET", "url": server.url("/silent"), "timeout": "200ms" });
    let outcome = executor.execute(&attempt(StepKind::Http, input)).await;
    expect![[r#"failed(retryable) GET http://SERVER/silent: no complete answer within 200 ms (with.timeout)"#]]
        .assert_eq(&render(&outcome, &[(&server.base, "http://SERVER")]));
    let attempt = with_deadline_ms(attempt(StepKind::Http, get(server.url("/silent"))), 300);
    let outcome = executor.execute(&attempt).await;
    let line = render(&outcome, &[(&server.base, "http://SERVER")]);
    assert!(
        line.starts_with("failed(retryable) GET http://SERVER/silent: no complete answer within "),
        "{line}"
    );
    assert!(line.ends_with(" ms (the attempt's deadline)"), "{line}");
}

#[tokio::test]
async fn a_server_that_fails_twice_then_succeeds_sees_one_key() {
    let server = Server::start().await;
    let executor = executor();
    let mut attempt = attempt(
        StepKind::Http,
        json!({ "method": "POST", "url": server.url("/flaky"), "json": {"n": 1} }),
    );
    let mut lines = String::new();
    // What the runtime does: the same attempt again, numbered up, while retryable.
    for number in 1..=3 {
        attempt.attempt = number;
        let outcome = executor.execute(&attempt).await;
        let line = render(&outcome, &[(&server.base, "http://SERVER")]);
        lines.push_str(&format!(
            "#{number} {}\n",
            line.split(r#","headers""#).next().unwrap_or(&line)
        ));
    }
    expect![[r##"
        #1 failed(retryable) POST http://SERVER/flaky: HTTP 503 Service Unavailable: try again
        #2 failed(retryable) POST http://SERVER/flaky: HTTP 503 Service Unavailable: try again
        #3 ok {"body":{"attempts_seen":3}
    "##]]
    .assert_eq(&lines);
    let keys: Vec<_> = server
        .requests()
        .iter()
        .map(|request| request.header("idempotency-key").map(str::to_owned))
        .collect();
    assert_eq!(keys, vec![Some(format!("{RUN_ID}/work")); 3]);
}

#[tokio::test]
async fn invalid_with_fails_for_good_and_names_the_field() {
    let server = Server::start().await;
    let executor = executor();
    let cases = [
        json!({ "url": server.url("/json") }),
        json!({ "method": "FETCH", "url": server.url("/json") }),
        json!({ "method": "GET", "url": "not a url" }),
        json!({ "method": "GET", "url": "ftp://example.invalid/file" }),
        json!({ "method": "GET", "url": server.url("/json"), "headers": { "X-Token": "a\nb" } }),
        json!({ "method": "GET", "url": server.url("/json"), "headers": { "Bad Name": "x" } }),
        json!({ "method": "GET", "url": server.url("/json"), "headers": { "X-List": [1] } }),
        json!({ "method": "POST", "url": server.url("/json"), "json": {}, "body": "x" }),
        json!({ "method": "GET", "url": server.url("/json"), "timeout": "soon" }),
        json!({ "method": "GET", "url": server.url("/json"), "retries": 3 }),
        json!("GET /json"),
    ];
    let mut lines = String::new();
    for input in cases {
        let outcome = executor.execute(&attempt(StepKind::Http, input)).await;
        lines.push_str(&render(&outcome, &[(&server.base, "http://SERVER")]));
        lines.push('\n');
    }
    expect![[r#"
        failed(final) `with.method` is missing
        failed(final) `with.method` `FETCH` is not one of GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS
        failed(final) `with.url` is not a valid URL: relative URL without a base
        failed(final) `with.url` uses `ftp`; this node allows http, https
        failed(final) `with.headers.X-Token` is not a valid header value (control characters?)
        failed(final) `with.headers` has an invalid header name `Bad Name`
        failed(final) `with.headers.X-List` must be a string, number or boolean, found a list
        failed(final) `with` has both `json` and `body`; send one of them
        failed(final) `with.timeout`: `soon` has a unit without a number before `soon`
        failed(final) `with.retries` is not a field of `uses: http` (known: method, url, headers, query, json, body, timeout)
        failed(final) `with` must be a mapping (uses http), found a string
    "#]].assert_eq(&lines);
    assert!(server.requests().is_empty(), "nothing was sent");
}

#[test]
fn config_is_checked_when_the_executor_is_built() {
    let cases = [
        HttpConfig {
            allowed_schemes: vec![],
            ..HttpConfig::default()
        },
        HttpConfig {
            allowed_schemes: vec!["ftp".to_owned()],
            ..HttpConfig::default()
        },
        HttpConfig {
            response_bytes_max: 0,
            ..HttpConfig::default()
        },
        HttpConfig {
            user_agent: "bad\nagent".to_owned(),
            ..HttpConfig::default()
        },
        HttpConfig {
            extra_root_certificates_pem: Some("not a certificate".to_owned()),
            ..HttpConfig::default()
        },
    ];
    let errors: Vec<String> = cases
        .into_iter()
        .map(|config| match HttpExecutor::new(config) {
            Ok(_) => "accepted".to_owned(),
            Err(err) => err.to_string(),
        })
        .collect();
    expect![[r#"
        http executor config: allowed_schemes is empty: allow http, https or both
        http executor config: allowed_schemes names `ftp`; only http and https are supported
        http executor config: response_bytes_max must be at least 1
        http executor config: user_agent is not a valid header value
        http executor config: extra_root_certificates_pem holds no certificate"#]]
    .assert_eq(&errors.join("\n"));
}

#[tokio::test]
async fn a_deadline_that_has_passed_sends_nothing() {
    let server = Server::start().await;
    let attempt = with_deadline_ms(attempt(StepKind::Http, get(server.url("/json"))), -1);
    let outcome = executor().execute(&attempt).await;
    expect!["failed(retryable) the attempt's deadline passed before it started; nothing was done"]
        .assert_eq(&render(&outcome, &[]));
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn head_of_a_large_resource_is_not_a_large_body() {
    let server = Server::start().await;
    let config = HttpConfig {
        response_bytes_max: 100_000,
        ..loopback_http()
    };
    let executor = HttpExecutor::new(config).expect("config");
    let input = json!({ "method": "HEAD", "url": server.url("/announced-large") });
    let outcome = tokio::time::timeout(
        Duration::from_secs(20),
        executor.execute(&attempt(StepKind::Http, input)),
    )
    .await
    .expect("a HEAD answer has no body to wait for");
    let line = render(&outcome, &[]).replace(&date_of(&outcome), "*");
    expect![[r#"ok {"body":null,"headers":{"content-length":"1000000","date":"*"},"status":200}"#]]
        .assert_eq(&line);
}

#[tokio::test]
async fn https_works_with_a_trusted_ca_and_fails_retryably_without() {
    let (server, ca_pem) = Server::start_tls().await;
    let config = HttpConfig {
        extra_root_certificates_pem: Some(ca_pem),
        ..loopback_http()
    };
    let trusting = HttpExecutor::new(config).expect("config");
    let outcome = trusting
        .execute(&attempt(StepKind::Http, get(server.url("/json"))))
        .await;
    assert!(
        render(&outcome, &[]).starts_with(r#"ok {"body":{"ok":true}"#),
        "{outcome:?}"
    );
    assert_eq!(
        server.requests()[0].header("idempotency-key"),
        Some(&*format!("{RUN_ID}/work"))
    );
    // The system's roots do not include the throwaway CA.
    let outcome = executor()
        .execute(&attempt(StepKind::Http, get(server.url("/json"))))
        .await;
    let line = render(&outcome, &[(&server.base, "https://SERVER")]);
    assert!(
        line.starts_with("failed(retryable) GET https://SERVER/json: error sending request"),
        "{line}"
    );
    assert!(line.to_lowercase().contains("certificate"), "{line}");
    assert_eq!(
        server.requests().len(),
        1,
        "nothing reached the server without trust"
    );
}
