//! Proofs: a session's blocks under the newest signed head, consistency between heads, and the
//! whole log's verification.

use crate::error::ReadError;
use crate::integrity::{self, FrameProof, SessionProof, SignedHead, VerifyReport};
use crate::merkle::{self, Hash};

use super::state::{Log, lock, segment_path};

impl Log {
    /// Proves a session's sealed blocks are in the log: checkpoints (so every sealed block is
    /// under a signed head), then gives each block frame's audit path to the newest head's root.
    pub fn prove_session(&self, id: &str) -> Result<SessionProof, ReadError> {
        let session = self.session(id).ok_or_else(|| ReadError::UnknownSession(id.to_owned()))?;
        self.checkpoint().map_err(|e| ReadError::Write(Box::new(e)))?;
        let storage = self.inner.storage.as_ref();
        let head = integrity::read_newest_head(storage)?
            .ok_or_else(|| ReadError::Proof("no signed head yet".into()))?;
        // The cached subtrees cover the ledger's complete chunks up to the head; the new ones are
        // read and hashed once, here. A stale cache cannot pass: every path is checked against the
        // signed root by whoever verifies it (verify_session below, an auditor's `verify`).
        let mut subtrees = lock(&self.inner.subtrees);
        let ledger_leaves = storage.len(std::path::Path::new(crate::layout::LEDGER)).unwrap_or(0)
            / std::mem::size_of::<Hash>() as u64;
        if ledger_leaves < head.tree_size {
            return Err(ReadError::Proof(format!(
                "the ledger holds {ledger_leaves} leaves, the head covers {}",
                head.tree_size
            )));
        }
        while subtrees.covered() + subtrees.chunk() <= head.tree_size {
            let (lo, chunk) = (subtrees.covered(), subtrees.chunk());
            subtrees.push_chunk(&integrity::read_leaves(storage, lo, lo + chunk)?);
        }
        let mut read = |lo: u64, hi: u64| integrity::read_leaves(storage, lo, hi);
        let (events_total, sealed_blocks) = {
            let state = lock(&session.state);
            (state.next_seq, state.progress.next_block)
        };
        let mut frames = Vec::new();
        let mut events = 0;
        for (block, loc) in self.sealed_locations(&session)? {
            if block >= sealed_blocks || loc.frame >= head.tree_size {
                continue;
            }
            let path = subtrees
                .inclusion_proof(head.tree_size, loc.frame, &mut read)?
                .expect("frame inside the tree");
            let leaf = integrity::read_leaves(storage, loc.frame, loc.frame + 1)?[0];
            frames.push(FrameProof {
                frame: loc.frame,
                block,
                segment: loc.segment,
                offset: loc.offset,
                frame_bytes: loc.frame_bytes,
                leaf,
                path,
            });
            events += u64::from(loc.events);
        }
        Ok(SessionProof {
            session: id.to_owned(),
            head,
            frames,
            events,
            unsealed_events: events_total.saturating_sub(events),
        })
    }

    /// Proves a session and checks the proof against the frames on disk and the signing key: each
    /// block frame, read back, hashes to its leaf, and its audit path leads to the signed root.
    pub fn verify_session(&self, id: &str) -> Result<SessionProof, ReadError> {
        let proof = self.prove_session(id)?;
        let public = self.public_key();
        for f in &proof.frames {
            let path = segment_path(f.segment);
            let mut bytes = vec![0u8; f.frame_bytes as usize];
            self.inner
                .storage
                .read_at(&path, f.offset, &mut bytes)
                .map_err(|source| ReadError::Io { path: path.clone(), source })?;
            integrity::check_frame(&proof.head, &public, f, &bytes).map_err(|c| ReadError::Corrupt {
                path: path.clone(),
                offset: f.offset,
                reason: c.reason,
            })?;
        }
        Ok(proof)
    }

    /// The consistency proof (RFC 6962 §2.1.2) that the log's first `old_size` frames are a prefix
    /// of its first `new_size`, from the ledger.
    pub fn consistency_proof(&self, old_size: u64, new_size: u64) -> Result<Vec<Hash>, ReadError> {
        let ledger = integrity::read_ledger(self.inner.storage.as_ref())?;
        let leaves = ledger.get(..new_size as usize).ok_or_else(|| {
            ReadError::Invalid(format!("the ledger holds {} leaves, not {new_size}", ledger.len()))
        })?;
        merkle::consistency_proof(leaves, old_size as usize)
            .ok_or_else(|| ReadError::Invalid(format!("no consistency proof from {old_size} to {new_size}")))
    }

    /// The signed tree heads, oldest first.
    pub fn signed_heads(&self) -> Result<Vec<SignedHead>, ReadError> {
        Ok(integrity::read_heads(self.inner.storage.as_ref())?.0)
    }

    /// Checks the whole log with [`integrity::verify`] against this log's own public key: every
    /// frame whole, every footer, every frame's leaf, every signed head, and the audit log; names
    /// the first frame that fails. (An auditor without the keys uses `integrity::verify` with the
    /// published public key.)
    pub fn verify(&self) -> Result<VerifyReport, ReadError> {
        integrity::verify(self.inner.storage.as_ref(), &self.public_key())
    }
}
