//! Per-caller rate limiting of the operations sent over a WebSocket: every
//! graphql-transport-ws `subscribe` message is one operation and draws from
//! the caller's bucket, the same bucket as its HTTP operations (those are
//! checked in `http.rs` before parsing, to answer 429). One connection can
//! otherwise start unbounded work with a single upgrade.

use std::sync::Arc;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextPrepareRequest,
};
use async_graphql::{Request, ServerError, ServerResult};
use governor::DefaultKeyedRateLimiter;

use super::auth::Principal;
use super::error::ApiError;

/// Put into a WebSocket connection's session data (with its [`Principal`]):
/// operations carrying it are counted here, HTTP ones are not.
#[derive(Debug, Clone, Copy)]
pub struct WebSocketSession;

/// The schema extension that charges WebSocket operations to their caller.
pub struct WebSocketRateLimit {
    pub limiter: Arc<DefaultKeyedRateLimiter<String>>,
}

impl ExtensionFactory for WebSocketRateLimit {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(Check {
            limiter: Arc::clone(&self.limiter),
        })
    }
}

struct Check {
    limiter: Arc<DefaultKeyedRateLimiter<String>>,
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
                let mut refused = ServerError::new(error.message.clone(), None);
                refused.extensions = async_graphql::Error::from(error).extensions;
                return Err(refused);
            }
        }
        next.run(ctx, request).await
    }
}
