//! The `needs` graph: unknown needs, cycles, and every step's ancestors,
//! all in time near-linear in steps + edges (docs/bench-validate.md).
//!
//! Ancestry is one bitset per strongly connected component, filled in the
//! order Tarjan's algorithm emits components (every component after the
//! ones it needs): each edge costs one bitset union of `steps / 64` words,
//! at most `EDGES_MAX * STEPS_MAX / 64` (1M) word operations per workflow.

use std::collections::{BTreeMap, HashSet};

use fixedbitset::FixedBitSet;
use petgraph::graph::{DiGraph, NodeIndex};

use super::diagnostic::Code;
use super::fields::{Sink, quoted_list, suggest};
use super::step::{EDGES_MAX, NEEDS_MAX, STEPS_MAX, StepSource, is_valid_step_id};

/// Distinct cycles reported per workflow; each report is as long as its
/// cycle, so more would cost time and memory quadratic in the steps.
pub const CYCLES_REPORTED_MAX: usize = 20;
/// Diagnostics after which hints that search every step id (suggestions,
/// the list of steps) are left out: they cost O(steps) each, and at most
/// `DIAGNOSTICS_MAX` diagnostics are shown anyway.
pub const HINTED_DIAGNOSTICS_MAX: usize = super::DIAGNOSTICS_MAX;
/// Step ids listed in a hint before it says how many more there are.
pub const STEP_IDS_IN_HINT_MAX: usize = 20;

// The bound the ancestry is sized for (and benchmarked at) covers the largest workflow.
const _: () = assert!(STEPS_MAX * NEEDS_MAX <= EDGES_MAX);

/// The steps in id order, their `needs` as indices, and their ancestors.
pub(crate) struct Dag<'a> {
    ids: Vec<&'a str>,
    needs: Vec<Vec<usize>>,
    /// Per step, the index of its component in `ancestors`.
    component: Vec<usize>,
    /// Per component, every step that must finish before its steps (a step
    /// on a cycle is its own ancestor).
    ancestors: Vec<FixedBitSet>,
}

impl<'a> Dag<'a> {
    /// Builds the graph from the steps (unknown needs are left out).
    pub(crate) fn new(steps: &'a BTreeMap<String, StepSource<'_>>) -> Dag<'a> {
        let ids: Vec<&str> = steps.keys().map(String::as_str).collect();
        let needs: Vec<Vec<usize>> = steps
            .values()
            .map(|source| {
                let known = source.needs.iter();
                known
                    .filter_map(|(need, _)| ids.binary_search(&need.as_str()).ok())
                    .collect()
            })
            .collect();
        let mut graph: DiGraph<(), ()> = DiGraph::with_capacity(ids.len(), 0);
        for _ in &ids {
            graph.add_node(());
        }
        for (step, step_needs) in needs.iter().enumerate() {
            for need in step_needs {
                graph.add_edge(NodeIndex::new(step), NodeIndex::new(*need), ());
            }
        }
        // Components come needs-first (Tarjan emits them in reverse topological order).
        let components = petgraph::algo::tarjan_scc(&graph);
        let mut component = vec![0; ids.len()];
        for (index, members) in components.iter().enumerate() {
            for member in members {
                component[member.index()] = index;
            }
        }
        let mut ancestors: Vec<FixedBitSet> = Vec::with_capacity(components.len());
        for (index, members) in components.iter().enumerate() {
            let mut set = FixedBitSet::with_capacity(ids.len());
            let mut cyclic = members.len() > 1;
            for member in members {
                for need in &needs[member.index()] {
                    if component[*need] == index {
                        cyclic = true;
                    } else {
                        set.union_with(&ancestors[component[*need]]);
                        set.insert(*need);
                    }
                }
            }
            if cyclic {
                members.iter().for_each(|member| set.insert(member.index()));
            }
            ancestors.push(set);
        }
        Dag {
            ids,
            needs,
            component,
            ancestors,
        }
    }

    /// Index of a step id.
    pub(crate) fn index(&self, id: &str) -> Option<usize> {
        self.ids.binary_search(&id).ok()
    }

    /// Whether `ancestor` must finish before `step` (transitively through `needs`).
    pub(crate) fn is_ancestor(&self, step: usize, ancestor: usize) -> bool {
        self.ancestors[self.component[step]].contains(ancestor)
    }

    /// Reports each distinct cycle once (at most [`CYCLES_REPORTED_MAX`]), as
    /// `a -> b -> a` starting at its smallest id.
    pub(crate) fn report_cycles(&self, sink: &mut Sink, steps: &BTreeMap<String, StepSource<'_>>) {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            New,
            Open,
            Done,
        }
        let mut marks = vec![Mark::New; self.ids.len()];
        // Where an open step sits on the stack, for cutting a cycle out of it.
        let mut stack_position = vec![0; self.ids.len()];
        let mut seen: HashSet<Vec<usize>> = HashSet::new();
        for start in 0..self.ids.len() {
            if marks[start] != Mark::New {
                continue;
            }
            // Iterative DFS: (step, index of the next need to follow).
            let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
            marks[start] = Mark::Open;
            while let Some((node, next)) = stack.last().copied() {
                let Some(&target) = self.needs[node].get(next) else {
                    marks[node] = Mark::Done;
                    stack.pop();
                    continue;
                };
                if let Some(top) = stack.last_mut() {
                    top.1 += 1;
                }
                match marks[target] {
                    Mark::New => {
                        marks[target] = Mark::Open;
                        stack_position[target] = stack.len();
                        stack.push((target, 0));
                    }
                    Mark::Open if seen.len() < CYCLES_REPORTED_MAX => {
                        let begin = stack_position[target];
                        let cycle = stack[begin..].iter().map(|(open, _)| *open).collect();
                        self.report_cycle(sink, steps, cycle, &mut seen);
                    }
                    Mark::Open | Mark::Done => {}
                }
            }
        }
    }

    fn report_cycle(
        &self,
        sink: &mut Sink,
        steps: &BTreeMap<String, StepSource<'_>>,
        mut cycle: Vec<usize>,
        seen: &mut HashSet<Vec<usize>>,
    ) {
        // Ids are sorted, so the smallest index is the smallest id.
        let smallest = (0..cycle.len())
            .min_by_key(|index| cycle[*index])
            .unwrap_or(0);
        cycle.rotate_left(smallest);
        if !seen.insert(cycle.clone()) {
            return;
        }
        let first = self.ids[cycle[0]];
        let second = self.ids[cycle.get(1).copied().unwrap_or(cycle[0])];
        let pos = steps[first]
            .needs
            .iter()
            .find(|(need, _)| need == second)
            .map(|(_, pos)| *pos)
            .unwrap_or(steps[first].pos);
        let mut path: Vec<&str> = cycle.iter().map(|index| self.ids[*index]).collect();
        path.push(first);
        let message = format!("`needs` forms a cycle: {}", path.join(" -> "));
        let hint =
            Some("a step cannot wait for itself; remove one of these `needs` entries".to_owned());
        sink.error(Code::Cycle, pos, message, hint);
    }
}

/// Reports every `needs` entry that names no step.
pub(crate) fn unknown_needs(sink: &mut Sink, steps: &BTreeMap<String, StepSource<'_>>) {
    for (id, source) in steps {
        for (need, pos) in &source.needs {
            if steps.contains_key(need) {
                continue;
            }
            let hint = step_hint(sink, need, steps, Some(id));
            sink.error(
                Code::UnknownNeed,
                *pos,
                format!("step `{id}` needs `{need}`, which is not a step"),
                hint,
            );
        }
    }
}

/// "did you mean `x`?" (never `except`) or the list of steps; left out once
/// the sink holds [`HINTED_DIAGNOSTICS_MAX`] diagnostics (each costs O(steps)).
pub(crate) fn step_hint(
    sink: &Sink,
    name: &str,
    steps: &BTreeMap<String, StepSource<'_>>,
    except: Option<&str>,
) -> Option<String> {
    if sink.diagnostics.len() >= HINTED_DIAGNOSTICS_MAX {
        return None;
    }
    let ids = steps.keys().map(String::as_str);
    // Only ids that are valid themselves: never suggest one that is refused too.
    let candidates = ids
        .clone()
        .filter(|id| Some(*id) != except && is_valid_step_id(id));
    if let Some(best) = suggest(name, candidates) {
        return Some(format!("did you mean `{best}`?"));
    }
    let listed = quoted_list(ids.take(STEP_IDS_IN_HINT_MAX));
    Some(match steps.len().checked_sub(STEP_IDS_IN_HINT_MAX) {
        Some(more) if more > 0 => format!("steps are: {listed} and {more} more"),
        _ => format!("steps are: {listed}"),
    })
}
