//! Where the egress policy meets reqwest: a resolver that hands the
//! connector only addresses the policy allows, and a redirect policy that
//! checks every hop. reqwest skips the resolver for IP-literal hosts, so the
//! executor checks the URL's host itself before sending (and here on redirects).

use std::net::SocketAddr;
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::redirect;

use crate::executor::egress::{EgressPolicy, Refusal};

/// Resolves names with the system resolver (getaddrinfo, as reqwest's
/// default does) and keeps the addresses the policy allows. Connecting to
/// exactly those addresses leaves no gap for DNS rebinding between check and use.
#[derive(Debug)]
pub(super) struct PolicyResolver {
    pub(super) policy: Arc<EgressPolicy>,
}

/// A name that resolved to no address at all.
#[derive(Debug, thiserror::Error)]
#[error("`{0}` resolved to no address")]
struct NoAddress(String);

/// What a resolver may fail with (reqwest's boxed error).
type ResolveError = Box<dyn std::error::Error + Send + Sync>;

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(resolve_allowed(
            Arc::clone(&self.policy),
            name.as_str().to_owned(),
        ))
    }
}

/// The allowed addresses of `host`, or the first refusal when none is.
async fn resolve_allowed(policy: Arc<EgressPolicy>, host: String) -> Result<Addrs, ResolveError> {
    policy.check_host(&host)?;
    let found = tokio::net::lookup_host((host.as_str(), 0)).await?;
    let mut allowed: Vec<SocketAddr> = Vec::new();
    let mut refusal: Option<Refusal> = None;
    for address in found {
        match policy.check_address(address.ip(), Some(&host)) {
            Ok(()) => allowed.push(address),
            Err(refused) => {
                refusal.get_or_insert(refused);
            }
        }
    }
    match (allowed.is_empty(), refusal) {
        (false, _) => Ok(Box::new(allowed.into_iter())),
        (true, Some(refused)) => Err(Box::new(refused)),
        (true, None) => Err(Box::new(NoAddress(host))),
    }
}

/// Follows at most `max` redirects, only to `schemes`, and only to hosts the policy allows.
pub(super) fn redirect_policy(
    max: usize,
    schemes: Vec<String>,
    policy: Arc<EgressPolicy>,
) -> redirect::Policy {
    redirect::Policy::custom(move |next| {
        if next.previous().len() > max {
            let message = format!("stopped after {max} redirects (the limit)");
            return next.error(message);
        }
        if !schemes.iter().any(|scheme| scheme == next.url().scheme()) {
            let message = format!(
                "refused a redirect to a `{}` URL (allowed: {})",
                next.url().scheme(),
                schemes.join(", ")
            );
            return next.error(message);
        }
        let checked = next
            .url()
            .host_str()
            .map(|host| policy.check_url_host(host));
        match checked {
            Some(Err(refusal)) => next.error(refusal),
            Some(Ok(())) => next.follow(),
            None => next.error("refused a redirect to a URL without a host"),
        }
    })
}

/// The policy refusal somewhere in `error`'s chain of causes.
pub(super) fn refusal_in<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a Refusal> {
    let mut current = Some(error);
    while let Some(cause) = current {
        if let Some(refusal) = cause.downcast_ref::<Refusal>() {
            return Some(refusal);
        }
        current = cause.source();
    }
    None
}
