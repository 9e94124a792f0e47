//! Webhook triggers over real HTTP against a real `imx serve` (the abuse
//! suite's [`Server`]: the `imx` binary on a fresh SQLite store on a
//! loopback port, its secrets passed as `IMX_SECRET_*`). Requests are signed
//! here with `hmac` directly, not with the engine's code.

mod mapping;
mod refusals;
mod signatures;

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::abuse::Server;

/// The secret of the `hooked`, `raw` and `multi/github` triggers.
pub const SECRET: &str = "the webhook secret of the tests";
/// The secret of `multi/imx`.
pub const OTHER_SECRET: &str = "another webhook secret";

/// `hooked`: a template maps the request to the input.
pub const HOOKED: &str = r#"name: hooked
input:
  type: object
  required: [repo, event]
  properties:
    repo: { type: string }
    event: { type: string }
    delivery: { type: [string, "null"] }
    trigger: { type: string }
triggers:
  - webhook: { secret_env: HOOK_SECRET }
    input:
      repo: "{{ body.repository.full_name }}"
      event: "{{ headers['x-github-event'] }}"
      delivery: "{{ trigger.delivery }}"
      trigger: "{{ trigger.id }}"
steps:
  done: { uses: noop }
"#;

/// `raw`: no template, the body is the input.
pub const RAW: &str = r#"name: raw
input:
  type: object
  required: [action]
  properties:
    action: { type: string }
    number: { type: integer }
triggers:
  - webhook: { secret_env: HOOK_SECRET }
steps:
  done: { uses: noop }
"#;

/// `multi`: two webhook triggers with ids.
pub const MULTI: &str = r#"name: multi
triggers:
  - id: github
    webhook: { secret_env: HOOK_SECRET }
  - id: imx
    webhook: { secret_env: OTHER_HOOK_SECRET }
steps:
  done: { uses: noop }
"#;

/// `echo`: the whole template scope (body, headers, trigger) as the input.
pub const ECHO: &str = r#"name: echo
triggers:
  - webhook: { secret_env: HOOK_SECRET }
    input:
      body: "{{ body }}"
      headers: "{{ headers }}"
      trigger: "{{ trigger }}"
steps:
  done: { uses: noop }
"#;

/// `math`: a template that fails on a body whose `n` is not a number.
pub const MATH: &str = r#"name: math
triggers:
  - webhook: { secret_env: HOOK_SECRET }
    input: { next: "{{ body.n + 1 }}" }
steps:
  done: { uses: noop }
"#;

/// GitHub's published example secret ("Validating webhook deliveries").
pub const GITHUB_VECTOR_SECRET: &str = "It's a Secret to Everybody";

/// `vector`: signed with GitHub's example secret.
pub const VECTOR: &str = r#"name: vector
triggers:
  - webhook: { secret_env: GITHUB_VECTOR_SECRET }
steps:
  done: { uses: noop }
"#;

/// `dark`: its secret is set on no node.
pub const DARK: &str = r#"name: dark
triggers:
  - webhook: { secret_env: DARK_HOOK_SECRET }
steps:
  done: { uses: noop }
"#;

/// `plain`: no webhook trigger at all.
pub const PLAIN: &str = r#"name: plain
steps:
  done: { uses: noop }
"#;

const REGISTER: &str = r#"mutation($source: String!) {
  registerWorkflow(source: $source) {
    __typename
    ... on WorkflowRejected { diagnostics { code message line column } }
  } }"#;

/// A server with every test workflow registered, and an admin key.
pub struct Hooks {
    pub server: Server,
    pub admin: String,
    pub http: reqwest::Client,
}

impl Hooks {
    /// `imx serve ARGS…` with every secret but `dark`'s set, and `workflows` registered.
    pub async fn start(args: &[&str], workflows: &[&str]) -> Hooks {
        Self::start_with(
            args,
            &workflows
                .iter()
                .map(|source| (*source).to_owned())
                .collect::<Vec<_>>(),
        )
        .await
    }

    /// [`Hooks::start`] with owned sources (example files).
    pub async fn start_with(args: &[&str], workflows: &[String]) -> Hooks {
        let env = [
            ("IMX_SECRET_HOOK_SECRET", SECRET),
            ("IMX_SECRET_OTHER_HOOK_SECRET", OTHER_SECRET),
            ("IMX_SECRET_GITHUB_VECTOR_SECRET", GITHUB_VECTOR_SECRET),
            // The examples in workflows/.
            ("IMX_SECRET_ALERTS_WEBHOOK_SECRET", SECRET),
            ("IMX_SECRET_SHOP_WEBHOOK_SECRET", SECRET),
        ];
        let server = Server::start(args, &env).await;
        let admin = server.api_key("admin").await;
        for source in workflows {
            let (status, body) = server
                .graphql(Some(&admin), REGISTER, json!({"source": source.as_str()}))
                .await;
            assert_eq!(status, 200, "{body}");
            assert_eq!(
                body["data"]["registerWorkflow"]["__typename"], "Workflow",
                "{body}"
            );
        }
        Hooks {
            server,
            admin,
            http: reqwest::Client::new(),
        }
    }

    /// POST `body` to `/hooks/{path}` with `headers`: the status and the JSON answer.
    pub async fn post(
        &self,
        path: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> (u16, Value) {
        let mut request = self
            .http
            .post(format!("{}/hooks/{path}", self.server.base()))
            .header("content-type", "application/json")
            .body(body.to_vec());
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let response = request.send().await.expect("the webhook answers");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Ids of every run of `workflow`.
    pub async fn runs(&self, workflow: &str) -> Vec<String> {
        let query = r#"query($workflow: String!) {
          runs(filter: {workflow: $workflow}, first: 100) { edges { node { id } } } }"#;
        let (status, body) = self
            .server
            .graphql(Some(&self.admin), query, json!({"workflow": workflow}))
            .await;
        assert_eq!(status, 200, "{body}");
        body["data"]["runs"]["edges"]
            .as_array()
            .unwrap_or_else(|| panic!("a runs connection: {body}"))
            .iter()
            .map(|edge| edge["node"]["id"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// A run's input, trigger, idempotency key and first event's payload.
    pub async fn run(&self, id: &str) -> Value {
        let query = r#"query($id: ID!) { run(id: $id) {
          input trigger idempotencyKey
          events(first: 1) { edges { node { type payload } } } } }"#;
        let (status, body) = self
            .server
            .graphql(Some(&self.admin), query, json!({"id": id}))
            .await;
        assert_eq!(status, 200, "{body}");
        body["data"]["run"].clone()
    }

    /// The `imx_webhooks_total` sample with these labels (0 when absent).
    pub async fn webhooks_counted(&self, outcome: &str, reason: &str) -> u64 {
        let text = reqwest::get(format!("{}/metrics", self.server.base()))
            .await
            .expect("metrics answer")
            .text()
            .await
            .expect("a metrics body");
        let sample = format!("imx_webhooks_total{{outcome=\"{outcome}\",reason=\"{reason}\"}} ");
        text.lines()
            .find_map(|line| line.strip_prefix(&sample))
            .map_or(0, |count| count.trim().parse().expect("a count"))
    }
}

fn hmac_hex(secret: &str, message: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).expect("a key");
    mac.update(message);
    hex::encode(mac.finalize().into_bytes())
}

/// GitHub's headers for `body`: the signature and, when given, a delivery id.
pub fn github(secret: &str, body: &[u8], delivery: Option<&str>) -> Vec<(String, String)> {
    let mut headers = vec![
        (
            "x-hub-signature-256".to_owned(),
            format!("sha256={}", hmac_hex(secret, body)),
        ),
        ("x-github-event".to_owned(), "push".to_owned()),
    ];
    if let Some(delivery) = delivery {
        headers.push(("x-github-delivery".to_owned(), delivery.to_owned()));
    }
    headers
}

/// imx's headers for `body` signed at `timestamp` (unix seconds).
pub fn imx(secret: &str, timestamp: i64, body: &[u8]) -> Vec<(String, String)> {
    let mut signed = format!("{timestamp}.").into_bytes();
    signed.extend_from_slice(body);
    vec![
        ("x-imx-timestamp".to_owned(), timestamp.to_string()),
        (
            "x-imx-signature".to_owned(),
            format!("v1={}", hmac_hex(secret, &signed)),
        ),
    ]
}

/// Now, in unix seconds, by the clock the server reads too.
pub fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Longest wait for a log line.
pub const LOG_WAIT: Duration = Duration::from_secs(10);

/// The refusal's `code` and `imx_code`, asserted, with the status.
pub fn assert_refused(answer: &(u16, Value), status: u16, code: &str, imx_code: &str) {
    let (got, body) = answer;
    assert_eq!(*got, status, "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["imx_code"], imx_code, "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.starts_with(imx_code), "{body}");
}
