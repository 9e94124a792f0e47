//! `imx validate` and `imx graph` through the real binary: exit codes, the
//! `FILE:LINE:COL: error[CODE]` contract, and cross-file checks.

use expect_test::expect;

use crate::{imx, repo_root};

#[test]
fn validate_accepts_every_example_workflow_by_default() {
    let outcome = imx(&["validate"]);
    assert_eq!(outcome.code, 0, "stdout:\n{}", outcome.stdout);
    assert_eq!(outcome.stdout, "");
    assert!(outcome.stderr.contains("no problems"), "{}", outcome.stderr);
}

#[test]
fn validate_reports_every_problem_with_position_and_exits_1() {
    let outcome = imx(&[
        "validate",
        "engine/core/tests/fixtures/invalid/imx0013-cycle.yaml",
    ]);
    assert_eq!(outcome.code, 1);
    expect![[r#"
        engine/core/tests/fixtures/invalid/imx0013-cycle.yaml:4:13: error[IMX0013]: `needs` forms a cycle: a -> c -> b -> a
          hint: a step cannot wait for itself; remove one of these `needs` entries
        engine/core/tests/fixtures/invalid/imx0013-cycle.yaml:13:13: error[IMX0013]: `needs` forms a cycle: d -> d
          hint: a step cannot wait for itself; remove one of these `needs` entries
    "#]]
    .assert_eq(&outcome.stdout);
}

#[test]
fn validate_walks_folders_and_counts_problems_of_all_files() {
    let outcome = imx(&["validate", "engine/core/tests/fixtures/invalid"]);
    assert_eq!(outcome.code, 1);
    let files_with_errors = outcome
        .stdout
        .lines()
        .filter(|line| line.contains(": error["))
        .filter_map(|line| line.split(':').next())
        .collect::<std::collections::BTreeSet<_>>();
    let fixtures = std::fs::read_dir(repo_root().join("engine/core/tests/fixtures/invalid"))
        .expect("fixtures folder")
        .count();
    // Every fixture but the warning-only one has at least one error.
    assert_eq!(files_with_errors.len(), fixtures - 1, "{}", outcome.stdout);
}

#[test]
fn validate_rejects_two_files_with_the_same_workflow_name() {
    let guard = tempdir("duplicate-names");
    let dir = guard.path();
    let source = std::fs::read_to_string(repo_root().join("workflows/shipping.yaml"))
        .expect("example exists");
    std::fs::write(dir.join("a.yaml"), &source).expect("write");
    std::fs::write(dir.join("b.yml"), &source).expect("write");
    let outcome = imx(&["validate", dir.to_str().expect("utf-8 path")]);
    assert_eq!(outcome.code, 1);
    let line = outcome.stdout.lines().next().expect("one diagnostic");
    assert!(line.ends_with(&format!(
        "b.yml:1:1: error[IMX0034]: workflow name `shipping` is already used by {}",
        dir.join("a.yaml").display()
    )));
}

#[test]
fn validate_names_a_missing_path() {
    let outcome = imx(&["validate", "no/such/folder"]);
    assert_eq!(outcome.code, 1);
    assert!(
        outcome
            .stderr
            .contains("no/such/folder: no such file or folder"),
        "{}",
        outcome.stderr
    );
}

#[test]
fn validate_reports_a_file_that_is_not_utf8() {
    let guard = tempdir("not-utf8");
    let dir = guard.path();
    std::fs::write(dir.join("bad.yaml"), [0x6e, 0x61, 0xff, 0xfe]).expect("write");
    let outcome = imx(&[
        "validate",
        dir.join("bad.yaml").to_str().expect("utf-8 path"),
    ]);
    assert_eq!(outcome.code, 1);
    assert!(
        outcome
            .stdout
            .contains("bad.yaml:1:1: error[IMX0033]: file is not UTF-8 (byte 2)"),
        "{}",
        outcome.stdout
    );
}

/// A folder holding a copy of `workflows/shipping.yaml` and `parent.yaml`.
fn folder_with_shipping(name: &str, parent: &str) -> tempfile::TempDir {
    let guard = tempdir(name);
    let shipping = std::fs::read_to_string(repo_root().join("workflows/shipping.yaml"))
        .expect("example exists");
    std::fs::write(guard.path().join("shipping.yaml"), shipping).expect("write");
    std::fs::write(guard.path().join("parent.yaml"), parent).expect("write");
    guard
}

/// `outcome.stdout` with the folder's path shortened to `DIR`.
fn in_dir(stdout: &str, dir: &std::path::Path) -> String {
    stdout.replace(&dir.display().to_string(), "DIR")
}

#[test]
fn validate_reports_an_unknown_child_workflow_with_the_closest_name() {
    let parent = "name: parent\nsteps:\n  ship:\n    uses: workflow\n    with: { name: shiping, input: { order: a, base_url: \"https://x.test\" } }\n";
    let guard = folder_with_shipping("unknown-child", parent);
    let outcome = imx(&["validate", guard.path().to_str().expect("utf-8 path")]);
    assert_eq!(outcome.code, 1);
    expect![[r#"
        DIR/parent.yaml:5:19: error[IMX0036]: step `ship` runs the workflow `shiping`, which is not among the workflows checked
          hint: did you mean `shipping`?
    "#]].assert_eq(&in_dir(&outcome.stdout, guard.path()));
}

#[test]
fn validate_checks_a_child_input_against_the_child_schema_but_not_its_templates() {
    let parent = "name: parent\ninput: { type: object }\nsteps:\n  ship:\n    uses: workflow\n    with:\n      name: shipping\n      input:\n        order: 42\n        base_url: ftp://carrier.test\n  templated:\n    uses: workflow\n    with:\n      name: shipping\n      input: { order: \"{{ input.order }}\", base_url: \"{{ input.url }}\" }\n  missing:\n    uses: workflow\n    with: { name: shipping, input: { order: b, extra: 1 } }\n";
    let guard = folder_with_shipping("child-input", parent);
    let outcome = imx(&["validate", guard.path().to_str().expect("utf-8 path")]);
    assert_eq!(outcome.code, 1);
    expect![[r#"
        DIR/parent.yaml:9:16: error[IMX0037]: the `input` of step `ship` does not fit the `input` schema of workflow `shipping` at `/order`: 42 is not of type "string"
          hint: see `input:` in the file of `shipping`
        DIR/parent.yaml:10:19: error[IMX0037]: the `input` of step `ship` does not fit the `input` schema of workflow `shipping` at `/base_url`: "ftp://carrier.test" does not match "^https?://"
          hint: see `input:` in the file of `shipping`
        DIR/parent.yaml:18:36: error[IMX0037]: the `input` of step `missing` does not fit the `input` schema of workflow `shipping`: "base_url" is a required property
          hint: see `input:` in the file of `shipping`
        DIR/parent.yaml:18:36: error[IMX0037]: the `input` of step `missing` does not fit the `input` schema of workflow `shipping`: Additional properties are not allowed ('extra' was unexpected)
          hint: see `input:` in the file of `shipping`
    "#]].assert_eq(&in_dir(&outcome.stdout, guard.path()));
}

#[test]
fn validate_of_one_file_resolves_its_children_in_the_same_folder() {
    let outcome = imx(&["validate", "workflows/order-fulfilment.yaml"]);
    assert_eq!(outcome.code, 0, "{}", outcome.stdout);
    let guard = tempdir("lonely-parent");
    let parent = std::fs::read_to_string(repo_root().join("workflows/order-fulfilment.yaml"))
        .expect("example exists");
    std::fs::write(guard.path().join("order.yaml"), parent).expect("write");
    let file = guard.path().join("order.yaml");
    let outcome = imx(&["validate", file.to_str().expect("utf-8 path")]);
    assert_eq!(outcome.code, 1);
    expect![[r#"
        DIR/order.yaml:49:13: error[IMX0036]: step `ship` runs the workflow `shipping`, which is not among the workflows checked
          hint: the child must be among the files checked, beside a file checked, or (for `imx workflows register`) registered already; check them together: `imx validate FOLDER`
    "#]].assert_eq(&in_dir(&outcome.stdout, guard.path()));
}

#[test]
fn graph_draws_mermaid_by_default_and_dot_on_request() {
    let mermaid = imx(&["graph", "workflows/order-fulfilment.yaml"]);
    assert_eq!(mermaid.code, 0, "{}", mermaid.stderr);
    assert!(mermaid.stdout.starts_with("flowchart TD\n"));
    assert!(mermaid.stdout.contains("n_ship -->|all_done| n_cleanup"));
    assert!(mermaid.stdout.ends_with('\n'));

    let dot = imx(&[
        "graph",
        "workflows/order-fulfilment.yaml",
        "--format",
        "dot",
    ]);
    assert_eq!(dot.code, 0, "{}", dot.stderr);
    assert!(dot.stdout.starts_with("digraph"));
    assert!(
        dot.stdout.contains("\"fetch\" -> \"charge\""),
        "{}",
        dot.stdout
    );
}

#[test]
fn graph_of_an_invalid_workflow_prints_its_diagnostics() {
    let outcome = imx(&[
        "graph",
        "engine/core/tests/fixtures/invalid/imx0013-cycle.yaml",
    ]);
    assert_eq!(outcome.code, 1);
    assert!(
        outcome.stderr.contains("is not a valid workflow"),
        "{}",
        outcome.stderr
    );
    assert!(
        outcome.stderr.contains("error[IMX0013]"),
        "{}",
        outcome.stderr
    );
}

/// A fresh folder, deleted when the returned guard drops.
fn tempdir(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("imx-gateway-{name}-"))
        .tempdir()
        .expect("create temp dir")
}
