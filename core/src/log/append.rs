//! The write path: creating sessions and appending batches (journal frame, open block, sealed
//! blocks), sealing open blocks, and bounding the memory and journal they hold.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use tracevault_codecs::block::{BlockDecoder, BlockEncoder};
use tracevault_codecs::limits::BLOCK_EVENTS_MAX;
use tracevault_codecs::{Event, SessionMeta};

use crate::error::AppendError;
use crate::frame::{self, FrameHeader, FrameKind};
use crate::index::{BlockLoc, Progress};
use crate::keys::{self, DataKey, KeyError};
use crate::records;

use super::options::{RECENT_BATCHES_MAX, SESSION_META_BYTES_MAX};
use super::state::{Log, OpenBlock, SegmentFrame, Session, SessionState, Write, lock, t_range};
use super::vault::VaultError;

/// One append: a batch of a session's events, with optional idempotency and concurrency control.
#[derive(Clone, Copy, Debug)]
pub struct Batch<'a> {
    pub session: &'a str,
    pub events: &'a [Event],
    /// A caller's id for the batch: a batch id seen before is acknowledged again, not rewritten.
    pub batch_id: Option<u128>,
    /// The number of events the caller believes the session holds; the append fails with
    /// [`AppendError::Conflict`] if it holds another number.
    pub expected_seq: Option<u64>,
}

/// What an acknowledged append was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ack {
    /// The sequence number (within the session) of the batch's first event.
    pub seq_first: u64,
    pub events: u64,
    /// The batch id had been acknowledged before; nothing was written this time.
    pub duplicate: bool,
}

impl Log {
    /// Creates a session, durably. Creating a session that exists with the same metadata is a
    /// no-op; with different metadata it is an error. Returns whether it was created.
    pub fn create_session(&self, meta: SessionMeta) -> Result<bool, AppendError> {
        if meta.session.is_empty() || meta.user.is_empty() {
            return Err(AppendError::Invalid {
                session: meta.session.clone(),
                reason: "session and user ids must not be empty".into(),
            });
        }
        let mut sessions = self.inner.sessions.write().unwrap_or_else(|e| e.into_inner());
        if let Some(existing) = sessions.get(&meta.session) {
            return if *existing.meta == meta {
                Ok(false)
            } else {
                Err(AppendError::SessionConflict { session: meta.session })
            };
        }
        // The person's data key exists (durably) before anything of theirs is written.
        let key_id = self.inner.vault.key_for_user(&meta.user).map_err(|e| match e {
            KeyError::Erased(key_id) => AppendError::Erased { session: meta.session.clone(), key_id },
            other => AppendError::Key(other),
        })?;
        let number = *lock(&self.inner.next_session_number);
        let payload = records::session_payload(&meta);
        if payload.len() > SESSION_META_BYTES_MAX {
            return Err(AppendError::Invalid {
                session: meta.session.clone(),
                reason: format!(
                    "session metadata of {} bytes, expected at most {SESSION_META_BYTES_MAX}",
                    payload.len()
                ),
            });
        }
        let mut bytes = Vec::new();
        frame::write(&mut bytes, &FrameHeader::new(FrameKind::Session, number), &payload);
        let row = crate::index::SessionRow { number, meta: meta.clone(), progress: Progress::default() };
        self.submit(Write {
            journal: bytes.clone(),
            segment: vec![SegmentFrame { bytes, block: None }],
            row: (meta.session.clone(), row),
            journal_covers: None,
        })?;
        *lock(&self.inner.next_session_number) = number + 1;
        let id = meta.session.clone();
        let session = Session {
            number,
            id: id.clone(),
            meta: Arc::new(meta),
            state: Mutex::new(SessionState { key_id: Some(key_id), ..SessionState::default() }),
        };
        sessions.insert(id, Arc::new(session));
        Ok(true)
    }

    /// Appends events to a session; returns once they are durable (in the default sync mode).
    pub fn append(&self, session: &str, events: &[Event]) -> Result<Ack, AppendError> {
        self.append_batch(Batch { session, events, batch_id: None, expected_seq: None })
    }

    /// Appends a batch, with its optional batch id and expected sequence number.
    pub fn append_batch(&self, batch: Batch<'_>) -> Result<Ack, AppendError> {
        let session = self
            .session(batch.session)
            .ok_or_else(|| AppendError::UnknownSession(batch.session.to_owned()))?;
        let mut state = lock(&session.state);
        if let Some(id) = batch.batch_id
            && let Some(&(_, seq_first, events)) = state.progress.recent_batches.iter().find(|r| r.0 == id)
        {
            return Ok(Ack { seq_first, events, duplicate: true });
        }
        if let Some(expected) = batch.expected_seq
            && expected != state.next_seq
        {
            return Err(AppendError::Conflict {
                session: session.id.clone(),
                expected,
                found: state.next_seq,
            });
        }
        // Keys typed into secure fields never reach the log with their text, nor printable ones
        // with their identity (DESIGN.md "Event model"); the journal frame is encoded from these.
        let redacted: Option<Vec<Event>> = batch
            .events
            .iter()
            .any(Event::needs_redaction)
            .then(|| batch.events.iter().map(|e| e.redacted().unwrap_or_else(|| e.clone())).collect());
        let batch = Batch { events: redacted.as_deref().unwrap_or(batch.events), ..batch };
        let n = batch.events.len();
        let seq_first = state.next_seq;
        if n == 0 {
            return Ok(Ack { seq_first, events: 0, duplicate: false });
        }
        if n > BLOCK_EVENTS_MAX {
            return Err(AppendError::Invalid {
                session: session.id.clone(),
                reason: format!("a batch holds at most {BLOCK_EVENTS_MAX} events, found {n}"),
            });
        }
        let key = self.session_key(&session, &mut state)?;
        let batch_id = batch.batch_id.unwrap_or(0);
        let plan = self.plan(&session, &state, batch.events, batch_id, &key)?;

        let mut progress = state.progress.clone();
        let (t_min, t_max) = t_range(batch.events);
        progress.t_min_us = Some(progress.t_min_us.map_or(t_min, |t| t.min(t_min)));
        progress.t_max_us = Some(progress.t_max_us.map_or(t_max, |t| t.max(t_max)));
        progress.sealed_events += plan.sealed_events;
        progress.next_block += plan.blocks.len() as u32;
        progress.sealed_bytes += plan.blocks.iter().map(|b| b.bytes.len() as u64).sum::<u64>();
        if batch.batch_id.is_some() {
            if progress.recent_batches.len() == RECENT_BATCHES_MAX {
                progress.recent_batches.remove(0);
            }
            progress.recent_batches.push((batch_id, seq_first, n as u64));
        }
        let row = crate::index::SessionRow {
            number: session.number,
            meta: (*session.meta).clone(),
            progress: progress.clone(),
        };
        let end_seq = seq_first + n as u64;
        self.submit(Write {
            journal: plan.journal,
            segment: plan.blocks,
            row: (session.id.clone(), row),
            journal_covers: Some((session.number, end_seq)),
        })?;

        // Durable: make it visible.
        let before = state.open.bytes();
        match plan.open {
            NextOpen::Append(block) => state.open.push(block, n),
            NextOpen::Replace(open) => state.open = open,
        }
        state.next_seq = end_seq;
        state.progress = progress;
        self.inner.track_open(&session.id, &mut state, before, plan.sealed_events > 0);
        drop(state);
        self.relieve();
        Ok(Ack { seq_first, events: n as u64, duplicate: false })
    }

    /// Seals the oldest open blocks while open blocks take more than `memory_bytes_max`, or while
    /// more than `journal_files_max` closed journal files wait on them.
    pub(crate) fn relieve(&self) {
        let options = &self.inner.options;
        let over_memory = || self.inner.open_bytes.load(Ordering::Relaxed) > options.memory_bytes_max;
        let over_journal = self.inner.journal_files_live.load(Ordering::Relaxed) > options.journal_files_max;
        if !over_memory() && !over_journal {
            return;
        }
        if self.inner.relieving.swap(true, Ordering::Acquire) {
            return; // another thread is at it
        }
        // For the journal, seal the oldest quarter of the open blocks: they hold the oldest files.
        let mut journal_quota = if over_journal { lock(&self.inner.open_order).len().div_ceil(4) } else { 0 };
        while journal_quota > 0 || over_memory() {
            let Some((_, id)) = lock(&self.inner.open_order).iter().next().cloned() else { break };
            if self.seal_session(&id).is_err() {
                break; // poisoned or closed: the append path reports it
            }
            journal_quota = journal_quota.saturating_sub(1);
        }
        if over_journal {
            let _ = self.checkpoint();
        }
        self.inner.relieving.store(false, Ordering::Release);
    }

    /// Seals a session's open block now (at the end of a session, or to bound memory), so its
    /// events leave the journal at the next checkpoint.
    pub fn seal_session(&self, id: &str) -> Result<(), AppendError> {
        let session = self.session(id).ok_or_else(|| AppendError::UnknownSession(id.to_owned()))?;
        let mut state = lock(&session.state);
        if state.open.is_empty() {
            return Ok(());
        }
        let key = self.session_key(&session, &mut state)?;
        let seq_first = state.progress.sealed_events;
        let events = self.decode_open(&session, &state.open)?;
        let block = self.seal_frame(&session, state.progress.next_block, seq_first, &events, &key)?;
        let mut progress = state.progress.clone();
        progress.sealed_events += state.open.len() as u64;
        progress.next_block += 1;
        progress.sealed_bytes += block.bytes.len() as u64;
        let row = crate::index::SessionRow {
            number: session.number,
            meta: (*session.meta).clone(),
            progress: progress.clone(),
        };
        self.submit(Write {
            journal: Vec::new(),
            segment: vec![block],
            row: (session.id.clone(), row),
            journal_covers: None,
        })?;
        let before = state.open.bytes();
        state.open = OpenBlock::default();
        state.progress = progress;
        self.inner.track_open(&session.id, &mut state, before, true);
        Ok(())
    }

    pub(crate) fn with_encoder<T>(&self, f: impl FnOnce(&mut BlockEncoder) -> T) -> T {
        let mut encoder = lock(&self.inner.encoders)
            .pop()
            .unwrap_or_else(|| BlockEncoder::new(self.inner.options.zstd_level));
        let out = f(&mut encoder);
        lock(&self.inner.encoders).push(encoder);
        out
    }

    pub(crate) fn encode(&self, session: &Session, events: &[Event]) -> Result<Vec<u8>, AppendError> {
        let mut block = Vec::new();
        self.with_encoder(|e| e.encode(events, &mut block))
            .map_err(|e| AppendError::Invalid { session: session.id.clone(), reason: e.to_string() })?;
        Ok(block)
    }

    /// The data key the session's new frames are sealed with.
    pub(crate) fn session_key(
        &self,
        session: &Session,
        state: &mut SessionState,
    ) -> Result<Arc<DataKey>, AppendError> {
        if let Some(key_id) = state.erased {
            return Err(AppendError::Erased { session: session.id.clone(), key_id });
        }
        let erased = |key_id| AppendError::Erased { session: session.id.clone(), key_id };
        let key_id = match state.key_id {
            Some(id) => id,
            None => {
                let id = self.inner.vault.key_for_user(&session.meta.user).map_err(|e| match e {
                    KeyError::Erased(id) => erased(id),
                    other => AppendError::Key(other),
                })?;
                state.key_id = Some(id);
                id
            }
        };
        self.inner.vault.engine_key(key_id, "seal appended events").map_err(|e| match e {
            VaultError::Key(KeyError::Erased(id)) => erased(id),
            VaultError::Key(other) => AppendError::Key(other),
            VaultError::Audit(a) => self.audit_failed(a),
        })
    }

    pub(crate) fn seal_frame(
        &self,
        session: &Session,
        block_number: u32,
        seq_first: u64,
        events: &[Event],
        key: &DataKey,
    ) -> Result<SegmentFrame, AppendError> {
        let block = self.encode(session, events)?;
        let (t_min_us, t_max_us) = t_range(events);
        let mut header = FrameHeader::new(FrameKind::Block, session.number);
        header.block = block_number;
        header.event_count = events.len() as u32;
        header.t_min_us = t_min_us;
        header.t_max_us = t_max_us;
        let mut bytes = Vec::new();
        let payload = records::block_payload(seq_first, &block);
        check_frame_size(session, &payload)?;
        let payload = keys::seal(key, &mut header, payload, records::BLOCK_PREFIX_BYTES)?;
        frame::write(&mut bytes, &header, &payload);
        let loc = BlockLoc {
            segment: 0,
            offset: 0,
            frame_bytes: bytes.len() as u32,
            events: events.len() as u32,
            t_min_us,
            t_max_us,
            seq_first,
            frame: 0,
        };
        Ok(SegmentFrame { bytes, block: Some((session.number, block_number, loc)) })
    }

    /// Encodes the journal frame for a batch and every block the batch completes.
    fn plan(
        &self,
        session: &Session,
        state: &SessionState,
        events: &[Event],
        batch_id: u128,
        key: &DataKey,
    ) -> Result<Plan, AppendError> {
        let block = self.encode(session, events)?;
        let (t_min_us, t_max_us) = t_range(events);
        let mut header = FrameHeader::new(FrameKind::Batch, session.number);
        header.block = state.progress.next_block;
        header.event_count = events.len() as u32;
        header.t_min_us = t_min_us;
        header.t_max_us = t_max_us;
        let mut journal = Vec::new();
        let payload = records::batch_payload(state.next_seq, batch_id, &block);
        check_frame_size(session, &payload)?;
        let payload = keys::seal(key, &mut header, payload, records::BATCH_PREFIX_BYTES)?;
        frame::write(&mut journal, &header, &payload);

        let max = self.inner.options.block_events_max;
        let total = state.open.len() + events.len();
        if total < max {
            // The common case: the batch's journal block simply joins the open block.
            return Ok(Plan { journal, blocks: Vec::new(), sealed_events: 0, open: NextOpen::Append(block) });
        }
        let open = self.decode_open(session, &state.open)?;
        let mut blocks = Vec::new();
        let mut sealed = 0usize;
        let mut block_number = state.progress.next_block;
        let mut seq = state.progress.sealed_events;
        while total - sealed >= max {
            // Block `sealed..sealed + max` of the open events followed by the batch.
            let chunk = concat_range(&open, events, sealed, sealed + max);
            blocks.push(self.seal_frame(session, block_number, seq, &chunk, key)?);
            sealed += max;
            block_number += 1;
            seq += max as u64;
        }
        let rest = concat_range(&open, events, sealed, total);
        let next = self
            .with_encoder(|e| OpenBlock::from_events(e, &rest))
            .map_err(|reason| AppendError::Invalid { session: session.id.clone(), reason })?;
        Ok(Plan { journal, blocks, sealed_events: sealed as u64, open: NextOpen::Replace(next) })
    }

    pub(crate) fn decode_open(&self, session: &Session, open: &OpenBlock) -> Result<Vec<Event>, AppendError> {
        open.decode(&mut BlockDecoder::new())
            .map_err(|reason| AppendError::Invalid { session: session.id.clone(), reason })
    }
}

struct Plan {
    journal: Vec<u8>,
    blocks: Vec<SegmentFrame>,
    sealed_events: u64,
    open: NextOpen,
}

/// The open block after an append.
enum NextOpen {
    /// The batch's block joins it.
    Append(Vec<u8>),
    /// Blocks were sealed; this is what is left open.
    Replace(OpenBlock),
}

/// Events `from..to` of `a` followed by `b`, borrowed when they lie in one of them.
fn concat_range<'a>(a: &'a [Event], b: &'a [Event], from: usize, to: usize) -> std::borrow::Cow<'a, [Event]> {
    if to <= a.len() {
        a[from..to].into()
    } else if from >= a.len() {
        b[from - a.len()..to - a.len()].into()
    } else {
        let mut v = a[from..].to_vec();
        v.extend_from_slice(&b[..to - a.len()]);
        v.into()
    }
}

/// A frame holds at most `FRAME_BYTES_MAX`; a batch of huge strings can encode past it.
fn check_frame_size(session: &Session, payload: &[u8]) -> Result<(), AppendError> {
    let bytes = frame::HEADER_BYTES + payload.len() + keys::TAG_BYTES;
    if bytes > frame::FRAME_BYTES_MAX {
        return Err(AppendError::Invalid {
            session: session.id.clone(),
            reason: format!(
                "the batch encodes to {bytes} bytes, a frame holds at most {}; send it in smaller batches",
                frame::FRAME_BYTES_MAX
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracevault_codecs::EventKind;

    #[test]
    pub(crate) fn concat_range_borrows_when_it_can_and_joins_when_it_must() {
        let ev = |t_us| Event { t_us, kind: EventKind::Move { x: 0, y: 0 } };
        let a = [ev(0), ev(1)];
        let b = [ev(2), ev(3), ev(4)];
        assert!(matches!(concat_range(&a, &b, 0, 2), std::borrow::Cow::Borrowed(_)));
        assert!(matches!(concat_range(&a, &b, 3, 5), std::borrow::Cow::Borrowed(s) if s == [ev(3), ev(4)]));
        assert_eq!(&*concat_range(&a, &b, 1, 4), &[ev(1), ev(2), ev(3)]);
    }
}
