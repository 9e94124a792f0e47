//! A small deterministic generator (SplitMix64), so that a seed replays a
//! scenario's fault times: every scenario prints its seed, and
//! `IMX_E2E_SEED=N` replays it.

/// Replays a scenario's random choices.
pub const SEED_ENV: &str = "IMX_E2E_SEED";

#[derive(Debug, Clone)]
pub struct Random {
    state: u64,
    seed: u64,
}

impl Random {
    /// From [`SEED_ENV`] (or `legacy_env`, for the older crash test's
    /// variable), else from the clock; prints the seed under `what`.
    pub fn from_env(what: &str, legacy_env: Option<&str>) -> Random {
        let named = |name: &str| std::env::var(name).ok().and_then(|seed| seed.parse().ok());
        let seed = named(SEED_ENV)
            .or_else(|| legacy_env.and_then(named))
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |since| since.as_nanos() as u64)
            });
        eprintln!("{what}: seed {seed} (replay with {SEED_ENV}={seed})");
        Random::new(seed)
    }

    pub fn new(seed: u64) -> Random {
        Random { state: seed, seed }
    }

    /// The seed it started from (to name in a failure).
    pub fn seed(&self) -> u64 {
        self.seed
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `[low, high)`.
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next_u64() % (high - low).max(1)
    }
}
