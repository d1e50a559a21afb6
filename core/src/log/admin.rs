//! Erasing people and rotating the master key (admins), and listing keys.

use std::sync::Arc;

use crate::audit::{Action, Decision};
use crate::error::{AppendError, ReadError};
use crate::keys;
use crate::policy::{self, Access, Operation};

use super::state::{Log, OpenBlock, Request, Session, lock};

/// What shredding a person did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shredded {
    /// The data keys erased.
    pub keys: Vec<u32>,
    /// The sessions whose events can no longer be read.
    pub sessions: Vec<String>,
    /// The audit entry recording it.
    pub audit_seq: u64,
    /// Whether the master key the remaining keys were wrapped under was replaced.
    pub master_key: MasterKeyAfterShred,
}

/// One person's access history ([`Log::access_history`]): what the audit log says about their
/// sessions, and nothing about anyone else's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessHistory {
    pub user: String,
    /// The person's sessions, in id order.
    pub sessions: Vec<String>,
    /// Every entry that names one of them, in log order, cut to them: an export of many people's
    /// sessions shows here as the export of this person's, and no data key ids.
    pub entries: Vec<crate::audit::AuditEntry>,
}

/// What became of the master key (the key-encryption key) after a shred.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MasterKeyAfterShred {
    /// Every remaining key was re-wrapped under a new master key (this fingerprint) and the old
    /// one destroyed: a copy of the key store taken before the shred opens with no key that
    /// still exists.
    Replaced(String),
    /// Nothing was erased, so nothing needed replacing.
    Unchanged,
    /// It could not be replaced (given in `$TRACEVAULT_MASTER_KEY`, or the rotation failed: the
    /// reason). The erasure itself happened; a key store copied before it still opens with that
    /// key until the master key is rotated.
    Kept(String),
}

impl Log {
    /// Crypto-shreds a person (admins only): their data keys are erased (an atomic rewrite of the
    /// key store), so none of their frames can be decrypted again, by anyone; everyone else's can,
    /// and the log still verifies (the Merkle tree hashes ciphertext). Recorded in the access audit
    /// log (before the keys are destroyed) as the verifiable record of the erasure. Their
    /// sessions take no more events, and what was waiting in memory to be sealed is dropped.
    pub fn shred(&self, access: &Access, user: &str) -> Result<Shredded, AppendError> {
        let sessions: Vec<Arc<Session>> = self
            .inner
            .sessions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|s| s.meta.user == user)
            .cloned()
            .collect();
        let mut ids: Vec<String> = sessions.iter().map(|s| s.id.clone()).collect();
        ids.sort();
        // Every key of theirs: the slots naming them, and the keys their sessions seal with (a
        // damaged slot may no longer name its person).
        let session_keys: Vec<u32> = sessions.iter().filter_map(|s| lock(&s.state).key_id).collect();
        let mut keys = self.inner.vault.keys_of(user);
        keys.extend(&session_keys);
        keys.sort_unstable();
        keys.dedup();
        let decided = policy::check(access, Operation::Shred);
        let decision = decided.as_ref().err().map_or(Decision::Allowed, |d| Decision::Denied(d.0.clone()));
        let entry = self
            .inner
            .vault
            .record(access, Action::Shred, ids.clone(), keys.clone(), decision)
            .map_err(|e| self.audit_failed(e))?;
        decided?;
        let erased = self.inner.vault.shred(user, &session_keys)?;
        tracing::info!(keys = ?erased, sessions = ids.len(), "crypto-shredded a person");
        // The remaining keys go under a new master key and the old one is destroyed, so that a
        // copy of the key store from before the shred (a backup, an insider's copy) is useless.
        // Also when their keys were already erased: a shred run again after a crash between the
        // erasure and the rotation finishes the rotation.
        let master_key = if keys.is_empty() && erased.is_empty() {
            MasterKeyAfterShred::Unchanged
        } else if !self.inner.vault.master_key_is_managed() {
            MasterKeyAfterShred::Kept(format!(
                "the master key is given in ${}: rotate it yourself and re-wrap (`tracevault keys rotate` with the \
                 key in a key file), or a key store copied before this shred still opens",
                keys::ENV_MASTER_KEY
            ))
        } else {
            match self.inner.vault.rotate() {
                Ok(fingerprint) => MasterKeyAfterShred::Replaced(fingerprint),
                Err(e) => {
                    tracing::error!(error = %e, "shredded, but the master key could not be replaced");
                    MasterKeyAfterShred::Kept(e.to_string())
                }
            }
        };
        // From here the erasure has happened: what follows tidies up, and its failure (which
        // poisons the log) does not undo or hide it.
        let key_id = erased.first().copied().unwrap_or(0);
        for session in &sessions {
            let mut state = lock(&session.state);
            let before = state.open.bytes();
            state.open = OpenBlock::default();
            state.erased = Some(state.key_id.unwrap_or(key_id));
            self.inner.track_open(&session.id, &mut state, before, true);
        }
        // Retire the journal files that held their open blocks.
        if self.send(Request::Erase(sessions.iter().map(|s| s.number).collect())).is_ok() {
            let _ = self.checkpoint();
        }
        Ok(Shredded { keys: erased, sessions: ids, audit_seq: entry.seq, master_key })
    }

    /// Rotates the master key (admins only): every data key is re-wrapped under a new master key,
    /// crash-safely, without touching the data. Returns the new key's fingerprint.
    pub fn rotate_master_key(&self, access: &Access) -> Result<String, AppendError> {
        let decided = policy::check(access, Operation::Rotate);
        let decision = decided.as_ref().err().map_or(Decision::Allowed, |d| Decision::Denied(d.0.clone()));
        self.inner
            .vault
            .record(access, Action::RotateMasterKey, Vec::new(), Vec::new(), decision)
            .map_err(|e| self.audit_failed(e))?;
        decided?;
        let fingerprint = self.inner.vault.rotate()?;
        // The key store changed: a head commits to it now.
        self.checkpoint()?;
        Ok(fingerprint)
    }

    /// The data keys in the key store (no key material), and the master key's fingerprint.
    pub fn keys(&self) -> (String, Vec<keys::KeyInfo>) {
        (self.inner.vault.master_fingerprint(), self.inner.vault.keys())
    }

    /// The public half of the key that signs the tree heads: what an auditor verifies with.
    pub fn public_key(&self) -> ed25519_dalek::VerifyingKey {
        self.inner.signing.verifying_key()
    }
}

impl Log {
    /// The access audit log's entries, for a role that may read it (the query is recorded too).
    pub fn audit_entries(&self, access: &Access) -> Result<crate::audit::AuditScan, ReadError> {
        let decided = policy::check(access, Operation::ReadAudit);
        let decision = decided.as_ref().err().map_or(Decision::Allowed, |d| Decision::Denied(d.0.clone()));
        self.inner
            .vault
            .record(access, Action::ReadAudit, Vec::new(), Vec::new(), decision)
            .map_err(|e| ReadError::Audit(Box::new(self.audit_failed(e))))?;
        decided?;
        self.inner
            .vault
            .with_audit_still(|| crate::audit::scan(self.inner.storage.as_ref()))
            .map_err(|e| ReadError::Audit(Box::new(self.audit_failed(e))))
    }

    /// Checks the access audit log against the signed heads ([`crate::integrity::verify_audit`]),
    /// for a role that may read it (recorded like [`Log::audit_entries`]). The newest entries,
    /// after the newest head, are checked as a chain only; a checkpoint first signs them.
    pub fn verify_audit(&self, access: &Access) -> Result<crate::VerifyReport, ReadError> {
        let decided = policy::check(access, Operation::ReadAudit);
        let decision = decided.as_ref().err().map_or(Decision::Allowed, |d| Decision::Denied(d.0.clone()));
        self.inner
            .vault
            .record(access, Action::ReadAudit, Vec::new(), Vec::new(), decision)
            .map_err(|e| ReadError::Audit(Box::new(self.audit_failed(e))))?;
        decided?;
        let public = self.public_key();
        self.inner
            .vault
            .with_audit_still(|| crate::integrity::verify_audit(self.inner.storage.as_ref(), &public))
    }

    /// Who read `user`'s sessions, when, why and under which ticket: the audit entries naming
    /// them, each cut to them ([`AccessHistory`]). For a role that may read access histories; the
    /// query is recorded too. Which person a caller may ask about is the front end's binding (a
    /// subject's token names one user), as a recorder's device is.
    pub fn access_history(&self, access: &Access, user: &str) -> Result<AccessHistory, ReadError> {
        let decided = policy::check(access, Operation::ReadAccessHistory);
        let decision = decided.as_ref().err().map_or(Decision::Allowed, |d| Decision::Denied(d.0.clone()));
        let sessions: std::collections::BTreeSet<String> =
            self.sessions().into_iter().filter(|s| s.meta.user == user).map(|s| s.meta.session).collect();
        // Someone else looking up who read a person's data names the person's sessions, so the
        // person sees that too; the person's own look is not listed back to them.
        let named =
            if access.role == crate::Role::Subject { Vec::new() } else { sessions.iter().cloned().collect() };
        self.inner
            .vault
            .record(access, Action::ReadAudit, named, Vec::new(), decision)
            .map_err(|e| ReadError::Audit(Box::new(self.audit_failed(e))))?;
        decided?;
        let scan = self
            .inner
            .vault
            .with_audit_still(|| crate::audit::scan(self.inner.storage.as_ref()))
            .map_err(|e| ReadError::Audit(Box::new(self.audit_failed(e))))?;
        let entries = scan
            .entries
            .into_iter()
            .filter_map(|mut e| {
                e.sessions.retain(|s| sessions.contains(s));
                e.keys.clear();
                (!e.sessions.is_empty()).then_some(e)
            })
            .collect();
        Ok(AccessHistory { user: user.to_owned(), sessions: sessions.into_iter().collect(), entries })
    }

    /// Every session, in id order, for a role that may list them (a refusal is recorded).
    pub fn list_sessions(&self, access: &Access) -> Result<Vec<super::SessionInfo>, ReadError> {
        self.check_access(access, Operation::ListSessions)?;
        Ok(self.sessions())
    }
}
