//! Abuse is refused cleanly and early (never a 500): deep and wide queries,
//! oversized and malformed bodies, batches, unknown ids, too many requests;
//! health, readiness and metrics; start-up configuration checks.

use clap::Parser;
use expect_test::expect;
use imx_gateway::api::ApiArgs;
use serde_json::json;

use crate::api::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abusive_requests_are_rejected_before_resolvers() {
    let url = database_urls().remove(0);
    let api = TestApi::start(&url, config(), false).await;
    let viewer = api.api_key(&["viewer"]).await;
    let depth_100 = format!(
        "{{ {}__typename{} }}",
        "run(id: \"x\") { ".repeat(100),
        " }".repeat(100)
    );
    let aliases: String = (0..1_000)
        .map(|i| {
            format!("r{i}: run(id: \"00000000-0000-7000-8000-000000000000\") {{ id status }} ")
        })
        .collect();
    let wide = format!("{{ {aliases} }}");
    let mut table = String::new();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("depth 100", json!({"query": depth_100}).to_string().into_bytes()),
        ("1000 aliases", json!({"query": wide}).to_string().into_bytes()),
        ("oversized body", vec![b' '; 2 * 1024 * 1024]),
        ("invalid json", b"{\"query\": ".to_vec()),
        ("batch", json!([{"query": "{ __typename }"}, {"query": "{ __typename }"}]).to_string().into_bytes()),
        ("syntax error", json!({"query": "{ runs("}).to_string().into_bytes()),
        ("unknown field", json!({"query": "{ nope }"}).to_string().into_bytes()),
        ("unknown run", json!({"query": "{ run(id: \"00000000-0000-7000-8000-000000000000\") { id } }"}).to_string().into_bytes()),
        ("malformed run id", json!({"query": "{ run(id: \"abc\") { id } }"}).to_string().into_bytes()),
        ("runAt past the end", json!({"query": "{ runAt(id: \"00000000-0000-7000-8000-000000000000\", seq: 5) { seq } }"}).to_string().into_bytes()),
    ];
    for (name, body) in cases {
        let (status, body) = api.post_raw(Some(&viewer), body).await;
        let outcome = if body.get("errors").is_some() {
            code(&body)
        } else {
            "ok".to_owned()
        };
        table.push_str(&format!("{name:20} {status} {outcome}\n"));
    }
    expect![[r#"
        depth 100            400 LIMIT
        1000 aliases         400 LIMIT
        oversized body       413 LIMIT
        invalid json         400 VALIDATION
        batch                400 VALIDATION
        syntax error         400 VALIDATION
        unknown field        400 VALIDATION
        unknown run          200 NOT_FOUND
        malformed run id     200 VALIDATION
        runAt past the end   200 NOT_FOUND
    "#]]
    .assert_eq(&table);
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_answers_429_per_caller() {
    let (api, one, other) = rate_limited_api().await;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(api.post(Some(&one), "{ __typename }", json!({})).await.0);
    }
    let (status, body) = api.post(Some(&one), "{ __typename }", json!({})).await;
    assert_eq!((status, code(&body)), (429, "LIMIT".to_owned()));
    assert_eq!(statuses, [200, 200, 200, 429]);
    assert_eq!(
        api.post(Some(&other), "{ __typename }", json!({})).await.0,
        200
    );
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspection_and_graphiql_can_be_switched_off() {
    let url = database_urls().remove(0);
    let api = TestApi::start(&url, config(), false).await;
    let viewer = api.api_key(&["viewer"]).await;
    let (status, page) = api.get("/graphql").await;
    assert!(status == 200 && page.contains("graphiql"), "{status}");
    let data = api
        .data(&viewer, "{ __schema { queryType { name } } }", json!({}))
        .await;
    assert_eq!(data["__schema"]["queryType"]["name"], "Query");
    api.stop().await;

    let mut closed = config();
    closed.graphiql = false;
    closed.introspection = false;
    let api = TestApi::start(&url, closed, false).await;
    let viewer = api.api_key(&["viewer"]).await;
    assert_eq!(api.get("/graphql").await.0, 404);
    let (_, body) = api
        .post(
            Some(&viewer),
            "{ __schema { queryType { name } } }",
            json!({}),
        )
        .await;
    assert!(
        body.get("errors").is_some() || body["data"]["__schema"].is_null(),
        "{body}"
    );
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_metrics() {
    for url in database_urls() {
        let api = TestApi::start(&url, config(), true).await;
        assert_eq!(api.get("/healthz").await, (200, "ok\n".to_owned()));
        assert_eq!(api.get("/readyz").await, (200, "ready\n".to_owned()));
        let admin = api.api_key(&["admin"]).await;
        let (name, source) = named(NOOP_WORKFLOW, "metrics");
        register(&api, &admin, &source).await;
        let run_id = start(&api, &admin, &name).await;
        wait_status(&api, &admin, &run_id, "SUCCEEDED").await;
        // The tail counts the run's end once it has read it: poll with a deadline.
        let deadline = tokio::time::Instant::now() + WAIT;
        let text = loop {
            let (status, text) = api.get("/metrics").await;
            assert_eq!(status, 200);
            let finished = text
                .lines()
                .find(|line| line.starts_with("imx_runs_finished_total{status=\"succeeded\"}"))
                .and_then(|line| line.rsplit(' ').next())
                .and_then(|value| value.parse::<f64>().ok())
                .unwrap_or(0.0);
            if finished >= 1.0 {
                break text;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no finished run counted:\n{text}"
            );
            let mut changes = api.runtime.as_ref().expect("a runtime").changes();
            let _ =
                tokio::time::timeout(std::time::Duration::from_millis(100), changes.recv()).await;
        };
        for metric in [
            "imx_api_operations_total{outcome=\"ok\"}",
            "imx_runs_started_total",
            "imx_queue_depth",
            "imx_expired_leases",
            "imx_log_position",
            "imx_api_operation_duration_seconds",
        ] {
            assert!(text.contains(metric), "{metric} missing:\n{text}");
        }
        api.stop().await;
    }
}

#[derive(Debug, Parser)]
struct Flags {
    #[command(flatten)]
    api: ApiArgs,
}

fn check(args: &[&str]) -> String {
    let flags = Flags::try_parse_from(std::iter::once("imx").chain(args.iter().copied()));
    match flags.map(|flags| flags.api.into_config()) {
        Ok(Ok(config)) => format!("ok {} jwt={}", config.listen, config.jwt.is_some()),
        Ok(Err(error)) => format!("error: {error}"),
        Err(error) => format!("usage: {}", error.kind()),
    }
}

#[test]
fn configuration_is_checked_once_at_start() {
    let secret = "--jwt-secret=0123456789abcdef0123456789abcdef";
    let text = [
        check(&[]),
        check(&["--insecure-no-auth"]),
        check(&["--insecure-no-auth", "--listen", "0.0.0.0:8080"]),
        check(&["--listen", "localhost"]),
        check(&["--jwt-algorithm", "HS256", secret]),
        check(&[
            "--jwt-algorithm",
            "HS256",
            "--jwt-secret=short",
            "--jwt-issuer=i",
            "--jwt-audience=a",
        ]),
        check(&[
            "--jwt-algorithm",
            "HS256",
            secret,
            "--jwt-issuer=i",
            "--jwt-audience=a",
        ]),
        check(&[
            "--jwt-algorithm",
            "RS256",
            "--jwt-issuer=i",
            "--jwt-audience=a",
        ]),
        check(&["--jwt-secret=x"]),
        check(&["--page-size-max", "0"]),
    ]
    .join("\n");
    expect![[r#"
        ok 127.0.0.1:8080 jwt=false
        ok 127.0.0.1:8080 jwt=false
        error: --insecure-no-auth refuses to listen on 0.0.0.0:8080: without authentication only a loopback address (127.0.0.1, ::1) is allowed
        error: --listen "localhost" is not an address like 127.0.0.1:8080: invalid socket address syntax
        error: JWTs need both --jwt-issuer and --jwt-audience: tokens are checked against them
        error: --jwt-secret must be at least 32 bytes long for HS256 (got 5)
        ok 127.0.0.1:8080 jwt=true
        error: RS256 needs --jwt-public-key PEM_FILE (IMX_JWT_PUBLIC_KEY) or --jwt-jwks JWKS_FILE (IMX_JWT_JWKS)
        error: JWT settings given without --jwt-algorithm (HS256, RS256 or ES256): the algorithm is pinned, never taken from the token
        error: --page-size-max must be at least 1"#]].assert_eq(&text);
}

#[test]
fn edge_settings_of_issue_13_are_checked_at_start() {
    let text = [
        check(&["--metrics-listen", "metrics:9090"]),
        check(&[
            "--listen",
            "127.0.0.1:8080",
            "--metrics-listen",
            "127.0.0.1:8080",
        ]),
        check(&["--subscriptions-per-caller-max", "0"]),
        check(&["--subscriptions-per-caller-max", "1001"]),
        check(&["--header-read-timeout-ms", "0"]),
        check(&["--idle-timeout-ms", "0"]),
        check(&["--websocket-init-timeout-ms", "0"]),
        check(&["--jwt-secret=x", "--jwt-secret-file=f"]),
        check(&["--insecure-no-auth", "--introspection", "off"]),
        check(&["--graphiql", "maybe"]),
    ]
    .join("\n");
    expect![[r#"
        error: --metrics-listen "metrics:9090" is not an address like 127.0.0.1:9090: invalid socket address syntax
        error: --metrics-listen 127.0.0.1:8080 is the --listen address; pick another port
        error: --subscriptions-per-caller-max must be at least 1
        error: --subscriptions-per-caller-max 1001 is more than the server's 1000 subscriptions
        error: --header-read-timeout-ms must be at least 1
        error: --idle-timeout-ms must be at least 1
        error: --websocket-init-timeout-ms must be at least 1
        usage: an argument cannot be used with one or more of the other specified arguments
        ok 127.0.0.1:8080 jwt=false
        usage: invalid value for one of the arguments"#]]
    .assert_eq(&text);
}
