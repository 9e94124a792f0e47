// One run: header, the DAG with live step statuses (`runEvents`), step
// details, the event timeline with the state at any seq (`runAt`), the
// actions the caller's roles allow, and "verify history".
import {gql, subscribe, ApiError} from './api.js';
import {h, clear, put, badge, time, duration, shortId, json, stateMessage, confirmDialog} from './dom.js';
import {dagView, LAYOUT_FIELDS} from './dag.js';
import {startedBy} from './runs.js';

const ENDED = new Set(['SUCCEEDED', 'FAILED', 'CANCELLED']);
const EVENTS_PAGE = 50;
// Run-level events that change no step; any other event that names no
// step (a rewind, a retry, a timer) makes the next refresh read every step.
const STEPS_UNCHANGED = new Set(['run.succeeded', 'run.paused', 'run.resumed', 'run.cancel_requested']);
const EXECUTIONS_PAGE = 20;
const STEP_FIELDS = 'id status attempts output error startedAt finishedAt durationMs items itemsDone approvalRequest generation skippedBy adoptedFrom';
// What the DAG shows of each step: no outputs (a for_each step's output
// holds every item's), which the step details read one step at a time.
const DAG_STEP_FIELDS = 'id status attempts items itemsDone';
const HEADER_FIELDS = `id workflow version status input output error parentRunId idempotencyKey createdAt updatedAt lastSeq trigger
  forkedFrom { id } fork forks { id status }`;
const RUN_FIELDS = `${HEADER_FIELDS} steps { ${DAG_STEP_FIELDS} }`;
const RUN = `query Run($id: ID!) { me { id roles mayOperate mayApprove } run(id: $id) { ${RUN_FIELDS} } }`;
// A live refresh: the header and only the steps the new events named.
const CHANGED = `query Changed($id: ID!, $ids: [String!]) { run(id: $id) { ${HEADER_FIELDS} steps(ids: $ids) { ${DAG_STEP_FIELDS} } } }`;
const LAYOUT = `query Layout($name: String!, $version: String) { workflow(name: $name, version: $version) { ${LAYOUT_FIELDS} } }`;
const EVENTS = `query Events($id: ID!, $first: Int, $after: String, $last: Int, $before: String) {
  run(id: $id) { lastSeq events(first: $first, after: $after, last: $last, before: $before) {
    edges { cursor node { seq type recordedAt hash payload } } pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }
}`;
const STEP = `query Step($id: ID!, $step: String!, $offset: Int, $limit: Int) {
  run(id: $id) { step(id: $step) { ${STEP_FIELDS} executions(offset: $offset, limit: $limit) {
    index status attempt maxAttempts idempotencyKey input output error scheduledAt startedAt finishedAt retryAt approval childRunId } } }
}`;
const AT = `query At($id: ID!, $seq: Int!) { runAt(id: $id, seq: $seq) { seq status error output steps { id status attempts } } }`;
const VERIFY = `query Verify($id: ID!) { verifyRun(id: $id) { ok events headSeq headHash problem } }`;
const WATCH = `subscription Watch($id: ID!, $after: Int!) { runEvents(runId: $id, afterSeq: $after) { seq type recordedAt hash payload } }`;

function definition(term, ...value) {
  return [h('dt', {}, term), h('dd', {}, ...value)];
}

function errorText(error) {
  return error instanceof ApiError ? `${error.code}: ${error.message}` : String(error);
}

export async function runPage(main, id, params) {
  let data;
  try {
    data = await gql(RUN, {id});
  } catch (error) {
    const notFound = error instanceof ApiError && (error.code === 'NOT_FOUND' || error.code === 'VALIDATION');
    put(clear(main), 
      h('h1', {}, notFound ? 'Run not found' : 'Run'),
      stateMessage(notFound ? 'not-found' : 'error', notFound ? `No run has the id ${id}. ${error.message}` : `The run cannot be read: ${error.message}`),
      h('p', {}, h('a', {href: '#/runs'}, 'Back to the runs')));
    return () => {};
  }
  let run = data.run;
  const me = data.me;
  let layout = null;
  try {
    layout = (await gql(LAYOUT, {name: run.workflow, version: run.version})).workflow.layout;
  } catch (error) {
    layout = {error};
  }

  let selected = null;
  let lastSeq = run.lastSeq;
  let watchAgain = () => {};
  const header = h('section', {class: 'run-header', 'aria-label': 'Run'});
  const actions = h('div', {class: 'actions', role: 'toolbar', 'aria-label': 'Run actions'});
  const notice = h('p', {class: 'notice', role: 'status', id: 'action-result'});
  const detail = h('section', {class: 'step-detail', 'aria-label': 'Step details'}, h('p', {class: 'state empty'}, 'Choose a step in the DAG to see its attempts, input, output and error.'));
  const dag = layout.error
    ? {element: stateMessage('error', `The DAG cannot be drawn: ${layout.error.message}`), update() {}, select() {}}
    : dagView(layout, (step) => showStep(step));
  const timelineBody = h('tbody', {});
  const pageButton = (id, label) => h('button', {type: 'button', class: 'secondary', id}, label);
  const firstEvents = pageButton('events-first', '⇤ First');
  const earlierEvents = pageButton('events-earlier', '← Earlier');
  const laterEvents = pageButton('events-later', 'Later →');
  const latestEvents = pageButton('events-latest', 'Latest ⇥');
  const eventsRange = h('span', {class: 'muted', id: 'events-range', role: 'status'});
  const atSeq = h('input', {type: 'number', id: 'at-seq', min: 1, inputmode: 'numeric', class: 'seq-input'});
  const atForm = h('form', {class: 'at-seq', on: {submit: (event) => {
    event.preventDefault();
    const seq = Number(atSeq.value);
    if (Number.isInteger(seq) && seq >= 1) showAt(seq);
  }}}, h('label', {for: 'at-seq'}, 'State at seq '), atSeq, ' ', h('button', {type: 'submit', class: 'secondary', id: 'at-seq-show'}, 'Show'));
  const snapshot = h('section', {class: 'snapshot', 'aria-label': 'State at a seq', id: 'snapshot'});
  const verifyResult = h('p', {class: 'verify-result', role: 'status', id: 'verify-result'});
  const live = h('p', {class: 'live', role: 'status', id: 'live-status'}, 'Live: connecting…');

  function renderHeader() {
    const ended = ENDED.has(run.status);
    const took = (ended ? new Date(run.updatedAt) : new Date()) - new Date(run.createdAt);
    put(clear(header), 
      h('div', {class: 'page-head'},
        h('h1', {}, 'Run ', h('span', {class: 'mono', title: run.id}, shortId(run.id)), ' ', badge(run.status)),
        live),
      h('dl', {class: 'facts'},
        definition('Workflow', h('a', {href: `#/workflows/${encodeURIComponent(run.workflow)}?version=${encodeURIComponent(run.version)}`}, run.workflow)),
        definition('Version', h('span', {class: 'mono', title: run.version}, run.version.slice(0, 19))),
        definition('Run id', h('span', {class: 'mono'}, run.id)),
        definition('Started by', startedBy(run), run.trigger ? h('span', {class: 'mono muted'}, ' ', JSON.stringify(run.trigger)) : null),
        definition('Started', time(run.createdAt)),
        definition('Duration', duration(took), ended ? '' : ' so far'),
        run.parentRunId ? definition('Parent run', h('a', {href: `#/runs/${run.parentRunId}`, class: 'mono'}, run.parentRunId)) : null,
        run.forkedFrom ? definition('Forked from', h('a', {href: `#/runs/${run.forkedFrom.id}`, class: 'mono', id: 'forked-from'}, run.forkedFrom.id),
          run.fork ? h('span', {id: 'fork-origin'}, ` at step ${run.fork.step} by ${run.fork.by}: ${run.fork.reason}`) : null) : null,
        run.forks.length ? definition('Forks', run.forks.map((fork) => h('a', {href: `#/runs/${fork.id}`, class: 'mono fork'}, shortId(fork.id)))) : null,
        run.idempotencyKey ? definition('Idempotency key', h('span', {class: 'mono'}, run.idempotencyKey)) : null,
        definition('Events', String(run.lastSeq))),
      run.error ? h('div', {class: 'run-error', role: 'alert'}, h('h2', {}, 'Error'), h('pre', {class: 'json', tabindex: 0}, run.error)) : null,
      h('details', {}, h('summary', {}, 'Input'), json(run.input)),
      run.output !== null && run.output !== undefined ? h('details', {open: ended}, h('summary', {}, 'Output'), json(run.output)) : null);
  }

  async function act(label, message, fields, mutation, variables, confirmText) {
    const values = await confirmDialog(label, message, fields, confirmText || label);
    if (!values) return;
    notice.textContent = `${label}…`;
    try {
      await gql(mutation, variables(values));
      notice.textContent = `${label}: done.`;
      changedSteps = null;
      await refresh();
    } catch (error) {
      notice.textContent = `${label} refused: ${errorText(error)}`;
    }
  }

  const stepIds = () => run.steps.map((step) => step.id);

  function renderActions() {
    clear(actions);
    const ended = ENDED.has(run.status);
    if (me.mayOperate) {
      if (!ended) {
        actions.append(h('button', {type: 'button', class: 'danger', id: 'action-cancel', on: {click: () => act('Cancel run', 'Running steps are cancelled and pending ones skipped. This cannot be undone.',
          [{name: 'reason', label: 'Reason', multiline: true}],
          'mutation($id: ID!, $reason: String) { cancelRun(id: $id, reason: $reason) { id status } }',
          (values) => ({id: run.id, reason: values.reason || null}), 'Cancel run')}}, 'Cancel'));
      }
      if (run.status === 'FAILED') {
        actions.append(h('button', {type: 'button', class: 'primary', id: 'action-retry', on: {click: () => act('Retry run', 'The failed, skipped and cancelled steps run again; successful outputs stay.', [],
          'mutation($id: ID!) { retryRun(id: $id) { id status } }', () => ({id: run.id}), 'Retry')}}, 'Retry'));
      }
      if (run.status === 'RUNNING' || run.status === 'WAITING') {
        actions.append(h('button', {type: 'button', class: 'secondary', id: 'action-pause', on: {click: () => act('Pause run', 'No new attempt starts until the run is resumed; work in flight finishes.',
          [{name: 'reason', label: 'Reason', required: true, multiline: true}],
          'mutation($id: ID!, $reason: String!) { pauseRun(id: $id, reason: $reason) { id status } }', (values) => ({id: run.id, reason: values.reason}), 'Pause')}}, 'Pause'));
      }
      if (run.status === 'PAUSED') {
        actions.append(h('button', {type: 'button', class: 'secondary', id: 'action-resume', on: {click: () => act('Resume run', 'New attempts start again.',
          [{name: 'reason', label: 'Reason', required: true, multiline: true}],
          'mutation($id: ID!, $reason: String!) { resumeRun(id: $id, reason: $reason) { id status } }', (values) => ({id: run.id, reason: values.reason}), 'Resume')}}, 'Resume'));
      }
      if (ended) {
        actions.append(h('button', {type: 'button', class: 'secondary', id: 'action-rewind', on: {click: () => act('Rewind run', 'The chosen step and everything downstream of it run again in this run (a new generation).',
          [{name: 'step', label: 'Step', options: stepIds(), value: selected || undefined}, {name: 'reason', label: 'Reason', required: true, multiline: true}],
          'mutation($id: ID!, $step: String!, $reason: String!) { rewindRun(id: $id, step: $step, reason: $reason) { id status } }',
          (values) => ({id: run.id, step: values.step, reason: values.reason}), 'Rewind')}}, 'Rewind…'));
      }
      actions.append(h('button', {type: 'button', class: 'secondary', id: 'action-fork', on: {click: async () => {
        const values = await confirmDialog('Fork run', 'A new run takes over the outputs of the steps not downstream of the chosen step and runs the rest.',
          [{name: 'step', label: 'Step', options: stepIds(), value: selected || undefined}, {name: 'reason', label: 'Reason', required: true, multiline: true}], 'Fork');
        if (!values) return;
        try {
          const result = await gql('mutation($id: ID!, $step: String!, $reason: String!) { forkRun(id: $id, step: $step, reason: $reason) { id } }',
            {id: run.id, step: values.step, reason: values.reason});
          location.hash = `#/runs/${result.forkRun.id}`;
        } catch (error) {
          notice.textContent = `Fork refused: ${errorText(error)}`;
        }
      }}}, 'Fork…'));
    }
    actions.append(h('button', {type: 'button', class: 'secondary', id: 'action-verify', on: {click: async () => {
      verifyResult.textContent = 'Verifying the hash chain on the server…';
      verifyResult.className = 'verify-result';
      try {
        const result = (await gql(VERIFY, {id: run.id})).verifyRun;
        verifyResult.className = `verify-result ${result.ok ? 'ok' : 'broken'}`;
        verifyResult.textContent = result.ok
          ? `History verified: ${result.events} events, head seq ${result.headSeq}, head hash ${result.headHash}`
          : `History BROKEN after seq ${result.headSeq}: ${result.problem}`;
      } catch (error) {
        verifyResult.textContent = `Verification failed: ${errorText(error)}`;
      }
    }}}, 'Verify history'));
  }

  async function showStep(stepId, offset = 0) {
    selected = stepId;
    dag.select(stepId);
    put(clear(detail), stateMessage('loading', `Loading step ${stepId}…`));
    let step;
    try {
      step = (await gql(STEP, {id: run.id, step: stepId, offset, limit: EXECUTIONS_PAGE})).run.step;
    } catch (error) {
      put(clear(detail), stateMessage('error', `Step ${stepId} cannot be read: ${error.message}`));
      return;
    }
    if (selected !== stepId) return;
    const stepActions = h('div', {class: 'actions'});
    const waiting = step.status === 'WAITING' && step.approvalRequest;
    const stepRole = waiting && step.approvalRequest.role;
    const mayDecide = me.mayApprove && (!stepRole || me.roles.includes('admin') || me.roles.includes(stepRole));
    if (waiting && mayDecide) {
      const waitingIndex = step.executions.find((exec) => exec.status === 'waiting')?.index;
      const index = step.items !== null && step.items !== undefined ? waitingIndex : null;
      const decide = (approve) => act(approve ? 'Approve' : 'Reject', `${approve ? 'Approve' : 'Reject'} step ${stepId}${index !== null && index !== undefined ? ` item ${index}` : ''}?`,
        [{name: 'comment', label: 'Comment', required: !approve, multiline: true}],
        `mutation($run: ID!, $step: String!, $index: Int, $comment: String) { ${approve ? 'approveStep' : 'rejectStep'}(runId: $run, step: $step, index: $index, comment: $comment) { id status } }`,
        (values) => ({run: run.id, step: stepId, index, comment: values.comment || null}), approve ? 'Approve' : 'Reject');
      stepActions.append(
        h('button', {type: 'button', class: 'primary', id: 'action-approve', on: {click: () => decide(true)}}, 'Approve'),
        h('button', {type: 'button', class: 'danger', id: 'action-reject', on: {click: () => decide(false)}}, 'Reject'));
    }
    if (me.mayOperate && (step.status === 'FAILED' || step.status === 'WAITING') && run.status !== 'CANCELLED') {
      stepActions.append(h('button', {type: 'button', class: 'secondary', id: 'action-skip', on: {click: () => act('Skip step', `Step ${stepId} counts as succeeded with the given output (JSON); its dependents run.`,
        [{name: 'output', label: 'Output (JSON, empty for null)', multiline: true}, {name: 'reason', label: 'Reason', required: true, multiline: true}],
        'mutation($run: ID!, $step: String!, $output: JSON, $reason: String!) { skipStep(runId: $run, step: $step, output: $output, reason: $reason) { id status } }',
        (values) => ({run: run.id, step: stepId, output: values.output ? JSON.parse(values.output) : null, reason: values.reason}), 'Skip step')}}, 'Skip…'));
    }
    const executions = h('ol', {class: 'executions', start: offset});
    for (const exec of step.executions) {
      executions.append(h('li', {class: `execution status-${exec.status}`},
        h('h4', {}, step.items !== null && step.items !== undefined ? `Item ${exec.index}` : 'Execution', ' · ', badge(exec.status),
          ` · attempt ${exec.attempt} of ${exec.maxAttempts}`),
        h('dl', {class: 'facts'},
          definition('Scheduled', time(exec.scheduledAt)),
          definition('Started', time(exec.startedAt)),
          definition('Finished', time(exec.finishedAt)),
          exec.startedAt && exec.finishedAt ? definition('Took', duration(new Date(exec.finishedAt) - new Date(exec.startedAt))) : null,
          exec.retryAt ? definition('Next attempt', time(exec.retryAt)) : null,
          exec.idempotencyKey ? definition('Idempotency key', h('span', {class: 'mono'}, exec.idempotencyKey)) : null,
          exec.childRunId ? definition('Child run', h('a', {href: `#/runs/${exec.childRunId}`, class: 'mono'}, exec.childRunId)) : null),
        h('h5', {}, 'Input (rendered; secrets shown as ***)'), json(exec.input),
        exec.output !== null && exec.output !== undefined ? [h('h5', {}, 'Output'), json(exec.output)] : null,
        exec.error ? [h('h5', {}, 'Error'), h('pre', {class: 'json error-text', tabindex: 0}, exec.error)] : null,
        exec.approval ? [h('h5', {}, 'Decision'), json(exec.approval)] : null));
    }
    const pager = h('div', {class: 'pager'},
      offset > 0 ? h('button', {type: 'button', class: 'secondary', on: {click: () => showStep(stepId, Math.max(0, offset - EXECUTIONS_PAGE))}}, '← Earlier items') : null,
      step.executions.length === EXECUTIONS_PAGE ? h('button', {type: 'button', class: 'secondary', on: {click: () => showStep(stepId, offset + EXECUTIONS_PAGE)}}, 'Later items →') : null);
    put(clear(detail), 
      h('h2', {}, 'Step ', h('span', {class: 'mono'}, step.id), ' ', badge(step.status)),
      stepActions,
      h('dl', {class: 'facts'},
        definition('Attempts', String(step.attempts)),
        step.items !== null && step.items !== undefined ? definition('Items', `${step.itemsDone}/${step.items} done`) : null,
        definition('Started', time(step.startedAt)),
        definition('Finished', time(step.finishedAt)),
        step.durationMs !== null ? definition('Duration', duration(step.durationMs)) : null,
        step.generation ? definition('Generation', String(step.generation)) : null,
        step.skippedBy ? definition('Skipped', step.skippedBy) : null,
        step.adoptedFrom ? definition('Output from', h('a', {href: `#/runs/${step.adoptedFrom}`, class: 'mono'}, step.adoptedFrom)) : null),
      step.error ? [h('h3', {}, 'Error'), h('pre', {class: 'json error-text', tabindex: 0, id: 'step-error'}, step.error)] : null,
      step.approvalRequest ? [h('h3', {}, 'Approval request'), json(step.approvalRequest)] : null,
      step.output !== null && step.output !== undefined ? [h('h3', {}, 'Output'), h('pre', {class: 'json', tabindex: 0, id: 'step-output'}, JSON.stringify(step.output, null, 2))] : null,
      h('h3', {}, 'Executions'),
      step.executions.length ? executions : stateMessage('empty', 'Not scheduled yet.'),
      pager);
  }

  function eventRow(event) {
    return h('tr', {dataset: {seq: event.seq}},
      h('td', {class: 'num'}, String(event.seq)),
      h('td', {}, event.type, event.payload && event.payload.step ? h('span', {class: 'muted'}, ` ${event.payload.step}`) : null),
      h('td', {}, time(event.recordedAt)),
      h('td', {class: 'mono', title: event.hash}, event.hash.slice(0, 12)),
      h('td', {}, h('button', {type: 'button', class: 'link', on: {click: () => showAt(event.seq)}}, 'state here')));
  }

  // The timeline shows one page of events (cursor pages of the API:
  // `first`/`after` forward, `last`/`before` back); new events are added
  // live while the page shown is the newest.
  let pageInfo = {hasNextPage: false, hasPreviousPage: false, startCursor: null, endCursor: null};
  let eventsDone = false;
  const pageButtons = [firstEvents, earlierEvents, laterEvents, latestEvents];
  function showRange() {
    const rows = timelineBody.querySelectorAll('tr[data-seq]');
    eventsRange.textContent = rows.length
      ? `Events ${rows[0].dataset.seq}–${rows[rows.length - 1].dataset.seq} of ${Math.max(lastSeq, run.lastSeq)}`
      : `No events of ${Math.max(lastSeq, run.lastSeq)}`;
  }
  async function loadEvents(window) {
    for (const button of pageButtons) button.disabled = true;
    try {
      const data = (await gql(EVENTS, {id: run.id, ...window})).run;
      const page = data.events;
      clear(timelineBody);
      for (const edge of page.edges) timelineBody.append(eventRow(edge.node));
      pageInfo = page.pageInfo;
      eventsDone = !page.pageInfo.hasNextPage;
      run.lastSeq = Math.max(run.lastSeq, data.lastSeq);
    } catch (error) {
      put(clear(timelineBody), h('tr', {}, h('td', {colspan: 5}, stateMessage('error', `Events cannot be read: ${error.message}`))));
    }
    firstEvents.disabled = earlierEvents.disabled = !pageInfo.hasPreviousPage;
    laterEvents.disabled = latestEvents.disabled = !pageInfo.hasNextPage;
    showRange();
  }
  firstEvents.addEventListener('click', () => loadEvents({first: EVENTS_PAGE}));
  earlierEvents.addEventListener('click', () => loadEvents({last: EVENTS_PAGE, before: pageInfo.startCursor}));
  laterEvents.addEventListener('click', () => loadEvents({first: EVENTS_PAGE, after: pageInfo.endCursor}));
  latestEvents.addEventListener('click', () => loadEvents({last: EVENTS_PAGE}));

  async function showAt(seq) {
    put(clear(snapshot), stateMessage('loading', `Replaying up to seq ${seq}…`));
    try {
      const at = (await gql(AT, {id: run.id, seq})).runAt;
      put(clear(snapshot), 
        h('h3', {}, `State after seq ${at.seq}: `, badge(at.status)),
        h('table', {class: 'steps-at'},
          h('thead', {}, h('tr', {}, h('th', {scope: 'col'}, 'Step'), h('th', {scope: 'col'}, 'Status'), h('th', {scope: 'col'}, 'Attempts'))),
          h('tbody', {}, at.steps.map((step) => h('tr', {}, h('td', {class: 'mono'}, step.id), h('td', {}, badge(step.status)), h('td', {class: 'num'}, String(step.attempts)))))),
        at.error ? h('pre', {class: 'json error-text', tabindex: 0}, at.error) : null);
    } catch (error) {
      put(clear(snapshot), stateMessage('error', `runAt failed: ${error.message}`));
    }
  }

  // Steps named by the events since the last refresh; `null`: all of them
  // (an action, or a run-level event such as a rewind that moves many).
  let changedSteps = new Set();
  async function refresh() {
    const ids = changedSteps === null ? null : [...changedSteps];
    changedSteps = new Set();
    let fresh;
    try {
      fresh = (await gql(CHANGED, {id: run.id, ids})).run;
    } catch (error) {
      live.textContent = `Live: ${error.message}`;
      return;
    }
    if (ids !== null) {
      const byId = new Map(run.steps.map((step) => [step.id, step]));
      for (const step of fresh.steps) byId.set(step.id, step);
      fresh.steps = [...byId.values()];
    }
    run = fresh;
    renderHeader();
    renderActions();
    dag.update(run.steps);
    showRange();
    if (selected) showStep(selected);
    watchAgain();
  }

  renderHeader();
  renderActions();
  dag.update(run.steps);
  put(clear(main), 
    header, actions, notice, verifyResult,
    h('div', {class: 'run-body'},
      h('section', {class: 'dag-panel', 'aria-label': 'DAG'}, h('h2', {}, 'Steps'), dag.element),
      detail),
    h('section', {class: 'timeline', 'aria-label': 'Event timeline'},
      h('h2', {}, 'Timeline'),
      h('table', {class: 'events'},
        h('thead', {}, h('tr', {}, ['Seq', 'Type', 'Time', 'Hash', ''].map((title) => h('th', {scope: 'col'}, title)))),
        timelineBody),
      h('div', {class: 'pager', role: 'group', 'aria-label': 'Timeline pages'}, firstEvents, earlierEvents, laterEvents, latestEvents, eventsRange),
      atForm,
      snapshot));
  await loadEvents({first: EVENTS_PAGE});
  if (params.get('seq')) showAt(Number(params.get('seq')));
  if (params.get('step')) showStep(params.get('step'));

  // Live: every new event; the run's header and the steps the events
  // named are read again (at most every 100 ms).
  // The subscription completes when the run ends; an action that makes it
  // run again (retry, rewind, skip) starts watching again from the last seq.
  let pending = null;
  let stop = null;
  let closed = false;
  function watch() {
    stop = subscribe(WATCH, () => ({id: run.id, after: lastSeq}), (item) => {
      const event = item.runEvents;
      if (event.seq <= lastSeq) return;
      lastSeq = event.seq;
      live.textContent = `Live: seq ${event.seq} ${event.type}`;
      if (eventsDone && !timelineBody.querySelector(`tr[data-seq="${event.seq}"]`)) timelineBody.append(eventRow(event));
      const step = event.payload && event.payload.step;
      if (changedSteps !== null && !STEPS_UNCHANGED.has(event.type)) {
        if (typeof step === 'string' && /^(step|approval)\./.test(event.type)) changedSteps.add(step);
        else changedSteps = null;
      }
      if (!pending) pending = setTimeout(() => { pending = null; refresh(); }, 100);
    }, (error) => { live.textContent = `Live: ${error.message}`; },
    () => { stop = null; live.textContent = 'Live: the run ended'; refresh(); });
  }
  watchAgain = () => { if (!stop && !closed && (run.lastSeq > lastSeq || !ENDED.has(run.status))) watch(); };
  watch();
  if (ENDED.has(run.status)) live.textContent = 'The run ended';
  return () => { closed = true; if (stop) stop(); if (pending) clearTimeout(pending); };
}
