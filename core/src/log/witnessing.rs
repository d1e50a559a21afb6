//! Pushing the newest signed head to a witness, with the consistency proofs from the head it
//! last cosigned, and keeping its cosignature.

use std::path::Path;

use crate::audit;
use crate::integrity::{self, SignedHead};
use crate::layout::COSIGNATURES;
use crate::merkle::{self, Hash};
use crate::witness::{COSIGNATURE_BYTES, CosignRequest, Cosignature, Witness, WitnessError};

use super::state::{Log, lock};

/// The consistency proof from the first `m` of `leaves` to all of them (none needed from 0).
fn proof(leaves: &[Hash], m: u64) -> Result<Vec<Hash>, WitnessError> {
    if m == 0 {
        return Ok(Vec::new());
    }
    merkle::consistency_proof(leaves, m as usize).ok_or_else(|| {
        WitnessError::Refused(format!(
            "the witness has cosigned a tree of {m} leaves, this log's newest head has {}: the log is behind \
             what the witness saw (rolled back or rebuilt)",
            leaves.len()
        ))
    })
}

/// A signed head that witnesses cosigned ([`Log::witnessed`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Witnessed {
    pub counter: u64,
    pub tree_size: u64,
    pub time_unix_us: u64,
    /// The witnesses' public keys, hex, each with a cosignature of this head that verifies.
    pub witnesses: Vec<String>,
}

impl Log {
    /// The newest head covering the log's first `frames` frames that a witness cosigned (kept in
    /// `integrity/cosignatures`, each checked against the head and this log's key), if any: a
    /// session whose frames are all below it is held by someone other than this server too.
    pub fn witnessed(&self, frames: u64) -> Result<Option<Witnessed>, crate::error::ReadError> {
        let storage = self.inner.storage.as_ref();
        let (heads, _) = integrity::read_heads(storage)?;
        let cosignatures = crate::witness::read_cosignatures(storage)?;
        let public = self.public_key();
        for head in heads.iter().rev().filter(|h| h.tree_size >= frames) {
            let witnesses: Vec<String> = cosignatures
                .iter()
                .filter(|c| c.verifies(&public, head))
                .map(|c| hex::encode(c.witness))
                .collect();
            if !witnesses.is_empty() {
                return Ok(Some(Witnessed {
                    counter: head.counter,
                    tree_size: head.tree_size,
                    time_unix_us: head.time_unix_us,
                    witnesses,
                }));
            }
        }
        Ok(None)
    }

    /// Asks `witness` to cosign the newest signed head, and keeps the cosignature in
    /// `integrity/cosignatures`. The request proves the head extends the last head the witness
    /// cosigned for this log; a witness that refuses says why (a history rewritten, rolled back
    /// or cut short), and that refusal is the evidence.
    pub fn cosign(&self, witness: &dyn Witness) -> Result<Cosignature, WitnessError> {
        let _one_at_a_time = lock(&self.inner.cosigning);
        let storage = self.inner.storage.as_ref();
        let unreadable =
            |e: crate::error::ReadError| WitnessError::Unreachable(format!("reading the log: {e}"));
        let (heads, _) = integrity::read_heads(storage).map_err(unreadable)?;
        let head = heads.last().cloned().ok_or_else(|| WitnessError::Refused("no signed head yet".into()))?;
        let public = self.public_key();
        let ledger = integrity::read_ledger(storage).map_err(unreadable)?;
        let frames = ledger.get(..head.tree_size as usize).ok_or_else(|| {
            WitnessError::Unreachable(format!(
                "the ledger holds {} leaves, the newest head covers {}",
                ledger.len(),
                head.tree_size
            ))
        })?;
        let audit = audit::scan(storage).map_err(|e| WitnessError::Unreachable(e.to_string()))?;
        let entries = audit.leaves.get(..head.audit_size as usize).ok_or_else(|| {
            WitnessError::Unreachable(format!(
                "the audit log holds {} entries, the newest head covers {}",
                audit.leaves.len(),
                head.audit_size
            ))
        })?;
        let request = |last: Option<&SignedHead>| -> Result<CosignRequest, WitnessError> {
            let (m, a) = last.map_or((0, 0), |l| (l.tree_size, l.audit_size));
            Ok(CosignRequest {
                old_tree_size: m,
                old_audit_size: a,
                head: head.clone(),
                tree_proof: proof(frames, m)?,
                audit_proof: proof(entries, a)?,
            })
        };
        let latest = witness.latest(&public)?;
        let cosignature = match witness.add(&public, &request(latest.as_ref())?) {
            // The witness moved on meanwhile (another log process, a retry): once more from there.
            Err(WitnessError::Conflict(theirs)) => witness.add(&public, &request(Some(&theirs))?)?,
            other => other?,
        };
        if !cosignature.verifies(&public, &head) {
            return Err(WitnessError::Refused(format!(
                "{} answered with a cosignature that does not verify for head {}",
                witness.name(),
                head.counter
            )));
        }
        let path = Path::new(COSIGNATURES);
        let kept = |e: std::io::Error| WitnessError::Unreachable(format!("{}: {e}", path.display()));
        if let Ok(len) = storage.len(path) {
            // A record torn by a crash: cut, so the next one starts on a record boundary.
            let whole = len - len % COSIGNATURE_BYTES as u64;
            if whole != len {
                storage.truncate(path, whole).map_err(kept)?;
            }
        }
        let mut file = self.inner.storage.open_append(path).map_err(kept)?;
        file.append(&cosignature.to_bytes()).and_then(|()| file.sync()).map_err(kept)?;
        tracing::info!(witness = %witness.name(), head = head.counter, "head cosigned");
        Ok(cosignature)
    }
}
