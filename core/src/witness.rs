//! Witnesses: independent processes, each with its own Ed25519 key, that cosign a log's signed
//! heads, so that the host cannot rewrite its own history. A witness cosigns a new head only if
//! it is consistent with the last head it cosigned for that log: a later counter, both Merkle
//! trees (frames and access audit log) extending the old ones by an RFC 6962 consistency proof,
//! the key store's change counter not going back, and the chain unbroken where it can see it.
//! A log that was laundered (rebuilt after removing frames), rolled back (an older copy of the
//! heads and the audit log put back) or cut short can get no cosignature consistent with the
//! earlier ones; `verify --witness-key` then finds its newest head uncosigned.
//!
//! The model is Certificate Transparency's gossip and the C2SP `tlog-witness` protocol (the log
//! submits its new head with a consistency proof from the size the witness last saw; a witness
//! that saw another size says so, with a conflict, and the log retries from there), with
//! tracevault's own head format instead of signed notes. This module holds the protocol's data
//! and checks, with no I/O; the HTTP witness (`tracevault witness serve`) and the client are in
//! the binary.
//!
//! Cosignatures the log receives are kept in `integrity/cosignatures`, fixed-size records.

use std::path::Path;

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

use crate::bytes::{self, Corruption, Reader};
use crate::error::ReadError;
use crate::integrity::SignedHead;
use crate::keys::hex;
use crate::layout::COSIGNATURES;
use crate::merkle::{self, Hash};
use crate::storage::Storage;

const COSIGNATURE_MAGIC: [u8; 8] = *b"TVCOSIG1";
/// magic, witness key, head counter, head hash, time, signature, crc32c.
pub const COSIGNATURE_BYTES: usize = 8 + 32 + 8 + 32 + 8 + 64 + 4;
const _: () = assert!(COSIGNATURE_BYTES == 156);

/// A witness's signature over one of a log's heads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cosignature {
    /// The witness's public key.
    pub witness: [u8; 32],
    /// The head cosigned: its counter and hash ([`SignedHead::hash`]).
    pub counter: u64,
    pub head: Hash,
    /// When the witness cosigned, microseconds since the Unix epoch (its clock).
    pub time_unix_us: u64,
    pub signature: [u8; 64],
}

/// What a witness signs: a domain, the log's key, its own key, the head and the time.
fn cosigned_message(log: &VerifyingKey, witness: &[u8; 32], counter: u64, head: &Hash, time: u64) -> Vec<u8> {
    let mut m = b"tracevault cosignature v1\0".to_vec();
    m.extend_from_slice(log.as_bytes());
    m.extend_from_slice(witness);
    m.extend_from_slice(&counter.to_le_bytes());
    m.extend_from_slice(head);
    m.extend_from_slice(&time.to_le_bytes());
    m
}

impl Cosignature {
    /// `key` cosigns `head` of the log whose key is `log`.
    pub fn sign(key: &SigningKey, log: &VerifyingKey, head: &SignedHead) -> Cosignature {
        let time_unix_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        let witness = key.verifying_key().to_bytes();
        let hash = head.hash();
        let message = cosigned_message(log, &witness, head.counter, &hash, time_unix_us);
        Cosignature {
            witness,
            counter: head.counter,
            head: hash,
            time_unix_us,
            signature: key.sign(&message).to_bytes(),
        }
    }

    /// Whether this is a valid cosignature, by its witness, of `head` of the log `log`.
    pub fn verifies(&self, log: &VerifyingKey, head: &SignedHead) -> bool {
        let Ok(witness) = VerifyingKey::from_bytes(&self.witness) else { return false };
        self.counter == head.counter
            && self.head == head.hash()
            && witness
                .verify(
                    &cosigned_message(log, &self.witness, self.counter, &self.head, self.time_unix_us),
                    &Signature::from_bytes(&self.signature),
                )
                .is_ok()
    }

    pub fn to_bytes(&self) -> [u8; COSIGNATURE_BYTES] {
        let mut covered = Vec::with_capacity(COSIGNATURE_BYTES - 4);
        bytes::Writer::new(&mut covered)
            .bytes(&COSIGNATURE_MAGIC)
            .bytes(&self.witness)
            .u64(self.counter)
            .bytes(&self.head)
            .u64(self.time_unix_us)
            .bytes(&self.signature);
        bytes::fixed(|w| {
            w.bytes(&covered).u32(crc32c::crc32c(&covered));
        })
    }

    pub fn from_bytes(b: &[u8]) -> Result<Cosignature, Corruption> {
        let mut r = Reader::new(b, "cosignature");
        if r.array::<8>("magic")? != COSIGNATURE_MAGIC {
            return Err(Corruption::new("not a cosignature"));
        }
        let c = Cosignature {
            witness: r.array("witness key")?,
            counter: r.u64("head counter")?,
            head: r.array("head hash")?,
            time_unix_us: r.u64("time")?,
            signature: r.array("signature")?,
        };
        let crc = r.u32("crc32c")?;
        r.finish()?;
        if crc != crc32c::crc32c(&b[..COSIGNATURE_BYTES - 4]) {
            return Err(Corruption::new("cosignature CRC32C mismatch"));
        }
        Ok(c)
    }
}

/// The cosignatures in `integrity/cosignatures` (a torn or damaged record, and what follows it,
/// left out: a cosignature only ever adds evidence).
pub fn read_cosignatures(storage: &dyn Storage) -> Result<Vec<Cosignature>, ReadError> {
    let path = Path::new(COSIGNATURES);
    let bytes = storage
        .read_all(path)
        .map_err(|source| ReadError::Io { path: path.to_owned(), source })?
        .unwrap_or_default();
    Ok(bytes.chunks_exact(COSIGNATURE_BYTES).map_while(|c| Cosignature::from_bytes(c).ok()).collect())
}

/// What a log sends a witness: its new head, and proofs that it extends the head the log
/// believes the witness last cosigned (of `old_tree_size` frames and `old_audit_size` audit
/// entries; 0 and 0 for a witness that never saw this log).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CosignRequest {
    pub old_tree_size: u64,
    pub old_audit_size: u64,
    pub head: SignedHead,
    /// RFC 6962 consistency proof of the frame tree from `old_tree_size` to the head's size.
    pub tree_proof: Vec<Hash>,
    /// The same for the access audit log's tree.
    pub audit_proof: Vec<Hash>,
}

/// Why a witness did not cosign.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WitnessError {
    /// The request was built from another head than the witness's latest for this log (it says
    /// which): build it again from that one.
    #[error("the witness's latest cosigned head for this log is another one (counter {})", .0.counter)]
    Conflict(Box<SignedHead>),
    /// The head is not consistent with what the witness cosigned before: evidence.
    #[error("refused: {0}")]
    Refused(String),
    /// The witness does not serve this log (`witness serve --log-key`).
    #[error("not served: {0}")]
    NotServed(String),
    /// The witness could not be asked (network, its own failure).
    #[error("unreachable: {0}")]
    Unreachable(String),
}

/// The reason a witness must refuse `request` for the log `log`, given the last head it cosigned
/// for it (`None`: it never saw this log, and trusts the first head on first use).
pub fn check_request(
    log: &VerifyingKey,
    latest: Option<&SignedHead>,
    request: &CosignRequest,
) -> Result<(), WitnessError> {
    let head = &request.head;
    if !head.verify_signature(log) {
        return Err(WitnessError::Refused(format!(
            "head {} is not signed by the log's key {}",
            head.counter,
            hex(log.as_bytes())
        )));
    }
    let Some(last) = latest else { return Ok(()) };
    if (request.old_tree_size, request.old_audit_size) != (last.tree_size, last.audit_size) {
        return Err(WitnessError::Conflict(Box::new(last.clone())));
    }
    if head == last {
        return Ok(());
    }
    let refuse = |why: String| {
        Err(WitnessError::Refused(format!(
            "head {} ({} frames, {} audit entries) after head {} ({} frames, {} audit entries): {why}",
            head.counter, head.tree_size, head.audit_size, last.counter, last.tree_size, last.audit_size
        )))
    };
    if head.counter <= last.counter {
        return refuse(
            "its counter is not after the last one cosigned: the log's history was rewritten".into(),
        );
    }
    if head.counter == last.counter + 1 && head.prev != last.hash() {
        return refuse("it does not chain to the last head cosigned".into());
    }
    if !extends(last.tree_size, head.tree_size, &request.tree_proof, &last.root, &head.root) {
        return refuse(
            "its frames do not extend the frames cosigned before: frames were removed or altered".into(),
        );
    }
    if !extends(last.audit_size, head.audit_size, &request.audit_proof, &last.audit_root, &head.audit_root) {
        return refuse(
            "its access audit log does not extend the one cosigned before: audit entries were removed or altered"
                .into(),
        );
    }
    if head.keystore_changes < last.keystore_changes {
        return refuse(format!(
            "its key store is at change {}, behind change {} cosigned before: the key store was rolled back",
            head.keystore_changes, last.keystore_changes
        ));
    }
    Ok(())
}

/// Whether the tree of `m` leaves with root `old` is a prefix of the tree of `n` with root `new`.
fn extends(m: u64, n: u64, proof: &[Hash], old: &Hash, new: &Hash) -> bool {
    m == 0 || merkle::verify_consistency(m, n, proof, old, new)
}

/// A witness, as the log reaches it.
pub trait Witness: Send + Sync {
    /// How it is named in messages (its URL).
    fn name(&self) -> String;
    /// The newest head of the log `log` it cosigned, if any.
    fn latest(&self, log: &VerifyingKey) -> Result<Option<SignedHead>, WitnessError>;
    /// Asks it to cosign.
    fn add(&self, log: &VerifyingKey, request: &CosignRequest) -> Result<Cosignature, WitnessError>;
}

/// A witness's own state: its key and, per log, the newest head it cosigned. Kept in a directory
/// of its own (never the log's): `witness.key` (the Ed25519 secret, hex, 0600), `logs/<log key
/// hex>.head` (that head's bytes, replaced atomically before a cosignature is returned), and a
/// `LOCK` held by the one process serving it.
pub struct Keeper {
    key: SigningKey,
    storage: crate::storage::FsStorage,
    /// Logs it serves (public keys); empty: any log, its first head trusted on first use.
    allowed: Vec<VerifyingKey>,
    /// One cosignature at a time: check, persist, sign.
    serial: std::sync::Mutex<()>,
    _lock: std::fs::File,
}

/// Why a witness's state could not be opened or kept.
#[derive(Debug, thiserror::Error)]
pub enum KeeperError {
    #[error("{path}: {source}")]
    Io { path: std::path::PathBuf, source: std::io::Error },
    #[error("{0}: another witness process serves this state directory")]
    Locked(std::path::PathBuf),
    #[error("{path}: {reason}")]
    Format { path: std::path::PathBuf, reason: String },
}

const WITNESS_KEY: &str = "witness.key";
const LOGS_DIR: &str = "logs";

impl Keeper {
    /// Opens (creating) the witness state in `dir`, serving only `allowed` logs if any are given.
    pub fn open(dir: &Path, allowed: Vec<VerifyingKey>) -> Result<Keeper, KeeperError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| KeeperError::Io { path, source }
        };
        crate::storage::create_private_dir(&dir.join(LOGS_DIR)).map_err(io(dir))?;
        let lock = crate::storage::try_lock(&dir.join("LOCK"))
            .map_err(io(dir))?
            .ok_or_else(|| KeeperError::Locked(dir.to_owned()))?;
        let storage = crate::storage::FsStorage::new(dir);
        let key_path = dir.join(WITNESS_KEY);
        let secret = match storage.read_all(Path::new(WITNESS_KEY)).map_err(io(&key_path))? {
            Some(text) => {
                let text = String::from_utf8_lossy(&text);
                crate::keys::Secret::from_hex(&text)
                    .map_err(|e| KeeperError::Format { path: key_path.clone(), reason: e.to_string() })?
            }
            None => {
                let secret = crate::keys::Secret::random()
                    .map_err(|e| KeeperError::Format { path: key_path.clone(), reason: e.to_string() })?;
                storage
                    .write_atomic(
                        Path::new(WITNESS_KEY),
                        format!("{}\n", secret.to_hex().as_str()).as_bytes(),
                    )
                    .map_err(io(&key_path))?;
                secret
            }
        };
        Ok(Keeper {
            key: SigningKey::from_bytes(secret.expose()),
            storage,
            allowed,
            serial: std::sync::Mutex::new(()),
            _lock: lock,
        })
    }

    pub fn public_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    fn head_path(log: &VerifyingKey) -> std::path::PathBuf {
        Path::new(LOGS_DIR).join(format!("{}.head", hex(log.as_bytes())))
    }

    /// The newest head of `log` this witness cosigned.
    pub fn latest(&self, log: &VerifyingKey) -> Result<Option<SignedHead>, KeeperError> {
        let path = Self::head_path(log);
        let bytes =
            self.storage.read_all(&path).map_err(|source| KeeperError::Io { path: path.clone(), source })?;
        bytes
            .map(|b| SignedHead::from_bytes(&b).map_err(|c| KeeperError::Format { path, reason: c.reason }))
            .transpose()
    }

    /// Checks `request` against the last head cosigned for `log`, keeps the new head durably,
    /// then cosigns it.
    pub fn cosign(&self, log: &VerifyingKey, request: &CosignRequest) -> Result<Cosignature, WitnessError> {
        if !self.allowed.is_empty() && !self.allowed.contains(log) {
            return Err(WitnessError::NotServed(format!(
                "log {} is not one this witness serves",
                hex(log.as_bytes())
            )));
        }
        let _one = crate::sync::lock(&self.serial);
        let latest = self.latest(log).map_err(|e| WitnessError::Unreachable(e.to_string()))?;
        check_request(log, latest.as_ref(), request)?;
        if latest.as_ref() != Some(&request.head) {
            let path = Self::head_path(log);
            self.storage
                .write_atomic(&path, &request.head.to_bytes())
                .map_err(|e| WitnessError::Unreachable(format!("{}: {e}", path.display())))?;
            tracing::info!(log = %hex(log.as_bytes()), head = request.head.counter, "cosigned");
        }
        Ok(Cosignature::sign(&self.key, log, &request.head))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::integrity::Commitments;

    fn tree(n: usize) -> Vec<Hash> {
        (0..n).map(|i| merkle::leaf_hash(&i.to_le_bytes())).collect()
    }

    fn head(key: &SigningKey, prev: Option<&SignedHead>, frames: usize, audit: usize) -> SignedHead {
        headed(key, prev.map(SignedHead::link), frames, audit)
    }

    fn headed(
        key: &SigningKey,
        prev: Option<crate::integrity::Link>,
        frames: usize,
        audit: usize,
    ) -> SignedHead {
        let c = Commitments {
            tree_size: frames as u64,
            root: merkle::root(&tree(frames)),
            audit_size: audit as u64,
            audit_root: merkle::root(&tree(audit)[..]),
            keystore_changes: 1,
            keystore_hash: [0; 32],
        };
        SignedHead::sign(key, prev, &c, 0)
    }

    fn request(last: Option<&SignedHead>, head: SignedHead) -> CosignRequest {
        let (m, a) = last.map_or((0, 0), |l| (l.tree_size, l.audit_size));
        let proof = |m: u64, n: u64| {
            if m == 0 || m > n {
                Vec::new()
            } else {
                merkle::consistency_proof(&tree(n as usize), m as usize).unwrap()
            }
        };
        CosignRequest {
            old_tree_size: m,
            old_audit_size: a,
            tree_proof: proof(m, head.tree_size),
            audit_proof: proof(a, head.audit_size),
            head,
        }
    }

    #[test]
    fn a_witness_cosigns_only_heads_that_extend_the_last_one() {
        let log = SigningKey::from_bytes(&[1; 32]);
        let public = log.verifying_key();
        let first = head(&log, None, 5, 2);
        assert_eq!(check_request(&public, None, &request(None, first.clone())), Ok(()));
        let next = head(&log, Some(&first), 9, 3);
        assert_eq!(check_request(&public, Some(&first), &request(Some(&first), next.clone())), Ok(()));
        // Built from another size: a conflict naming the witness's head.
        let stale = CosignRequest { old_tree_size: 4, ..request(Some(&first), next.clone()) };
        assert!(matches!(check_request(&public, Some(&first), &stale), Err(WitnessError::Conflict(_))));
        // Rolled back: an older head again, or a rebuilt one with fewer audit entries.
        let back = head(&log, None, 5, 2);
        let refused = check_request(&public, Some(&next), &request(Some(&next), back));
        assert!(matches!(refused, Err(WitnessError::Refused(ref r)) if r.contains("counter")), "{refused:?}");
        let later = crate::integrity::Link { counter: next.counter + 4, hash: [7; 32] };
        let rebuilt = headed(&log, Some(later), 12, 1);
        let refused = check_request(&public, Some(&next), &request(Some(&next), rebuilt));
        assert!(matches!(refused, Err(WitnessError::Refused(ref r)) if r.contains("audit")), "{refused:?}");
        // Not the log's key.
        let other = SigningKey::from_bytes(&[2; 32]);
        let forged = head(&other, Some(&next), 10, 3);
        assert!(matches!(
            check_request(&public, Some(&next), &request(Some(&next), forged)),
            Err(WitnessError::Refused(_))
        ));
    }

    #[test]
    fn cosignatures_round_trip_and_bind_the_log_and_the_head() {
        let log = SigningKey::from_bytes(&[1; 32]);
        let witness = SigningKey::from_bytes(&[3; 32]);
        let h = head(&log, None, 3, 1);
        let c = Cosignature::sign(&witness, &log.verifying_key(), &h);
        assert!(c.verifies(&log.verifying_key(), &h));
        assert_eq!(Cosignature::from_bytes(&c.to_bytes()), Ok(c.clone()));
        let other_head = head(&log, Some(&h), 4, 1);
        assert!(!c.verifies(&log.verifying_key(), &other_head));
        assert!(!c.verifies(&SigningKey::from_bytes(&[9; 32]).verifying_key(), &h));
        let mut bad = c.to_bytes();
        bad[50] ^= 1;
        assert!(Cosignature::from_bytes(&bad).is_err());
    }
}
