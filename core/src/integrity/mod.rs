//! Integrity: the RFC 6962 Merkle tree over the log's frames (leaf i is frame number i, hashed
//! whole: envelope, header and sealed payload, so it verifies without any key and after any
//! person is shredded), the ledger of those leaf hashes, and the Ed25519-signed tree heads.
//!
//! - `integrity/leaves`: 32 bytes per frame, in frame order, appended at each checkpoint. Not
//!   trusted by itself; it lets `verify` name the exact frame that is not the one written at its
//!   position, and lets the log build audit paths without rereading every segment.
//! - `integrity/heads`: a chain of signed tree heads, one per checkpoint, fixed-size records,
//!   append-only. Each head commits to the previous head (its hash and a counter), to the frames
//!   (tree size and root), to the access audit log (its size and root) and to the key store (its
//!   change counter and hash). Dropping, reordering or rewriting heads breaks the chain; rolling
//!   the whole directory back is what witnesses catch (`crate::witness`).
//! - A *repair* head (its `repair` bits set) starts a chain again after integrity state was lost
//!   or did not verify: it records what was missing and the last head known. Only the explicit,
//!   audited `repair` signs one, and `verify` reports every one.
//!
//! [`verify`] rechecks everything from the files themselves and needs only the public key.

mod keystore;
mod verify;

pub(crate) use keystore::{keystore_against_head, shredded_keys};
pub use verify::{Discontinuity, KeyStoreReport, VerifyReport, verify, verify_audit, verify_witnessed};

use std::fmt;
use std::path::{Path, PathBuf};

/// The Ed25519 public key signed heads are checked against.
pub use ed25519_dalek::VerifyingKey as PublicKey;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::bytes::{self, Reader};
use crate::error::ReadError;
use crate::layout::{HEADS as HEADS_PATH, LEDGER as LEDGER_PATH};
use crate::merkle::{self, Hash};
use crate::storage::Storage;

pub(crate) const HASH_BYTES: usize = 32;

const HEAD_MAGIC: [u8; 8] = *b"TVHEAD02";
/// The unchained heads of format v1: read only to say what they are.
const HEAD_MAGIC_V1: [u8; 8] = *b"TVHEAD01";
/// magic, counter, previous head's hash, tree size, root, time, audit size, audit root, key store
/// changes, key store hash, repair bits, reserved, signature, crc32c.
pub const HEAD_BYTES: usize = 8 + 8 + 32 + 8 + 32 + 8 + 8 + 32 + 8 + 32 + 4 + 4 + 64 + 4;
const _: () = assert!(HEAD_BYTES == 252);
const HEAD_SIGNED_BYTES: usize = HEAD_BYTES - 64 - 4;

/// What a repair head says was missing or did not verify (its `repair` bits).
pub mod repaired {
    /// The heads file was missing or empty while the segments held frames.
    pub const HEADS_MISSING: u32 = 1 << 0;
    /// The heads file was damaged or of an earlier format (moved aside, kept).
    pub const HEADS_DAMAGED: u32 = 1 << 1;
    /// The checkpoint named a newer head than the heads file held: heads were dropped.
    pub const HEADS_DROPPED: u32 = 1 << 2;
    /// The segments did not match the newest signed head: frames were removed or altered.
    pub const SEGMENTS_DIFFER: u32 = 1 << 3;
    /// The access audit log was missing, shorter than the heads said, or damaged (moved aside).
    pub const AUDIT_LOG: u32 = 1 << 4;
    /// The key store was missing, rolled back or not the one the newest head committed to (kept
    /// as found: repair cannot bring back keys).
    pub const KEYSTORE_DIFFERS: u32 = 1 << 5;
    /// Acknowledged events the signed progress records name were in neither the segments nor the
    /// journal: journal files were deleted or cut (those events are lost).
    pub const JOURNAL_MISSING: u32 = 1 << 6;

    /// Each bit set, in words.
    pub fn describe(bits: u32) -> Vec<&'static str> {
        [
            (HEADS_MISSING, "the signed heads were missing"),
            (HEADS_DAMAGED, "the signed heads were damaged or of an earlier format"),
            (HEADS_DROPPED, "the newest signed heads had been removed"),
            (SEGMENTS_DIFFER, "the segments did not match the newest signed head"),
            (AUDIT_LOG, "the access audit log was missing, cut short or damaged"),
            (KEYSTORE_DIFFERS, "the key store was missing, rolled back or replaced"),
            (JOURNAL_MISSING, "acknowledged events were missing from the journal"),
        ]
        .into_iter()
        .filter(|(bit, _)| bits & bit != 0)
        .map(|(_, words)| words)
        .collect()
    }
}

pub use crate::merkle::Link;

/// What a head commits to, besides its place in the chain.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Commitments {
    pub tree_size: u64,
    pub root: Hash,
    pub audit_size: u64,
    pub audit_root: Hash,
    /// The key store's change counter and the SHA-256 of its file.
    pub keystore_changes: u64,
    pub keystore_hash: Hash,
}

/// A signed commitment to the log's first `tree_size` frames, the audit log's first `audit_size`
/// entries and the key store as it was, chained to the head before it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedHead {
    /// 0 for the first head; each next head adds one (a repair head continues from the last head
    /// it knew, or starts at 0 if it knew none).
    pub counter: u64,
    /// The hash of the previous head ([`SignedHead::hash`]); zeros for the first.
    pub prev: Hash,
    pub tree_size: u64,
    pub root: Hash,
    pub time_unix_us: u64,
    pub audit_size: u64,
    pub audit_root: Hash,
    pub keystore_changes: u64,
    pub keystore_hash: Hash,
    /// 0 for a normal head; for a repair head, what was missing ([`repaired`]).
    pub repair: u32,
    pub signature: [u8; 64],
}

impl SignedHead {
    /// The bytes signed: everything before the signature, the magic naming the format.
    fn signed_bytes(&self) -> [u8; HEAD_SIGNED_BYTES] {
        bytes::fixed(|w| {
            w.bytes(&HEAD_MAGIC)
                .u64(self.counter)
                .bytes(&self.prev)
                .u64(self.tree_size)
                .bytes(&self.root)
                .u64(self.time_unix_us)
                .u64(self.audit_size)
                .bytes(&self.audit_root)
                .u64(self.keystore_changes)
                .bytes(&self.keystore_hash)
                .u32(self.repair)
                .u32(0);
        })
    }

    /// Signs the head after `prev` (none: the first head) committing to `c`; `repair` bits for a
    /// repair head.
    pub(crate) fn sign(key: &SigningKey, prev: Option<Link>, c: &Commitments, repair: u32) -> SignedHead {
        let time_unix_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        let (counter, prev) = match prev {
            Some(link) => (link.counter + 1, link.hash),
            None => (0, [0; 32]),
        };
        let mut head = SignedHead {
            counter,
            prev,
            tree_size: c.tree_size,
            root: c.root,
            time_unix_us,
            audit_size: c.audit_size,
            audit_root: c.audit_root,
            keystore_changes: c.keystore_changes,
            keystore_hash: c.keystore_hash,
            repair,
            signature: [0; 64],
        };
        head.signature = key.sign(&head.signed_bytes()).to_bytes();
        head
    }

    /// Whether the signature is `key`'s over the head's fields.
    pub fn verify_signature(&self, key: &VerifyingKey) -> bool {
        key.verify(&self.signed_bytes(), &Signature::from_bytes(&self.signature)).is_ok()
    }

    /// The head's hash: what the next head's `prev` holds, and what witnesses cosign.
    pub fn hash(&self) -> Hash {
        let mut h = Sha256::new();
        h.update(b"tracevault head v2\0");
        h.update(self.to_bytes());
        h.finalize().into()
    }

    pub fn link(&self) -> Link {
        Link { counter: self.counter, hash: self.hash() }
    }

    /// What the head commits to.
    pub fn commitments(&self) -> Commitments {
        Commitments {
            tree_size: self.tree_size,
            root: self.root,
            audit_size: self.audit_size,
            audit_root: self.audit_root,
            keystore_changes: self.keystore_changes,
            keystore_hash: self.keystore_hash,
        }
    }

    pub fn to_bytes(&self) -> [u8; HEAD_BYTES] {
        let mut covered = self.signed_bytes().to_vec();
        covered.extend_from_slice(&self.signature);
        bytes::fixed(|w| {
            w.bytes(&covered).u32(crc32c::crc32c(&covered));
        })
    }

    pub fn from_bytes(b: &[u8]) -> Result<SignedHead, bytes::Corruption> {
        let mut r = Reader::new(b, "signed tree head");
        match r.array::<8>("magic")? {
            HEAD_MAGIC => {}
            HEAD_MAGIC_V1 => {
                return Err(bytes::Corruption::new(
                    "a signed head of format v1 (unchained, from an earlier tracevault): `tracevault repair` \
                     starts a chained history, recording the discontinuity",
                ));
            }
            _ => return Err(bytes::Corruption::new("not a signed tree head")),
        }
        let head = SignedHead {
            counter: r.u64("counter")?,
            prev: r.array("previous head")?,
            tree_size: r.u64("tree size")?,
            root: r.array("root")?,
            time_unix_us: r.u64("time")?,
            audit_size: r.u64("audit size")?,
            audit_root: r.array("audit root")?,
            keystore_changes: r.u64("key store changes")?,
            keystore_hash: r.array("key store hash")?,
            repair: r.u32("repair")?,
            signature: {
                r.u32("reserved")?;
                r.array("signature")?
            },
        };
        let crc = r.u32("crc32c")?;
        r.finish()?;
        if crc != crc32c::crc32c(&b[..HEAD_BYTES - 4]) {
            return Err(bytes::Corruption::new("signed tree head CRC32C mismatch"));
        }
        Ok(head)
    }
}

/// Whether a heads file holds heads of an earlier format (kept whole: never cut as a torn tail).
pub fn is_earlier_format(bytes: &[u8]) -> bool {
    bytes.starts_with(&HEAD_MAGIC_V1)
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
    if bytes.starts_with(&HEAD_MAGIC_V1) {
        // v1 records are shorter: name the format instead of reporting a garbled record.
        return Ok((Vec::new(), Some((0, SignedHead::from_bytes(&bytes).unwrap_err().reason))));
    }
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

/// The newest signed head alone, read from the end of the heads file (what a proof needs; the
/// file grows by one head per checkpoint, so reading all of it would grow with the log's age).
/// A torn last record (a crash mid-write) is skipped, as [`read_heads`] does.
pub fn read_newest_head(storage: &dyn Storage) -> Result<Option<SignedHead>, ReadError> {
    let path = Path::new(HEADS_PATH);
    let io = |source| ReadError::Io { path: path.to_owned(), source };
    let len = match storage.len(path) {
        Ok(len) => len,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    let whole = len / HEAD_BYTES as u64;
    if whole == 0 {
        return Ok(None);
    }
    let mut bytes = [0u8; HEAD_BYTES];
    let offset = (whole - 1) * HEAD_BYTES as u64;
    storage.read_at(path, offset, &mut bytes).map_err(io)?;
    if bytes.starts_with(&HEAD_MAGIC_V1) {
        return Err(ReadError::Corrupt {
            path: path.to_owned(),
            offset,
            reason: SignedHead::from_bytes(&bytes).unwrap_err().reason,
        });
    }
    SignedHead::from_bytes(&bytes).map(Some).map_err(|c| ReadError::Corrupt {
        path: path.to_owned(),
        offset,
        reason: c.reason,
    })
}

/// Leaves `lo..hi` of the ledger; an error naming the ledger when it holds fewer.
pub fn read_leaves(storage: &dyn Storage, lo: u64, hi: u64) -> Result<Vec<Hash>, ReadError> {
    let path = Path::new(LEDGER_PATH);
    let mut bytes = vec![0u8; ((hi - lo) as usize) * HASH_BYTES];
    storage
        .read_at(path, lo * HASH_BYTES as u64, &mut bytes)
        .map_err(|source| ReadError::Io { path: path.to_owned(), source })?;
    Ok(bytes
        .chunks_exact(HASH_BYTES)
        .map(|c| {
            let mut h = [0u8; HASH_BYTES];
            h.copy_from_slice(c);
            h
        })
        .collect())
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

pub(crate) fn problem(
    path: impl Into<PathBuf>,
    offset: u64,
    frame: Option<u64>,
    reason: impl Into<String>,
) -> Problem {
    Problem { path: path.into(), offset, frame, reason: reason.into() }
}

pub use crate::keys::parse_public_key;

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
        let c = Commitments {
            tree_size: 5,
            root: [1; 32],
            audit_size: 2,
            audit_root: [3; 32],
            keystore_changes: 4,
            keystore_hash: [5; 32],
        };
        let first = SignedHead::sign(&key, None, &c, 0);
        assert_eq!((first.counter, first.prev), (0, [0; 32]));
        let head = SignedHead::sign(&key, Some(first.link()), &c, 0);
        assert_eq!((head.counter, head.prev), (1, first.hash()));
        let back = SignedHead::from_bytes(&head.to_bytes()).unwrap();
        assert_eq!(back, head);
        assert!(back.verify_signature(&key.verifying_key()));
        for field in 0..9 {
            let mut forged = head.clone();
            match field {
                0 => forged.tree_size += 1,
                1 => forged.root[0] ^= 1,
                2 => forged.audit_size -= 1,
                3 => forged.audit_root[31] ^= 1,
                4 => forged.counter += 1,
                5 => forged.prev[3] ^= 1,
                6 => forged.keystore_changes += 1,
                7 => forged.keystore_hash[9] ^= 1,
                _ => forged.repair = repaired::HEADS_MISSING,
            }
            assert!(!forged.verify_signature(&key.verifying_key()), "field {field}");
            assert_ne!(forged.hash(), head.hash());
        }
        let other = SigningKey::from_bytes(&[8; 32]);
        assert!(!head.verify_signature(&other.verifying_key()));
        let mut bytes = head.to_bytes();
        bytes[20] ^= 1;
        assert!(SignedHead::from_bytes(&bytes).is_err());
    }
}
