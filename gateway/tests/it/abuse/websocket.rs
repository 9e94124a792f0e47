//! WebSocket probes (issue #13, item 6): `connection_init` is read before
//! the caller is authenticated, so its size and its wait are bounded, and
//! one caller cannot hold every subscription of the server.

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use super::{Server, close_code, raw_websocket};
use crate::api::Ws;

/// The size a hostile `connection_init` frame claims: over the body limit
/// (256 KiB) but under tungstenite's own frame limit (16 MiB), which the
/// server used before, so that only the body limit can refuse it at once.
const CLAIMED_INIT_BYTES: u64 = 8 * 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_connection_init_larger_than_body_limit_is_refused() {
    let server = Server::start(&[], &[]).await;
    // Four at once, as in the report; each claims 8 MiB and sends a start.
    let probes = (0..4).map(|_| {
        let addr = server.addr.clone();
        tokio::spawn(async move {
            let mut socket = raw_websocket(&addr).await;
            let mut frame = vec![0x81, 0x80 | 127];
            frame.extend_from_slice(&CLAIMED_INIT_BYTES.to_be_bytes());
            // A zero mask leaves the payload as it is.
            frame.extend_from_slice(&[0, 0, 0, 0]);
            frame.extend_from_slice(br#"{"type":"connection_init","payload":{"pad":""#);
            frame.extend_from_slice(&[b'a'; 4096]);
            socket
                .write_all(&frame)
                .await
                .expect("write the frame start");
            close_code(&mut socket).await
        })
    });
    for probe in probes {
        let code = probe.await.expect("the probe ran");
        assert_eq!(code, Some(1009), "refused as too big (RFC 6455 1009)");
    }
    server.assert_healthy().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_without_connection_init_is_closed_after_the_init_timeout() {
    let server = Server::start(&["--websocket-init-timeout-ms", "300"], &[]).await;
    let mut silent = raw_websocket(&server.addr).await;
    assert_eq!(close_code(&mut silent).await, Some(4408));
    server.assert_healthy().await;
}

/// The id and `extensions.code` of the next error answer to any of `ids`.
async fn next_error(ws: &mut Ws, ids: &[&str]) -> (String, String) {
    loop {
        let message = ws.next().await.expect("an answer");
        let Some(id) = message["id"].as_str().filter(|id| ids.contains(id)) else {
            continue;
        };
        let errors = match &message["payload"] {
            Value::Array(errors) => errors.clone(),
            payload => payload["errors"].as_array().cloned().unwrap_or_default(),
        };
        let Some(code) = errors
            .first()
            .and_then(|error| error["extensions"]["code"].as_str())
        else {
            continue;
        };
        return (id.to_owned(), code.to_owned());
    }
}

const UPDATES: &str = "subscription { runUpdates { event { type } } }";
const EVENTS: &str = "subscription($id: ID!) { runEvents(runId: $id) { seq } }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_viewer_key_cannot_hold_every_subscription() {
    let server = Server::start(&["--subscriptions-per-caller-max", "2"], &[]).await;
    let greedy = server.api_key("viewer").await;
    let other = server.api_key("viewer").await;
    let mut ws = Ws::connect_to(&server.base(), &greedy)
        .await
        .expect("the socket opens");
    // The server starts the three in any order: one of them is refused.
    for id in ["1", "2", "3"] {
        ws.subscribe(id, UPDATES, json!({})).await;
    }
    let (refused, code) = next_error(&mut ws, &["1", "2", "3"]).await;
    assert_eq!(code, "LIMIT");
    // Another caller still has its share: its subscription gets as far as
    // the run lookup (an unknown run: NOT_FOUND, not LIMIT).
    let unknown = json!({"id": uuid::Uuid::now_v7().to_string()});
    let mut second = Ws::connect_to(&server.base(), &other)
        .await
        .expect("the socket opens");
    second.subscribe("a", EVENTS, unknown.clone()).await;
    assert_eq!(next_error(&mut second, &["a"]).await.1, "NOT_FOUND");
    // A completed subscription gives its slot back.
    let held = ["1", "2", "3"]
        .into_iter()
        .find(|id| *id != refused)
        .expect("a held subscription");
    ws.send(json!({"id": held, "type": "complete"})).await;
    ws.subscribe("4", EVENTS, unknown).await;
    assert_eq!(next_error(&mut ws, &["4"]).await.1, "NOT_FOUND");
    ws.close().await;
    second.close().await;
    server.assert_healthy().await;
}
