//! Signed checkpoints against the full-rewrite attack, through the real
//! binary on SQLite and PostgreSQL: keys from `imx keys generate`,
//! checkpoints signed by the engine's writer into a witness file, then an
//! attacker with write access drops the append-only triggers, changes a
//! payload and recomputes every hash after it. `imx replay verify` alone
//! accepts the result; with `--trusted-keys` and the witness file it names
//! the first event no matching checkpoint vouches for, and it reports a
//! rewrite past the last checkpoint as unprovable (exit 3), never as fine.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use engine::chain::{GENESIS_HASH, event_hash, log_hash};
use engine::checkpoint::{Config, PrivateKey, Witness, checkpoint_once};
use engine::core::event::EventEnvelope;
use engine::store::Store;
use engine::store::prelude::*;
use testkit::histories;
use testkit::postgres::{ClusterUse, ScratchDatabase};
use uuid::Uuid;

use crate::imx;
use crate::replay::append;

fn as_run(events: Vec<EventEnvelope>, run_id: Uuid) -> Vec<EventEnvelope> {
    events
        .into_iter()
        .map(|event| EventEnvelope { run_id, ..event })
        .collect()
}

fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(future)
}

/// Signs a checkpoint of the log's head with the key in `key_file`.
fn checkpoint(url: &str, key_file: &Path, witness: &Path) -> u64 {
    let text = std::fs::read_to_string(key_file).expect("the key file");
    let config = Config {
        key: Arc::new(PrivateKey::parse(&text).expect("a private key")),
        origin: "audit.test/log".to_owned(),
        every_events: 1,
        every_ms: 1,
        witnesses: vec![Witness::File(witness.to_owned())],
        holder: "test".to_owned(),
    };
    block_on(async {
        let store = Store::connect(url, Default::default()).await.expect("open");
        checkpoint_once(&store, &config)
            .await
            .expect("checkpoint")
            .expect("the log grew")
            .tree_size
    })
}

/// The attack: drop the append-only triggers, give run `run_id`'s first
/// event another input and recompute every hash from there on, as anyone
/// with write access to the database can.
fn rewrite(url: &str, run_id: Uuid) {
    block_on(async {
        let store = Store::connect(url, Default::default()).await.expect("open");
        let events = store.read_log(0, 1_000).await.expect("the log");
        let postgres = url.starts_with("postgres");
        let drops: &[&str] = if postgres {
            &["DROP TRIGGER IF EXISTS events_reject_update_delete ON events"]
        } else {
            &["DROP TRIGGER IF EXISTS events_reject_update"]
        };
        let mut updates = Vec::new();
        let (mut run_heads, mut prev_log) = (HashMap::new(), GENESIS_HASH.to_owned());
        let mut changed = false;
        for mut event in events {
            if event.run_id == run_id && event.seq == 1 {
                let input = event
                    .payload
                    .get_mut("input")
                    .expect("RunStarted has an input");
                *input = serde_json::json!({"tampered": true});
                changed = true;
            }
            event.prev_hash = run_heads
                .get(&event.run_id)
                .cloned()
                .unwrap_or_else(|| GENESIS_HASH.to_owned());
            event.hash = event_hash(&event).expect("hash");
            event.log_hash = log_hash(&prev_log, &event.hash).expect("log hash");
            run_heads.insert(event.run_id, event.hash.clone());
            prev_log = event.log_hash.clone();
            if changed {
                updates.push(event);
            }
        }
        let sql = if postgres {
            "UPDATE events SET payload = $1::json, prev_hash = $2, hash = $3, log_hash = $4 WHERE position = $5"
        } else {
            "UPDATE events SET payload = $1, prev_hash = $2, hash = $3, log_hash = $4 WHERE position = $5"
        };
        if postgres {
            let pool = sqlx::PgPool::connect(url).await.expect("connect");
            for statement in drops {
                sqlx::query(*statement).execute(&pool).await.expect("drop");
            }
            for event in &updates {
                sqlx::query(sql)
                    .bind(engine::chain::canonical_json(&event.payload).expect("canonical"))
                    .bind(&event.prev_hash)
                    .bind(&event.hash)
                    .bind(&event.log_hash)
                    .bind(event.position as i64)
                    .execute(&pool)
                    .await
                    .expect("update");
            }
        } else {
            let pool = sqlx::SqlitePool::connect(url).await.expect("connect");
            for statement in drops {
                sqlx::query(*statement).execute(&pool).await.expect("drop");
            }
            for event in &updates {
                sqlx::query(sql)
                    .bind(engine::chain::canonical_json(&event.payload).expect("canonical"))
                    .bind(&event.prev_hash)
                    .bind(&event.hash)
                    .bind(&event.log_hash)
                    .bind(event.position as i64)
                    .execute(&pool)
                    .await
                    .expect("update");
            }
        }
    });
}

fn full_rewrite_attack(url: &str, folder: &Path) {
    let path = |name: &str| folder.join(name).to_str().expect("UTF-8").to_owned();
    let (old_key, new_key, witness) = (path("old.key"), path("new.key"), path("witness"));
    for (key, name) in [(&old_key, "old-key"), (&new_key, "new-key")] {
        let generated = imx(&["keys", "generate", "--out", key, "--name", name]);
        assert_eq!(generated.code, 0, "{}", generated.stderr);
        let public = std::fs::read_to_string(format!("{key}.pub")).expect("the public key");
        assert_eq!(generated.stdout, public);
    }
    let both = path("trusted");
    let old_only = format!("{old_key}.pub");
    std::fs::write(
        &both,
        format!(
            "# rotated on 2026-12-07\n{}{}",
            std::fs::read_to_string(&old_only).expect("old"),
            std::fs::read_to_string(format!("{new_key}.pub")).expect("new")
        ),
    )
    .expect("write the trusted keys");
    let runs = [Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7()];
    let history = || histories::retry_then_ok().settled().events;
    // Run 0 then a checkpoint by the old key; run 1 then one by the new
    // key (rotation); run 2 covered by no checkpoint.
    append(url, &as_run(history(), runs[0]));
    let first = checkpoint(url, Path::new(&old_key), Path::new(&witness));
    append(url, &as_run(history(), runs[1]));
    let second = checkpoint(url, Path::new(&new_key), Path::new(&witness));
    append(url, &as_run(history(), runs[2]));
    let verify = |file: &str, keys: &str| {
        imx(&[
            "replay",
            "verify",
            file,
            "--trusted-keys",
            keys,
            "--checkpoints",
            &witness,
        ])
    };
    let export = |name: &str| {
        let exported = imx(&["replay", "export", "--database-url", url]);
        assert_eq!(exported.code, 0, "{}", exported.stderr);
        std::fs::write(path(name), exported.stdout).expect("write the export");
        path(name)
    };
    let honest = export("honest.jsonl");
    let total = second + (second - first);
    let outcome = verify(&honest, &both);
    assert_eq!(
        outcome.code, 3,
        "an unprovable tail is not a clean bill: {}",
        outcome.stdout
    );
    assert!(
        outcome.stdout.contains(&format!(
            "checkpoints: 2 trusted checkpoints match; the history is proven through position {second}\n"
        )) && outcome.stdout.contains(&format!(
            "UNPROVABLE: positions {} to {total} are covered by no trusted checkpoint",
            second + 1
        )),
        "{}",
        outcome.stdout
    );

    // A rewrite past the last checkpoint: unprovable, not caught, not fine.
    rewrite(url, runs[2]);
    let plain = imx(&["replay", "verify", "--database-url", url]);
    assert_eq!(
        plain.code, 0,
        "the rewrite is invisible to the chains: {}",
        plain.stderr
    );
    let tail = verify(&export("tail.jsonl"), &both);
    assert_eq!(tail.code, 3, "{}{}", tail.stdout, tail.stderr);

    // A rewrite after the first checkpoint: caught, blaming the first event
    // after the checkpoint that still matches (line = position + 1).
    rewrite(url, runs[1]);
    let rewritten = export("rewritten.jsonl");
    let plain = imx(&["replay", "verify", &rewritten]);
    assert_eq!(
        plain.code, 0,
        "the rewrite is invisible to the chains: {}",
        plain.stderr
    );
    let caught = verify(&rewritten, &both);
    assert_eq!(caught.code, 1, "{}", caught.stdout);
    let blamed = format!(
        "verify failed: IMX0522: run {} seq 1 (position {}) at line {}: this is the first event that may differ from what the trusted checkpoint of size {second} (signed by new-key+",
        runs[1],
        first + 1,
        first + 2
    );
    assert!(caught.stderr.starts_with(&blamed), "{}", caught.stderr);
    assert!(
        caught
            .stderr
            .contains(&format!("the checkpoint of size {first} still matches")),
        "{}",
        caught.stderr
    );
    // The store's own checkpoints table (signed notes) catches it too.
    let store = imx(&[
        "replay",
        "verify",
        "--database-url",
        url,
        "--trusted-keys",
        &both,
    ]);
    assert_eq!(store.code, 1, "{}", store.stdout);
    assert!(
        store.stderr.starts_with("verify failed: IMX0522: "),
        "{}",
        store.stderr
    );
    // With the old key alone the new key's checkpoint is not trusted: the
    // rewrite is then unprovable (exit 3), and the skipped note is named.
    let old_alone = verify(&rewritten, &old_only);
    assert_eq!(
        old_alone.code, 3,
        "{}{}",
        old_alone.stdout, old_alone.stderr
    );
    assert!(
        old_alone
            .stderr
            .contains("note: 1 checkpoints are signed by no trusted key"),
        "{}",
        old_alone.stderr
    );
}

#[test]
fn a_full_rewrite_after_a_checkpoint_is_caught_on_sqlite() {
    let folder = tempfile::tempdir().expect("a temp folder");
    let url = format!("sqlite://{}/imx.db", folder.path().display());
    full_rewrite_attack(&url, folder.path());
}

#[test]
fn a_full_rewrite_after_a_checkpoint_is_caught_on_postgres() {
    let Some(database) =
        ScratchDatabase::create_blocking("the rewrite attack", "imx_audit", ClusterUse::Shared)
    else {
        return;
    };
    let folder = tempfile::tempdir().expect("a temp folder");
    full_rewrite_attack(&database.url, folder.path());
}

/// `imx serve` signing a checkpoint after every event with the private key
/// in `key`, handing each to `witnesses` (its witness flags), with one run's
/// settled history appended to its store: the server and the log's length.
async fn signing_server(name: &str, key: &str, witnesses: &[&str]) -> (crate::served::Served, u64) {
    let mut args = vec![
        "--signing-key",
        key,
        "--checkpoint-every-events",
        "1",
        "--checkpoint-every-ms",
        "100",
    ];
    args.extend_from_slice(witnesses);
    let served = crate::served::Served::start(name, &args, &[]).await;
    let url = served.url.clone();
    let events = histories::retry_then_ok().settled().events;
    let count = events.len() as u64;
    tokio::task::spawn_blocking(move || append(&url, &as_run(events, Uuid::now_v7())))
        .await
        .expect("append");
    (served, count)
}

/// `imx serve --signing-key` signs the log as it grows into the witness
/// file and the store; the store then verifies as proven (exit 0).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imx_serve_signs_checkpoints_into_the_witness_file() {
    let folder = tempfile::tempdir().expect("a temp folder");
    let key = path_in(&folder, "log.key");
    let witness = path_in(&folder, "witness");
    let generated = imx(&["keys", "generate", "--out", &key]);
    assert_eq!(generated.code, 0, "{}", generated.stderr);
    let refused = imx(&["keys", "generate", "--out", &key]);
    assert_ne!(refused.code, 0, "an existing key file is never overwritten");
    let (served, count) =
        signing_server("checkpoints", &key, &["--checkpoint-file", &witness]).await;
    let sized = format!("\n{count}\n");
    testkit::poll::until_some("a checkpoint of the log", crate::api::WAIT, || {
        let witness = witness.clone();
        let sized = sized.clone();
        async move {
            let text = std::fs::read_to_string(&witness).ok()?;
            text.contains(&sized).then_some(())
        }
    })
    .await;
    let url = served.url.clone();
    served.stop().await;
    let public = format!("{key}.pub");
    for from in [
        vec!["--database-url", &url],
        vec!["--database-url", &url, "--checkpoints", &witness],
    ] {
        let mut args = vec!["replay", "verify", "--trusted-keys", &public];
        args.extend(from);
        let verified = imx(&args);
        assert_eq!(verified.code, 0, "{}{}", verified.stdout, verified.stderr);
        assert!(
            verified
                .stdout
                .contains(&format!("the history is proven through position {count}\n")),
            "{}",
            verified.stdout
        );
    }
    // Refused before anything starts (no store is opened or created).
    let unsigned = imx(&[
        "serve",
        "--database-url",
        "sqlite:///nonexistent/imx.db",
        "--checkpoint-file",
        &witness,
    ]);
    assert_eq!(unsigned.code, 1, "{}", unsigned.stderr);
    assert!(
        unsigned.stderr.contains(
            "--checkpoint-file, --checkpoint-url and --checkpoint-topic need --signing-key"
        ),
        "{}",
        unsigned.stderr
    );
}

/// `imx serve --checkpoint-topic` publishes every checkpoint to a real
/// Kafka-protocol broker, and `imx replay verify --checkpoints-topic` reads
/// them back to prove an export; the topic needs the brokers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imx_serve_publishes_checkpoints_to_a_witness_topic_that_verify_reads() {
    let Some(brokers) = testkit::kafka::brokers() else {
        return;
    };
    let topic = crate::kafka::fresh_topic("checkpoints");
    crate::kafka::create_topic(&brokers, &topic, 1).await;
    let folder = tempfile::tempdir().expect("a temp folder");
    let key = path_in(&folder, "log.key");
    let export = path_in(&folder, "log.jsonl");
    let generated = imx(&["keys", "generate", "--out", &key]);
    assert_eq!(generated.code, 0, "{}", generated.stderr);
    let public = format!("{key}.pub");
    let witness = ["--kafka-brokers", &brokers, "--checkpoint-topic", &topic];
    let (served, count) = signing_server("checkpoint-topic", &key, &witness).await;
    let proven = format!("the history is proven through position {count}\n");
    let url = served.url.clone();
    testkit::poll::until_some(
        "the export proven by the topic's checkpoints",
        crate::api::WAIT,
        || {
            let (url, export, public, brokers, topic, proven) = (
                url.clone(),
                export.clone(),
                public.clone(),
                brokers.clone(),
                topic.clone(),
                proven.clone(),
            );
            async move {
                tokio::task::spawn_blocking(move || {
                    let exported = imx(&["replay", "export", "--database-url", &url]);
                    assert_eq!(exported.code, 0, "{}", exported.stderr);
                    std::fs::write(&export, exported.stdout).expect("write the export");
                    let verified = imx(&[
                        "replay",
                        "verify",
                        &export,
                        "--trusted-keys",
                        &public,
                        "--checkpoints-topic",
                        &topic,
                        "--kafka-brokers",
                        &brokers,
                    ]);
                    (verified.code == 0 && verified.stdout.contains(&proven)).then_some(())
                })
                .await
                .expect("verify")
            }
        },
    )
    .await;
    served.stop().await;
    let without_brokers = imx(&[
        "serve",
        "--database-url",
        "sqlite:///nonexistent/imx.db",
        "--signing-key",
        &key,
        "--checkpoint-topic",
        &topic,
    ]);
    assert_eq!(without_brokers.code, 1, "{}", without_brokers.stderr);
    assert!(
        without_brokers
            .stderr
            .contains("--checkpoint-topic needs --kafka-brokers"),
        "{}",
        without_brokers.stderr
    );
}

/// Runs `python3 docs/verify-export.py ARGS` from the repository's root.
fn python_verifier(args: &[&str]) -> crate::Outcome {
    let output = std::process::Command::new("python3")
        .arg("docs/verify-export.py")
        .args(args)
        .current_dir(crate::repo_root())
        .output()
        .expect("python3 runs");
    crate::Outcome {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Every vector of `docs/vectors/vectors.json` gets the answer the file
/// states, from `imx` and from the independent Python verifier alike.
#[test]
fn both_verifiers_answer_every_test_vector_as_stated() {
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(crate::repo_root().join("docs/vectors/vectors.json"))
            .expect("the manifest"),
    )
    .expect("JSON");
    let strings = |value: &serde_json::Value| -> Vec<String> {
        value
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|item| item.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let exports = manifest["exports"].as_array().expect("exports");
    assert!(exports.len() >= 10, "the vectors are all there");
    for vector in exports {
        let file = format!("docs/vectors/{}", vector["file"].as_str().expect("file"));
        let extra = strings(&vector["args"]);
        let mut args: Vec<&str> = vec![&file];
        args.extend(extra.iter().map(String::as_str));
        let exit = vector["exit"].as_i64().expect("exit") as i32;
        let mut imx_args = vec!["replay", "verify"];
        imx_args.extend(args.iter().copied());
        let ours = imx(&imx_args);
        assert_eq!(
            ours.code, exit,
            "imx on {vector}: {}{}",
            ours.stdout, ours.stderr
        );
        if let Some(code) = vector["code"].as_str() {
            assert!(
                ours.stderr.starts_with(&format!("verify failed: {code}: ")),
                "{vector}: {}",
                ours.stderr
            );
        }
        if let Some(code) = vector["error"].as_str() {
            assert!(
                ours.stderr.contains(&format!("{code}: ")),
                "{vector}: {}",
                ours.stderr
            );
        }
        if let Some(line) = vector["line"].as_u64() {
            assert!(
                ours.stderr.contains(&format!(" at line {line}: ")),
                "{vector}: {}",
                ours.stderr
            );
        }
        let theirs = python_verifier(&args);
        assert_eq!(
            theirs.code, exit,
            "Python on {vector}: {}{}",
            theirs.stdout, theirs.stderr
        );
        if let Some(line) = vector["python_line"].as_u64().or(vector["line"].as_u64()) {
            assert!(
                theirs.stdout.starts_with(&format!("line {line}: ")),
                "{vector}: {}",
                theirs.stdout
            );
        }
    }
    for vector in manifest["proofs"].as_array().expect("proofs") {
        let file = format!("docs/vectors/{}", vector["proof"].as_str().expect("proof"));
        let root = vector["root"].as_str().expect("root");
        let exit = vector["exit"].as_i64().expect("exit") as i32;
        let ours = imx(&["replay", "verify-proof", &file, "--root", root]);
        assert_eq!(
            ours.code, exit,
            "imx on {vector}: {}{}",
            ours.stdout, ours.stderr
        );
        let theirs = python_verifier(&["--proof", &file, "--root", root]);
        assert_eq!(
            theirs.code, exit,
            "Python on {vector}: {}{}",
            theirs.stdout, theirs.stderr
        );
    }
}

/// The path of `name` in `folder`, as the text a command line takes.
fn path_in(folder: &tempfile::TempDir, name: &str) -> String {
    folder.path().join(name).to_str().expect("UTF-8").to_owned()
}
