//! Harness for the API tests: a real `imx serve` API on 127.0.0.1:0 in this
//! process, on a fresh SQLite file (and on the PostgreSQL at
//! `IMX_TEST_POSTGRES_URL` when set), driven by real clients: reqwest over
//! HTTP and tokio-tungstenite speaking graphql-transport-ws.

use std::sync::Arc;
use std::time::Duration;

use engine::runtime::{Config as RuntimeConfig, Runtime, RuntimeHandle};
use engine::store::{ApiKeys, Store};
use futures_util::{SinkExt, StreamExt};
use imx_gateway::api::auth::new_api_key;
use imx_gateway::api::bind_api;
use imx_gateway::api::config::{ApiConfig, JwtConfig, JwtKeys, Limits};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

pub const SECRET: &str = "test-secret-that-is-at-least-32-bytes-long";
pub const ISSUER: &str = "imx-test";
pub const AUDIENCE: &str = "imx-api";
/// Longest a test waits for anything over the wire.
pub const WAIT: Duration = Duration::from_secs(20);

/// Where the tests run: always SQLite; PostgreSQL too when configured.
pub fn database_urls() -> Vec<String> {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("api-{}", uuid::Uuid::now_v7().simple()));
    let mut urls = vec![format!("sqlite://{}/imx.db", dir.display())];
    if let Ok(url) = std::env::var("IMX_TEST_POSTGRES_URL") {
        urls.push(url);
    }
    urls
}

pub fn config() -> ApiConfig {
    ApiConfig {
        listen: "127.0.0.1:0".parse().expect("a loopback address"),
        metrics_listen: None,
        insecure_no_auth: false,
        jwt: Some(JwtConfig {
            algorithm: Algorithm::HS256,
            keys: JwtKeys::One(DecodingKey::from_secret(SECRET.as_bytes())),
            issuer: ISSUER.to_owned(),
            audience: AUDIENCE.to_owned(),
            role_claim: "roles".to_owned(),
        }),
        graphiql: true,
        introspection: true,
        limits: Limits {
            subscription_poll_ms: 50,
            ..Limits::default()
        },
    }
}

/// A running API (with a runtime unless asked otherwise).
pub struct TestApi {
    pub base: String,
    pub store: Arc<Store>,
    pub runtime: Option<Arc<Runtime<Store>>>,
    handle: Option<RuntimeHandle>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
    pub http: reqwest::Client,
}

impl TestApi {
    pub async fn start(url: &str, config: ApiConfig, with_runtime: bool) -> TestApi {
        let store = Arc::new(engine::store::open(url).await.expect("the store opens"));
        let (runtime, handle) = if with_runtime {
            let runtime_config = RuntimeConfig {
                resume_on_start: false,
                ..RuntimeConfig::default()
            };
            let runtime = Runtime::new(store.clone(), Vec::new(), runtime_config);
            let handle = runtime.start().await.expect("the runtime starts");
            (Some(runtime), Some(handle))
        } else {
            (None, None)
        };
        let bound = bind_api(config, store.clone(), runtime.clone())
            .await
            .expect("the API binds");
        let addr = bound.local_addr().expect("a bound address");
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let _ = bound
                .serve(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        TestApi {
            base: format!("http://{addr}"),
            store,
            runtime,
            handle,
            stop: Some(stop),
            server: Some(server),
            http: reqwest::Client::new(),
        }
    }

    /// Stops the server (graceful) and the runtime.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = tokio::time::timeout(WAIT, server).await;
        }
        if let Some(handle) = self.handle.take() {
            handle.shutdown().await;
        }
    }

    /// POSTs a raw body to /graphql; returns status and JSON body.
    pub async fn post_raw(&self, token: Option<&str>, body: Vec<u8>) -> (u16, Value) {
        let mut request = self
            .http
            .post(format!("{}/graphql", self.base))
            .header("content-type", "application/json")
            .body(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("the server answers");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn post(&self, token: Option<&str>, query: &str, variables: Value) -> (u16, Value) {
        let body = json!({"query": query, "variables": variables});
        self.post_raw(token, body.to_string().into_bytes()).await
    }

    /// A GraphQL operation that must succeed without errors; returns `data`.
    pub async fn data(&self, token: &str, query: &str, variables: Value) -> Value {
        let (status, body) = self.post(Some(token), query, variables).await;
        assert_eq!(status, 200, "{body}");
        assert!(body.get("errors").is_none(), "{body}");
        body["data"].clone()
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("the server answers");
        (
            response.status().as_u16(),
            response.text().await.unwrap_or_default(),
        )
    }

    /// A new API key with `roles`.
    pub async fn api_key(&self, roles: &[&str]) -> String {
        let (key, record) = new_api_key("test", roles.iter().map(|r| r.to_string()).collect());
        self.store
            .create_api_key(&record)
            .await
            .expect("the key is stored");
        key
    }
}

/// An HS256 token for `roles`, valid for `valid_s` seconds (negative: expired).
pub fn jwt(roles: &[&str], valid_s: i64) -> String {
    let now = chrono::Utc::now().timestamp();
    let claims = json!({
        "sub": "tester", "iss": ISSUER, "aud": AUDIENCE,
        "iat": now, "exp": now + valid_s, "roles": roles,
    });
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("a token")
}

/// The `extensions.code` of the first error.
pub fn code(body: &Value) -> String {
    body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or("<none>")
        .to_owned()
}

/// A graphql-transport-ws client connection.
pub struct Ws {
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

impl Ws {
    /// Connects and authenticates in `connection_init`; Err with the close reason on refusal.
    pub async fn connect(api: &TestApi, token: &str) -> Result<Ws, String> {
        Ws::connect_to(&api.base, token).await
    }

    /// Connects to the server at `base` (`http://host:port`).
    pub async fn connect_to(base: &str, token: &str) -> Result<Ws, String> {
        let url = format!("{}/graphql", base.replace("http://", "ws://"));
        let mut request = url.into_client_request().expect("a ws request");
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            "graphql-transport-ws".parse().expect("a header value"),
        );
        let (socket, _) = tokio_tungstenite::connect_async(request)
            .await
            .map_err(|e| e.to_string())?;
        let mut ws = Ws { socket };
        ws.send(json!({"type": "connection_init", "payload": {"authorization": format!("Bearer {token}")}}))
            .await;
        match ws.next().await {
            Some(message) if message["type"] == "connection_ack" => Ok(ws),
            other => Err(format!("{other:?}")),
        }
    }

    pub async fn send(&mut self, message: Value) {
        self.socket
            .send(Message::Text(message.to_string().into()))
            .await
            .expect("the socket takes the message");
    }

    /// The next JSON message, or None when the socket closed.
    pub async fn next(&mut self) -> Option<Value> {
        loop {
            let message = tokio::time::timeout(WAIT, self.socket.next())
                .await
                .expect("a message within the wait")?;
            match message {
                Ok(Message::Text(text)) => return serde_json::from_str(&text).ok(),
                Ok(Message::Close(frame)) => {
                    return Some(json!({"type": "closed", "frame": format!("{frame:?}")}));
                }
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    }

    pub async fn subscribe(&mut self, id: &str, query: &str, variables: Value) {
        self.send(json!({"id": id, "type": "subscribe", "payload": {"query": query, "variables": variables}}))
            .await;
    }

    pub async fn close(mut self) {
        let _ = self.socket.close(None).await;
    }
}

pub const NOOP_WORKFLOW: &str = r#"
name: NAME
steps:
  first:
    uses: noop
    with: { value: 1 }
  second:
    needs: [first]
    uses: noop
    with: { value: "{{ steps.first.output.value }}" }
"#;

pub const APPROVAL_WORKFLOW: &str = r#"
name: NAME
steps:
  prepare:
    uses: noop
    with: { ready: true }
  approve:
    needs: [prepare]
    uses: approval
    with: { role: finance, message: "Ship it?" }
  ship:
    needs: [approve]
    uses: noop
    with: { shipped: true }
"#;

pub const FAILING_WORKFLOW: &str = r#"
name: NAME
steps:
  prepare:
    uses: noop
    with: { ready: true }
  boom:
    needs: [prepare]
    uses: fail
    with: { message: "it broke" }
  after:
    needs: [boom]
    uses: noop
"#;

/// A workflow source with a unique name (tests share PostgreSQL).
pub fn named(source: &str, prefix: &str) -> (String, String) {
    let name = format!("{prefix}-{}", uuid::Uuid::now_v7().simple());
    (name.clone(), source.replace("NAME", &name))
}

pub const REGISTER: &str = r#"mutation($source: String!) { registerWorkflow(source: $source) {
  __typename
  ... on Workflow { name version mermaid }
  ... on WorkflowRejected { diagnostics { code severity message hint line column } } } }"#;

pub const START: &str = r#"mutation($workflow: String!, $input: JSON, $key: String) {
  startRun(workflow: $workflow, input: $input, idempotencyKey: $key) { created run { id status } } }"#;

/// Registers `source` as admin and returns the workflow name.
pub async fn register(api: &TestApi, token: &str, source: &str) {
    let data = api.data(token, REGISTER, json!({"source": source})).await;
    assert_eq!(data["registerWorkflow"]["__typename"], "Workflow", "{data}");
}

/// Starts a run and returns its id.
pub async fn start(api: &TestApi, token: &str, workflow: &str) -> String {
    let data = api.data(token, START, json!({"workflow": workflow})).await;
    data["startRun"]["run"]["id"]
        .as_str()
        .expect("a run id")
        .to_owned()
}

/// Polls `run(id) { status }` until it is `status` (bounded by WAIT).
pub async fn wait_status(api: &TestApi, token: &str, run_id: &str, status: &str) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let data = api
            .data(
                token,
                "query($id: ID!) { run(id: $id) { status steps { id status attempts output } } }",
                json!({"id": run_id}),
            )
            .await;
        if data["run"]["status"] == status {
            return data;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "run {run_id} never became {status}: {data}"
        );
        // Wait for the next change rather than a fixed sleep.
        let mut changes = api.runtime.as_ref().expect("a runtime").changes();
        let _ = tokio::time::timeout(Duration::from_millis(200), changes.recv()).await;
    }
}

/// A server on the first test database allowing each caller 1 operation a
/// second with a burst of 3, and two viewer keys (two callers).
pub async fn rate_limited_api() -> (TestApi, String, String) {
    let url = database_urls().remove(0);
    let mut config = config();
    config.limits = imx_gateway::api::config::Limits {
        rate_per_second: 1,
        rate_burst: 3,
        ..config.limits
    };
    let api = TestApi::start(&url, config, false).await;
    let one = api.api_key(&["viewer"]).await;
    let other = api.api_key(&["viewer"]).await;
    (api, one, other)
}
