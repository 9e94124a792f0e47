//! The `http` executor: one HTTP request per attempt with the attempt's
//! `Idempotency-Key`, the answer as `{status, headers, body}`, and failures
//! sorted into retryable (5xx, 408, 429, connection trouble, timeouts) and not.

mod guard;
mod request;
mod response;

use std::sync::Arc;
use std::time::Duration;

use super::egress::EgressPolicy;
use super::{Attempt, BoxFuture, Executor, Outcome, deadline_passed, time_left};
use crate::core::workflow::StepKind;
use request::Request;

/// The header that carries the attempt's idempotency key (the same on every attempt).
pub const IDEMPOTENCY_KEY_HEADER: &str = "Idempotency-Key";
/// Largest response body read; a larger one fails the attempt. The runtime's
/// output limit: a larger body could not become a step's output anyway.
pub const RESPONSE_BYTES_MAX: usize = super::OUTPUT_BYTES_MAX;
/// Redirects followed before the attempt fails.
pub const REDIRECTS_MAX: usize = 5;
/// Time allowed to open a connection (TCP and TLS), in ms.
pub const CONNECT_TIMEOUT_MS: u64 = 10_000;
/// Time limit of a request without `with.timeout` and without a deadline: 5 minutes, in ms.
pub const REQUEST_TIMEOUT_MS_DEFAULT: u64 = 5 * 60 * 1000;
/// Characters of an error answer's body quoted in the error message.
pub const ERROR_BODY_CHARS_MAX: usize = 512;

/// Schemes an executor can be allowed to use.
const SUPPORTED_SCHEMES: [&str; 2] = ["http", "https"];

/// How this node sends `http` steps' requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    pub user_agent: String,
    pub connect_timeout_ms: u64,
    /// Larger bodies fail the attempt; never more than this is held in memory.
    pub response_bytes_max: usize,
    pub redirects_max: usize,
    /// A subset of `http`, `https`; also checked on every redirect.
    pub allowed_schemes: Vec<String>,
    /// Time limit of a request without `with.timeout` and without a deadline.
    pub request_timeout_ms_default: u64,
    /// PEM certificates trusted for HTTPS besides the system's (an internal CA).
    pub extra_root_certificates_pem: Option<String>,
    /// What requests may reach: checked on the URL, every redirect and every
    /// resolved address (docs/executors.md, "Egress policy").
    pub egress: EgressPolicy,
}

impl Default for HttpConfig {
    fn default() -> HttpConfig {
        HttpConfig {
            user_agent: format!("imx/{}", env!("CARGO_PKG_VERSION")),
            connect_timeout_ms: CONNECT_TIMEOUT_MS,
            response_bytes_max: RESPONSE_BYTES_MAX,
            redirects_max: REDIRECTS_MAX,
            allowed_schemes: SUPPORTED_SCHEMES.map(str::to_owned).to_vec(),
            request_timeout_ms_default: REQUEST_TIMEOUT_MS_DEFAULT,
            extra_root_certificates_pem: None,
            egress: EgressPolicy::default(),
        }
    }
}

/// Why an [`HttpExecutor`] could not be built. Codes `IMX0602`–`IMX0603`.
#[derive(Debug, thiserror::Error, strum::EnumDiscriminants)]
#[strum_discriminants(
    name(ErrorKind),
    vis(pub),
    derive(strum::VariantArray, Hash, PartialOrd, Ord)
)]
#[non_exhaustive]
pub enum Error {
    #[error("http executor config: {0}")]
    Config(String),
    #[error("building the HTTP client failed: {0}")]
    Client(#[source] reqwest::Error),
}

impl ErrorKind {
    /// The stable code of errors of this kind (`docs/errors.md`). The
    /// message does not open with it: `imx serve` prints it at start-up as it always did, so it kept its wording.
    pub const fn code(self) -> &'static str {
        match self {
            ErrorKind::Config => "IMX0602",
            ErrorKind::Client => "IMX0603",
        }
    }
}

impl Error {
    /// The stable code (`docs/errors.md`), as data.
    pub fn code(&self) -> &'static str {
        ErrorKind::from(self).code()
    }
}

/// Most idle kept-alive connections the `http` executor keeps per host;
/// more concurrent requests open more, closed after use beyond this many.
pub const IDLE_CONNECTIONS_PER_HOST_MAX: usize = 32;
/// An idle kept-alive connection is closed after this long, in ms.
pub const IDLE_CONNECTION_MS_MAX: u64 = 60_000;

/// Runs `http` steps; one connection pool shared by all attempts: kept-alive
/// connections are reused (a loopback GET on a new connection costs about
/// twice one on a kept one, see docs/bench-runtime.md), bounded per host.
#[derive(Debug, Clone)]
pub struct HttpExecutor {
    client: reqwest::Client,
    config: HttpConfig,
}

impl HttpExecutor {
    pub fn new(config: HttpConfig) -> Result<HttpExecutor, Error> {
        check_config(&config)?;
        let policy = Arc::new(config.egress.clone());
        let redirects = guard::redirect_policy(
            config.redirects_max,
            config.allowed_schemes.clone(),
            Arc::clone(&policy),
        );
        let mut builder = reqwest::Client::builder()
            .user_agent(config.user_agent.clone())
            .connect_timeout(Duration::from_millis(config.connect_timeout_ms))
            .pool_max_idle_per_host(IDLE_CONNECTIONS_PER_HOST_MAX)
            .pool_idle_timeout(Duration::from_millis(IDLE_CONNECTION_MS_MAX))
            .redirect(redirects)
            .dns_resolver(Arc::new(guard::PolicyResolver { policy }))
            // A proxy would resolve and connect where the policy cannot check.
            .no_proxy();
        if let Some(pem) = &config.extra_root_certificates_pem {
            let certificates = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
                .map_err(|err| Error::Config(format!("extra_root_certificates_pem: {err}")))?;
            if certificates.is_empty() {
                return Err(Error::Config(
                    "extra_root_certificates_pem holds no certificate".to_owned(),
                ));
            }
            builder = builder.tls_certs_merge(certificates);
        }
        let client = builder.build().map_err(Error::Client)?;
        Ok(HttpExecutor { client, config })
    }

    async fn run(&self, attempt: &Attempt) -> Outcome {
        let request = match Request::parse(attempt, &self.config) {
            Ok(request) => request,
            Err(message) => return Outcome::failed(message, false),
        };
        if let Err(refusal) = self.config.egress.check_url_host(request.host()) {
            return Outcome::failed(format!("{}: {refusal}", request.describe()), false);
        }
        if let Some(late) = deadline_passed(attempt) {
            return late;
        }
        let (limit, limit_name) = self.time_limit(&request, attempt);
        let exchange = async {
            let answer = self.client.execute(request.build(&self.client)?).await?;
            response::read(answer, self.config.response_bytes_max).await
        };
        match tokio::time::timeout(limit, exchange).await {
            Ok(Ok(answer)) => answer.outcome(&request),
            Ok(Err(failure)) => response::failure(failure, &request),
            Err(_) => Outcome::failed(
                format!(
                    "{}: no complete answer within {} ms ({limit_name})",
                    request.describe(),
                    limit.as_millis()
                ),
                true,
            ),
        }
    }

    /// The tighter of `with.timeout` and the attempt's deadline, and its name.
    fn time_limit(&self, request: &Request, attempt: &Attempt) -> (Duration, &'static str) {
        match (request.timeout, time_left(attempt.deadline)) {
            (Some(own), Some(left)) if left < own => (left, "the attempt's deadline"),
            (Some(own), _) => (own, "with.timeout"),
            (None, Some(left)) => (left, "the attempt's deadline"),
            (None, None) => (
                Duration::from_millis(self.config.request_timeout_ms_default),
                "the default request timeout",
            ),
        }
    }
}

impl Executor for HttpExecutor {
    fn kind(&self) -> StepKind {
        StepKind::Http
    }

    fn execute<'a>(&'a self, attempt: &'a Attempt) -> BoxFuture<'a, Outcome> {
        Box::pin(self.run(attempt))
    }
}

fn check_config(config: &HttpConfig) -> Result<(), Error> {
    if config.allowed_schemes.is_empty() {
        return Err(Error::Config(
            "allowed_schemes is empty: allow http, https or both".to_owned(),
        ));
    }
    if let Some(scheme) = config
        .allowed_schemes
        .iter()
        .find(|scheme| !SUPPORTED_SCHEMES.contains(&scheme.as_str()))
    {
        return Err(Error::Config(format!(
            "allowed_schemes names `{scheme}`; only http and https are supported"
        )));
    }
    if config.response_bytes_max == 0 {
        return Err(Error::Config(
            "response_bytes_max must be at least 1".to_owned(),
        ));
    }
    if reqwest::header::HeaderValue::from_str(&config.user_agent).is_err() {
        return Err(Error::Config(
            "user_agent is not a valid header value".to_owned(),
        ));
    }
    Ok(())
}
