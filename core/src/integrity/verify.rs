//! `verify`: everything rechecked from the files themselves, with only the public key (and the
//! witnesses' keys): the chain of signed heads, every frame against the ledger and the heads,
//! the checkpoint's reference to the newest head, the access audit log against the heads, the key
//! store against the newest head and the audit log's shreds, and the witnesses' cosignatures.

use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;

use super::{HEAD_BYTES, Problem, SignedHead, problem, read_heads, read_ledger, repaired};
use crate::audit;
use crate::error::ReadError;
use crate::files::{self, FILE_HEADER_BYTES, Stop};
use crate::index::Checkpoint;
use crate::keys::{self, SlotState, hex};
use crate::layout::{self, CHECKPOINT, HEADS as HEADS_PATH, KEYSTORE, SEGMENTS};
use crate::merkle::{self, Frontier};
use crate::storage::Storage;
use crate::witness;

/// A repair head: where the chain was started again, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Discontinuity {
    /// The repair head's counter and time.
    pub counter: u64,
    pub time_unix_us: u64,
    /// What the repair found ([`repaired`] bits), in words.
    pub found: Vec<&'static str>,
    /// The last head the repair knew (its counter), if it knew one.
    pub last_known: Option<u64>,
}

impl Discontinuity {
    fn of(head: &SignedHead) -> Discontinuity {
        Discontinuity {
            counter: head.counter,
            time_unix_us: head.time_unix_us,
            found: repaired::describe(head.repair),
            last_known: (head.prev != [0; 32]).then(|| head.counter.saturating_sub(1)),
        }
    }
}

/// The repair heads that started the heads files earlier repairs moved aside (each repair moves
/// the file it replaces aside), oldest first: every discontinuity, not just the last.
fn earlier_repairs(storage: &dyn Storage, public: &VerifyingKey) -> Result<Vec<Discontinuity>, ReadError> {
    let dir = Path::new(layout::INTEGRITY_DIR);
    let names = storage.list(dir).map_err(|source| ReadError::Io { path: dir.to_owned(), source })?;
    let mut found = Vec::new();
    for name in names.iter().filter(|n| n.starts_with("heads.before-repair-")) {
        let path = dir.join(name);
        let bytes =
            storage.read_all(&path).map_err(|source| ReadError::Io { path, source })?.unwrap_or_default();
        if let Some(Ok(first)) = bytes.get(..HEAD_BYTES).map(SignedHead::from_bytes)
            && first.repair != 0
            && first.verify_signature(public)
        {
            found.push(Discontinuity::of(&first));
        }
    }
    found.sort_by_key(|d| (d.counter, d.time_unix_us));
    Ok(found)
}

/// What `verify` found of the key store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyStoreReport {
    pub changes: u64,
    pub live: u64,
    pub erased: u64,
    /// Changes made since the newest head (committed to by the next one).
    pub changed_since_head: bool,
}

/// What `verify` found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    pub segments: u64,
    pub frames: u64,
    pub bytes: u64,
    /// Signed heads whose signature, chain link and roots were checked.
    pub heads: u64,
    /// Frames covered by the largest signed head that matched (a head from before a problem
    /// still proves the log up to its size).
    pub signed_frames: u64,
    /// Frames after the newest signed head: written since the last checkpoint, not yet signed
    /// (none once the log was closed cleanly).
    pub unsigned_frames: u64,
    pub audit_entries: u64,
    /// The newest signed head.
    pub latest_head: Option<SignedHead>,
    /// The public key the heads were checked against, hex.
    pub public_key: String,
    /// Every repair head in the chain: history the heads cannot vouch for before it.
    pub discontinuities: Vec<Discontinuity>,
    pub keystore: Option<KeyStoreReport>,
    /// The witnesses (public keys, hex) whose cosignature of the newest head verified.
    pub cosigned_by: Vec<String>,
    pub first_problem: Option<Problem>,
}

impl VerifyReport {
    fn empty(public: &VerifyingKey) -> VerifyReport {
        VerifyReport {
            segments: 0,
            frames: 0,
            bytes: 0,
            heads: 0,
            signed_frames: 0,
            unsigned_frames: 0,
            audit_entries: 0,
            latest_head: None,
            public_key: hex(public.as_bytes()),
            discontinuities: Vec::new(),
            keystore: None,
            cosigned_by: Vec::new(),
            first_problem: None,
        }
    }

    /// No problem found (discontinuities are not problems: they are reported, and a caller
    /// decides whether a repaired history is acceptable).
    pub fn ok(&self) -> bool {
        self.first_problem.is_none()
    }
}

/// Checks the log in `storage` against `public`, the key its heads must be signed with.
pub fn verify(storage: &dyn Storage, public: &VerifyingKey) -> Result<VerifyReport, ReadError> {
    verify_witnessed(storage, public, &[])
}

/// [`verify`], and the newest head must carry a valid cosignature from each of `witnesses`.
pub fn verify_witnessed(
    storage: &dyn Storage,
    public: &VerifyingKey,
    witnesses: &[VerifyingKey],
) -> Result<VerifyReport, ReadError> {
    let mut report = VerifyReport::empty(public);
    if let Err(problem) = verify_into(storage, public, witnesses, &mut report)? {
        report.first_problem = Some(problem);
    }
    Ok(report)
}

/// Checks only the access audit log: its entries, and the sizes and roots the signed heads (each
/// checked against `public`) commit to.
pub fn verify_audit(storage: &dyn Storage, public: &VerifyingKey) -> Result<VerifyReport, ReadError> {
    let mut report = VerifyReport::empty(public);
    let checked = check_heads(storage, public, &mut report)?.and_then(|heads| {
        let audit =
            audit::scan(storage).map_err(|e| problem(layout::audit_path(), 0, None, e.to_string()))?;
        report.audit_entries = audit.entries.len() as u64;
        check_audit_scan(&audit, &heads, &mut report)
    });
    report.first_problem = checked.err();
    Ok(report)
}

/// `Ok(Err(problem))`: the first problem found; `Err`: the files could not be read at all.
type Checked<T> = Result<Result<T, Problem>, ReadError>;

fn verify_into(
    storage: &dyn Storage,
    public: &VerifyingKey,
    witnesses: &[VerifyingKey],
    report: &mut VerifyReport,
) -> Checked<()> {
    let heads = match check_heads(storage, public, report)? {
        Ok(heads) => heads,
        Err(p) => return Ok(Err(p)),
    };
    if let Err(p) = check_checkpoint(storage, &heads)? {
        return Ok(Err(p));
    }
    if let Err(p) = check_segments(storage, &heads, report)? {
        return Ok(Err(p));
    }
    let audit = match audit::scan(storage) {
        Ok(a) => a,
        Err(e) => return Ok(Err(problem(layout::audit_path(), 0, None, e.to_string()))),
    };
    report.audit_entries = audit.entries.len() as u64;
    if let Err(p) = check_audit_scan(&audit, &heads, report) {
        return Ok(Err(p));
    }
    if let Err(p) = check_keystore(storage, &heads, &audit, report)? {
        return Ok(Err(p));
    }
    check_cosignatures(storage, public, &heads, witnesses, report)
}

/// The signed heads: each signed by the expected key, each chained to the one before (its
/// counter one more, its `prev` the hash of that head), none smaller than the one before; the
/// first is the first head ever or a repair head (a discontinuity, reported).
fn check_heads(
    storage: &dyn Storage,
    public: &VerifyingKey,
    report: &mut VerifyReport,
) -> Checked<Vec<SignedHead>> {
    let (heads, damaged) = read_heads(storage)?;
    for (k, head) in heads.iter().enumerate() {
        let offset = (k * HEAD_BYTES) as u64;
        let at = |reason: String| Ok(Err(problem(HEADS_PATH, offset, None, reason)));
        if !head.verify_signature(public) {
            return at(format!(
                "signed head {k} (counter {}): the signature does not verify under public key {}",
                head.counter, report.public_key
            ));
        }
        if k == 0 {
            if head.repair != 0 {
                report.discontinuities.extend(earlier_repairs(storage, public)?);
                report.discontinuities.push(Discontinuity::of(head));
            } else if head.counter != 0 || head.prev != [0; 32] {
                return at(format!(
                    "the heads file starts at head counter {}, not at the first head: earlier heads were removed",
                    head.counter
                ));
            }
            continue;
        }
        let before = &heads[k - 1];
        if head.repair != 0 {
            return at(format!(
                "signed head {k} (counter {}) is a repair head inside the chain: a repair starts a new heads file",
                head.counter
            ));
        }
        if head.counter != before.counter + 1 || head.prev != before.hash() {
            return at(format!(
                "signed head {k} (counter {}) does not chain to the head before it (counter {}): heads were \
                 removed, reordered or replaced",
                head.counter, before.counter
            ));
        }
        if head.tree_size < before.tree_size
            || head.audit_size < before.audit_size
            || head.keystore_changes < before.keystore_changes
        {
            return at(format!("signed head {k} (counter {}) is smaller than the one before", head.counter));
        }
    }
    if let Some((offset, reason)) = damaged {
        return Ok(Err(problem(HEADS_PATH, offset, None, reason)));
    }
    report.heads = heads.len() as u64;
    report.latest_head = heads.last().cloned();
    Ok(Ok(heads))
}

/// The checkpoint names the newest head when it was written: the heads file must hold it.
fn check_checkpoint(storage: &dyn Storage, heads: &[SignedHead]) -> Checked<()> {
    let path = Path::new(CHECKPOINT);
    let bytes = storage.read_all(path).map_err(|source| ReadError::Io { path: path.to_owned(), source })?;
    let Some(Ok(Checkpoint { head: Some(link), .. })) = bytes.map(|b| Checkpoint::from_bytes(&b)) else {
        return Ok(Ok(()));
    };
    if heads.iter().any(|h| h.counter == link.counter && h.hash() == link.hash) {
        return Ok(Ok(()));
    }
    let newest = heads.last().map_or("none".to_owned(), |h| h.counter.to_string());
    Ok(Err(problem(
        HEADS_PATH,
        (heads.len() * HEAD_BYTES) as u64,
        None,
        format!(
            "the checkpoint was written after signed head counter {}, which the heads file does not hold (its \
             newest: {newest}): the newest heads were removed",
            link.counter
        ),
    )))
}

/// The segments, frame by frame, against the ledger and the heads.
fn check_segments(storage: &dyn Storage, heads: &[SignedHead], report: &mut VerifyReport) -> Checked<()> {
    let ledger = read_ledger(storage)?;
    let names = storage
        .list(Path::new(SEGMENTS.dir))
        .map_err(|source| ReadError::Io { path: PathBuf::from(SEGMENTS.dir), source })?;
    let numbers: Vec<u64> = names.iter().filter_map(|n| SEGMENTS.number(n)).collect();
    let mut tree = Frontier::default();
    let mut next_head = 0;
    let mut check_heads = |tree: &Frontier, path: &Path, offset: u64, report: &mut VerifyReport| {
        while let Some(head) = heads.get(next_head).filter(|h| h.tree_size == tree.size()) {
            if head.root != tree.root() {
                let last = tree.size().checked_sub(1);
                return Err(problem(
                    path,
                    offset,
                    last,
                    format!(
                        "the first {} frames do not match signed head {next_head}: a frame before this \
                         point was altered and the ledger with it",
                        head.tree_size
                    ),
                ));
            }
            report.signed_frames = head.tree_size;
            next_head += 1;
        }
        Ok(())
    };
    if let Err(p) = check_heads(&tree, Path::new(HEADS_PATH), 0, report) {
        return Ok(Err(p));
    }
    let mut next_frame = numbers.first().copied().unwrap_or(0);
    if next_frame != 0 {
        let path = SEGMENTS.path(next_frame);
        return Ok(Err(problem(
            path,
            0,
            Some(0),
            format!("the first segment starts at frame {next_frame}, not 0"),
        )));
    }
    let mut last_end = (PathBuf::from(SEGMENTS.dir), 0);
    for (i, &number) in numbers.iter().enumerate() {
        let path = SEGMENTS.path(number);
        let bytes = storage
            .read_all(&path)
            .map_err(|source| ReadError::Io { path: path.clone(), source })?
            .unwrap_or_default();
        report.segments += 1;
        report.bytes += bytes.len() as u64;
        let last = i + 1 == numbers.len();
        match files::read_file_header(&bytes, SEGMENTS.magic) {
            Ok(Some(n)) if n == number && n == next_frame => {}
            Ok(Some(n)) => {
                return Ok(Err(problem(
                    &path,
                    0,
                    Some(next_frame),
                    format!("segment header says it starts at frame {n}, expected {next_frame}"),
                )));
            }
            Ok(None) => {
                return Ok(Err(problem(&path, 0, Some(next_frame), "segment shorter than its header")));
            }
            Err(c) => return Ok(Err(problem(&path, 0, Some(next_frame), c.reason))),
        }
        let scan = files::scan_segment(&bytes, number, FILE_HEADER_BYTES, next_frame);
        for (offset, _, frame) in &scan.frames {
            let leaf = merkle::leaf_hash(frame.bytes);
            if let Some(expected) = ledger.get(next_frame as usize)
                && *expected != leaf
            {
                return Ok(Err(problem(
                    &path,
                    *offset,
                    Some(next_frame),
                    format!(
                        "frame {next_frame} is not the frame written at this position (its hash differs from \
                         the ledger): a frame was moved, removed, replaced or inserted here"
                    ),
                )));
            }
            tree.push(leaf);
            if let Err(p) = check_heads(&tree, &path, *offset, report) {
                return Ok(Err(p));
            }
            report.frames += 1;
            next_frame += 1;
        }
        if let files::Footer::Bad(offset, c) = &scan.footer {
            return Ok(Err(problem(&path, *offset, None, c.reason.clone())));
        }
        match scan.stop {
            Stop::End => {}
            // The writer may be appending to the last segment as we read it.
            Stop::Torn if last => {}
            Stop::Torn => {
                return Ok(Err(problem(&path, scan.end, Some(next_frame), "segment ends inside a frame")));
            }
            Stop::Damage(c) => return Ok(Err(problem(&path, scan.end, Some(next_frame), c.reason))),
        }
        if !last && !matches!(scan.footer, files::Footer::Valid) {
            return Ok(Err(problem(
                &path,
                scan.end,
                None,
                "segment is not sealed, but a later segment exists",
            )));
        }
        last_end = (path, scan.end);
    }
    if let Some(head) = heads.get(next_head) {
        return Ok(Err(problem(
            &last_end.0,
            last_end.1,
            Some(report.frames),
            format!(
                "signed head {next_head} covers {} frames, the segments hold {}: frames were removed",
                head.tree_size, report.frames
            ),
        )));
    }
    if report.frames > 0 && heads.is_empty() {
        return Ok(Err(problem(
            HEADS_PATH,
            0,
            None,
            format!(
                "the log holds {} frames but no signed head: every open and close signs one, so the heads \
                 were removed, and nothing here can be proven",
                report.frames
            ),
        )));
    }
    report.unsigned_frames = report.frames - heads.last().map_or(0, |h| h.tree_size);
    if ledger.len() as u64 > report.frames {
        return Ok(Err(problem(
            &last_end.0,
            last_end.1,
            Some(report.frames),
            format!(
                "the ledger records {} frames, the segments hold {}: frames were removed",
                ledger.len(),
                report.frames
            ),
        )));
    }

    Ok(Ok(()))
}

/// The access audit log, against the sizes and roots the heads commit to.
fn check_audit_scan(
    audit: &audit::AuditScan,
    heads: &[SignedHead],
    _: &mut VerifyReport,
) -> Result<(), Problem> {
    if let Some((offset, reason)) = &audit.problem {
        return Err(problem(layout::audit_path(), *offset, None, reason.clone()));
    }
    let mut audit_tree = Frontier::default();
    let mut leaves = audit.leaves.iter();
    for (k, head) in heads.iter().enumerate() {
        while audit_tree.size() < head.audit_size {
            match leaves.next() {
                Some(leaf) => audit_tree.push(*leaf),
                None => {
                    return Err(problem(
                        layout::audit_path(),
                        0,
                        None,
                        format!(
                            "signed head {k} covers {} audit entries, the audit log holds {}: entries were removed",
                            head.audit_size,
                            audit.entries.len()
                        ),
                    ));
                }
            }
        }
        if audit_tree.root() != head.audit_root {
            return Err(problem(
                layout::audit_path(),
                0,
                None,
                format!(
                    "the first {} audit entries do not match signed head {k}: an entry was altered, removed or \
                     reordered",
                    head.audit_size
                ),
            ));
        }
    }
    Ok(())
}

/// The key store against the newest head (a store behind it was rolled back; one at the same
/// change counter with other bytes was altered or replaced) and against the audit log: every
/// erased key must have been erased by a shred the audit log records, and every key a recorded
/// shred erased must be erased.
fn check_keystore(
    storage: &dyn Storage,
    heads: &[SignedHead],
    audit: &audit::AuditScan,
    report: &mut VerifyReport,
) -> Checked<()> {
    let path = Path::new(KEYSTORE);
    let Some(bytes) =
        storage.read_all(path).map_err(|source| ReadError::Io { path: path.to_owned(), source })?
    else {
        return Ok(match heads.last() {
            Some(h) => Err(problem(
                path,
                0,
                None,
                format!("missing, but signed head counter {} commits to a key store", h.counter),
            )),
            None => Ok(()),
        });
    };
    let inspected = match keys::inspect(&bytes) {
        Ok(i) => i,
        Err(c) => return Ok(Err(problem(path, 0, None, c.reason))),
    };
    let (changes, hash) = keys::commitment(&bytes);
    let mut found = KeyStoreReport { changes, ..KeyStoreReport::default() };
    if let Some(h) = heads.last() {
        if let Some(reason) = super::keystore_against_head(h, changes, &hash) {
            return Ok(Err(problem(path, 0, None, reason)));
        }
        found.changed_since_head = hash != h.keystore_hash;
    }
    let shredded = super::shredded_keys(&audit.entries);
    for (id, _, state) in &inspected.slots {
        let offset = (keys::KEYSTORE_HEADER_BYTES + (*id as usize - 1) * keys::SLOT_BYTES) as u64;
        let at = |reason: String| Ok(Err(problem(path, offset, None, reason)));
        match (state, shredded.get(id)) {
            (SlotState::Live, None) => found.live += 1,
            (SlotState::Erased, Some(_)) => found.erased += 1,
            (SlotState::Live, Some(seq)) => {
                return at(format!(
                    "key {id} is live, but audit entry {seq} records it shredded: the key store was rolled back, \
                     or the shred was interrupted (run it again)"
                ));
            }
            (SlotState::Erased, None) => {
                return at(format!(
                    "key {id} is erased, but no shred in the access audit log erased it: the slot was forged"
                ));
            }
            (SlotState::Damaged(reason), _) => {
                return at(format!("key {id}: its slot is damaged ({reason})"));
            }
        }
    }
    report.keystore = Some(found);
    Ok(Ok(()))
}

/// Each witness key given must have cosigned the newest head.
fn check_cosignatures(
    storage: &dyn Storage,
    public: &VerifyingKey,
    heads: &[SignedHead],
    witnesses: &[VerifyingKey],
    report: &mut VerifyReport,
) -> Checked<()> {
    let cosignatures = witness::read_cosignatures(storage)?;
    let Some(newest) = heads.last() else {
        if let Some(w) = witnesses.first() {
            return Ok(Err(problem(
                HEADS_PATH,
                0,
                None,
                format!("no signed head for witness {} to have cosigned", hex(w.as_bytes())),
            )));
        }
        return Ok(Ok(()));
    };
    for c in &cosignatures {
        let key = hex(&c.witness);
        if c.verifies(public, newest) && !report.cosigned_by.contains(&key) {
            report.cosigned_by.push(key);
        }
    }
    for w in witnesses {
        let key = hex(w.as_bytes());
        if report.cosigned_by.contains(&key) {
            continue;
        }
        let theirs = cosignatures
            .iter()
            .filter(|c| c.witness == w.to_bytes())
            .filter(|c| heads.iter().any(|h| c.verifies(public, h)))
            .map(|c| c.counter)
            .max();
        let last = match theirs {
            Some(counter) => format!("its newest cosignature here is of head counter {counter}"),
            None => "it cosigned no head of this chain".to_owned(),
        };
        return Ok(Err(problem(
            layout::COSIGNATURES,
            0,
            None,
            format!(
                "the newest signed head (counter {}) is not cosigned by witness {key}; {last}: the witness refused it \
                 (it is not consistent with what the witness saw before: a rewritten or rolled-back history) or was \
                 not reached",
                newest.counter
            ),
        )));
    }
    Ok(Ok(()))
}
