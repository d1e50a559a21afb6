//! Locks that survive a panicking holder: the state they guard is kept consistent by its writers
//! (a panic mid-update poisons the log through its own path), so a poisoned mutex is taken over.

use std::sync::{Mutex, MutexGuard};

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
