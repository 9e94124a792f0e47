//! The workflow registry's contract, on both backends: idempotent
//! registration, the latest version, a pinned version, listing.

use engine::store::{EventStore, NewWorkflow, Store};
use serde_json::json;

use super::both_backends;

both_backends!(registry: registry_keeps_versions);

fn version(name: &str, version: &str) -> NewWorkflow {
    NewWorkflow {
        name: name.to_owned(),
        version: version.to_owned(),
        source: format!("name: {name} # {version}\n"),
        model: json!({ "name": name, "v": version }),
    }
}

async fn registry_keeps_versions(url: &str) {
    let store = Store::connect(url, Default::default()).await.expect("open");
    assert_eq!(store.get_workflow("a", None).await.expect("get"), None);
    let first = store
        .register_workflow(version("a", "sha256:1"))
        .await
        .expect("register");
    assert_eq!(
        (first.name.as_str(), first.version.as_str()),
        ("a", "sha256:1")
    );
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
    let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    };
    assert_eq!(
        listed,
        pairs(&[("a", "sha256:1"), ("a", "sha256:2"), ("b", "sha256:9")])
    );
    let empty = store.register_workflow(version("", "sha256:1")).await;
    assert!(empty.is_err(), "a nameless workflow is refused");
}
