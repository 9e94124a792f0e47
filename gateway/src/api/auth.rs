//! Who is calling: bearer JWTs (algorithm pinned by config; exp, nbf, iss
//! and aud checked) and API keys (looked up by SHA-256), mapped to roles.
//!
//! Roles: `viewer` reads; `operator` also starts, cancels, retries runs and
//! registers workflows; `approver` reads and approves or rejects (an approval
//! step's `with.role`, when set, must be among the caller's roles as well);
//! `admin` may do everything. Other role names a caller holds (`finance`)
//! only serve to match approval steps.

use std::sync::Arc;

use chrono::Utc;
use engine::store::{ApiKeyRecord, ApiKeys, Store};
use jsonwebtoken::{DecodingKey, Validation, decode, decode_header};
use sha2::{Digest, Sha256};

use super::config::{JwtConfig, JwtKeys};
use super::error::{ApiError, Code};

/// The built-in roles, in the order of what they may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Viewer,
    Operator,
    Approver,
    Admin,
}

impl Role {
    pub fn parse(name: &str) -> Option<Role> {
        match name {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            "approver" => Some(Role::Approver),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Approver => "approver",
            Role::Admin => "admin",
        }
    }
}

/// What an operation needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Permission {
    Read,
    Operate,
    Approve,
}

/// An authenticated caller.
#[derive(Clone, Debug)]
pub struct Principal {
    /// `jwt:<sub>`, `key:<key id>` or `anonymous` (insecure mode).
    pub id: String,
    /// Every role name the caller holds, built-in or not.
    pub roles: Vec<String>,
}

impl Principal {
    pub fn anonymous_admin() -> Principal {
        Principal {
            id: "anonymous".to_owned(),
            roles: vec!["admin".to_owned()],
        }
    }

    fn has(&self, role: Role) -> bool {
        self.roles.iter().any(|name| name == role.as_str())
    }

    pub fn may(&self, permission: Permission) -> bool {
        if self.has(Role::Admin) {
            return true;
        }
        match permission {
            Permission::Read => self.roles.iter().any(|name| Role::parse(name).is_some()),
            Permission::Operate => self.has(Role::Operator),
            Permission::Approve => self.has(Role::Approver),
        }
    }

    /// FORBIDDEN unless the caller may do `permission`.
    pub fn require(&self, permission: Permission, what: &str) -> Result<(), ApiError> {
        if self.may(permission) {
            return Ok(());
        }
        let needs = match permission {
            Permission::Read => "viewer",
            Permission::Operate => "operator",
            Permission::Approve => "approver",
        };
        Err(ApiError::forbidden(format!(
            "{what} needs the `{needs}` (or `admin`) role; you have [{}]",
            self.roles.join(", ")
        )))
    }

    /// An approval step's `with.role` must be one of the caller's roles (admin passes).
    pub fn require_approval_role(&self, role: Option<&str>) -> Result<(), ApiError> {
        match role {
            Some(role) if !self.has(Role::Admin) && !self.roles.iter().any(|name| name == role) => {
                Err(ApiError::forbidden(format!(
                    "this approval step asks for the role `{role}`; you have [{}]",
                    self.roles.join(", ")
                )))
            }
            _ => Ok(()),
        }
    }
}

/// Prefix of every API key, so that keys are recognisable in leaks and logs.
pub const API_KEY_PREFIX: &str = "imx_";
/// Random bytes in an API key.
pub const API_KEY_RANDOM_BYTES: usize = 32;

/// A new random API key (`imx_` + 64 hex digits) and its stored record.
pub fn new_api_key(name: &str, roles: Vec<String>) -> (String, ApiKeyRecord) {
    let bytes: [u8; API_KEY_RANDOM_BYTES] = rand::random();
    let key = format!("{API_KEY_PREFIX}{}", hex::encode(bytes));
    let record = ApiKeyRecord {
        key_id: engine::store::new_id(),
        name: name.to_owned(),
        roles,
        key_hash: hash_key(&key),
        created_at: Utc::now(),
        revoked_at: None,
    };
    (key, record)
}

pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Turns an `Authorization` header value into a caller.
#[derive(Clone, Debug)]
pub struct Authenticator {
    pub insecure_no_auth: bool,
    pub jwt: Option<JwtConfig>,
    pub store: Arc<Store>,
}

impl Authenticator {
    /// UNAUTHENTICATED for a missing, malformed, expired or forged credential.
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<Principal, ApiError> {
        if self.insecure_no_auth {
            return Ok(Principal::anonymous_admin());
        }
        let unauthenticated = |message: &str| ApiError::new(Code::Unauthenticated, message);
        let Some(value) = authorization else {
            return Err(unauthenticated(
                "no credentials: send `Authorization: Bearer <JWT or API key>`",
            ));
        };
        let Some(token) = bearer_token(value) else {
            return Err(unauthenticated(
                "the Authorization header must be `Bearer <JWT or API key>`",
            ));
        };
        if token.starts_with(API_KEY_PREFIX) {
            return self.api_key(token).await;
        }
        self.jwt(token)
    }

    /// Signing in to the web UI: the caller, and what its session keeps
    /// of the credential (an API key's hash, a JWT's `exp`).
    pub async fn sign_in(
        &self,
        authorization: &str,
    ) -> Result<(Principal, super::ui::session::Basis), ApiError> {
        let principal = self.authenticate(Some(authorization)).await?;
        let mut basis = super::ui::session::Basis::default();
        if !self.insecure_no_auth {
            let token = bearer_token(authorization).unwrap_or_default();
            if token.starts_with(API_KEY_PREFIX) {
                basis.key_hash = Some(hash_key(token));
            } else {
                basis.expires_at = self.jwt_claims(token)?.1;
            }
        }
        Ok((principal, basis))
    }

    /// The caller behind a web UI session: an API key is checked again (a
    /// revoked key ends the session); a JWT session carries the claims it
    /// signed in with and ends at the token's `exp`.
    pub async fn session_principal(
        &self,
        found: &super::ui::session::Found,
    ) -> Result<Principal, ApiError> {
        if self.insecure_no_auth {
            return Ok(Principal::anonymous_admin());
        }
        match &found.key_hash {
            Some(key_hash) => self.api_key_by_hash(key_hash).await,
            None => Ok(found.principal.clone()),
        }
    }

    async fn api_key(&self, key: &str) -> Result<Principal, ApiError> {
        self.api_key_by_hash(&hash_key(key)).await
    }

    async fn api_key_by_hash(&self, key_hash: &str) -> Result<Principal, ApiError> {
        let record = self.store.find_api_key(key_hash).await?;
        match record {
            Some(record) if record.revoked_at.is_none() => Ok(Principal {
                id: format!("key:{}", record.key_id),
                roles: record.roles,
            }),
            Some(_) => Err(ApiError::new(
                Code::Unauthenticated,
                "this API key was revoked; create a new one with `imx apikey create`",
            )),
            None => Err(ApiError::new(Code::Unauthenticated, "unknown API key")),
        }
    }

    fn jwt(&self, token: &str) -> Result<Principal, ApiError> {
        Ok(self.jwt_claims(token)?.0)
    }

    /// The caller a JWT names and its `exp`.
    fn jwt_claims(
        &self,
        token: &str,
    ) -> Result<(Principal, Option<chrono::DateTime<chrono::Utc>>), ApiError> {
        let Some(config) = &self.jwt else {
            return Err(ApiError::new(
                Code::Unauthenticated,
                "bearer JWTs are not enabled on this server; use an API key",
            ));
        };
        // Only the pinned algorithm is accepted: `alg: none` and key
        // confusion (an HS256 token signed with an RSA public key) fail here.
        let mut validation = Validation::new(config.algorithm);
        validation.set_issuer(&[&config.issuer]);
        validation.set_audience(&[&config.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = JWT_LEEWAY_S;
        let key = config.key_for(token)?;
        let data = decode::<serde_json::Value>(token, key, &validation).map_err(|error| {
            ApiError::new(
                Code::Unauthenticated,
                format!("invalid bearer token: {error}"),
            )
        })?;
        let claims = data.claims;
        let roles = match claims.get(&config.role_claim) {
            Some(serde_json::Value::String(role)) => vec![role.clone()],
            Some(serde_json::Value::Array(roles)) => roles
                .iter()
                .filter_map(|role| role.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        };
        let subject = claims
            .get("sub")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default();
        let expires_at = claims
            .get("exp")
            .and_then(serde_json::Value::as_i64)
            .and_then(|exp| chrono::DateTime::from_timestamp(exp, 0));
        Ok((
            Principal {
                id: format!("jwt:{subject}"),
                roles,
            },
            expires_at,
        ))
    }
}

impl JwtConfig {
    /// The key a token is checked with: the one key, or the JWKS key its
    /// `kid` header names.
    fn key_for(&self, token: &str) -> Result<&DecodingKey, ApiError> {
        let unauthenticated = |message: String| ApiError::new(Code::Unauthenticated, message);
        match &self.keys {
            JwtKeys::One(key) => Ok(key),
            JwtKeys::ById(keys) => {
                let header = decode_header(token)
                    .map_err(|error| unauthenticated(format!("invalid bearer token: {error}")))?;
                let Some(kid) = header.kid else {
                    return Err(unauthenticated(
                        "the token names no key (`kid` header); this server checks tokens against a key set".to_owned(),
                    ));
                };
                keys.get(&kid).ok_or_else(|| {
                    unauthenticated(format!("no key {kid:?} in this server's key set"))
                })
            }
        }
    }
}

/// The token of `Bearer <token>`, trimmed.
fn bearer_token(authorization: &str) -> Option<&str> {
    authorization
        .strip_prefix("Bearer ")
        .or_else(|| authorization.strip_prefix("bearer "))
        .map(str::trim)
}

/// Clock skew tolerated on exp and nbf, in seconds.
pub const JWT_LEEWAY_S: u64 = 5;
