//! Templates: the exact-value rule, interpolation, conditions, limits, errors.

use engine::core::template::{
    TEMPLATE_OUTPUT_BYTES_MAX, evaluate_condition, exact_expression, expression_references, render,
    template_references,
};
use expect_test::{Expect, expect};
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
        "index": 0,
        "secrets": {"TOKEN": "s3cr3t"}
    })
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
        `{{ input.text }}{{ input.text }}` renders to more than 1048576 bytes, the limit for one template
    "#]]
    .assert_eq(&format!("{err}\n"));
    let err = render(&json!("{{ input.text ~ input.text }}"), &big).expect_err("too large");
    expect![[r#"
        `{{ input.text ~ input.text }}` renders to more than 1048576 bytes, the limit for one template
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
        error: `{{ 'x' * 2000000 }}` renders to more than 1048576 bytes, the limit for one template
    "#]],
    );
    check(
        json!("{% for i in range(50) %}{{ 'x' * 1000000 }}{% endfor %}"),
        expect![[r#"
            error: `{% for i in range(50) %}{{ 'x' * 1000000 }}{% endfor %}` renders to more than 1048576 bytes, the limit for one template
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
