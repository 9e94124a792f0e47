// The UI's only way to the server: the public GraphQL API (`/graphql`,
// subscriptions over graphql-transport-ws at `/graphql/ws`), authenticated
// by the session cookie plus the session's CSRF token. `/ui/session` only
// signs in and out.

export const session = {current: null};

export class ApiError extends Error {
  constructor(errors, status) {
    super(errors.map((error) => error.message).join('; '));
    this.errors = errors;
    this.status = status;
    this.code = errors[0]?.extensions?.code || errors[0]?.code || 'ERROR';
  }
}

export async function loadSession() {
  const response = await fetch('/ui/session', {credentials: 'same-origin', cache: 'no-store'});
  if (response.ok) {
    session.current = await response.json();
  } else {
    session.current = null;
    session.insecure = response.headers.get('x-imx-insecure-no-auth') === '1';
  }
  return session.current;
}

export async function signIn(credential) {
  const response = await fetch('/ui/session', {
    method: 'POST',
    credentials: 'same-origin',
    headers: {'content-type': 'application/json'},
    body: JSON.stringify({credential}),
  });
  const body = await response.json().catch(() => ({message: `sign-in failed (${response.status})`}));
  if (!response.ok) throw new ApiError([{message: body.message, code: body.code}], response.status);
  session.current = body;
  return body;
}

export async function signOut() {
  const csrf = session.current?.csrf || '';
  await fetch('/ui/session', {method: 'DELETE', credentials: 'same-origin', headers: {'x-imx-csrf': csrf}});
  session.current = null;
}

/** One GraphQL operation; the data, or throws ApiError. */
export async function gql(query, variables = {}) {
  let response;
  try {
    response = await fetch('/graphql', {
      method: 'POST',
      credentials: 'same-origin',
      headers: {'content-type': 'application/json', 'x-imx-csrf': session.current?.csrf || ''},
      body: JSON.stringify({query, variables}),
    });
  } catch (error) {
    throw new ApiError([{message: `the server cannot be reached: ${error.message}`, extensions: {code: 'UNAVAILABLE'}}], 0);
  }
  const body = await response.json().catch(() => null);
  if (!body) throw new ApiError([{message: `unexpected answer (${response.status})`, extensions: {code: 'INTERNAL'}}], response.status);
  if (response.status === 401) {
    session.current = null;
    window.dispatchEvent(new CustomEvent('imx:signed-out'));
  }
  if (body.errors && body.errors.length) throw new ApiError(body.errors, response.status);
  return body.data;
}

let nextId = 1;

/**
 * A subscription over graphql-transport-ws. `onNext(data)` for each item,
 * `onError(error)` for errors; reconnects after a dropped socket, asking
 * `variables()` again (so a caller can resume after its last seq).
 * Returns a function that ends it.
 */
export function subscribe(query, variables, onNext, onError = () => {}, onComplete = () => {}) {
  let socket = null;
  let stopped = false;
  let retry = 500;
  const open = () => {
    if (stopped) return;
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    socket = new WebSocket(`${scheme}://${location.host}/graphql/ws`, 'graphql-transport-ws');
    const id = String(nextId++);
    let completed = false;
    socket.addEventListener('open', () => {
      socket.send(JSON.stringify({type: 'connection_init', payload: {csrf: session.current?.csrf || ''}}));
    });
    socket.addEventListener('message', (message) => {
      let frame;
      try { frame = JSON.parse(message.data); } catch { return; }
      if (frame.type === 'connection_ack') {
        retry = 500;
        const vars = typeof variables === 'function' ? variables() : variables;
        socket.send(JSON.stringify({id, type: 'subscribe', payload: {query, variables: vars}}));
      } else if (frame.type === 'next') {
        if (frame.payload.errors && frame.payload.errors.length) onError(new ApiError(frame.payload.errors, 200));
        if (frame.payload.data) onNext(frame.payload.data);
      } else if (frame.type === 'error') {
        onError(new ApiError(frame.payload, 200));
      } else if (frame.type === 'complete') {
        completed = true;
        stopped = true;
        socket.close(1000);
        onComplete();
      } else if (frame.type === 'ping') {
        socket.send(JSON.stringify({type: 'pong'}));
      }
    });
    socket.addEventListener('close', () => {
      if (stopped || completed) return;
      setTimeout(open, retry);
      retry = Math.min(retry * 2, 10000);
    });
  };
  open();
  return () => {
    stopped = true;
    if (socket && socket.readyState <= 1) socket.close(1000);
  };
}
