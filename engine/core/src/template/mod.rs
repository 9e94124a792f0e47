//! Templates and expressions: `{{ expr }}` inside strings and bare `if`
//! expressions, rendered with minijinja in a sandbox (no I/O, strict
//! undefined so that a missing key is an error) and bounded as a whole:
//! fuel for what an evaluation does and builds, one byte budget for what it
//! yields (walked by [`bounded`], never by an unbounded printer), and, in the
//! runtime, a child process with memory and time limits around all of it
//! (an [`Evaluator`]; see `crate::sandbox`).
//!
//! The exact-value rule: a string that is exactly one `{{ expr }}` yields the
//! JSON value of `expr` itself (object, number, list), not its text.
//!
//! Secrets are tainting: a leaf whose evaluation read `secrets.*` is recorded
//! as `***` as a whole ([`Rendered::recorded`]), whatever it did with the value.

mod bounded;
mod plain;
mod taint;

use std::borrow::Cow;
use std::sync::Arc;

use minijinja::{Environment, UndefinedBehavior};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::scope::{REDACTED, Secrets};
use taint::SecretScope;

pub use bounded::VALUE_DEPTH_MAX;
pub use plain::is_plain;

/// Instructions one template or expression may execute before it is stopped;
/// minijinja also charges the bytes and list slots an operation allocates.
pub const TEMPLATE_FUEL_MAX: u64 = 50_000;
/// Largest JSON one evaluation may yield, all leaves of a rendered tree
/// together (a step's whole `with`, a `for_each` list, the run output): it
/// must fit in one event with room to spare (asserted in the store).
pub const TEMPLATE_OUTPUT_BYTES_MAX: usize = 512 * 1024;
/// Characters of a template's source quoted in an error message.
pub const ERROR_SOURCE_CHARS_MAX: usize = 200;
/// Deepest nesting of calls, loops and includes minijinja evaluates; the
/// same depth as a value may have ([`VALUE_DEPTH_MAX`]).
pub const TEMPLATE_RECURSION_MAX: usize = VALUE_DEPTH_MAX;

/// Why a template could not be compiled or rendered.
#[derive(Debug, Clone, PartialEq, thiserror::Error, Serialize, Deserialize)]
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
    /// The sandbox stopped the evaluation (past its memory or time limit) or failed.
    #[error("the template sandbox stopped the evaluation: {detail}")]
    Sandbox { detail: String },
}

/// One evaluation, as handed to an [`Evaluator`] (borrowed on this side,
/// owned once it crossed into a sandbox).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Request<'a> {
    /// Render every string of `template` against `scope`.
    Render {
        template: Cow<'a, Value>,
        scope: Cow<'a, Value>,
    },
    /// Evaluate a bare expression (an `if`) to a boolean.
    Condition {
        expression: Cow<'a, str>,
        scope: Cow<'a, Value>,
    },
}

/// The answer to a [`Request`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Evaluated {
    Rendered(Rendered),
    Condition(bool),
}

/// A rendered tree: the executor's copy and which leaves read a secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rendered {
    /// Secrets resolved: hand it to an executor, never record it.
    pub value: Value,
    /// JSON pointers (RFC 6901) of the leaves whose evaluation read a secret.
    pub tainted: Vec<String>,
}

impl Rendered {
    /// The copy for the event log: tainted leaves replaced by `***` whole, and
    /// any secret value left elsewhere (copied from data) replaced in place.
    pub fn recorded(&self, secrets: &Secrets) -> Value {
        let mut value = self.value.clone();
        for pointer in &self.tainted {
            // `""` is the whole value: a template tree that is one string.
            if let Some(leaf) = value.pointer_mut(pointer) {
                *leaf = Value::String(REDACTED.to_owned());
            }
        }
        secrets.redact(value)
    }
}

/// Evaluates templates. Pure by contract: the same request and secrets give
/// the same answer. The core calls it; the node decides where it runs.
pub trait Evaluator: Send + Sync + std::fmt::Debug {
    fn evaluate(&self, request: &Request<'_>, secrets: &Secrets) -> Result<Evaluated, Error>;
}

/// Evaluation on the calling thread, bounded by fuel and byte budgets only:
/// for tools and tests. A node runs templates in its sandbox instead.
#[derive(Debug, Clone, Copy, Default)]
pub struct InProcess;

impl Evaluator for InProcess {
    fn evaluate(&self, request: &Request<'_>, secrets: &Secrets) -> Result<Evaluated, Error> {
        evaluate(request, secrets)
    }
}

/// Carries out one request on this thread.
pub fn evaluate(request: &Request<'_>, secrets: &Secrets) -> Result<Evaluated, Error> {
    match request {
        Request::Render { template, scope } => {
            render(template, scope, secrets).map(Evaluated::Rendered)
        }
        Request::Condition { expression, scope } => {
            evaluate_condition(expression, scope, secrets).map(Evaluated::Condition)
        }
    }
}

/// Renders every string of a template tree against `scope` (plus `secrets`);
/// other JSON values are copied as they are. Object keys are not templated.
pub fn render(template: &Value, scope: &Value, secrets: &Secrets) -> Result<Rendered, Error> {
    let env = environment();
    let secret_scope = SecretScope::new(secrets);
    let context = context(scope, &secret_scope);
    let mut walk = Walk {
        env: &env,
        context,
        secrets: &secret_scope,
        budget: bounded::Budget::new(TEMPLATE_OUTPUT_BYTES_MAX),
        path: String::new(),
        tainted: Vec::new(),
    };
    let value = walk.tree(template)?;
    Ok(Rendered {
        value,
        tainted: walk.tainted,
    })
}

/// Evaluates a bare expression (an `if`) to a boolean using Jinja truthiness.
pub fn evaluate_condition(
    expression: &str,
    scope: &Value,
    secrets: &Secrets,
) -> Result<bool, Error> {
    let env = environment();
    let secret_scope = SecretScope::new(secrets);
    let context = context(scope, &secret_scope);
    let compiled = env
        .compile_expression(expression)
        .map_err(|err| syntax_error(expression, &err))?;
    let result = compiled.eval(context.clone());
    let withheld = secret_scope.take_read();
    let result = result.map_err(|err| render_error(expression, &err, withheld))?;
    if result.is_undefined() {
        // `eval` hands undefined back instead of failing; a template `if`
        // fails on it in strict mode and names the missing part.
        let probe = format!("{{% if {expression} %}}{{% endif %}}");
        return Err(undefined_error(&env, expression, &probe, context, withheld));
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
    env.set_recursion_limit(TEMPLATE_RECURSION_MAX);
    // `{{ value }}` in text: measure what printing it would write first, so a
    // huge (lazily repeated, or shared) value fails instead of being walked.
    env.set_formatter(|out, state, value| {
        if value.as_str().is_none() {
            let mut budget = bounded::Budget::new(TEMPLATE_OUTPUT_BYTES_MAX);
            bounded::measure(value, &mut budget, 0).map_err(|stop| {
                minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, stop_text(&stop))
            })?;
        }
        minijinja::escape_formatter(out, state, value)
    });
    env
}

/// The scope as minijinja sees it: the JSON scope plus the `secrets` object.
fn context(scope: &Value, secrets: &Arc<SecretScope>) -> minijinja::Value {
    let data = minijinja::Value::from(minijinja::value::Serde(scope));
    minijinja::context! {
        secrets => minijinja::Value::from_dyn_object(Arc::clone(secrets)),
        ..data
    }
}

/// One render over a tree: the shared byte budget and the tainted leaves.
struct Walk<'a> {
    env: &'a Environment<'static>,
    context: minijinja::Value,
    secrets: &'a SecretScope,
    budget: bounded::Budget,
    /// JSON pointer of the node being rendered.
    path: String,
    tainted: Vec<String>,
}

impl Walk<'_> {
    fn tree(&mut self, value: &Value) -> Result<Value, Error> {
        match value {
            Value::String(text) => self.leaf(text),
            Value::Array(items) => {
                let mut rendered = Vec::with_capacity(items.len());
                for (index, item) in items.iter().enumerate() {
                    rendered.push(self.child(&index.to_string(), item)?);
                }
                Ok(Value::Array(rendered))
            }
            Value::Object(fields) => {
                let mut rendered = serde_json::Map::new();
                for (key, field) in fields {
                    let field = self.child(key, field)?;
                    rendered.insert(key.clone(), field);
                }
                Ok(Value::Object(rendered))
            }
            other => {
                let text = other.to_string();
                self.spend(&text, text.len())?;
                Ok(other.clone())
            }
        }
    }

    fn child(&mut self, segment: &str, value: &Value) -> Result<Value, Error> {
        let length = self.path.len();
        self.path.push('/');
        self.path
            .push_str(&segment.replace('~', "~0").replace('/', "~1"));
        let result = self.tree(value);
        self.path.truncate(length);
        result
    }

    fn spend(&mut self, source_text: &str, bytes: usize) -> Result<(), Error> {
        self.budget.spend(bytes).map_err(|_| too_large(source_text))
    }

    fn leaf(&mut self, text: &str) -> Result<Value, Error> {
        if !text.contains("{{") && !text.contains("{%") {
            self.spend(text, bounded::string_bytes(text))?;
            return Ok(Value::String(text.to_owned()));
        }
        self.secrets.take_read();
        let result = match exact_expression(text) {
            Some(expression) => self.exact(text, expression),
            None => self.text(text),
        };
        let read_secret = self.secrets.take_read();
        if read_secret {
            self.tainted.push(self.path.clone());
        }
        result.map_err(|err| if read_secret { withhold(err) } else { err })
    }

    /// Text with `{{ }}` inside: streamed into a buffer bounded by the budget.
    fn text(&mut self, text: &str) -> Result<Value, Error> {
        // Compile first so that a syntax error is reported as one, not as a render failure.
        let template = self
            .env
            .template_from_str(text)
            .map_err(|err| syntax_error(text, &err))?;
        let mut output = BoundedBuffer::new(self.budget.left());
        match template.render_captured_to(self.context.clone(), &mut output) {
            Ok(_) => {}
            Err(_) if output.overflowed => return Err(too_large(text)),
            Err(err) => return Err(render_error(text, &err, false)),
        }
        let rendered = String::from_utf8(output.bytes).map_err(|err| Error::Render {
            source_text: clip(text),
            detail: err.to_string(),
        })?;
        self.spend(text, bounded::string_bytes(&rendered))?;
        Ok(Value::String(rendered))
    }

    /// The exact-value rule: `{{ expr }}` alone yields the JSON value of `expr`.
    fn exact(&mut self, text: &str, expression: &str) -> Result<Value, Error> {
        let compiled = self
            .env
            .compile_expression(expression)
            .map_err(|err| syntax_error(text, &err))?;
        let result = compiled
            .eval(self.context.clone())
            .map_err(|err| render_error(text, &err, false))?;
        if result.is_undefined() {
            // Strict mode fails a template that prints undefined, with a message
            // naming the missing part; `eval` just hands undefined back.
            return Err(undefined_error(
                self.env,
                text,
                text,
                self.context.clone(),
                false,
            ));
        }
        bounded::to_json(&result, &mut self.budget, 0).map_err(|stop| match stop {
            bounded::Stop::TooLarge => too_large(text),
            bounded::Stop::Undefined => Error::Render {
                source_text: clip(text),
                detail: "undefined value: the result holds an undefined value".to_owned(),
            },
            bounded::Stop::Invalid(detail) => Error::Render {
                source_text: clip(text),
                detail,
            },
        })
    }
}

fn stop_text(stop: &bounded::Stop) -> String {
    match stop {
        bounded::Stop::TooLarge => {
            format!("the value would print to more than {TEMPLATE_OUTPUT_BYTES_MAX} bytes")
        }
        bounded::Stop::Undefined => "the value holds an undefined value".to_owned(),
        bounded::Stop::Invalid(detail) => detail.clone(),
    }
}

/// The strict-mode error for an expression that evaluated to undefined,
/// obtained by rendering `probe` (a template using the expression).
fn undefined_error(
    env: &Environment<'_>,
    source_text: &str,
    probe: &str,
    context: minijinja::Value,
    withheld: bool,
) -> Error {
    match env.render_str(probe, context) {
        // A probe that does not compile (a `%}` inside a string literal, say)
        // says nothing about the undefined value: fall through to the plain message.
        Err(err) if err.kind() != minijinja::ErrorKind::SyntaxError => {
            render_error(source_text, &err, withheld)
        }
        _ => Error::Render {
            source_text: clip(source_text),
            detail: "undefined value".to_owned(),
        },
    }
}

/// An in-memory `io::Write` that refuses to grow past its limit.
#[derive(Debug)]
struct BoundedBuffer {
    bytes: Vec<u8>,
    limit: usize,
    overflowed: bool,
}

impl BoundedBuffer {
    fn new(limit: usize) -> BoundedBuffer {
        BoundedBuffer {
            bytes: Vec::new(),
            limit,
            overflowed: false,
        }
    }
}

impl std::io::Write for BoundedBuffer {
    fn write(&mut self, chunk: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len() + chunk.len() > self.limit {
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

/// The source of a template as quoted in errors: long ones are cut, so an
/// error always fits in the event that records it.
fn clip(text: &str) -> String {
    match text.char_indices().nth(ERROR_SOURCE_CHARS_MAX) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// An error of an evaluation that read a secret: its detail may quote the
/// value (`cannot convert 'hunter2' to int`), so it is not passed on.
fn withhold(err: Error) -> Error {
    const WITHHELD: &str =
        "the evaluation read a secret, so its error is not shown (it could quote the secret)";
    match err {
        Error::Render { source_text, .. } => Error::Render {
            source_text,
            detail: WITHHELD.to_owned(),
        },
        other => other,
    }
}

fn too_large(text: &str) -> Error {
    Error::TooLarge {
        source_text: clip(text),
        limit_bytes: TEMPLATE_OUTPUT_BYTES_MAX,
    }
}

fn syntax_error(text: &str, err: &minijinja::Error) -> Error {
    Error::Syntax {
        source_text: clip(text),
        detail: describe(err),
    }
}

fn render_error(text: &str, err: &minijinja::Error, withheld: bool) -> Error {
    let error = Error::Render {
        source_text: clip(text),
        detail: describe(err),
    };
    if withheld { withhold(error) } else { error }
}

fn describe(err: &minijinja::Error) -> String {
    match err.detail() {
        Some(detail) => format!("{}: {detail}", err.kind()),
        None => err.kind().to_string(),
    }
}
