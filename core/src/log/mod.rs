//! The durable log: sessions appended in batches, acknowledged only once on disk, recovered intact
//! after any crash.
//!
//! # How an append becomes durable
//! Every append is written as one frame to the *journal* and acknowledged once the journal is
//! synced (group commit: one writer thread, one fdatasync for every append waiting). Its events
//! also join the session's *open block* in memory. When an open block reaches
//! `block_events_max`, it is sealed: encoded as one block and written as a frame to the current
//! *segment*. Segments are synced lazily, at each checkpoint; a journal file is deleted once every
//! event in it is in a synced segment. So a recorder's few-hundred-event batches are stored, in the
//! end, as 4096-event blocks (about 1.7 bytes per event on real input, not the 2.6 of
//! one block per batch), and an acknowledgement costs one fdatasync.
//!
//! # Recovery
//! Opening reads the last checkpoint (the index is complete and the segments durable up to it),
//! scans the segments after it, truncates a torn tail, and replays the journal: every batch whose
//! events are not yet in a sealed block goes back into its session's open block.

mod recovery;
mod vault;
mod writer;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::thread::JoinHandle;

use tracevault_codecs::block::{BlockDecoder, BlockEncoder, DEFAULT_ZSTD_LEVEL};
use tracevault_codecs::limits::BLOCK_EVENTS_MAX;
use tracevault_codecs::{Event, SessionMeta};

use crate::audit::{Access, Action, AuditLog, Decision, Role};
use crate::error::{AppendError, OpenError, ReadError};
use crate::frame::{self, FrameHeader, FrameKind, Parsed};
use crate::index::{BlockLoc, Index, Progress};
use crate::integrity::{self, FrameProof, SessionProof, SignedHead, VerifyReport};
use crate::keys::{self, DataKey, KeyError, KeySource, KeyStore};
use crate::merkle::{self, Hash};
use crate::records;
use crate::storage::{FsStorage, Storage};

use vault::{Vault, VaultError};

pub(crate) const SEGMENTS_DIR: &str = crate::files::SEGMENTS.dir;
pub(crate) const JOURNAL_DIR: &str = crate::files::JOURNAL.dir;
pub(crate) const CHECKPOINT_FILE: &str = "checkpoint";
pub(crate) const INDEX_FILE: &str = "index.redb";
pub(crate) const SEGMENT_EXT: &str = crate::files::SEGMENTS.extension;
pub(crate) const JOURNAL_EXT: &str = crate::files::JOURNAL.extension;

/// The largest session metadata (ids, device, labels) accepted, encoded.
pub const SESSION_META_BYTES_MAX: usize = 1 << 20;

/// How many of a session's latest batch ids are remembered, so a retried batch is acknowledged
/// again instead of written twice.
pub const RECENT_BATCHES_MAX: usize = 16;

/// When an acknowledged append is durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncMode {
    /// Acknowledge after fdatasync (the default): an acknowledged append survives any crash.
    Always,
    /// Sync at most every `n` milliseconds and acknowledge before the sync: a crash (of the
    /// machine, not just the process) can lose the appends of the last `n` ms.
    IntervalMs(u64),
    /// Never sync. Unsafe: for benchmarks only; a machine crash can lose anything not yet
    /// written back by the OS.
    NeverUnsafe,
}

/// How a log is run. Every bound carries its unit.
#[derive(Clone, Debug)]
pub struct LogOptions {
    pub sync: SyncMode,
    /// A segment is sealed and a new one started past this size.
    pub segment_bytes_max: u64,
    /// A journal file is closed and a new one started past this size.
    pub journal_bytes_max: u64,
    /// Events per sealed block.
    pub block_events_max: usize,
    pub zstd_level: i32,
    /// Segment bytes written between checkpoints.
    pub checkpoint_bytes: u64,
    /// The most appends one group commit takes.
    pub group_appends_max: usize,
    /// Memory for open blocks, all sessions together. Past it, the oldest open blocks are sealed
    /// early (smaller blocks, bounded memory).
    pub memory_bytes_max: u64,
    /// Closed journal files kept waiting for their sessions' open blocks to fill. Past it, the
    /// oldest open blocks are sealed early so the files can go.
    pub journal_files_max: u64,
    /// Where the master key and the signing key come from; `None`: [`KeySource::from_env`].
    pub keys: Option<KeySource>,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            sync: SyncMode::Always,
            segment_bytes_max: 64 << 20,
            journal_bytes_max: 64 << 20,
            block_events_max: 4096,
            zstd_level: DEFAULT_ZSTD_LEVEL,
            checkpoint_bytes: 64 << 20,
            group_appends_max: 4096,
            memory_bytes_max: 256 << 20,
            journal_files_max: 8,
            keys: None,
        }
    }
}

impl LogOptions {
    fn check(&self) -> Result<(), OpenError> {
        if self.block_events_max == 0 || self.block_events_max > BLOCK_EVENTS_MAX {
            return Err(OpenError::Options(format!(
                "block_events_max must be in 1..={BLOCK_EVENTS_MAX}, found {}",
                self.block_events_max
            )));
        }
        if self.segment_bytes_max < 4096 || self.journal_bytes_max < 4096 {
            return Err(OpenError::Options(
                "segment_bytes_max and journal_bytes_max must be at least 4096".into(),
            ));
        }
        if self.group_appends_max == 0 {
            return Err(OpenError::Options("group_appends_max must be at least 1".into()));
        }
        Ok(())
    }
}

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

/// What shredding a person did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shredded {
    /// The data keys erased.
    pub keys: Vec<u32>,
    /// The sessions whose events can no longer be read.
    pub sessions: Vec<String>,
    /// The audit entry recording it.
    pub audit_seq: u64,
}

/// Totals over the whole log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stats {
    pub sessions: u64,
    pub events: u64,
    /// Every file of the log: segments, journal, index, checkpoint, key store, integrity files,
    /// the audit log.
    pub bytes_on_disk: u64,
    pub segment_bytes: u64,
    pub journal_bytes: u64,
}

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

/// Where the writer sends an append's outcome: the locations of the blocks it sealed.
pub(crate) type Reply = SyncSender<Result<Vec<BlockLoc>, AppendError>>;

/// A session's open block, kept encoded: each append's events as the block already written to
/// the journal, a few bytes per event rather than a 72-byte [`Event`]; decoded only to seal the
/// block or to read it. This is what lets 100,000 sessions keep open blocks in bounded memory.
#[derive(Default)]
pub(crate) struct OpenBlock {
    /// Encoded blocks, in order, with their event counts.
    chunks: Vec<(Vec<u8>, usize)>,
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
    pub recent: Mutex<HashMap<u64, BTreeMap<u32, BlockLoc>>>,
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
    inner: Arc<Inner>,
    tx: Mutex<Option<Sender<Request>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Log {
    /// Opens (creating if needed) the log in `dir` on the local file system, recovering from any
    /// crash first.
    pub fn open(dir: &Path, options: LogOptions) -> Result<Log, OpenError> {
        if !dir.is_dir() {
            std::fs::create_dir_all(dir).map_err(|source| OpenError::Io { path: dir.to_owned(), source })?;
            // The new directory's own entry must be durable too, or a crash could lose the log.
            let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            std::fs::File::open(parent)
                .and_then(|f| f.sync_all())
                .map_err(|source| OpenError::Io { path: parent.to_owned(), source })?;
        }
        let mut options = options;
        let keys = match options.keys.take() {
            Some(k) => k,
            None => KeySource::from_env()?,
        };
        check_key_dir_outside(dir, &keys)?;
        options.keys = Some(keys);
        let index_path = dir.join(INDEX_FILE);
        let db = redb::Database::create(&index_path)
            .map_err(|e| OpenError::Index(format!("{}: {e}", index_path.display())))?;
        Log::open_with(Arc::new(FsStorage::new(dir)), db, options)
    }

    /// Opens the log on any storage, with its index in `db` (tests use an in-memory redb, which a
    /// crash loses: opening then rebuilds the index from the segments).
    pub fn open_with(
        storage: Arc<dyn Storage>,
        db: redb::Database,
        options: LogOptions,
    ) -> Result<Log, OpenError> {
        options.check()?;
        let keys = match &options.keys {
            Some(k) => k.clone(),
            None => KeySource::from_env()?,
        };
        let store = KeyStore::open(storage.clone(), keys.clone())?;
        let signing = keys.signing_key()?;
        let vault = Vault::new(store, AuditLog::open(storage.clone())?);
        let index = Index::open(db).map_err(OpenError::Index)?;
        let recovered = recovery::recover(storage.as_ref(), &index, &options, &vault)?;
        let inner = Arc::new(Inner {
            storage,
            options,
            sessions: RwLock::new(recovered.sessions),
            next_session_number: Mutex::new(recovered.next_session_number),
            index,
            recent: Mutex::new(recovered.recent),
            poisoned: Mutex::new(None),
            encoders: Mutex::new(Vec::new()),
            open_order: Mutex::new(BTreeSet::new()),
            open_bytes: AtomicU64::new(0),
            append_counter: AtomicU64::new(0),
            journal_files_live: AtomicU64::new(0),
            relieving: AtomicBool::new(false),
            vault,
            signing,
        });
        for session in inner.sessions.read().unwrap_or_else(|e| e.into_inner()).values() {
            let mut state = lock(&session.state);
            inner.track_open(&session.id, &mut state, 0, true);
        }
        let (tx, rx): (Sender<Request>, Receiver<Request>) = mpsc::channel();
        let writer = writer::Writer::new(inner.clone(), recovered.writer);
        let handle = std::thread::Builder::new()
            .name("tracevault-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|source| OpenError::Io { path: PathBuf::from("<writer thread>"), source })?;
        let log = Log { inner, tx: Mutex::new(Some(tx)), writer: Mutex::new(Some(handle)) };
        // Make what recovery found durable in the index, and start from a clean checkpoint.
        log.checkpoint().map_err(|e| OpenError::Io {
            path: PathBuf::from(CHECKPOINT_FILE),
            source: std::io::Error::other(e.to_string()),
        })?;
        Ok(log)
    }

    fn send(&self, request: Request) -> Result<(), AppendError> {
        if let Some(reason) = lock(&self.inner.poisoned).clone() {
            return Err(AppendError::Poisoned(reason));
        }
        let tx = lock(&self.tx);
        tx.as_ref().ok_or(AppendError::Closed)?.send(request).map_err(|_| AppendError::Closed)
    }

    fn submit(&self, write: Write) -> Result<Vec<BlockLoc>, AppendError> {
        let (reply, ack) = mpsc::sync_channel(1);
        self.send(Request::Write(Box::new(write), reply))?;
        ack.recv().map_err(|_| AppendError::Closed)?
    }

    fn session(&self, id: &str) -> Option<Arc<Session>> {
        self.inner.sessions.read().unwrap_or_else(|e| e.into_inner()).get(id).cloned()
    }

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
            other => AppendError::Key(other.to_string()),
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
    fn relieve(&self) {
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

    fn with_encoder<T>(&self, f: impl FnOnce(&mut BlockEncoder) -> T) -> T {
        let mut encoder = lock(&self.inner.encoders)
            .pop()
            .unwrap_or_else(|| BlockEncoder::new(self.inner.options.zstd_level));
        let out = f(&mut encoder);
        lock(&self.inner.encoders).push(encoder);
        out
    }

    fn encode(&self, session: &Session, events: &[Event]) -> Result<Vec<u8>, AppendError> {
        let mut block = Vec::new();
        self.with_encoder(|e| e.encode(events, &mut block))
            .map_err(|e| AppendError::Invalid { session: session.id.clone(), reason: e.to_string() })?;
        Ok(block)
    }

    /// The data key the session's new frames are sealed with.
    fn session_key(&self, session: &Session, state: &mut SessionState) -> Result<Arc<DataKey>, AppendError> {
        if let Some(key_id) = state.erased {
            return Err(AppendError::Erased { session: session.id.clone(), key_id });
        }
        let erased = |key_id| AppendError::Erased { session: session.id.clone(), key_id };
        let key_id = match state.key_id {
            Some(id) => id,
            None => {
                let id = self.inner.vault.key_for_user(&session.meta.user).map_err(|e| match e {
                    KeyError::Erased(id) => erased(id),
                    other => AppendError::Key(other.to_string()),
                })?;
                state.key_id = Some(id);
                id
            }
        };
        self.inner.vault.engine_key(key_id, "seal appended events").map_err(|e| match e {
            VaultError::Key(KeyError::Erased(id)) => erased(id),
            VaultError::Key(other) => AppendError::Key(other.to_string()),
            VaultError::Audit(a) => self.audit_failed(a),
        })
    }

    fn seal_frame(
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
        let payload = keys::seal(key, &mut header, payload, records::BLOCK_PREFIX_BYTES)
            .map_err(|e| AppendError::Key(e.to_string()))?;
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
        let payload = keys::seal(key, &mut header, payload, records::BATCH_PREFIX_BYTES)
            .map_err(|e| AppendError::Key(e.to_string()))?;
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

    fn decode_open(&self, session: &Session, open: &OpenBlock) -> Result<Vec<Event>, AppendError> {
        open.decode(&mut BlockDecoder::new())
            .map_err(|reason| AppendError::Invalid { session: session.id.clone(), reason })
    }

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
    fn audit_failed(&self, e: crate::audit::AuditError) -> AppendError {
        writer::poison(&self.inner, format!("access audit log: {e}"))
    }

    /// Records one read of `sessions` by `access` in the audit log, refusing roles that may not
    /// read and reads without a purpose (the refusal is recorded too).
    fn authorize(&self, access: &Access, action: Action, sessions: &[Arc<Session>]) -> Result<(), ReadError> {
        let ids: Vec<String> = sessions.iter().map(|s| s.id.clone()).collect();
        let keys: Vec<u32> = {
            let mut k: Vec<u32> = sessions.iter().filter_map(|s| lock(&s.state).key_id).collect();
            k.sort_unstable();
            k.dedup();
            k
        };
        let denied = if !access.role.may_read() {
            Some(format!("role {} may not read events", access.role.as_str()))
        } else if access.purpose.trim().is_empty() {
            Some("a read must state its purpose".to_owned())
        } else if access.actor.trim().is_empty() {
            Some("a read must name its actor".to_owned())
        } else {
            None
        };
        let decision = denied.clone().map_or(Decision::Allowed, Decision::Denied);
        self.inner
            .vault
            .record(access, action, ids, keys, decision)
            .map_err(|e| ReadError::Audit(self.audit_failed(e).to_string()))?;
        match denied {
            Some(reason) => Err(ReadError::Denied(reason)),
            None => Ok(()),
        }
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
        let session = self.session(id).ok_or_else(|| ReadError::UnknownSession(id.to_owned()))?;
        self.authorize(access, Action::Read, std::slice::from_ref(&session))?;
        self.blocks_of(&session, t_range)
    }

    /// Reads several sessions for one purpose (an export, a replay of many): one audit entry for
    /// all of them, then an iterator of blocks per session, in the order given.
    pub fn read_sessions(
        &self,
        access: &Access,
        action: Action,
        ids: &[&str],
    ) -> Result<Vec<SessionBlocks>, ReadError> {
        let sessions = ids
            .iter()
            .map(|id| self.session(id).ok_or_else(|| ReadError::UnknownSession((*id).to_owned())))
            .collect::<Result<Vec<_>, _>>()?;
        self.authorize(access, action, &sessions)?;
        sessions.iter().map(|s| self.blocks_of(s, 0..=u64::MAX)).collect()
    }

    fn blocks_of(&self, session: &Session, t_range: RangeInclusive<u64>) -> Result<SessionBlocks, ReadError> {
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
        })
    }

    /// Where a session's sealed blocks are: the index, and what was sealed since the checkpoint.
    fn sealed_locations(&self, session: &Session) -> Result<BTreeMap<u32, BlockLoc>, ReadError> {
        let mut locs: BTreeMap<u32, BlockLoc> =
            self.inner.index.blocks(session.number).map_err(ReadError::Index)?.into_iter().collect();
        if let Some(recent) = lock(&self.inner.recent).get(&session.number) {
            locs.extend(recent.iter().map(|(b, l)| (*b, *l)));
        }
        Ok(locs)
    }

    /// Crypto-shreds a person (admins only): their data keys are overwritten in place and synced,
    /// so none of their frames can be decrypted again, by anyone; everyone else's still can, and
    /// the log still verifies (the Merkle tree hashes ciphertext). Recorded in the access audit
    /// log (before the keys are destroyed) as the verifiable record of the erasure. Their
    /// sessions take no more events, and what was waiting in memory to be sealed is dropped.
    pub fn shred(&self, access: &Access, user: &str) -> Result<Shredded, AppendError> {
        let sessions: Vec<Arc<Session>> = self
            .inner
            .sessions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|s| s.meta.user == user)
            .cloned()
            .collect();
        let mut ids: Vec<String> = sessions.iter().map(|s| s.id.clone()).collect();
        ids.sort();
        // Every key of theirs: the slots naming them, and the keys their sessions seal with (a
        // damaged slot may no longer name its person).
        let session_keys: Vec<u32> = sessions.iter().filter_map(|s| lock(&s.state).key_id).collect();
        let mut keys = self.inner.vault.keys_of(user);
        keys.extend(&session_keys);
        keys.sort_unstable();
        keys.dedup();
        let denied = (access.role != Role::Admin)
            .then(|| format!("role {} may not erase people", access.role.as_str()));
        let decision = denied.clone().map_or(Decision::Allowed, Decision::Denied);
        let entry = self
            .inner
            .vault
            .record(access, Action::Shred, ids.clone(), keys, decision)
            .map_err(|e| self.audit_failed(e))?;
        if let Some(reason) = denied {
            return Err(AppendError::Denied(reason));
        }
        let erased =
            self.inner.vault.shred(user, &session_keys).map_err(|e| AppendError::Key(e.to_string()))?;
        tracing::info!(keys = ?erased, sessions = ids.len(), "crypto-shredded a person");
        // From here the erasure has happened: what follows tidies up, and its failure (which
        // poisons the log) does not undo or hide it.
        let key_id = erased.first().copied().unwrap_or(0);
        for session in &sessions {
            let mut state = lock(&session.state);
            let before = state.open.bytes();
            state.open = OpenBlock::default();
            state.erased = Some(state.key_id.unwrap_or(key_id));
            self.inner.track_open(&session.id, &mut state, before, true);
        }
        // Retire the journal files that held their open blocks.
        if self.send(Request::Erase(sessions.iter().map(|s| s.number).collect())).is_ok() {
            let _ = self.checkpoint();
        }
        Ok(Shredded { keys: erased, sessions: ids, audit_seq: entry.seq })
    }

    /// Rotates the master key (admins only): every data key is re-wrapped under a new master key,
    /// crash-safely, without touching the data. Returns the new key's fingerprint.
    pub fn rotate_master_key(&self, access: &Access) -> Result<String, AppendError> {
        let denied = (access.role != Role::Admin)
            .then(|| format!("role {} may not rotate keys", access.role.as_str()));
        let decision = denied.clone().map_or(Decision::Allowed, Decision::Denied);
        self.inner
            .vault
            .record(access, Action::RotateMasterKey, Vec::new(), Vec::new(), decision)
            .map_err(|e| self.audit_failed(e))?;
        if let Some(reason) = denied {
            return Err(AppendError::Denied(reason));
        }
        self.inner.vault.rotate().map_err(|e| AppendError::Key(e.to_string()))
    }

    /// The data keys in the key store (no key material), and the master key's fingerprint.
    pub fn keys(&self) -> (String, Vec<keys::KeyInfo>) {
        (self.inner.vault.master_fingerprint(), self.inner.vault.keys())
    }

    /// The public half of the key that signs the tree heads: what an auditor verifies with.
    pub fn public_key(&self) -> ed25519_dalek::VerifyingKey {
        self.inner.signing.verifying_key()
    }

    /// Proves a session's sealed blocks are in the log: checkpoints (so every sealed block is
    /// under a signed head), then gives each block frame's audit path to the newest head's root.
    pub fn prove_session(&self, id: &str) -> Result<SessionProof, ReadError> {
        let session = self.session(id).ok_or_else(|| ReadError::UnknownSession(id.to_owned()))?;
        self.checkpoint().map_err(|e| ReadError::Index(format!("checkpoint before proving: {e}")))?;
        let storage = self.inner.storage.as_ref();
        let (heads, _) = integrity::read_heads(storage)?;
        let head = heads.last().cloned().ok_or_else(|| ReadError::Index("no signed head yet".into()))?;
        let ledger = integrity::read_ledger(storage)?;
        let leaves = ledger.get(..head.tree_size as usize).ok_or_else(|| {
            ReadError::Index(format!(
                "the ledger holds {} leaves, the head covers {}",
                ledger.len(),
                head.tree_size
            ))
        })?;
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
            let path = merkle::inclusion_proof(leaves, loc.frame as usize).expect("frame inside the tree");
            frames.push(FrameProof {
                frame: loc.frame,
                block,
                segment: loc.segment,
                offset: loc.offset,
                frame_bytes: loc.frame_bytes,
                leaf: leaves[loc.frame as usize],
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
            integrity::check_frame(&proof.head, &public, f, &bytes).map_err(|reason| ReadError::Corrupt {
                path: path.clone(),
                offset: f.offset,
                reason,
            })?;
        }
        Ok(proof)
    }

    /// The consistency proof (RFC 6962 §2.1.2) that the log's first `old_size` frames are a prefix
    /// of its first `new_size`, from the ledger.
    pub fn consistency_proof(&self, old_size: u64, new_size: u64) -> Result<Vec<Hash>, ReadError> {
        let ledger = integrity::read_ledger(self.inner.storage.as_ref())?;
        let leaves = ledger.get(..new_size as usize).ok_or_else(|| {
            ReadError::Index(format!("the ledger holds {} leaves, not {new_size}", ledger.len()))
        })?;
        merkle::consistency_proof(leaves, old_size as usize)
            .ok_or_else(|| ReadError::Index(format!("no consistency proof from {old_size} to {new_size}")))
    }

    /// The signed tree heads, oldest first.
    pub fn signed_heads(&self) -> Result<Vec<SignedHead>, ReadError> {
        Ok(integrity::read_heads(self.inner.storage.as_ref())?.0)
    }

    /// Totals, with the bytes of every file of the log.
    pub fn stats(&self) -> Stats {
        let sessions = self.sessions();
        let storage = self.inner.storage.as_ref();
        let size = |dir: &str| -> u64 {
            storage
                .list(Path::new(dir))
                .unwrap_or_default()
                .iter()
                .filter_map(|n| storage.len(&Path::new(dir).join(n)).ok())
                .sum()
        };
        let segment_bytes = size(SEGMENTS_DIR);
        let journal_bytes = size(JOURNAL_DIR);
        let other =
            [CHECKPOINT_FILE, INDEX_FILE].iter().filter_map(|f| storage.len(Path::new(f)).ok()).sum::<u64>()
                + [keys::KEYSTORE_DIR, integrity::INTEGRITY_DIR, crate::audit::AUDIT.dir]
                    .iter()
                    .map(|d| size(d))
                    .sum::<u64>();
        Stats {
            sessions: sessions.len() as u64,
            events: sessions.iter().map(|s| s.events).sum(),
            bytes_on_disk: segment_bytes + journal_bytes + other,
            segment_bytes,
            journal_bytes,
        }
    }

    /// Checks the whole log with [`integrity::verify`] against this log's own public key: every
    /// frame whole, every footer, every frame's leaf, every signed head, and the audit log; names
    /// the first frame that fails. (An auditor without the keys uses `integrity::verify` with the
    /// published public key.)
    pub fn verify(&self) -> Result<VerifyReport, ReadError> {
        integrity::verify(self.inner.storage.as_ref(), &self.public_key())
    }

    /// Writes a checkpoint now: syncs the segments, makes the index durable, and deletes journal
    /// files whose events are all sealed.
    pub fn checkpoint(&self) -> Result<(), AppendError> {
        let (reply, ack) = mpsc::sync_channel(1);
        self.send(Request::Checkpoint(reply))?;
        ack.recv().map_err(|_| AppendError::Closed)?
    }

    /// Checkpoints and stops the writer. Open blocks stay in the journal and come back on open.
    pub fn close(self) -> Result<(), AppendError> {
        let result = self.checkpoint();
        self.shutdown();
        result
    }

    fn shutdown(&self) {
        lock(&self.tx).take();
        if let Some(handle) = lock(&self.writer).take() {
            let _ = handle.join();
        }
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        self.shutdown();
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

/// A key directory inside the data directory would put the keys in every copy of the data.
fn check_key_dir_outside(data: &Path, keys: &KeySource) -> Result<(), OpenError> {
    if keys.master.is_some() && keys.signing.is_some() {
        return Ok(());
    }
    let absolute = |p: &Path| {
        let p = std::path::absolute(p).unwrap_or_else(|_| p.to_owned());
        // Resolve symlinks where the path exists, so two spellings of one place compare equal.
        p.canonicalize().unwrap_or(p)
    };
    let (data, key_dir) = (absolute(data), absolute(&keys.dir));
    if key_dir.starts_with(&data) {
        return Err(OpenError::Keys(KeyError::Config(format!(
            "the key directory {} is inside the data directory {}: a copy of the data would carry the keys \
             that decrypt it; keep keys elsewhere (${})",
            key_dir.display(),
            data.display(),
            keys::ENV_KEY_DIR
        ))));
    }
    Ok(())
}

pub(crate) fn t_range(events: &[Event]) -> (u64, u64) {
    events.iter().fold((u64::MAX, 0), |(lo, hi), e| (lo.min(e.t_us), hi.max(e.t_us)))
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

pub(crate) fn segment_path(number: u64) -> PathBuf {
    crate::files::SEGMENTS.path(number)
}

/// One block of a session's events, with where it sits in the session.
#[derive(Clone, Debug, PartialEq)]
pub struct BlockEvents {
    /// The block's number in the session (for the open block: the number it will get when sealed).
    pub block: u32,
    /// The session-wide index of its first event.
    pub seq_first: u64,
    pub events: Vec<Event>,
}

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

    /// Reads, authenticates, decrypts and decodes sealed block `i` (0-based, in session order).
    pub fn read_sealed(&self, i: usize, decoder: &mut BlockDecoder) -> Result<BlockEvents, ReadError> {
        let (block, loc) = self.sealed[i];
        let path = segment_path(loc.segment);
        let corrupt = |reason: String| ReadError::Corrupt { path: path.clone(), offset: loc.offset, reason };
        let mut bytes = vec![0u8; loc.frame_bytes as usize];
        self.inner
            .storage
            .read_at(&path, loc.offset, &mut bytes)
            .map_err(|source| ReadError::Io { path: path.clone(), source })?;
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
            other => ReadError::Key(other.to_string()),
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

    /// The open block (events appended but not yet sealed), if it holds any.
    pub fn read_open(&self, decoder: &mut BlockDecoder) -> Result<Option<BlockEvents>, ReadError> {
        let mut events = Vec::new();
        for chunk in &self.open {
            decoder
                .decode_into(chunk, &mut events)
                .map_err(|e| ReadError::Index(format!("session {}: open block: {e}", self.number)))?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use tracevault_codecs::EventKind;

    #[test]
    fn concat_range_borrows_when_it_can_and_joins_when_it_must() {
        let ev = |t_us| Event { t_us, kind: EventKind::Move { x: 0, y: 0 } };
        let a = [ev(0), ev(1)];
        let b = [ev(2), ev(3), ev(4)];
        assert!(matches!(concat_range(&a, &b, 0, 2), std::borrow::Cow::Borrowed(_)));
        assert!(matches!(concat_range(&a, &b, 3, 5), std::borrow::Cow::Borrowed(s) if s == [ev(3), ev(4)]));
        assert_eq!(&*concat_range(&a, &b, 1, 4), &[ev(1), ev(2), ev(3)]);
    }
}
