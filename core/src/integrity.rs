//! Integrity: the RFC 6962 Merkle tree over the log's frames (leaf i is frame number i, hashed
//! whole: envelope, header and sealed payload, so it verifies without any key and after any
//! person is shredded), the ledger of those leaf hashes, and the Ed25519-signed tree heads.
//!
//! - `integrity/leaves`: 32 bytes per frame, in frame order, appended at each checkpoint. Not
//!   trusted by itself; it lets `verify` name the exact frame that is not the one written at its
//!   position, and lets the log build audit paths without rereading every segment.
//! - `integrity/heads`: a signed tree head per checkpoint (tree size, root, and the access audit
//!   log's size and root, with the time), fixed-size records, append-only.
//!
//! [`verify`] rechecks everything from the segments themselves: every frame whole, every sealed
//! segment's footer, every frame's leaf against the ledger, every signed head's signature and
//! root, and the audit log against the roots the heads commit to. It needs only the public key.

use std::fmt;
use std::path::{Path, PathBuf};

/// The Ed25519 public key signed heads are checked against.
pub use ed25519_dalek::VerifyingKey as PublicKey;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

use crate::audit;
use crate::bytes::{self, Reader};
use crate::error::ReadError;
use crate::files::{self, FILE_HEADER_BYTES, Stop};
use crate::keys::hex;
use crate::layout::{self, HEADS as HEADS_PATH, LEDGER as LEDGER_PATH, SEGMENTS};
use crate::merkle::{self, Frontier, Hash};
use crate::storage::Storage;

pub(crate) const HASH_BYTES: usize = 32;

const HEAD_MAGIC: [u8; 8] = *b"TVHEAD01";
/// magic, tree size, root, time, audit size, audit root, signature, crc32c.
pub const HEAD_BYTES: usize = 8 + 8 + 32 + 8 + 8 + 32 + 64 + 4;
const _: () = assert!(HEAD_BYTES == 164);
const HEAD_SIGNED_BYTES: usize = HEAD_BYTES - 64 - 4;

/// A signed commitment to the log's first `tree_size` frames and the audit log's first
/// `audit_size` entries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedHead {
    pub tree_size: u64,
    pub root: Hash,
    pub time_unix_us: u64,
    pub audit_size: u64,
    pub audit_root: Hash,
    pub signature: [u8; 64],
}

impl SignedHead {
    /// The bytes signed: everything before the signature, the magic naming the format.
    fn signed_bytes(&self) -> [u8; HEAD_SIGNED_BYTES] {
        bytes::fixed(|w| {
            w.bytes(&HEAD_MAGIC)
                .u64(self.tree_size)
                .bytes(&self.root)
                .u64(self.time_unix_us)
                .u64(self.audit_size)
                .bytes(&self.audit_root);
        })
    }

    pub(crate) fn sign(
        key: &SigningKey,
        tree_size: u64,
        root: Hash,
        audit_size: u64,
        audit_root: Hash,
    ) -> SignedHead {
        let time_unix_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        let mut head =
            SignedHead { tree_size, root, time_unix_us, audit_size, audit_root, signature: [0; 64] };
        head.signature = key.sign(&head.signed_bytes()).to_bytes();
        head
    }

    /// Whether the signature is `key`'s over the head's fields.
    pub fn verify_signature(&self, key: &VerifyingKey) -> bool {
        key.verify(&self.signed_bytes(), &Signature::from_bytes(&self.signature)).is_ok()
    }

    pub fn to_bytes(&self) -> [u8; HEAD_BYTES] {
        let mut covered = self.signed_bytes().to_vec();
        covered.extend_from_slice(&self.signature);
        bytes::fixed(|w| {
            w.bytes(&covered).u32(crc32c::crc32c(&covered));
        })
    }

    pub fn from_bytes(b: &[u8]) -> Result<SignedHead, bytes::Corruption> {
        let parse = || {
            let mut r = Reader::new(b, "signed tree head");
            if r.array::<8>("magic")? != HEAD_MAGIC {
                return Err(bytes::Corruption::new("not a signed tree head"));
            }
            let head = SignedHead {
                tree_size: r.u64("tree size")?,
                root: r.array("root")?,
                time_unix_us: r.u64("time")?,
                audit_size: r.u64("audit size")?,
                audit_root: r.array("audit root")?,
                signature: r.array("signature")?,
            };
            let crc = r.u32("crc32c")?;
            r.finish()?;
            if crc != crc32c::crc32c(&b[..HEAD_BYTES - 4]) {
                return Err(bytes::Corruption::new("signed tree head CRC32C mismatch"));
            }
            Ok(head)
        };
        parse()
    }
}

/// Where and why reading a file stopped early: (offset, reason).
pub type Damage = (u64, String);

/// Every signed head in the heads file, and where reading stopped early.
pub fn read_heads(storage: &dyn Storage) -> Result<(Vec<SignedHead>, Option<Damage>), ReadError> {
    let path = Path::new(HEADS_PATH);
    let bytes = storage
        .read_all(path)
        .map_err(|source| ReadError::Io { path: path.to_owned(), source })?
        .unwrap_or_default();
    let mut heads = Vec::new();
    for (i, chunk) in bytes.chunks(HEAD_BYTES).enumerate() {
        if chunk.len() < HEAD_BYTES {
            break; // a head being written, or torn by a crash: never relied on
        }
        match SignedHead::from_bytes(chunk) {
            Ok(h) => heads.push(h),
            Err(c) => return Ok((heads, Some(((i * HEAD_BYTES) as u64, c.reason)))),
        }
    }
    Ok((heads, None))
}

/// The leaf hashes in the ledger (a partial last one ignored).
pub fn read_ledger(storage: &dyn Storage) -> Result<Vec<Hash>, ReadError> {
    let path = Path::new(LEDGER_PATH);
    let bytes = storage
        .read_all(path)
        .map_err(|source| ReadError::Io { path: path.to_owned(), source })?
        .unwrap_or_default();
    Ok(bytes
        .chunks_exact(HASH_BYTES)
        .map(|c| {
            let mut h = [0u8; HASH_BYTES];
            h.copy_from_slice(c);
            h
        })
        .collect())
}

/// The first thing `verify` found wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The file, relative to the data directory.
    pub path: PathBuf,
    pub offset: u64,
    /// The frame number (the Merkle leaf index), when the problem is a frame.
    pub frame: Option<u64>,
    pub reason: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at offset {}", self.path.display(), self.offset)?;
        if let Some(n) = self.frame {
            write!(f, " (frame {n})")?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// What `verify` found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    pub segments: u64,
    pub frames: u64,
    pub bytes: u64,
    /// Signed heads whose signature and roots were checked.
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
            first_problem: None,
        }
    }

    pub fn ok(&self) -> bool {
        self.first_problem.is_none()
    }
}

pub use crate::keys::parse_public_key;

/// Checks the log in `storage` against `public`, the key its heads must be signed with.
pub fn verify(storage: &dyn Storage, public: &VerifyingKey) -> Result<VerifyReport, ReadError> {
    let mut report = VerifyReport::empty(public);
    if let Err(problem) = verify_into(storage, public, &mut report)? {
        report.first_problem = Some(problem);
    }
    Ok(report)
}

fn problem(path: impl Into<PathBuf>, offset: u64, frame: Option<u64>, reason: impl Into<String>) -> Problem {
    Problem { path: path.into(), offset, frame, reason: reason.into() }
}

/// Checks only the access audit log: its entries, and the sizes and roots the signed heads (each
/// checked against `public`) commit to.
pub fn verify_audit(storage: &dyn Storage, public: &VerifyingKey) -> Result<VerifyReport, ReadError> {
    let mut report = VerifyReport::empty(public);
    let checked = check_heads(storage, public, &mut report)?
        .and_then(|heads| check_audit(storage, &heads, &mut report));
    report.first_problem = checked.err();
    Ok(report)
}

fn verify_into(
    storage: &dyn Storage,
    public: &VerifyingKey,
    report: &mut VerifyReport,
) -> Result<Result<(), Problem>, ReadError> {
    let heads = match check_heads(storage, public, report)? {
        Ok(heads) => heads,
        Err(p) => return Ok(Err(p)),
    };
    if let Err(p) = check_segments(storage, &heads, report)? {
        return Ok(Err(p));
    }
    let audit = match audit::scan(storage) {
        Ok(a) => a,
        Err(e) => return Ok(Err(problem(layout::audit_path(), 0, None, e.to_string()))),
    };
    report.audit_entries = audit.entries.len() as u64;
    check_audit_scan(&audit, &heads, report).map(Ok).or_else(|p| Ok(Err(p)))
}

/// The signed heads: each signed by the expected key, in order.
fn check_heads(
    storage: &dyn Storage,
    public: &VerifyingKey,
    report: &mut VerifyReport,
) -> Result<Result<Vec<SignedHead>, Problem>, ReadError> {
    let (heads, damaged) = read_heads(storage)?;
    for (k, head) in heads.iter().enumerate() {
        let offset = (k * HEAD_BYTES) as u64;
        if !head.verify_signature(public) {
            return Ok(Err(problem(
                HEADS_PATH,
                offset,
                None,
                format!(
                    "signed head {k}: the signature does not verify under public key {}",
                    report.public_key
                ),
            )));
        }
        if k > 0 && (head.tree_size < heads[k - 1].tree_size || head.audit_size < heads[k - 1].audit_size) {
            return Ok(Err(problem(
                HEADS_PATH,
                offset,
                None,
                format!("signed head {k} is smaller than the one before"),
            )));
        }
    }
    if let Some((offset, reason)) = damaged {
        return Ok(Err(problem(HEADS_PATH, offset, None, reason)));
    }
    report.heads = heads.len() as u64;
    report.latest_head = heads.last().cloned();
    Ok(Ok(heads))
}

/// The segments, frame by frame, against the ledger and the heads.
fn check_segments(
    storage: &dyn Storage,
    heads: &[SignedHead],
    report: &mut VerifyReport,
) -> Result<Result<(), Problem>, ReadError> {
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

fn check_audit(
    storage: &dyn Storage,
    heads: &[SignedHead],
    report: &mut VerifyReport,
) -> Result<(), Problem> {
    let audit = audit::scan(storage).map_err(|e| problem(layout::audit_path(), 0, None, e.to_string()))?;
    report.audit_entries = audit.entries.len() as u64;
    check_audit_scan(&audit, heads, report)
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

/// A signed head's proof that one frame is in the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameProof {
    /// The frame number: the leaf index.
    pub frame: u64,
    pub block: u32,
    pub segment: u64,
    pub offset: u64,
    pub frame_bytes: u32,
    pub leaf: Hash,
    /// The audit path, nearest the leaf first.
    pub path: Vec<Hash>,
}

/// What an auditor checked of one session: every sealed block is in the log a signed head
/// commits to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionProof {
    pub session: String,
    pub head: SignedHead,
    pub frames: Vec<FrameProof>,
    /// Events sealed into the blocks proved.
    pub events: u64,
    /// Events appended but not yet in a sealed block (not in the tree yet).
    pub unsealed_events: u64,
}

/// Checks one frame proof against a signed head: the signature, the frame's bytes hashing to the
/// leaf, and the audit path from the leaf to the head's root.
pub fn check_frame(
    head: &SignedHead,
    public: &VerifyingKey,
    proof: &FrameProof,
    bytes: &[u8],
) -> Result<(), bytes::Corruption> {
    use bytes::Corruption;
    if !head.verify_signature(public) {
        return Err(Corruption::new("the signed head's signature does not verify"));
    }
    if merkle::leaf_hash(bytes) != proof.leaf {
        return Err(Corruption::new(format!("frame {}'s bytes do not hash to its leaf", proof.frame)));
    }
    if !merkle::verify_inclusion(&proof.leaf, proof.frame, head.tree_size, &proof.path, &head.root) {
        return Err(Corruption::new(format!(
            "frame {}'s audit path does not lead to the signed root",
            proof.frame
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_round_trip_and_their_signature_covers_every_field() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let head = SignedHead::sign(&key, 5, [1; 32], 2, [3; 32]);
        let back = SignedHead::from_bytes(&head.to_bytes()).unwrap();
        assert_eq!(back, head);
        assert!(back.verify_signature(&key.verifying_key()));
        for field in 0..4 {
            let mut forged = head.clone();
            match field {
                0 => forged.tree_size += 1,
                1 => forged.root[0] ^= 1,
                2 => forged.audit_size -= 1,
                _ => forged.audit_root[31] ^= 1,
            }
            assert!(!forged.verify_signature(&key.verifying_key()), "field {field}");
        }
        let other = SigningKey::from_bytes(&[8; 32]);
        assert!(!head.verify_signature(&other.verifying_key()));
        let mut bytes = head.to_bytes();
        bytes[20] ^= 1;
        assert!(SignedHead::from_bytes(&bytes).is_err());
    }
}
