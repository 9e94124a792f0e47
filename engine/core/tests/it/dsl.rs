//! The DSL parser and validator: one invalid fixture per diagnostic code,
//! a fixture with many errors, the design's example workflow, durations,
//! defaults, and properties (never panics, bounded on hostile input).

use std::path::PathBuf;

use expect_test::{Expect, expect};
use imx_core::dsl::{self, Code, Parsed, Severity};
use imx_core::workflow::StepKind;

mod fixtures;
mod fuzz;
mod graph_limits;
mod habits;
mod triggers;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn read_fixture(relative: &str) -> String {
    let path = fixtures().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

/// Every diagnostic rendered as the CLI prints it, one per line (hints indented).
pub(crate) fn rendered(parsed: &Parsed, file: &str) -> String {
    parsed
        .diagnostics
        .iter()
        .map(|diagnostic| diagnostic.render(file))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Parses `fixtures/invalid/<name>.yaml` and compares the rendered diagnostics.
pub(crate) fn check_fixture(name: &str, expect: Expect) {
    check_file(&format!("invalid/{name}.yaml"), expect);
}

/// Parses `fixtures/<file>` and compares the rendered diagnostics.
pub(crate) fn check_file(file: &str, expect: Expect) {
    let parsed = dsl::parse(&read_fixture(file));
    assert_eq!(parsed.workflow.is_some(), !parsed.has_errors(), "{file}");
    expect.assert_eq(&rendered(&parsed, file));
}

fn code_of_fixture(name: &str) -> Option<Code> {
    Code::ALL
        .iter()
        .copied()
        .find(|code| name.starts_with(&code.as_str().to_lowercase()))
}

#[test]
fn every_code_has_a_fixture_that_reports_it_and_a_page_in_errors_md() {
    let errors_md = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/errors.md"),
    )
    .expect("docs/errors.md");
    let mut names: Vec<String> = std::fs::read_dir(fixtures().join("invalid"))
        .expect("fixtures/invalid")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    for code in Code::ALL {
        assert!(
            errors_md.contains(&format!("## {code}")),
            "docs/errors.md has no section for {code}"
        );
        if !code.is_reported_by_parse() {
            continue; // file-set codes: tested through `imx validate` in gateway/tests
        }
        let name = names
            .iter()
            .find(|name| code_of_fixture(name) == Some(*code))
            .unwrap_or_else(|| panic!("no fixture for {code}"));
        let parsed = dsl::parse(&read_fixture(&format!("invalid/{name}")));
        assert!(
            parsed
                .diagnostics
                .iter()
                .any(|diagnostic| diagnostic.code == *code),
            "{name} does not report {code}: {:#?}",
            parsed.diagnostics
        );
        assert!(
            errors_md.contains(&format!("## {code}")),
            "docs/errors.md has no section for {code}"
        );
    }
}

#[test]
fn codes_are_stable_and_distinct() {
    let texts: Vec<&str> = Code::ALL.iter().map(|code| code.as_str()).collect();
    let expected: Vec<String> = (1..=Code::ALL.len())
        .map(|number| format!("IMX{number:04}"))
        .collect();
    assert_eq!(texts, expected);
    assert!(Code::ALL.iter().all(|code| !code.summary().is_empty()));
}

#[test]
fn several_different_errors_are_all_reported() {
    let parsed = dsl::parse(&read_fixture("invalid/several-errors.yaml"));
    assert!(parsed.workflow.is_none());
    expect![[r#"
        several-errors.yaml:1:7: error[IMX0008]: the workflow name `Several_Errors` must match `[a-z0-9][a-z0-9_.-]*`
          hint: use lowercase letters, digits, `_`, `.` and `-`, e.g. `several_errors`
        several-errors.yaml:2:10: error[IMX0015]: `timeout` must be a duration with a unit, found the number 90
          hint: write `90s` for seconds or `90ms` for milliseconds
        several-errors.yaml:4:11: error[IMX0017]: cron schedule `*/5 * * * *` has 5 fields; schedules start with a seconds field
          hint: prepend the seconds: `0 */5 * * * *`
        several-errors.yaml:7:11: error[IMX0010]: unknown step kind `htpp`
          hint: did you mean `http`?
        several-errors.yaml:10:20: error[IMX0012]: step `charge` needs `refund`, which is not a step
          hint: steps are: `charge`, `fetch`, `pack`, `ship`
        several-errors.yaml:11:9: error[IMX0021]: invalid `if` expression `steps.fetch.output.body.status ==`: syntax error: unexpected end of input, expected expression
        several-errors.yaml:14:28: error[IMX0016]: `max_attempts` is 500; it must be between 1 and 100
          hint: 1 means a single attempt, no retry
        several-errors.yaml:18:11: error[IMX0011]: `with` of step `pack` (uses agent) is missing the required key `queue`
        several-errors.yaml:18:22: error[IMX0025]: `item`: `item` is only in scope in `with` of a step with `for_each` or `matrix`
        several-errors.yaml:20:19: error[IMX0013]: `needs` forms a cycle: ship -> ship
          hint: a step cannot wait for itself; remove one of these `needs` entries
        several-errors.yaml:23:19: error[IMX0014]: unknown trigger rule `always`
          hint: expected one of: `all_success`, `all_done`, `one_failed`, `none_failed`"#]].assert_eq(&rendered(&parsed, "several-errors.yaml"));
    let mut codes: Vec<Code> = parsed
        .diagnostics
        .iter()
        .map(|diagnostic| diagnostic.code)
        .collect();
    codes.sort();
    codes.dedup();
    assert!(
        codes.len() >= 10,
        "only {} distinct codes: {codes:?}",
        codes.len()
    );
}

#[test]
fn the_design_example_parses_into_the_expected_model() {
    let parsed = dsl::parse(&read_fixture("valid/order-fulfilment.yaml"));
    assert_eq!(rendered(&parsed, "order-fulfilment.yaml"), "");
    let workflow = parsed.workflow.expect("a workflow");
    let canonical = serde_json_canonicalizer::to_string(&workflow).expect("canonical JSON");
    let tree: serde_json::Value = serde_json::from_str(&canonical).expect("JSON");
    expect![[r#"
        {
          "description": "Charge, pack and ship one order",
          "input": {
            "properties": {
              "order_id": {
                "type": "string"
              }
            },
            "required": [
              "order_id"
            ],
            "type": "object"
          },
          "name": "order-fulfilment",
          "output": {
            "tracking": "{{ steps.ship.output.tracking }}"
          },
          "steps": {
            "approve": {
              "id": "approve",
              "needs": [
                "charge",
                "pack"
              ],
              "retry": {
                "backoff": "exponential",
                "initial_interval_ms": 1000,
                "jitter": 0,
                "max_attempts": 3,
                "max_interval_ms": 60000,
                "multiplier": 2
              },
              "timeout_ms": 30000,
              "uses": "approval",
              "with": {
                "message": "Ship order {{ input.order_id }}?",
                "role": "finance"
              }
            },
            "charge": {
              "id": "charge",
              "if": "steps.fetch.output.body.status == \"unpaid\"",
              "needs": [
                "fetch"
              ],
              "retry": {
                "backoff": "exponential",
                "initial_interval_ms": 1000,
                "jitter": 0,
                "max_attempts": 5,
                "max_interval_ms": 60000,
                "multiplier": 2
              },
              "timeout_ms": 30000,
              "uses": "http",
              "with": {
                "json": {
                  "order": "{{ input.order_id }}"
                },
                "method": "POST",
                "url": "https://pay.example/charge"
              }
            },
            "cleanup": {
              "id": "cleanup",
              "needs": [
                "ship"
              ],
              "retry": {
                "backoff": "exponential",
                "initial_interval_ms": 1000,
                "jitter": 0,
                "max_attempts": 3,
                "max_interval_ms": 60000,
                "multiplier": 2
              },
              "timeout_ms": 30000,
              "trigger_rule": "all_done",
              "uses": "noop"
            },
            "fetch": {
              "id": "fetch",
              "retry": {
                "backoff": "exponential",
                "initial_interval_ms": 1000,
                "jitter": 0,
                "max_attempts": 3,
                "max_interval_ms": 60000,
                "multiplier": 2
              },
              "timeout_ms": 30000,
              "uses": "http",
              "with": {
                "method": "GET",
                "url": "https://shop.example/orders/{{ input.order_id }}"
              }
            },
            "pack": {
              "for_each": {
                "items": "{{ steps.fetch.output.body.items }}",
                "max_parallel": 16
              },
              "id": "pack",
              "needs": [
                "fetch"
              ],
              "retry": {
                "backoff": "exponential",
                "initial_interval_ms": 1000,
                "jitter": 0,
                "max_attempts": 3,
                "max_interval_ms": 60000,
                "multiplier": 2
              },
              "timeout_ms": 30000,
              "uses": "agent",
              "with": {
                "payload": "{{ item }}",
                "queue": "warehouse"
              }
            },
            "ship": {
              "id": "ship",
              "needs": [
                "approve"
              ],
              "retry": {
                "backoff": "exponential",
                "initial_interval_ms": 1000,
                "jitter": 0,
                "max_attempts": 3,
                "max_interval_ms": 60000,
                "multiplier": 2
              },
              "timeout_ms": 30000,
              "uses": "workflow",
              "with": {
                "input": {
                  "order": "{{ input.order_id }}"
                },
                "name": "shipping"
              }
            }
          },
          "timeout_ms": 3600000,
          "triggers": [
            {
              "cron": {
                "input": {
                  "order_id": "nightly"
                },
                "schedule": "0 0 2 * * *",
                "timezone": "Europe/Berlin"
              }
            },
            {
              "webhook": {
                "secret_env": "SHOP_WEBHOOK_SECRET"
              }
            },
            {
              "kafka": {
                "topic": "orders"
              }
            }
          ]
        }"#]]
    .assert_eq(&serde_json::to_string_pretty(&tree).expect("pretty"));
    let order: Vec<&str> = workflow.topological_order();
    assert_eq!(
        order,
        ["fetch", "charge", "pack", "approve", "ship", "cleanup"]
    );
}

#[test]
fn render_prints_file_line_column_code_and_hint() {
    let parsed = dsl::parse("name: x\nsteps:\n  a:\n    uses: nop\n");
    let diagnostic = &parsed.diagnostics[0];
    assert_eq!(
        (diagnostic.line, diagnostic.column, diagnostic.severity),
        (4, 11, Severity::Error)
    );
    expect![[r#"
        workflows/x.yaml:4:11: error[IMX0010]: unknown step kind `nop`
          hint: did you mean `noop`?"#]]
    .assert_eq(&diagnostic.render("workflows/x.yaml"));
}

#[test]
fn warnings_alone_keep_the_workflow() {
    let parsed = dsl::parse(&read_fixture("invalid/imx0031-duplicate-need.yaml"));
    let workflow = parsed.workflow.expect("warnings do not reject a workflow");
    assert_eq!(workflow.steps["pack"].needs, ["fetch"]);
}

#[test]
fn durations() {
    let cases = [
        "500ms",
        "30s",
        "1m",
        "1h30m",
        "2d",
        "1d2h3m4s5ms",
        "0s",
        "365d",
        "366d",
        "",
        "30",
        "s",
        "1x",
        "1s1h",
        "1m1m",
        "99999999999999999999s",
        " 5s ",
    ];
    let results: Vec<String> = cases
        .iter()
        .map(|text| match dsl::duration::parse_duration_ms(text) {
            Ok(ms) => format!("{text:?} = {ms} ms"),
            Err(error) => format!("{text:?} ! {error}"),
        })
        .collect();
    expect![[r#"
        "500ms" = 500 ms
        "30s" = 30000 ms
        "1m" = 60000 ms
        "1h30m" = 5400000 ms
        "2d" = 172800000 ms
        "1d2h3m4s5ms" = 93784005 ms
        "0s" = 0 ms
        "365d" = 31536000000 ms
        "366d" ! `366d` is longer than the limit of 365d
        "" ! empty duration
        "30" ! `30` has a number without a unit
        "s" ! `s` has a unit without a number before `s`
        "1x" ! `1x` has an unknown unit `x`
        "1s1h" ! `1s1h`: units must go from largest to smallest, each once (d, h, m, s, ms)
        "1m1m" ! `1m1m`: units must go from largest to smallest, each once (d, h, m, s, ms)
        "99999999999999999999s" ! `99999999999999999999s` is longer than the limit of 365d
        " 5s " = 5000 ms"#]]
    .assert_eq(&results.join("\n"));
}

#[test]
fn defaults_merge_into_every_step_and_step_retry_overrides_field_by_field() {
    let source = r#"
name: merge
defaults:
  timeout: 30s
  retry: { max_attempts: 3, backoff: fixed, initial_interval: 2s, max_interval: 10s, jitter: 0.5 }
steps:
  plain:
    uses: noop
  own_timeout:
    uses: noop
    timeout: 5m
  own_retry:
    uses: noop
    retry: { max_attempts: 7, backoff: exponential }
"#;
    let workflow = dsl::parse(source).workflow.expect("valid");
    let lines: Vec<String> = workflow
        .steps
        .values()
        .map(|step| {
            format!(
                "{}: timeout_ms={:?} retry={:?}",
                step.id, step.timeout_ms, step.retry
            )
        })
        .collect();
    expect![[r#"
        own_retry: timeout_ms=Some(30000) retry=RetryPolicy { max_attempts: 7, backoff: Exponential, initial_interval_ms: 2000, max_interval_ms: 10000, multiplier: 2.0, jitter: 0.5 }
        own_timeout: timeout_ms=Some(300000) retry=RetryPolicy { max_attempts: 3, backoff: Fixed, initial_interval_ms: 2000, max_interval_ms: 10000, multiplier: 2.0, jitter: 0.5 }
        plain: timeout_ms=Some(30000) retry=RetryPolicy { max_attempts: 3, backoff: Fixed, initial_interval_ms: 2000, max_interval_ms: 10000, multiplier: 2.0, jitter: 0.5 }"#]].assert_eq(&lines.join("\n"));
}

#[test]
fn without_defaults_a_step_has_no_timeout_and_a_single_attempt() {
    let workflow = dsl::parse("name: bare\nsteps:\n  only:\n    uses: noop\n")
        .workflow
        .expect("valid");
    let step = &workflow.steps["only"];
    assert_eq!(step.timeout_ms, None);
    assert_eq!(step.retry, imx_core::workflow::RetryPolicy::default());
    assert_eq!(step.for_each, None);
}

#[test]
fn for_each_max_parallel_defaults_and_is_read_from_the_step() {
    let source = "name: fan\nsteps:\n  a:\n    uses: noop\n    for_each: [1, 2]\n  b:\n    uses: noop\n    for_each: [3]\n    max_parallel: 2\n    with: { n: \"{{ item }}-{{ index }}\" }\n";
    let workflow = dsl::parse(source).workflow.expect("valid");
    let parallel: Vec<u32> = workflow
        .steps
        .values()
        .map(|step| step.for_each.as_ref().expect("for_each").max_parallel)
        .collect();
    assert_eq!(
        parallel,
        [imx_core::workflow::FOR_EACH_MAX_PARALLEL_DEFAULT, 2]
    );
}

#[test]
fn a_template_may_read_a_step_that_is_upstream_only_transitively() {
    let source = "name: chain\nsteps:\n  a:\n    uses: noop\n  b:\n    needs: a\n    uses: noop\n  c:\n    needs: [b]\n    uses: noop\n    if: steps.a.status == 'succeeded'\n    with: { x: \"{{ steps.a.output }}\", r: \"{{ run.attempt }}\", s: \"{{ secrets.TOKEN }}\" }\n";
    let parsed = dsl::parse(source);
    assert_eq!(rendered(&parsed, "chain.yaml"), "");
    assert_eq!(parsed.workflow.expect("valid").steps["b"].needs, ["a"]);
}

#[test]
fn anchors_in_x_keys_and_merge_keys_are_expanded() {
    let source = r#"
name: anchors
x-http: &http
  uses: http
  retry: { max_attempts: 4 }
steps:
  fetch:
    <<: *http
    with: { method: GET, url: "https://example.test/a" }
  again:
    <<: *http
    needs: [fetch]
    with: { method: GET, url: "https://example.test/{{ steps.fetch.output.body.next }}" }
"#;
    let parsed = dsl::parse(source);
    assert_eq!(rendered(&parsed, "anchors.yaml"), "");
    let workflow = parsed.workflow.expect("valid");
    let kinds: Vec<(StepKind, u32)> = workflow
        .steps
        .values()
        .map(|step| (step.uses, step.retry.max_attempts))
        .collect();
    assert_eq!(kinds, [(StepKind::Http, 4), (StepKind::Http, 4)]);
}

#[test]
fn diagnostics_point_at_the_merge_site_and_keys_inside_steps() {
    let source = "name: pos\nx-base: &base { uses: noop, retry: { max_attempts: 0 } }\nsteps:\n  a:\n    <<: *base\n  b:\n    uses: noop\n    needs: [zz]\n";
    let parsed = dsl::parse(source);
    expect![[r#"
        pos.yaml:5:9: error[IMX0016]: `max_attempts` is 0; it must be between 1 and 100
          hint: 1 means a single attempt, no retry
        pos.yaml:8:13: error[IMX0012]: step `b` needs `zz`, which is not a step
          hint: steps are: `a`, `b`"#]]
    .assert_eq(&rendered(&parsed, "pos.yaml"));
}

#[test]
fn item_and_index_are_only_in_scope_in_with_of_a_for_each_step() {
    let source = r#"name: scope
steps:
  list:
    uses: noop
  fan:
    needs: [list]
    for_each: "{{ steps.list.output.items }}"
    if: item.enabled
    uses: noop
    with: { sku: "{{ item.sku }}", at: "{{ index }}", n: "{{ range(3) | list }}" }
  bad_items:
    needs: [list]
    for_each: "{{ item }}"
    uses: noop
output:
  everything: "{{ steps.fan.output }} {{ steps.bad_items.status }} {{ steps }}"
  stray: "{{ index }}"
"#;
    let parsed = dsl::parse(source);
    expect![[r#"
        scope.yaml:8:9: error[IMX0025]: `item.enabled`: `item` is only in scope in `with` of a step with `for_each` or `matrix`
        scope.yaml:13:15: error[IMX0025]: `item`: `item` is only in scope in `with` of a step with `for_each` or `matrix`
        scope.yaml:17:10: error[IMX0025]: `index`: `index` is only in scope in `with` of a step with `for_each` or `matrix`"#]].assert_eq(&rendered(&parsed, "scope.yaml"));
}

#[test]
fn every_example_workflow_in_the_repository_is_valid() {
    let folder = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../workflows");
    let mut checked = 0;
    for entry in std::fs::read_dir(&folder).expect("workflows/") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|ext| ext.to_str()) != Some("yaml") {
            continue;
        }
        let source = std::fs::read_to_string(&path).expect("readable");
        let parsed = dsl::parse(&source);
        assert_eq!(rendered(&parsed, &path.display().to_string()), "");
        checked += 1;
    }
    assert!(checked > 0, "no workflows in {}", folder.display());
}

#[test]
fn a_meta_valid_schema_that_does_not_compile_is_reported() {
    let source = "name: regex\ninput:\n  type: string\n  pattern: \"[unclosed\"\nsteps:\n  a: { uses: noop }\n";
    let parsed = dsl::parse(source);
    expect![[r#"regex.yaml:3:3: error[IMX0019]: `input` schema cannot be compiled: "[unclosed" is not a "regex""#]].assert_eq(&rendered(&parsed, "regex.yaml"));
}
