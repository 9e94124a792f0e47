//! The `needs` graph at the limits (issue #13: 1,000 steps with 64 back-edge
//! `needs` each took 13.8 s and 795 MB to validate). The time is measured by
//! `cargo bench --bench validate` (docs/bench-validate.md); these tests pin
//! the named limits and that the largest shapes validate with the right
//! diagnostics, and bounded ones.

use imx_core::dsl::{self, Code};

/// `STEPS_MAX` steps, each needing the `NEEDS_MAX` steps before it; the last
/// reads the first (a transitive ancestor); with `cyclic`, the first step
/// also needs the last.
fn dense(cyclic: bool) -> String {
    let mut text = String::from("name: dense\nsteps:\n");
    let last = dsl::STEPS_MAX - 1;
    for step in 0..dsl::STEPS_MAX {
        text.push_str(&format!("  s{step}:\n    uses: noop\n"));
        let first = step.saturating_sub(dsl::NEEDS_MAX);
        let mut needs: Vec<String> = (first..step).map(|need| format!("s{need}")).collect();
        if cyclic && step == 0 {
            needs.push(format!("s{last}"));
        }
        if !needs.is_empty() {
            text.push_str(&format!("    needs: [{}]\n", needs.join(", ")));
        }
        if step == last {
            text.push_str("    with: { first: \"{{ steps.s0.output }}\" }\n");
        } else if step > 0 {
            text.push_str(&format!(
                "    with: {{ near: \"{{{{ steps.s{}.output }}}}\" }}\n",
                step - 1
            ));
        }
    }
    text
}

#[test]
fn the_named_graph_limits_cover_the_largest_workflow() {
    assert_eq!(dsl::STEPS_MAX, 1_000);
    assert_eq!(dsl::NEEDS_MAX, 64);
    assert_eq!(dsl::EDGES_MAX, 64_000);
    assert_eq!(dsl::CYCLES_REPORTED_MAX, 20);
    assert_eq!(dsl::HINTED_DIAGNOSTICS_MAX, dsl::DIAGNOSTICS_MAX);
}

#[test]
fn a_thousand_steps_with_64_back_edge_needs_each_validates() {
    let parsed = dsl::parse(&dense(false));
    assert!(parsed.diagnostics.is_empty(), "{:#?}", parsed.diagnostics);
    let workflow = parsed.workflow.expect("valid");
    let edges: usize = workflow.steps.values().map(|step| step.needs.len()).sum();
    assert_eq!(workflow.steps.len(), dsl::STEPS_MAX);
    assert_eq!(
        edges,
        dsl::STEPS_MAX * dsl::NEEDS_MAX - dsl::NEEDS_MAX * (dsl::NEEDS_MAX + 1) / 2
    );
}

#[test]
fn reading_a_step_that_is_not_upstream_is_still_found_in_the_dense_shape() {
    // s500 reads s501, which runs after it.
    let source = dense(false).replace(
        "near: \"{{ steps.s499.output }}\"",
        "near: \"{{ steps.s501.output }}\"",
    );
    let parsed = dsl::parse(&source);
    let codes: Vec<Code> = parsed.diagnostics.iter().map(|d| d.code).collect();
    assert_eq!(codes, [Code::StepNotUpstream], "{:#?}", parsed.diagnostics);
    assert!(
        parsed.diagnostics[0]
            .message
            .contains("step `s500` reads `steps.s501.output`")
    );
}

#[test]
fn a_cycle_through_a_dense_graph_is_reported_a_bounded_number_of_times() {
    let parsed = dsl::parse(&dense(true));
    let cycles = parsed
        .diagnostics
        .iter()
        .filter(|diagnostic| diagnostic.code == Code::Cycle)
        .count();
    assert!(
        (1..=dsl::CYCLES_REPORTED_MAX).contains(&cycles),
        "{cycles} cycles"
    );
    assert!(parsed.workflow.is_none());
}

#[test]
fn tens_of_thousands_of_unknown_needs_are_reported_within_the_diagnostics_limit() {
    let mut text = String::from("name: unknown\nsteps:\n");
    for step in 0..dsl::STEPS_MAX {
        let needs: Vec<String> = (0..dsl::NEEDS_MAX)
            .map(|need| format!("m{step}x{need}"))
            .collect();
        text.push_str(&format!(
            "  s{step}: {{ uses: noop, needs: [{}] }}\n",
            needs.join(", ")
        ));
    }
    let parsed = dsl::parse(&text);
    assert_eq!(parsed.diagnostics.len(), dsl::DIAGNOSTICS_MAX);
    let first = &parsed.diagnostics[0];
    assert_eq!(first.code, Code::UnknownNeed);
    // Hints list at most STEP_IDS_IN_HINT_MAX ids, then how many more.
    let hint = first
        .hint
        .as_deref()
        .expect("the first diagnostics have hints");
    assert!(
        hint.ends_with(&format!(
            "and {} more",
            dsl::STEPS_MAX - dsl::STEP_IDS_IN_HINT_MAX
        )),
        "{hint}"
    );
}
