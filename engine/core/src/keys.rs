//! Deterministic names and numbers derived from a run: idempotency keys, timer
//! ids, child run ids and retry delays with jitter. All of them are pure
//! functions of the log, so replay and recovery derive the same values.

use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::workflow::{Backoff, RetryPolicy};

/// Id of the whole-run timeout timer.
pub const RUN_TIMEOUT_TIMER_ID: &str = "run/timeout";

/// Longest retry delay the core will ever ask for, whatever the policy says
/// (about 30 days); keeps `DateTime` arithmetic far from overflow.
pub const RETRY_DELAY_MS_MAX: u64 = 30 * 24 * 60 * 60 * 1000;

/// `<run-id>/<step-id>[/<index>]`: the same for every attempt of an
/// execution (of the first generation, see [`execution_key`]).
pub fn idempotency_key(run_id: Uuid, step: &str, index: Option<u32>) -> String {
    match index {
        Some(index) => format!("{run_id}/{step}/{index}"),
        None => format!("{run_id}/{step}"),
    }
}

/// The key of an execution in `generation`: [`idempotency_key`], followed
/// by `@<generation>` once surgery reset the step after it had run (a
/// rewind, a skip), so that an external service does not deduplicate the
/// new execution away. Retries within a generation share the key.
pub fn execution_key(run_id: Uuid, step: &str, index: Option<u32>, generation: u32) -> String {
    let key = idempotency_key(run_id, step, index);
    match generation {
        0 => key,
        generation => format!("{key}@{generation}"),
    }
}

/// `<step-id>[/<index>]`: names one execution inside a run (timer ids, messages).
pub fn execution_name(step: &str, index: Option<u32>) -> String {
    match index {
        Some(index) => format!("{step}/{index}"),
        None => step.to_owned(),
    }
}

/// Timer that times out one attempt: `timeout/<step>[/<index>]/<attempt>`.
pub fn step_timeout_timer_id(step: &str, index: Option<u32>, attempt: u32) -> String {
    format!("timeout/{}/{attempt}", execution_name(step, index))
}

/// Timer that starts the next attempt: `retry/<step>[/<index>]/<attempt>`.
pub fn retry_timer_id(step: &str, index: Option<u32>, attempt: u32) -> String {
    format!("retry/{}/{attempt}", execution_name(step, index))
}

/// The child run of one attempt of a `workflow` step: a UUIDv8 made of the
/// first 16 bytes of SHA-256(idempotency key ‖ "#" ‖ attempt), so that a
/// recovered parent starts (and deduplicates) the same child.
pub fn child_run_id(idempotency_key: &str, attempt: u32) -> Uuid {
    let digest = Sha256::digest(format!("{idempotency_key}#{attempt}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// Delay before attempt `failed_attempt + 1`, in milliseconds.
///
/// `base = initial` (fixed) or `initial * multiplier^(failed_attempt - 1)`
/// (exponential), capped at `max_interval`; then
/// `delay = base * (1 - jitter * u)` where `u` in `[0, 1)` is the first 8
/// bytes of SHA-256(idempotency key ‖ "#" ‖ failed attempt) as a fraction of
/// 2^64. Jitter only shortens a delay, so `max_interval` stays an upper bound.
pub fn retry_delay_ms(policy: &RetryPolicy, idempotency_key: &str, failed_attempt: u32) -> u64 {
    let initial = policy.initial_interval_ms as f64;
    let cap = policy.max_interval_ms.min(RETRY_DELAY_MS_MAX) as f64;
    let base = match policy.backoff {
        Backoff::Fixed => initial,
        Backoff::Exponential => {
            let exponent = failed_attempt.saturating_sub(1).min(1_000) as i32;
            initial * policy.multiplier.max(1.0).powi(exponent)
        }
    };
    let base = if base.is_finite() { base.min(cap) } else { cap };
    let jitter = if policy.jitter.is_finite() {
        policy.jitter.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let delay = base * (1.0 - jitter * unit_fraction(idempotency_key, failed_attempt));
    delay.round().max(0.0) as u64
}

/// A number in `[0, 1)` derived from the key and attempt.
fn unit_fraction(idempotency_key: &str, attempt: u32) -> f64 {
    let digest = Sha256::digest(format!("{idempotency_key}#{attempt}").as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    // 53 bits keep the value exactly representable and strictly below 1.
    (u64::from_be_bytes(first) >> 11) as f64 / (1u64 << 53) as f64
}
