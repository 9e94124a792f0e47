//! Steps: the `steps` mapping, each step's keys, defaults merged into it, and
//! the shape of `with` for each step kind (see `with.rs`).

use std::collections::BTreeMap;

use super::diagnostic::Code;
use super::fields::{self, Sink, Spec, suggest};
use super::habits::Place;
use super::parse::{Defaults, check_intervals, retry_patch};
use super::yaml::{Node, Pos, Value};
use crate::workflow::{
    FOR_EACH_MAX_PARALLEL_DEFAULT, ForEach, Matrix, RetryPolicy, Step, StepKind, TriggerRule,
};

/// Most steps in one workflow.
pub const STEPS_MAX: usize = 1_000;
/// Most entries in one step's `needs`.
pub const NEEDS_MAX: usize = 64;
/// Most `needs` edges in one workflow: what validation (near-linear in
/// steps and edges) and the runtime are sized and benchmarked for. Today
/// every workflow within [`STEPS_MAX`] and [`NEEDS_MAX`] is within it (a
/// compile-time assertion in `dag.rs`); raising either limit past it fails
/// the build until the validator is benchmarked at the new size.
pub const EDGES_MAX: usize = 64_000;
/// Longest step id, in bytes.
pub const STEP_ID_BYTES_MAX: usize = 64;
/// Largest `max_parallel` of a `for_each` step.
pub const FOR_EACH_MAX_PARALLEL_MAX: u64 = 1_000;

const STEP_KEYS: &[&str] = &[
    "uses",
    "with",
    "needs",
    "if",
    "for_each",
    "matrix",
    "max_parallel",
    "fail_fast",
    "trigger_rule",
    "continue_on_error",
    "timeout",
    "retry",
];

/// Where the parts of a step that are checked across steps were written.
#[derive(Debug)]
pub(crate) struct StepSource<'a> {
    /// The step id's key in `steps`.
    pub pos: Pos,
    /// Each `needs` entry, deduplicated, with its position.
    pub needs: Vec<(String, Pos)>,
    pub with: Option<&'a Node>,
    pub for_each: Option<&'a Node>,
    /// The `if` expression and its position.
    pub condition: Option<(String, Pos)>,
    /// Declared under `finally:`.
    pub finally: bool,
    pub matrix: Option<&'a Node>,
    /// The names a `matrix` step's templates may read as `matrix.<name>`.
    pub matrix_names: Vec<String>,
}

/// Reads the `steps` mapping. `anchor` is the position of the `steps` key.
pub(crate) fn steps<'a>(
    sink: &mut Sink,
    anchor: Pos,
    node: &'a Node,
    defaults: &Defaults,
) -> (BTreeMap<String, Step>, BTreeMap<String, StepSource<'a>>) {
    let mut steps = BTreeMap::new();
    let mut sources: BTreeMap<String, StepSource<'a>> = BTreeMap::new();
    let Value::Map(entries) = &node.value else {
        let message = format!(
            "`steps` must be a mapping from step id to step, found {}",
            node.value.kind()
        );
        sink.error(Code::WrongType, node.pos, message, None);
        return (steps, sources);
    };
    if entries.is_empty() {
        sink.error(
            Code::MissingKey,
            anchor,
            "`steps` must define at least one step",
            None,
        );
    }
    if entries.len() > STEPS_MAX {
        let message = format!(
            "{} steps, more than the limit of {STEPS_MAX}",
            entries.len()
        );
        sink.error(
            Code::LimitExceeded,
            anchor,
            message,
            Some("split the workflow and call the parts with `uses: workflow`".to_owned()),
        );
    }
    for (key, step_node) in entries.iter().take(STEPS_MAX) {
        let Some(id) = fields::plain_key(sink, key) else {
            continue;
        };
        if let Some(first) = sources.get(id) {
            let message = format!("duplicate step id `{id}`");
            let hint = format!(
                "the first step `{id}` is at line {}, column {}; rename one of them",
                first.pos.line, first.pos.column
            );
            sink.error(Code::DuplicateStepId, key.pos, message, Some(hint));
            continue;
        }
        check_step_id(sink, id, key.pos);
        let (step, source) = step(sink, id, key.pos, step_node, defaults);
        sources.insert(id.to_owned(), source);
        if let Some(step) = step {
            steps.insert(id.to_owned(), step);
        }
    }
    (steps, sources)
}

fn check_step_id(sink: &mut Sink, id: &str, pos: Pos) {
    if !matches_step_id_pattern(id) {
        let message = format!("step id `{id}` must match `[a-z][a-z0-9_]*`");
        let why = "templates read steps as `steps.<id>`, where `-` or `.` would not parse";
        let hint = match valid_step_id_from(id) {
            Some(fixed) => format!("{why}; try `{fixed}`"),
            None => format!("{why}; start with a letter"),
        };
        sink.error(Code::InvalidStepId, pos, message, Some(hint));
    } else if id.len() > STEP_ID_BYTES_MAX {
        let message =
            format!("step id `{id}` is longer than the limit of {STEP_ID_BYTES_MAX} bytes");
        sink.error(Code::LimitExceeded, pos, message, None);
    }
}

/// Whether `id` is a step id templates can read (`[a-z][a-z0-9_]*`, at most
/// [`STEP_ID_BYTES_MAX`] bytes).
pub(crate) fn is_valid_step_id(id: &str) -> bool {
    id.len() <= STEP_ID_BYTES_MAX && matches_step_id_pattern(id)
}

fn matches_step_id_pattern(id: &str) -> bool {
    let mut chars = id.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// The valid step id closest to what was written (`Flip-Coin` → `flip_coin`),
/// for hints; `None` when there is none (no letter to start with), so that a
/// hint never suggests an id that is itself refused.
pub(crate) fn valid_step_id_from(text: &str) -> Option<String> {
    let mapped: String = text
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let trimmed = mapped.trim_start_matches('_');
    // `2nd` → `step_2nd`: an id starts with a letter.
    let prefixed = if trimmed.starts_with(|c: char| c.is_ascii_digit()) {
        format!("step_{trimmed}")
    } else {
        trimmed.to_owned()
    };
    let mut fixed: String = prefixed.chars().take(STEP_ID_BYTES_MAX).collect();
    while fixed.contains("__") {
        fixed = fixed.replace("__", "_");
    }
    let fixed = fixed.trim_end_matches('_').to_owned();
    is_valid_step_id(&fixed).then_some(fixed)
}

fn step<'a>(
    sink: &mut Sink,
    id: &str,
    pos: Pos,
    node: &'a Node,
    defaults: &Defaults,
) -> (Option<Step>, StepSource<'a>) {
    let mut source = StepSource {
        pos,
        needs: Vec::new(),
        with: None,
        for_each: None,
        condition: None,
        finally: false,
        matrix: None,
        matrix_names: Vec::new(),
    };
    let what = format!("step `{id}`");
    let spec = Spec {
        place: Place::Step,
        ..Spec::new(&what, STEP_KEYS, &["uses"], pos)
    };
    let Some(fields) = fields::fields(sink, node, spec) else {
        return (None, source);
    };
    let kind = fields.get("uses").and_then(|node| uses(sink, node));
    source.with = fields.get("with");
    if let Some(kind) = kind {
        super::with::check(sink, kind, &what, pos, source.with);
    }
    if let Some(node) = fields.get("needs") {
        source.needs = needs(sink, node);
    }
    if let Some(node) = fields.get("if") {
        source.condition = condition(sink, node).map(|text| (text, node.pos));
    }
    let matrix = fan_out_matrix(sink, &fields, &mut source);
    let (for_each, max_parallel) = for_each(sink, &fields, &mut source);
    let matrix = matrix.map(|parsed| Matrix {
        axes: parsed.axes,
        include: parsed.include,
        exclude: parsed.exclude,
        max_parallel: max_parallel.unwrap_or(FOR_EACH_MAX_PARALLEL_DEFAULT),
    });
    let fail_fast = fields
        .get("fail_fast")
        .and_then(|node| fields::boolean(sink, node, "`fail_fast`"));
    if let Some((key, _)) = fields.entry("fail_fast")
        && source.for_each.is_none()
        && source.matrix.is_none()
    {
        let message = "`fail_fast` only applies to a step with `for_each` or `matrix`";
        sink.error(Code::InvalidForEach, key.pos, message, None);
    }
    let trigger_rule = fields
        .get("trigger_rule")
        .and_then(|node| trigger_rule(sink, node));
    let continue_on_error = fields
        .get("continue_on_error")
        .and_then(|node| fields::boolean(sink, node, "`continue_on_error`"));
    let timeout_ms = match fields.get("timeout") {
        Some(node) => fields::duration(sink, node, "`timeout`", true),
        None => defaults.timeout_ms,
    };
    let retry = match fields.get("retry") {
        Some(node) => {
            let policy: RetryPolicy =
                retry_patch(sink, node, &format!("`retry` of {what}")).apply(&defaults.retry);
            check_intervals(sink, node.pos, &policy);
            policy
        }
        None => defaults.retry.clone(),
    };
    let step = kind.map(|kind| Step {
        id: id.to_owned(),
        uses: kind,
        with: source
            .with
            .map(Node::to_json)
            .unwrap_or(serde_json::Value::Null),
        needs: source.needs.iter().map(|(need, _)| need.clone()).collect(),
        condition: source.condition.as_ref().map(|(text, _)| text.clone()),
        for_each,
        trigger_rule: trigger_rule.unwrap_or_default(),
        continue_on_error: continue_on_error.unwrap_or(false),
        timeout_ms,
        retry,
        finally: false,
        matrix,
        fail_fast,
    });
    (step, source)
}

/// Adds the `finally:` steps to the main ones: one id space (templates read
/// both as `steps.<id>`), so an id used in both is a duplicate.
pub(crate) fn merge_finally<'a>(
    sink: &mut Sink,
    steps: &mut BTreeMap<String, Step>,
    sources: &mut BTreeMap<String, StepSource<'a>>,
    finally_steps: BTreeMap<String, Step>,
    finally_sources: BTreeMap<String, StepSource<'a>>,
) {
    if sources.len() + finally_sources.len() > STEPS_MAX {
        let message = format!(
            "{} steps and `finally:` steps, more than the limit of {STEPS_MAX}",
            sources.len() + finally_sources.len()
        );
        let pos = finally_sources.values().next().map(|source| source.pos);
        if let Some(pos) = pos {
            sink.error(Code::LimitExceeded, pos, message, None);
        }
    }
    for (id, mut source) in finally_sources {
        if let Some(first) = sources.get(&id) {
            let message = format!("`finally:` step `{id}` has the id of a step under `steps:`");
            let hint = format!(
                "the step `{id}` is at line {}, column {}; step ids are shared by `steps` and `finally`, rename one of them",
                first.pos.line, first.pos.column
            );
            sink.error(Code::DuplicateStepId, source.pos, message, Some(hint));
            continue;
        }
        source.finally = true;
        sources.insert(id, source);
    }
    for (id, mut step) in finally_steps {
        if !steps.contains_key(&id) && sources.get(&id).is_some_and(|source| source.finally) {
            step.finally = true;
            steps.insert(id, step);
        }
    }
}

fn uses(sink: &mut Sink, node: &Node) -> Option<StepKind> {
    if fields::reject_template(sink, node, "`uses`") {
        return None;
    }
    let name = fields::string(sink, node, "`uses`")?;
    if let Some(kind) = StepKind::from_name(name) {
        return Some(kind);
    }
    let names = StepKind::ALL.map(StepKind::as_str);
    let hint = match suggest(name, names) {
        Some(best) => format!("did you mean `{best}`?"),
        // `actions/checkout@v4`, `io.kestra.plugin.core.http.Request`
        None if name.contains('/') || name.contains('@') || name.matches('.').count() > 1 => {
            format!(
                "imx runs its own step kinds, not GitHub Actions or plugins of other tools: {}; a command runs with `uses: exec`, a container or script elsewhere through `uses: agent`",
                fields::quoted_list(names)
            )
        }
        None => format!("known kinds: {}", fields::quoted_list(names)),
    };
    sink.error(
        Code::UnknownStepKind,
        node.pos,
        format!("unknown step kind `{name}`"),
        Some(hint),
    );
    None
}

/// `needs: [a, b]` or `needs: a`; duplicates are warned about and dropped.
fn needs(sink: &mut Sink, node: &Node) -> Vec<(String, Pos)> {
    let items: Vec<&Node> = match &node.value {
        Value::String(_) => vec![node],
        Value::Seq(items) => items.iter().collect(),
        other => {
            let message = format!("`needs` must be a list of step ids, found {}", other.kind());
            sink.error(Code::WrongType, node.pos, message, None);
            return Vec::new();
        }
    };
    if items.len() > NEEDS_MAX {
        let message = format!(
            "`needs` lists {} steps, more than the limit of {NEEDS_MAX}",
            items.len()
        );
        sink.error(Code::LimitExceeded, node.pos, message, None);
    }
    let mut needs: Vec<(String, Pos)> = Vec::new();
    for item in items.into_iter().take(NEEDS_MAX) {
        if fields::reject_template(sink, item, "a `needs` entry") {
            continue;
        }
        let Some(need) = fields::string(sink, item, "a `needs` entry") else {
            continue;
        };
        if needs.iter().any(|(seen, _)| seen == need) {
            sink.warning(
                Code::DuplicateNeed,
                item.pos,
                format!("`needs` lists `{need}` twice"),
                None,
            );
            continue;
        }
        needs.push((need.to_owned(), item.pos));
    }
    needs
}

fn condition(sink: &mut Sink, node: &Node) -> Option<String> {
    match &node.value {
        Value::Bool(flag) => Some(flag.to_string()),
        Value::String(text) if text.trim().is_empty() => {
            sink.error(Code::ExpressionSyntax, node.pos, "`if` is empty", None);
            None
        }
        Value::String(text) => Some(text.clone()),
        other => {
            let message = format!(
                "`if` must be an expression such as `steps.fetch.output.ok`, found {}",
                other.kind()
            );
            sink.error(Code::WrongType, node.pos, message, None);
            None
        }
    }
}

fn fan_out_matrix<'a>(
    sink: &mut Sink,
    fields: &fields::Fields<'a>,
    source: &mut StepSource<'a>,
) -> Option<super::matrix::Parsed> {
    let (key, node) = fields.entry("matrix")?;
    source.matrix = Some(node);
    if fields.has("for_each") {
        let message = "a step has `for_each` or `matrix`, not both";
        let hint = "list the combinations in `for_each`, or move the list into a matrix axis";
        sink.error(Code::InvalidMatrix, key.pos, message, Some(hint.to_owned()));
        return None;
    }
    let (parsed, valid) = super::matrix::matrix(sink, node);
    source.matrix_names = parsed.names.clone();
    valid.then_some(parsed)
}

/// `for_each` and the fan-out's `max_parallel` (of `for_each` or `matrix`).
fn for_each<'a>(
    sink: &mut Sink,
    fields: &fields::Fields<'a>,
    source: &mut StepSource<'a>,
) -> (Option<ForEach>, Option<u32>) {
    let max_parallel = fields.get("max_parallel").and_then(|node| {
        let number = fields::unsigned(sink, node, "`max_parallel`")?;
        if (1..=FOR_EACH_MAX_PARALLEL_MAX).contains(&number) {
            u32::try_from(number).ok()
        } else {
            let message = format!(
                "`max_parallel` is {number}; it must be between 1 and {FOR_EACH_MAX_PARALLEL_MAX}"
            );
            sink.error(Code::InvalidForEach, node.pos, message, None);
            None
        }
    });
    let Some(node) = fields.get("for_each") else {
        if let Some((key, _)) = fields.entry("max_parallel")
            && source.matrix.is_none()
        {
            sink.error(
                Code::InvalidForEach,
                key.pos,
                "`max_parallel` only applies to a step with `for_each` or `matrix`",
                None,
            );
        }
        return (None, max_parallel);
    };
    source.for_each = Some(node);
    match &node.value {
        Value::String(text) if text.contains("{{") => {}
        Value::Seq(_) => {}
        other => {
            let message = format!(
                "`for_each` must be a template such as `{{{{ steps.fetch.output.items }}}}` or a list, found {}",
                other.kind()
            );
            sink.error(Code::InvalidForEach, node.pos, message, None);
            return (None, max_parallel);
        }
    }
    let for_each = ForEach {
        items: node.to_json(),
        max_parallel: max_parallel.unwrap_or(FOR_EACH_MAX_PARALLEL_DEFAULT),
    };
    (Some(for_each), max_parallel)
}

fn trigger_rule(sink: &mut Sink, node: &Node) -> Option<TriggerRule> {
    if fields::reject_template(sink, node, "`trigger_rule`") {
        return None;
    }
    let name = fields::string(sink, node, "`trigger_rule`")?;
    if let Some(rule) = TriggerRule::from_name(name) {
        return Some(rule);
    }
    let names = TriggerRule::ALL.map(TriggerRule::as_str);
    let hint = match suggest(name, names) {
        Some(best) => format!("did you mean `{best}`?"),
        None => format!("expected one of: {}", fields::quoted_list(names)),
    };
    sink.error(
        Code::InvalidTriggerRule,
        node.pos,
        format!("unknown trigger rule `{name}`"),
        Some(hint),
    );
    None
}
