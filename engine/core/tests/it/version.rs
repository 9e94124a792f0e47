//! Workflow versions: stable under re-encoding, different after any semantic edit.

use expect_test::expect;
use imx_core::version::{canonical_form, is_version, version_of};
use imx_core::workflow::{Backoff, ForEach, TriggerRule, Workflow};
use serde_json::{Value, json};

/// The order-fulfilment example of DESIGN.md in the model's serde form.
pub(crate) const ORDER_FULFILMENT_JSON: &str =
    include_str!("../fixtures/order-fulfilment.workflow.json");

pub(crate) fn order_fulfilment() -> Workflow {
    workflow_from_json(ORDER_FULFILMENT_JSON)
}

pub(crate) fn workflow_from_json(text: &str) -> Workflow {
    match serde_json::from_str(text) {
        Ok(workflow) => workflow,
        Err(err) => panic!("fixture is not a Workflow: {err}\n{text}"),
    }
}

/// Asserts that two workflows share one version, showing both canonical forms
/// when they do not. Checking that reformatted YAML keeps its version is one
/// call: `assert_same_version(&parse(a).workflow.unwrap(), &parse(b).workflow.unwrap())`
/// with `a` = `workflows/order-fulfilment.yaml` and `b` =
/// `fixtures/version/order-fulfilment.reformatted.yaml` (same meaning, every
/// formatting freedom of YAML and the DSL used).
pub(crate) fn assert_same_version(left: &Workflow, right: &Workflow) {
    assert_eq!(
        version_of(left),
        version_of(right),
        "versions differ; canonical forms:\n{}\n{}",
        canonical_form(left),
        canonical_form(right)
    );
}

/// Asserts that an edit changed the version.
pub(crate) fn assert_different_version(left: &Workflow, right: &Workflow) {
    assert_ne!(
        version_of(left),
        version_of(right),
        "same version for different workflows:\n{}",
        canonical_form(left)
    );
}

/// JSON text of `value` with every object's keys in reverse order and odd spacing.
fn reversed_keys_json(value: &Value) -> String {
    match value {
        Value::Object(fields) => {
            let members: Vec<String> = fields
                .iter()
                .rev()
                .map(|(key, field)| format!("\n  {} :  {}", json!(key), reversed_keys_json(field)))
                .collect();
            format!("{{ {} }}", members.join(" ,"))
        }
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(reversed_keys_json).collect();
            format!("[ {} ]", items.join(" , "))
        }
        other => other.to_string(),
    }
}

#[test]
fn version_is_sha256_of_the_canonical_form() {
    let small = workflow_from_json(
        r#"{"name": "tiny", "steps": {"b": {"id": "b", "uses": "noop", "needs": ["a"],
            "retry": {"max_attempts": 1, "backoff": "fixed", "initial_interval_ms": 1000,
                      "max_interval_ms": 60000, "multiplier": 2.0, "jitter": 0.0}},
            "a": {"id": "a", "uses": "sleep", "with": {"duration": "1s"},
            "retry": {"max_attempts": 1, "backoff": "fixed", "initial_interval_ms": 1000,
                      "max_interval_ms": 60000, "multiplier": 1.5, "jitter": 0.25}}}}"#,
    );
    // Keys sorted, no whitespace, numbers in their shortest ECMAScript form.
    expect![[r#"{"name":"tiny","steps":{"a":{"id":"a","retry":{"backoff":"fixed","initial_interval_ms":1000,"jitter":0.25,"max_attempts":1,"max_interval_ms":60000,"multiplier":1.5},"uses":"sleep","with":{"duration":"1s"}},"b":{"id":"b","needs":["a"],"retry":{"backoff":"fixed","initial_interval_ms":1000,"jitter":0,"max_attempts":1,"max_interval_ms":60000,"multiplier":2},"uses":"noop"}}}"#]]
    .assert_eq(&canonical_form(&small));
    let version = version_of(&small);
    assert!(is_version(&version), "{version}");
    // Pinned: a change here changes the version of every registered workflow.
    expect!["sha256:15a5f4571501db2346eccdd77d96432a19ae5d3f23fb040758aaf1dd9d3f8759"]
        .assert_eq(&version);
}

#[test]
fn version_is_stable_under_key_reordering() {
    let original = order_fulfilment();
    let source: Value = serde_json::from_str(ORDER_FULFILMENT_JSON).expect("fixture is JSON");
    let reordered_text = reversed_keys_json(&source);
    assert_ne!(reordered_text, ORDER_FULFILMENT_JSON);
    let reordered = workflow_from_json(&reordered_text);
    assert_same_version(&original, &reordered);
}

#[test]
fn version_is_stable_across_serde_round_trips() {
    let original = order_fulfilment();
    let compact = serde_json::to_string(&original).expect("serialises");
    let pretty = serde_json::to_string_pretty(&original).expect("serialises");
    let once = workflow_from_json(&compact);
    let twice = workflow_from_json(&serde_json::to_string(&once).expect("serialises"));
    assert_same_version(&original, &once);
    assert_same_version(&original, &twice);
    assert_same_version(&original, &workflow_from_json(&pretty));
    assert_eq!(canonical_form(&original), canonical_form(&twice));
}

#[test]
fn version_is_stable_for_equal_float_spellings() {
    // `2`, `2.0` and `2e0` are one number: the canonical form writes `2`.
    let base = order_fulfilment();
    let text = ORDER_FULFILMENT_JSON.replace("\"multiplier\": 2.0", "\"multiplier\": 2e0");
    assert_ne!(text, ORDER_FULFILMENT_JSON);
    assert_same_version(&base, &workflow_from_json(&text));
}

type Edit = fn(&mut Workflow);

/// One semantic edit per entry; each must yield its own version.
const EDITS: &[(&str, Edit)] = &[
    ("needs added", |w| {
        step(w, "cleanup").needs.push("fetch".into())
    }),
    ("needs removed", |w| {
        step(w, "approve").needs.pop();
    }),
    ("retry max_attempts", |w| {
        step(w, "charge").retry.max_attempts = 6
    }),
    ("retry backoff", |w| {
        step(w, "charge").retry.backoff = Backoff::Fixed
    }),
    ("retry initial_interval", |w| {
        step(w, "charge").retry.initial_interval_ms = 2_000
    }),
    ("retry max_interval", |w| {
        step(w, "charge").retry.max_interval_ms = 120_000
    }),
    ("retry multiplier", |w| {
        step(w, "charge").retry.multiplier = 3.0
    }),
    ("retry jitter", |w| step(w, "charge").retry.jitter = 0.1),
    ("with value", |w| {
        step(w, "approve").with["role"] = json!("ops")
    }),
    ("with key added", |w| {
        step(w, "fetch").with["headers"] = json!({"accept": "json"})
    }),
    ("with template", |w| {
        step(w, "pack").with["payload"] = json!("{{ index }}")
    }),
    ("with number type", |w| {
        step(w, "cleanup").with = json!({"n": 1})
    }),
    ("if", |w| step(w, "charge").condition = Some("true".into())),
    ("if removed", |w| step(w, "charge").condition = None),
    ("for_each items", |w| {
        for_each(w).items = json!("{{ input.items }}")
    }),
    ("for_each max_parallel", |w| for_each(w).max_parallel = 4),
    ("trigger_rule", |w| {
        step(w, "cleanup").trigger_rule = TriggerRule::NoneFailed
    }),
    ("continue_on_error", |w| {
        step(w, "pack").continue_on_error = true
    }),
    ("step timeout", |w| {
        step(w, "ship").timeout_ms = Some(31_000)
    }),
    ("uses", |w| {
        step(w, "cleanup").uses = imx_core::workflow::StepKind::Sleep
    }),
    ("output", |w| {
        w.output = Some(json!({"tracking": "{{ steps.ship.output }}"}))
    }),
    ("output removed", |w| w.output = None),
    ("input schema", |w| {
        w.input = Some(json!({"type": "object", "required": ["order_id", "note"]}))
    }),
    ("description", |w| w.description = Some("Ship it".into())),
    ("run timeout", |w| w.timeout_ms = Some(7_200_000)),
    ("vars added", |w| {
        w.vars.insert("region".into(), json!("eu"));
    }),
    ("vars template", |w| {
        w.vars.insert("region".into(), json!("{{ input.region }}"));
    }),
    ("fail_fast", |w| step(w, "cleanup").fail_fast = Some(false)),
    ("matrix", |w| {
        step(w, "cleanup").matrix = Some(imx_core::workflow::Matrix {
            axes: vec![imx_core::workflow::MatrixAxis {
                name: "os".into(),
                values: json!(["linux"]),
            }],
            include: Vec::new(),
            exclude: Vec::new(),
            max_parallel: 16,
        })
    }),
    ("step moved under finally", |w| {
        step(w, "cleanup").finally = true
    }),
    ("trigger removed", |w| {
        w.triggers.pop();
    }),
    ("name", |w| w.name = "order-fulfilment-2".into()),
    ("step removed", |w| {
        w.steps.remove("cleanup");
    }),
];

fn step<'w>(workflow: &'w mut Workflow, id: &str) -> &'w mut imx_core::workflow::Step {
    workflow.steps.get_mut(id).expect("fixture has the step")
}

fn for_each(workflow: &mut Workflow) -> &mut ForEach {
    step(workflow, "pack")
        .for_each
        .as_mut()
        .expect("pack fans out")
}

#[test]
fn every_semantic_edit_changes_the_version() {
    let base = order_fulfilment();
    let mut seen = std::collections::BTreeMap::new();
    seen.insert(version_of(&base), "unedited");
    for (name, edit) in EDITS {
        let mut edited = base.clone();
        edit(&mut edited);
        assert_ne!(edited, base, "edit `{name}` changed nothing");
        assert_different_version(&base, &edited);
        if let Some(other) = seen.insert(version_of(&edited), name) {
            panic!("edits `{other}` and `{name}` share a version");
        }
    }
}

#[test]
fn model_fixture_mirrors_the_order_fulfilment_example() {
    // The JSON fixture is what the parser must make of the YAML example; the
    // parts written the same way in both must agree.
    use crate::schema::{load_yaml, repo_path};
    let yaml = load_yaml(&repo_path("workflows/order-fulfilment.yaml"));
    let model = order_fulfilment();
    assert_eq!(yaml["name"], json!(model.name));
    assert_eq!(yaml["description"], json!(model.description));
    assert_eq!(Some(&yaml["input"]), model.input.as_ref());
    assert_eq!(Some(&yaml["output"]), model.output.as_ref());
    let ids: Vec<&String> = model.steps.keys().collect();
    let yaml_ids: Vec<&String> = yaml["steps"].as_object().expect("steps").keys().collect();
    assert_eq!(ids, yaml_ids);
    for (id, step) in &model.steps {
        let written = &yaml["steps"][id];
        assert_eq!(written["uses"], json!(step.uses), "{id}");
        assert_eq!(
            written.get("with").unwrap_or(&Value::Null),
            &step.with,
            "{id}"
        );
        assert_eq!(
            written.get("needs").cloned().unwrap_or(json!([])),
            json!(step.needs),
            "{id}"
        );
        assert_eq!(
            written.get("if").cloned(),
            step.condition.clone().map(Value::from),
            "{id}"
        );
        let items = step
            .for_each
            .as_ref()
            .map(|for_each| for_each.items.clone());
        assert_eq!(written.get("for_each").cloned(), items, "{id}");
        let rule = written["trigger_rule"].as_str().unwrap_or("all_success");
        assert_eq!(rule, step.trigger_rule.as_str(), "{id}");
    }
}

#[test]
fn regression_output_of_null_changed_its_version_after_a_reload() {
    // `Some(null)` serialised as `"output": null` and reloaded as `None`.
    let mut workflow = order_fulfilment();
    workflow.output = Some(Value::Null);
    let reloaded = workflow_from_json(&serde_json::to_string(&workflow).expect("serialises"));
    assert_eq!(reloaded.output, None);
    assert_same_version(&workflow, &reloaded);
}

/// Arbitrary JSON trees, as `with` and `output` may hold.
fn arbitrary_json() -> impl proptest::strategy::Strategy<Value = Value> {
    use proptest::prelude::*;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-1.0e12f64..1.0e12).prop_map(Value::from),
        "[a-z{} ._\"\\\\é]{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            proptest::collection::btree_map("[a-zA-Z_é]{1,8}", inner, 0..6)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

proptest::proptest! {
    #[test]
    fn version_ignores_encoding_for_any_with_tree(with in arbitrary_json(), output in arbitrary_json()) {
        let mut workflow = order_fulfilment();
        step(&mut workflow, "cleanup").with = with;
        workflow.output = Some(output);
        let value = serde_json::to_value(&workflow).expect("serialises");
        let reordered = workflow_from_json(&reversed_keys_json(&value));
        proptest::prop_assert_eq!(version_of(&workflow), version_of(&reordered));
        // The canonical form is a fixed point: it parses back to the same workflow.
        let canonical = canonical_form(&workflow);
        let reparsed = workflow_from_json(&canonical);
        proptest::prop_assert_eq!(canonical_form(&reparsed), canonical);
    }

    #[test]
    fn version_sees_any_change_of_a_with_tree(a in arbitrary_json(), b in arbitrary_json()) {
        let mut left = order_fulfilment();
        let mut right = order_fulfilment();
        step(&mut left, "cleanup").with = a.clone();
        step(&mut right, "cleanup").with = b.clone();
        // Same JSON (numbers compared as numbers: `3` and `3.0` are one value).
        let same = serde_json_canonicalizer::to_string(&a).ok() == serde_json_canonicalizer::to_string(&b).ok();
        proptest::prop_assert_eq!(same, version_of(&left) == version_of(&right));
    }
}

fn parse_file(relative: &str) -> Workflow {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    let source = std::fs::read_to_string(&path).expect("fixture exists");
    let parsed = imx_core::dsl::parse(&source);
    parsed
        .workflow
        .unwrap_or_else(|| panic!("{relative} is valid: {:#?}", parsed.diagnostics))
}

#[test]
fn reformatted_yaml_keeps_its_version() {
    assert_same_version(
        &parse_file("../../workflows/order-fulfilment.yaml"),
        &parse_file("tests/fixtures/version/order-fulfilment.reformatted.yaml"),
    );
}

#[test]
fn a_semantic_yaml_edit_changes_the_version() {
    let original = parse_file("../../workflows/order-fulfilment.yaml");
    let source = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../workflows/order-fulfilment.yaml"),
    )
    .expect("example exists");
    let edited_source = source.replacen("max_attempts: 5", "max_attempts: 6", 1);
    assert_ne!(source, edited_source, "the example sets max_attempts: 5");
    let edited = imx_core::dsl::parse(&edited_source)
        .workflow
        .expect("edited example is valid");
    assert_different_version(&original, &edited);
}
