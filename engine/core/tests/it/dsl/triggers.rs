//! Trigger keys: ids (given, defaulted, unique), cron catch-up and overlap
//! policies, topic names, and the scope of each kind's `input` templates.

use expect_test::expect;
use imx_core::dsl;
use imx_core::workflow::{CatchUp, Overlap, Trigger};

use crate::dsl::rendered;

#[test]
fn trigger_ids_default_to_the_kind_or_number_triggers_of_a_repeated_kind() {
    let source = r#"name: ids
triggers:
  - cron: "0 0 2 * * *"
  - cron: "0 0 3 * * *"
  - id: github
    webhook: { secret_env: GITHUB_SECRET }
  - kafka: { topic: orders }
steps:
  a: { uses: noop }
"#;
    let parsed = dsl::parse(source);
    let workflow = parsed.workflow.expect("valid");
    let ids: Vec<String> = workflow
        .triggers_with_ids()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(ids, ["cron-1", "cron-2", "github", "kafka"]);
    assert!(workflow.trigger("github").is_some());
}

#[test]
fn cron_policies_default_to_latest_and_allow_and_are_read_when_given() {
    let source = r#"name: policies
triggers:
  - cron: "0 0 2 * * *"
  - id: sweep
    cron: "0 0 3 * * *"
    catch_up: none
    overlap: skip
steps:
  a: { uses: noop }
"#;
    let workflow = dsl::parse(source).workflow.expect("valid");
    let policies: Vec<(CatchUp, Overlap)> = workflow
        .triggers
        .iter()
        .map(|trigger| match trigger {
            Trigger::Cron {
                catch_up, overlap, ..
            } => (*catch_up, *overlap),
            other => panic!("not cron: {other:?}"),
        })
        .collect();
    assert_eq!(
        policies,
        [
            (CatchUp::Latest, Overlap::Allow),
            (CatchUp::None, Overlap::Skip)
        ]
    );
}

#[test]
fn bad_trigger_keys_are_reported_with_positions_and_hints() {
    let source = r#"name: bad
triggers:
  - id: Nightly
    cron: "0 0 2 * * *"
  - cron: "0 0 3 * * *"
    catch_up: everything
    overlap: skp
  - id: same
    webhook: { secret_env: A }
  - id: same
    kafka: { topic: "orders!", dead_letter_topic: "" }
steps:
  a: { uses: noop }
"#;
    let parsed = dsl::parse(source);
    expect![[r#"
        bad.yaml:3:9: error[IMX0028]: trigger id `Nightly` is not a valid name
          hint: use lowercase letters, digits, `_`, `.` and `-`, e.g. `nightly`
        bad.yaml:6:15: error[IMX0028]: `catch_up` `everything` is not one of `none`, `latest`, `all`
        bad.yaml:7:14: error[IMX0028]: `overlap` `skp` is not one of `allow`, `skip`
          hint: did you mean `skip`?
        bad.yaml:11:21: error[IMX0028]: `topic` `orders!` is not a Kafka topic name
          hint: use 1 to 249 letters, digits, `.`, `_` and `-`
        bad.yaml:11:51: error[IMX0028]: `dead_letter_topic` `` is not a Kafka topic name
          hint: use 1 to 249 letters, digits, `.`, `_` and `-`"#]]
    .assert_eq(&rendered(&parsed, "bad.yaml"));
}

#[test]
fn two_triggers_with_one_id_are_an_error() {
    let source = r#"name: twins
triggers:
  - id: same
    webhook: { secret_env: A }
  - id: same
    kafka: { topic: orders }
steps:
  a: { uses: noop }
"#;
    expect![[r#"
        twins.yaml:5:5: error[IMX0028]: two triggers have the id `same`
          hint: give each trigger of the same kind its own `id:`"#]]
    .assert_eq(&rendered(&dsl::parse(source), "twins.yaml"));
}

#[test]
fn each_kind_of_trigger_input_reads_only_what_its_kind_puts_in_scope() {
    let source = r#"name: scopes
input: { type: object }
triggers:
  - cron: "0 0 2 * * *"
    input: { day: "{{ trigger.scheduled_at }}", bad: "{{ body.x }}" }
  - webhook: { secret_env: A }
    input: { repo: "{{ body.repository.full_name }}", who: "{{ headers['x-user'] }}", bad: "{{ message.value }}" }
  - kafka: { topic: orders }
    input: { order: "{{ message.value.id }}", at: "{{ trigger.id }}", bad: "{{ secrets.TOKEN }}" }
  - id: broken
    kafka: { topic: more }
    input: "{{ message.value "
steps:
  a: { uses: noop }
"#;
    expect![[r#"
        scopes.yaml:5:54: error[IMX0022]: `body.x`: a cron trigger's `input` cannot read `body`
          hint: in scope: `trigger`
        scopes.yaml:7:92: error[IMX0022]: `message.value`: a webhook trigger's `input` cannot read `message`
          hint: in scope: `body`, `headers`, `trigger`
        scopes.yaml:9:76: error[IMX0022]: `secrets.TOKEN`: a kafka trigger's `input` cannot read `secrets`
          hint: in scope: `message`, `trigger`
        scopes.yaml:12:12: error[IMX0020]: invalid template `{{ message.value `: syntax error: unexpected end of input, expected end of variable block"#]]
    .assert_eq(&rendered(&dsl::parse(source), "scopes.yaml"));
}

#[test]
fn a_trigger_id_longer_than_the_limit_is_refused_so_run_keys_fit() {
    let long = "t".repeat(imx_core::dsl::TRIGGER_ID_BYTES_MAX + 1);
    let source = format!(
        "name: long\ntriggers:\n  - id: {long}\n    cron: \"0 0 2 * * *\"\nsteps:\n  a: {{ uses: noop }}\n"
    );
    let parsed = dsl::parse(&source);
    assert!(parsed.has_errors());
    expect![[r#"
        long.yaml:3:9: error[IMX0030]: trigger id is 65 bytes long, more than the limit of 64
          hint: a trigger id names it in keys and URLs: keep it short"#]]
    .assert_eq(&rendered(&parsed, "long.yaml"));
}
