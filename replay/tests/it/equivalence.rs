//! Replay equivalence: the state `inspect` rebuilds from the store or from an
//! export equals the live state the runtime loop held, for every canned
//! history and driven example workflow, on SQLite and PostgreSQL.

use replay::inspect::{inspect_reader, inspect_store};
use replay::online::verify_store;
use replay::{Options, Scope, verify_reader};

use crate::driver::example_runs;
use crate::support::{
    Fixture, RunLog, append_runs, block_on, canned_runs, export_text, postgres, sqlite,
};

fn all_runs() -> Vec<RunLog> {
    let mut runs = canned_runs();
    runs.extend(example_runs());
    runs
}

async fn inspect_equals_live(fixture: &Fixture) {
    let runs = all_runs();
    append_runs(fixture, &runs, 3).await;
    let export = export_text(fixture, Scope::default()).await;
    let summary =
        verify_reader(export.as_bytes(), Options::default()).expect("the export verifies");
    assert_eq!(summary.runs, runs.len() as u64);
    let online = verify_store(&fixture.store, Options::default())
        .await
        .expect("read the store")
        .expect("the store verifies");
    assert_eq!(
        online.head, summary.head,
        "the store and its export end at one head"
    );
    for run in &runs {
        let run_id = run.events[0].run_id;
        let last = run.events.len() as u64;
        let from_store = inspect_store(&fixture.store, run_id, Some(last))
            .await
            .expect("inspect from the store");
        assert_eq!(
            from_store.state, run.live,
            "run {run_id} ({}) from the store",
            run.live.workflow
        );
        let from_file =
            inspect_reader(export.as_bytes(), run_id, None).expect("inspect from the export");
        assert_eq!(from_file.state, run.live, "run {run_id} from the export");
        assert_eq!(from_file.timeline.len() as u64, last);
        // Every earlier seq: the prefix folded by the core itself.
        for at in [1, last / 2, last.saturating_sub(1).max(1)] {
            let prefix = engine::core::replay(&run.events[..at as usize]).expect("a prefix folds");
            let inspected = inspect_store(&fixture.store, run_id, Some(at))
                .await
                .expect("inspect --at");
            assert_eq!(inspected.state, prefix, "run {run_id} at seq {at}");
        }
    }
}

#[test]
fn inspect_at_the_last_seq_equals_the_live_state_on_sqlite() {
    block_on(async { inspect_equals_live(&sqlite().await).await });
}

#[test]
fn inspect_at_the_last_seq_equals_the_live_state_on_postgres() {
    block_on(async {
        if let Some(fixture) = postgres().await {
            inspect_equals_live(&fixture).await;
        }
    });
}

#[test]
fn every_example_workflow_run_ends() {
    for run in example_runs() {
        assert!(
            run.live.is_finished(),
            "{} ended {:?}",
            run.live.workflow,
            run.live.status
        );
    }
}

#[test]
fn inspect_beyond_the_last_seq_is_an_error() {
    block_on(async {
        let fixture = sqlite().await;
        let runs = canned_runs();
        append_runs(&fixture, &runs[..1], 100).await;
        let run_id = runs[0].events[0].run_id;
        let at = runs[0].events.len() as u64 + 1;
        let error = inspect_store(&fixture.store, run_id, Some(at))
            .await
            .expect_err("beyond the end");
        assert!(
            error.to_string().contains("beyond the run's last seq"),
            "{error}"
        );
    });
}

#[test]
fn since_and_run_exports_verify_and_end_at_the_right_heads() {
    block_on(async {
        let fixture = sqlite().await;
        let runs = canned_runs();
        append_runs(&fixture, &runs, 3).await;
        let whole = verify_reader(
            export_text(&fixture, Scope::default()).await.as_bytes(),
            Options::default(),
        )
        .expect("the whole log verifies");
        assert!(whole.from_genesis);
        // Mid-log: the same head, fewer events, not from genesis.
        let since = whole.events / 2;
        let tail = export_text(&fixture, Scope { run: None, since }).await;
        let partial = verify_reader(
            tail.as_bytes(),
            Options {
                expect_head: Some(whole.head.clone()),
                ..Default::default()
            },
        )
        .expect("the tail verifies against the whole log's head");
        assert_eq!(
            (partial.events, partial.from_genesis),
            (whole.events - since, false)
        );
        // One run: its own chain from genesis, its head is its last hash.
        let run = &runs[3];
        let run_id = run.events[0].run_id;
        let one = export_text(
            &fixture,
            Scope {
                run: Some(run_id),
                since: 0,
            },
        )
        .await;
        let head = whole
            .run_heads
            .iter()
            .find(|head| head.run_id == run_id)
            .expect("the run's head");
        let summary = verify_reader(
            one.as_bytes(),
            Options {
                expect_head: Some(head.hash.clone()),
                ..Default::default()
            },
        )
        .expect("the run's export verifies");
        assert_eq!((summary.events, summary.runs), (run.events.len() as u64, 1));
        // Dropping the run's middle event is found at the next seq.
        let mut lines: Vec<&str> = one.lines().collect();
        lines.remove(3);
        let problem = verify_reader((lines.join("\n") + "\n").as_bytes(), Options::default())
            .expect_err("a gap");
        assert_eq!(
            (problem.run_id, problem.seq, problem.line),
            (Some(run_id), Some(4), Some(4))
        );
    });
}

#[test]
fn an_export_since_beyond_the_head_is_refused() {
    block_on(async {
        let fixture = sqlite().await;
        append_runs(&fixture, &canned_runs()[..1], 100).await;
        let mut out = Vec::new();
        let error = replay::export(
            &fixture.store,
            Scope {
                run: None,
                since: 1_000,
            },
            crate::support::start_time(),
            &mut out,
        )
        .await
        .expect_err("beyond the head");
        assert!(
            error.to_string().contains("beyond the log's last position"),
            "{error}"
        );
    });
}
