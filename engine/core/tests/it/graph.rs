//! DAG pictures: Mermaid and DOT text for authors.

use expect_test::{Expect, expect};
use imx_core::graph::{dot, mermaid};
use imx_core::workflow::Workflow;

use crate::version::{order_fulfilment, workflow_from_json};

fn check_mermaid(workflow: &Workflow, expected: Expect) {
    expected.assert_eq(&mermaid(workflow));
}

fn check_dot(workflow: &Workflow, expected: Expect) {
    expected.assert_eq(&dot(workflow));
}

#[test]
fn order_fulfilment_mermaid() {
    check_mermaid(
        &order_fulfilment(),
        expect![[r#"
        flowchart TD
            %% workflow: order-fulfilment
            n_fetch["fetch [http]"]
            n_charge["charge [http] if"]
            n_pack[["pack [agent] for_each"]]
            n_approve["approve [approval]"]
            n_ship["ship [workflow]"]
            n_cleanup["cleanup [noop]"]
            n_fetch --> n_charge
            n_fetch --> n_pack
            n_charge --> n_approve
            n_pack --> n_approve
            n_approve --> n_ship
            n_ship -->|all_done| n_cleanup
            classDef conditional stroke-dasharray: 5 5
            class n_charge conditional
    "#]],
    );
}

#[test]
fn order_fulfilment_dot() {
    check_dot(
        &order_fulfilment(),
        expect![[r#"
            digraph "order-fulfilment" {
                rankdir=TB;
                node [shape=box, fontname="Helvetica"];
                edge [fontname="Helvetica", fontsize=10];
                "fetch" [label="fetch [http]"];
                "charge" [label="charge [http] if", style=dashed];
                "pack" [label="pack [agent] for_each", shape=box3d];
                "approve" [label="approve [approval]"];
                "ship" [label="ship [workflow]"];
                "cleanup" [label="cleanup [noop]"];
                "fetch" -> "charge";
                "fetch" -> "pack";
                "charge" -> "approve";
                "pack" -> "approve";
                "approve" -> "ship";
                "ship" -> "cleanup" [label="all_done"];
            }
        "#]],
    );
}

/// A workflow from `(id, uses, needs, trigger_rule)` rows.
fn workflow(steps: &[(&str, &str, &[&str], &str)]) -> Workflow {
    let steps: serde_json::Map<String, serde_json::Value> = steps
        .iter()
        .map(|(id, uses, needs, rule)| {
            let step = serde_json::json!({
                "id": id, "uses": uses, "needs": needs, "trigger_rule": rule,
                "retry": {"max_attempts": 1, "backoff": "fixed", "initial_interval_ms": 1,
                          "max_interval_ms": 1, "multiplier": 1.0, "jitter": 0.0}
            });
            ((*id).to_owned(), step)
        })
        .collect();
    workflow_from_json(&serde_json::json!({"name": "edge-cases", "steps": steps}).to_string())
}

#[test]
fn every_non_default_trigger_rule_labels_the_edges_into_its_step() {
    let rules = workflow(&[
        ("a", "noop", &[], "all_success"),
        ("b", "fail", &[], "all_success"),
        ("done", "noop", &["a", "b"], "all_done"),
        ("failed", "noop", &["b"], "one_failed"),
        ("clean", "noop", &["a"], "none_failed"),
    ]);
    check_mermaid(
        &rules,
        expect![[r#"
            flowchart TD
                %% workflow: edge-cases
                n_a["a [noop]"]
                n_b["b [fail]"]
                n_clean["clean [noop]"]
                n_done["done [noop]"]
                n_failed["failed [noop]"]
                n_a -->|none_failed| n_clean
                n_a -->|all_done| n_done
                n_b -->|all_done| n_done
                n_b -->|one_failed| n_failed
        "#]],
    );
}

#[test]
fn ids_that_are_keywords_or_hold_punctuation_are_made_safe() {
    // `end` breaks a Mermaid flowchart and ids starting with `o`/`x` read as
    // edge markers; `.`/`-` are legal step id characters but not Mermaid ids.
    let tricky = workflow(&[
        ("end", "noop", &[], "all_success"),
        ("o-x", "noop", &["end"], "all_success"),
        ("a.b_c", "noop", &["o-x"], "all_success"),
        ("a_b.c", "noop", &["o-x"], "all_success"),
    ]);
    check_mermaid(
        &tricky,
        expect![[r#"
            flowchart TD
                %% workflow: edge-cases
                n_end["end [noop]"]
                n_o_hx["o-x [noop]"]
                n_a_db__c["a.b_c [noop]"]
                n_a__b_dc["a_b.c [noop]"]
                n_end --> n_o_hx
                n_o_hx --> n_a_db__c
                n_o_hx --> n_a__b_dc
        "#]],
    );
}

#[test]
fn quotes_and_brackets_in_ids_are_escaped() {
    // The DSL forbids these ids, but a model built in code may hold anything:
    // the pictures must still be well-formed.
    let odd = workflow(&[
        ("say \"hi\"", "noop", &[], "all_success"),
        ("x[1]|{y}#", "noop", &["say \"hi\""], "all_success"),
        ("back\\slash", "noop", &["x[1]|{y}#"], "all_success"),
    ]);
    check_mermaid(
        &odd,
        expect![[r#"
            flowchart TD
                %% workflow: edge-cases
                n_say_u20__u22_hi_u22_["say #34;hi#34; [noop]"]
                n_x_u5b_1_u5d__u7c__u7b_y_u7d__u23_["x[1]#124;#123;y#125;#35; [noop]"]
                n_back_u5c_slash["back\slash [noop]"]
                n_say_u20__u22_hi_u22_ --> n_x_u5b_1_u5d__u7c__u7b_y_u7d__u23_
                n_x_u5b_1_u5d__u7c__u7b_y_u7d__u23_ --> n_back_u5c_slash
        "#]],
    );
    check_dot(
        &odd,
        expect![[r#"
            digraph "edge-cases" {
                rankdir=TB;
                node [shape=box, fontname="Helvetica"];
                edge [fontname="Helvetica", fontsize=10];
                "say \"hi\"" [label="say \"hi\" [noop]"];
                "x[1]|{y}#" [label="x[1]|{y}# [noop]"];
                "back\\slash" [label="back\\slash [noop]"];
                "say \"hi\"" -> "x[1]|{y}#";
                "x[1]|{y}#" -> "back\\slash";
            }
        "#]],
    );
}

#[test]
fn unknown_needs_and_cycles_are_still_drawn() {
    // Validation rejects both; `imx graph` on a broken file should still show them.
    let broken = workflow(&[
        ("a", "noop", &["b"], "all_success"),
        ("b", "noop", &["a"], "all_success"),
        ("c", "noop", &["ghost"], "all_success"),
    ]);
    check_dot(
        &broken,
        expect![[r#"
            digraph "edge-cases" {
                rankdir=TB;
                node [shape=box, fontname="Helvetica"];
                edge [fontname="Helvetica", fontsize=10];
                "a" [label="a [noop]"];
                "b" [label="b [noop]"];
                "c" [label="c [noop]"];
                "ghost" [label="ghost [missing]", color=red, fontcolor=red];
                "b" -> "a";
                "a" -> "b";
                "ghost" -> "c";
            }
        "#]],
    );
}

#[test]
fn needs_order_and_duplicates_do_not_change_the_picture() {
    let forward = workflow(&[
        ("a", "noop", &[], "all_success"),
        ("b", "noop", &[], "all_success"),
        ("c", "noop", &["a", "b"], "all_success"),
    ]);
    let backward = workflow(&[
        ("a", "noop", &[], "all_success"),
        ("b", "noop", &[], "all_success"),
        ("c", "noop", &["b", "a", "b"], "all_success"),
    ]);
    assert_eq!(mermaid(&forward), mermaid(&backward));
    assert_eq!(dot(&forward), dot(&backward));
}

#[test]
fn matrix_steps_fan_out_and_finally_steps_are_labelled() {
    let source = "name: g\nsteps:\n  build:\n    matrix: { os: [linux, macos] }\n    uses: noop\nfinally:\n  notify: { uses: noop }\n";
    let workflow = imx_core::dsl::parse(source).workflow.expect("valid");
    check_mermaid(
        &workflow,
        expect![[r#"
        flowchart TD
            %% workflow: g
            n_build[["build [noop] matrix"]]
            n_notify["notify [noop] finally"]
    "#]],
    );
}
