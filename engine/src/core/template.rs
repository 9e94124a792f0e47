//! Templates and expressions: `{{ expr }}` inside strings and bare `if`
//! expressions, rendered with minijinja in a sandbox (no I/O, bounded fuel,
//! bounded output size, strict undefined so that a missing key is an error).
//!
//! The exact-value rule: a string that is exactly one `{{ expr }}` yields the
//! JSON value of `expr` itself (object, number, list), not its text.

use minijinja::{Environment, UndefinedBehavior};
use serde_json::Value;

/// Instructions one template or expression may execute before it is stopped.
pub const TEMPLATE_FUEL_MAX: u64 = 50_000;
/// Largest string a single template may render to.
pub const TEMPLATE_OUTPUT_BYTES_MAX: usize = 1024 * 1024;

/// Why a template could not be compiled or rendered.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("invalid template `{source_text}`: {detail}")]
    Syntax { source_text: String, detail: String },
    #[error("cannot render `{source_text}`: {detail}")]
    Render { source_text: String, detail: String },
    #[error(
        "`{source_text}` rendered {bytes} bytes, more than the limit of {TEMPLATE_OUTPUT_BYTES_MAX}"
    )]
    TooLarge { source_text: String, bytes: usize },
}

/// Renders every string of a template tree against `scope`; other JSON values
/// are copied as they are. Object keys are not templated.
pub fn render(value: &Value, scope: &Value) -> Result<Value, Error> {
    let env = environment();
    render_with(&env, value, scope)
}

/// Evaluates a bare expression (an `if`) to a boolean using Jinja truthiness.
pub fn evaluate_condition(expression: &str, scope: &Value) -> Result<bool, Error> {
    let env = environment();
    let compiled = env
        .compile_expression(expression)
        .map_err(|err| syntax_error(expression, &err))?;
    let result = compiled
        .eval(minijinja::Value::from(minijinja::value::Serde(scope)))
        .map_err(|err| render_error(expression, &err))?;
    Ok(result.is_true())
}

/// Checks the syntax of a template string and returns the variable paths it
/// reads, such as `steps.fetch.output.body` or `input.order_id`
/// (minijinja's nested undeclared variables).
pub fn template_references(template: &str) -> Result<Vec<String>, Error> {
    let env = environment();
    let compiled = env
        .template_from_str(template)
        .map_err(|err| syntax_error(template, &err))?;
    let mut names: Vec<String> = compiled.undeclared_variables(true).into_iter().collect();
    names.sort();
    Ok(names)
}

/// Checks the syntax of a bare expression and returns the variable paths it reads.
pub fn expression_references(expression: &str) -> Result<Vec<String>, Error> {
    let env = environment();
    let compiled = env
        .compile_expression(expression)
        .map_err(|err| syntax_error(expression, &err))?;
    let mut names: Vec<String> = compiled.undeclared_variables(true).into_iter().collect();
    names.sort();
    Ok(names)
}

/// The expression inside a string that is exactly one `{{ expr }}`, if it is one.
pub fn exact_expression(text: &str) -> Option<&str> {
    let inner = text.trim().strip_prefix("{{")?.strip_suffix("}}")?;
    // `{{ a }} and {{ b }}` starts and ends with braces but is two expressions.
    if inner.contains("{{") || inner.contains("}}") || inner.contains("{%") {
        return None;
    }
    Some(inner.trim())
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(TEMPLATE_FUEL_MAX));
    env.set_recursion_limit(64);
    env
}

fn render_with(env: &Environment<'_>, value: &Value, scope: &Value) -> Result<Value, Error> {
    match value {
        Value::String(text) => render_string(env, text, scope),
        Value::Array(items) => items
            .iter()
            .map(|item| render_with(env, item, scope))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        Value::Object(fields) => fields
            .iter()
            .map(|(key, field)| Ok((key.clone(), render_with(env, field, scope)?)))
            .collect::<Result<serde_json::Map<_, _>, _>>()
            .map(Value::Object),
        other => Ok(other.clone()),
    }
}

fn render_string(env: &Environment<'_>, text: &str, scope: &Value) -> Result<Value, Error> {
    if !text.contains("{{") && !text.contains("{%") {
        return Ok(Value::String(text.to_owned()));
    }
    let context = minijinja::Value::from(minijinja::value::Serde(scope));
    if let Some(expression) = exact_expression(text) {
        let compiled = env
            .compile_expression(expression)
            .map_err(|err| syntax_error(text, &err))?;
        let result = compiled
            .eval(context)
            .map_err(|err| render_error(text, &err))?;
        let json = serde_json::to_value(&result).map_err(|err| Error::Render {
            source_text: text.to_owned(),
            detail: err.to_string(),
        })?;
        check_size(text, &json)?;
        return Ok(json);
    }
    let rendered = env
        .render_str(text, context)
        .map_err(|err| render_error(text, &err))?;
    if rendered.len() > TEMPLATE_OUTPUT_BYTES_MAX {
        return Err(Error::TooLarge {
            source_text: text.to_owned(),
            bytes: rendered.len(),
        });
    }
    Ok(Value::String(rendered))
}

fn check_size(text: &str, json: &Value) -> Result<(), Error> {
    let bytes = serde_json::to_vec(json)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if bytes > TEMPLATE_OUTPUT_BYTES_MAX {
        return Err(Error::TooLarge {
            source_text: text.to_owned(),
            bytes,
        });
    }
    Ok(())
}

fn syntax_error(text: &str, err: &minijinja::Error) -> Error {
    Error::Syntax {
        source_text: text.to_owned(),
        detail: describe(err),
    }
}

fn render_error(text: &str, err: &minijinja::Error) -> Error {
    Error::Render {
        source_text: text.to_owned(),
        detail: describe(err),
    }
}

fn describe(err: &minijinja::Error) -> String {
    match err.detail() {
        Some(detail) => format!("{}: {detail}", err.kind()),
        None => err.kind().to_string(),
    }
}
