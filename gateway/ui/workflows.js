// Workflows: names and versions; one version's source with line numbers
// and the validator's diagnostics, its DAG, its cron triggers with the
// next fire times, and "start a run" with a form built from the input
// JSON Schema, checked here and by the server (field errors by the fields).
import {gql, ApiError} from './api.js';
import {h, clear, put, time, stateMessage} from './dom.js';
import {dagView, LAYOUT_FIELDS} from './dag.js';

const LIST = 'query { workflows { name version registeredAt } }';
const ONE = `query Workflow($name: String!, $version: String) {
  me { mayOperate }
  workflow(name: $name, version: $version) { name version registeredAt source inputSchema
    diagnostics { code severity message hint line column } ${LAYOUT_FIELDS} }
  workflows { name version registeredAt }
  schedules { workflow trigger cron timezone state pausedBy lastFireAt nextFires }
}`;
const START = `mutation Start($workflow: String!, $version: String, $input: JSON) {
  startRun(workflow: $workflow, version: $version, input: $input) { run { id } created }
}`;

function groups(workflows) {
  const byName = new Map();
  for (const workflow of workflows) {
    if (!byName.has(workflow.name)) byName.set(workflow.name, []);
    byName.get(workflow.name).push(workflow);
  }
  for (const versions of byName.values()) versions.sort((a, b) => b.registeredAt.localeCompare(a.registeredAt));
  return [...byName.entries()].sort(([a], [b]) => a.localeCompare(b));
}

export async function workflowsPage(main) {
  let data;
  try {
    data = await gql(LIST);
  } catch (error) {
    put(clear(main), h('h1', {}, 'Workflows'), stateMessage('error', `The workflows cannot be listed: ${error.message}`));
    return () => {};
  }
  const list = groups(data.workflows);
  put(clear(main), h('h1', {}, 'Workflows'),
    list.length
      ? h('table', {class: 'workflows'},
        h('thead', {}, h('tr', {}, h('th', {scope: 'col'}, 'Workflow'), h('th', {scope: 'col'}, 'Versions'), h('th', {scope: 'col'}, 'Newest registered'))),
        h('tbody', {}, list.map(([name, versions]) => h('tr', {},
          h('td', {}, h('a', {href: `#/workflows/${encodeURIComponent(name)}`}, name)),
          h('td', {class: 'num'}, String(versions.length)),
          h('td', {}, time(versions[0].registeredAt))))))
      : stateMessage('empty', 'No workflow is registered yet: `imx run FILE` or the registerWorkflow mutation registers one.'));
  return () => {};
}

/** Checks `value` (a string from a field) against a property schema; the parsed value or throws a message. */
function fieldValue(schema, raw) {
  const type = Array.isArray(schema.type) ? schema.type.find((t) => t !== 'null') : schema.type;
  let value = raw;
  if (type === 'integer' || type === 'number') {
    if (raw.trim() === '' || Number.isNaN(Number(raw))) throw new Error('must be a number');
    value = Number(raw);
    if (type === 'integer' && !Number.isInteger(value)) throw new Error('must be a whole number');
    if (schema.minimum !== undefined && value < schema.minimum) throw new Error(`must be at least ${schema.minimum}`);
    if (schema.maximum !== undefined && value > schema.maximum) throw new Error(`must be at most ${schema.maximum}`);
  } else if (type === 'boolean') {
    value = raw === 'true';
  } else if (type === 'object' || type === 'array' || type === undefined && typeof schema.enum === 'undefined' && raw.trim().startsWith('{')) {
    try { value = JSON.parse(raw); } catch { throw new Error(`must be JSON (${type || 'any'})`); }
    if (type === 'array' && !Array.isArray(value)) throw new Error('must be a JSON array');
    if (type === 'object' && (typeof value !== 'object' || value === null || Array.isArray(value))) throw new Error('must be a JSON object');
  } else {
    if (schema.minLength !== undefined && raw.length < schema.minLength) throw new Error(`must have at least ${schema.minLength} characters`);
    if (schema.maxLength !== undefined && raw.length > schema.maxLength) throw new Error(`must have at most ${schema.maxLength} characters`);
    if (schema.pattern !== undefined && !new RegExp(schema.pattern, 'u').test(raw)) throw new Error(`must match ${schema.pattern}`);
  }
  if (schema.enum && !schema.enum.includes(value)) throw new Error(`must be one of ${schema.enum.join(', ')}`);
  return value;
}

function startForm(workflow) {
  const schema = workflow.inputSchema;
  const properties = schema && schema.type === 'object' && schema.properties ? schema.properties : null;
  const required = new Set((schema && schema.required) || []);
  const inputs = new Map();
  const errors = new Map();
  const formError = h('p', {class: 'field-error', role: 'alert', id: 'start-error'});
  const result = h('p', {class: 'notice', role: 'status', id: 'start-result'});
  const fields = [];
  if (properties) {
    for (const [name, property] of Object.entries(properties)) {
      const id = `input-${name}`;
      const type = Array.isArray(property.type) ? property.type.find((t) => t !== 'null') : property.type;
      let input;
      if (property.enum) {
        input = h('select', {id, name}, h('option', {value: ''}, '—'), property.enum.map((option) => h('option', {value: String(option)}, String(option))));
      } else if (type === 'boolean') {
        input = h('select', {id, name}, h('option', {value: 'false'}, 'false'), h('option', {value: 'true'}, 'true'));
      } else if (type === 'object' || type === 'array') {
        input = h('textarea', {id, name, rows: 3, placeholder: type === 'array' ? '[]' : '{}'});
      } else {
        input = h('input', {id, name, type: type === 'integer' || type === 'number' ? 'number' : 'text', step: type === 'number' ? 'any' : undefined});
      }
      if (property.default !== undefined) input.value = typeof property.default === 'object' ? JSON.stringify(property.default) : String(property.default);
      const error = h('p', {class: 'field-error', id: `${id}-error`, role: 'alert'});
      input.setAttribute('aria-describedby', `${id}-error`);
      inputs.set(name, {input, property});
      errors.set(name, error);
      fields.push(h('div', {class: 'field'},
        h('label', {for: id}, name, required.has(name) ? h('span', {class: 'required', 'aria-hidden': 'true'}, ' *') : null,
          type ? h('span', {class: 'muted'}, ` (${type})`) : null),
        input,
        property.description ? h('p', {class: 'help'}, property.description) : null,
        error));
    }
  } else {
    const input = h('textarea', {id: 'input-json', name: 'input', rows: 5, placeholder: '{}'});
    const error = h('p', {class: 'field-error', id: 'input-json-error', role: 'alert'});
    input.setAttribute('aria-describedby', 'input-json-error');
    inputs.set('', {input, property: {}});
    errors.set('', error);
    fields.push(h('div', {class: 'field'}, h('label', {for: 'input-json'}, 'Input (JSON)'), input, error));
  }

  function showError(name, message) {
    const target = errors.get(name) || formError;
    target.textContent = target === formError && formError.textContent ? `${formError.textContent} ${message}` : message;
    const entry = inputs.get(name);
    if (entry) entry.input.setAttribute('aria-invalid', 'true');
  }

  const form = h('form', {class: 'start-run', 'aria-label': 'Start a run', novalidate: true, on: {submit: async (event) => {
    event.preventDefault();
    result.textContent = '';
    formError.textContent = '';
    for (const [name, error] of errors) { error.textContent = ''; const entry = inputs.get(name); if (entry) entry.input.removeAttribute('aria-invalid'); }
    let input;
    let valid = true;
    if (properties) {
      input = {};
      for (const [name, {input: field, property}] of inputs) {
        const raw = field.value;
        if (raw === '') {
          if (required.has(name)) { showError(name, 'is required'); valid = false; }
          continue;
        }
        try { input[name] = fieldValue(property, raw); } catch (error) { showError(name, error.message); valid = false; }
      }
    } else {
      const raw = inputs.get('').input.value.trim();
      try { input = raw ? JSON.parse(raw) : {}; } catch (error) { showError('', `not JSON: ${error.message}`); valid = false; }
    }
    if (!valid) return;
    try {
      const started = (await gql(START, {workflow: workflow.name, version: workflow.version, input})).startRun;
      result.append('Started ', h('a', {href: `#/runs/${started.run.id}`, id: 'started-run'}, started.run.id));
    } catch (error) {
      // The server's schema check: one line per problem, `  /pointer: message`.
      const lines = error instanceof ApiError ? error.message.split('\n') : [String(error)];
      let placed = false;
      for (const line of lines) {
        const match = line.match(/^\s*\/([^:\s]*): (.*)$/);
        if (match && properties) {
          const field = match[1].split('/')[0];
          const missing = match[2].match(/^"([^"]+)" is a required property/);
          const name = field || (missing && missing[1]) || '';
          if (inputs.has(name)) { showError(name, match[2]); placed = true; continue; }
        }
        if (line.trim()) showError('', line.trim());
      }
      if (!placed && !formError.textContent) formError.textContent = error.message;
    }
  }}},
  h('h2', {}, 'Start a run'),
  fields,
  formError,
  h('button', {type: 'submit', class: 'primary', id: 'start-run'}, 'Start run'),
  result);
  return form;
}

export async function workflowPage(main, name, params) {
  let data;
  try {
    data = await gql(ONE, {name, version: params.get('version') || null});
  } catch (error) {
    const notFound = error instanceof ApiError && error.code === 'NOT_FOUND';
    put(clear(main), h('h1', {}, notFound ? 'Workflow not found' : 'Workflow'),
      stateMessage(notFound ? 'not-found' : 'error', notFound ? `No workflow ${name} is registered.` : `The workflow cannot be read: ${error.message}`));
    return () => {};
  }
  const workflow = data.workflow;
  const versions = data.workflows.filter((item) => item.name === workflow.name).sort((a, b) => b.registeredAt.localeCompare(a.registeredAt));
  const versionSelect = h('select', {id: 'version', on: {change: () => { location.hash = `#/workflows/${encodeURIComponent(workflow.name)}?version=${encodeURIComponent(versionSelect.value)}`; }}},
    versions.map((version) => h('option', {value: version.version, selected: version.version === workflow.version}, `${version.version.slice(0, 19)} · ${time(version.registeredAt)}`)));
  const byLine = new Map();
  for (const diagnostic of workflow.diagnostics) {
    if (!byLine.has(diagnostic.line)) byLine.set(diagnostic.line, []);
    byLine.get(diagnostic.line).push(diagnostic);
  }
  const source = h('table', {class: 'source', 'aria-label': 'Source'},
    h('tbody', {}, workflow.source.split('\n').map((line, index) => {
      const notes = byLine.get(index + 1) || [];
      return [
        h('tr', {class: notes.length ? 'has-diagnostic' : ''}, h('td', {class: 'line-number'}, String(index + 1)), h('td', {class: 'code'}, line)),
        notes.map((note) => h('tr', {class: `diagnostic ${note.severity}`}, h('td', {}), h('td', {},
          `${note.severity}[${note.code}] ${note.line}:${note.column}: ${note.message}${note.hint ? ` (hint: ${note.hint})` : ''}`))),
      ];
    })));
  const schedules = data.schedules.filter((schedule) => schedule.workflow === workflow.name);
  const triggers = schedules.length
    ? h('table', {class: 'schedules'},
      h('thead', {}, h('tr', {}, ['Trigger', 'Cron', 'Time zone', 'State', 'Last fire', 'Next fires'].map((title) => h('th', {scope: 'col'}, title)))),
      h('tbody', {}, schedules.map((schedule) => h('tr', {},
        h('td', {class: 'mono'}, schedule.trigger), h('td', {class: 'mono'}, schedule.cron), h('td', {}, schedule.timezone),
        h('td', {}, schedule.state.toLowerCase(), schedule.pausedBy ? ` by ${schedule.pausedBy}` : ''),
        h('td', {}, time(schedule.lastFireAt)),
        h('td', {}, h('ul', {class: 'plain'}, schedule.nextFires.map((fire) => h('li', {}, time(fire)))))))))
    : stateMessage('empty', 'No cron trigger in the newest version (webhook and Kafka triggers fire on delivery).');
  const dag = dagView(workflow.layout, null);
  put(clear(main), 
    h('div', {class: 'page-head'}, h('h1', {}, workflow.name), h('label', {for: 'version'}, 'Version '), versionSelect),
    h('p', {}, h('a', {href: `#/runs?workflow=${encodeURIComponent(workflow.name)}`}, 'Runs of this workflow')),
    h('div', {class: 'workflow-body'},
      h('section', {'aria-label': 'DAG'}, h('h2', {}, 'DAG'), dag.element),
      data.me.mayOperate ? startForm(workflow) : h('p', {class: 'muted'}, 'Starting runs needs the operator role.')),
    h('section', {'aria-label': 'Triggers'}, h('h2', {}, 'Cron triggers'), triggers),
    h('section', {'aria-label': 'Source'}, h('h2', {}, 'Source'),
      workflow.diagnostics.length ? h('p', {}, `${workflow.diagnostics.length} diagnostic(s) from the validator.`) : h('p', {class: 'muted'}, 'The validator has nothing to say about this version.'),
      source));
  return () => {};
}
