//! The API's errors: every error a client sees carries a stable
//! `extensions.code` (NOT_FOUND, VALIDATION, UNAUTHENTICATED, FORBIDDEN,
//! CONFLICT, LIMIT, UNAVAILABLE, INTERNAL) and an actionable message; one
//! caused by the engine also its `extensions.imxCode`, an INTERNAL one an
//! `extensions.correlationId` instead of its details (those go to the log).

use async_graphql::ErrorExtensions;
use engine::runtime::Error as RuntimeError;
use engine::store::Error as StoreError;
use uuid::Uuid;

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

/// One API failure: a code and a message for the client, the engine's
/// stable code when an engine error caused it, and on INTERNAL errors the
/// correlation id of the server log line that holds the details.
/// Deliberately not `Display`: async-graphql converts any `Display` type into
/// an error without extensions, and `?` would silently drop the code.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: Code,
    pub message: String,
    /// `extensions.imxCode`: the engine's stable code (`IMX0402`, docs/errors.md).
    pub imx_code: Option<&'static str>,
    /// `extensions.correlationId`: a UUID v7, also in the server log line.
    pub correlation_id: Option<Uuid>,
}

impl ApiError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            imx_code: None,
            correlation_id: None,
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

    /// A bug or unreadable data. The detail may name tables, hosts or
    /// stored values: it goes to the server log (`tracing::error`, with the
    /// full error), the client gets only a correlation id to find it by.
    pub fn internal<E>(error: &E, imx_code: Option<&'static str>) -> Self
    where
        E: std::fmt::Display + std::fmt::Debug + ?Sized,
    {
        let correlation_id = Uuid::now_v7();
        tracing::error!(
            correlation_id = %correlation_id,
            imx_code = imx_code.unwrap_or_default(),
            error = %error,
            detail = ?error,
            "internal error; the client got only the correlation id"
        );
        ApiError {
            code: Code::Internal,
            message: format!(
                "internal error (correlation id {correlation_id}); the server log has the details"
            ),
            imx_code,
            correlation_id: Some(correlation_id),
        }
    }

    /// The `extensions` object of this error as the client sees it.
    pub fn extensions_json(&self) -> serde_json::Value {
        let mut extensions = serde_json::json!({"code": self.code.as_str()});
        if let Some(imx_code) = self.imx_code {
            extensions["imxCode"] = imx_code.into();
        }
        if let Some(correlation_id) = self.correlation_id {
            extensions["correlationId"] = correlation_id.to_string().into();
        }
        extensions
    }
}

impl ErrorExtensions for ApiError {
    fn extend(&self) -> async_graphql::Error {
        async_graphql::Error::new(self.message.clone()).extend_with(|_, extensions| {
            extensions.set("code", self.code.as_str());
            if let Some(imx_code) = self.imx_code {
                extensions.set("imxCode", imx_code);
            }
            if let Some(correlation_id) = self.correlation_id {
                extensions.set("correlationId", correlation_id.to_string());
            }
        })
    }
}

impl From<ApiError> for async_graphql::Error {
    fn from(error: ApiError) -> Self {
        error.extend()
    }
}

/// The one conversion of engine errors into API errors: every store and
/// runtime error a resolver meets comes through here, whichever path it took
/// (a store read, or a runtime command that failed in the store).
impl From<RuntimeError> for ApiError {
    fn from(error: RuntimeError) -> Self {
        let imx_code = Some(error.code());
        match runtime_code(&error) {
            Code::Internal => ApiError::internal(&error, imx_code),
            code => ApiError {
                imx_code,
                ..ApiError::new(code, error.to_string())
            },
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        ApiError::from(RuntimeError::Store(error))
    }
}

/// The coarse code clients switch on, for a runtime error.
fn runtime_code(error: &RuntimeError) -> Code {
    use RuntimeError as E;
    match error {
        E::Store(store) => store_code(store),
        E::UnknownWorkflow { .. } | E::RunNotFound { .. } | E::ScheduleNotFound { .. } => {
            Code::NotFound
        }
        E::InvalidWorkflow { .. }
        | E::InvalidInput { .. }
        | E::InvalidIdempotencyKey { .. }
        | E::TriggerInput { .. }
        | E::Vars { .. }
        | E::BackfillWindowInvalid { .. } => Code::Validation,
        E::BackfillTooLarge { .. } => Code::Limit,
        E::RunFinished { .. }
        | E::NotRetryable { .. }
        | E::NotWaiting { .. }
        | E::Contended { .. }
        | E::SurgeryRefused { .. }
        | E::ForkIncompatible { .. } => Code::Conflict,
        E::UnknownStep { .. } | E::SurgeryInput { .. } => Code::Validation,
        _ => Code::Internal,
    }
}

/// The coarse code clients switch on, for a store error.
fn store_code(error: &StoreError) -> Code {
    use StoreError as E;
    match error {
        E::RunNotFound { .. } => Code::NotFound,
        E::Conflict { .. } | E::IdempotencyKeyTaken { .. } | E::LeaseLost { .. } => Code::Conflict,
        E::PayloadTooLarge { .. } | E::LimitExceeded { .. } => Code::Limit,
        E::InvalidRequest { .. } => Code::Validation,
        E::Unavailable { .. } => Code::Unavailable,
        _ => Code::Internal,
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
