// Starts GraphiQL (vendored release, see vendor/README.md) on the GraphiQL
// page; an external script, so the page keeps the UI's strict CSP (no
// inline script). Signed in to the web UI, requests carry the session
// cookie and its CSRF token; otherwise the caller sets an Authorization
// header in GraphiQL's Headers tab.
(async () => {
  let csrf = '';
  try {
    const response = await fetch('/ui/session', {credentials: 'same-origin', cache: 'no-store'});
    if (response.ok) csrf = (await response.json()).csrf || '';
  } catch {
    // No session: the Headers tab is the way in.
  }
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  const fetcher = window.GraphiQL.createFetcher({
    url: '/graphql',
    subscriptionUrl: `${scheme}://${location.host}/graphql/ws`,
    headers: csrf ? {'x-imx-csrf': csrf} : {},
    wsConnectionParams: csrf ? {csrf} : {},
  });
  const root = window.ReactDOM.createRoot(document.getElementById('graphiql'));
  root.render(window.React.createElement(window.GraphiQL, {
    fetcher,
    defaultQuery: '# Ask the imx API, e.g.\n{\n  me { id roles }\n  runs(first: 5) { edges { node { id workflow status } } }\n}\n',
  }));
})();
