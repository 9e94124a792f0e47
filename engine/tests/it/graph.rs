//! DAG pictures: Mermaid and DOT text for authors.

use engine::core::graph::{dot, mermaid};
use engine::core::workflow::Workflow;
use expect_test::{Expect, expect};

use crate::version::{order_fulfilment, workflow_from_json};

fn check_mermaid(workflow: &Workflow, expected: Expect) {
    expected.assert_eq(&mermaid(workflow));
}

fn check_dot(workflow: &Workflow, expected: Expect) {
    expected.assert_eq(&dot(workflow));
}

#[test]
fn order_fulfilment_mermaid() {
    check_mermaid(&order_fulfilment(), expect![[r#"
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
    "#]]);
}

#[test]
fn order_fulfilment_dot() {
    check_dot(&order_fulfilment(), expect![[r#"
        digraph "order-fulfilment" {
            rankdir=TB;
            node [shape=box, fontname="Helvetica"];
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
    "#]]);
}
