//! The operator's flow over the wire: register, start (idempotent), watch a
//! run over graphql-transport-ws with a reconnect, approve, cancel, retry,
//! read events page by page and the state at any seq.

use engine::store::prelude::*;
use serde_json::{Value, json};

use crate::api::*;

const RUN_EVENTS: &str =
    "subscription($id: ID!, $after: Int!) { runEvents(runId: $id, afterSeq: $after) { seq type } }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_start_watch_approve_and_finish() {
    for url in database_urls() {
        let api = TestApi::start(&url, config(), true).await;
        let admin = api.api_key(&["admin"]).await;
        let (name, source) = named(APPROVAL_WORKFLOW, "approval");
        register(&api, &admin, &source).await;

        let data = api.data(&admin, "query($n: String!) { workflow(name: $n) { name version mermaid } workflows { name } }", json!({"n": name})).await;
        assert!(
            data["workflow"]["version"]
                .as_str()
                .is_some_and(|v| v.starts_with("sha256:")),
            "{data}"
        );
        assert!(
            data["workflow"]["mermaid"]
                .as_str()
                .is_some_and(|m| m.contains("approve")),
            "{data}"
        );
        assert!(
            data["workflows"]
                .as_array()
                .is_some_and(|all| all.iter().any(|w| w["name"] == name.as_str()))
        );

        // Idempotent start: the same key returns the same run.
        let first = api
            .data(
                &admin,
                START,
                json!({"workflow": name, "key": format!("key-{name}")}),
            )
            .await;
        let again = api
            .data(
                &admin,
                START,
                json!({"workflow": name, "key": format!("key-{name}")}),
            )
            .await;
        assert_eq!(first["startRun"]["created"], true);
        assert_eq!(again["startRun"]["created"], false);
        assert_eq!(
            first["startRun"]["run"]["id"],
            again["startRun"]["run"]["id"]
        );
        let run_id = first["startRun"]["run"]["id"]
            .as_str()
            .expect("an id")
            .to_owned();

        // Watch until the approval is requested, then drop the connection.
        let mut ws = Ws::connect(&api, &admin).await.expect("the socket opens");
        ws.subscribe("1", RUN_EVENTS, json!({"id": run_id, "after": 0}))
            .await;
        let mut seen: Vec<(u64, String)> = Vec::new();
        while !seen.iter().any(|(_, t)| t == "approval.requested") {
            let message = ws.next().await.expect("a message");
            assert_eq!(message["type"], "next", "{message}");
            let event = &message["payload"]["data"]["runEvents"];
            seen.push((
                event["seq"].as_u64().expect("seq"),
                event["type"].as_str().expect("type").to_owned(),
            ));
        }
        ws.close().await;

        // Approve while nobody listens; resume after the last seq seen.
        let last = seen.last().map(|(seq, _)| *seq).expect("some events");
        let approver = api.api_key(&["approver", "finance"]).await;
        let approved = api
            .data(&approver, "mutation($id: ID!) { approveStep(runId: $id, step: \"approve\", comment: \"ok\") { id } }", json!({"id": run_id}))
            .await;
        assert_eq!(approved["approveStep"]["id"], run_id.as_str());
        let mut ws = Ws::connect(&api, &admin).await.expect("the socket reopens");
        ws.subscribe("2", RUN_EVENTS, json!({"id": run_id, "after": last}))
            .await;
        loop {
            let message = ws.next().await.expect("a message");
            if message["type"] == "complete" {
                break;
            }
            assert_eq!(message["type"], "next", "{message}");
            let event = &message["payload"]["data"]["runEvents"];
            seen.push((
                event["seq"].as_u64().expect("seq"),
                event["type"].as_str().expect("type").to_owned(),
            ));
        }
        ws.close().await;
        let seqs: Vec<u64> = seen.iter().map(|(seq, _)| *seq).collect();
        let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
        assert_eq!(seqs, expected, "every event once, in order: {seen:?}");
        assert_eq!(
            seen.last().map(|(_, t)| t.as_str()),
            Some("run.succeeded"),
            "{seen:?}"
        );

        // The state at the approval request, replayed, and the final run.
        let at = seen
            .iter()
            .find(|(_, t)| t == "approval.requested")
            .map(|(s, _)| *s)
            .expect("requested");
        let snapshot = api
            .data(&admin, "query($id: ID!, $seq: Int!) { runAt(id: $id, seq: $seq) { seq status steps { id status approvalRequest } } }", json!({"id": run_id, "seq": at}))
            .await;
        assert_eq!(snapshot["runAt"]["status"], "WAITING", "{snapshot}");
        assert_eq!(snapshot["runAt"]["steps"][0]["id"], "approve");
        assert_eq!(
            snapshot["runAt"]["steps"][0]["approvalRequest"]["role"],
            "finance"
        );
        let done = wait_status(&api, &admin, &run_id, "SUCCEEDED").await;
        let ship = done["run"]["steps"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["id"] == "ship"))
            .cloned();
        assert_eq!(
            ship.map(|s| s["output"].clone()),
            Some(json!({"shipped": true}))
        );
        api.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_paginated_in_seq_order() {
    for url in database_urls() {
        let api = TestApi::start(&url, config(), true).await;
        let admin = api.api_key(&["admin"]).await;
        let (name, source) = named(NOOP_WORKFLOW, "noop");
        register(&api, &admin, &source).await;
        let run_id = start(&api, &admin, &name).await;
        wait_status(&api, &admin, &run_id, "SUCCEEDED").await;
        let query = "query($id: ID!, $after: String) { run(id: $id) { lastSeq events(first: 2, after: $after) { edges { cursor node { seq type } } pageInfo { hasNextPage endCursor } } } }";
        let mut after = Value::Null;
        let mut seqs = Vec::new();
        let last_seq = loop {
            let data = api
                .data(&admin, query, json!({"id": run_id, "after": after}))
                .await;
            let events = &data["run"]["events"];
            for edge in events["edges"].as_array().expect("edges") {
                seqs.push(edge["node"]["seq"].as_u64().expect("seq"));
            }
            if events["pageInfo"]["hasNextPage"] != true {
                break data["run"]["lastSeq"].as_u64().expect("lastSeq");
            }
            after = events["pageInfo"]["endCursor"].clone();
        };
        assert_eq!(seqs, (1..=last_seq).collect::<Vec<_>>());
        api.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_page_backward_from_the_newest_and_steps_are_read_by_id() {
    for url in database_urls() {
        let api = TestApi::start(&url, config(), true).await;
        let admin = api.api_key(&["admin"]).await;
        let (name, source) = named(NOOP_WORKFLOW, "back");
        register(&api, &admin, &source).await;
        let run_id = start(&api, &admin, &name).await;
        wait_status(&api, &admin, &run_id, "SUCCEEDED").await;
        let query = "query($id: ID!, $before: String) { run(id: $id) { lastSeq events(last: 2, before: $before) { edges { node { seq } } pageInfo { hasNextPage hasPreviousPage startCursor } } } }";
        let mut before = Value::Null;
        let mut pages = Vec::new();
        let last_seq = loop {
            let data = api
                .data(&admin, query, json!({"id": run_id, "before": before}))
                .await;
            let events = &data["run"]["events"];
            let seqs: Vec<u64> = events["edges"]
                .as_array()
                .expect("edges")
                .iter()
                .map(|edge| edge["node"]["seq"].as_u64().expect("seq"))
                .collect();
            assert_eq!(
                events["pageInfo"]["hasNextPage"],
                !pages.is_empty(),
                "only the first (newest) page has no later events"
            );
            pages.push(seqs);
            if events["pageInfo"]["hasPreviousPage"] != true {
                break data["run"]["lastSeq"].as_u64().expect("lastSeq");
            }
            before = events["pageInfo"]["startCursor"].clone();
        };
        assert!(last_seq > 4, "a run of several pages ({last_seq} events)");
        assert_eq!(
            pages[0],
            vec![last_seq - 1, last_seq],
            "`last` alone: the newest"
        );
        let walked: Vec<u64> = pages.into_iter().rev().flatten().collect();
        assert_eq!(walked, (1..=last_seq).collect::<Vec<_>>());

        let (status, body) = api
            .post(
                Some(&admin),
                "query($id: ID!) { run(id: $id) { events(first: 2, last: 2) { edges { cursor } } } }",
                json!({"id": run_id}),
            )
            .await;
        assert_eq!((status, code(&body)), (200, "VALIDATION".to_owned()));

        let data = api
            .data(
                &admin,
                r#"query($id: ID!) { run(id: $id) { all: steps { id } some: steps(ids: ["second", "nope"]) { id status output } } }"#,
                json!({"id": run_id}),
            )
            .await;
        assert_eq!(
            data["run"]["all"],
            json!([{"id": "first"}, {"id": "second"}])
        );
        assert_eq!(
            data["run"]["some"],
            json!([{"id": "second", "status": "SUCCEEDED", "output": {"value": 1}}]),
            "only the steps asked for; unknown ids left out"
        );
        api.stop().await;
    }
}

/// `Run.steps` reads a kept fold caught up with the new events only: the
/// same state while nothing was appended, the log's full fold after, and
/// a state a reader still holds is never changed under it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kept_run_state_catches_up_with_new_events_only() {
    for url in database_urls() {
        let api = TestApi::start(&url, config(), true).await;
        let admin = api.api_key(&["admin"]).await;
        let (name, source) = named(APPROVAL_WORKFLOW, "kept");
        register(&api, &admin, &source).await;
        let run_id = start(&api, &admin, &name).await;
        wait_status(&api, &admin, &run_id, "WAITING").await;
        let id = uuid::Uuid::parse_str(&run_id).expect("a run id");
        let states = imx_gateway::api::schema::StateCache::default();
        let waiting = states
            .current(&api.store, id, 100_000)
            .await
            .expect("the fold");
        let again = states
            .current(&api.store, id, 100_000)
            .await
            .expect("the fold");
        assert!(
            std::sync::Arc::ptr_eq(&waiting, &again),
            "nothing new: the kept state, not a new fold"
        );
        api.data(
            &admin,
            r#"mutation($id: ID!) { approveStep(runId: $id, step: "approve") { id } }"#,
            json!({"id": run_id}),
        )
        .await;
        wait_status(&api, &admin, &run_id, "SUCCEEDED").await;
        let ended = states
            .current(&api.store, id, 100_000)
            .await
            .expect("the fold");
        let log = api.store.read_stream(id, 0, 1_000).await.expect("the log");
        let envelopes: Vec<_> = log
            .iter()
            .map(|event| {
                engine::core::EventEnvelope::from_stored(
                    event.run_id,
                    event.seq,
                    &event.event_type,
                    event.schema_version,
                    &event.payload,
                )
                .expect("a stored event")
            })
            .collect();
        let replayed = engine::core::replay(&envelopes).expect("the log replays");
        assert_eq!(*ended, replayed, "caught up: the whole log's fold");
        assert!(
            waiting.seq < ended.seq,
            "the reader's earlier state kept its seq"
        );
        let limited = states.current(&api.store, id, 2).await;
        assert_eq!(
            limited.map(|_| ()).map_err(|error| error.code),
            Err(imx_gateway::api::error::Code::Limit),
            "past history_events_max: LIMIT"
        );
        api.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_and_retry_runs() {
    for url in database_urls() {
        let api = TestApi::start(&url, config(), true).await;
        let operator = api.api_key(&["operator"]).await;

        // Cancel a run waiting for approval.
        let (waiting, source) = named(APPROVAL_WORKFLOW, "cancel");
        register(&api, &operator, &source).await;
        let run_id = start(&api, &operator, &waiting).await;
        wait_status(&api, &operator, &run_id, "WAITING").await;
        let cancelled = api
            .data(
                &operator,
                "mutation($id: ID!) { cancelRun(id: $id, reason: \"not today\") { id } }",
                json!({"id": run_id}),
            )
            .await;
        assert_eq!(cancelled["cancelRun"]["id"], run_id.as_str());
        wait_status(&api, &operator, &run_id, "CANCELLED").await;
        let (status, body) = api
            .post(
                Some(&operator),
                "mutation($id: ID!) { cancelRun(id: $id) { id } }",
                json!({"id": run_id}),
            )
            .await;
        assert_eq!(
            (status, code(&body)),
            (200, "CONFLICT".to_owned()),
            "{body}"
        );

        // Retry a failed run: the failed step runs again, the successful one is kept.
        let (failing, source) = named(FAILING_WORKFLOW, "retry");
        register(&api, &operator, &source).await;
        let run_id = start(&api, &operator, &failing).await;
        wait_status(&api, &operator, &run_id, "FAILED").await;
        let retried = api
            .data(
                &operator,
                "mutation($id: ID!) { retryRun(id: $id) { id } }",
                json!({"id": run_id}),
            )
            .await;
        assert_eq!(retried["retryRun"]["id"], run_id.as_str());
        let done = wait_status(&api, &operator, &run_id, "FAILED").await;
        let types = api
            .data(&operator, "query($id: ID!) { run(id: $id) { events(first: 100) { edges { node { type payload } } } } }", json!({"id": run_id}))
            .await;
        let types: Vec<String> = types["run"]["events"]["edges"]
            .as_array()
            .expect("edges")
            .iter()
            .map(|edge| {
                format!(
                    "{} {}",
                    edge["node"]["type"].as_str().unwrap_or(""),
                    edge["node"]["payload"]["step"].as_str().unwrap_or("")
                )
            })
            .collect();
        let retry_at = types
            .iter()
            .position(|t| t.trim() == "run.retry_requested")
            .expect("a retry event");
        assert!(
            types[retry_at..].iter().any(|t| t == "step.failed boom"),
            "{types:?}"
        );
        assert!(
            !types[retry_at..].iter().any(|t| t.ends_with(" prepare")),
            "prepare is kept: {types:?}"
        );
        let prepare = done["run"]["steps"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["id"] == "prepare"))
            .cloned();
        assert_eq!(
            prepare.map(|s| s["output"].clone()),
            Some(json!({"ready": true}))
        );
        api.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_sources_come_back_as_structured_diagnostics() {
    let url = database_urls().remove(0);
    let api = TestApi::start(&url, config(), true).await;
    let operator = api.api_key(&["operator"]).await;
    let source = "name: broken\nsteps:\n  a:\n    uses: noop\n    needs: [missing]\n";
    let data = api
        .data(&operator, REGISTER, json!({"source": source}))
        .await;
    let result = &data["registerWorkflow"];
    assert_eq!(result["__typename"], "WorkflowRejected", "{data}");
    let first = &result["diagnostics"][0];
    assert!(
        first["code"].as_str().is_some_and(|c| c.starts_with("IMX")),
        "{first}"
    );
    assert_eq!(first["severity"], "error");
    assert_eq!(first["line"], 5, "{first}");
    assert!(first["column"].as_u64().is_some_and(|c| c > 0));
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_updates_follow_runs_of_a_workflow() {
    for url in database_urls() {
        let api = TestApi::start(&url, config(), true).await;
        let admin = api.api_key(&["admin"]).await;
        let (name, source) = named(APPROVAL_WORKFLOW, "updates");
        register(&api, &admin, &source).await;
        let (other, other_source) = named(NOOP_WORKFLOW, "other");
        register(&api, &admin, &other_source).await;
        let mut ws = Ws::connect(&api, &admin).await.expect("the socket opens");
        ws.subscribe(
            "u",
            "subscription($w: String!) { runUpdates(filter: {workflow: $w}) { event { type seq } run { id workflow status } } }",
            json!({"w": name}),
        )
        .await;
        // runUpdates starts "from now": wait until the server took the subscription.
        let mut first = None;
        let deadline = tokio::time::Instant::now() + WAIT;
        while first.is_none() {
            start(&api, &admin, &other).await;
            let run_id = start(&api, &admin, &name).await;
            let update =
                tokio::time::timeout(std::time::Duration::from_millis(500), ws.next()).await;
            if let Ok(Some(message)) = update {
                first = Some((run_id, message));
            }
            assert!(tokio::time::Instant::now() < deadline, "no update arrived");
        }
        let (_, message) = first.expect("an update");
        let update = &message["payload"]["data"]["runUpdates"];
        assert_eq!(update["run"]["workflow"], name.as_str(), "{message}");
        assert!(
            update["event"]["type"]
                .as_str()
                .is_some_and(|t| t.starts_with("run.")
                    || t.starts_with("step.")
                    || t.starts_with("approval."))
        );
        ws.close().await;
        api.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_events_of_unknown_and_finished_runs() {
    let url = database_urls().remove(0);
    let api = TestApi::start(&url, config(), true).await;
    let admin = api.api_key(&["admin"]).await;
    let (name, source) = named(NOOP_WORKFLOW, "ended");
    register(&api, &admin, &source).await;
    let run_id = start(&api, &admin, &name).await;
    let done = api
        .data(
            &admin,
            "query($id: ID!) { run(id: $id) { status lastSeq } }",
            json!({"id": run_id}),
        )
        .await;
    assert_eq!(
        done["run"]["status"], "SUCCEEDED",
        "noop runs end at start: {done}"
    );
    let last = done["run"]["lastSeq"].as_u64().expect("lastSeq");
    let mut ws = Ws::connect(&api, &admin).await.expect("the socket opens");
    ws.subscribe(
        "gone",
        RUN_EVENTS,
        json!({"id": "00000000-0000-7000-8000-000000000000", "after": 0}),
    )
    .await;
    let message = ws.next().await.expect("a message");
    // A resolver error arrives as a `next` with errors, then `complete`.
    assert_eq!(message["type"], "next", "{message}");
    assert_eq!(
        message["payload"]["errors"][0]["extensions"]["code"], "NOT_FOUND",
        "{message}"
    );
    let message = ws.next().await.expect("a message");
    assert_eq!(message["type"], "complete", "{message}");
    // Everything already seen: the stream completes at once.
    ws.subscribe("seen", RUN_EVENTS, json!({"id": run_id, "after": last}))
        .await;
    let message = ws.next().await.expect("a message");
    assert_eq!(
        (message["type"].as_str(), message["id"].as_str()),
        (Some("complete"), Some("seen")),
        "{message}"
    );
    // From the start: every event, then complete.
    ws.subscribe("all", RUN_EVENTS, json!({"id": run_id, "after": 0}))
        .await;
    let mut seqs = Vec::new();
    loop {
        let message = ws.next().await.expect("a message");
        if message["type"] == "complete" {
            break;
        }
        seqs.push(
            message["payload"]["data"]["runEvents"]["seq"]
                .as_u64()
                .expect("seq"),
        );
    }
    assert_eq!(seqs, (1..=last).collect::<Vec<_>>());
    ws.close().await;
    api.stop().await;
}
