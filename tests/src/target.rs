//! The outside world the workflows act on: a real HTTP server on a free
//! loopback port that answers every request with JSON and records what it
//! saw (path, `Idempotency-Key`), so the checker can tell which side
//! effects happened and under which key. `?delay_ms=N` holds the answer
//! for N ms (a slow service, for the stalled-node scenario); `?bytes=N`
//! answers `{"text": N × "x"}`; a path ending in `/nul` answers a string
//! holding a NUL character (`"a\u0000b"`), which PostgreSQL text cannot
//! store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, Uri};
use serde_json::{Value, json};

/// Longest `?delay_ms=` the server honours.
pub const DELAY_MS_MAX: u64 = 120_000;
/// Largest `?bytes=` the server honours.
pub const TEXT_BYTES_MAX: usize = 4 * 1024 * 1024;

/// One request the server received.
#[derive(Debug, Clone)]
pub struct Hit {
    pub path: String,
    pub key: Option<String>,
}

/// The running server.
#[derive(Debug)]
pub struct Target {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    hits: Arc<Mutex<Vec<Hit>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Target {
    pub async fn start() -> Target {
        let hits: Arc<Mutex<Vec<Hit>>> = Arc::default();
        let app = axum::Router::new()
            .fallback(answer)
            .with_state(Arc::clone(&hits));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the target server");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Target { base, hits, task }
    }

    /// Every request so far.
    pub fn hits(&self) -> Vec<Hit> {
        self.hits.lock().expect("hits lock").clone()
    }

    /// Requests per idempotency key.
    pub fn keys(&self) -> HashMap<String, usize> {
        let mut keys = HashMap::new();
        for hit in self.hits() {
            if let Some(key) = hit.key {
                *keys.entry(key).or_default() += 1;
            }
        }
        keys
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(
    State(hits): State<Arc<Mutex<Vec<Hit>>>>,
    uri: Uri,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> axum::Json<Value> {
    let key = headers
        .get("idempotency-key")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    hits.lock().expect("hits lock").push(Hit {
        path: uri.path().to_owned(),
        key: key.clone(),
    });
    if let Some(delay) = query.get("delay_ms").and_then(|ms| ms.parse::<u64>().ok()) {
        // The service being slow, not the test waiting.
        tokio::time::sleep(Duration::from_millis(delay.min(DELAY_MS_MAX))).await;
    }
    if uri.path().ends_with("/nul") {
        return axum::Json(json!({"text": "a\u{0}b"}));
    }
    if let Some(bytes) = query.get("bytes").and_then(|n| n.parse::<usize>().ok()) {
        return axum::Json(json!({"text": "x".repeat(bytes.min(TEXT_BYTES_MAX))}));
    }
    let tracking = key.as_deref().map(|key| format!("T-{}", key.len()));
    axum::Json(json!({"ok": true, "key": key, "tracking": tracking}))
}
