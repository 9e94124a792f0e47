//! Audit tools over the event log: verify the hash chain offline, inspect the
//! state of a run at any event (with the core's own `evolve`), export, and
//! check that a new workflow version can take over runs in flight.
