//! `imx serve`'s API settings: flags with `IMX_*` environment variables,
//! checked once at start-up into an [`ApiConfig`] (clap args -> validated
//! config, as ripgrep's lowargs -> hiargs).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::builder::BoolishValueParser;
use clap::{ArgAction, Args, ValueEnum};
use jsonwebtoken::{Algorithm, DecodingKey};

pub use super::jwks::JwtKeys;

/// Default GraphQL selection depth limit.
pub const QUERY_DEPTH_MAX: usize = 12;
/// Default GraphQL complexity limit (each field costs 1, connections cost per item).
pub const QUERY_COMPLEXITY_MAX: usize = 1_000;
/// Default largest `first`/`last` of a connection.
pub const PAGE_SIZE_MAX: u32 = 100;
const _: () = assert!(PAGE_SIZE_MAX <= engine::store::PAGE_SIZE_MAX);
/// Default largest request body, in bytes.
pub const BODY_BYTES_MAX: usize = 256 * 1024;
/// Default operations per second per caller (token refill rate).
pub const RATE_PER_SECOND: u32 = 50;
/// Default token bucket size per caller.
pub const RATE_BURST: u32 = 100;
/// Default time one HTTP operation may take, in ms.
pub const REQUEST_TIMEOUT_MS: u64 = 30_000;
/// Default longest wait between two reads of the global log for subscriptions, in ms.
pub const SUBSCRIPTION_POLL_MS: u64 = 200;
/// Default most open subscriptions per server.
pub const SUBSCRIPTIONS_MAX: i64 = 1_000;
/// Default most open subscriptions of one caller (one principal), so that
/// one key cannot take every slot of [`SUBSCRIPTIONS_MAX`].
pub const SUBSCRIPTIONS_PER_CALLER_MAX: i64 = 100;
/// Default most events replayed to answer `runAt` or a run's steps.
pub const HISTORY_EVENTS_MAX: u64 = 100_000;
/// Default time a client has to send a request's headers, in ms. hyper
/// starts this clock when it begins waiting for a request head, so it also
/// bounds how long a keep-alive connection may wait for its next request.
pub const HEADER_READ_TIMEOUT_MS: u64 = 10_000;
/// Default time a connection with no request in flight may stay without a
/// byte read or written before it is closed, in ms.
pub const IDLE_TIMEOUT_MS: u64 = 60_000;
/// Default time a WebSocket has after the upgrade to complete
/// `connection_init` (authenticated) before it is closed (4408), in ms.
pub const WEBSOCKET_INIT_TIMEOUT_MS: u64 = 5_000;
/// Largest `--jwt-secret-file` read, in bytes.
pub const JWT_SECRET_FILE_BYTES_MAX: u64 = 4 * 1024;

// One caller's share is a part of the whole.
const _: () = assert!(SUBSCRIPTIONS_PER_CALLER_MAX <= SUBSCRIPTIONS_MAX);

/// The flags of the API server.
#[derive(Debug, Clone, Args)]
pub struct ApiArgs {
    /// Address to listen on.
    #[arg(long, env = "IMX_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Serve `/metrics` on this address instead of on --listen (which then
    /// no longer answers it): keep the unauthenticated metrics off the API's network.
    #[arg(long, env = "IMX_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// Development only: no authentication; refuses a non-loopback address.
    #[arg(long, env = "IMX_INSECURE_NO_AUTH", value_parser = BoolishValueParser::new())]
    pub insecure_no_auth: bool,
    /// JWT signature algorithm; enables bearer JWTs.
    #[arg(long, env = "IMX_JWT_ALGORITHM", value_enum)]
    pub jwt_algorithm: Option<JwtAlgorithm>,
    /// HS256 shared secret (at least 32 bytes). Visible to `ps` as a flag:
    /// prefer --jwt-secret-file or the environment variable.
    #[arg(long, env = "IMX_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// A file holding the HS256 shared secret (one trailing newline is ignored).
    #[arg(long, env = "IMX_JWT_SECRET_FILE", conflicts_with = "jwt_secret")]
    pub jwt_secret_file: Option<PathBuf>,
    /// RS256/ES256 public key (PEM file).
    #[arg(long, env = "IMX_JWT_PUBLIC_KEY", conflicts_with = "jwt_jwks")]
    pub jwt_public_key: Option<PathBuf>,
    /// RS256/ES256 public keys as a JWKS file; the token's `kid` picks the key.
    #[arg(long, env = "IMX_JWT_JWKS")]
    pub jwt_jwks: Option<PathBuf>,
    /// Required `iss` claim.
    #[arg(long, env = "IMX_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Required `aud` claim.
    #[arg(long, env = "IMX_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// Claim holding the caller's role or roles (string or list).
    #[arg(long, env = "IMX_JWT_ROLE_CLAIM", default_value = "roles")]
    pub jwt_role_claim: String,
    /// Serve GraphiQL on GET /graphql.
    #[arg(long, env = "IMX_GRAPHIQL", default_value_t = true, action = ArgAction::Set, value_parser = BoolishValueParser::new())]
    pub graphiql: bool,
    /// Answer introspection queries.
    #[arg(long, env = "IMX_INTROSPECTION", default_value_t = true, action = ArgAction::Set, value_parser = BoolishValueParser::new())]
    pub introspection: bool,
    #[arg(long, env = "IMX_QUERY_DEPTH_MAX", default_value_t = QUERY_DEPTH_MAX)]
    pub query_depth_max: usize,
    #[arg(long, env = "IMX_QUERY_COMPLEXITY_MAX", default_value_t = QUERY_COMPLEXITY_MAX)]
    pub query_complexity_max: usize,
    #[arg(long, env = "IMX_PAGE_SIZE_MAX", default_value_t = PAGE_SIZE_MAX)]
    pub page_size_max: u32,
    #[arg(long, env = "IMX_BODY_BYTES_MAX", default_value_t = BODY_BYTES_MAX)]
    pub body_bytes_max: usize,
    #[arg(long, env = "IMX_RATE_PER_SECOND", default_value_t = RATE_PER_SECOND)]
    pub rate_per_second: u32,
    #[arg(long, env = "IMX_RATE_BURST", default_value_t = RATE_BURST)]
    pub rate_burst: u32,
    #[arg(long, env = "IMX_REQUEST_TIMEOUT_MS", default_value_t = REQUEST_TIMEOUT_MS)]
    pub request_timeout_ms: u64,
    #[arg(long, env = "IMX_SUBSCRIPTION_POLL_MS", default_value_t = SUBSCRIPTION_POLL_MS)]
    pub subscription_poll_ms: u64,
    /// Most open subscriptions of one caller (API key or JWT subject).
    #[arg(long, env = "IMX_SUBSCRIPTIONS_PER_CALLER_MAX", default_value_t = SUBSCRIPTIONS_PER_CALLER_MAX)]
    pub subscriptions_per_caller_max: i64,
    /// Time to send a whole request head (also the longest wait for the next request on a keep-alive connection).
    #[arg(long, env = "IMX_HEADER_READ_TIMEOUT_MS", default_value_t = HEADER_READ_TIMEOUT_MS)]
    pub header_read_timeout_ms: u64,
    /// A connection with no request in flight and no byte moved for this long is closed.
    #[arg(long, env = "IMX_IDLE_TIMEOUT_MS", default_value_t = IDLE_TIMEOUT_MS)]
    pub idle_timeout_ms: u64,
    /// Time a WebSocket has to authenticate with connection_init (then closed with 4408).
    #[arg(long, env = "IMX_WEBSOCKET_INIT_TIMEOUT_MS", default_value_t = WEBSOCKET_INIT_TIMEOUT_MS)]
    pub websocket_init_timeout_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "verbatim")]
pub enum JwtAlgorithm {
    HS256,
    RS256,
    ES256,
}

/// Why the API settings cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("--listen {value:?} is not an address like 127.0.0.1:8080: {source}")]
    Listen {
        value: String,
        source: std::net::AddrParseError,
    },
    #[error(
        "--insecure-no-auth refuses to listen on {addr}: without authentication only a loopback address (127.0.0.1, ::1) is allowed"
    )]
    InsecureNonLoopback { addr: SocketAddr },
    #[error("--insecure-no-auth cannot be combined with JWT settings; pick one")]
    InsecureWithJwt,
    #[error("{algorithm:?} needs {needs}")]
    JwtKeyMissing {
        algorithm: JwtAlgorithm,
        needs: &'static str,
    },
    #[error("--jwt-secret must be at least {min} bytes long for HS256 (got {got})")]
    JwtSecretShort { min: usize, got: usize },
    #[error("cannot read the JWT public key {path}: {source}")]
    JwtKeyRead {
        path: PathBuf,
        source: crate::bounded::Error,
    },
    #[error("the JWT public key {path} is not a valid {algorithm:?} PEM key: {source}")]
    JwtKeyInvalid {
        path: PathBuf,
        algorithm: JwtAlgorithm,
        source: jsonwebtoken::errors::Error,
    },
    #[error(
        "JWT settings given without --jwt-algorithm (HS256, RS256 or ES256): the algorithm is pinned, never taken from the token"
    )]
    JwtAlgorithmMissing,
    #[error("JWTs need both --jwt-issuer and --jwt-audience: tokens are checked against them")]
    JwtClaimsMissing,
    #[error(transparent)]
    Jwks(#[from] super::jwks::Error),
    #[error("a JWKS file is for RS256/ES256; HS256 takes --jwt-secret")]
    JwksWithSecret,
    #[error("{setting} must be at least 1")]
    Zero { setting: &'static str },
    #[error("--metrics-listen {value:?} is not an address like 127.0.0.1:9090: {source}")]
    MetricsListen {
        value: String,
        source: std::net::AddrParseError,
    },
    #[error("--metrics-listen {addr} is the --listen address; pick another port")]
    MetricsListenSame { addr: SocketAddr },
    #[error("cannot read the JWT secret file {path}: {source}")]
    JwtSecretRead {
        path: PathBuf,
        source: crate::bounded::Error,
    },
    #[error("--subscriptions-per-caller-max {got} is more than the server's {max} subscriptions")]
    CallerShareTooLarge { got: i64, max: i64 },
}

/// HS256 secrets shorter than this are refused (RFC 7518 3.2: key >= hash size).
pub const JWT_SECRET_BYTES_MIN: usize = 32;

/// How bearer JWTs are checked.
#[derive(Clone)]
pub struct JwtConfig {
    pub algorithm: Algorithm,
    pub keys: JwtKeys,
    pub issuer: String,
    pub audience: String,
    pub role_claim: String,
}

impl std::fmt::Debug for JwtConfig {
    // The key stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtConfig")
            .field("algorithm", &self.algorithm)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("role_claim", &self.role_claim)
            .finish()
    }
}

/// The limits every request meets.
#[derive(Debug, Clone)]
pub struct Limits {
    pub query_depth_max: usize,
    pub query_complexity_max: usize,
    pub page_size_max: u32,
    pub body_bytes_max: usize,
    pub rate_per_second: u32,
    pub rate_burst: u32,
    pub request_timeout_ms: u64,
    pub subscription_poll_ms: u64,
    pub history_events_max: u64,
    pub subscriptions_max: i64,
    pub subscriptions_per_caller_max: i64,
    pub header_read_timeout_ms: u64,
    pub idle_timeout_ms: u64,
    pub websocket_init_timeout_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            query_depth_max: QUERY_DEPTH_MAX,
            query_complexity_max: QUERY_COMPLEXITY_MAX,
            page_size_max: PAGE_SIZE_MAX,
            body_bytes_max: BODY_BYTES_MAX,
            rate_per_second: RATE_PER_SECOND,
            rate_burst: RATE_BURST,
            request_timeout_ms: REQUEST_TIMEOUT_MS,
            subscription_poll_ms: SUBSCRIPTION_POLL_MS,
            history_events_max: HISTORY_EVENTS_MAX,
            subscriptions_max: SUBSCRIPTIONS_MAX,
            subscriptions_per_caller_max: SUBSCRIPTIONS_PER_CALLER_MAX,
            header_read_timeout_ms: HEADER_READ_TIMEOUT_MS,
            idle_timeout_ms: IDLE_TIMEOUT_MS,
            websocket_init_timeout_ms: WEBSOCKET_INIT_TIMEOUT_MS,
        }
    }
}

/// The validated API configuration.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub listen: SocketAddr,
    /// `/metrics` on its own listener; `None`: on `listen`.
    pub metrics_listen: Option<SocketAddr>,
    /// No authentication at all (development; loopback only).
    pub insecure_no_auth: bool,
    pub jwt: Option<JwtConfig>,
    pub graphiql: bool,
    pub introspection: bool,
    pub limits: Limits,
}

impl ApiArgs {
    /// Checks every setting once; the error says which flag to fix.
    pub fn into_config(self) -> Result<ApiConfig, Error> {
        let listen: SocketAddr = self.listen.parse().map_err(|source| Error::Listen {
            value: self.listen.clone(),
            source,
        })?;
        let metrics_listen = self.metrics_listen()?;
        if metrics_listen == Some(listen) && listen.port() != 0 {
            return Err(Error::MetricsListenSame { addr: listen });
        }
        let jwt = self.jwt()?;
        if self.insecure_no_auth {
            if jwt.is_some() {
                return Err(Error::InsecureWithJwt);
            }
            if !listen.ip().is_loopback() {
                return Err(Error::InsecureNonLoopback { addr: listen });
            }
        }
        let limits = Limits {
            query_depth_max: nonzero(self.query_depth_max, "--query-depth-max")?,
            query_complexity_max: nonzero(self.query_complexity_max, "--query-complexity-max")?,
            page_size_max: nonzero(self.page_size_max as usize, "--page-size-max")? as u32,
            body_bytes_max: nonzero(self.body_bytes_max, "--body-bytes-max")?,
            rate_per_second: nonzero(self.rate_per_second as usize, "--rate-per-second")? as u32,
            rate_burst: nonzero(self.rate_burst as usize, "--rate-burst")? as u32,
            request_timeout_ms: nonzero(self.request_timeout_ms as usize, "--request-timeout-ms")?
                as u64,
            subscription_poll_ms: nonzero(
                self.subscription_poll_ms as usize,
                "--subscription-poll-ms",
            )? as u64,
            history_events_max: HISTORY_EVENTS_MAX,
            subscriptions_max: SUBSCRIPTIONS_MAX,
            subscriptions_per_caller_max: self.subscriptions_per_caller_max()?,
            header_read_timeout_ms: nonzero_ms(
                self.header_read_timeout_ms,
                "--header-read-timeout-ms",
            )?,
            idle_timeout_ms: nonzero_ms(self.idle_timeout_ms, "--idle-timeout-ms")?,
            websocket_init_timeout_ms: nonzero_ms(
                self.websocket_init_timeout_ms,
                "--websocket-init-timeout-ms",
            )?,
        };
        Ok(ApiConfig {
            listen,
            metrics_listen,
            insecure_no_auth: self.insecure_no_auth,
            jwt,
            graphiql: self.graphiql,
            introspection: self.introspection,
            limits,
        })
    }

    fn metrics_listen(&self) -> Result<Option<SocketAddr>, Error> {
        let Some(value) = &self.metrics_listen else {
            return Ok(None);
        };
        value
            .parse()
            .map(Some)
            .map_err(|source| Error::MetricsListen {
                value: value.clone(),
                source,
            })
    }

    fn subscriptions_per_caller_max(&self) -> Result<i64, Error> {
        let got = self.subscriptions_per_caller_max;
        if got < 1 {
            return Err(Error::Zero {
                setting: "--subscriptions-per-caller-max",
            });
        }
        if got > SUBSCRIPTIONS_MAX {
            return Err(Error::CallerShareTooLarge {
                got,
                max: SUBSCRIPTIONS_MAX,
            });
        }
        Ok(got)
    }

    /// The HS256 secret from --jwt-secret or --jwt-secret-file (bounded
    /// read; one trailing newline, as editors and `echo` add, is not part of it).
    fn jwt_secret(&self) -> Result<Option<Vec<u8>>, Error> {
        if let Some(secret) = &self.jwt_secret {
            return Ok(Some(secret.as_bytes().to_vec()));
        }
        let Some(path) = &self.jwt_secret_file else {
            return Ok(None);
        };
        let mut bytes =
            crate::bounded::read_file(path, JWT_SECRET_FILE_BYTES_MAX).map_err(|source| {
                Error::JwtSecretRead {
                    path: path.clone(),
                    source,
                }
            })?;
        if bytes.ends_with(b"\n") {
            bytes.pop();
            if bytes.ends_with(b"\r") {
                bytes.pop();
            }
        }
        Ok(Some(bytes))
    }

    fn jwt(&self) -> Result<Option<JwtConfig>, Error> {
        let Some(algorithm) = self.jwt_algorithm else {
            if self.jwt_secret.is_some()
                || self.jwt_secret_file.is_some()
                || self.jwt_public_key.is_some()
                || self.jwt_jwks.is_some()
                || self.jwt_issuer.is_some()
                || self.jwt_audience.is_some()
            {
                return Err(Error::JwtAlgorithmMissing);
            }
            return Ok(None);
        };
        let (Some(issuer), Some(audience)) = (&self.jwt_issuer, &self.jwt_audience) else {
            return Err(Error::JwtClaimsMissing);
        };
        let keys = match algorithm {
            JwtAlgorithm::HS256 if self.jwt_jwks.is_some() => return Err(Error::JwksWithSecret),
            JwtAlgorithm::RS256 | JwtAlgorithm::ES256 if self.jwt_jwks.is_some() => {
                let path = self.jwt_jwks.as_deref().unwrap_or(std::path::Path::new(""));
                super::jwks::read(path, algorithm)?
            }
            JwtAlgorithm::HS256 => {
                let secret = self.jwt_secret()?.ok_or(Error::JwtKeyMissing {
                    algorithm,
                    needs: "--jwt-secret-file FILE (IMX_JWT_SECRET_FILE) or IMX_JWT_SECRET",
                })?;
                if secret.len() < JWT_SECRET_BYTES_MIN {
                    return Err(Error::JwtSecretShort {
                        min: JWT_SECRET_BYTES_MIN,
                        got: secret.len(),
                    });
                }
                JwtKeys::One(DecodingKey::from_secret(&secret))
            }
            JwtAlgorithm::RS256 | JwtAlgorithm::ES256 => {
                let path = self.jwt_public_key.as_ref().ok_or(Error::JwtKeyMissing {
                    algorithm,
                    needs: "--jwt-public-key PEM_FILE (IMX_JWT_PUBLIC_KEY) or --jwt-jwks JWKS_FILE (IMX_JWT_JWKS)",
                })?;
                let pem = crate::bounded::read_file(path, super::jwks::JWKS_BYTES_MAX).map_err(
                    |source| Error::JwtKeyRead {
                        path: path.clone(),
                        source,
                    },
                )?;
                let parsed = if algorithm == JwtAlgorithm::RS256 {
                    DecodingKey::from_rsa_pem(&pem)
                } else {
                    DecodingKey::from_ec_pem(&pem)
                };
                JwtKeys::One(parsed.map_err(|source| Error::JwtKeyInvalid {
                    path: path.clone(),
                    algorithm,
                    source,
                })?)
            }
        };
        Ok(Some(JwtConfig {
            algorithm: match algorithm {
                JwtAlgorithm::HS256 => Algorithm::HS256,
                JwtAlgorithm::RS256 => Algorithm::RS256,
                JwtAlgorithm::ES256 => Algorithm::ES256,
            },
            keys,
            issuer: issuer.clone(),
            audience: audience.clone(),
            role_claim: self.jwt_role_claim.clone(),
        }))
    }
}

fn nonzero_ms(value: u64, setting: &'static str) -> Result<u64, Error> {
    if value == 0 {
        Err(Error::Zero { setting })
    } else {
        Ok(value)
    }
}

fn nonzero(value: usize, setting: &'static str) -> Result<usize, Error> {
    if value == 0 {
        Err(Error::Zero { setting })
    } else {
        Ok(value)
    }
}
