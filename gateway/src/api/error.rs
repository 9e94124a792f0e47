//! The API's errors: every error a client sees carries a stable
//! `extensions.code` (NOT_FOUND, VALIDATION, UNAUTHENTICATED, FORBIDDEN,
//! CONFLICT, LIMIT, UNAVAILABLE, INTERNAL) and an actionable message.

use async_graphql::ErrorExtensions;

/// The codes clients switch on; stable, documented in docs/api.md.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    NotFound,
    Validation,
    Unauthenticated,
    Forbidden,
    Conflict,
    Limit,
    Unavailable,
    Internal,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::NotFound => "NOT_FOUND",
            Code::Validation => "VALIDATION",
            Code::Unauthenticated => "UNAUTHENTICATED",
            Code::Forbidden => "FORBIDDEN",
            Code::Conflict => "CONFLICT",
            Code::Limit => "LIMIT",
            Code::Unavailable => "UNAVAILABLE",
            Code::Internal => "INTERNAL",
        }
    }
}

/// One API failure: a code and a message for the client. Deliberately not
/// `Display`: async-graphql converts any `Display` type into an error
/// without extensions, and `?` would silently drop the code.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: Code,
    pub message: String,
}

impl ApiError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(Code::NotFound, message)
    }

    pub fn validation(message: impl Into<String>) -> Self {
        ApiError::new(Code::Validation, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        ApiError::new(Code::Forbidden, message)
    }

    pub fn limit(message: impl Into<String>) -> Self {
        ApiError::new(Code::Limit, message)
    }
}

impl ErrorExtensions for ApiError {
    fn extend(&self) -> async_graphql::Error {
        async_graphql::Error::new(self.message.clone())
            .extend_with(|_, extensions| extensions.set("code", self.code.as_str()))
    }
}

impl From<ApiError> for async_graphql::Error {
    fn from(error: ApiError) -> Self {
        error.extend()
    }
}

impl From<engine::store::Error> for ApiError {
    fn from(error: engine::store::Error) -> Self {
        use engine::store::Error as E;
        let code = match &error {
            E::RunNotFound { .. } => Code::NotFound,
            E::Conflict { .. } | E::IdempotencyKeyTaken { .. } | E::LeaseLost { .. } => {
                Code::Conflict
            }
            E::PayloadTooLarge { .. } | E::LimitExceeded { .. } => Code::Limit,
            E::InvalidRequest { .. } => Code::Validation,
            E::Unavailable { .. } => Code::Unavailable,
            _ => Code::Internal,
        };
        if code == Code::Internal {
            // The detail may name tables or hosts: log it, tell the client less.
            tracing::error!(%error, "store error");
            return ApiError::new(code, "internal store error; see the server log");
        }
        ApiError::new(code, error.to_string())
    }
}

/// The code a GraphQL error produced by async-graphql itself (parser,
/// validation, limits) should carry, judged by its message.
pub fn code_for_engine_message(message: &str) -> Code {
    let lower = message.to_ascii_lowercase();
    if lower.contains("too deep")
        || lower.contains("too complex")
        || lower.contains("recursion")
        || lower.contains("too many")
        || lower.contains("limit")
    {
        Code::Limit
    } else {
        Code::Validation
    }
}
