//! Pictures of a workflow's DAG for authors: Mermaid and Graphviz DOT text.
//!
//! Both drawings show one node per step labelled `id [kind]`, with ` if` when
//! the step has a condition and ` for_each` when it fans out, and one edge
//! from each need to the step, labelled with the step's trigger rule when it
//! is not the default. Output is deterministic: nodes in topological order
//! (ties by id), edges in the same order, needs sorted.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use crate::workflow::{Step, Workflow};

/// Mermaid `flowchart` text. Node ids are derived from step ids so that any
/// step id (even a Mermaid keyword such as `end`) is a safe Mermaid id.
pub fn mermaid(workflow: &Workflow) -> String {
    let mut out = String::from("flowchart TD\n");
    let _ = writeln!(out, "    %% workflow: {}", one_line(&workflow.name));
    let nodes = nodes(workflow);
    for node in &nodes {
        let id = mermaid_id(node.id);
        let label = mermaid_label(&node.label());
        // Fan-out steps get the "subroutine" shape (double-sided box).
        let _ = match node.step {
            Some(step) if step.fans_out() => writeln!(out, "    {id}[[\"{label}\"]]"),
            _ => writeln!(out, "    {id}[\"{label}\"]"),
        };
    }
    for edge in edges(workflow) {
        let from = mermaid_id(edge.from);
        let to = mermaid_id(edge.to);
        let _ = match edge.rule {
            Some(rule) => writeln!(out, "    {from} -->|{rule}| {to}"),
            None => writeln!(out, "    {from} --> {to}"),
        };
    }
    let conditional: Vec<String> = nodes
        .iter()
        .filter(|node| node.step.is_some_and(|step| step.condition.is_some()))
        .map(|node| mermaid_id(node.id))
        .collect();
    let missing: Vec<String> = nodes
        .iter()
        .filter(|node| node.step.is_none())
        .map(|node| mermaid_id(node.id))
        .collect();
    if !conditional.is_empty() {
        out.push_str("    classDef conditional stroke-dasharray: 5 5\n");
        let _ = writeln!(out, "    class {} conditional", conditional.join(","));
    }
    if !missing.is_empty() {
        out.push_str("    classDef missing stroke:#c00,color:#c00\n");
        let _ = writeln!(out, "    class {} missing", missing.join(","));
    }
    out
}

/// Graphviz DOT text. Ids and labels are quoted DOT strings.
pub fn dot(workflow: &Workflow) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "digraph {} {{", dot_string(&workflow.name));
    out.push_str("    rankdir=TB;\n");
    out.push_str("    node [shape=box, fontname=\"Helvetica\"];\n");
    out.push_str("    edge [fontname=\"Helvetica\", fontsize=10];\n");
    for node in nodes(workflow) {
        let mut attributes = vec![format!("label={}", dot_string(&node.label()))];
        match node.step {
            Some(step) => {
                if step.fans_out() {
                    // A stack of boxes: one execution per item.
                    attributes.push("shape=box3d".to_owned());
                }
                if step.condition.is_some() {
                    attributes.push("style=dashed".to_owned());
                }
            }
            None => attributes.push("color=red, fontcolor=red".to_owned()),
        }
        let _ = writeln!(
            out,
            "    {} [{}];",
            dot_string(node.id),
            attributes.join(", ")
        );
    }
    for edge in edges(workflow) {
        let from = dot_string(edge.from);
        let to = dot_string(edge.to);
        let _ = match edge.rule {
            Some(rule) => writeln!(out, "    {from} -> {to} [label={}];", dot_string(rule)),
            None => writeln!(out, "    {from} -> {to};"),
        };
    }
    out.push_str("}\n");
    out
}

/// A node to draw: a step, or a need naming no step (drawn in red so that a
/// picture of an invalid workflow still shows every edge).
#[derive(Debug)]
pub struct Node<'w> {
    pub id: &'w str,
    pub step: Option<&'w Step>,
}

impl Node<'_> {
    /// `id [kind]`, with ` if` and ` for_each` when they apply.
    pub fn label(&self) -> String {
        let Some(step) = self.step else {
            return format!("{} [missing]", self.id);
        };
        let mut label = format!("{} [{}]", self.id, step.uses);
        if step.condition.is_some() {
            label.push_str(" if");
        }
        if step.for_each.is_some() {
            label.push_str(" for_each");
        }
        if step.matrix.is_some() {
            label.push_str(" matrix");
        }
        if step.finally {
            label.push_str(" finally");
        }
        label
    }
}

/// One need: from the step needed to the step that needs it, with the
/// needing step's trigger rule when it is not the default.
#[derive(Debug)]
pub struct Edge<'w> {
    pub from: &'w str,
    pub to: &'w str,
    pub rule: Option<&'static str>,
}

/// Steps in topological order, then steps caught in a cycle (which
/// `topological_order` leaves out) by id, then needs that name no step.
pub fn nodes(workflow: &Workflow) -> Vec<Node<'_>> {
    let mut seen = BTreeSet::new();
    let mut nodes = Vec::with_capacity(workflow.steps.len());
    let ordered = workflow.topological_order();
    let ids = ordered
        .into_iter()
        .chain(workflow.steps.keys().map(String::as_str));
    for id in ids {
        if seen.insert(id) {
            nodes.push(Node {
                id,
                step: workflow.steps.get(id),
            });
        }
    }
    let unknown: BTreeSet<&str> = workflow
        .steps
        .values()
        .flat_map(|step| step.needs.iter().map(String::as_str))
        .filter(|need| !workflow.steps.contains_key(*need))
        .collect();
    nodes.extend(unknown.into_iter().map(|id| Node { id, step: None }));
    nodes
}

/// Every need as an edge, in the order of [`nodes`].
pub fn edges(workflow: &Workflow) -> Vec<Edge<'_>> {
    let mut edges = Vec::new();
    for node in nodes(workflow) {
        let Some(step) = node.step else { continue };
        let rule = (!step.trigger_rule.is_default()).then(|| step.trigger_rule.as_str());
        let needs: BTreeSet<&str> = step.needs.iter().map(String::as_str).collect();
        edges.extend(needs.into_iter().map(|from| Edge {
            from,
            to: node.id,
            rule,
        }));
    }
    edges
}

/// A Mermaid node id for a step id: `n_` (so no id is a Mermaid keyword or
/// starts with the `o`/`x` edge markers) followed by the id with every byte
/// outside `[A-Za-z0-9]` escaped injectively: `_` as `__`, `.` as `_d`, `-` as
/// `_h`, anything else as `_u<hex>_`.
fn mermaid_id(id: &str) -> String {
    let mut out = String::from("n_");
    for character in id.chars() {
        match character {
            'a'..='z' | 'A'..='Z' | '0'..='9' => out.push(character),
            '_' => out.push_str("__"),
            '.' => out.push_str("_d"),
            '-' => out.push_str("_h"),
            other => {
                let _ = write!(out, "_u{:x}_", u32::from(other));
            }
        }
    }
    out
}

/// Text for inside a quoted Mermaid label: characters Mermaid would read as
/// syntax or markup become `#<code>;` entities.
fn mermaid_label(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '"' | '#' | '<' | '>' | '&' | '`' | '|' | '{' | '}' => {
                let _ = write!(out, "#{};", u32::from(character));
            }
            '\n' | '\r' | '\t' => out.push(' '),
            other => out.push(other),
        }
    }
    out
}

/// A double-quoted DOT string.
fn dot_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for character in text.chars() {
        match character {
            '"' => out.push_str("\\\""),
            // A lone backslash would start a DOT label escape such as `\N`.
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            other => out.push(other),
        }
    }
    out.push('"');
    out
}

fn one_line(text: &str) -> String {
    text.chars()
        .map(|character| {
            if character.is_control() {
                ' '
            } else {
                character
            }
        })
        .collect()
}
