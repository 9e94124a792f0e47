// The runs list: newest first, filters (status, workflow, time range),
// search by id, cursor pagination, live through `runUpdates`.
import {gql, subscribe, ApiError} from './api.js';
import {h, clear, put, badge, time, duration, shortId, stateMessage} from './dom.js';

const STATUSES = ['PENDING', 'RUNNING', 'WAITING', 'PAUSED', 'SUCCEEDED', 'FAILED', 'CANCELLED'];
const ENDED = new Set(['SUCCEEDED', 'FAILED', 'CANCELLED']);
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
export const PAGE_SIZE = 20;

const RUN_FIELDS = 'id workflow version status createdAt updatedAt trigger parentRunId fork';
const RUNS = `query Runs($filter: RunFilter, $first: Int, $after: String, $last: Int, $before: String) {
  runs(filter: $filter, first: $first, after: $after, last: $last, before: $before) {
    edges { cursor node { ${RUN_FIELDS} } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
  workflows { name }
}`;
const UPDATES = `subscription Updates($filter: RunUpdatesFilter) {
  runUpdates(filter: $filter) { event { type } run { ${RUN_FIELDS} } }
}`;

export function startedBy(run) {
  if (run.trigger && run.trigger.kind) return run.trigger.kind;
  if (run.parentRunId) return 'parent run';
  if (run.fork || run.forkedFrom) return 'fork';
  return 'API / CLI';
}

function runDuration(run) {
  const end = ENDED.has(run.status) ? new Date(run.updatedAt) : new Date();
  return duration(end - new Date(run.createdAt));
}

function localInput(iso) {
  if (!iso) return '';
  const date = new Date(iso);
  const pad = (n) => String(n).padStart(2, '0');
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

function row(run) {
  return h('tr', {class: `run-row status-${run.status.toLowerCase()}`, dataset: {runId: run.id}},
    h('td', {}, h('a', {href: `#/runs/${run.id}`, class: 'mono', title: run.id}, shortId(run.id))),
    h('td', {}, run.workflow),
    h('td', {class: 'status-cell'}, badge(run.status)),
    h('td', {}, time(run.createdAt)),
    h('td', {}, runDuration(run)),
    h('td', {}, startedBy(run)));
}

export async function runsPage(main, params) {
  const filter = {};
  if (params.get('status')) filter.status = params.get('status');
  if (params.get('workflow')) filter.workflow = params.get('workflow');
  if (params.get('from')) filter.startedAfter = new Date(params.get('from')).toISOString();
  if (params.get('to')) filter.startedBefore = new Date(params.get('to')).toISOString();
  const size = Math.min(Number(params.get('size')) || PAGE_SIZE, 100);
  const variables = {filter};
  if (params.get('before')) Object.assign(variables, {last: size, before: params.get('before')});
  else Object.assign(variables, {first: size, after: params.get('after') || null});
  const firstPage = !params.get('after') && !params.get('before');

  let data;
  try {
    data = await gql(RUNS, variables);
  } catch (error) {
    put(clear(main), h('h1', {}, 'Runs'), stateMessage('error', `The runs cannot be listed: ${error.message}`));
    return () => {};
  }
  const names = [...new Set(data.workflows.map((workflow) => workflow.name))].sort();

  const go = (changes) => {
    const next = new URLSearchParams(params);
    for (const [key, value] of Object.entries(changes)) {
      if (value) next.set(key, value); else next.delete(key);
    }
    location.hash = `#/runs?${next}`;
  };

  const statusSelect = h('select', {id: 'filter-status', name: 'status'},
    h('option', {value: ''}, 'any status'),
    STATUSES.map((status) => h('option', {value: status, selected: filter.status === status}, status.toLowerCase())));
  const workflowSelect = h('select', {id: 'filter-workflow', name: 'workflow'},
    h('option', {value: ''}, 'any workflow'),
    names.map((name) => h('option', {value: name, selected: filter.workflow === name}, name)));
  const from = h('input', {id: 'filter-from', name: 'from', type: 'datetime-local', value: localInput(filter.startedAfter)});
  const to = h('input', {id: 'filter-to', name: 'to', type: 'datetime-local', value: localInput(filter.startedBefore)});
  const filters = h('form', {class: 'filters', role: 'search', 'aria-label': 'Filter runs', on: {submit: (event) => {
    event.preventDefault();
    go({status: statusSelect.value, workflow: workflowSelect.value,
      from: from.value ? new Date(from.value).toISOString() : '',
      to: to.value ? new Date(to.value).toISOString() : '', after: '', before: ''});
  }}},
  h('div', {class: 'field'}, h('label', {for: 'filter-status'}, 'Status'), statusSelect),
  h('div', {class: 'field'}, h('label', {for: 'filter-workflow'}, 'Workflow'), workflowSelect),
  h('div', {class: 'field'}, h('label', {for: 'filter-from'}, 'Started after'), from),
  h('div', {class: 'field'}, h('label', {for: 'filter-to'}, 'Started before'), to),
  h('button', {type: 'submit', class: 'primary'}, 'Apply'),
  h('button', {type: 'button', class: 'secondary', on: {click: () => { location.hash = '#/runs'; }}}, 'Clear'));

  const searchInput = h('input', {id: 'search-id', name: 'id', type: 'search', placeholder: 'run id (UUID)'});
  const searchError = h('p', {class: 'field-error', role: 'alert'});
  const search = h('form', {class: 'search', role: 'search', 'aria-label': 'Find a run by id', on: {submit: (event) => {
    event.preventDefault();
    const id = searchInput.value.trim();
    if (!UUID.test(id)) {
      searchError.textContent = 'A run id is a UUID, e.g. 0193f1c2-…';
      return;
    }
    location.hash = `#/runs/${id}`;
  }}},
  h('label', {for: 'search-id'}, 'Find run'), searchInput, h('button', {type: 'submit', class: 'secondary'}, 'Open'), searchError);

  const body = h('tbody', {});
  const edges = data.runs.edges;
  for (const edge of edges) body.append(row(edge.node));
  const table = h('table', {class: 'runs'},
    h('caption', {class: 'visually-hidden'}, 'Runs, newest first'),
    h('thead', {}, h('tr', {}, ['Run', 'Workflow', 'Status', 'Started', 'Duration', 'Started by'].map((title) => h('th', {scope: 'col'}, title)))),
    body);
  const empty = stateMessage('empty', Object.keys(filter).length ? 'No run matches these filters.' : 'No runs yet. Start one from a workflow page or with `imx run`.');
  const info = data.runs.pageInfo;
  // `first`/`after` pages go toward older runs, `last`/`before` toward newer ones.
  const hasNewer = params.get('before') ? info.hasPreviousPage : Boolean(params.get('after'));
  const hasOlder = params.get('before') ? true : info.hasNextPage;
  const pager = h('nav', {class: 'pager', 'aria-label': 'Pages'},
    h('button', {type: 'button', class: 'secondary', id: 'page-newer', disabled: !hasNewer || !edges.length,
      on: {click: () => go({before: info.startCursor, after: ''})}}, '← Newer'),
    h('button', {type: 'button', class: 'secondary', id: 'page-older', disabled: !hasOlder || !edges.length,
      on: {click: () => go({after: info.endCursor, before: ''})}}, 'Older →'));
  const live = h('p', {class: 'live', role: 'status', id: 'live-status'}, 'Live: connecting…');

  put(clear(main), 
    h('div', {class: 'page-head'}, h('h1', {}, 'Runs'), live),
    filters, search,
    edges.length ? table : empty,
    pager);

  // Live: statuses change in place; on the first page new runs appear on top.
  const updateFilter = {};
  if (filter.status) updateFilter.status = filter.status;
  if (filter.workflow) updateFilter.workflow = filter.workflow;
  const stop = subscribe(UPDATES, {filter: updateFilter}, (item) => {
    live.textContent = 'Live: up to date';
    const run = item.runUpdates.run;
    const existing = body.querySelector(`tr[data-run-id="${CSS.escape(run.id)}"]`);
    if (filter.status && run.status !== filter.status) {
      if (existing) existing.remove();
      return;
    }
    if (existing) {
      existing.replaceWith(row(run));
    } else if (firstPage && item.runUpdates.event.type === 'run.started'
      && (!filter.startedBefore || new Date(run.createdAt) < new Date(filter.startedBefore))) {
      const added = row(run);
      added.classList.add('new');
      body.prepend(added);
      if (!table.isConnected) empty.replaceWith(table);
      while (body.children.length > size) body.lastElementChild.remove();
    }
  }, (error) => {
    live.textContent = error instanceof ApiError && error.code === 'LIMIT'
      ? 'Live: fell behind; reload to catch up' : `Live: ${error.message}`;
  });
  live.textContent = 'Live';
  return stop;
}
