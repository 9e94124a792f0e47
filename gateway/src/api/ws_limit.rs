//! Limits of the operations sent over a WebSocket, which `http.rs` does not
//! see: every graphql-transport-ws `subscribe` message is one operation and
//! draws from the caller's rate bucket, the same bucket as its HTTP
//! operations (those are checked in `http.rs` before parsing, to answer
//! 429), and a query or mutation sent that way has the same time limit as
//! over HTTP. One connection could otherwise start unbounded work with a
//! single upgrade. Parse, validation and limit errors of async-graphql
//! itself get their `extensions.code` here too (`http.rs` adds them to
//! HTTP answers).

use std::sync::Arc;
use std::time::Duration;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery, NextPrepareRequest,
    NextValidation,
};
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{Request, Response, ServerError, ServerResult, ValidationResult, Variables};
use governor::DefaultKeyedRateLimiter;

use super::auth::Principal;
use super::error::{ApiError, code_for_engine_message};

/// Put into a WebSocket connection's session data (with its [`Principal`]):
/// operations carrying it are counted here, HTTP ones are not.
#[derive(Debug, Clone, Copy)]
pub struct WebSocketSession;

/// The schema extension that limits WebSocket operations.
pub struct WebSocketLimits {
    pub limiter: Arc<DefaultKeyedRateLimiter<String>>,
    /// `request_timeout_ms` for queries and mutations (subscriptions are long-lived).
    pub timeout: Duration,
}

impl ExtensionFactory for WebSocketLimits {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(Check {
            limiter: Arc::clone(&self.limiter),
            timeout: self.timeout,
        })
    }
}

struct Check {
    limiter: Arc<DefaultKeyedRateLimiter<String>>,
    timeout: Duration,
}

/// `error` with a code judged from its message, unless it has one.
fn with_code(mut error: ServerError) -> ServerError {
    let has_code = error
        .extensions
        .as_ref()
        .is_some_and(|extensions| extensions.get("code").is_some());
    if !has_code {
        let code = code_for_engine_message(&error.message);
        error.extensions =
            async_graphql::Error::from(ApiError::new(code, error.message.clone())).extensions;
    }
    error
}

/// A GraphQL error with `extensions.code`.
fn server_error(error: ApiError) -> ServerError {
    let mut refused = ServerError::new(error.message.clone(), None);
    refused.extensions = async_graphql::Error::from(error).extensions;
    refused
}

#[async_graphql::async_trait::async_trait]
impl Extension for Check {
    /// Runs before parsing, so a refused operation costs no resolver work;
    /// the client gets `next` with a LIMIT error, then `complete`.
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        if ctx.data_opt::<WebSocketSession>().is_some() {
            let caller = ctx
                .data_opt::<Principal>()
                .map_or("anonymous", |principal| principal.id.as_str());
            if self.limiter.check_key(&caller.to_owned()).is_err() {
                let error = ApiError::limit(
                    "rate limit exceeded for this caller (rate_per_second/rate_burst): every subscribe message counts as one operation; slow down and retry",
                );
                return Err(server_error(error));
            }
        }
        next.run(ctx, request).await
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let parsed = next.run(ctx, query, variables).await;
        match ctx.data_opt::<WebSocketSession>() {
            Some(_) => parsed.map_err(with_code),
            None => parsed,
        }
    }

    /// Depth and complexity limits are checked here too.
    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        let validated = next.run(ctx).await;
        match ctx.data_opt::<WebSocketSession>() {
            Some(_) => validated.map_err(|errors| errors.into_iter().map(with_code).collect()),
            None => validated,
        }
    }

    /// Queries and mutations only: async-graphql runs subscriptions without
    /// this hook.
    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        if ctx.data_opt::<WebSocketSession>().is_none() {
            return next.run(ctx, operation_name).await;
        }
        match tokio::time::timeout(self.timeout, next.run(ctx, operation_name)).await {
            Ok(response) => response,
            Err(_) => Response::from_errors(vec![server_error(ApiError::limit(format!(
                "the operation took longer than {} ms (request_timeout_ms)",
                self.timeout.as_millis()
            )))]),
        }
    }
}
