// Building the page: every value goes in as text (textContent or an
// attribute), never as markup, so a step output such as
// `<img src=x onerror=alert(1)>` shows as those characters.

const SVG = 'http://www.w3.org/2000/svg';

function fill(node, attrs, children) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'on') {
      for (const [event, handler] of Object.entries(value)) node.addEventListener(event, handler);
    } else if (key === 'dataset') {
      Object.assign(node.dataset, value);
    } else if (value === true) {
      node.setAttribute(key, '');
    } else {
      node.setAttribute(key, String(value));
    }
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** An HTML element: h('a', {href: '#/runs'}, 'Runs'). */
export function h(tag, attrs, ...children) {
  return fill(document.createElement(tag), attrs, children);
}

/** An SVG element. */
export function s(tag, attrs, ...children) {
  return fill(document.createElementNS(SVG, tag), attrs, children);
}

export function clear(node) {
  while (node.firstChild) node.firstChild.remove();
  return node;
}

/** JSON shown as text, indented. */
export function json(value) {
  // Focusable: a long value scrolls, and keyboards must reach it.
  return h('pre', {class: 'json', tabindex: 0}, value === undefined ? '' : JSON.stringify(value, null, 2));
}

export function shortId(id) {
  // UUID v7 ids begin with their time: the end tells runs apart.
  return String(id).slice(-12);
}

export function time(iso) {
  if (!iso) return '';
  const date = new Date(iso);
  return date.toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}

export function duration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return '';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const seconds = ms / 1000;
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ${Math.round(seconds % 60)} s`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

export function badge(status) {
  const text = String(status || '').toLowerCase();
  return h('span', {class: `badge status-${text}`}, text);
}

export function stateMessage(kind, text) {
  return h('p', {class: `state ${kind}`, role: kind === 'error' ? 'alert' : 'status'}, text);
}

/**
 * A confirmation dialog. `fields` are {name, label, required, multiline, options};
 * resolves with the values, or null when cancelled.
 */
export function confirmDialog(title, message, fields = [], confirmText = 'Confirm') {
  return new Promise((resolve) => {
    const inputs = {};
    const error = h('p', {class: 'field-error', role: 'alert'});
    const rows = fields.map((field) => {
      const id = `dialog-${field.name}`;
      let input;
      if (field.options) {
        input = h('select', {id, name: field.name}, field.options.map((option) => h('option', {value: option}, option)));
      } else if (field.multiline) {
        input = h('textarea', {id, name: field.name, rows: 3});
      } else {
        input = h('input', {id, name: field.name, type: 'text'});
      }
      if (field.value !== undefined) input.value = field.value;
      inputs[field.name] = input;
      return h('div', {class: 'field'}, h('label', {for: id}, field.label), input);
    });
    const dialog = h('dialog', {class: 'confirm', 'aria-labelledby': 'dialog-title'},
      h('form', {method: 'dialog'},
        h('h2', {id: 'dialog-title'}, title),
        h('p', {}, message),
        rows,
        error,
        h('div', {class: 'buttons'},
          h('button', {type: 'button', class: 'secondary', value: 'cancel', on: {click: () => finish(null)}}, 'Cancel'),
          h('button', {type: 'submit', class: 'primary', value: 'confirm'}, confirmText))));
    function finish(values) {
      dialog.close();
      dialog.remove();
      resolve(values);
    }
    dialog.querySelector('form').addEventListener('submit', (event) => {
      event.preventDefault();
      const values = {};
      for (const field of fields) {
        const value = inputs[field.name].value.trim();
        if (field.required && !value) {
          error.textContent = `${field.label} is required.`;
          inputs[field.name].focus();
          return;
        }
        values[field.name] = value;
      }
      finish(values);
    });
    dialog.addEventListener('cancel', (event) => { event.preventDefault(); finish(null); });
    document.body.append(dialog);
    dialog.showModal();
  });
}

/** Appends children as h() does: arrays flattened, null and false left out, text as text. */
export function put(node, ...children) {
  return fill(node, {}, children);
}
