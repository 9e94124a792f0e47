//! The store contract, part 8: signed checkpoints. The writer signs the
//! log's head (Merkle root and log hash as the events say), appends the
//! note to the witness file before the database, signs nothing when the
//! log did not grow, and as a task checkpoints every N events and every T
//! ms; notes of a rotated key verify beside the old key's.

use std::sync::Arc;
use std::time::Duration;

use engine::checkpoint::{self, Config, PrivateKey, TrustedKey, Witness, split_notes, verify_note};
use engine::store::*;
use testkit::poll::until_some;

use super::contract::whole_log;
use super::contract_audit::{fill, mth, reference_leaves};
use super::{Database, Fixture};

fn config(key: PrivateKey, witness: &std::path::Path, every_events: u64, every_ms: u64) -> Config {
    Config {
        key: Arc::new(key),
        origin: "contract.example/log".to_owned(),
        every_events,
        every_ms,
        witnesses: vec![Witness::File(witness.to_owned())],
        holder: "node-a".to_owned(),
    }
}

fn witness_notes(path: &std::path::Path) -> Vec<String> {
    split_notes(&std::fs::read_to_string(path).expect("witness file"))
}

pub async fn checkpoints_sign_the_log_head_and_reach_the_witness_file<S: EventStore>(
    database: Database,
) {
    let fixture = Fixture::<S>::open(database, StoreConfig::default()).await;
    let store = fixture.store.as_ref();
    let folder = tempfile::tempdir().expect("temp dir");
    let witness = folder.path().join("witness.notes");
    let old_key = PrivateKey::from_seed("old-key", [7; 32]).expect("key");
    let old_public = old_key.public();
    let old = config(old_key, &witness, 1, 60_000);
    assert_eq!(
        checkpoint::checkpoint_once(store, &old)
            .await
            .expect("empty log"),
        None,
        "an empty log gets no checkpoint"
    );
    fill(store, 2, 10).await;
    let record = checkpoint::checkpoint_once(store, &old)
        .await
        .expect("checkpoint")
        .expect("a checkpoint of the grown log");
    let events = whole_log(store).await;
    let leaves = reference_leaves(store).await;
    assert_eq!(record.tree_size, 20);
    assert_eq!(record.log_hash, events[19].log_hash);
    assert_eq!(record.root, hex::encode(mth(&leaves)));
    assert_eq!(record.key_id, old_public.key_id);
    let verified = verify_note(&record.note, std::slice::from_ref(&old_public)).expect("verifies");
    assert_eq!(verified.checkpoint.tree_size, 20);
    assert_eq!(hex::encode(verified.checkpoint.root), record.root);
    assert_eq!(verified.checkpoint.origin, "contract.example/log");
    // The witness holds exactly the note; the store holds the same note.
    assert_eq!(witness_notes(&witness), vec![record.note.clone()]);
    assert_eq!(
        store.latest_checkpoint().await.expect("latest"),
        Some(record.clone())
    );
    assert_eq!(
        checkpoint::checkpoint_once(store, &old)
            .await
            .expect("again"),
        None,
        "a log that did not grow gets no second checkpoint"
    );

    // Rotation: a new key signs the grown log; both notes verify with both
    // keys trusted, and the old key alone does not vouch for the new note.
    fill(store, 1, 3).await;
    let new_key = PrivateKey::from_seed("new-key", [9; 32]).expect("key");
    let new_public = new_key.public();
    let rotated = config(new_key, &witness, 1, 60_000);
    let second = checkpoint::checkpoint_once(store, &rotated)
        .await
        .expect("checkpoint")
        .expect("a checkpoint of the grown log");
    assert_eq!(second.tree_size, 23);
    let notes = witness_notes(&witness);
    assert_eq!(notes, vec![record.note.clone(), second.note.clone()]);
    let both = [old_public.clone(), new_public.clone()];
    for note in &notes {
        verify_note(note, &both).expect("every note verifies with both keys trusted");
    }
    let only_old = verify_note(&second.note, std::slice::from_ref(&old_public)).unwrap_err();
    assert!(only_old.to_string().starts_with("IMX0873"), "{only_old}");
    let stored = store.checkpoints(0, 10).await.expect("checkpoints");
    assert_eq!(stored, vec![record, second]);
    // A verifier key is read back from its text.
    assert_eq!(
        TrustedKey::parse(&new_public.to_text()).expect("parse"),
        new_public
    );
}

pub async fn the_checkpoint_writer_signs_every_n_events_and_every_t_ms<S: EventStore + 'static>(
    database: Database,
) {
    let fixture = Fixture::<S>::open(database, StoreConfig::default()).await;
    let folder = tempfile::tempdir().expect("temp dir");
    let witness = folder.path().join("witness.notes");
    let key = PrivateKey::from_seed("writer", [3; 32]).expect("key");
    fill(fixture.store.as_ref(), 1, 12).await;
    // By count: 12 events ≥ every 5, the time limit far away.
    let writer = checkpoint::spawn(fixture.store.clone(), config(key, &witness, 5, 3_600_000));
    let store = fixture.store.clone();
    let size = until_some("a checkpoint by count", Duration::from_secs(20), || {
        let store = store.clone();
        async move {
            let latest = store.latest_checkpoint().await.expect("latest")?;
            Some(latest.tree_size)
        }
    })
    .await;
    assert_eq!(size, 12);
    // 3 more events are fewer than 5: no checkpoint by count, and none by
    // time within the hour; the writer stops cleanly.
    fill(fixture.store.as_ref(), 1, 3).await;
    writer.shutdown().await;
    assert_eq!(witness_notes(&witness).len(), 1);

    // By time: every_events far away, every 50 ms.
    let key = PrivateKey::from_seed("writer", [3; 32]).expect("key");
    let writer = checkpoint::spawn(fixture.store.clone(), config(key, &witness, 1_000_000, 50));
    let size = until_some("a checkpoint by time", Duration::from_secs(20), || {
        let store = store.clone();
        async move {
            let latest = store.latest_checkpoint().await.expect("latest")?;
            (latest.tree_size == 15).then_some(latest.tree_size)
        }
    })
    .await;
    writer.shutdown().await;
    assert_eq!(size, 15);
    assert_eq!(witness_notes(&witness).len(), 2);
}

/// A witness URL (a real HTTP server on loopback) gets each note before
/// the database; a witness that refuses it keeps the checkpoint out of the
/// database too.
pub async fn checkpoints_are_posted_to_a_witness_url_before_the_database<S: EventStore>(
    database: Database,
) {
    use axum::extract::State;
    use axum::http::StatusCode;
    type Received = Arc<std::sync::Mutex<Vec<String>>>;
    async fn keep(State(received): State<Received>, body: String) -> StatusCode {
        received.lock().expect("lock").push(body);
        StatusCode::CREATED
    }
    let fixture = Fixture::<S>::open(database, StoreConfig::default()).await;
    let store = fixture.store.as_ref();
    let received: Received = Arc::default();
    let app = axum::Router::new()
        .route("/witness", axum::routing::post(keep))
        .route(
            "/refuse",
            axum::routing::post(|| async { StatusCode::SERVICE_UNAVAILABLE }),
        )
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let folder = tempfile::tempdir().expect("temp dir");
    let key = || PrivateKey::from_seed("posted", [5; 32]).expect("key");
    fill(store, 1, 4).await;
    let mut refused = config(key(), &folder.path().join("w"), 1, 60_000);
    refused.witnesses = vec![Witness::Url(format!("http://{address}/refuse"))];
    let error = checkpoint::checkpoint_once(store, &refused)
        .await
        .unwrap_err();
    assert!(error.to_string().starts_with("IMX0874: "), "{error}");
    assert_eq!(store.latest_checkpoint().await.expect("latest"), None);
    let mut posted = config(key(), &folder.path().join("w"), 1, 60_000);
    posted.witnesses = vec![Witness::Url(format!("http://{address}/witness"))];
    let record = checkpoint::checkpoint_once(store, &posted)
        .await
        .expect("checkpoint")
        .expect("a checkpoint");
    assert_eq!(*received.lock().expect("lock"), vec![record.note.clone()]);
    assert_eq!(
        store.latest_checkpoint().await.expect("latest"),
        Some(record)
    );
    server.abort();
}

/// Two nodes run the writer: only the lease holder signs; when it stops,
/// the other takes over and its first checkpoint covers every event
/// appended meanwhile (nothing is left unsigned by the hand-over).
pub async fn one_node_signs_at_a_time_and_another_takes_over<S: EventStore + 'static>(
    database: Database,
) {
    let fixture = Fixture::<S>::open(database, StoreConfig::default()).await;
    let folder = tempfile::tempdir().expect("temp dir");
    let (witness_a, witness_b) = (folder.path().join("a"), folder.path().join("b"));
    let key = || PrivateKey::from_seed("nodes", [4; 32]).expect("key");
    let store = fixture.store.clone();
    let reaches = |size: u64| {
        let store = store.clone();
        until_some("a checkpoint", Duration::from_secs(20), move || {
            let store = store.clone();
            async move {
                let latest = store.latest_checkpoint().await.expect("latest")?;
                (latest.tree_size == size).then_some(())
            }
        })
    };
    fill(fixture.store.as_ref(), 1, 5).await;
    let a = checkpoint::spawn(fixture.store.clone(), config(key(), &witness_a, 1, 50));
    reaches(5).await;
    let mut second = config(key(), &witness_b, 1, 50);
    second.holder = "node-b".to_owned();
    let b = checkpoint::spawn(fixture.store.clone(), second);
    fill(fixture.store.as_ref(), 1, 3).await;
    reaches(8).await;
    assert!(
        !witness_b.exists(),
        "node b signed while node a held the lease"
    );
    a.shutdown().await;
    fill(fixture.store.as_ref(), 1, 2).await;
    reaches(10).await;
    b.shutdown().await;
    let sizes = |path: &std::path::Path| -> Vec<u64> {
        witness_notes(path)
            .iter()
            .map(|note| {
                verify_note(note, &[key().public()])
                    .expect("verifies")
                    .checkpoint
                    .tree_size
            })
            .collect()
    };
    assert_eq!(sizes(&witness_a).last(), Some(&8));
    // Node b signed only after node a let go (sizes past 8), up to 10.
    let signed_by_b = sizes(&witness_b);
    assert!(signed_by_b.iter().all(|size| *size > 8), "{signed_by_b:?}");
    assert_eq!(signed_by_b.last(), Some(&10));
}

/// A witness topic gets every note (key = origin, header = tree size)
/// before the database; a broker that does not answer fails the checkpoint
/// (IMX0874) and nothing is stored.
pub async fn checkpoints_are_published_to_a_witness_topic_before_the_database<S: EventStore>(
    database: Database,
) {
    let Some(brokers) = testkit::kafka::brokers() else {
        return;
    };
    let fixture = Fixture::<S>::open(database, StoreConfig::default()).await;
    let store = fixture.store.as_ref();
    let topic = format!("imx-checkpoints-{}", uuid::Uuid::now_v7().simple());
    testkit::kafka::create_topic(&brokers, &topic, 1, &[]).await;
    let folder = tempfile::tempdir().expect("temp dir");
    let key = || PrivateKey::from_seed("published", [6; 32]).expect("key");
    let trusted = key().public();
    fill(store, 1, 4).await;
    let mut unreachable = config(key(), &folder.path().join("w"), 1, 60_000);
    unreachable.witnesses = vec![Witness::Topic {
        brokers: crate::kafka::dead_broker(),
        topic: topic.clone(),
    }];
    let error = checkpoint::checkpoint_once(store, &unreachable)
        .await
        .unwrap_err();
    assert!(error.to_string().starts_with("IMX0874: "), "{error}");
    assert_eq!(store.latest_checkpoint().await.expect("latest"), None);
    let mut published = config(key(), &folder.path().join("w"), 1, 60_000);
    published.witnesses = vec![Witness::Topic {
        brokers: brokers.clone(),
        topic: topic.clone(),
    }];
    let record = checkpoint::checkpoint_once(store, &published)
        .await
        .expect("checkpoint")
        .expect("a checkpoint");
    let read = crate::kafka::read_back(&brokers, &topic, 0, 0).await;
    assert_eq!(read.value.as_deref(), Some(record.note.as_str()));
    assert_eq!(read.key.as_deref(), Some("contract.example/log"));
    assert_eq!(
        read.headers,
        vec![(checkpoint::TREE_SIZE_HEADER.to_owned(), "4".to_owned())]
    );
    let verified =
        verify_note(read.value.as_deref().expect("a note"), &[trusted]).expect("a trusted note");
    assert_eq!(verified.checkpoint.tree_size, 4);
    assert_eq!(
        store.latest_checkpoint().await.expect("latest"),
        Some(record)
    );
}
