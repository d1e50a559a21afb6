//! The log's state in memory: its sessions, their open blocks, what the writer thread is asked to
//! do, and the handle every other part of the log works through.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Sender, SyncSender};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;

use tracevault_codecs::block::{BlockDecoder, BlockEncoder};
use tracevault_codecs::limits::BLOCK_EVENTS_MAX;
use tracevault_codecs::{Event, SessionMeta};

use crate::error::AppendError;
use crate::index::{BlockLoc, Index, Progress};
use crate::storage::Storage;

use super::options::LogOptions;
use super::vault::Vault;

pub(crate) struct Session {
    pub number: u64,
    pub id: String,
    pub meta: Arc<SessionMeta>,
    pub state: Mutex<SessionState>,
}

#[derive(Default)]
pub(crate) struct SessionState {
    /// Events acknowledged.
    pub next_seq: u64,
    pub progress: Progress,
    /// The open block: events `progress.sealed_events..next_seq`, kept encoded.
    pub open: OpenBlock,
    /// When the open block got its first event (the log's append counter), while it has any.
    pub open_since: Option<u64>,
    /// The data key new frames are sealed with, once known.
    pub key_id: Option<u32>,
    /// The person was crypto-shredded: no appends, no reads.
    pub erased: Option<u32>,
}

/// A session's blocks sealed since the last checkpoint, in block order. A sorted list, not a map:
/// a session seals one block or a few between checkpoints, and a one-entry `BTreeMap` costs a
/// whole node (about 700 bytes), which with 100,000 short sessions was most of ingest's memory.
#[derive(Clone, Debug, Default)]
pub(crate) struct RecentBlocks(Vec<(u32, BlockLoc)>);

impl RecentBlocks {
    pub fn insert(&mut self, block: u32, loc: BlockLoc) {
        match self.0.binary_search_by_key(&block, |(b, _)| *b) {
            Ok(i) => self.0[i].1 = loc,
            Err(i) => self.0.insert(i, (block, loc)),
        }
    }

    pub fn remove(&mut self, block: u32) {
        self.0.retain(|(b, _)| *b != block);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &(u32, BlockLoc)> {
        self.0.iter()
    }
}

/// Where the writer sends an append's outcome: the locations of the blocks it sealed.
pub(crate) type Reply = SyncSender<Result<Vec<BlockLoc>, AppendError>>;

/// A session's open block, kept encoded: each append's events as the block already written to
/// the journal, a few bytes per event rather than a 72-byte [`Event`]; decoded only to seal the
/// block or to read it. This is what lets 100,000 sessions keep open blocks in bounded memory.
#[derive(Default)]
pub(crate) struct OpenBlock {
    /// Encoded blocks, in order, with their event counts.
    pub(crate) chunks: Vec<(Vec<u8>, usize)>,
    events: usize,
    bytes: usize,
}

impl OpenBlock {
    pub fn len(&self) -> usize {
        self.events
    }

    pub fn is_empty(&self) -> bool {
        self.events == 0
    }

    /// Memory held, in bytes.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn push(&mut self, mut block: Vec<u8>, events: usize) {
        if events == 0 {
            return;
        }
        block.shrink_to_fit();
        self.bytes += block.capacity();
        self.events += events;
        self.chunks.push((block, events));
    }

    /// Encodes `events` as the open block's content.
    pub fn from_events(encoder: &mut BlockEncoder, events: &[Event]) -> Result<OpenBlock, String> {
        let mut open = OpenBlock::default();
        for chunk in events.chunks(BLOCK_EVENTS_MAX) {
            let mut block = Vec::new();
            encoder.encode(chunk, &mut block).map_err(|e| e.to_string())?;
            open.push(block, chunk.len());
        }
        Ok(open)
    }

    pub fn decode(&self, decoder: &mut BlockDecoder) -> Result<Vec<Event>, String> {
        let mut events = Vec::with_capacity(self.events);
        for (block, _) in &self.chunks {
            decoder.decode_into(block, &mut events).map_err(|e| format!("open block: {e}"))?;
        }
        Ok(events)
    }
}

/// A request to the writer thread.
pub(crate) enum Request {
    Write(Box<Write>, Reply),
    Checkpoint(SyncSender<Result<(), AppendError>>),
    /// These sessions were erased: their journal entries need never be sealed.
    Erase(Vec<u64>),
}

/// What one append or session creation writes.
pub(crate) struct Write {
    /// One journal frame.
    pub journal: Vec<u8>,
    /// Frames for the segment: sealed blocks, or a session record.
    pub segment: Vec<SegmentFrame>,
    /// The session's state after this write, for the index.
    pub row: (String, crate::index::SessionRow),
    /// For a batch: (session, end sequence number) that the journal frame holds events up to.
    pub journal_covers: Option<(u64, u64)>,
}

pub(crate) struct SegmentFrame {
    pub bytes: Vec<u8>,
    /// For a block: (session, block number, location without segment/offset filled in).
    pub block: Option<(u64, u32, BlockLoc)>,
}

pub(crate) struct Inner {
    pub storage: Arc<dyn Storage>,
    pub options: LogOptions,
    pub sessions: RwLock<HashMap<String, Arc<Session>>>,
    pub next_session_number: Mutex<u64>,
    pub index: Index,
    /// Blocks sealed since the last checkpoint, not yet in the index: session -> block -> loc.
    pub recent: Mutex<HashMap<u64, RecentBlocks>>,
    pub poisoned: Mutex<Option<String>>,
    pub encoders: Mutex<Vec<BlockEncoder>>,
    /// Open blocks by age: (open_since, session id), oldest first.
    pub open_order: Mutex<BTreeSet<(u64, String)>>,
    /// Estimated bytes of every open block.
    pub open_bytes: AtomicU64,
    pub append_counter: AtomicU64,
    /// Closed journal files not yet deleted (published by the writer).
    pub journal_files_live: AtomicU64,
    /// One thread at a time seals for the budget.
    pub relieving: AtomicBool,
    /// Keys and the access audit log.
    pub vault: Vault,
    /// Signs the Merkle tree heads at each checkpoint.
    pub signing: ed25519_dalek::SigningKey,
    /// What the open repaired, if it was a repair.
    pub repaired: super::Repaired,
    /// One push to a witness at a time (each appends to the cosignatures file).
    pub cosigning: Mutex<()>,
    /// The journal syncs' durations.
    pub sync_times: super::timings::SyncTimes,
    /// The Merkle tree's complete subtrees, for audit paths that do not hash the whole tree.
    pub subtrees: Mutex<crate::merkle::Subtrees>,
}

impl Inner {
    /// Accounts for a session's open block after it changed from `before` bytes; `renewed` when
    /// its old events were sealed (the block now open is a new one).
    pub fn track_open(&self, id: &str, state: &mut SessionState, before: usize, renewed: bool) {
        let after = state.open.bytes();
        if after >= before {
            self.open_bytes.fetch_add((after - before) as u64, Ordering::Relaxed);
        } else {
            self.open_bytes.fetch_sub((before - after) as u64, Ordering::Relaxed);
        }
        let mut order = lock(&self.open_order);
        let empty = state.open.is_empty();
        if (renewed || empty)
            && let Some(since) = state.open_since.take()
        {
            order.remove(&(since, id.to_owned()));
        }
        if !empty && state.open_since.is_none() {
            let since = self.append_counter.fetch_add(1, Ordering::Relaxed);
            state.open_since = Some(since);
            order.insert((since, id.to_owned()));
        }
    }
}

/// The durable log. Cheap to share across threads (`&Log` is enough to append).
pub struct Log {
    pub(crate) inner: Arc<Inner>,
    pub(crate) tx: Mutex<Option<Sender<Request>>>,
    pub(crate) writer: Mutex<Option<JoinHandle<()>>>,
    /// The data directory's `LOCK`, held while the log is open (none for other storages).
    pub(crate) _lock: Option<Arc<std::fs::File>>,
}

pub(crate) use crate::sync::lock;

impl Log {
    pub(crate) fn send(&self, request: Request) -> Result<(), AppendError> {
        if let Some(reason) = lock(&self.inner.poisoned).clone() {
            return Err(AppendError::Poisoned(reason));
        }
        let tx = lock(&self.tx);
        tx.as_ref().ok_or(AppendError::Closed)?.send(request).map_err(|_| AppendError::Closed)
    }

    pub(crate) fn submit(&self, write: Write) -> Result<Vec<BlockLoc>, AppendError> {
        let (reply, ack) = mpsc::sync_channel(1);
        self.send(Request::Write(Box::new(write), reply))?;
        ack.recv().map_err(|_| AppendError::Closed)?
    }

    pub(crate) fn session(&self, id: &str) -> Option<Arc<Session>> {
        self.inner.sessions.read().unwrap_or_else(|e| e.into_inner()).get(id).cloned()
    }

    /// Writes a checkpoint now: syncs the segments, makes the index durable, and deletes journal
    /// files whose events are all sealed.
    pub fn checkpoint(&self) -> Result<(), AppendError> {
        let (reply, ack) = mpsc::sync_channel(1);
        self.send(Request::Checkpoint(reply))?;
        ack.recv().map_err(|_| AppendError::Closed)?
    }
}

pub(crate) fn t_range(events: &[Event]) -> (u64, u64) {
    events.iter().fold((u64::MAX, 0), |(lo, hi), e| (lo.min(e.t_us), hi.max(e.t_us)))
}

pub(crate) fn segment_path(number: u64) -> PathBuf {
    crate::layout::SEGMENTS.path(number)
}
