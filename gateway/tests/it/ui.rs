//! The web UI (#20) over HTTP: what is served and with which headers, the
//! session cookie, CSRF and sign-out. The browser tests are in `ui_browser`.

use reqwest::header::{HeaderMap, SET_COOKIE};
use serde_json::{Value, json};

use crate::api::{TestApi, config, database_urls, jwt};

const ME: &str = "{ me { id roles mayOperate mayApprove } }";

async fn sign_in(
    api: &TestApi,
    credential: &str,
    headers: &[(&str, &str)],
) -> (u16, HeaderMap, Value) {
    let mut request = api
        .http
        .post(format!("{}/ui/session", api.base))
        .json(&json!({ "credential": credential }));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("the server answers");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, headers, body)
}

/// `GET /ui/session` with `cookie`: the status and the JSON answer.
async fn current_session(api: &TestApi, cookie: &str) -> (u16, Value) {
    current_session_at(&api.http, &api.base, cookie).await
}

/// `imx_session=…` from a Set-Cookie header.
fn session_cookie(headers: &HeaderMap) -> String {
    let set = headers
        .get(SET_COOKIE)
        .expect("a Set-Cookie header")
        .to_str()
        .expect("ASCII");
    set.split(';').next().expect("a name=value pair").to_owned()
}

async fn graphql_with_cookie(
    api: &TestApi,
    cookie: &str,
    csrf: Option<&str>,
    origin: Option<&str>,
    query: &str,
) -> (u16, Value) {
    let mut request = api
        .http
        .post(format!("{}/graphql", api.base))
        .header("cookie", cookie)
        .json(&json!({ "query": query }));
    if let Some(csrf) = csrf {
        request = request.header("x-imx-csrf", csrf);
    }
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    let response = request.send().await.expect("the server answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// An HTML page with the strict CSP and the other security headers, whose
/// every `<script>` is an empty tag naming a file under one of `sources`.
async fn assert_strict_page(response: reqwest::Response, sources: &[&str]) {
    let headers = response.headers().clone();
    let header = |name: &str| {
        headers
            .get(name)
            .unwrap_or_else(|| panic!("{name} is set"))
            .to_str()
            .expect("ASCII")
            .to_owned()
    };
    let csp = header("content-security-policy");
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ] {
        assert!(csp.contains(directive), "{directive} in {csp}");
    }
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{csp}"
    );
    assert_eq!(header("x-content-type-options"), "nosniff");
    assert_eq!(header("referrer-policy"), "no-referrer");
    assert_eq!(header("x-frame-options"), "DENY");
    assert!(header("content-type").starts_with("text/html"));
    let html = response.text().await.expect("a body");
    // No inline script: every <script> names its file.
    for script in html.split("<script").skip(1) {
        let tag = script.split('>').next().unwrap_or_default();
        assert!(
            sources
                .iter()
                .any(|source| tag.contains(&format!("src=\"{source}"))),
            "inline script: <script{tag}>"
        );
        assert!(
            script
                .split('>')
                .nth(1)
                .unwrap_or_default()
                .starts_with("</script")
        );
    }
    assert!(!html.contains(" style="), "no inline style attribute");
}

/// GETs `path` (accepting gzip): 200 with `content_type` and nosniff; its headers.
async fn served_file(api: &TestApi, path: &str, content_type: &str) -> HeaderMap {
    let response = api
        .http
        .get(format!("{}{path}", api.base))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .expect("a file");
    assert_eq!(response.status().as_u16(), 200, "{path}");
    let headers = response.headers().clone();
    let served_as = headers["content-type"].to_str().unwrap();
    assert!(served_as.starts_with(content_type), "{path}: {served_as}");
    assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
    headers
}

async fn assert_not_found(api: &TestApi, path: &str) {
    let missing = api
        .http
        .get(format!("{}{path}", api.base))
        .send()
        .await
        .expect("an answer");
    assert_eq!(missing.status().as_u16(), 404, "{path}");
}

/// GraphiQL at GET /graphql: the UI's headers, external scripts only (the
/// vendored release files and one of ours), each served with its type and
/// the headers, cached for good (their names carry their versions).
#[tokio::test]
async fn graphiql_is_served_with_the_strict_csp_and_vendored_scripts() {
    let url = &database_urls()[0];
    let api = TestApi::start(url, config(), false).await;
    let response = api
        .http
        .get(format!("{}/graphql", api.base))
        .send()
        .await
        .expect("GET /graphql");
    assert_eq!(response.status().as_u16(), 200);
    assert_strict_page(response, &["/ui/vendor/", "/ui/assets/"]).await;
    for (path, content_type) in [
        ("/ui/vendor/graphiql-3.8.3.min.js", "text/javascript"),
        ("/ui/vendor/graphiql-3.8.3.min.css", "text/css"),
        (
            "/ui/vendor/react-18.3.1.production.min.js",
            "text/javascript",
        ),
        (
            "/ui/vendor/react-dom-18.3.1.production.min.js",
            "text/javascript",
        ),
        ("/ui/assets/graphiql.js", "text/javascript"),
    ] {
        let headers = served_file(&api, path, content_type).await;
        if path.starts_with("/ui/vendor/") {
            let cache = headers["cache-control"].to_str().unwrap();
            assert!(cache.contains("immutable"), "{path}: {cache}");
        }
    }
    assert_not_found(&api, "/ui/vendor/graphiql.js").await;
    api.stop().await;
}

#[tokio::test]
async fn the_ui_is_served_with_a_strict_csp_and_security_headers() {
    let url = &database_urls()[0];
    let api = TestApi::start(url, config(), false).await;
    let response = api
        .http
        .get(format!("{}/", api.base))
        .send()
        .await
        .expect("GET /");
    assert_eq!(response.status().as_u16(), 200);
    assert_strict_page(response, &["/ui/assets/"]).await;

    // Every asset the page names is served, with its type and the headers,
    // and gzip-compressed when the client accepts it.
    for (name, content_type) in [
        ("app.js", "text/javascript"),
        ("app.css", "text/css"),
        ("favicon.svg", "image/svg+xml"),
    ] {
        let headers = served_file(&api, &format!("/ui/assets/{name}"), content_type).await;
        if name != "favicon.svg" {
            assert_eq!(headers["content-encoding"], "gzip", "{name}");
        }
    }
    assert_not_found(&api, "/ui/assets/nothing.js").await;
    api.stop().await;
}

#[tokio::test]
async fn sign_in_makes_a_strict_cookie_and_csrf_guards_every_cookie_request() {
    let url = &database_urls()[0];
    let api = TestApi::start(url, config(), true).await;
    let viewer = api.api_key(&["viewer"]).await;

    // Bad credentials: 401 and no cookie.
    let (status, headers, body) = sign_in(&api, "imx_0000", &[]).await;
    assert_eq!(status, 401, "{body}");
    assert!(headers.get(SET_COOKIE).is_none());
    let (status, _, _) = sign_in(&api, "", &[]).await;
    assert_eq!(status, 401);
    // A sign-in posted from another site is refused.
    let (status, headers, _) = sign_in(&api, &viewer, &[("origin", "http://evil.example")]).await;
    assert_eq!(status, 403);
    assert!(headers.get(SET_COOKIE).is_none());

    let (status, headers, body) = sign_in(&api, &viewer, &[]).await;
    assert_eq!(status, 200, "{body}");
    let set = headers[SET_COOKIE].to_str().unwrap().to_owned();
    for part in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(part), "{part} in {set}");
    }
    assert!(!set.contains("Secure"), "no Secure over plain HTTP: {set}");
    assert!(
        !set.contains(&viewer),
        "the credential never goes to the browser"
    );
    assert_eq!(body["roles"], json!(["viewer"]));
    assert_eq!(body["mayOperate"], json!(false));
    let csrf = body["csrf"].as_str().expect("a CSRF token").to_owned();
    let cookie = session_cookie(&headers);

    // Under TLS (a proxy says so) the cookie is Secure.
    let (_, tls_headers, _) = sign_in(&api, &viewer, &[("x-forwarded-proto", "https")]).await;
    assert!(
        tls_headers[SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("; Secure")
    );

    // The cookie counts only with its CSRF token, from this origin.
    let (status, body) = graphql_with_cookie(&api, &cookie, Some(&csrf), None, ME).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["me"]["roles"], json!(["viewer"]));
    let (status, body) = graphql_with_cookie(&api, &cookie, None, None, ME).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["errors"][0]["extensions"]["code"], "FORBIDDEN");
    let (status, _) = graphql_with_cookie(&api, &cookie, Some("wrong"), None, ME).await;
    assert_eq!(status, 403);
    let (status, _) =
        graphql_with_cookie(&api, &cookie, Some(&csrf), Some("http://evil.example"), ME).await;
    assert_eq!(status, 403);
    // Roles apply as over the API: a viewer's session cannot start a run.
    let (_, body) = graphql_with_cookie(
        &api,
        &cookie,
        Some(&csrf),
        None,
        "mutation { startRun(workflow: \"nothing\") { created } }",
    )
    .await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{body}"
    );

    // GET /ui/session hands the token to the page again.
    let (status, current) = current_session(&api, &cookie).await;
    assert_eq!(status, 200);
    assert_eq!(current["csrf"], json!(csrf));

    // Sign-out needs the token, then ends the session on the server: the
    // same cookie no longer works even with the right token.
    let sign_out = |token: Option<&str>| {
        let mut request = api
            .http
            .delete(format!("{}/ui/session", api.base))
            .header("cookie", &cookie);
        if let Some(token) = token {
            request = request.header("x-imx-csrf", token);
        }
        request.send()
    };
    assert_eq!(
        sign_out(None).await.expect("an answer").status().as_u16(),
        403
    );
    let out = sign_out(Some(&csrf)).await.expect("an answer");
    assert_eq!(out.status().as_u16(), 204);
    assert!(
        out.headers()[SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let (status, body) = graphql_with_cookie(&api, &cookie, Some(&csrf), None, ME).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(current_session(&api, &cookie).await.0, 401);
    api.stop().await;
}

#[tokio::test]
async fn a_session_ends_when_its_jwt_expires() {
    let url = &database_urls()[0];
    let api = TestApi::start(url, config(), false).await;
    // Valid for 1 s plus the server's 5 s leeway; the check compares whole
    // seconds (`exp < now - leeway`), so past it means 2 s more.
    let token = jwt(&["operator"], 1);
    let (status, headers, body) = sign_in(&api, &token, &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["mayOperate"], json!(true));
    let cookie = session_cookie(&headers);
    let csrf = body["csrf"].as_str().unwrap().to_owned();
    let (status, _) = graphql_with_cookie(&api, &cookie, Some(&csrf), None, ME).await;
    assert_eq!(status, 200);
    tokio::time::sleep(std::time::Duration::from_millis(
        1_000 * (1 + imx_gateway::api::auth::JWT_LEEWAY_S + 2),
    ))
    .await;
    let (status, body) = graphql_with_cookie(&api, &cookie, Some(&csrf), None, ME).await;
    assert_eq!(status, 401, "{body}");
    api.stop().await;
}

/// The cookie and CSRF token of a sign-in to `base` with `key`.
async fn sign_in_to(http: &reqwest::Client, base: &str, key: &str) -> (String, String) {
    let response = http
        .post(format!("{base}/ui/session"))
        .json(&json!({ "credential": key }))
        .send()
        .await
        .expect("sign-in answers");
    assert_eq!(response.status().as_u16(), 200);
    let cookie = session_cookie(response.headers());
    let body: Value = response.json().await.expect("JSON");
    (
        cookie,
        body["csrf"].as_str().expect("a CSRF token").to_owned(),
    )
}

/// `{ me { id } }` on `base` with the session: the status and answer.
async fn me_with_session(
    http: &reqwest::Client,
    base: &str,
    (cookie, csrf): &(String, String),
) -> (u16, Value) {
    let response = http
        .post(format!("{base}/graphql"))
        .header("cookie", cookie)
        .header("x-imx-csrf", csrf)
        .json(&json!({ "query": ME }))
        .send()
        .await
        .expect("an answer");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Sessions live in the store: two `imx serve` processes on one database
/// share them, a restart keeps them, and signing out on one node ends the
/// session on the other.
#[tokio::test]
async fn sessions_survive_a_restart_and_work_across_two_nodes_until_signed_out() {
    sessions_across_nodes(&crate::served::Served::scratch_url("ui-sessions")).await;
    let what = "sessions across two nodes";
    if let Some(database) = testkit::postgres::ScratchDatabase::create(
        what,
        "imx_ui_sessions",
        testkit::postgres::ClusterUse::Shared,
    )
    .await
    {
        sessions_across_nodes(&database.url).await;
    }
}

async fn sessions_across_nodes(url: &str) {
    use crate::served::Served;
    let key = crate::ui_browser::api_key(url, "operator");
    let node_a = Served::start_on(url, false, &[], &[]).await;
    let node_b = Served::start_on(url, false, &[], &[]).await;
    let http = reqwest::Client::new();
    let session = sign_in_to(&http, &node_a.base, &key).await;
    let (status, body) = me_with_session(&http, &node_b.base, &session).await;
    assert_eq!(status, 200, "signed in on A, used on B: {body}");
    assert_eq!(body["data"]["me"]["roles"], json!(["operator"]));
    let (status, _) = me_with_session(
        &http,
        &node_b.base,
        &(session.0.clone(), "wrong".to_owned()),
    )
    .await;
    assert_eq!(status, 403, "the CSRF token is bound to the session");

    // A restart of A keeps the session.
    node_a.stop().await;
    let node_a = Served::start_on(url, false, &[], &[]).await;
    let (status, body) = me_with_session(&http, &node_a.base, &session).await;
    assert_eq!(status, 200, "after a restart: {body}");

    // Signed out on B: refused on A.
    let signed_out = http
        .delete(format!("{}/ui/session", node_b.base))
        .header("cookie", &session.0)
        .header("x-imx-csrf", &session.1)
        .send()
        .await
        .expect("sign-out answers");
    assert_eq!(signed_out.status().as_u16(), 204);
    let (status, body) = me_with_session(&http, &node_a.base, &session).await;
    assert_eq!(status, 401, "signed out on B, refused on A: {body}");
    let (status, _) = current_session_at(&http, &node_a.base, &session.0).await;
    assert_eq!(status, 401);
    node_a.stop().await;
    node_b.stop().await;
}

async fn current_session_at(http: &reqwest::Client, base: &str, cookie: &str) -> (u16, Value) {
    let response = http
        .get(format!("{base}/ui/session"))
        .header("cookie", cookie)
        .send()
        .await
        .expect("an answer");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}
