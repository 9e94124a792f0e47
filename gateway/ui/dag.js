// Draws a DAG placed by the server's layered layout (`Workflow.layout`,
// the layout-rs crate): one box per step, one curve per need. Statuses
// are classes, so they change live without drawing again.
import {s, h} from './dom.js';

export const LAYOUT_FIELDS = 'layout { width height nodes { id label kind x y width height forEach conditional missing } edges { from to rule path } }';

/**
 * The drawing, and `update(steps)` to show each step's status, attempts
 * and for_each progress. `onSelect(id)` is called when a step is chosen.
 */
export function dagView(layout, onSelect) {
  if (!layout.nodes.length) return {element: h('p', {class: 'state empty'}, 'This workflow has no steps.'), update() {}, select() {}};
  const width = Math.max(layout.width, 1);
  const height = Math.max(layout.height, 1);
  const svg = s('svg', {class: 'dag', viewBox: `0 0 ${width} ${height}`, width, height, role: 'group', 'aria-label': 'Workflow DAG'},
    s('defs', {}, s('marker', {id: 'arrow', viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse'},
      s('path', {d: 'M 0 0 L 10 5 L 0 10 z', class: 'arrow-head'}))));
  for (const edge of layout.edges) {
    svg.append(s('path', {d: edge.path, class: 'edge', 'marker-end': 'url(#arrow)'},
      s('title', {}, `${edge.from} → ${edge.to}${edge.rule ? ` (${edge.rule})` : ''}`)));
  }
  const nodes = new Map();
  for (const node of layout.nodes) {
    const status = s('text', {x: node.x + node.width / 2, y: node.y + node.height + 13, class: 'node-status', 'text-anchor': 'middle'});
    const group = s('g', {
      class: `node status-pending${node.missing ? ' missing' : ''}${node.conditional ? ' conditional' : ''}${node.forEach ? ' for-each' : ''}`,
      tabindex: 0, role: 'button', dataset: {step: node.id},
      on: {
        click: () => onSelect && onSelect(node.id),
        keydown: (event) => { if (event.key === 'Enter' || event.key === ' ') { event.preventDefault(); onSelect && onSelect(node.id); } },
      },
    },
    node.forEach ? s('rect', {x: node.x + 4, y: node.y + 4, width: node.width, height: node.height, rx: 4, class: 'stack'}) : null,
    s('rect', {x: node.x, y: node.y, width: node.width, height: node.height, rx: 4, class: 'box'}),
    s('text', {x: node.x + node.width / 2, y: node.y + node.height / 2 + 5, 'text-anchor': 'middle', class: 'label'}, node.label),
    status);
    nodes.set(node.id, {group, status});
    svg.append(group);
  }
  // Room for the status lines under the lowest boxes.
  svg.setAttribute('height', height + 18);
  svg.setAttribute('viewBox', `0 0 ${width} ${height + 18}`);
  return {
    element: h('div', {class: 'dag-scroll', tabindex: 0, role: 'region', 'aria-label': 'DAG drawing'}, svg),
    update(steps) {
      for (const step of steps) {
        const node = nodes.get(step.id);
        if (!node) continue;
        const selected = node.group.classList.contains('selected');
        node.group.setAttribute('class', node.group.getAttribute('class').replace(/status-\w+/, `status-${step.status.toLowerCase()}`));
        node.group.dataset.status = step.status.toLowerCase();
        if (selected) node.group.classList.add('selected');
        const parts = [step.status.toLowerCase()];
        if (step.items !== null && step.items !== undefined) parts.push(`${step.itemsDone ?? 0}/${step.items} items`);
        // Retries: more attempts than executions (one per for_each item).
        const executions = step.items !== null && step.items !== undefined ? step.items : 1;
        if (step.attempts > executions) parts.push(`${step.attempts - executions} retries`);
        node.status.textContent = parts.join(' · ');
      }
    },
    select(id) {
      for (const [key, node] of nodes) node.group.classList.toggle('selected', key === id);
    },
  };
}
