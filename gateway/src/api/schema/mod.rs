//! The GraphQL schema of `imx serve`: queries, mutations and subscriptions
//! over the store (reads) and the runtime (commands), with the limits that
//! bound what one operation may cost.

mod cursor;
mod history;
pub mod layout;
mod mutation;
mod query;
mod schedules;
mod subscription;
mod surgery;
pub mod types;

use std::sync::Arc;

use async_graphql::{Context, Schema};
use engine::runtime::Runtime;
use engine::store::Store;
use governor::DefaultKeyedRateLimiter;

use super::auth::{Permission, Principal};
use super::config::{ApiConfig, Limits};
use super::error::ApiError;
use super::metrics::Metrics;
use super::tail::LogTail;
use super::ws_limit::WebSocketLimits;

pub use history::StateCache;
pub use mutation::Mutation;
pub use query::Query;
pub use subscription::Subscription;

pub type ApiSchema = Schema<Query, Mutation, Subscription>;

/// What every resolver reaches through the context.
#[derive(Clone)]
pub struct ApiContext {
    pub store: Arc<Store>,
    /// `None` when the server runs without a runtime: commands are UNAVAILABLE.
    /// Resolvers call it directly; its errors become API errors through the
    /// one conversion in `api/error.rs`.
    pub runtime: Option<Arc<Runtime<Store>>>,
    pub limits: Limits,
    pub tail: Arc<LogTail>,
    pub metrics: Arc<Metrics>,
    /// Open subscriptions per caller, for `subscriptions_per_caller_max`.
    pub subscribers: Arc<subscription::Subscribers>,
    /// Folded run states, caught up incrementally (`Run.steps`, `Run.step`).
    pub states: Arc<StateCache>,
}

impl std::fmt::Debug for ApiContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiContext")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl ApiContext {
    /// A `first`/`last` argument checked against the page size limit.
    pub fn page_size(&self, requested: Option<i32>) -> Result<u32, ApiError> {
        let max = self.limits.page_size_max;
        match requested {
            None => Ok(DEFAULT_PAGE_SIZE.min(max)),
            Some(size) if size < 0 => Err(ApiError::validation("page sizes cannot be negative")),
            Some(size) if size as u32 > max => Err(ApiError::limit(format!(
                "a page holds at most {max} items (page_size_max); asked for {size}"
            ))),
            Some(size) => Ok(size as u32),
        }
    }

    pub fn runtime(&self) -> Result<&Runtime<Store>, ApiError> {
        self.runtime.as_deref().ok_or_else(|| {
            ApiError::new(
                super::error::Code::Unavailable,
                "this server runs without a runtime; commands are not available",
            )
        })
    }
}

/// Items in a page when the client gives no `first`.
pub const DEFAULT_PAGE_SIZE: u32 = 20;

/// The caller, after checking it may do `permission`.
pub fn authorize<'a>(
    ctx: &'a Context<'_>,
    permission: Permission,
    what: &str,
) -> Result<(&'a ApiContext, &'a Principal), ApiError> {
    let api = ctx
        .data::<ApiContext>()
        .map_err(|_| ApiError::internal("API context missing", None))?;
    let principal = ctx
        .data::<Principal>()
        .map_err(|_| ApiError::new(super::error::Code::Unauthenticated, "not authenticated"))?;
    principal.require(permission, what)?;
    Ok((api, principal))
}

/// No run has this id: the store's own error (`IMX0314`), so the client
/// sees the same NOT_FOUND and `imxCode` whichever resolver looked.
pub fn run_not_found(run_id: uuid::Uuid) -> ApiError {
    ApiError::from(engine::store::Error::RunNotFound { run_id })
}

pub fn parse_run_id(id: &async_graphql::ID) -> Result<uuid::Uuid, ApiError> {
    uuid::Uuid::parse_str(id.as_str())
        .map_err(|_| ApiError::validation(format!("{:?} is not a run id (a UUID)", id.as_str())))
}

/// Builds the schema with the configured limits. Batching is refused by
/// the HTTP handler; depth and complexity are checked before any resolver runs.
pub fn build(
    config: &ApiConfig,
    context: ApiContext,
    limiter: Arc<DefaultKeyedRateLimiter<String>>,
) -> ApiSchema {
    let mut builder = Schema::build(Query, Mutation, Subscription)
        .data(context)
        .extension(WebSocketLimits {
            limiter,
            timeout: std::time::Duration::from_millis(config.limits.request_timeout_ms),
        })
        .limit_depth(config.limits.query_depth_max)
        .limit_complexity(config.limits.query_complexity_max)
        .limit_directives(DIRECTIVES_MAX);
    if !config.introspection {
        builder = builder.disable_introspection();
    }
    builder.finish()
}

/// Most directives on one field.
pub const DIRECTIVES_MAX: usize = 10;

/// The SDL of the schema, as committed in `schemas/schema.graphql`.
pub fn sdl() -> String {
    Schema::build(Query, Mutation, Subscription).finish().sdl()
}
