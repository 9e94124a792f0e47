//! graphql-transport-ws on an upgraded socket. `connection_init` is read
//! before the caller is known, so everything before it is bounded: its size
//! (frames and messages over `body_bytes_max` close the socket with 1009
//! before they are buffered, set on the upgrade in `http.rs`) and its wait
//! (`websocket_init_timeout_ms`, then 4408). Subscriptions per caller are
//! counted in `schema/subscription.rs`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_graphql::Data;
use async_graphql_axum::{GraphQLProtocol, GraphQLWebSocket};
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::{SinkExt, StreamExt};

use super::auth::Authenticator;
use super::http::AppState;
use super::ui::session::{Found, csrf_equal};
use super::ws_limit::WebSocketSession;

/// graphql-transport-ws: `connection_init` not received in time.
pub const WEBSOCKET_CLOSE_INIT_TIMEOUT: u16 = 4408;
/// RFC 6455: a message too big to process.
pub const WEBSOCKET_CLOSE_TOO_BIG: u16 = 1009;
/// How tungstenite's size refusal reads (axum passes its error on as
/// text only); `abuse::websocket` pins the resulting close code.
const SIZE_REFUSAL_TEXT: &str = "Space limit exceeded";

/// graphql-transport-ws on an upgraded socket. Until `connection_init`
/// has authenticated the caller, the socket has `websocket_init_timeout_ms`;
/// then it is closed with 4408 (the protocol's code for it).
pub async fn serve(
    socket: WebSocket,
    state: AppState,
    protocol: GraphQLProtocol,
    header_authorization: Option<String>,
    ui_session: Option<Found>,
) {
    let initialised = Arc::new(AtomicBool::new(false));
    let timed_out = Arc::new(AtomicBool::new(false));
    let (mut sink, stream) = socket.split();
    let deadline = {
        let initialised = Arc::clone(&initialised);
        let timed_out = Arc::clone(&timed_out);
        let limit = state.websocket_init_timeout;
        async move {
            tokio::time::sleep(limit).await;
            if initialised.load(Ordering::Acquire) {
                std::future::pending::<()>().await;
            }
            timed_out.store(true, Ordering::Release);
        }
    };
    let too_large = Arc::new(AtomicBool::new(false));
    let stream = {
        let too_large = Arc::clone(&too_large);
        stream.take_until(deadline).inspect(move |message| {
            if let Err(error) = message
                && error.to_string().contains(SIZE_REFUSAL_TEXT)
            {
                too_large.store(true, Ordering::Release);
            }
        })
    };
    let auth = state.auth.clone();
    let init_done = Arc::clone(&initialised);
    GraphQLWebSocket::new_with_pair(&mut sink, stream, state.schema.clone(), protocol)
        .on_connection_init(move |payload| {
            authenticate(auth, header_authorization, ui_session, payload, init_done)
        })
        .serve()
        .await;
    let refusal = if timed_out.load(Ordering::Acquire) {
        Some((
            WEBSOCKET_CLOSE_INIT_TIMEOUT,
            "Connection initialisation timeout: send connection_init within websocket_init_timeout_ms",
        ))
    } else if too_large.load(Ordering::Acquire) {
        Some((
            WEBSOCKET_CLOSE_TOO_BIG,
            "message larger than body_bytes_max",
        ))
    } else {
        None
    };
    if let Some((code, reason)) = refusal {
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        // The peer may be gone already; the socket closes either way.
        let _ = sink.send(Message::Close(Some(frame))).await;
    }
}

/// `connection_init`: the token comes with the upgrade or in the payload;
/// or else the upgrade carried the web UI's session cookie, and the payload
/// must carry the session's CSRF token (`{"csrf": …}`).
async fn authenticate(
    auth: Authenticator,
    header_authorization: Option<String>,
    ui_session: Option<Found>,
    payload: serde_json::Value,
    initialised: Arc<AtomicBool>,
) -> async_graphql::Result<Data> {
    let from_payload = ["authorization", "Authorization"].iter().find_map(|key| {
        payload
            .get(*key)
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    });
    let from_session = match ui_session {
        Some(found) if from_payload.is_none() => {
            let given = payload
                .get("csrf")
                .and_then(|v| v.as_str())
                .unwrap_or_default();
            if !csrf_equal(given, &found.csrf) {
                return Err(async_graphql::Error::new(
                    "the web UI session's connection_init needs its CSRF token (`csrf`)",
                ));
            }
            Some(found)
        }
        _ => None,
    };
    let authorization = header_authorization.or(from_payload);
    let principal = match (authorization, from_session) {
        (None, Some(found)) => auth.session_principal(&found).await,
        (authorization, _) => auth.authenticate(authorization.as_deref()).await,
    }
    .map_err(|error| async_graphql::Error::new(error.message))?;
    initialised.store(true, Ordering::Release);
    let mut data = Data::default();
    data.insert(principal);
    data.insert(WebSocketSession);
    Ok(data)
}
