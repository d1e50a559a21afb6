//! The rules a key store is held to, the same for `verify` and for every open: against the
//! newest signed head, and against the shreds the access audit log records.

use std::collections::BTreeMap;

use super::SignedHead;
use crate::audit::{Action, AuditEntry, Decision};
use crate::merkle::Hash;

/// Why a key store at change `changes` whose file hashes to `hash` is not one `head` allows: behind
/// it (rolled back), or other bytes at the same change counter (altered or replaced). One ahead of
/// it changed since, and the next head commits to it. The one rule, for `verify` and for an open.
pub(crate) fn keystore_against_head(head: &SignedHead, changes: u64, hash: &Hash) -> Option<String> {
    if changes < head.keystore_changes {
        return Some(format!(
            "at change {changes}, but signed head counter {} commits to change {}: the key store was rolled back \
             (a copy from before a shred brings erased keys back)",
            head.counter, head.keystore_changes
        ));
    }
    (changes == head.keystore_changes && *hash != head.keystore_hash).then(|| {
        format!(
            "not the key store signed head counter {} commits to (same change counter {changes}, other bytes): it \
             was altered or replaced",
            head.counter
        )
    })
}

/// The key ids the allowed shreds of the audit log erased, each with the first entry naming it.
pub(crate) fn shredded_keys(entries: &[AuditEntry]) -> BTreeMap<u32, u64> {
    let mut shredded = BTreeMap::new();
    for e in entries.iter().filter(|e| e.action == Action::Shred && e.decision == Decision::Allowed) {
        for k in &e.keys {
            shredded.entry(*k).or_insert(e.seq);
        }
    }
    shredded
}
