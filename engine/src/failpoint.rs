//! Named crash points for the fault battery (`tests/`): with the cargo
//! feature `failpoints` (off in release builds) a point named in the
//! `FAILPOINTS` environment variable aborts the process when reached, the
//! way a power cut would at that line; without the feature every point
//! compiles to nothing. The names and where they sit: docs/reliability.md.

/// After a worker claimed tasks, before it starts any of them.
pub const AFTER_CLAIM: &str = "after_claim";
/// After an attempt's side effect (the executor returned), before its
/// result is appended.
pub const AFTER_EFFECT_BEFORE_RECORD: &str = "after_effect_before_record";
/// Inside the append transaction, after its rows are written, before COMMIT.
pub const APPEND_BEFORE_COMMIT: &str = "append_before_commit";
/// After the append committed, before the node updates what it remembers
/// (its head cache) and answers the caller.
pub const APPEND_AFTER_COMMIT: &str = "append_after_commit";

/// Every point, for `configure_from_env` to reject a misspelt name.
pub const ALL: [&str; 4] = [
    AFTER_CLAIM,
    AFTER_EFFECT_BEFORE_RECORD,
    APPEND_BEFORE_COMMIT,
    APPEND_AFTER_COMMIT,
];

/// The environment variable that arms points: `name=ACTIONS;name=ACTIONS`
/// in the `fail` crate's action syntax; `return` crashes (`1*return`: the
/// first time only, `50%return`: every other time on average).
pub const FAILPOINTS_ENV: &str = "FAILPOINTS";

/// Arms the points named in [`FAILPOINTS_ENV`]; the names armed, or why
/// the variable is refused. Always empty without the feature.
pub fn configure_from_env() -> Result<Vec<String>, String> {
    let Ok(spec) = std::env::var(FAILPOINTS_ENV) else {
        return Ok(Vec::new());
    };
    configure(&spec)
}

#[cfg(feature = "failpoints")]
fn configure(spec: &str) -> Result<Vec<String>, String> {
    let mut armed = Vec::new();
    for entry in spec.split(';').map(str::trim).filter(|e| !e.is_empty()) {
        let (name, actions) = entry
            .split_once('=')
            .ok_or_else(|| format!("{FAILPOINTS_ENV}: `{entry}` is not name=actions"))?;
        if !ALL.contains(&name) {
            return Err(format!(
                "{FAILPOINTS_ENV}: unknown point `{name}` (known: {})",
                ALL.join(", ")
            ));
        }
        fail::cfg(name, actions).map_err(|error| format!("{FAILPOINTS_ENV}: {name}: {error}"))?;
        armed.push(name.to_owned());
    }
    Ok(armed)
}

#[cfg(not(feature = "failpoints"))]
fn configure(spec: &str) -> Result<Vec<String>, String> {
    if spec.trim().is_empty() {
        return Ok(Vec::new());
    }
    Err(format!(
        "{FAILPOINTS_ENV} is set but this imx was built without the `failpoints` feature"
    ))
}

/// A crash point: aborts the process here when `name` is armed.
#[inline]
pub fn crash_point(name: &'static str) {
    #[cfg(feature = "failpoints")]
    fail::eval(name, |_| {
        eprintln!("imx: failpoint {name} reached: aborting the process");
        std::process::abort()
    });
    #[cfg(not(feature = "failpoints"))]
    let _ = name;
}
