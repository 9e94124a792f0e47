//! Which requests are "plain": text and variable paths only, so that they
//! cannot build or walk anything bigger than the scope itself and may skip
//! the sandbox process (see `crate::sandbox`). Conservative by design: any
//! construct not listed here (a filter, an operator on paths, a call, a
//! `{%` block, a comment) makes a request not plain.

use serde_json::Value;

use super::Request;

/// Whether every string of the request is plain:
///
/// * a render: every string is text with `{{ PATH }}` segments only, where
///   PATH is a variable path (`input.a.b`, `steps.x.output['k'][0]`, `item`,
///   `secrets.NAME`), Jinja trim markers allowed;
/// * a condition: `[not] PATH [OP LITERAL]` clauses joined by `and`/`or`,
///   where OP is a comparison and LITERAL a number, a string, `true`,
///   `false` or `none`. Comparing a scope value with a scalar walks at most
///   the scope; a comparison of two paths or with a list literal is not plain.
pub fn is_plain(request: &Request<'_>) -> bool {
    match request {
        Request::Render { template, .. } => tree_is_plain(template),
        Request::Condition { expression, .. } => condition_is_plain(expression),
    }
}

fn tree_is_plain(value: &Value) -> bool {
    match value {
        Value::String(text) => text_is_plain(text),
        Value::Array(items) => items.iter().all(tree_is_plain),
        Value::Object(fields) => fields.values().all(tree_is_plain),
        _ => true,
    }
}

fn text_is_plain(text: &str) -> bool {
    let mut rest = text;
    loop {
        let Some(start) = rest.find('{') else {
            return true;
        };
        let after = &rest[start + 1..];
        match after.as_bytes().first() {
            Some(b'{') => {}
            // `{%` blocks and `{#` comments: not plain.
            Some(b'%' | b'#') => return false,
            _ => {
                rest = after;
                continue;
            }
        }
        let inner_start = &after[1..];
        let Some(end) = inner_start.find("}}") else {
            return false;
        };
        let inner = &inner_start[..end];
        let inner = inner.strip_prefix(['-', '+']).unwrap_or(inner);
        let inner = inner.strip_suffix(['-', '+']).unwrap_or(inner);
        let tokens = match tokenize(inner) {
            Some(tokens) => tokens,
            None => return false,
        };
        let mut position = 0;
        if !path(&tokens, &mut position) || position != tokens.len() {
            return false;
        }
        rest = &inner_start[end + 2..];
    }
}

fn condition_is_plain(expression: &str) -> bool {
    let Some(tokens) = tokenize(expression) else {
        return false;
    };
    let mut position = 0;
    loop {
        if !clause(&tokens, &mut position) {
            return false;
        }
        match tokens.get(position) {
            None => return true,
            Some(Token::Word(word)) if *word == "and" || *word == "or" => position += 1,
            Some(_) => return false,
        }
    }
}

/// `[not] PATH [OP LITERAL]`
fn clause(tokens: &[Token<'_>], position: &mut usize) -> bool {
    if tokens.get(*position) == Some(&Token::Word("not")) {
        *position += 1;
    }
    if !path(tokens, position) {
        return false;
    }
    if let Some(Token::Compare) = tokens.get(*position) {
        *position += 1;
        return match tokens.get(*position) {
            Some(Token::Number | Token::Text) => {
                *position += 1;
                true
            }
            Some(Token::Word(word)) if is_literal_word(word) => {
                *position += 1;
                true
            }
            _ => false,
        };
    }
    true
}

/// `NAME ( .NAME | [NUMBER] | ['TEXT'] )*`
fn path(tokens: &[Token<'_>], position: &mut usize) -> bool {
    match tokens.get(*position) {
        Some(Token::Word(word)) if !is_keyword(word) => *position += 1,
        _ => return false,
    }
    loop {
        match tokens.get(*position..) {
            Some([Token::Dot, Token::Word(_), ..]) => *position += 2,
            Some([Token::Open, Token::Number | Token::Text, Token::Close, ..]) => *position += 3,
            _ => return true,
        }
    }
}

fn is_literal_word(word: &str) -> bool {
    matches!(word, "true" | "false" | "none" | "True" | "False" | "None")
}

fn is_keyword(word: &str) -> bool {
    is_literal_word(word) || matches!(word, "not" | "and" | "or" | "is" | "in" | "if" | "else")
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Token<'a> {
    Word(&'a str),
    /// A non-negative integer or decimal.
    Number,
    /// A quoted string without escapes.
    Text,
    Dot,
    Open,
    Close,
    /// `==`, `!=`, `<`, `<=`, `>`, `>=`
    Compare,
}

/// The tokens of a plain expression, or `None` at anything else.
fn tokenize(source: &str) -> Option<Vec<Token<'_>>> {
    let bytes = source.as_bytes();
    let mut tokens = Vec::new();
    let mut index = 0;
    while index < bytes.len() {
        let byte = bytes[index];
        let start = index;
        index += 1;
        let token = match byte {
            b' ' | b'\t' | b'\n' | b'\r' => continue,
            b'.' => Token::Dot,
            b'[' => Token::Open,
            b']' => Token::Close,
            b'=' | b'!' if bytes.get(index) == Some(&b'=') => {
                index += 1;
                Token::Compare
            }
            b'<' | b'>' => {
                if bytes.get(index) == Some(&b'=') {
                    index += 1;
                }
                Token::Compare
            }
            b'\'' | b'"' => {
                let end = source[index..].find(byte as char)? + index;
                if source[index..end].contains('\\') {
                    return None;
                }
                index = end + 1;
                Token::Text
            }
            b'0'..=b'9' => {
                while index < bytes.len() && (bytes[index].is_ascii_digit() || bytes[index] == b'.')
                {
                    index += 1;
                }
                // `1.2.3`, `1..` : let minijinja judge it in the sandbox.
                if source[start..index].matches('.').count() > 1 {
                    return None;
                }
                Token::Number
            }
            b'a'..=b'z' | b'A'..=b'Z' | b'_' => {
                while index < bytes.len()
                    && (bytes[index].is_ascii_alphanumeric() || bytes[index] == b'_')
                {
                    index += 1;
                }
                Token::Word(&source[start..index])
            }
            _ => return None,
        };
        tokens.push(token);
    }
    Some(tokens)
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use serde_json::json;

    use super::*;

    fn render(template: Value) -> bool {
        is_plain(&Request::Render {
            template: Cow::Owned(template),
            scope: Cow::Owned(json!({})),
        })
    }

    fn condition(expression: &str) -> bool {
        is_plain(&Request::Condition {
            expression: Cow::Borrowed(expression),
            scope: Cow::Owned(json!({})),
        })
    }

    #[test]
    fn text_and_variable_paths_are_plain() {
        for template in [
            json!("no template at all"),
            json!("{{ input.a.b }}"),
            json!("{{- steps.fetch.output['body'][0].id -}}"),
            json!("Hello {{ item }}, {{ secrets.TOKEN }}!"),
            json!({ "list": ["{{ input.x }}", 3, null, { "k": "{{ steps.a.output[\"k\"] }}" }] }),
            json!("a lone { brace and }} closing braces"),
        ] {
            assert!(render(template.clone()), "{template} should be plain");
        }
    }

    #[test]
    fn filters_operators_calls_and_blocks_are_not_plain() {
        for template in [
            json!("{{ [[1] * 100000000] * 100000000 }}"),
            json!("{{ '' ~ input.x }}"),
            json!("{{ input.x | upper }}"),
            json!("{{ range(10) }}"),
            json!("{% for i in range(9) %}{{ i }}{% endfor %}"),
            json!("{# comment #}"),
            json!("{{ input[input.key] }}"),
            json!("{{ input['it\\'s'] }}"),
            json!("{{ input.x if true else 1 }}"),
            json!("{{ not input.x }}"),
            json!("{{ input.x == 1 }}"),
            json!("{{ input.x"),
            json!(["plain", "{{ 'x' * 100000000 }}"]),
            json!({ "a": "{{ a }}", "b": "{{ b.c() }}" }),
        ] {
            assert!(!render(template.clone()), "{template} should not be plain");
        }
    }

    #[test]
    fn conditions_of_paths_compared_with_literals_are_plain() {
        for expression in [
            "steps.check.output.ok",
            "not input.skip",
            "input.count >= 3",
            "steps.a.output['status'] == 'done' and not input.dry_run",
            "input.mode != none or input.x < 1.5",
            "input.flag == true",
        ] {
            assert!(condition(expression), "{expression} should be plain");
        }
    }

    #[test]
    fn other_conditions_are_not_plain() {
        for expression in [
            "input.a == input.b",
            "input.list == [1, 2]",
            "input.x | length > 3",
            "input.x is defined",
            "'a' in input.list",
            "input.x + 1 > 2",
            "ns.x == ns.x",
            "",
            "input.x ==",
            "and input.x",
            "true",
            "range(10)",
        ] {
            assert!(!condition(expression), "{expression} should not be plain");
        }
    }
}
