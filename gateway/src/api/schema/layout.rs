//! `Workflow.layout`: the DAG placed by a layered (Sugiyama-style, as
//! Graphviz `dot`) layout, the `layout-rs` crate, for clients that draw it
//! themselves (the web UI). The nodes and edges are `imx_core::graph`'s, so
//! the picture shows what `imx graph` and `Workflow.mermaid` show.
//!
//! `layout-rs` renders through a backend trait; [`Recorder`] is a backend
//! that keeps the boxes and edge curves it is given instead of writing SVG,
//! so the client gets coordinates and does its own (escaped) drawing.

use async_graphql::SimpleObject;
use engine::core::graph;
use engine::core::workflow::Workflow;
use layout::core::base::Orientation;
use layout::core::format::{ClipHandle, RenderBackend};
use layout::core::geometry::Point;
use layout::core::style::StyleAttr;
use layout::std_shapes::render::get_shape_size;
use layout::std_shapes::shapes::{Arrow, Element, ShapeKind};
use layout::topo::layout::VisualGraph;

/// Font size the boxes are sized for (the UI draws labels at this size).
pub const LAYOUT_FONT_PX: usize = 14;
/// Empty space around the drawing, in layout units (CSS pixels).
const MARGIN: f64 = 8.0;

/// A workflow's DAG with every node and edge placed.
#[derive(Debug, Clone, SimpleObject)]
pub struct DagLayout {
    /// Width of the drawing (CSS pixels).
    pub width: f64,
    pub height: f64,
    pub nodes: Vec<DagNode>,
    pub edges: Vec<DagEdge>,
}

/// One step's box (or a need naming no step: `missing`).
#[derive(Debug, Clone, SimpleObject)]
pub struct DagNode {
    /// The step id.
    pub id: String,
    /// `id [kind]`, with ` if` / ` for_each` as `imx graph` labels it.
    pub label: String,
    /// The step's `uses`; null for a missing step.
    pub kind: Option<String>,
    /// Top-left corner.
    pub x: f64,
    pub y: f64,
    pub width: f64,
    pub height: f64,
    pub for_each: bool,
    pub conditional: bool,
    pub missing: bool,
}

/// One need, drawn from the needed step to the step that needs it.
#[derive(Debug, Clone, SimpleObject)]
pub struct DagEdge {
    pub from: String,
    pub to: String,
    /// The needing step's trigger rule when not the default.
    pub rule: Option<String>,
    /// SVG path data (cubic Béziers) in the drawing's coordinates.
    pub path: String,
}

/// Lays `workflow` out. CPU-bound: call it off the async workers.
pub fn layout(workflow: &Workflow) -> DagLayout {
    let nodes = graph::nodes(workflow);
    let edges = graph::edges(workflow);
    if nodes.is_empty() {
        return DagLayout {
            width: 0.0,
            height: 0.0,
            nodes: Vec::new(),
            edges: Vec::new(),
        };
    }
    let mut visual = VisualGraph::new(Orientation::TopToBottom);
    let mut handles = Vec::with_capacity(nodes.len());
    for (index, node) in nodes.iter().enumerate() {
        let shape = ShapeKind::new_box(&node.label());
        let size = get_shape_size(Orientation::TopToBottom, &shape, LAYOUT_FONT_PX, false);
        let element = Element::create_with_properties(
            shape,
            StyleAttr::simple(),
            Orientation::TopToBottom,
            size,
            index.to_string(),
        );
        handles.push(visual.add_node(element));
    }
    let index_of = |id: &str| nodes.iter().position(|node| node.id == id);
    for (index, edge) in edges.iter().enumerate() {
        if let (Some(from), Some(to)) = (index_of(edge.from), index_of(edge.to)) {
            let arrow = Arrow::simple_with_properties("", index.to_string());
            visual.add_edge(arrow, handles[from], handles[to]);
        }
    }
    let mut recorder = Recorder::default();
    visual.do_it(false, false, false, &mut recorder);

    // Move the drawing so that it starts at (MARGIN, MARGIN).
    let (mut left, mut top) = (f64::INFINITY, f64::INFINITY);
    let (mut right, mut bottom) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
    let mut grow = |point: Point| {
        left = left.min(point.x);
        top = top.min(point.y);
        right = right.max(point.x);
        bottom = bottom.max(point.y);
    };
    for (_, corner, size) in &recorder.boxes {
        grow(*corner);
        grow(corner.add(*size));
    }
    for (_, path) in &recorder.curves {
        for (point, control) in path {
            grow(*point);
            grow(*control);
        }
    }
    let shift = |point: Point| (point.x - left + MARGIN, point.y - top + MARGIN);

    let mut placed = Vec::with_capacity(nodes.len());
    for (index, corner, size) in &recorder.boxes {
        let Some(node) = nodes.get(*index) else {
            continue;
        };
        let (x, y) = shift(*corner);
        placed.push(DagNode {
            id: node.id.to_owned(),
            label: node.label(),
            kind: node.step.map(|step| step.uses.to_string()),
            x: round(x),
            y: round(y),
            width: round(size.x),
            height: round(size.y),
            for_each: node.step.is_some_and(|step| step.fans_out()),
            conditional: node.step.is_some_and(|step| step.condition.is_some()),
            missing: node.step.is_none(),
        });
    }
    let mut lines = Vec::with_capacity(edges.len());
    for (index, path) in &recorder.curves {
        let Some(edge) = edges.get(*index) else {
            continue;
        };
        lines.push(DagEdge {
            from: edge.from.to_owned(),
            to: edge.to.to_owned(),
            rule: edge.rule.map(str::to_owned),
            path: svg_path(path, shift),
        });
    }
    DagLayout {
        width: round(right - left + 2.0 * MARGIN),
        height: round(bottom - top + 2.0 * MARGIN),
        nodes: placed,
        edges: lines,
    }
}

fn round(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}

/// `layout-rs`'s curve (the first pair is the exit point and its control
/// point, every other pair an entry point and its control point) as SVG
/// path data: `M p0 C c0, c1 p1 S c2 p2 …`, as its own SVG backend writes it.
fn svg_path(path: &[(Point, Point)], shift: impl Fn(Point) -> (f64, f64)) -> String {
    let point = |p: Point| {
        let (x, y) = shift(p);
        format!("{} {}", round(x), round(y))
    };
    let mut out = String::new();
    let (Some(first), Some(second)) = (path.first(), path.get(1)) else {
        return out;
    };
    out.push_str(&format!(
        "M {} C {}, {}, {}",
        point(first.0),
        point(first.1),
        point(second.0),
        point(second.1)
    ));
    for pair in path.iter().skip(2) {
        out.push_str(&format!(" S {}, {}", point(pair.0), point(pair.1)));
    }
    out
}

/// A `layout-rs` backend that records the placed boxes (by the index in
/// their properties) and edge curves instead of drawing them.
#[derive(Default)]
struct Recorder {
    boxes: Vec<(usize, Point, Point)>,
    curves: Vec<(usize, Vec<(Point, Point)>)>,
}

impl RenderBackend for Recorder {
    fn draw_rect(
        &mut self,
        xy: Point,
        size: Point,
        _look: &StyleAttr,
        properties: Option<String>,
        _clip: Option<ClipHandle>,
    ) {
        if let Some(index) = properties.and_then(|text| text.parse().ok()) {
            self.boxes.push((index, xy, size));
        }
    }

    fn draw_line(&mut self, _: Point, _: Point, _: &StyleAttr, _: Option<String>) {}

    fn draw_circle(&mut self, _: Point, _: Point, _: &StyleAttr, _: Option<String>) {}

    fn draw_text(&mut self, _: Point, _: &str, _: &StyleAttr) {}

    fn draw_arrow(
        &mut self,
        path: &[(Point, Point)],
        _dashed: bool,
        _head: (bool, bool),
        _look: &StyleAttr,
        properties: Option<String>,
        _text: &str,
    ) {
        if let Some(index) = properties.and_then(|text| text.parse().ok()) {
            self.curves.push((index, path.to_vec()));
        }
    }

    fn create_clip(&mut self, _: Point, _: Point, _: usize) -> ClipHandle {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(source: &str) -> Workflow {
        engine::core::dsl::parse(source)
            .workflow
            .expect("the workflow parses")
    }

    #[test]
    fn a_diamond_is_layered_top_to_bottom_with_one_curve_per_need() {
        let workflow = parse(
            "name: diamond\nsteps:\n  a: { uses: noop }\n  b: { uses: noop, needs: [a] }\n  c: { uses: noop, needs: [a] }\n  d: { uses: noop, needs: [b, c] }\n",
        );
        let placed = layout(&workflow);
        let node = |id: &str| {
            placed
                .nodes
                .iter()
                .find(|node| node.id == id)
                .expect("every step is placed")
        };
        assert_eq!(placed.nodes.len(), 4);
        assert_eq!(placed.edges.len(), 4);
        // Layers: a above b and c, which share a row, above d.
        assert!(node("a").y + node("a").height <= node("b").y);
        assert_eq!(node("b").y, node("c").y);
        assert!(
            node("b").x + node("b").width <= node("c").x
                || node("c").x + node("c").width <= node("b").x
        );
        assert!(node("c").y + node("c").height <= node("d").y);
        for edge in &placed.edges {
            assert!(edge.path.starts_with("M "), "{}", edge.path);
        }
        for node in &placed.nodes {
            assert!(node.x >= 0.0 && node.x + node.width <= placed.width);
            assert!(node.y >= 0.0 && node.y + node.height <= placed.height);
        }
    }
}
