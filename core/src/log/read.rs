//! The read path: every read goes through the access policy and the audit log first, then blocks
//! are read, authenticated, decrypted and decoded one at a time.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex};

use tracevault_codecs::block::BlockDecoder;
use tracevault_codecs::{Event, SessionMeta};

use crate::audit::{Action, Decision};
use crate::error::{AppendError, ReadError};
use crate::frame::{self, FrameKind, Parsed};
use crate::index::BlockLoc;
use crate::keys::{self, KeyError};
use crate::policy::{self, Access, Denied, Operation};
use crate::records;
use tracevault_actions::Redactable;

use super::state::{Inner, Log, Session, lock, segment_path};

/// A session as the log sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct SessionInfo {
    pub meta: SessionMeta,
    pub number: u64,
    pub events: u64,
    pub sealed_events: u64,
    pub blocks: u32,
    /// Bytes of the session's sealed block frames on disk.
    pub sealed_bytes: u64,
    pub t_min_us: Option<u64>,
    pub t_max_us: Option<u64>,
    /// The data key its events are sealed with (`None` until it has one).
    pub key_id: Option<u32>,
    /// Its person was crypto-shredded: its events can never be read again.
    pub erased: bool,
}

impl Log {
    /// Every session, in id order.
    pub fn sessions(&self) -> Vec<SessionInfo> {
        let sessions: Vec<Arc<Session>> =
            self.inner.sessions.read().unwrap_or_else(|e| e.into_inner()).values().cloned().collect();
        let mut out: Vec<SessionInfo> = sessions.iter().map(|s| info(s)).collect();
        out.sort_by(|a, b| a.meta.session.cmp(&b.meta.session));
        out
    }

    /// Whether a session exists (cheaper than [`Log::session_info`]: no copy, no session lock).
    pub fn has_session(&self, id: &str) -> bool {
        self.session(id).is_some()
    }

    /// A session's most recent batches (at most [`super::RECENT_BATCHES_MAX`]), oldest first, as
    /// (batch id, first sequence number, events): what a retried batch is recognised by.
    pub fn recent_batches(&self, id: &str) -> Vec<(u128, u64, u64)> {
        self.session(id).map_or_else(Vec::new, |s| lock(&s.state).progress.recent_batches.clone())
    }

    /// One session, if it exists.
    pub fn session_info(&self, id: &str) -> Option<SessionInfo> {
        self.session(id).map(|s| info(&s))
    }

    /// Every event of a session whose `t` is in `t_range`, in the order appended, for `access`.
    /// The read is recorded in the access audit log (durably) before any event is decrypted; if
    /// it cannot be, or the role may not read, nothing is returned. Every frame read is checked
    /// and authenticated; a damaged one is an error, never data.
    pub fn read_session(
        &self,
        access: &Access,
        id: &str,
        t_range: RangeInclusive<u64>,
    ) -> Result<Vec<Event>, ReadError> {
        let mut out = Vec::new();
        for block in self.session_blocks(access, id, t_range.clone())? {
            out.extend(block?.into_iter().filter(|e| t_range.contains(&e.t_us)));
        }
        Ok(out)
    }

    /// An audit entry could not be made durable: like a failed write of the log's own files, that
    /// poisons the log (the disk can no longer be trusted), and every read and write fails until
    /// it is reopened.
    pub(crate) fn audit_failed(&self, e: crate::audit::AuditError) -> AppendError {
        super::writer::poison(&self.inner, format!("access audit log: {e}"))
    }

    /// Asks the access policy whether `access` may `op` these sessions and records the decision
    /// in the audit log (durably) before anything is read; a refusal is recorded too.
    pub(crate) fn authorize(
        &self,
        access: &Access,
        op: Operation,
        sessions: &[Arc<Session>],
    ) -> Result<(), ReadError> {
        let ids: Vec<String> = sessions.iter().map(|s| s.id.clone()).collect();
        let keys: Vec<u32> = {
            let mut k: Vec<u32> = sessions.iter().filter_map(|s| lock(&s.state).key_id).collect();
            k.sort_unstable();
            k.dedup();
            k
        };
        let decided = policy::check(access, op);
        let decision = decided.as_ref().err().map_or(Decision::Allowed, |d| Decision::Denied(d.0.clone()));
        self.inner
            .vault
            .record(access, Action::of(op), ids, keys, decision)
            .map_err(|e| ReadError::Audit(Box::new(self.audit_failed(e))))?;
        Ok(decided?)
    }

    /// Whether `access` may `op`, before a caller prepares anything (an export's files): a
    /// refusal is recorded in the audit log and returned; an allowance records nothing (the read
    /// that follows records itself).
    pub fn check_access(&self, access: &Access, op: Operation) -> Result<(), ReadError> {
        let Err(denied) = policy::check(access, op) else { return Ok(()) };
        self.inner
            .vault
            .record(access, Action::of(op), Vec::new(), Vec::new(), Decision::Denied(denied.0.clone()))
            .map_err(|e| ReadError::Audit(Box::new(self.audit_failed(e))))?;
        Err(denied.into())
    }

    /// A session's blocks, in order, as an iterator that reads, authenticates and decrypts one
    /// block at a time: every sealed block whose time range meets `t_range`, then the open block.
    /// Recorded in the access audit log first, as [`Log::read_session`] is.
    pub fn session_blocks(
        &self,
        access: &Access,
        id: &str,
        t_range: RangeInclusive<u64>,
    ) -> Result<SessionBlocks, ReadError> {
        // A role that may not read learns nothing, not even whether the session exists.
        self.check_access(access, Operation::ReadRaw)?;
        let session = self.session(id).ok_or_else(|| ReadError::UnknownSession(id.to_owned()))?;
        self.authorize(access, Operation::ReadRaw, std::slice::from_ref(&session))?;
        self.blocks_of(&session, t_range)
    }

    /// Reads several sessions for one operation (an export, a replay of many): the policy's
    /// decision and one audit entry for all of them, then an iterator of blocks per session, in
    /// the order given. `op` is what the events are read *for*, and must be one that reads
    /// personal data: [`Operation::ReadRaw`], [`Operation::ReadSteps`],
    /// [`Operation::ExportRedacted`] or [`Operation::ExportUnredacted`].
    ///
    /// For [`Operation::ExportRedacted`] (the only read the `ml` role may make) the blocks give
    /// their events only as [`Redactable`] values (`read_sealed_redactable`,
    /// `read_open_redactable`): a reducer and the default redaction open them, nothing else does,
    /// and the plain readers refuse. Every other operation gets plain events.
    pub fn read_sessions(
        &self,
        access: &Access,
        op: Operation,
        ids: &[&str],
    ) -> Result<Vec<SessionBlocks>, ReadError> {
        if !op.reads_personal_data() {
            return Err(ReadError::Invalid(format!("{} does not read sessions", op.as_str())));
        }
        // A role that may not read learns nothing, not even which sessions exist.
        self.check_access(access, op)?;
        let sessions = ids
            .iter()
            .map(|id| self.session(id).ok_or_else(|| ReadError::UnknownSession((*id).to_owned())))
            .collect::<Result<Vec<_>, _>>()?;
        self.authorize(access, op, &sessions)?;
        let redactable_only = op == Operation::ExportRedacted;
        sessions
            .iter()
            .map(|s| self.blocks_of(s, 0..=u64::MAX).map(|b| SessionBlocks { redactable_only, ..b }))
            .collect()
    }

    pub(crate) fn blocks_of(
        &self,
        session: &Session,
        t_range: RangeInclusive<u64>,
    ) -> Result<SessionBlocks, ReadError> {
        let state = lock(&session.state);
        if let Some(key_id) = state.erased {
            return Err(ReadError::Erased { session: session.id.clone(), key_id });
        }
        let mut locs = self.sealed_locations(session)?;
        let next_block = state.progress.next_block;
        locs.retain(|b, l| *b < next_block && l.t_max_us >= *t_range.start() && l.t_min_us <= *t_range.end());
        let open: Vec<Vec<u8>> = state.open.chunks.iter().map(|(b, _)| b.clone()).collect();
        let (open_block, open_seq) = (state.progress.next_block, state.progress.sealed_events);
        drop(state);
        Ok(SessionBlocks {
            inner: self.inner.clone(),
            id: session.id.clone(),
            number: session.number,
            sealed: locs.into_iter().collect(),
            open,
            open_block,
            open_seq,
            next: 0,
            decoder: Mutex::new(None),
            redactable_only: false,
            proven: None,
        })
    }

    /// Where a session's sealed blocks are: the index, and what was sealed since the checkpoint.
    pub(crate) fn sealed_locations(&self, session: &Session) -> Result<BTreeMap<u32, BlockLoc>, ReadError> {
        let mut locs: BTreeMap<u32, BlockLoc> =
            self.inner.index.blocks(session.number)?.into_iter().collect();
        if let Some(recent) = lock(&self.inner.recent).get(&session.number) {
            locs.extend(recent.iter().map(|(b, l)| (*b, *l)));
        }
        Ok(locs)
    }
}

fn info(session: &Session) -> SessionInfo {
    let state = lock(&session.state);
    SessionInfo {
        meta: (*session.meta).clone(),
        number: session.number,
        events: state.next_seq,
        sealed_events: state.progress.sealed_events,
        blocks: state.progress.next_block,
        sealed_bytes: state.progress.sealed_bytes,
        t_min_us: state.progress.t_min_us,
        t_max_us: state.progress.t_max_us,
        key_id: state.key_id,
        erased: state.erased.is_some(),
    }
}

/// One block of a session's events, with where it sits in the session.
pub use tracevault_actions::Block as BlockEvents;

/// A session's blocks, read after the access was recorded; see [`Log::session_blocks`] and
/// [`Log::read_sessions`]. Iterate for one block after another, or read blocks by position from
/// several threads at once ([`SessionBlocks::read_sealed`] takes `&self`), as replay does.
pub struct SessionBlocks {
    inner: Arc<Inner>,
    id: String,
    number: u64,
    sealed: Vec<(u32, BlockLoc)>,
    /// The open block's encoded chunks, read last.
    open: Vec<Vec<u8>>,
    open_block: u32,
    open_seq: u64,
    /// The iterator's position: sealed blocks first, then the open block.
    next: usize,
    /// The iterator's decoder, made on first use. A mutex only so the blocks can be shared by the
    /// threads that call `read_sealed`; the iterator reaches it through `&mut self`, unlocked.
    decoder: Mutex<Option<BlockDecoder>>,
    /// Read for a redacted export: events only as [`Redactable`] values.
    redactable_only: bool,
    /// Once bound to a proof ([`SessionBlocks::bind_to_proof`]): each sealed block's leaf hash as
    /// proven, checked again at every read.
    proven: Option<Vec<crate::merkle::Hash>>,
}

impl SessionBlocks {
    /// The session's id.
    pub fn session(&self) -> &str {
        &self.id
    }

    /// How many sealed blocks there are to read (the open block comes after them).
    pub fn sealed_count(&self) -> usize {
        self.sealed.len()
    }

    /// Each sealed block's place, from the index and without reading it: (block number, first
    /// and last event time in µs, events), in session order; position `i` is what
    /// [`SessionBlocks::read_sealed`] reads. A viewer seeks by these.
    pub fn sealed_spans(&self) -> impl Iterator<Item = (u32, u64, u64, u32)> + '_ {
        self.sealed.iter().map(|(b, l)| (*b, l.t_min_us, l.t_max_us, l.events))
    }

    /// Binds the sealed blocks to `proof` (from [`Log::verify_session`]): each must be a frame
    /// the proof covers, at the same place, and from now on every read checks that the frame's
    /// bytes still hash to the leaf proven. A frame rewritten after the proof (by whoever holds
    /// the keys and the disk) is then refused as corrupt instead of played as proven. Fails,
    /// naming the block, when a sealed block is not under the proof (sealed after it was made).
    pub fn bind_to_proof(&mut self, proof: &crate::SessionProof) -> Result<(), ReadError> {
        let leaves = self
            .sealed
            .iter()
            .map(|(block, loc)| {
                proof
                    .frames
                    .iter()
                    .find(|f| {
                        f.block == *block
                            && f.frame == loc.frame
                            && f.segment == loc.segment
                            && f.offset == loc.offset
                            && f.frame_bytes == loc.frame_bytes
                    })
                    .map(|f| f.leaf)
                    .ok_or_else(|| {
                        ReadError::Proof(format!(
                            "session {}: block {block} (frame {}) is not under the proof",
                            self.id, loc.frame
                        ))
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.proven = Some(leaves);
        Ok(())
    }

    /// Whether the blocks give their events only as [`Redactable`] values (a redacted export's
    /// read).
    pub fn redactable_only(&self) -> bool {
        self.redactable_only
    }

    fn plain_allowed(&self) -> Result<(), ReadError> {
        if self.redactable_only {
            return Err(ReadError::Denied(Denied(
                "these blocks were read for a redacted export: their events open only through the redaction"
                    .into(),
            )));
        }
        Ok(())
    }

    /// Reads, authenticates, decrypts and decodes sealed block `i` (0-based, in session order).
    /// Refused for blocks read for a redacted export (see [`SessionBlocks::read_sealed_redactable`]).
    pub fn read_sealed(&self, i: usize, decoder: &mut BlockDecoder) -> Result<BlockEvents, ReadError> {
        self.plain_allowed()?;
        self.decode_sealed(i, decoder)
    }

    /// As [`SessionBlocks::read_sealed`], the events wrapped so that only the reduction and the
    /// default redaction can read them.
    pub fn read_sealed_redactable(
        &self,
        i: usize,
        decoder: &mut BlockDecoder,
    ) -> Result<Redactable<BlockEvents>, ReadError> {
        self.decode_sealed(i, decoder).map(Redactable::new)
    }

    fn decode_sealed(&self, i: usize, decoder: &mut BlockDecoder) -> Result<BlockEvents, ReadError> {
        let (block, loc) = self.sealed[i];
        let path = segment_path(loc.segment);
        let corrupt = |reason: String| ReadError::Corrupt { path: path.clone(), offset: loc.offset, reason };
        let mut bytes = vec![0u8; loc.frame_bytes as usize];
        self.inner
            .storage
            .read_at(&path, loc.offset, &mut bytes)
            .map_err(|source| ReadError::Io { path: path.clone(), source })?;
        if let Some(leaves) = &self.proven
            && crate::merkle::leaf_hash(&bytes) != leaves[i]
        {
            return Err(corrupt(format!(
                "block {block} (frame {}) no longer hashes to the leaf proven when it was opened",
                loc.frame
            )));
        }
        let frame = match frame::parse(&bytes) {
            Parsed::Frame(f) if f.bytes.len() == bytes.len() => f,
            Parsed::Frame(_) => return Err(corrupt("frame length differs from the index".into())),
            Parsed::Incomplete => return Err(corrupt("frame ends past its indexed length".into())),
            Parsed::Corrupt(c) => return Err(corrupt(c.reason)),
        };
        let h = frame.header;
        if h.kind != FrameKind::Block || h.session != self.number || h.block != block {
            return Err(corrupt(format!(
                "expected block {block} of session {}, found a {:?} frame of session {} block {}",
                self.number, h.kind, h.session, h.block
            )));
        }
        let key = self.inner.vault.read_key(h.key_id).map_err(|e| match e {
            KeyError::Erased(key_id) => ReadError::Erased { session: self.id.clone(), key_id },
            other => ReadError::Key(other),
        })?;
        let plain = keys::open(&key, &h, frame.payload, records::BLOCK_PREFIX_BYTES)
            .map_err(|c| corrupt(c.reason))?;
        let seq_first = records::parse_block(frame.payload).map_err(|c| corrupt(c.reason))?.0;
        let mut events = Vec::with_capacity(h.event_count as usize);
        decoder.decode_into(&plain, &mut events).map_err(|e| corrupt(e.to_string()))?;
        if events.len() != h.event_count as usize {
            return Err(corrupt(format!(
                "block holds {} events, its frame says {}",
                events.len(),
                h.event_count
            )));
        }
        Ok(BlockEvents { block, seq_first, events })
    }

    /// The open block (events appended but not yet sealed), if it holds any. Refused for blocks
    /// read for a redacted export (see [`SessionBlocks::read_open_redactable`]).
    pub fn read_open(&self, decoder: &mut BlockDecoder) -> Result<Option<BlockEvents>, ReadError> {
        self.plain_allowed()?;
        self.decode_open(decoder)
    }

    /// As [`SessionBlocks::read_open`], the events wrapped for the redaction.
    pub fn read_open_redactable(
        &self,
        decoder: &mut BlockDecoder,
    ) -> Result<Option<Redactable<BlockEvents>>, ReadError> {
        Ok(self.decode_open(decoder)?.map(Redactable::new))
    }

    fn decode_open(&self, decoder: &mut BlockDecoder) -> Result<Option<BlockEvents>, ReadError> {
        let mut events = Vec::new();
        for chunk in &self.open {
            decoder.decode_into(chunk, &mut events).map_err(|e| ReadError::Corrupt {
                path: "<open block in memory>".into(),
                offset: 0,
                reason: format!("session {}: {e}", self.number),
            })?;
        }
        Ok((!events.is_empty()).then_some(BlockEvents {
            block: self.open_block,
            seq_first: self.open_seq,
            events,
        }))
    }

    /// The next block in session order, with its position.
    pub fn next_block(&mut self) -> Option<Result<BlockEvents, ReadError>> {
        let i = self.next;
        self.next += 1;
        // The iterator's own decoder (its zstd context and buffers reused block after block),
        // moved out while the block is read through `&self`.
        let slot = self.decoder.get_mut().unwrap_or_else(|e| e.into_inner());
        let mut decoder = slot.take().unwrap_or_default();
        let out = if i < self.sealed.len() {
            Some(self.read_sealed(i, &mut decoder))
        } else if i == self.sealed.len() {
            self.read_open(&mut decoder).transpose()
        } else {
            None
        };
        *self.decoder.get_mut().unwrap_or_else(|e| e.into_inner()) = Some(decoder);
        out
    }
}

impl Iterator for SessionBlocks {
    type Item = Result<Vec<Event>, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_block().map(|r| r.map(|b| b.events))
    }
}
