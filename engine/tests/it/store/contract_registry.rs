//! The store contract, part 3: the workflow registry (idempotent
//! registration, the latest version, a pinned version, listing, limits).

use engine::store::*;
use serde_json::json;

use super::{Database, Fixture};

fn version(name: &str, version: &str) -> NewWorkflow {
    NewWorkflow {
        name: name.to_owned(),
        version: version.to_owned(),
        source: format!("name: {name} # {version}\n"),
        model: json!({ "name": name, "v": version }),
    }
}

pub async fn registry_keeps_versions<S: EventStore>(database: Database) {
    let fixture = Fixture::<S>::open(database, StoreConfig::default()).await;
    let store = &fixture.store;
    assert_eq!(store.get_workflow("a", None).await.expect("get"), None);
    let first = store
        .register_workflow(version("a", "sha256:1"))
        .await
        .expect("register");
    assert_eq!(
        (first.name.as_str(), first.version.as_str()),
        ("a", "sha256:1")
    );
    // The manual clock does not move: "latest" must not depend on time.
    store
        .register_workflow(version("a", "sha256:2"))
        .await
        .expect("second version");
    store
        .register_workflow(version("b", "sha256:9"))
        .await
        .expect("other workflow");
    let latest = store
        .get_workflow("a", None)
        .await
        .expect("get")
        .expect("latest");
    assert_eq!(latest.version, "sha256:2");
    assert_eq!(latest.model, json!({"name": "a", "v": "sha256:2"}));
    // Registering v1 again writes no second row and makes it the latest.
    store
        .register_workflow(version("a", "sha256:1"))
        .await
        .expect("again");
    let latest = store
        .get_workflow("a", None)
        .await
        .expect("get")
        .expect("latest");
    assert_eq!(latest.version, "sha256:1");
    let pinned = store
        .get_workflow("a", Some("sha256:2"))
        .await
        .expect("get")
        .expect("pinned");
    assert_eq!(pinned.source, "name: a # sha256:2\n");
    assert_eq!(
        store
            .get_workflow("a", Some("sha256:7"))
            .await
            .expect("get"),
        None
    );
    let listed: Vec<(String, String)> = store
        .list_workflows()
        .await
        .expect("list")
        .into_iter()
        .map(|record| (record.name, record.version))
        .collect();
    let expected = [("a", "sha256:1"), ("a", "sha256:2"), ("b", "sha256:9")]
        .map(|(name, version)| (name.to_owned(), version.to_owned()));
    assert_eq!(listed, expected);
    // The newest of each name: v1 of `a` was registered again last.
    let newest = store
        .newest_workflow_versions()
        .await
        .expect("newest versions");
    let expected = [("a", "sha256:1"), ("b", "sha256:9")]
        .map(|(name, version)| (name.to_owned(), version.to_owned()));
    assert_eq!(newest, expected);
    let nameless = store.register_workflow(version("", "sha256:1")).await;
    assert!(
        matches!(nameless, Err(Error::InvalidRequest { .. })),
        "{nameless:?}"
    );
    let mut huge = version("c", "sha256:3");
    huge.source = "x".repeat(WORKFLOW_SOURCE_BYTES_MAX + 1);
    let refused = store.register_workflow(huge).await;
    assert!(
        matches!(refused, Err(Error::LimitExceeded { .. })),
        "{refused:?}"
    );
    assert_eq!(store.get_workflow("c", None).await.expect("get"), None);
}
