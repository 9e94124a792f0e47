//! `imx workflows register` and `imx workflows list` through the real
//! binary, on SQLite and on PostgreSQL: versions (new, unchanged, a new
//! version), children resolved against the store, and a refusal that
//! writes nothing.

use serde_json::Value;
use testkit::postgres::{ClusterUse, ScratchDatabase};

use crate::{Outcome, imx, repo_root};

const PARENT: &str = "name: parent\nsteps:\n  ship:\n    uses: workflow\n    with: { name: shipping, input: { order: a, base_url: \"https://carrier.test\" } }\n";

fn on(url: &str, args: &[&str]) -> Outcome {
    let mut all = vec!["--database-url", url];
    all.extend_from_slice(args);
    imx(&all)
}

fn listed(url: &str) -> Value {
    let outcome = on(url, &["workflows", "list", "--json"]);
    assert_eq!(outcome.code, 0, "{outcome:?}");
    serde_json::from_str(&outcome.stdout).expect("JSON")
}

fn shipping_source() -> String {
    std::fs::read_to_string(repo_root().join("workflows/shipping.yaml")).expect("example exists")
}

/// Registers a folder, again, then a changed file; lists after each.
fn register_then_list(url: &str, folder: &std::path::Path) {
    let empty = on(url, &["workflows", "list"]);
    assert_eq!(empty.code, 0, "{empty:?}");
    assert!(
        empty.stderr.contains("no workflows registered"),
        "{empty:?}"
    );

    std::fs::write(folder.join("shipping.yaml"), shipping_source()).expect("write");
    std::fs::write(folder.join("parent.yaml"), PARENT).expect("write");
    let dir = folder.to_str().expect("utf-8 path");
    let first = on(url, &["workflows", "register", dir, "--json"]);
    assert_eq!(first.code, 0, "{first:?}");
    let first: Value = serde_json::from_str(&first.stdout).expect("JSON");
    let changes: Vec<(&str, &str)> = first
        .as_array()
        .expect("a list")
        .iter()
        .map(|entry| {
            (
                entry["name"].as_str().unwrap(),
                entry["change"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(changes, [("parent", "new"), ("shipping", "new")]);

    let again = on(url, &["workflows", "register", dir]);
    assert_eq!(again.code, 0, "{again:?}");
    let lines: Vec<&str> = again.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{again:?}");
    assert!(
        lines
            .iter()
            .all(|line| line.split('\t').nth(2) == Some("unchanged")),
        "{again:?}"
    );

    let changed = shipping_source().replace(
        "description: Book a shipment",
        "description: Book one shipment",
    );
    std::fs::write(folder.join("shipping.yaml"), changed).expect("write");
    let file = folder.join("shipping.yaml");
    let newer = on(
        url,
        &["workflows", "register", file.to_str().expect("utf-8")],
    );
    assert_eq!(newer.code, 0, "{newer:?}");
    let fields: Vec<&str> = newer.stdout.trim().split('\t').collect();
    assert_eq!(
        (fields[0], fields[2]),
        ("shipping", "new_version"),
        "{newer:?}"
    );

    let list = listed(url);
    let rows: Vec<(&str, u64)> = list
        .as_array()
        .expect("a list")
        .iter()
        .map(|row| {
            (
                row["name"].as_str().unwrap(),
                row["versions"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(rows, [("parent", 1), ("shipping", 2)]);
    assert_eq!(
        list[1]["version"].as_str(),
        Some(fields[1]),
        "the newest version is listed"
    );
    let table = on(url, &["workflows", "list"]);
    assert!(
        table
            .stdout
            .starts_with("NAME\tVERSION\tVERSIONS\tREGISTERED\n"),
        "{table:?}"
    );

    // A registered workflow runs by name.
    let run = on(url, &["run", "parent"]);
    assert_eq!(run.code, 0, "{run:?}");
}

/// A parent whose child is only in the store resolves; a misspelt child and
/// an invalid file refuse the whole batch (exit 2), writing nothing.
fn refusals_write_nothing(url: &str, folder: &std::path::Path) {
    let child_dir = folder.join("child");
    let parent_dir = folder.join("parents");
    std::fs::create_dir_all(&child_dir).expect("mkdir");
    std::fs::create_dir_all(&parent_dir).expect("mkdir");
    std::fs::write(child_dir.join("shipping.yaml"), shipping_source()).expect("write");
    std::fs::write(
        parent_dir.join("bad.yaml"),
        PARENT
            .replace("name: shipping", "name: shiping")
            .replace("name: parent", "name: bad"),
    )
    .expect("write");
    std::fs::write(
        parent_dir.join("broken.yaml"),
        "name: broken\nsteps:\n  a: { uses: noop, timeout: PT5M }\n",
    )
    .expect("write");
    let parents = parent_dir.to_str().expect("utf-8");
    let refused = on(url, &["workflows", "register", parents]);
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(
        refused
            .stdout
            .contains("bad.yaml:5:19: error[IMX0036]: step `ship` runs the workflow `shiping`"),
        "{refused:?}"
    );
    assert!(
        refused
            .stdout
            .contains("broken.yaml:3:29: error[IMX0015]: `timeout` `PT5M` is an ISO-8601 duration"),
        "{refused:?}"
    );
    assert!(
        refused.stderr.contains("nothing was registered"),
        "{refused:?}"
    );
    assert_eq!(listed(url), Value::Array(Vec::new()));

    // The child registered first, a parent alone in its folder resolves it in the store.
    let child = on(
        url,
        &["workflows", "register", child_dir.to_str().expect("utf-8")],
    );
    assert_eq!(child.code, 0, "{child:?}");
    std::fs::remove_file(parent_dir.join("bad.yaml")).expect("rm");
    std::fs::remove_file(parent_dir.join("broken.yaml")).expect("rm");
    std::fs::write(parent_dir.join("parent.yaml"), PARENT).expect("write");
    let parent = on(url, &["workflows", "register", parents]);
    assert_eq!(parent.code, 0, "{parent:?}");
    assert_eq!(listed(url).as_array().map(Vec::len), Some(2));
}

#[test]
fn workflows_register_and_list_versions_on_sqlite() {
    let folder = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}/imx.db", folder.path().display());
    let files = folder.path().join("workflows");
    std::fs::create_dir(&files).expect("mkdir");
    register_then_list(&url, &files);
}

#[test]
fn workflows_register_refusals_write_nothing_on_sqlite() {
    let folder = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}/imx.db", folder.path().display());
    refusals_write_nothing(&url, folder.path());
}

#[test]
fn workflows_register_and_list_versions_on_postgres() {
    let Some(database) = ScratchDatabase::create_blocking(
        "imx workflows register",
        "imx_workflows",
        ClusterUse::Shared,
    ) else {
        return;
    };
    let folder = tempfile::tempdir().expect("temp dir");
    register_then_list(&database.url, folder.path());
}

#[test]
fn workflows_register_refusals_write_nothing_on_postgres() {
    let Some(database) = ScratchDatabase::create_blocking(
        "imx workflows register",
        "imx_workflows",
        ClusterUse::Shared,
    ) else {
        return;
    };
    let folder = tempfile::tempdir().expect("temp dir");
    refusals_write_nothing(&database.url, folder.path());
}
