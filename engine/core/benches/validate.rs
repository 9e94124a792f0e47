//! Benchmark: parse + validate 1,000 generated workflows of 50 steps each and
//! compare with a baseline measured in the same run, a plain serde-saphyr
//! parse of the same sources into `serde_json::Value` (no positions, no checks).
//!
//! Run with `cargo bench -p imx-core --bench validate`.

// The purity guard (clippy.toml) is for the library; tests and benchmarks
// read clocks and the environment.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use imx_core::dsl;

const WORKFLOWS: usize = 1_000;
const STEPS_PER_WORKFLOW: usize = 50;
/// Each measurement runs this many times; the fastest round is reported.
const ROUNDS: usize = 3;

fn main() {
    let sources: Vec<String> = (0..WORKFLOWS).map(workflow_source).collect();
    let bytes: usize = sources.iter().map(String::len).sum();
    for source in &sources {
        let parsed = dsl::parse(source);
        assert!(
            parsed.diagnostics.is_empty(),
            "generated workflow is invalid: {:#?}",
            parsed.diagnostics
        );
    }

    let baseline = best_of(|| {
        for source in &sources {
            let value: serde_json::Value = serde_saphyr::from_str(source).expect("valid YAML");
            black_box(value);
        }
    });
    let tree = best_of(|| {
        for source in &sources {
            black_box(dsl::yaml::parse(source).expect("valid YAML"));
        }
    });
    let full = best_of(|| {
        for source in &sources {
            black_box(dsl::parse(source));
        }
    });

    println!(
        "machine: {} ({} threads available, benchmark is single-threaded)",
        cpu_model(),
        threads()
    );
    println!(
        "input: {WORKFLOWS} workflows x {STEPS_PER_WORKFLOW} steps, {:.1} MiB of YAML, best of {ROUNDS} rounds\n",
        bytes as f64 / (1024.0 * 1024.0)
    );
    println!("| what | total ms | files/s | steps/s | MiB/s | time vs baseline |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for (name, elapsed) in [
        ("baseline: serde-saphyr -> serde_json::Value", baseline),
        ("dsl::yaml::parse (positioned tree only)", tree),
        ("dsl::parse (tree + model + all checks)", full),
    ] {
        let seconds = elapsed.as_secs_f64();
        println!(
            "| {name} | {:.0} | {:.0} | {:.0} | {:.1} | {:.2}x |",
            seconds * 1000.0,
            WORKFLOWS as f64 / seconds,
            (WORKFLOWS * STEPS_PER_WORKFLOW) as f64 / seconds,
            bytes as f64 / (1024.0 * 1024.0) / seconds,
            seconds / baseline.as_secs_f64()
        );
    }
    dense();
}

/// The largest `needs` graph the limits allow: `STEPS_MAX` steps, each
/// needing the `NEEDS_MAX` steps before it and reading two of them (issue #13:
/// 13.8 s and 795 MB before ancestry became bitsets). With `cyclic`, the
/// first step also needs the last, closing a cycle through every step.
/// Returns the source and its number of edges.
fn dense_source(cyclic: bool) -> (String, usize) {
    let mut text = String::from("name: dense\nsteps:\n");
    let mut edges = 0;
    for step in 0..dsl::STEPS_MAX {
        text.push_str(&format!("  s{step}:\n    uses: noop\n"));
        let first = step.saturating_sub(dsl::NEEDS_MAX);
        let mut needs: Vec<String> = (first..step).map(|need| format!("s{need}")).collect();
        if cyclic && step == 0 {
            needs.push(format!("s{}", dsl::STEPS_MAX - 1));
        }
        edges += needs.len();
        if !needs.is_empty() {
            text.push_str(&format!("    needs: [{}]\n", needs.join(", ")));
        }
        if step > 0 {
            text.push_str(&format!(
                "    with: {{ near: \"{{{{ steps.s{}.output }}}}\", far: \"{{{{ steps.s{first}.status }}}}\" }}\n",
                step - 1
            ));
        }
    }
    (text, edges)
}

/// Parses the dense shape (acyclic, then with a cycle through every step)
/// and prints the time against the serde-saphyr baseline of the same text.
fn dense() {
    println!(
        "\ninput: one workflow of {} steps x {} needs (the limits), best of {ROUNDS} rounds\n",
        dsl::STEPS_MAX,
        dsl::NEEDS_MAX
    );
    println!("| shape | edges | baseline ms | dsl::parse ms | time vs baseline |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for (name, cyclic) in [("acyclic", false), ("one cycle through every step", true)] {
        let (source, edges) = dense_source(cyclic);
        let parsed = dsl::parse(&source);
        assert_eq!(parsed.has_errors(), cyclic, "{:#?}", parsed.diagnostics);
        let baseline = best_of(|| {
            let value: serde_json::Value = serde_saphyr::from_str(&source).expect("valid YAML");
            black_box(value);
        });
        let full = best_of(|| {
            black_box(dsl::parse(&source));
        });
        println!(
            "| {name} | {edges} | {:.1} | {:.1} | {:.2}x |",
            baseline.as_secs_f64() * 1000.0,
            full.as_secs_f64() * 1000.0,
            full.as_secs_f64() / baseline.as_secs_f64()
        );
    }
}

fn best_of(mut run: impl FnMut()) -> Duration {
    (0..ROUNDS)
        .map(|_| {
            let started = Instant::now();
            run();
            started.elapsed()
        })
        .min()
        .unwrap_or_default()
}

/// A deterministic pseudo-random sequence (SplitMix64), so every run sees the same input.
struct Sequence(u64);

impl Sequence {
    fn next(&mut self, bound: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) % bound as u64) as usize
    }
}

/// A realistic workflow: input schema, defaults, a trigger, and 50 steps of
/// mixed kinds, each needing 1-3 earlier steps and reading their outputs.
fn workflow_source(index: usize) -> String {
    let mut random = Sequence(index as u64);
    let mut text = format!(
        "name: generated-{index}\ndescription: Generated workflow number {index}\n\
         input:\n  type: object\n  required: [order_id]\n  properties:\n    order_id: {{ type: string }}\n    amount: {{ type: number, minimum: 0 }}\n\
         defaults:\n  timeout: 30s\n  retry: {{ max_attempts: 3, backoff: exponential, initial_interval: 1s, max_interval: 1m }}\n\
         timeout: 2h\ntriggers:\n  - cron: \"0 */15 * * * *\"\n    timezone: Europe/Berlin\n    input: {{ order_id: nightly-{index}, amount: 0 }}\n  - webhook: {{ secret_env: HOOK_SECRET_{index} }}\nsteps:\n"
    );
    for step in 0..STEPS_PER_WORKFLOW {
        text.push_str(&format!("  step_{step}:\n"));
        let mut needs: Vec<usize> = Vec::new();
        if step > 0 {
            for _ in 0..1 + random.next(3) {
                let need = step - 1 - random.next(step.min(8));
                if !needs.contains(&need) {
                    needs.push(need);
                }
            }
            let list: Vec<String> = needs.iter().map(|need| format!("step_{need}")).collect();
            text.push_str(&format!("    needs: [{}]\n", list.join(", ")));
        }
        let upstream = needs
            .first()
            .map(|need| format!("steps.step_{need}.output"));
        match (step % 5, &upstream) {
            (0, _) | (_, None) => text.push_str(&format!(
                "    uses: http\n    with:\n      method: GET\n      url: \"https://shop.example/orders/{{{{ input.order_id }}}}/{step}\"\n      headers: {{ Authorization: \"Bearer {{{{ secrets.SHOP_TOKEN }}}}\" }}\n"
            )),
            (1, Some(upstream)) => text.push_str(&format!(
                "    if: {upstream}.status == 200 and input.amount > 10\n    uses: http\n    with:\n      method: POST\n      url: https://pay.example/charge\n      json: {{ order: \"{{{{ input.order_id }}}}\", previous: \"{{{{ {upstream}.body }}}}\", attempt: \"{{{{ run.attempt }}}}\" }}\n    retry: {{ max_attempts: 5, jitter: 0.2 }}\n"
            )),
            (2, Some(upstream)) => text.push_str(&format!(
                "    for_each: \"{{{{ {upstream}.items }}}}\"\n    max_parallel: 4\n    uses: agent\n    with: {{ queue: warehouse, payload: {{ sku: \"{{{{ item.sku }}}}\", position: \"{{{{ index }}}}\" }} }}\n"
            )),
            (3, Some(upstream)) => text.push_str(&format!(
                "    uses: noop\n    with: {{ summary: \"{{% for line in {upstream}.lines %}}{{{{ line.name }}}} {{% endfor %}}\" }}\n    timeout: 5m\n"
            )),
            _ => text.push_str("    trigger_rule: all_done\n    uses: sleep\n    with: { duration: 1m30s }\n    continue_on_error: true\n"),
        }
    }
    text.push_str(&format!(
        "output:\n  last: \"{{{{ steps.step_{}.output }}}}\"\n  run: \"{{{{ run.id }}}}\"\n",
        STEPS_PER_WORKFLOW - 1
    ));
    text
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split(':').nth(1))
                .map(|model| model.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned())
}

fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}
