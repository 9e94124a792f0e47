//! Walking 1,000 runs with cursors while new runs keep arriving: every run
//! that existed when the walk began is seen exactly once, newest first.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{TimeDelta, Utc};
use engine::core::workflow::StepKind;
use engine::store::prelude::*;
use engine::store::{AppendRequest, NewEvent, ProjectionUpdate, RunRow, Store};
use serde_json::{Value, json};
use testkit::histories::{step, workflow};
use uuid::Uuid;

use crate::api::*;

/// `count` runs of `name` (just `run.started`), created at `base` + i/10 ms,
/// so that many share a timestamp and the run id breaks ties.
async fn seed_runs(
    store: &Store,
    name: &str,
    count: usize,
    base: chrono::DateTime<Utc>,
) -> Vec<Uuid> {
    let model = workflow(name, vec![step("only", StepKind::Noop)]);
    let mut ids = Vec::new();
    let mut requests = Vec::new();
    for i in 0..count {
        let run_id = engine::store::new_id();
        let at = base + TimeDelta::milliseconds((i / 10) as i64);
        let (started, _) = engine::core::start_run(
            &model,
            "sha256:seed",
            run_id,
            engine::core::run::Start::with_input(json!({"i": i})),
            at,
        );
        let (event_type, schema_version, payload) = started.event.to_payload();
        let mut request = AppendRequest::new(
            run_id,
            0,
            vec![NewEvent {
                event_type: event_type.to_owned(),
                schema_version,
                payload,
            }],
        );
        request.projection = ProjectionUpdate {
            run: Some(RunRow {
                run_id,
                workflow: name.to_owned(),
                version: "sha256:seed".to_owned(),
                status: "running".to_owned(),
                input: json!({"i": i}),
                output: None,
                error: None,
                parent_run_id: None,
                forked_from: None,
                idempotency_key: None,
                created_at: at,
                updated_at: at,
            }),
            steps: Vec::new(),
        };
        requests.push(request);
        ids.push(run_id);
    }
    for chunk in requests.chunks(500) {
        for result in store
            .append_batch(chunk.to_vec())
            .await
            .expect("the batch commits")
        {
            result.expect("each run appends");
        }
    }
    ids
}

const PAGE: &str = r#"query($w: String!, $after: String) {
  runs(filter: {workflow: $w}, first: 100, after: $after) {
    edges { cursor node { id createdAt } } pageInfo { hasNextPage endCursor } } }"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walking_1000_runs_sees_each_once_while_new_runs_arrive() {
    for url in database_urls() {
        let api = TestApi::start(&url, config(), false).await;
        let viewer = api.api_key(&["viewer"]).await;
        let name = format!("walk-{}", Uuid::now_v7().simple());
        let base = Utc::now() - TimeDelta::hours(1);
        let existing: HashSet<String> = seed_runs(&api.store, &name, 1_000, base)
            .await
            .into_iter()
            .map(|id| id.to_string())
            .collect();
        let store: Arc<Store> = api.store.clone();
        let mut seen = Vec::new();
        let mut after = Value::Null;
        let mut page = 0;
        loop {
            // New runs arrive between pages (newer than everything walked).
            seed_runs(&store, &name, 7, Utc::now() + TimeDelta::seconds(page)).await;
            let data = api
                .data(&viewer, PAGE, json!({"w": name, "after": after}))
                .await;
            let runs = &data["runs"];
            for edge in runs["edges"].as_array().expect("edges") {
                seen.push(edge["node"]["id"].as_str().expect("id").to_owned());
            }
            page += 1;
            if runs["pageInfo"]["hasNextPage"] != true {
                break;
            }
            after = runs["pageInfo"]["endCursor"].clone();
        }
        let unique: HashSet<String> = seen.iter().cloned().collect();
        assert_eq!(unique.len(), seen.len(), "a run was listed twice");
        let missed: Vec<&String> = existing.difference(&unique).collect();
        assert!(missed.is_empty(), "{} runs were missed", missed.len());
        // The first page may hold the 7 runs added before it; later ones never show up.
        assert!(seen.len() <= 1_007, "{} runs seen", seen.len());
        api.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_filters_and_bad_cursors() {
    let url = database_urls().remove(0);
    let api = TestApi::start(&url, config(), false).await;
    let viewer = api.api_key(&["viewer"]).await;
    let name = format!("window-{}", Uuid::now_v7().simple());
    let base = Utc::now() - TimeDelta::hours(2);
    seed_runs(&api.store, &name, 30, base).await; // 3 ms of runs, 10 per ms
    let query = r#"query($w: String!, $a: DateTime, $b: DateTime) {
      runs(filter: {workflow: $w, startedAfter: $a, startedBefore: $b}, first: 100) { edges { node { createdAt } } } }"#;
    let after = (base + TimeDelta::microseconds(500)).to_rfc3339();
    let before = (base + TimeDelta::microseconds(1_500)).to_rfc3339();
    let data = api
        .data(&viewer, query, json!({"w": name, "a": after, "b": before}))
        .await;
    assert_eq!(
        data["runs"]["edges"].as_array().map(Vec::len),
        Some(10),
        "only the runs of ms 1: {data}"
    );
    let (status, body) = api
        .post(
            Some(&viewer),
            PAGE,
            json!({"w": name, "after": "not-a-cursor"}),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (200, "VALIDATION".to_owned()),
        "{body}"
    );
    let (status, body) = api
        .post(
            Some(&viewer),
            "{ runs(first: 1000) { edges { cursor } } }",
            json!({}),
        )
        .await;
    assert_eq!(code(&body), "LIMIT", "{status} {body}");
    api.stop().await;
}

const BACK: &str = r#"query($w: String!, $before: String) {
  runs(filter: {workflow: $w}, last: 100, before: $before) {
    edges { cursor node { id } } pageInfo { hasPreviousPage startCursor } } }"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walking_backward_with_last_and_before_matches_the_forward_order() {
    for url in database_urls() {
        let api = TestApi::start(&url, config(), false).await;
        let viewer = api.api_key(&["viewer"]).await;
        let name = format!("back-{}", Uuid::now_v7().simple());
        let base = Utc::now() - TimeDelta::hours(3);
        let ids = seed_runs(&api.store, &name, 250, base).await;
        // Forward: newest first.
        let mut forward = Vec::new();
        let mut after = Value::Null;
        loop {
            let data = api
                .data(&viewer, PAGE, json!({"w": name, "after": after}))
                .await;
            for edge in data["runs"]["edges"].as_array().expect("edges") {
                forward.push(edge["node"]["id"].as_str().expect("id").to_owned());
            }
            if data["runs"]["pageInfo"]["hasNextPage"] != true {
                break;
            }
            after = data["runs"]["pageInfo"]["endCursor"].clone();
        }
        // Backward from the oldest: pages of newer runs, each newest first.
        let mut pages = Vec::new();
        let mut before = Value::Null;
        loop {
            let data = api
                .data(&viewer, BACK, json!({"w": name, "before": before}))
                .await;
            let page: Vec<String> = data["runs"]["edges"]
                .as_array()
                .expect("edges")
                .iter()
                .map(|edge| edge["node"]["id"].as_str().expect("id").to_owned())
                .collect();
            pages.push(page);
            if data["runs"]["pageInfo"]["hasPreviousPage"] != true {
                break;
            }
            before = data["runs"]["pageInfo"]["startCursor"].clone();
        }
        let backward: Vec<String> = pages.into_iter().rev().flatten().collect();
        assert_eq!(forward.len(), ids.len());
        assert_eq!(
            backward, forward,
            "both directions list the same runs in the same order"
        );
        api.stop().await;
    }
}
