//! The DSL's JSON Schema (`schemas/workflow.schema.json`) against the example
//! workflows (all valid, together using every construct) and a set of broken
//! documents (each rejected for the intended reason).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use expect_test::expect;
use imx_core::template::{expression_references, template_references};
use imx_core::workflow::{StepKind, TriggerRule};
use serde_json::Value;

const SCHEMA_MODELINE: &str = "# yaml-language-server: $schema=../schemas/workflow.schema.json";

/// Names a template may start with (DESIGN.md, "Templates").
const SCOPE_ROOTS: [&str; 8] = [
    "input", "steps", "run", "vars", "item", "index", "matrix", "secrets",
];

pub(crate) fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(relative)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

/// The `*.yaml` files of a folder, sorted.
fn yaml_files(folder: &str) -> Vec<PathBuf> {
    let folder = repo_path(folder);
    let entries = std::fs::read_dir(&folder).unwrap_or_else(|err| panic!("{folder:?}: {err}"));
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("readable folder entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    files
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// A YAML document as JSON, the way an editor's schema check sees it.
pub(crate) fn load_yaml(path: &Path) -> Value {
    serde_saphyr::from_str(&read(path)).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

fn schema() -> Value {
    serde_json::from_str(&read(&repo_path("schemas/workflow.schema.json")))
        .expect("the schema is JSON")
}

fn validator() -> jsonschema::Validator {
    jsonschema::draft202012::new(&schema()).expect("the schema compiles")
}

/// Every schema violation in a document, one `path: message` per line.
fn violations(validator: &jsonschema::Validator, document: &Value) -> Vec<String> {
    validator
        .iter_errors(document)
        .map(|err| format!("{}: {err}", err.instance_path()))
        .collect()
}

fn examples() -> Vec<(String, Value)> {
    yaml_files("workflows")
        .iter()
        .map(|path| (file_name(path), load_yaml(path)))
        .collect()
}

#[test]
fn schema_is_a_valid_draft_2020_12_schema() {
    let schema = schema();
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    if let Err(err) = jsonschema::draft202012::meta::validate(&schema) {
        panic!("schema breaks the 2020-12 meta-schema: {err}");
    }
}

#[test]
fn every_example_workflow_satisfies_the_schema() {
    let validator = validator();
    let examples = examples();
    assert!(
        examples.len() >= 7,
        "expected the examples, found {examples:?}"
    );
    let problems: Vec<String> = examples
        .iter()
        .flat_map(|(file, document)| {
            violations(&validator, document)
                .into_iter()
                .map(move |line| format!("{file}: {line}"))
        })
        .collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn reformatted_version_fixture_satisfies_the_schema() {
    // Kept valid so that the version test the parser enables compares two valid files.
    let path = repo_path("engine/core/tests/fixtures/version/order-fulfilment.reformatted.yaml");
    let problems = violations(&validator(), &load_yaml(&path));
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_example_names_the_schema_and_is_named_after_its_file() {
    for path in yaml_files("workflows") {
        let text = read(&path);
        assert_eq!(text.lines().next(), Some(SCHEMA_MODELINE), "{path:?}");
        let name = load_yaml(&path)["name"].as_str().map(str::to_owned);
        assert_eq!(
            name.map(|name| format!("{name}.yaml")),
            Some(file_name(&path))
        );
    }
}

#[test]
fn broken_documents_are_rejected_for_the_intended_reason() {
    let validator = validator();
    let files = yaml_files("engine/core/tests/fixtures/schema-invalid");
    assert!(files.len() >= 10, "{files:?}");
    let mut report = String::new();
    for path in files {
        let problems = violations(&validator, &load_yaml(&path));
        assert!(!problems.is_empty(), "{path:?} was accepted");
        // The first two are enough to show why; if/then branches add echoes.
        for line in problems.iter().take(2) {
            report.push_str(&format!("{}: {line}\n", file_name(&path)));
        }
    }
    expect![[r#"
        bad-duration.yaml: /timeout: "30 seconds" does not match "^([0-9]+d)?([0-9]+h)?([0-9]+m)?([0-9]+s)?([0-9]+ms)?$"
        bad-name.yaml: /name: "Order Fulfilment" does not match "^[a-z0-9][a-z0-9_.-]*$"
        bad-need-id.yaml: /steps/a/needs: ["not an id"] is not valid under any of the schemas listed in the 'anyOf' keyword
        bad-retry.yaml: /defaults/retry/backoff: "linear" is not one of "fixed" or "exponential"
        bad-retry.yaml: /defaults/retry/jitter: 2 is greater than the maximum of 1
        bad-step-id.yaml: /steps: Additional properties are not allowed ('Fetch_Order' was unexpected)
        bad-trigger-rule.yaml: /steps/b/trigger_rule: "always" is not one of "all_success", "all_done" or 2 other candidates
        bad-trigger.yaml: /triggers/0: {"schedule":"0 0 2 * * *"} is not valid under any of the schemas listed in the 'oneOf' keyword
        bad-uses.yaml: /steps/a/uses: "shell" is not one of "noop", "fail" or 7 other candidates
        continue-on-error-not-bool.yaml: /steps/a/continue_on_error: "yes please" is not of type "boolean"
        http-without-url.yaml: /steps/a/with: "url" is a required property
        max-parallel-without-for-each.yaml: /steps/a: {"max_parallel":4,"uses":"noop"} is not valid under any of the schemas listed in the 'anyOf' keyword
        missing-name.yaml: : "name" is a required property
        missing-uses.yaml: /steps/a: "uses" is a required property
        no-steps.yaml: /steps: {} has less than 1 property
        sleep-without-duration.yaml: /steps/a: "with" is a required property
        step-id-too-long.yaml: /steps: "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" is longer than 64 characters
        unknown-retry-key.yaml: /steps/a/retry: Additional properties are not allowed ('attempts' was unexpected)
        unknown-step-key.yaml: /steps/a: Additional properties are not allowed ('depends_on' was unexpected)
        unknown-top-level-key.yaml: : Additional properties are not allowed ('stepz' was unexpected)
        webhook-without-secret.yaml: /triggers/0: {"webhook":{}} is not valid under any of the schemas listed in the 'oneOf' keyword
    "#]].assert_eq(&report);
}

/// Everything an example uses: `uses` kinds, trigger rules, trigger kinds and
/// the DSL keys at every level.
#[derive(Debug, Default)]
struct Usage {
    kinds: BTreeSet<String>,
    rules: BTreeSet<String>,
    keys: BTreeSet<String>,
    roots: BTreeSet<String>,
}

impl Usage {
    fn record(&mut self, document: &Value) {
        let Some(top) = document.as_object() else {
            return;
        };
        self.keys
            .extend(top.keys().map(|key| format!("workflow.{key}")));
        let defaults = &document["defaults"];
        self.record_keys("defaults", defaults);
        self.record_keys("retry", &defaults["retry"]);
        for trigger in document["triggers"].as_array().into_iter().flatten() {
            self.record_keys("trigger", trigger);
        }
        for step in ["steps", "finally"]
            .into_iter()
            .filter_map(|key| document[key].as_object())
            .flat_map(|s| s.values())
        {
            self.record_keys("step", step);
            self.record_keys("retry", &step["retry"]);
            self.kinds.extend(step["uses"].as_str().map(str::to_owned));
            self.rules
                .extend(step["trigger_rule"].as_str().map(str::to_owned));
            if let Some(backoff) = step["retry"]["backoff"].as_str() {
                self.keys.insert(format!("backoff.{backoff}"));
            }
        }
        if let Some(backoff) = defaults["retry"]["backoff"].as_str() {
            self.keys.insert(format!("backoff.{backoff}"));
        }
    }

    fn record_keys(&mut self, level: &str, value: &Value) {
        if let Some(fields) = value.as_object() {
            self.keys
                .extend(fields.keys().map(|key| format!("{level}.{key}")));
        }
    }
}

#[test]
fn examples_together_use_every_dsl_construct() {
    let mut usage = Usage::default();
    for (file, document) in examples() {
        usage.record(&document);
        for template in templates_of(&document) {
            let names =
                template_references(&template.text).unwrap_or_else(|err| panic!("{file}: {err}"));
            usage
                .roots
                .extend(names.iter().map(|name| root_of(name).to_owned()));
        }
    }
    let kinds: BTreeSet<String> = StepKind::ALL
        .iter()
        .map(|k| k.as_str().to_owned())
        .collect();
    assert_eq!(usage.kinds, kinds, "uses kinds");
    let rules: BTreeSet<String> = TriggerRule::ALL
        .iter()
        .map(|r| r.as_str().to_owned())
        .collect();
    assert_eq!(usage.rules, rules, "trigger rules");
    let roots: BTreeSet<String> = SCOPE_ROOTS.iter().map(|r| (*r).to_owned()).collect();
    assert_eq!(usage.roots, roots, "template scope roots");
    for backoff in ["fixed", "exponential"] {
        assert!(
            usage.keys.contains(&format!("backoff.{backoff}")),
            "{backoff}"
        );
    }
    let allowed = schema_keys();
    let unused: Vec<&String> = allowed.difference(&usage.keys).collect();
    assert!(unused.is_empty(), "no example uses {unused:?}");
}

/// Every key the schema allows, named as [`Usage`] records them.
fn schema_keys() -> BTreeSet<String> {
    let schema = schema();
    let mut keys = BTreeSet::new();
    let mut add = |level: &str, properties: &Value| {
        for key in properties.as_object().into_iter().flat_map(|p| p.keys()) {
            keys.insert(format!("{level}.{key}"));
        }
    };
    add("workflow", &schema["properties"]);
    add("defaults", &schema["properties"]["defaults"]["properties"]);
    add("retry", &schema["$defs"]["retry"]["properties"]);
    add("step", &schema["$defs"]["step"]["properties"]);
    for branch in schema["$defs"]["trigger"]["oneOf"]
        .as_array()
        .into_iter()
        .flatten()
    {
        add("trigger", &branch["properties"]);
    }
    assert!(keys.len() > 30, "schema layout changed: {keys:?}");
    keys
}

/// A template string or `if` expression found in a document.
struct Template {
    text: String,
    step: Option<String>,
}

fn root_of(name: &str) -> &str {
    name.split(['.', '[']).next().unwrap_or(name)
}

/// The strings that are rendered at run time: step `with` and `for_each`,
/// `output` and `if` (turned into a template so one check covers both).
fn templates_of(document: &Value) -> Vec<Template> {
    let mut found = Vec::new();
    let steps = document["steps"].as_object().into_iter().flatten();
    for (id, step) in steps {
        let mut strings = Vec::new();
        collect_strings(&step["with"], &mut strings);
        collect_strings(&step["for_each"], &mut strings);
        if let Some(condition) = step["if"].as_str() {
            strings.push(format!("{{{{ {condition} }}}}"));
        }
        found.extend(strings.into_iter().map(|text| Template {
            text,
            step: Some(id.clone()),
        }));
    }
    let mut strings = Vec::new();
    collect_strings(&document["output"], &mut strings);
    found.extend(
        strings
            .into_iter()
            .map(|text| Template { text, step: None }),
    );
    found
}

fn collect_strings(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(text) => out.push(text.clone()),
        Value::Array(items) => items.iter().for_each(|item| collect_strings(item, out)),
        Value::Object(fields) => fields
            .values()
            .for_each(|field| collect_strings(field, out)),
        _ => {}
    }
}

#[test]
fn example_templates_compile_and_read_only_what_is_in_scope() {
    let mut problems = Vec::new();
    for (file, document) in examples() {
        let steps = &document["steps"];
        for template in templates_of(&document) {
            let names = match template_references(&template.text) {
                Ok(names) => names,
                Err(err) => {
                    problems.push(format!("{file}: {err}"));
                    continue;
                }
            };
            for name in names {
                let root = root_of(&name);
                if !SCOPE_ROOTS.contains(&root) {
                    problems.push(format!("{file}: `{name}` is not in scope"));
                }
                // `item` and `index` only exist inside a fan-out.
                let has = |key: &str| {
                    template
                        .step
                        .as_ref()
                        .is_some_and(|id| steps[id].get(key).is_some())
                };
                if matches!(root, "item" | "index") && !has("for_each") && !has("matrix") {
                    problems.push(format!("{file}: `{name}` outside for_each"));
                }
                if root == "matrix" && !has("matrix") {
                    problems.push(format!("{file}: `{name}` outside a matrix step"));
                }
                let step = name.split('.').nth(1).unwrap_or_default();
                if root == "steps" && steps.get(step).is_none() {
                    problems.push(format!("{file}: `{name}` names no step"));
                }
            }
        }
        for (id, step) in steps.as_object().into_iter().flatten() {
            if let Some(condition) = step["if"].as_str()
                && let Err(err) = expression_references(condition)
            {
                problems.push(format!("{file}: step {id}: {err}"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn child_workflows_named_by_examples_exist() {
    let names: BTreeSet<String> = examples()
        .iter()
        .filter_map(|(_, document)| document["name"].as_str().map(str::to_owned))
        .collect();
    let mut children = 0;
    for (file, document) in examples() {
        let steps = document["steps"].as_object().cloned().unwrap_or_default();
        for (id, step) in steps {
            if step["uses"] == "workflow" {
                children += 1;
                let child = step["with"]["name"].as_str().unwrap_or_default();
                assert!(
                    names.contains(child),
                    "{file}: step {id} starts unknown `{child}`"
                );
            }
        }
    }
    assert!(children > 0, "no example starts a child workflow");
}

#[test]
fn example_input_schemas_compile_and_accept_their_rendered_cron_inputs() {
    let mut problems = Vec::new();
    for (file, document) in examples() {
        let validator = match jsonschema::draft202012::new(&document["input"]) {
            Ok(validator) => validator,
            Err(err) => {
                problems.push(format!("{file}: input schema: {err}"));
                continue;
            }
        };
        for trigger in document["triggers"].as_array().into_iter().flatten() {
            if trigger.get("cron").is_some() {
                // Rendered as the scheduler does, for one sample tick.
                let template = trigger.get("input").cloned().unwrap_or(Value::Null);
                let scope = serde_json::json!({
                    "trigger": { "id": "cron", "scheduled_at": "2027-03-28T00:30:00Z" }
                });
                let input = match imx_core::template::render(
                    &template,
                    &scope,
                    &imx_core::scope::NO_SECRETS,
                ) {
                    Ok(rendered) => rendered.value,
                    Err(error) => {
                        problems.push(format!("{file}: cron input does not render: {error}"));
                        continue;
                    }
                };
                let errors = violations(&validator, &input);
                problems.extend(
                    errors
                        .into_iter()
                        .map(|e| format!("{file}: cron input {e}")),
                );
            }
        }
        // An empty input must not pass where the examples need a base URL.
        let needs_base_url = document["input"]["properties"].get("base_url").is_some();
        if needs_base_url && validator.is_valid(&serde_json::json!({})) {
            problems.push(format!("{file}: the input schema accepts `{{}}`"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
