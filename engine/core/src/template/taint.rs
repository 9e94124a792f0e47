//! `secrets` as the templates see it: a map whose every read is noticed.
//!
//! Redaction by string matching misses transformed secrets (`| upper`,
//! `[0:5]`, a secret used as a key). Instead the evaluation that read a
//! secret is *tainted*, and whatever it produced is recorded as `***` as a
//! whole. Names are not secret: listing them (`secrets | list`) or printing
//! the object (`{{ secrets }}`, `debug()`) shows names only and taints nothing.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use minijinja::value::{Enumerator, Object, ObjectRepr, Value};

use crate::scope::{REDACTED, Secrets};

/// The `secrets` object of one evaluation.
pub(super) struct SecretScope {
    secrets: Secrets,
    names: Vec<Value>,
    read: AtomicBool,
}

impl fmt::Debug for SecretScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(&self.names).finish()
    }
}

impl SecretScope {
    pub(super) fn new(secrets: &Secrets) -> Arc<SecretScope> {
        Arc::new(SecretScope {
            names: secrets.names().map(Value::from).collect(),
            secrets: secrets.clone(),
            read: AtomicBool::new(false),
        })
    }

    /// Whether a secret value was read since the last call, and starts over.
    pub(super) fn take_read(&self) -> bool {
        self.read.swap(false, Ordering::Relaxed)
    }
}

impl Object for SecretScope {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let value = self.secrets.get(key.as_str()?)?;
        self.read.store(true, Ordering::Relaxed);
        Some(Value::from(value))
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(self.names.clone())
    }

    /// `{{ secrets }}` and `debug()` print names, never values.
    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for name in &self.names {
            map.entry(name, &REDACTED);
        }
        map.finish()
    }
}
