//! Properties of `dsl::parse` on hostile and random input: it never panics,
//! always answers within a bound, and a rejected source always says why.

use std::time::Duration;

use imx_core::dsl::{self, Code, Parsed};
use proptest::prelude::*;

/// Generous bound on the CPU time of one parse of adversarial input in a
/// debug build; the real figures are in the benchmark. CPU time of this
/// thread, not wall-clock time: the parse is bounded work, and a loaded
/// machine must not make it look unbounded (a 6.9 s wall-clock parse was
/// seen with the machine's two cores shared by four builds and a soak).
const PARSE_BOUND: Duration = Duration::from_secs(5);

/// The CPU time this thread has used.
fn thread_cpu_time() -> Duration {
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .expect("the thread's CPU clock");
    Duration::from(now)
}

fn parse_bounded(source: &str) -> Parsed {
    let started = thread_cpu_time();
    let parsed = dsl::parse(source);
    let elapsed = thread_cpu_time() - started;
    assert!(
        elapsed < PARSE_BOUND,
        "parse took {elapsed:?} of CPU time on {} bytes",
        source.len()
    );
    assert_consistent(&parsed);
    parsed
}

fn assert_consistent(parsed: &Parsed) {
    assert_eq!(parsed.workflow.is_some(), !parsed.has_errors());
    for diagnostic in &parsed.diagnostics {
        assert!(
            diagnostic.line >= 1 && diagnostic.column >= 1,
            "{diagnostic:?}"
        );
        assert!(!diagnostic.message.is_empty(), "{diagnostic:?}");
    }
}

fn assert_rejected_with(parsed: &Parsed, code: Code) {
    assert!(parsed.workflow.is_none());
    assert!(
        parsed
            .diagnostics
            .iter()
            .any(|diagnostic| diagnostic.code == code),
        "expected {code}, got {:#?}",
        parsed.diagnostics
    );
}

#[test]
fn ten_thousand_open_brackets_are_a_limit_diagnostic() {
    for opener in ["[", "{", "{a: ", "[{a: "] {
        let source = format!("name: deep\nsteps: {}", opener.repeat(10_000));
        assert_rejected_with(&parse_bounded(&source), Code::YamlLimit);
    }
}

#[test]
fn deep_block_nesting_is_a_limit_diagnostic() {
    let mut source = String::from("name: deep\nsteps:\n");
    for depth in 1..2_000 {
        source.push_str(&"  ".repeat(depth));
        source.push_str("k:\n");
    }
    let parsed = parse_bounded(&source);
    assert_rejected_with(&parsed, Code::YamlLimit);
}

#[test]
fn billion_laughs_is_a_limit_diagnostic() {
    let mut source =
        String::from("name: laughs\na0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for level in 1..10 {
        let previous = level - 1;
        let refs = vec![format!("*a{previous}"); 10].join(", ");
        source.push_str(&format!("a{level}: &a{level} [{refs}]\n"));
    }
    source.push_str("steps:\n  only:\n    uses: noop\n    with: *a9\n");
    assert_rejected_with(&parse_bounded(&source), Code::YamlLimit);
}

#[test]
fn many_aliases_of_one_small_anchor_are_bounded() {
    let mut source =
        String::from("name: aliases\nx: &x {a: 1}\nsteps:\n  only:\n    uses: noop\n    with: [");
    source.push_str(&vec!["*x"; 60_000].join(","));
    source.push_str("]\n");
    assert_rejected_with(&parse_bounded(&source), Code::YamlLimit);
}

#[test]
fn oversized_source_is_rejected_before_parsing() {
    let source = format!(
        "name: big\n# {}\nsteps: {{a: {{uses: noop}}}}\n",
        "x".repeat(dsl::SOURCE_BYTES_MAX)
    );
    assert_rejected_with(&parse_bounded(&source), Code::YamlLimit);
}

#[test]
fn more_steps_than_the_limit_is_one_diagnostic() {
    let mut source = String::from("name: wide\nsteps:\n");
    for index in 0..=dsl::STEPS_MAX {
        source.push_str(&format!("  s{index}: {{uses: noop}}\n"));
    }
    let parsed = parse_bounded(&source);
    assert_rejected_with(&parsed, Code::LimitExceeded);
    assert_eq!(parsed.diagnostics.len(), 1);
}

#[test]
fn a_long_needs_chain_is_checked_without_deep_recursion() {
    let mut source = String::from("name: chain\nsteps:\n  s0: {uses: noop}\n");
    for index in 1..dsl::STEPS_MAX {
        let previous = index - 1;
        source.push_str(&format!(
            "  s{index}: {{uses: noop, needs: [s{previous}], with: {{x: \"{{{{ steps.s{previous}.output }}}}\"}}}}\n"
        ));
    }
    let parsed = parse_bounded(&source);
    assert!(parsed.diagnostics.is_empty(), "{:#?}", parsed.diagnostics);
}

/// Words that steer random trees towards the DSL's own keys and values.
fn vocabulary() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("name".to_owned()),
        Just("steps".to_owned()),
        Just("uses".to_owned()),
        Just("needs".to_owned()),
        Just("with".to_owned()),
        Just("if".to_owned()),
        Just("for_each".to_owned()),
        Just("retry".to_owned()),
        Just("timeout".to_owned()),
        Just("triggers".to_owned()),
        Just("cron".to_owned()),
        Just("noop".to_owned()),
        Just("http".to_owned()),
        Just("1h30m".to_owned()),
        Just("{{ steps.a.output }}".to_owned()),
        Just("{{ item }}".to_owned()),
        Just("{{ broken".to_owned()),
        Just("a".to_owned()),
        Just("b".to_owned()),
        "[a-z_{}. ]{0,12}",
    ]
}

fn tree() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        vocabulary().prop_map(serde_json::Value::String),
    ];
    leaf.prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(vocabulary(), inner, 0..6)
                .prop_map(|map| serde_json::Value::Object(map.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_strings_never_panic(source in any::<String>()) {
        parse_bounded(&source);
    }

    #[test]
    fn yaml_ish_text_never_panics(source in "[a-z:\\-\\[\\]{}&*!|>'\"#%@ ,\\n]{0,300}") {
        parse_bounded(&source);
    }

    #[test]
    fn generated_trees_never_panic(tree in tree()) {
        // JSON is YAML: the same tree in flow style and in block style.
        parse_bounded(&tree.to_string());
        parse_bounded(&serde_json::to_string_pretty(&tree).unwrap_or_default());
    }

    #[test]
    fn damaged_copies_of_the_example_never_panic(cut in 0usize..2_000, length in 0usize..40, insert in "[\\[\\]{}:\\-&* \\n]{0,3}") {
        let example = include_str!("../../fixtures/valid/order-fulfilment.yaml");
        let start = example.char_indices().map(|(index, _)| index).find(|index| *index >= cut.min(example.len())).unwrap_or(example.len());
        let end = example.char_indices().map(|(index, _)| index).find(|index| *index >= start + length).unwrap_or(example.len());
        let damaged = format!("{}{insert}{}", &example[..start], &example[end..]);
        parse_bounded(&damaged);
    }
}

#[test]
fn huge_misspelt_names_are_reported_without_quadratic_suggestions() {
    let long = "q".repeat(dsl::SOURCE_BYTES_MAX - 200);
    let source = format!(
        "name: long\ntriggers:\n  - cron: \"0 0 2 * * *\"\n    timezone: {long}\nsteps:\n  a: {{ uses: noop }}\n"
    );
    assert_rejected_with(&parse_bounded(&source), Code::UnknownTimezone);
    // An explicit key: plain keys are limited to 1024 characters by YAML itself.
    let source = format!("name: long\n? {long}\n: 1\nsteps:\n  a: {{ uses: noop }}\n");
    assert_rejected_with(&parse_bounded(&source), Code::UnknownKey);
}

#[test]
fn a_flood_of_problems_is_cut_at_the_diagnostics_limit() {
    let mut source = String::from("name: flood\nsteps:\n");
    for index in 0..500 {
        source.push_str(&format!("  s{index}: {{ uses: nope }}\n"));
    }
    let parsed = parse_bounded(&source);
    assert_eq!(parsed.diagnostics.len(), dsl::DIAGNOSTICS_MAX);
    let last = parsed.diagnostics.last().expect("a note");
    assert_eq!(last.code, Code::LimitExceeded);
    assert!(
        last.message.starts_with("301 more problems"),
        "{}",
        last.message
    );
}
