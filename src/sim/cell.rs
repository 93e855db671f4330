//! [`ServerCell`]: one simulated server as the listener holds it, its state machine and its
//! request journal under one lock.

use super::journal::Journal;
use super::model::ServerState;
use std::sync::{Mutex, MutexGuard};

/// One server: its state and its journal under one lock (held only for bookkeeping,
/// never across an await).
#[derive(Debug)]
pub(crate) struct ServerCell {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub state: ServerState,
    pub journal: Journal,
}

impl ServerCell {
    pub fn new(state: ServerState) -> Self {
        ServerCell {
            inner: Mutex::new(Inner {
                state,
                journal: Journal::default(),
            }),
        }
    }

    /// The lock; a panic elsewhere while holding it leaves data that is still usable.
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}
