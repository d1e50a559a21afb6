//! The one path to a data key: the key store, the cache of unwrapped keys, and the access audit
//! log that records every unwrap and read before it happens.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::audit::{Action, AuditEntry, AuditError, AuditLog, Decision};
use crate::keys::{DataKey, KeyError, KeyStore, SlotState};
use crate::merkle::Hash;
use crate::policy::{Access, Role};

use crate::sync::lock;

/// Why a key could not be had.
#[derive(Debug)]
pub(crate) enum VaultError {
    Key(KeyError),
    Audit(AuditError),
}

impl From<KeyError> for VaultError {
    fn from(e: KeyError) -> Self {
        VaultError::Key(e)
    }
}

impl From<AuditError> for VaultError {
    fn from(e: AuditError) -> Self {
        VaultError::Audit(e)
    }
}

pub(crate) struct Vault {
    store: Mutex<KeyStore>,
    /// Keys unwrapped (or created) by this process, by id.
    cache: Mutex<HashMap<u32, Arc<DataKey>>>,
    audit: Mutex<AuditLog>,
    /// Live keys a recorded shred names, refused to readers and appends as erased in this
    /// process, though still used by tracevault itself to re-seal what the journal holds (see
    /// the open's `check_shreds`): an audit entry alone never destroys a key or an event.
    withheld: std::collections::HashSet<u32>,
}

/// tracevault itself, as an actor in the audit log.
fn engine(purpose: &str) -> Access {
    Access::new("tracevault", Role::System, purpose)
}

impl Vault {
    pub fn new(store: KeyStore, audit: AuditLog, withheld: std::collections::HashSet<u32>) -> Vault {
        Vault {
            store: Mutex::new(store),
            cache: Mutex::new(HashMap::new()),
            audit: Mutex::new(audit),
            withheld,
        }
    }

    /// Appends an audit entry, durably.
    pub fn record(
        &self,
        access: &Access,
        action: Action,
        sessions: Vec<String>,
        keys: Vec<u32>,
        decision: Decision,
    ) -> Result<AuditEntry, AuditError> {
        lock(&self.audit).record(access, action, sessions, keys, decision)
    }

    /// Runs `f` while no audit entry can be appended (a reader of the audit file sees no entry
    /// half-written).
    pub fn with_audit_still<R>(&self, f: impl FnOnce() -> R) -> R {
        let _still = lock(&self.audit);
        f()
    }

    /// The audit log's size and root, for the signed heads.
    pub fn audit_head(&self) -> (u64, Hash) {
        lock(&self.audit).head()
    }

    /// The key store's change counter and hash, for the signed heads.
    pub fn keystore_commitment(&self) -> (u64, Hash) {
        lock(&self.store).commitment()
    }

    /// Whether the master key is one tracevault can replace (a key file, not an environment
    /// variable).
    pub fn master_key_is_managed(&self) -> bool {
        lock(&self.store).master_key_is_managed()
    }

    /// A data key for tracevault's own use (sealing or recovering a session's open block). The
    /// first unwrap of each key in a process is recorded in the audit log first.
    pub fn engine_key(&self, id: u32, purpose: &str) -> Result<Arc<DataKey>, VaultError> {
        if let Some(key) = lock(&self.cache).get(&id) {
            return Ok(key.clone());
        }
        let store = lock(&self.store);
        // Another thread may have unwrapped it while this one waited for the store.
        if let Some(key) = lock(&self.cache).get(&id) {
            return Ok(key.clone());
        }
        // The store says erased or damaged without unwrapping: no entry for a key never released.
        store.check(id)?;
        self.record(&engine(purpose), Action::Unwrap, Vec::new(), vec![id], Decision::Allowed)?;
        let key = Arc::new(store.unwrap(id)?);
        lock(&self.cache).insert(id, key.clone());
        Ok(key)
    }

    /// A data key for a read the caller has already recorded in the audit log.
    pub fn read_key(&self, id: u32) -> Result<Arc<DataKey>, KeyError> {
        if self.withheld.contains(&id) {
            return Err(KeyError::Erased(id));
        }
        if let Some(key) = lock(&self.cache).get(&id) {
            return Ok(key.clone());
        }
        // Cached while the store is locked, so a shred cannot slip between the unwrap and the
        // cache and leave an erased key in memory.
        let store = lock(&self.store);
        let key = Arc::new(store.unwrap(id)?);
        lock(&self.cache).insert(id, key.clone());
        Ok(key)
    }

    /// The person's key id, creating their key on first use.
    pub fn key_for_user(&self, user: &str) -> Result<u32, KeyError> {
        let (id, created) = lock(&self.store).key_for_user(user)?;
        if self.withheld.contains(&id) {
            return Err(KeyError::Erased(id));
        }
        if let Some(key) = created {
            lock(&self.cache).insert(id, Arc::new(key));
        }
        Ok(id)
    }

    /// The person's current key and its state, if any.
    pub fn key_of(&self, user: &str) -> Option<(u32, SlotState)> {
        lock(&self.store).key_of(user)
    }

    /// Every key id of the person, live or erased.
    pub fn keys_of(&self, user: &str) -> Vec<u32> {
        lock(&self.store).keys_of(user)
    }

    /// Erases the person's keys and the keys in `also` (an atomic rewrite of the key store) and forgets any
    /// unwrapped copy, under the store's lock so no unwrap can race it.
    pub fn shred(&self, user: &str, also: &[u32]) -> Result<Vec<u32>, KeyError> {
        let mut store = lock(&self.store);
        let erased = store.shred(user, also)?;
        let mut cache = lock(&self.cache);
        for id in erased.iter().chain(also) {
            cache.remove(id);
        }
        Ok(erased)
    }

    /// Rotates the master key; returns the new key's fingerprint.
    pub fn rotate(&self) -> Result<String, KeyError> {
        lock(&self.store).rotate()
    }

    pub fn keys(&self) -> Vec<crate::keys::KeyInfo> {
        lock(&self.store).keys()
    }

    pub fn master_fingerprint(&self) -> String {
        lock(&self.store).master_fingerprint()
    }
}
