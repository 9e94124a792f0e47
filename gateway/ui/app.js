// The single-page app: hash routes, sign-in, and the page modules.
//   #/runs?…          runs list          (runs.js)
//   #/runs/<id>?seq=N  one run            (run.js)
//   #/workflows        workflows          (workflows.js)
//   #/workflows/<name>?version=V
import {loadSession, session, signIn, signOut, ApiError} from './api.js';
import {h, clear, put, stateMessage} from './dom.js';
import {runsPage} from './runs.js';
import {runPage} from './run.js';
import {workflowsPage, workflowPage} from './workflows.js';

const main = document.getElementById('main');
let cleanup = () => {};

export function navigate(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

function parseHash() {
  const raw = location.hash.replace(/^#/, '') || '/runs';
  const [path, query] = raw.split('?');
  return {parts: path.split('/').filter(Boolean).map(decodeURIComponent), params: new URLSearchParams(query || '')};
}

function showWho() {
  const who = document.getElementById('who');
  const button = document.getElementById('sign-out');
  clear(who);
  if (session.current) {
    who.append(`${session.current.id} · ${session.current.roles.join(', ') || 'no roles'}`);
    button.hidden = false;
  } else {
    button.hidden = true;
  }
  const {parts} = parseHash();
  for (const link of document.querySelectorAll('[data-nav]')) {
    if (link.dataset.nav === parts[0]) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
}

function signInPage(next) {
  const input = h('input', {id: 'credential', name: 'credential', type: 'password', autocomplete: 'off', 'aria-describedby': 'credential-help'});
  const error = h('p', {class: 'field-error', role: 'alert', id: 'sign-in-error'});
  const insecure = session.insecure;
  const form = h('form', {class: 'sign-in', on: {submit: async (event) => {
    event.preventDefault();
    error.textContent = '';
    try {
      await signIn(input.value);
      showWho();
      navigate(next && next !== '#/signin' ? next : '#/runs');
    } catch (failure) {
      error.textContent = failure instanceof ApiError ? failure.message : String(failure);
    }
  }}},
  h('h1', {}, 'Sign in'),
  insecure
    ? h('p', {class: 'notice'}, 'This server runs with --insecure-no-auth: leave the field empty to continue as admin.')
    : null,
  h('div', {class: 'field'},
    h('label', {for: 'credential'}, 'API key or JWT'),
    input,
    h('p', {class: 'help', id: 'credential-help'}, 'Create a key with `imx apikey create --role viewer`. It is kept on the server, not in this browser.')),
  error,
  h('button', {type: 'submit', class: 'primary'}, 'Sign in'));
  put(clear(main), form);
  input.focus();
  return () => {};
}

async function route() {
  cleanup();
  cleanup = () => {};
  const {parts, params} = parseHash();
  if (parts[0] === 'signin') {
    showWho();
    cleanup = signInPage(params.get('next'));
    return;
  }
  if (!session.current) {
    try {
      await loadSession();
    } catch (error) {
      put(clear(main), stateMessage('error', `The server cannot be reached: ${error.message}`));
      return;
    }
    if (!session.current) {
      const next = location.hash || '#/runs';
      location.replace(`#/signin?next=${encodeURIComponent(next)}`);
      return;
    }
  }
  showWho();
  put(clear(main), stateMessage('loading', 'Loading…'));
  let page;
  if (parts[0] === 'runs' && parts[1]) page = runPage(main, parts[1], params);
  else if (parts[0] === 'runs' || parts.length === 0) page = runsPage(main, params);
  else if (parts[0] === 'workflows' && parts[1]) page = workflowPage(main, parts[1], params);
  else if (parts[0] === 'workflows') page = workflowsPage(main, params);
  else {
    put(clear(main), h('h1', {}, 'Not found'), stateMessage('error', `There is no page ${location.hash}.`));
    return;
  }
  cleanup = (await page) || (() => {});
  main.focus({preventScroll: true});
}

window.addEventListener('hashchange', route);
window.addEventListener('imx:signed-out', () => {
  const next = location.hash;
  if (!next.startsWith('#/signin')) location.replace(`#/signin?next=${encodeURIComponent(next)}`);
});
document.getElementById('sign-out').addEventListener('click', async () => {
  await signOut();
  showWho();
  location.replace('#/signin');
});
route();
