//! A real HTTP server (axum) on 127.0.0.1:0 for the `http` executor's tests:
//! records every request and answers according to the path.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::PrivateKeyDer;

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }
}

#[derive(Debug, Clone, Default)]
struct Shared {
    requests: Arc<Mutex<Vec<Recorded>>>,
    flaky_calls: Arc<AtomicUsize>,
    carrier_calls: Arc<AtomicUsize>,
}

/// A running server; it stops with the test's runtime.
#[derive(Debug)]
pub struct Server {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    shared: Shared,
}

impl Server {
    pub async fn start() -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let address = listener.local_addr().expect("bound address");
        let shared = Shared::default();
        let app = Router::new().fallback(answer).with_state(shared.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Server {
            base: format!("http://{address}"),
            shared,
        }
    }

    /// The same server over HTTPS, with a certificate for `localhost` issued by
    /// a throwaway CA; also returns the CA's certificate (PEM).
    pub async fn start_tls() -> (Server, String) {
        let ca_key = rcgen::KeyPair::generate().expect("CA key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "imx test CA");
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("CA certificate");
        let leaf_key = rcgen::KeyPair::generate().expect("server key");
        let leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .expect("server params")
            .signed_by(&leaf_key, &ca)
            .expect("server certificate");
        let key = PrivateKeyDer::try_from(leaf_key.serialize_der()).expect("key DER");
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![leaf.der().clone()], key)
            .expect("server TLS config");
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let port = tcp.local_addr().expect("bound address").port();
        let listener = TlsListener {
            tcp,
            acceptor: TlsAcceptor::from(Arc::new(config)),
        };
        let shared = Shared::default();
        let app = Router::new().fallback(answer).with_state(shared.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let server = Server {
            base: format!("https://localhost:{port}"),
            shared,
        };
        (server, ca.pem())
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.shared
            .requests
            .lock()
            .expect("no test thread panicked holding the lock")
            .clone()
    }
}

async fn answer(
    State(shared): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let recorded = Recorded {
        method: method.to_string(),
        path: uri.path().to_owned(),
        query: uri.query().unwrap_or_default().to_owned(),
        headers: headers.clone(),
        body: body.to_vec(),
    };
    shared
        .requests
        .lock()
        .expect("no test thread panicked holding the lock")
        .push(recorded);
    let json = [(header::CONTENT_TYPE, "application/json")];
    let text = [(header::CONTENT_TYPE, "text/plain")];
    match uri.path() {
        "/json" => (json, r#"{"ok":true}"#).into_response(),
        "/text" => (text, "hello").into_response(),
        "/json-as-text" => (text, r#"{"a":1}"#).into_response(),
        "/number-as-text" => (text, "42").into_response(),
        "/empty" => StatusCode::NO_CONTENT.into_response(),
        "/echo-error" => {
            let authorization = headers
                .get(header::AUTHORIZATION)
                .and_then(|value| value.to_str().ok())
                .unwrap_or_default();
            let echo = format!("{uri} authorization={authorization}");
            (StatusCode::UNAUTHORIZED, echo).into_response()
        }
        "/endless" => {
            let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
            let stream =
                futures_util::stream::repeat_with(move || Ok::<_, Infallible>(chunk.clone()));
            Body::from_stream(stream).into_response()
        }
        "/announced-large" => {
            let stream = futures_util::stream::pending::<Result<Bytes, Infallible>>();
            let length = [(header::CONTENT_LENGTH, "1000000")];
            (length, Body::from_stream(stream)).into_response()
        }
        "/silent" => std::future::pending::<Response>().await,
        "/loop" => redirect("/loop"),
        "/to-json" => redirect("/json"),
        "/to-ftp" => redirect("ftp://127.0.0.1/file"),
        // `/redirect?to=URL`: the URL as written (tests pass no `&` in it).
        "/redirect" => redirect(uri.query().unwrap_or_default().trim_start_matches("to=")),
        "/flaky" => {
            let calls = shared.flaky_calls.fetch_add(1, Ordering::SeqCst) + 1;
            if calls < 3 {
                (StatusCode::SERVICE_UNAVAILABLE, "try again").into_response()
            } else {
                (json, format!(r#"{{"attempts_seen":{calls}}}"#)).into_response()
            }
        }
        // workflows/shipping.yaml's carrier: busy once, then books.
        "/carrier/shipments" => {
            let calls = shared.carrier_calls.fetch_add(1, Ordering::SeqCst) + 1;
            if calls < 2 {
                (StatusCode::SERVICE_UNAVAILABLE, "busy").into_response()
            } else {
                (json, r#"{"tracking":"T-1"}"#).into_response()
            }
        }
        // workflows/order-fulfilment.yaml's shop and payment provider.
        path if path.starts_with("/shop/orders/") => (
            json,
            r#"{"status":"unpaid","items":[{"sku":"tea"},{"sku":"cup"},{"sku":"pot"}]}"#,
        )
            .into_response(),
        "/pay/charge" => (json, r#"{"charged":true}"#).into_response(),
        // workflows/incident-escalation.yaml's pager and incident tracker.
        "/pager/pages" => (json, r#"{"paged":true}"#).into_response(),
        path if path.starts_with("/incidents/") => (json, r#"{"ok":true}"#).into_response(),
        // workflows/deploy.yaml's deployment API: service `web` is healthy,
        // any other service's canary never passes its health check.
        path if path.starts_with("/deployments/") => {
            if path.ends_with("/canary/health") && !path.starts_with("/deployments/web/") {
                (StatusCode::SERVICE_UNAVAILABLE, "canary unhealthy").into_response()
            } else {
                (json, r#"{"ok":true}"#).into_response()
            }
        }
        // workflows/nightly-data-pipeline.yaml's export store (partition pN
        // holds N * 100 rows) and warehouse (a load echoes its row count).
        path if path.starts_with("/exports/") && path.ends_with("/partitions") => {
            (json, r#"{"partitions":["p1","p2","p3"]}"#).into_response()
        }
        path if path.starts_with("/exports/") => {
            let rows = path
                .rsplit_once("/partitions/p")
                .and_then(|(_, n)| n.parse::<u64>().ok())
                .map_or(0, |n| n * 100);
            (json, format!(r#"{{"rows":{rows}}}"#)).into_response()
        }
        "/warehouse/loads" => {
            let rows = serde_json::from_slice::<serde_json::Value>(&body)
                .map(|load| load["rows"].clone())
                .unwrap_or_default();
            (json, format!(r#"{{"load_id":"L-1","rows":{rows}}}"#)).into_response()
        }
        path => match path
            .strip_prefix("/status/")
            .and_then(|code| code.parse::<u16>().ok())
        {
            Some(code) => {
                let status = StatusCode::from_u16(code).unwrap_or(StatusCode::IM_A_TEAPOT);
                (status, format!("status {code}")).into_response()
            }
            None => (StatusCode::NOT_FOUND, "no such test route").into_response(),
        },
    }
}

/// Accepts TCP connections and completes the TLS handshake; connections
/// whose handshake fails (a client that does not trust the CA) are dropped.
struct TlsListener {
    tcp: tokio::net::TcpListener,
    acceptor: TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((stream, address)) = self.tcp.accept().await else {
                continue;
            };
            if let Ok(tls) = self.acceptor.accept(stream).await {
                return (tls, address);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

fn redirect(location: &str) -> Response {
    (StatusCode::FOUND, [(header::LOCATION, location.to_owned())]).into_response()
}
