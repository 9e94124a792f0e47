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
    #[error("`{source_text}` renders to more than {limit_bytes} bytes, the limit for one template")]
    TooLarge {
        source_text: String,
        limit_bytes: usize,
    },
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
    let context = minijinja::Value::from(minijinja::value::Serde(scope));
    let result = compiled
        .eval(context.clone())
        .map_err(|err| render_error(expression, &err))?;
    if result.is_undefined() {
        // `eval` hands undefined back instead of failing; a template `if`
        // fails on it in strict mode and names the missing part.
        let probe = format!("{{% if {expression} %}}{{% endif %}}");
        return Err(undefined_error(&env, expression, &probe, context));
    }
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
///
/// Whitespace around the braces is ignored (YAML block scalars end in a
/// newline), and so are Jinja's trim markers: `{{- expr -}}`.
pub fn exact_expression(text: &str) -> Option<&str> {
    let inner = text.trim().strip_prefix("{{")?.strip_suffix("}}")?;
    // `{{ a }} and {{ b }}` starts and ends with braces but is two expressions.
    if inner.contains("{{") || inner.contains("}}") || inner.contains("{%") {
        return None;
    }
    // A marker counts only right next to the braces, as in Jinja: `{{ -a }}` negates.
    let inner = inner.strip_prefix(['-', '+']).unwrap_or(inner);
    let inner = inner.strip_suffix(['-', '+']).unwrap_or(inner);
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
        return render_exact(env, text, expression, context);
    }
    // Compile first so that a syntax error is reported as one, not as a render failure.
    let template = env
        .template_from_str(text)
        .map_err(|err| syntax_error(text, &err))?;
    // Stream into a bounded buffer: the render stops at the limit instead of
    // building an unbounded string first and measuring it afterwards.
    let mut output = BoundedBuffer::default();
    match template.render_captured_to(context, &mut output) {
        Ok(_) => {}
        Err(_) if output.overflowed => return Err(too_large(text)),
        Err(err) => return Err(render_error(text, &err)),
    }
    String::from_utf8(output.bytes)
        .map(Value::String)
        .map_err(|err| Error::Render {
            source_text: text.to_owned(),
            detail: err.to_string(),
        })
}

/// The exact-value rule: `{{ expr }}` alone yields the JSON value of `expr`.
fn render_exact(
    env: &Environment<'_>,
    text: &str,
    expression: &str,
    context: minijinja::Value,
) -> Result<Value, Error> {
    let compiled = env
        .compile_expression(expression)
        .map_err(|err| syntax_error(text, &err))?;
    let result = compiled
        .eval(context.clone())
        .map_err(|err| render_error(text, &err))?;
    if result.is_undefined() {
        // Strict mode fails a template that prints undefined, with a message
        // naming the missing part; `eval` just hands undefined back.
        return Err(undefined_error(env, text, text, context));
    }
    if contains_undefined(&result, 0) {
        return Err(Error::Render {
            source_text: text.to_owned(),
            detail: "undefined value: the result holds an undefined value".to_owned(),
        });
    }
    // Measure before converting so a huge value is not copied into JSON first.
    let mut measured = BoundedBuffer::default();
    if serde_json::to_writer(&mut measured, &result).is_err() && measured.overflowed {
        return Err(too_large(text));
    }
    serde_json::to_value(&result).map_err(|err| Error::Render {
        source_text: text.to_owned(),
        detail: err.to_string(),
    })
}

/// The strict-mode error for an expression that evaluated to undefined,
/// obtained by rendering `probe` (a template using the expression).
fn undefined_error(
    env: &Environment<'_>,
    source_text: &str,
    probe: &str,
    context: minijinja::Value,
) -> Error {
    match env.render_str(probe, context) {
        // A probe that does not compile (a `%}` inside a string literal, say)
        // says nothing about the undefined value: fall through to the plain message.
        Err(err) if err.kind() != minijinja::ErrorKind::SyntaxError => {
            render_error(source_text, &err)
        }
        _ => Error::Render {
            source_text: source_text.to_owned(),
            detail: "undefined value".to_owned(),
        },
    }
}

/// Whether a value built by an expression (such as `[input.missing]`) holds
/// undefined somewhere. Values from the scope come from JSON and never do.
fn contains_undefined(value: &minijinja::Value, depth: usize) -> bool {
    use minijinja::value::ValueKind;
    if value.is_undefined() {
        return true;
    }
    if depth >= UNDEFINED_SCAN_DEPTH_MAX {
        return false;
    }
    match value.kind() {
        ValueKind::Seq | ValueKind::Iterable => value
            .try_iter()
            .is_ok_and(|mut items| items.any(|item| contains_undefined(&item, depth + 1))),
        ValueKind::Map => value.try_iter().is_ok_and(|mut keys| {
            keys.any(|key| {
                value
                    .get_item(&key)
                    .is_ok_and(|item| contains_undefined(&item, depth + 1))
            })
        }),
        _ => false,
    }
}

/// Nesting depth up to which a result is searched for undefined values.
const UNDEFINED_SCAN_DEPTH_MAX: usize = 64;

/// An in-memory `io::Write` that refuses to grow past the output limit.
#[derive(Debug, Default)]
struct BoundedBuffer {
    bytes: Vec<u8>,
    overflowed: bool,
}

impl std::io::Write for BoundedBuffer {
    fn write(&mut self, chunk: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len() + chunk.len() > TEMPLATE_OUTPUT_BYTES_MAX {
            self.overflowed = true;
            return Err(std::io::Error::other("template output limit reached"));
        }
        self.bytes.extend_from_slice(chunk);
        Ok(chunk.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn too_large(text: &str) -> Error {
    Error::TooLarge {
        source_text: text.to_owned(),
        limit_bytes: TEMPLATE_OUTPUT_BYTES_MAX,
    }
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
