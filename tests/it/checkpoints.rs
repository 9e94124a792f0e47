//! Signed checkpoints across a crash (issue #17): a node that signs
//! checkpoints (`--signing-key`, a witness file) aborts right after an
//! append's COMMIT, before any checkpoint covers that append; restarted,
//! it finishes the runs, takes the writer's lease back once it expires,
//! and the next checkpoints cover every event: the export verifies with
//! the public key and the witness file alone, proven to the log's end
//! (no event lost, no unprovable gap).

use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use e2e::checker::{self, Expect};
use e2e::cluster::{Cluster, NodeOptions};
use e2e::target::Target;
use engine::store::prelude::*;
use testkit::postgres::{ClusterUse, ScratchDatabase};

const RUNS: usize = 4;
/// How long any wait of the scenario may take on a loaded machine (the
/// checkpoint lease of the aborted node expires after 30 s first).
const WAIT_MS_MAX: u64 = 180_000;

const WORKFLOW: &str = r#"
name: e2e-checkpoints
input: { type: object, required: [target] }
steps:
  call:
    uses: http
    retry: { max_attempts: 10, backoff: fixed, initial_interval: 200ms }
    with: { method: POST, url: "{{ input.target }}/effect" }
  after:
    needs: [call]
    uses: noop
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_an_append_and_its_checkpoint_leaves_the_log_proven_to_its_end() {
    let _alone = e2e::one_at_a_time().await;
    let Some(database) =
        ScratchDatabase::create("the checkpoints", "imx_e2e_checkpoints", ClusterUse::Shared).await
    else {
        return;
    };
    let began = Instant::now();
    let url = database.url.clone();
    let target = Target::start().await;
    let folder = tempfile::tempdir().expect("temp dir");
    let path = |name: &str| folder.path().join(name).display().to_string();
    let (key, witness, file) = (path("log.key"), path("witness"), path("wf.yaml"));
    let generated = e2e::binary::run(&["keys", "generate", "--out", &key]);
    assert_eq!(generated.code, 0, "{generated:?}");
    std::fs::write(&file, WORKFLOW).expect("write the workflow");
    let acknowledged = e2e::load::start_runs_by_cli(&url, &file, &target.base, RUNS).await;
    let point = engine::failpoint::APPEND_AFTER_COMMIT;
    let options = NodeOptions {
        args: [
            "--signing-key",
            &key,
            "--checkpoint-file",
            &witness,
            "--checkpoint-every-events",
            "1",
            "--checkpoint-every-ms",
            "100",
        ]
        .map(str::to_owned)
        .to_vec(),
        env: vec![("FAILPOINTS".into(), format!("{point}=1*return"))],
        ..NodeOptions::default()
    };
    let within = Duration::from_millis(WAIT_MS_MAX);
    let mut cluster = Cluster::start(&url, 1, options).await;
    let aborted = testkit::poll::until_some("the node aborts after a COMMIT", within, || {
        let status = cluster.node_mut(0).and_then(|node| node.exited());
        async move { status }
    })
    .await;
    assert_eq!(aborted.signal(), Some(6), "ended by SIGABRT");
    cluster.reap(0).await;
    let store = engine::store::Store::connect(&url, Default::default())
        .await
        .expect("open the store");
    let at_crash = store.log_head().await.expect("the head").position;
    let signed_at_crash = store
        .latest_checkpoint()
        .await
        .expect("checkpoints")
        .map_or(0, |checkpoint| checkpoint.tree_size);
    assert!(
        signed_at_crash < at_crash,
        "the crash left events no checkpoint covers ({signed_at_crash} of {at_crash})"
    );
    cluster.options.env.clear();
    cluster.restart(0).await;
    let expect = Expect {
        acknowledged,
        within,
        all_succeed: true,
    };
    let report = checker::check(&url, &expect, &target).await;
    let head = store.log_head().await.expect("the head").position;
    testkit::poll::until_some("a checkpoint of the whole log", within, || {
        let store = &store;
        async move {
            let latest = store.latest_checkpoint().await.ok()??;
            (latest.tree_size == head).then_some(())
        }
    })
    .await;
    cluster.shutdown().await;
    let exported = e2e::binary::run(&["replay", "export", "--database-url", &url]);
    assert_eq!(exported.code, 0, "{}", exported.stderr);
    let export = path("log.jsonl");
    std::fs::write(&export, &exported.stdout).expect("write the export");
    let public = format!("{key}.pub");
    let verified = e2e::binary::run(&[
        "replay",
        "verify",
        &export,
        "--trusted-keys",
        &public,
        "--checkpoints",
        &witness,
    ]);
    assert_eq!(verified.code, 0, "{}{}", verified.stdout, verified.stderr);
    assert!(
        verified
            .stdout
            .contains(&format!("the history is proven through position {head}\n")),
        "{}",
        verified.stdout
    );
    e2e::figures(
        "checkpoints across a crash (#17)",
        &format!(
            "{RUNS} runs, 1 abort after a COMMIT at log position {at_crash} (checkpoints covered {signed_at_crash}), log of {head} events proven to its end by the witness file, {:.1} s; {report}",
            began.elapsed().as_secs_f64()
        ),
    );
}
