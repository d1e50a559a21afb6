//! What an open checks against the signed heads before it signs anything: the chain itself, the
//! checkpoint's reference to the newest head, the frames, the access audit log and the key store.
//! A normal open refuses at the first thing that does not match ([`OpenError::Integrity`]): a
//! head signed over it would launder it. A repair open ([`LogOptions::repair`]) records each
//! finding instead, moves the evidence that does not verify aside (never deleting it), and the
//! first head it signs is a *repair head*: its `repair` bits say what was found, and it chains to
//! the last head known.
//!
//! [`LogOptions::repair`]: super::LogOptions::repair

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ed25519_dalek::VerifyingKey;

use crate::audit::{self, AuditLog};
use crate::error::OpenError;
use crate::index::Checkpoint;
use crate::integrity::{self, HEAD_BYTES, Link, SignedHead, repaired};
use crate::keys::{self, KeyStore};
use crate::layout::{CHECKPOINT, HEADS, INTEGRITY_DIR, KEYSTORE};
use crate::merkle::Hash;
use crate::storage::Storage;

/// One thing an open found that does not verify.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// Which [`repaired`] bit it sets in a repair head.
    pub bit: u32,
    pub path: PathBuf,
    pub reason: String,
}

/// The signed heads as an open found them, and what it found wrong.
pub(crate) struct Anchor {
    repair: bool,
    pub heads: Vec<SignedHead>,
    /// The newest head named by the checkpoint file (written after it).
    checkpoint_head: Option<Link>,
    pub findings: Vec<Finding>,
    /// The evidence moved aside by a repair, (from, to).
    pub moved: Vec<(PathBuf, PathBuf)>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> OpenError + '_ {
    move |source| OpenError::Io { path: path.to_owned(), source }
}

/// A name beside `path` for evidence moved aside by a repair.
fn aside(path: &Path) -> PathBuf {
    let us = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros());
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".before-repair-{us}"));
    PathBuf::from(name)
}

impl Anchor {
    /// Reads the heads (cutting a head torn by a crash: never relied on) and the checkpoint's
    /// reference, and checks the chain: each head's `prev` is the hash of the one before and its
    /// counter one more, and the newest is signed by `public` (so, through the hashes, all are).
    pub fn read(storage: &dyn Storage, public: &VerifyingKey, repair: bool) -> Result<Anchor, OpenError> {
        let path = Path::new(HEADS);
        storage.create_dir_all(Path::new(INTEGRITY_DIR)).map_err(io(Path::new(INTEGRITY_DIR)))?;
        let bytes = storage.read_all(path).map_err(io(path))?.unwrap_or_default();
        // Heads of an earlier format are other-sized records: evidence to keep whole, not a tail.
        let this_format = !integrity::is_earlier_format(&bytes);
        if this_format && bytes.len() % HEAD_BYTES != 0 {
            storage.truncate(path, (bytes.len() - bytes.len() % HEAD_BYTES) as u64).map_err(io(path))?;
        }
        let (mut heads, damage) = integrity::read_heads(storage).map_err(|e| OpenError::Corrupt {
            path: path.to_owned(),
            offset: 0,
            reason: e.to_string(),
        })?;
        let mut anchor = Anchor {
            repair,
            heads: Vec::new(),
            checkpoint_head: None,
            findings: Vec::new(),
            moved: Vec::new(),
        };
        if let Some((offset, reason)) = damage {
            let len = storage.len(path).map_err(io(path))?;
            if this_format && offset + HEAD_BYTES as u64 == len {
                // The last head was written but its sync never finished (a power cut garbled it):
                // its checkpoint never completed (an insider garbling it only drops it, which the
                // checkpoint's reference catches). Damage before the last head is evidence.
                storage.truncate(path, offset).map_err(io(path))?;
            } else {
                anchor.found(repaired::HEADS_DAMAGED, path, format!("at offset {offset}: {reason}"))?;
            }
        }
        for k in 1..heads.len() {
            let (before, head) = (&heads[k - 1], &heads[k]);
            if head.prev != before.hash() || head.counter != before.counter + 1 || head.repair != 0 {
                let reason = format!(
                    "signed head {} (counter {}) does not chain to the head before it (counter {})",
                    k, head.counter, before.counter
                );
                heads.truncate(k);
                anchor.found(repaired::HEADS_DAMAGED, path, reason)?;
                break;
            }
        }
        if let Some(first) = heads.first()
            && first.repair == 0
            && (first.counter != 0 || first.prev != [0; 32])
        {
            let reason = format!(
                "the heads file starts at head {}, not at the first head: earlier heads were removed",
                first.counter
            );
            anchor.found(repaired::HEADS_DAMAGED, path, reason)?;
        }
        if let Some(newest) = heads.last()
            && !newest.verify_signature(public)
        {
            let reason = format!(
                "the newest signed head ({}) does not verify under this log's signing key {}",
                newest.counter,
                keys::hex(public.as_bytes())
            );
            anchor.found(repaired::HEADS_DAMAGED, path, reason)?;
        }
        anchor.heads = heads;
        // The checkpoint is a cache, but it names the newest head when it was written: the heads
        // file must still hold that head.
        if let Some(Ok(c)) = storage
            .read_all(Path::new(CHECKPOINT))
            .map_err(io(Path::new(CHECKPOINT)))?
            .map(|b| Checkpoint::from_bytes(&b))
        {
            anchor.checkpoint_head = c.head;
        }
        if let Some(link) = anchor.checkpoint_head {
            let held = anchor.heads.iter().find(|h| h.counter == link.counter);
            if held.is_none_or(|h| h.hash() != link.hash) {
                let newest = anchor.heads.last().map_or("none".to_owned(), |h| h.counter.to_string());
                let reason = format!(
                    "the checkpoint was written after signed head {}, which the heads file does not hold (its \
                     newest: {newest}): the newest heads were removed",
                    link.counter
                );
                anchor.found(repaired::HEADS_DROPPED, path, reason)?;
            }
        }
        Ok(anchor)
    }

    /// A finding: the open's error, or (repairing) one more thing the repair head records.
    pub fn found(&mut self, bit: u32, path: &Path, reason: String) -> Result<(), OpenError> {
        if !self.repair {
            return Err(OpenError::Integrity { path: path.to_owned(), reason });
        }
        tracing::info!(file = %path.display(), %reason, "repair: found");
        self.findings.push(Finding { bit, path: path.to_owned(), reason });
        Ok(())
    }

    pub fn newest(&self) -> Option<&SignedHead> {
        self.heads.last()
    }

    /// The audit log's (size, root) the newest head commits to.
    pub fn audit_anchor(&self) -> Option<(u64, Hash)> {
        self.newest().map(|h| (h.audit_size, h.audit_root))
    }

    /// A key store must be there once the log has signed anything.
    pub fn check_keystore_present(&mut self, storage: &dyn Storage) -> Result<(), OpenError> {
        let Some(newest) = self.newest() else { return Ok(()) };
        // (Shorter than its header, it would be taken for a store a crash interrupted at creation
        // and started again, with a new master key: never once heads exist.)
        if storage.len(Path::new(KEYSTORE)).is_ok_and(|n| n >= keys::KEYSTORE_HEADER_BYTES as u64) {
            return Ok(());
        }
        let reason = format!(
            "missing, but signed head {} commits to a key store at change {}: restore it from a backup (a new \
             one would hold none of the keys the data is sealed with)",
            newest.counter, newest.keystore_changes
        );
        self.found(repaired::KEYSTORE_DIFFERS, Path::new(KEYSTORE), reason)
    }

    /// The key store against the newest head: a store behind it was rolled back; one at the same
    /// change counter with other bytes was forged or swapped. One ahead changed since (a key was
    /// added, a person shredded) and is committed to by the next head.
    pub fn check_keystore(&mut self, store: &KeyStore) -> Result<(), OpenError> {
        let Some(newest) = self.newest() else { return Ok(()) };
        let (changes, hash) = store.commitment();
        match integrity::keystore_against_head(newest, changes, &hash) {
            Some(reason) => self.found(repaired::KEYSTORE_DIFFERS, Path::new(KEYSTORE), reason),
            None => Ok(()),
        }
    }

    /// The key store's erasures against the audit log's shreds, when either changed since the
    /// newest head (after a crash; a clean close signs a head over both): an erased key no
    /// recorded shred erased was forged, and a damaged slot was not there when the head was
    /// signed: refused. A key a recorded shred names that is still live (a key store rolled back,
    /// or a shred a crash interrupted after its audit entry) is withheld: refused to readers and
    /// appends as erased (tracevault itself still re-seals what the journal holds), but never
    /// erased here: an audit entry is not signed until a head covers it, and a forged one
    /// must not destroy anyone's key. Running the shred again erases it. Returns the keys withheld.
    pub fn check_shreds(
        &mut self,
        store: &KeyStore,
        audit: &AuditLog,
        storage: &dyn Storage,
    ) -> Result<HashSet<u32>, OpenError> {
        let mut withheld = HashSet::new();
        let Some(newest) = self.newest().cloned() else { return Ok(withheld) };
        let (_, hash) = store.commitment();
        let changed = hash != newest.keystore_hash;
        if !changed && audit.head().0 <= newest.audit_size {
            return Ok(withheld);
        }
        let Ok(scan) = audit::scan(storage) else { return Ok(withheld) };
        let shredded = integrity::shredded_keys(&scan.entries);
        for k in store.keys() {
            let reason = match (&k.state, shredded.contains_key(&k.id)) {
                (keys::SlotState::Erased, false) if changed => format!(
                    "key {} is erased, but no shred in the access audit log erased it: the slot was forged",
                    k.id
                ),
                (keys::SlotState::Damaged(why), _) if changed => {
                    format!(
                        "key {}: its slot is damaged ({why}), in a key store changed since the newest head",
                        k.id
                    )
                }
                (keys::SlotState::Live, true) => {
                    withheld.insert(k.id);
                    continue;
                }
                _ => continue,
            };
            self.found(repaired::KEYSTORE_DIFFERS, Path::new(KEYSTORE), reason)?;
        }
        if !withheld.is_empty() {
            tracing::warn!(
                keys = ?withheld,
                "the audit log records these keys shredded but the key store holds them live (rolled back, or a \
                 shred a crash interrupted): refused as erased; run the shred again to erase them"
            );
        }
        Ok(withheld)
    }

    /// A log that never signed a head has neither audit entries nor key store changes (its first
    /// head is signed before either can happen): a log that has them lost its heads.
    pub fn check_unsigned(&mut self, store: &KeyStore, audit: &AuditLog) -> Result<(), OpenError> {
        if self.newest().is_some() || self.bits() & repaired::HEADS_DAMAGED != 0 {
            return Ok(());
        }
        let (changes, _) = store.commitment();
        let entries = audit.head().0;
        if changes > 0 || entries > 0 {
            let reason = format!(
                "no signed head, but the key store is at change {changes} and the audit log holds {entries} entries: \
                 the heads (and perhaps the data) were removed"
            );
            self.found(repaired::HEADS_MISSING, Path::new(HEADS), reason)?;
        }
        Ok(())
    }

    /// The audit log against the newest head. Repairing, a log that does not verify is moved
    /// aside and a new one started (the repair head commits to it).
    pub fn check_audit(&mut self, storage: &Arc<dyn Storage>, log: AuditLog) -> Result<AuditLog, OpenError> {
        let Some(reason) = log.broken().map(str::to_owned) else { return Ok(log) };
        if !self.repair {
            // Appends go on (heads keep committing to the audit log as last verified); reads are
            // refused, each with this reason.
            tracing::error!(%reason, "the access audit log does not verify: reads are refused");
            return Ok(log);
        }
        let path = audit::audit_path();
        self.found(repaired::AUDIT_LOG, &path, reason)?;
        drop(log);
        if storage.len(&path).is_ok() {
            let to = aside(&path);
            storage.rename(&path, &to).map_err(io(&path))?;
            self.moved.push((path.clone(), to));
        }
        Ok(AuditLog::open(storage.clone(), None)?)
    }

    /// The frames against the newest head, once recovery has hashed them: `frames` in the
    /// segments, and the tree's root when it held exactly as many as the head covers.
    pub fn check_frames(&mut self, frames: u64, root_at_head: Option<Hash>) -> Result<(), OpenError> {
        let path = Path::new(HEADS);
        let Some(newest) = self.newest().cloned() else {
            // (Heads that did not read are already a finding.)
            if frames > 0 && self.bits() & (repaired::HEADS_DAMAGED | repaired::HEADS_MISSING) == 0 {
                let reason = format!(
                    "the log holds {frames} frames but no signed head: every open signs one before any frame is \
                     written, so the heads were removed"
                );
                return self.found(repaired::HEADS_MISSING, path, reason);
            }
            return Ok(());
        };
        if frames < newest.tree_size {
            let reason = format!(
                "the segments hold {frames} frames, signed head {} covers {}: frames were removed",
                newest.counter, newest.tree_size
            );
            self.found(repaired::SEGMENTS_DIFFER, path, reason)?;
        } else if root_at_head != Some(newest.root) {
            let reason = format!(
                "the first {} frames in the segments are not the ones signed head {} commits to: frames were \
                 altered, removed or inserted",
                newest.tree_size, newest.counter
            );
            self.found(repaired::SEGMENTS_DIFFER, path, reason)?;
        }
        Ok(())
    }

    /// The repair bits found.
    pub fn bits(&self) -> u32 {
        self.findings.iter().fold(0, |bits, f| bits | f.bit)
    }

    /// Repairing, once every check ran: if anything did not verify, the heads are moved aside (they
    /// commit to state that is gone) and a new chain starts from the last head known, with the
    /// repair head first. Returns the head the next one chains to.
    pub fn settle(&mut self, storage: &dyn Storage) -> Result<Option<Link>, OpenError> {
        let newest = self.newest().map(SignedHead::link);
        if self.findings.is_empty() {
            return Ok(newest);
        }
        let path = Path::new(HEADS);
        if storage.len(path).is_ok_and(|n| n > 0) {
            let to = aside(path);
            storage.rename(path, &to).map_err(io(path))?;
            self.moved.push((path.to_owned(), to));
        }
        self.heads.clear();
        // The last head known: the newest that chained, or the one the checkpoint names if newer.
        Ok(match (newest, self.checkpoint_head) {
            (Some(a), Some(b)) if b.counter > a.counter => Some(b),
            (Some(a), _) => Some(a),
            (None, b) => b,
        })
    }
}
