//! The access audit log: who read what, when, why, and what was decided. Its own append-only file
//! of frames (`audit/00000000000000000000.log`), one entry per frame, hashed into its own RFC 6962
//! tree; the log's signed tree heads commit to its size and root, so entries cannot be removed,
//! changed or reordered without `verify` seeing it.
//!
//! An entry is durable (written and fdatasynced) before any decrypted byte is released, and data
//! keys are unwrapped only after one: if the entry cannot be written, the read fails (fail closed).
//! After a failed write the audit log refuses every further entry until reopened, like the log.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::files::{self, FILE_HEADER_BYTES, Stop};
use crate::frame::{self, FrameHeader, FrameKind};
use crate::merkle::{self, Frontier, Hash};
use crate::policy::{Access, Operation, Role};
use crate::storage::{AppendFile, Storage};

use crate::layout::AUDIT;
pub use crate::layout::audit_path;

/// What was done.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Action {
    /// Decrypted events of the sessions were read.
    Read,
    /// Sessions were exported (as trajectories).
    Export,
    /// Data keys were unwrapped by tracevault itself (to seal or recover open blocks).
    Unwrap,
    /// A person was crypto-shredded: the keys listed were erased.
    Shred,
    /// The master key was rotated.
    RotateMasterKey,
    /// The access audit log was read.
    ReadAudit,
    /// An append was refused (appends are not recorded, refusals are).
    Append,
    /// An API token was minted.
    MintToken,
    /// The session list was refused (allowed listings are not recorded: they hold no events).
    ListSessions,
    /// The log's integrity state was rebuilt after it was lost or did not verify (the purpose
    /// says what was found).
    Repair,
}

impl Action {
    /// How an operation is recorded.
    pub fn of(op: Operation) -> Action {
        match op {
            Operation::ReadRaw | Operation::ReadSteps => Action::Read,
            Operation::ExportRedacted | Operation::ExportUnredacted => Action::Export,
            Operation::Shred => Action::Shred,
            Operation::Rotate => Action::RotateMasterKey,
            Operation::ReadAudit | Operation::ReadAccessHistory => Action::ReadAudit,
            Operation::Append => Action::Append,
            Operation::ListSessions => Action::ListSessions,
            Operation::MintTokens => Action::MintToken,
            Operation::Unwrap => Action::Unwrap,
            Operation::Repair => Action::Repair,
        }
    }
}

/// Whether the request went ahead.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "decision", content = "reason")]
pub enum Decision {
    Allowed,
    Denied(String),
}

/// One entry of the audit log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Its position in the audit log, from 0.
    pub seq: u64,
    /// Microseconds since the Unix epoch, from the system clock.
    pub time_unix_us: u64,
    pub actor: String,
    pub role: Role,
    pub action: Action,
    pub sessions: Vec<String>,
    /// Data key ids involved (for unwraps and shredding).
    pub keys: Vec<u32>,
    pub purpose: String,
    pub ticket: Option<String>,
    pub decision: Decision,
}

/// Why an audit entry could not be written (the operation it guards did not happen).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    #[error("access audit log {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(
        "access audit log refuses entries after a failure ({0}): no data is released that cannot be recorded. \
         A failed write clears on reopening; damage on disk does not: restore audit/ from a backup, or run \
         `tracevault repair`, which moves the damaged file aside and records the discontinuity (`tracevault \
         audit verify` still checks what is there against the signed heads)"
    )]
    Broken(String),
}

fn now_unix_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

/// The open audit log.
pub(crate) struct AuditLog {
    file: Option<Box<dyn AppendFile>>,
    tree: Frontier,
    /// Set by a failed write or a damaged file: no more entries.
    broken: Option<String>,
    /// When the file on disk does not hold what the newest signed head says (removed, cut short,
    /// damaged): that head's (size, root), which later heads go on committing to, so that no head
    /// is ever signed over an audit log that did not verify.
    frozen: Option<(u64, Hash)>,
}

/// Why the audit log on disk is not the one the newest signed head commits to, if it is not.
fn anchor_mismatch(tree: &Frontier, root_at_anchor: Option<Hash>, anchor: (u64, Hash)) -> Option<String> {
    let (size, root) = anchor;
    if tree.size() < size {
        return Some(format!(
            "holds {} entries, the newest signed head commits to {size}: entries were removed",
            tree.size()
        ));
    }
    (root_at_anchor != Some(root)).then(|| {
        format!("its first {size} entries are not the ones the newest signed head commits to: entries were altered")
    })
}

impl AuditLog {
    /// Opens (creating) the audit log. A torn last entry (never acknowledged) is cut; damage
    /// anywhere else leaves the log refusing entries, so reads fail closed until it is repaired.
    /// `anchor` is the (size, root) the newest signed head commits to: a file that does not hold
    /// it (missing, shorter, altered) is refused the same way, and never recreated.
    pub fn open(storage: Arc<dyn Storage>, anchor: Option<(u64, Hash)>) -> Result<AuditLog, AuditError> {
        let path = audit_path();
        let io = |source| AuditError::Io { path: path.clone(), source };
        storage.create_dir_all(Path::new(AUDIT.dir)).map_err(io)?;
        let bytes = storage.read_all(&path).map_err(io)?;
        let mut log = AuditLog { file: None, tree: Frontier::default(), broken: None, frozen: None };
        let signed = anchor.filter(|(size, _)| *size > 0);
        let refuse = |log: &mut AuditLog, reason: String| {
            log.broken = Some(format!("{}: {reason}", path.display()));
            log.frozen = signed;
        };
        match bytes {
            Some(bytes) if bytes.len() >= FILE_HEADER_BYTES => {
                if let Err(c) = files::read_file_header(&bytes, AUDIT.magic) {
                    refuse(&mut log, c.to_string());
                    return Ok(log);
                }
                let scan = files::scan(&bytes, FILE_HEADER_BYTES);
                let mut root_at_anchor = signed.is_none().then(|| log.tree.root());
                for (_, f) in &scan.frames {
                    log.tree.push(merkle::leaf_hash(f.bytes));
                    if signed.is_some_and(|(size, _)| size == log.tree.size()) {
                        root_at_anchor = Some(log.tree.root());
                    }
                }
                if let Some(reason) = signed.and_then(|a| anchor_mismatch(&log.tree, root_at_anchor, a)) {
                    refuse(&mut log, reason);
                    return Ok(log);
                }
                match scan.stop {
                    Stop::End => {}
                    Stop::Torn => storage.truncate(&path, scan.end).map_err(io)?,
                    // Each entry is synced before the next is written, so a power cut can garble
                    // only the last one: damage with no frame after it is that entry, never
                    // acknowledged (its read never ran). Damage anywhere else is kept as evidence.
                    Stop::Damage(_) if is_garbled_tail(&bytes[scan.end as usize..]) => {
                        storage.truncate(&path, scan.end).map_err(io)?
                    }
                    Stop::Damage(c) => {
                        refuse(&mut log, format!("at offset {}: {c}", scan.end));
                        return Ok(log);
                    }
                }
                let mut file = storage.open_append(&path).map_err(io)?;
                file.sync().map_err(io)?;
                log.file = Some(file);
            }
            found => {
                if let Some((size, _)) = signed {
                    let what = if found.is_some() { "cut short to its header" } else { "missing" };
                    refuse(&mut log, format!("{what}, but the newest signed head commits to {size} entries"));
                    return Ok(log);
                }
                // New (or created just before a crash, header not durable): start it.
                if storage.len(&path).is_ok() {
                    storage.remove(&path).map_err(io)?;
                }
                let mut file = storage.open_append(&path).map_err(io)?;
                file.append(&files::file_header(AUDIT.magic, 0)).map_err(io)?;
                file.sync().map_err(io)?;
                storage.sync_dir(Path::new(AUDIT.dir)).map_err(io)?;
                log.file = Some(file);
            }
        }
        Ok(log)
    }

    /// What the next signed head commits to: the entries so far and the root of their tree; or,
    /// if the file did not verify at open, what the newest head committed to then.
    pub fn head(&self) -> (u64, Hash) {
        self.frozen.unwrap_or((self.tree.size(), self.tree.root()))
    }

    /// Why entries are refused, if they are.
    pub fn broken(&self) -> Option<&str> {
        self.broken.as_deref()
    }

    /// Appends an entry and makes it durable; returns it with its sequence number and time.
    pub fn record(
        &mut self,
        access: &Access,
        action: Action,
        sessions: Vec<String>,
        keys: Vec<u32>,
        decision: Decision,
    ) -> Result<AuditEntry, AuditError> {
        if let Some(reason) = &self.broken {
            return Err(AuditError::Broken(reason.clone()));
        }
        let entry = AuditEntry {
            seq: self.tree.size(),
            time_unix_us: now_unix_us(),
            actor: access.actor.clone(),
            role: access.role,
            action,
            sessions,
            keys,
            purpose: access.purpose.clone(),
            ticket: access.ticket.clone(),
            decision,
        };
        let payload = rmp_serde::to_vec_named(&entry).expect("audit entries always serialise");
        let mut bytes = Vec::with_capacity(frame::OVERHEAD_BYTES + payload.len());
        frame::write(&mut bytes, &FrameHeader::new(FrameKind::Audit, entry.seq), &payload);
        let path = audit_path();
        let file = self.file.as_mut().expect("an unbroken audit log has its file");
        let written = file.append(&bytes).and_then(|()| file.sync());
        if let Err(source) = written {
            // The page cache may hold the entry or not: no more entries until reopened.
            self.broken = Some(format!("{}: {source}", path.display()));
            return Err(AuditError::Io { path, source });
        }
        self.tree.push(merkle::leaf_hash(&bytes));
        Ok(entry)
    }
}

/// The most bytes one entry's frame may take: larger damage is not a torn last entry.
const ENTRY_BYTES_MAX: usize = 64 << 10;

/// Whether damaged bytes at the end of the audit log can be one entry cut short by a power cut:
/// small, and with no whole frame anywhere inside.
fn is_garbled_tail(rest: &[u8]) -> bool {
    rest.len() <= ENTRY_BYTES_MAX
        && (1..rest.len()).all(|i| !matches!(frame::parse(&rest[i..]), frame::Parsed::Frame(_)))
}

/// What the audit log holds, read without opening it for writing.
pub struct AuditScan {
    pub entries: Vec<AuditEntry>,
    /// The leaf hash of each entry's frame.
    pub leaves: Vec<Hash>,
    /// The first problem: (offset, reason), if any.
    pub problem: Option<(u64, String)>,
}

/// Reads every entry of the audit log in `storage`, stopping at the first damaged one.
pub fn scan(storage: &dyn Storage) -> Result<AuditScan, AuditError> {
    let path = audit_path();
    let bytes = storage
        .read_all(&path)
        .map_err(|source| AuditError::Io { path: path.clone(), source })?
        .unwrap_or_default();
    let mut out = AuditScan { entries: Vec::new(), leaves: Vec::new(), problem: None };
    if bytes.is_empty() {
        return Ok(out);
    }
    match files::read_file_header(&bytes, AUDIT.magic) {
        Ok(Some(_)) => {}
        Ok(None) => return Ok(out),
        Err(c) => {
            out.problem = Some((0, c.reason));
            return Ok(out);
        }
    }
    let scan = files::scan(&bytes, FILE_HEADER_BYTES);
    for (offset, f) in &scan.frames {
        let seq = out.entries.len() as u64;
        let parsed: Result<AuditEntry, String> = if f.header.kind != FrameKind::Audit {
            Err(format!("a {:?} frame in the audit log", f.header.kind))
        } else {
            rmp_serde::from_slice(f.payload).map_err(|e| format!("entry {seq}: {e}"))
        };
        match parsed {
            Ok(entry) if entry.seq == seq && f.header.session == seq => {
                out.entries.push(entry);
                out.leaves.push(merkle::leaf_hash(f.bytes));
            }
            Ok(entry) => {
                out.problem = Some((
                    *offset,
                    format!("entry {} found where entry {seq} belongs (removed or moved)", entry.seq),
                ));
                return Ok(out);
            }
            Err(reason) => {
                out.problem = Some((*offset, reason));
                return Ok(out);
            }
        }
    }
    match scan.stop {
        Stop::End => {}
        // The last entry may be being written right now.
        Stop::Torn => {}
        Stop::Damage(c) => out.problem = Some((scan.end, c.reason)),
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::FaultStorage;

    fn record(log: &mut AuditLog, n: usize) {
        let who = Access::new("ada", Role::Auditor, "check").with_ticket("T-9");
        for i in 0..n {
            log.record(&who, Action::Read, vec![format!("s-{i}")], vec![1], Decision::Allowed).unwrap();
        }
    }

    #[test]
    fn a_garbled_last_entry_is_cut_but_damage_before_it_refuses_every_entry() {
        let storage = FaultStorage::new();
        let shared: Arc<dyn Storage> = Arc::new(storage.clone());
        let mut log = AuditLog::open(shared.clone(), None).unwrap();
        record(&mut log, 3);
        let (size, root) = log.head();
        assert_eq!(size, 3);
        drop(log);
        // A power cut garbled the entry being written: noise where it was, nothing after.
        let path = audit_path();
        let mut f = storage.open_append(&path).unwrap();
        f.append(&[0x5a; 150]).unwrap();
        f.sync().unwrap();
        let mut log = AuditLog::open(shared.clone(), None).unwrap();
        assert_eq!(log.head(), (size, root));
        record(&mut log, 1);
        assert_eq!(scan(&storage).unwrap().entries.len(), 4);
        drop(log);
        // Damage to an entry with entries after it: evidence, not a torn tail.
        let second = FILE_HEADER_BYTES as u64 + 60;
        storage.corrupt(&path, second, 0x01).unwrap();
        let mut log = AuditLog::open(shared, None).unwrap();
        let who = Access::new("ada", Role::Auditor, "check");
        let refused = log.record(&who, Action::Read, vec![], vec![], Decision::Allowed);
        assert!(matches!(refused, Err(AuditError::Broken(_))), "{refused:?}");
        assert!(scan(&storage).unwrap().problem.is_some());
    }

    #[test]
    fn entries_read_back_in_order_with_their_fields() {
        let storage = FaultStorage::new();
        let mut log = AuditLog::open(Arc::new(storage.clone()), None).unwrap();
        record(&mut log, 2);
        let denied = Access::new("laptop", Role::Recorder, "peek");
        log.record(&denied, Action::Read, vec!["s-0".into()], vec![], Decision::Denied("no".into())).unwrap();
        let got = scan(&storage).unwrap();
        assert_eq!(got.entries.len(), 3);
        assert_eq!(got.entries.iter().map(|e| e.seq).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(got.entries[1].sessions, ["s-1"]);
        assert_eq!(got.entries[0].ticket.as_deref(), Some("T-9"));
        assert_eq!(got.entries[2].decision, Decision::Denied("no".into()));
        assert_eq!(merkle::root(&got.leaves), log.head().1);
    }
}
