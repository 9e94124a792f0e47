//! Benchmark of the audit tools (`cargo bench -p imx-replay --bench verify
//! [-- EVENTS]`, default 1,000,000): a SQLite store filled with the core's
//! canned histories, exported, verified from the file and from the store.
//! Baseline, measured in the same run over the same file: raw SHA-256 of its
//! bytes (what any verifier must at least pay). File measurements are
//! repeated `REPEATS` times, interleaved, and the best time is reported.
//!
//! Signed checkpoints (issue #17), in the full run: the Merkle tree built
//! over the whole log (stored nodes), a checkpoint signed every 1,000
//! events (the writer's default), `verify FILE` with all of them trusted
//! (signatures, log hashes and Merkle roots) beside raw SHA-256, and the
//! time of inclusion and consistency proofs at the log's full size.
//!
//! `IMX_BENCH_EXPORT=FILE` keeps the export in FILE and the signed
//! checkpoints in FILE.notes; when FILE exists already, only the file rows
//! (with the signed row when FILE.notes exists) are measured, on it (quick
//! iterations); with `IMX_BENCH_ONLY=signed` as well, only the signed row
//! (to profile it).

use std::fs::File;
use std::io::{BufReader, BufWriter, Read};
use std::time::{Duration, Instant};

use engine::core::event::EventEnvelope;
use engine::store::prelude::*;
use engine::store::{AppendRequest, NewEvent, Store};
use sha2::{Digest, Sha256};
use testkit::histories;
use uuid::Uuid;

/// Events of the generated log unless the first argument says otherwise.
const EVENTS_DEFAULT: u64 = 1_000_000;
/// Runs per `append_batch` while filling the store.
const FILL_RUNS_PER_BATCH: usize = 500;
/// Read size of the SHA-256 baseline, in bytes.
const HASH_CHUNK_BYTES: usize = 1 << 20;
/// Runs of each file measurement (SHA-256, the verify variants); the best counts.
const REPEATS: usize = 3;
/// Lines held in memory for the per-stage breakdown.
const BREAKDOWN_LINES: usize = 100_000;

/// The machine's load averages (1, 5, 15 min), printed beside the figures:
/// the machine is shared, and the ratios only mean something with them.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "unknown".to_owned())
}

fn main() {
    let load_at_start = load_average();
    let events: u64 = std::env::args()
        .skip(1)
        .find_map(|arg| arg.parse().ok())
        .unwrap_or(EVENTS_DEFAULT);
    // IMX_BENCH_EXPORT=FILE: keep the export there, or when FILE exists,
    // measure only the file rows on it (no store: quick iterations).
    let kept = std::env::var_os("IMX_BENCH_EXPORT").map(std::path::PathBuf::from);
    if let Some(path) = kept.as_ref().filter(|path| path.exists()) {
        let head = trailer_head(path);
        let signed = kept_notes(path);
        let events = measure_file(path, &head, None, signed.as_ref());
        if events == 0 {
            return;
        }
        println!("{events} events from {}", path.display());
        breakdown(path);
        println!(
            "\nload average (1 5 15 min): {load_at_start} at the start, {} at the end",
            load_average()
        );
        return;
    }
    let folder = tempfile::tempdir().expect("a temp folder");
    let url = format!("sqlite://{}/imx.db", folder.path().display());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let store = runtime
        .block_on(Store::connect(&url, Default::default()))
        .expect("open SQLite");

    let started = Instant::now();
    let written = runtime.block_on(fill(&store, events));
    let fill_time = started.elapsed();

    let keep = kept.is_some();
    let path = kept.unwrap_or_else(|| folder.path().join("export.jsonl"));
    let started = Instant::now();
    let mut out = BufWriter::new(File::create(&path).expect("create the export"));
    let trailer = runtime
        .block_on(replay::export(
            &store,
            replay::Scope::default(),
            chrono::DateTime::UNIX_EPOCH,
            &mut out,
        ))
        .expect("export");
    drop(out);
    let export_time = started.elapsed();
    let signed = runtime.block_on(sign_checkpoints(&store, written));
    if keep {
        std::fs::write(notes_path(&path), signed.notes.join("\n\u{1e}\n")).expect("keep the notes");
    }
    let verified = measure_file(
        &path,
        &trailer.head,
        Some((&runtime, &store, fill_time, export_time)),
        Some(&signed),
    );
    assert_eq!(verified, written);
    runtime.block_on(prove(&store, written, &signed));
    breakdown(&path);
    println!(
        "\nload average (1 5 15 min): {load_at_start} at the start, {} at the end",
        load_average()
    );
}

/// The store part of a full run: its runtime and store, and how long the
/// fill and the export took.
type StoreRun<'a> = (&'a tokio::runtime::Runtime, &'a Store, Duration, Duration);

/// Checkpoints signed over the bench's log, and how long building the
/// tree and signing took.
struct Signed {
    key: engine::checkpoint::TrustedKey,
    notes: Vec<String>,
    tree_time: Duration,
    sign_time: Duration,
}

/// Where the signed checkpoints of a kept export are kept.
fn notes_path(export: &std::path::Path) -> std::path::PathBuf {
    let mut path = export.as_os_str().to_owned();
    path.push(".notes");
    path.into()
}

/// The signed checkpoints kept beside the export at `path`, if any (the
/// bench's key is made from a fixed seed, so the public key is known).
fn kept_notes(path: &std::path::Path) -> Option<Signed> {
    let text = std::fs::read_to_string(notes_path(path)).ok()?;
    Some(Signed {
        key: bench_key().public(),
        notes: text.split("\n\u{1e}\n").map(str::to_owned).collect(),
        tree_time: Duration::ZERO,
        sign_time: Duration::ZERO,
    })
}

fn bench_key() -> engine::checkpoint::PrivateKey {
    engine::checkpoint::PrivateKey::from_seed("bench", [3; 32]).expect("a key")
}

/// Builds the Merkle tree over the log's `events` (stored nodes), then
/// signs a checkpoint every `CHECKPOINT_EVERY_EVENTS_DEFAULT` events and
/// at the head, as `imx serve --signing-key` would.
async fn sign_checkpoints(store: &Store, events: u64) -> Signed {
    use engine::checkpoint::{CHECKPOINT_EVERY_EVENTS_DEFAULT, Checkpoint};
    let started = Instant::now();
    engine::merkle::extend(store, events)
        .await
        .expect("the tree");
    let tree_time = started.elapsed();
    let key = bench_key();
    let started = Instant::now();
    let mut notes = Vec::new();
    let mut after = 0;
    while after < events {
        let page = store.read_log(after, 1_000).await.expect("read the log");
        for event in &page {
            if event.position % CHECKPOINT_EVERY_EVENTS_DEFAULT == 0 || event.position == events {
                let checkpoint = Checkpoint {
                    origin: "bench/log".to_owned(),
                    tree_size: event.position,
                    root: engine::merkle::root_at(store, event.position)
                        .await
                        .expect("a root"),
                    log_hash: event.log_hash.clone(),
                    time_ms: 0,
                };
                notes.push(checkpoint.sign(&key));
            }
        }
        after = page.last().expect("a page").position;
    }
    Signed {
        key: key.public(),
        notes,
        tree_time,
        sign_time: started.elapsed(),
    }
}

/// Proofs at the log's full size: inclusion of spread-out events and
/// consistency with spread-out older sizes, each checked, timed per proof.
async fn prove(store: &Store, events: u64, signed: &Signed) {
    use engine::merkle::{
        consistency_proof, inclusion_proof, verify_consistency, verify_inclusion,
    };
    const PROOFS: u64 = 1_000;
    // Spread over the log by a multiplicative step (Knuth's constant).
    let spread = |i: u64| (i.wrapping_mul(2_654_435_761) % events).max(1);
    let started = Instant::now();
    for i in 0..PROOFS {
        let index = spread(i) - 1;
        let proof = inclusion_proof(store, index, events)
            .await
            .expect("a proof");
        let leaf = engine::merkle::leaf_hash(&proof.other);
        assert!(verify_inclusion(
            index,
            events,
            &leaf,
            &proof.path,
            &proof.root
        ));
    }
    let inclusion = started.elapsed();
    let started = Instant::now();
    for i in 0..PROOFS {
        let old = spread(i);
        let proof = consistency_proof(store, old, events)
            .await
            .expect("a proof");
        assert!(verify_consistency(
            old,
            events,
            &proof.other,
            &proof.root,
            &proof.path
        ));
    }
    let consistency = started.elapsed();
    let per = |time: Duration| time.as_secs_f64() * 1e3 / PROOFS as f64;
    println!(
        "\nsigned checkpoints over {events} events (SQLite store): Merkle tree built in {:.2} s; {} checkpoints signed in {:.2} s",
        signed.tree_time.as_secs_f64(),
        signed.notes.len(),
        signed.sign_time.as_secs_f64()
    );
    println!("\n| proof at size {events} (made from the store and checked) | per proof |");
    println!("| --- | ---: |");
    println!(
        "| inclusion (`imx replay prove --run R --seq S`) | {:.3} ms |",
        per(inclusion)
    );
    println!(
        "| consistency (`imx replay prove --consistency OLD {events}`) | {:.3} ms |",
        per(consistency)
    );
}

/// Measures raw SHA-256 and verify over the export at `path` (whose head
/// is `head`), plus the store rows and the signed-checkpoint row when
/// given, and prints the table. Returns the events verified.
fn measure_file(
    path: &std::path::Path,
    head: &str,
    store: Option<StoreRun>,
    signed: Option<&Signed>,
) -> u64 {
    let bytes = std::fs::metadata(path).expect("the export").len();
    let digest = sha256_file(path);
    let verify = |tuning: replay::Tuning| {
        let started = Instant::now();
        let reader = BufReader::new(File::open(path).expect("open the export"));
        let options = replay::Options {
            expect_head: Some(head.to_owned()),
            ..Default::default()
        };
        let summary =
            replay::verify_reader_tuned(reader, options, tuning).expect("the export verifies");
        (started.elapsed(), summary)
    };
    // What `verify FILE --trusted-keys K --checkpoints C` does, from the
    // notes' text: signatures checked, then log hashes and roots.
    let verify_signed = |signed: &Signed| {
        let started = Instant::now();
        let trusted = replay::trusted::TrustedCheckpoints::from_notes(
            std::slice::from_ref(&signed.key),
            signed.notes.iter().map(String::as_str),
        )
        .expect("the notes");
        assert_eq!(trusted.untrusted, 0);
        let reader = BufReader::new(File::open(path).expect("open the export"));
        let options = replay::Options {
            expect_head: Some(head.to_owned()),
            expect: trusted.expectations(),
            checkpoints: true,
        };
        let summary = replay::verify_reader_tuned(reader, options, replay::Tuning::default())
            .expect("the export verifies against the checkpoints");
        let proven = summary
            .coverage
            .as_ref()
            .is_some_and(|c| c.unprovable.is_none());
        assert!(proven, "every event is covered by a checkpoint");
        started.elapsed()
    };
    let mut signed_time = Duration::MAX;
    // IMX_BENCH_ONLY=signed: only the signed row, for a profiler.
    if let (Some(signed), Ok("signed")) = (signed, std::env::var("IMX_BENCH_ONLY").as_deref()) {
        for _ in 0..REPEATS {
            signed_time = signed_time.min(verify_signed(signed));
        }
        println!("signed verify: {:.2} s", signed_time.as_secs_f64());
        return 0;
    }
    let tuned = replay::Tuning::default();
    let one_worker = replay::Tuning {
        workers: 1,
        ..tuned
    };
    let normative = replay::Tuning {
        fast_path: false,
        ..tuned
    };
    // The machine may be shared: each measurement is repeated, interleaved
    // with the others, and the best time is kept.
    let (mut sha_time, mut verify_time, mut one_worker_time, mut normative_time) =
        (Duration::MAX, Duration::MAX, Duration::MAX, Duration::MAX);
    let mut summary = None;
    for _ in 0..REPEATS {
        let started = Instant::now();
        assert_eq!(sha256_file(path), digest);
        sha_time = sha_time.min(started.elapsed());
        let (time, verified) = verify(tuned);
        verify_time = verify_time.min(time);
        summary = Some(verified);
        one_worker_time = one_worker_time.min(verify(one_worker).0);
        normative_time = normative_time.min(verify(normative).0);
        if let Some(signed) = signed {
            signed_time = signed_time.min(verify_signed(signed));
        }
    }
    let summary = summary.expect("verified at least once");
    let events = summary.events;
    println!(
        "{events} events in {} runs, export {:.1} MB (SHA-256 {})",
        summary.runs,
        bytes as f64 / 1e6,
        &digest[..16]
    );
    let row = |name: &str, time: Duration| {
        let seconds = time.as_secs_f64();
        println!(
            "| {name} | {:.2} s | {:.0} | {:.1} | {:.3}x |",
            seconds,
            events as f64 / seconds,
            bytes as f64 / 1e6 / seconds,
            sha_time.as_secs_f64() / seconds
        );
    };
    let store_rows = store.map(|(runtime, store, fill_time, export_time)| {
        println!("(filling the store took {:.1} s)", fill_time.as_secs_f64());
        let started = Instant::now();
        let online = runtime
            .block_on(replay::online::verify_store(
                store,
                replay::Options::default(),
            ))
            .expect("read the store")
            .expect("the store verifies");
        assert_eq!(online.head, summary.head);
        (started.elapsed(), export_time)
    });
    println!("\n| benchmark | time | events/s | MB/s | vs SHA-256 |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    row("baseline: raw SHA-256 of the export file", sha_time);
    row(
        &format!("verify FILE ({} workers, fast path)", tuned.workers),
        verify_time,
    );
    row("verify FILE (1 worker, fast path)", one_worker_time);
    row(
        &format!(
            "verify FILE ({} workers, normative path only: before)",
            tuned.workers
        ),
        normative_time,
    );
    if let Some(signed) = signed {
        row(
            &format!(
                "verify FILE + {} signed checkpoints (--trusted-keys, {} workers)",
                signed.notes.len(),
                tuned.workers
            ),
            signed_time,
        );
    }
    if let Some((store_time, export_time)) = store_rows {
        row("verify (store, SQLite)", store_time);
        row("export (store → file)", export_time);
    }
    events
}

/// The head in the trailer of the export at `path` (its last line).
fn trailer_head(path: &std::path::Path) -> String {
    let text = std::fs::read_to_string(path).expect("read the export");
    let last = text.lines().last().expect("a trailer line");
    let line: serde_json::Value = serde_json::from_str(last).expect("a JSON trailer");
    line["trailer"]["head"]
        .as_str()
        .expect("trailer.head")
        .to_owned()
}

/// Where verify's time goes: each stage over the first lines of the file
/// held in memory, cumulatively (each row includes the rows above).
fn breakdown(path: &std::path::Path) {
    use engine::chain;
    use replay::format::Line;
    let text = std::fs::read_to_string(path).expect("read the export");
    let lines: Vec<&str> = text
        .lines()
        .skip(1)
        .take(BREAKDOWN_LINES)
        .filter(|line| line.starts_with("{\"run_id\""))
        .collect();
    let schemas = replay::schemas::Schemas::get();
    let stage = |name: &str, work: &dyn Fn(&str)| {
        let mut best = Duration::MAX;
        for _ in 0..REPEATS {
            let started = Instant::now();
            for line in &lines {
                work(line);
            }
            best = best.min(started.elapsed());
        }
        let per_event = best.as_nanos() as f64 / lines.len() as f64;
        println!("| {name} | {per_event:.0} ns |");
    };
    println!(
        "\nper event, cumulative, over {} events held in memory (best of {REPEATS}):\n",
        lines.len()
    );
    println!("| stage | per event |");
    println!("| --- | ---: |");
    let parse = |line: &str| match Line::parse(line) {
        Ok(Line::Event(event)) => event.into_recorded().expect("canonical time"),
        _ => panic!("not an event"),
    };
    stage("parse the line (serde_json) + recorded_at", &|line| {
        std::hint::black_box(parse(line));
    });
    stage(
        "+ canonical bytes (normative: chain::canonical_event_bytes)",
        &|line| {
            std::hint::black_box(chain::canonical_event_bytes(&parse(line)).expect("canonical"));
        },
    );
    stage(
        "+ canonical bytes (chain::canonical_event_into, what verify uses)",
        &|line| {
            let mut out = Vec::new();
            chain::canonical_event_into(&parse(line), &mut out).expect("canonical");
            std::hint::black_box(out);
        },
    );
    stage("+ schema check (jsonschema)", &|line| {
        let event = parse(line);
        let mut out = Vec::new();
        chain::canonical_event_into(&event, &mut out).expect("canonical");
        std::hint::black_box(out);
        schemas
            .check(&event.event_type, event.schema_version, &event.payload)
            .expect("valid");
    });
    println!("| fast path: parse onto a borrowed tape | |");
    let fast_stage = |name: &str, work: &dyn Fn(&str, &mut Vec<u8>)| {
        stage(name, &|line| {
            let mut out = Vec::with_capacity(1024);
            work(line, &mut out);
            std::hint::black_box(out);
        });
    };
    fast_stage("parse the line (fields + payload tape)", &|line, _| {
        let mut tape = replay::tape::Tape::default();
        std::hint::black_box(replay::fast::parse_line(line, &mut tape).expect("parses"));
    });
    fast_stage("+ canonical bytes from the tape", &|line, out| {
        let mut tape = replay::tape::Tape::default();
        let fields = replay::fast::parse_line(line, &mut tape).expect("parses");
        replay::fast::write_canonical(&fields, &tape, out).expect("canonical");
    });
    fast_stage("+ SHA-256 of them", &|line, out| {
        let mut tape = replay::tape::Tape::default();
        let fields = replay::fast::parse_line(line, &mut tape).expect("parses");
        replay::fast::write_canonical(&fields, &tape, out).expect("canonical");
        std::hint::black_box(Sha256::digest(&out[..]));
    });
    fast_stage("+ compiled schema check", &|line, out| {
        let mut tape = replay::tape::Tape::default();
        let fields = replay::fast::parse_line(line, &mut tape).expect("parses");
        replay::fast::write_canonical(&fields, &tape, out).expect("canonical");
        std::hint::black_box(Sha256::digest(&out[..]));
        assert!(schemas.accepts(fields.event_type, fields.schema_version, &tape));
    });
    fast_stage("whole fast path (fast::accepts_line)", &|line, _| {
        assert!(replay::fast::accepts_line(line));
    });
}

/// Appends canned histories under fresh run ids until `events` are written.
async fn fill(store: &Store, events: u64) -> u64 {
    let templates: Vec<Vec<EventEnvelope>> = [
        histories::retry_then_ok(),
        histories::retry_exhausted(),
        histories::step_timed_out(),
        histories::approval_granted(),
        histories::child_run_succeeded(),
        histories::cancel_while_running(),
        histories::run_timed_out(),
        histories::fan_out_item_done(),
        histories::failed_dependency(),
    ]
    .into_iter()
    .map(|history| history.settled().events)
    .collect();
    let mut written = 0u64;
    let mut run = 0u128;
    while written < events {
        let mut batch = Vec::with_capacity(FILL_RUNS_PER_BATCH);
        while batch.len() < FILL_RUNS_PER_BATCH && written < events {
            let template = &templates[run as usize % templates.len()];
            let take = template.len().min((events - written) as usize);
            let new_events = template[..take]
                .iter()
                .map(|event| {
                    let (event_type, schema_version, payload) = event.event.to_payload();
                    NewEvent {
                        event_type: event_type.to_owned(),
                        schema_version,
                        payload,
                    }
                })
                .collect();
            batch.push(AppendRequest::new(Uuid::from_u128(run + 1), 0, new_events));
            written += take as u64;
            run += 1;
        }
        for result in store.append_batch(batch).await.expect("append a batch") {
            result.expect("append a run");
        }
    }
    written
}

fn sha256_file(path: &std::path::Path) -> String {
    let mut file = File::open(path).expect("open the export");
    let mut buffer = vec![0u8; HASH_CHUNK_BYTES];
    let mut hasher = Sha256::new();
    loop {
        let read = file.read(&mut buffer).expect("read the export");
        if read == 0 {
            return hex::encode(hasher.finalize());
        }
        hasher.update(&buffer[..read]);
    }
}
