//! GraphQL over HTTP against a node, the way a client does it: a request
//! with a deadline, an answer or a reason, never a panic (nodes die under
//! the scenarios; the caller decides to retry elsewhere).

use std::time::Duration;

use serde_json::{Value, json};

/// Deadline of one request.
pub const REQUEST_MS_MAX: u64 = 15_000;

/// An HTTP client for the scenarios (no proxy: loopback only).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(REQUEST_MS_MAX))
        .build()
        .expect("an HTTP client")
}

/// What one GraphQL request got: the HTTP status and the JSON body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl Answer {
    /// `data.<field>` when there is no error.
    pub fn data(&self, field: &str) -> Option<&Value> {
        if self.body.get("errors").is_some() {
            return None;
        }
        self.body.get("data")?.get(field).filter(|v| !v.is_null())
    }

    /// `errors[*].extensions.code`.
    pub fn error_codes(&self) -> Vec<String> {
        self.body["errors"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|error| error["extensions"]["code"].as_str().map(str::to_owned))
            .collect()
    }
}

/// POSTs `query` with `variables` to `base`/graphql.
pub async fn post(
    client: &reqwest::Client,
    base: &str,
    query: &str,
    variables: Value,
) -> Result<Answer, String> {
    let response = client
        .post(format!("{base}/graphql"))
        .json(&json!({"query": query, "variables": variables}))
        .send()
        .await
        .map_err(|error| error.to_string())?;
    let status = response.status().as_u16();
    let body = response.json().await.map_err(|error| error.to_string())?;
    Ok(Answer { status, body })
}

pub const REGISTER: &str =
    "mutation($source: String!) { registerWorkflow(source: $source) { __typename } }";
pub const START: &str = "mutation($workflow: String!, $input: JSON, $key: String) { startRun(workflow: $workflow, input: $input, idempotencyKey: $key) { run { id } created } }";
pub const APPROVE: &str =
    "mutation($run: ID!, $step: String!) { approveStep(runId: $run, step: $step) { id } }";
