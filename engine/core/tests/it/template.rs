//! Templates: the exact-value rule, interpolation, conditions, limits, errors.

use expect_test::{Expect, expect};
use imx_core::Secrets;
use imx_core::template::{
    Error, Rendered, TEMPLATE_OUTPUT_BYTES_MAX, exact_expression, expression_references,
    template_references,
};
use serde_json::{Value, json};

/// A run scope like the runtime builds it.
fn scope() -> Value {
    json!({
        "input": {"order_id": "A-17", "count": 3, "flag": false, "empty": "", "tags": []},
        "steps": {
            "a": {"status": "succeeded", "output": {"id": 7, "items": [1, 2, 3], "ok": true,
                                                    "nested": {"deep": [{"x": "y"}]}}},
            "b": {"status": "skipped", "output": null}
        },
        "run": {"id": "run-1", "workflow": "demo", "attempt": 1},
        "item": {"sku": "X1"},
        "index": 0
    })
}

fn secrets() -> Secrets {
    [("TOKEN", "s3cr3t")].into_iter().collect()
}

/// Renders `template` against `scope` with [`secrets`]: the executor's copy.
fn render(template: &Value, scope: &Value) -> Result<Value, Error> {
    imx_core::template::render(template, scope, &secrets()).map(|rendered| rendered.value)
}

fn render_tainted(template: &Value) -> Result<Rendered, Error> {
    imx_core::template::render(template, &scope(), &secrets())
}

fn evaluate_condition(expression: &str, scope: &Value) -> Result<bool, Error> {
    imx_core::template::evaluate_condition(expression, scope, &secrets())
}

/// Renders `template` against [`scope`] and shows the JSON result or the error.
fn check(template: Value, expected: Expect) {
    let shown = match render(&template, &scope()) {
        Ok(value) => format!("{value}\n"),
        Err(err) => format!("error: {err}\n"),
    };
    expected.assert_eq(&shown);
}

fn check_condition(expression: &str, expected: Expect) {
    let shown = match evaluate_condition(expression, &scope()) {
        Ok(value) => format!("{value}\n"),
        Err(err) => format!("error: {err}\n"),
    };
    expected.assert_eq(&shown);
}

fn check_references(template: &str, expected: Expect) {
    let shown = match template_references(template) {
        Ok(names) => format!("{}\n", names.join(" ")),
        Err(err) => format!("error: {err}\n"),
    };
    expected.assert_eq(&shown);
}

#[test]
fn exact_expression_yields_the_value_itself() {
    check(
        json!("{{ steps.a.output }}"),
        expect![[r#"
            {"id":7,"items":[1,2,3],"nested":{"deep":[{"x":"y"}]},"ok":true}
        "#]],
    );
    check(
        json!("{{ input.count }}"),
        expect![[r#"
        3
    "#]],
    );
    check(
        json!("{{ steps.a.output.items }}"),
        expect![[r#"
        [1,2,3]
    "#]],
    );
    check(
        json!("{{ steps.a.output.ok }}"),
        expect![[r#"
        true
    "#]],
    );
    check(
        json!("{{ steps.b.output }}"),
        expect![[r#"
        null
    "#]],
    );
    check(
        json!("{{ input.count * 2 + 1 }}"),
        expect![[r#"
        7
    "#]],
    );
    check(
        json!("{{ steps.a.output.items | length }}"),
        expect![[r#"
        3
    "#]],
    );
    check(
        json!("{{ item }}"),
        expect![[r#"
        {"sku":"X1"}
    "#]],
    );
}

#[test]
fn exact_expression_tolerates_surrounding_whitespace_and_trim_markers() {
    // YAML block scalars (`|`) end in a newline; that must not turn a value into text.
    check(
        json!("{{ steps.a.output.items }}\n"),
        expect![[r#"
        [1,2,3]
    "#]],
    );
    check(
        json!("{{- input.count -}}"),
        expect![[r#"
            3
        "#]],
    );
}

#[test]
fn text_around_an_expression_gives_a_string() {
    check(
        json!("order {{ input.order_id }}"),
        expect![[r#"
            "order A-17"
        "#]],
    );
    check(
        json!("{{ input.count }}"),
        expect![[r#"
        3
    "#]],
    );
    check(
        json!("{{ input.count }}{{ input.count }}"),
        expect![[r#"
            "33"
        "#]],
    );
    check(
        json!("{{ input.order_id }} and {{ index }}"),
        expect![[r#"
            "A-17 and 0"
        "#]],
    );
    check(
        json!("items: {{ steps.a.output.items }}"),
        expect![[r#"
            "items: [1, 2, 3]"
        "#]],
    );
    check(
        json!("{% if input.flag %}yes{% else %}no{% endif %}"),
        expect![[r#"
            "no"
        "#]],
    );
    check(
        json!("plain text, no template"),
        expect![[r#"
            "plain text, no template"
        "#]],
    );
}

#[test]
fn trees_are_rendered_leaf_by_leaf_and_keys_stay_as_written() {
    check(
        json!({
            "url": "{{ run.id }}/orders/{{ input.order_id }}",
            "json": {"ids": ["{{ steps.a.output.id }}", 5, null, true], "item": "{{ item }}"},
            "{{ not_a_key_template }}": "{{ steps.a.output.nested.deep[0].x }}"
        }),
        expect![[r#"
            {"json":{"ids":[7,5,null,true],"item":{"sku":"X1"}},"url":"run-1/orders/A-17","{{ not_a_key_template }}":"y"}
        "#]],
    );
}

#[test]
fn missing_keys_are_errors_that_name_the_expression() {
    check(
        json!("{{ input.missing }}"),
        expect![[r#"
            error: cannot render `{{ input.missing }}`: undefined value: `input.missing` is undefined
        "#]],
    );
    check(
        json!("order {{ input.missing }}"),
        expect![[r#"
            error: cannot render `order {{ input.missing }}`: undefined value: `input.missing` is undefined
        "#]],
    );
    check(
        json!("{{ steps.nope.output }}"),
        expect![[r#"
            error: cannot render `{{ steps.nope.output }}`: undefined value: `steps.nope` is undefined
        "#]],
    );
    check(
        json!("{{ steps.a.output.items[9] }}"),
        expect![[r#"
            error: cannot render `{{ steps.a.output.items[9] }}`: undefined value: `steps.a.output.items[9]` is undefined
        "#]],
    );
    check(
        json!("{{ input.missing.deeper }}"),
        expect![[r#"
            error: cannot render `{{ input.missing.deeper }}`: undefined value: `input.missing` is undefined
        "#]],
    );
    check(
        json!({"a": ["ok", "{{ secrets.OTHER }}"]}),
        expect![[r#"
            error: cannot render `{{ secrets.OTHER }}`: undefined value: `secrets.OTHER` is undefined
        "#]],
    );
}

#[test]
fn if_uses_jinja_truthiness() {
    check_condition(
        "steps.a.output.ok",
        expect![[r#"
        true
    "#]],
    );
    check_condition(
        "input.flag",
        expect![[r#"
        false
    "#]],
    );
    check_condition(
        "input.empty",
        expect![[r#"
        false
    "#]],
    );
    check_condition(
        "input.tags",
        expect![[r#"
        false
    "#]],
    );
    check_condition(
        "steps.a.output.items",
        expect![[r#"
        true
    "#]],
    );
    check_condition(
        "steps.b.output",
        expect![[r#"
        false
    "#]],
    );
    check_condition(
        "input.count > 2 and steps.a.status == 'succeeded'",
        expect![[r#"
            true
        "#]],
    );
    check_condition(
        "steps.b.status == \"skipped\"",
        expect![[r#"
        true
    "#]],
    );
    check_condition(
        "not input.flag",
        expect![[r#"
        true
    "#]],
    );
    check_condition(
        "input.missing",
        expect![[r#"
            error: cannot render `input.missing`: undefined value: `input.missing` is undefined
        "#]],
    );
    check_condition(
        "input.missing is defined",
        expect![[r#"
        false
    "#]],
    );
    check_condition(
        "input.count >",
        expect![[r#"
            error: invalid template `input.count >`: syntax error: unexpected end of input, expected expression
        "#]],
    );
}

#[test]
fn a_looping_template_runs_out_of_fuel_instead_of_hanging() {
    check(
        json!("{% for i in range(100000) %}{{ i }}{% endfor %}"),
        expect![[r#"
            error: cannot render `{% for i in range(100000) %}{{ i }}{% endfor %}`: engine ran out of fuel
        "#]],
    );
    check(
        json!(
            "{% for i in range(100) %}{% for j in range(100) %}{% for k in range(100) %}.{% endfor %}{% endfor %}{% endfor %}"
        ),
        expect![[r#"
            error: cannot render `{% for i in range(100) %}{% for j in range(100) %}{% for k in range(100) %}.{% endfor %}{% endfor %}{% endfor %}`: engine ran out of fuel
        "#]],
    );
    check_condition(
        "range(100000) | map('string') | join | length > 0",
        expect![[r#"
            error: cannot render `range(100000) | map('string') | join | length > 0`: engine ran out of fuel
        "#]],
    );
}

#[test]
fn output_larger_than_the_limit_is_an_error() {
    let half = TEMPLATE_OUTPUT_BYTES_MAX / 2 + 1;
    let big = json!({"input": {"text": "x".repeat(half)}});
    let err = render(&json!("{{ input.text }}{{ input.text }}"), &big).expect_err("too large");
    expect![[r#"
        `{{ input.text }}{{ input.text }}` renders to more than 524288 bytes, the limit for one template
    "#]]
    .assert_eq(&format!("{err}\n"));
    let err = render(&json!("{{ input.text ~ input.text }}"), &big).expect_err("too large");
    expect![[r#"
        `{{ input.text ~ input.text }}` renders to more than 524288 bytes, the limit for one template
    "#]]
    .assert_eq(&format!("{err}\n"));
    let fits = render(&json!("{{ input.text }}"), &big).expect("fits");
    assert_eq!(fits.as_str().map(str::len), Some(half));
}

#[test]
fn syntax_errors_are_reported_as_such() {
    check(
        json!("{{ input.order_id "),
        expect![[r#"
            error: invalid template `{{ input.order_id `: syntax error: unexpected end of input, expected end of variable block
        "#]],
    );
    check(
        json!("order {{ input. }}"),
        expect![[r#"
            error: invalid template `order {{ input. }}`: syntax error: unexpected end of variable block, expected identifier or integer
        "#]],
    );
    check(
        json!("{% if input.flag %}never closed"),
        expect![[r#"
            error: invalid template `{% if input.flag %}never closed`: syntax error: unexpected end of input, expected end of block
        "#]],
    );
    check(
        json!("{{ input.order_id | no_such_filter }}"),
        expect![[r#"
            error: cannot render `{{ input.order_id | no_such_filter }}`: unknown filter: filter no_such_filter is unknown
        "#]],
    );
}

#[test]
fn references_are_the_variable_paths_a_template_reads() {
    check_references(
        "{{ steps.fetch.output.body.items }}",
        expect![[r#"
            steps.fetch.output.body.items
        "#]],
    );
    check_references(
        "{{ input.order_id }}/{{ steps.a.output.id }} {% if steps.b.status == 'ok' %}{{ secrets.TOKEN }}{% endif %}",
        expect![[r#"
            input.order_id secrets.TOKEN steps.a.output.id steps.b.status
        "#]],
    );
    check_references(
        "{% for x in input.list %}{{ x.name }}{% endfor %}",
        expect![[r#"
            input.list
        "#]],
    );
    check_references(
        "{% set y = 1 %}{{ y }} {{ item.sku }} {{ index }}",
        expect![[r#"
            index item.sku
        "#]],
    );
    assert_eq!(template_references("no template"), Ok(Vec::new()));
    check_references(
        "{{ broken",
        expect![[r#"
            error: invalid template `{{ broken`: syntax error: unexpected end of input, expected end of variable block
        "#]],
    );
    let names = expression_references("steps.a.output.ok and not input.flag").expect("parses");
    expect![[r#"
        input.flag steps.a.output.ok
    "#]]
    .assert_eq(&format!("{}\n", names.join(" ")));
}

#[test]
fn exact_expression_recognises_one_expression_only() {
    let cases = [
        "{{ a.b }}",
        "  {{a}}  ",
        "{{ a }} {{ b }}",
        "{{ a }}x",
        "x{{ a }}",
        "{{ '}}' }}",
        "{% if a %}{{ a }}{% endif %}",
        "{{- a -}}",
        "{{ -a }}",
    ];
    let shown: Vec<String> = cases
        .iter()
        .map(|case| format!("{case:?} -> {:?}", exact_expression(case)))
        .collect();
    expect![[r#"
        "{{ a.b }}" -> Some("a.b")
        "  {{a}}  " -> Some("a")
        "{{ a }} {{ b }}" -> None
        "{{ a }}x" -> None
        "x{{ a }}" -> None
        "{{ '}}' }}" -> None
        "{% if a %}{{ a }}{% endif %}" -> None
        "{{- a -}}" -> Some("a")
        "{{ -a }}" -> Some("-a")
    "#]]
    .assert_eq(&(shown.join("\n") + "\n"));
}

#[test]
fn regression_missing_key_in_an_exact_expression_rendered_as_null() {
    // `eval` returned undefined, which serialised as `null` and hid typos.
    check(
        json!("{{ [1, input.missing] }}"),
        expect![[r#"
            error: cannot render `{{ [1, input.missing] }}`: undefined value: the result holds an undefined value
        "#]],
    );
    check(
        json!({"k": "{{ {'a': steps.a.output.nope} }}"}),
        expect![[r#"
            error: cannot render `{{ {'a': steps.a.output.nope} }}`: undefined value: the result holds an undefined value
        "#]],
    );
}

#[test]
fn regression_a_huge_value_was_built_before_the_size_check() {
    // One instruction may build up to 100 MB in minijinja (`'x' * n`); the
    // limit must hold for exact values and stop interpolation early.
    check(
        json!("{{ 'x' * 2000000 }}"),
        expect![[r#"
            error: `{{ 'x' * 2000000 }}` renders to more than 524288 bytes, the limit for one template
        "#]],
    );
    check(
        json!("{% for i in range(50) %}{{ 'x' * 1000000 }}{% endfor %}"),
        expect![[r#"
            error: `{% for i in range(50) %}{{ 'x' * 1000000 }}{% endfor %}` renders to more than 524288 bytes, the limit for one template
        "#]],
    );
}

#[test]
fn an_undefined_condition_whose_probe_cannot_compile_still_gets_an_error() {
    check_condition(
        "input.missing if '%}' else false",
        expect![[r#"
        error: cannot render `input.missing if '%}' else false`: undefined value
    "#]],
    );
}

#[test]
fn regression_transformed_secrets_reached_the_event_log() {
    // Redaction matched the exact secret only: each of these recorded it.
    for template in [
        "{{ secrets.TOKEN | upper }}",
        "{{ secrets.TOKEN[0:5] }}",
        "{{ secrets.TOKEN | list }}",
        "prefix {{ secrets.TOKEN | replace('s', 'z') }}",
        "{{ {secrets.TOKEN: 1} }}",
        "{{ secrets | items | list }}",
        "{{ secrets | tojson }}",
    ] {
        let rendered = render_tainted(&json!({"leaf": template, "plain": "{{ input.order_id }}"}))
            .expect(template);
        let recorded = rendered.recorded(&secrets());
        assert_eq!(
            recorded,
            json!({"leaf": "***", "plain": "A-17"}),
            "{template} is recorded as *** whole"
        );
        assert_eq!(rendered.tainted, ["/leaf"], "{template}");
        assert_ne!(
            rendered.value["leaf"],
            json!("***"),
            "{template}: the executor's copy keeps the value"
        );
    }
}

#[test]
fn reading_secret_names_or_printing_secrets_shows_names_only() {
    for template in [
        "{{ debug() }}",
        "names: {{ secrets }}",
        "{{ secrets | list }}",
    ] {
        let rendered = render_tainted(&json!(template)).expect(template);
        let text = rendered.value.to_string();
        assert!(!text.contains("s3cr3t"), "{template}: {text}");
        assert!(
            text.contains("TOKEN"),
            "{template} names the secret: {text}"
        );
    }
}

#[test]
fn an_error_after_reading_a_secret_does_not_quote_it() {
    let err = render_tainted(&json!("{{ secrets.TOKEN + 1 }}")).expect_err("cannot add");
    let text = err.to_string();
    assert!(!text.contains("s3cr3t"), "{text}");
    assert!(text.contains("read a secret"), "{text}");
    let err = evaluate_condition("secrets.TOKEN | int > input.missing", &scope()).expect_err("bad");
    assert!(!err.to_string().contains("s3cr3t"), "{err}");
}

#[test]
fn regression_a_lazily_repeated_list_hung_the_worker() {
    // `*` on a list is lazy in minijinja (no fuel), and the engine walked the
    // 10^16-item result outside the fuel: the check for undefined values and
    // printing it. Every walk is now bounded by the output budget.
    let bomb = "[[1] * 100000000] * 100000000";
    for template in [
        format!("{{{{ {bomb} }}}}"),
        format!("text {{{{ {bomb} }}}}"),
        format!("{{{{ [{bomb}] }}}}"),
        format!("{{{{ {{'k': {bomb}}} }}}}"),
    ] {
        let err = render(&json!(template), &scope()).expect_err(&template);
        assert!(
            matches!(err, Error::TooLarge { .. })
                || err.to_string().contains("more than 524288 bytes"),
            "{template}: {err}"
        );
    }
    // Using it without walking it is fine.
    check(
        json!(format!("{{{{ ({bomb}) | length }}}}")),
        expect![[r#"
            100000000
        "#]],
    );
    check_condition(
        &format!("({bomb}) | length > 5"),
        expect![[r#"
            true
        "#]],
    );
}

#[test]
fn a_rendered_tree_shares_one_output_budget() {
    let third = TEMPLATE_OUTPUT_BYTES_MAX / 3;
    let big = json!({"input": {"text": "x".repeat(third)}});
    let template =
        json!({"a": "{{ input.text }}", "b": "{{ input.text }}", "c": "{{ input.text }}"});
    let err = render(&template, &big).expect_err("three thirds and the keys are too many");
    assert!(matches!(err, Error::TooLarge { .. }), "{err}");
    let two = json!({"a": "{{ input.text }}", "b": "{{ input.text }}"});
    assert!(render(&two, &big).is_ok());
}

#[test]
fn errors_quote_at_most_the_start_of_a_long_template() {
    let long = format!("{{{{ input.missing }}}}{}", "x".repeat(10_000));
    let err = render(&json!(long), &scope()).expect_err("missing");
    assert!(err.to_string().len() < 1_000, "{err}");
}
