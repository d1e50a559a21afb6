//! The writer thread: group commit. It takes every request waiting, writes their journal frames
//! with one append and one fdatasync, writes their sealed blocks to the segment, and only then
//! acknowledges them all. A failed write or sync poisons the log: after one, the page cache can
//! no longer be trusted to hold what was written, so nothing more is written until reopened.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use crate::error::AppendError;
use crate::files::FrameFile;
use crate::frame::{self, FrameHeader, FrameKind};
use crate::index::{BlockLoc, Checkpoint, IndexBatch, SessionRow};
use crate::integrity::{Commitments, Link, SignedHead};
use crate::merkle::{self, Frontier};
use crate::storage::AppendFile;

use crate::layout::{CHECKPOINT as CHECKPOINT_FILE, HEADS as HEADS_PATH, JOURNAL, LEDGER as LEDGER_PATH};

use super::options::SyncMode;
use super::state::{Inner, Reply, Request, Write, lock};

/// What recovery hands the writer: the files to go on with and what the journal holds.
pub(crate) struct WriterState {
    pub segment: FrameFile,
    pub journal: FrameFile,
    pub next_frame: u64,
    /// Journal files other than the current one, with (session -> end sequence) of their batches.
    pub journal_files: BTreeMap<u64, HashMap<u64, u64>>,
    /// The current journal file's (session -> end sequence).
    pub journal_covers: HashMap<u64, u64>,
    /// Events in sealed blocks, per session.
    pub sealed: HashMap<u64, u64>,
    /// Index additions not yet committed (recovered from the tail of the segments).
    pub pending: IndexBatch,
    /// The Merkle tree over every frame in the segments (its size is `next_frame`).
    pub tree: Frontier,
    /// The ledger of leaf hashes, and the leaves not yet written to it.
    pub ledger: Box<dyn AppendFile>,
    pub ledger_pending: Vec<u8>,
    /// The signed heads file, and the newest head in it.
    pub heads: Box<dyn AppendFile>,
    pub last_head: Option<SignedHead>,
    /// The head the next one chains to (the newest, or after a repair the last one known).
    pub chain_to: Option<Link>,
    /// For a repair: the bits the next head records (then 0).
    pub repair: u32,
}

pub(crate) struct Writer {
    inner: Arc<Inner>,
    state: WriterState,
    dirty_rows: HashMap<u64, (String, SessionRow)>,
    segment_bytes_since_checkpoint: u64,
    unsynced_since: Option<Instant>,
    /// The journal rolled since the last checkpoint: a checkpoint may free the old files.
    journal_rolled: bool,
}

impl Writer {
    pub fn new(inner: Arc<Inner>, state: WriterState) -> Writer {
        Writer {
            inner,
            state,
            dirty_rows: HashMap::new(),
            segment_bytes_since_checkpoint: 0,
            unsynced_since: None,
            journal_rolled: false,
        }
    }

    pub fn run(mut self, rx: Receiver<Request>) {
        let interval = match self.inner.options.sync {
            SyncMode::IntervalMs(ms) => Some(Duration::from_millis(ms)),
            _ => None,
        };
        loop {
            let first = match interval {
                Some(every) => match rx.recv_timeout(every) {
                    Ok(r) => r,
                    Err(RecvTimeoutError::Timeout) => {
                        self.sync_if_due(every);
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                },
                None => match rx.recv() {
                    Ok(r) => r,
                    Err(_) => break,
                },
            };
            let mut group = vec![first];
            while group.len() < self.inner.options.group_appends_max {
                match rx.try_recv() {
                    Ok(r) => group.push(r),
                    Err(_) => break,
                }
            }
            self.commit_group(group);
            if let Some(every) = interval {
                self.sync_if_due(every);
            }
        }
        // Closing: what was acknowledged in interval mode gets its sync now.
        if self.unsynced_since.is_some() && self.poisoned().is_none() {
            let _ = self.state.journal.file.sync();
        }
    }

    fn poisoned(&self) -> Option<String> {
        lock(&self.inner.poisoned).clone()
    }

    fn poison(&self, reason: String) -> AppendError {
        poison(&self.inner, reason)
    }

    fn sync_if_due(&mut self, every: Duration) {
        if let Some(since) = self.unsynced_since
            && since.elapsed() >= every
            && self.poisoned().is_none()
        {
            match self.state.journal.file.sync() {
                Ok(()) => self.unsynced_since = None,
                Err(e) => {
                    self.poison(format!("syncing the journal: {e}"));
                }
            }
        }
    }

    fn commit_group(&mut self, group: Vec<Request>) {
        let mut writes = Vec::new();
        let mut checkpoints = Vec::new();
        let mut erased = Vec::new();
        for request in group {
            match request {
                Request::Write(write, reply) => writes.push((write, reply)),
                Request::Checkpoint(reply) => checkpoints.push(reply),
                Request::Erase(numbers) => erased.push(numbers),
            }
        }
        if let Some(reason) = self.poisoned() {
            for (_, reply) in writes {
                let _ = reply.send(Err(AppendError::Poisoned(reason.clone())));
            }
            for reply in checkpoints {
                let _ = reply.send(Err(AppendError::Poisoned(reason.clone())));
            }
            return;
        }
        for numbers in erased {
            // Nothing of theirs will be sealed again: their journal entries hold nothing to keep.
            for n in numbers {
                self.state.sealed.insert(n, u64::MAX);
            }
        }
        let result = self.write_group(&writes);
        match result {
            Ok(locations) => {
                for ((_, reply), locs) in writes.into_iter().zip(locations) {
                    let _ = reply.send(Ok(locs));
                }
            }
            Err(e) => {
                let reason = e.to_string();
                for (_, reply) in writes {
                    let _ = reply.send(Err(AppendError::Poisoned(reason.clone())));
                }
            }
        }
        let checkpoint_due =
            self.segment_bytes_since_checkpoint >= self.inner.options.checkpoint_bytes || self.journal_rolled;
        if !checkpoints.is_empty() || checkpoint_due {
            let result = self.checkpoint();
            for reply in checkpoints {
                let _ =
                    reply.send(result.as_ref().map(|_| ()).map_err(|e| AppendError::Poisoned(e.to_string())));
            }
        }
    }

    /// Writes a group; on any failure, poisons the log and returns the error.
    fn write_group(&mut self, writes: &[(Box<Write>, Reply)]) -> Result<Vec<Vec<BlockLoc>>, AppendError> {
        let storage = self.inner.storage.clone();
        let inner = self.inner.clone();
        let io = |what: &str, path: &Path, e: std::io::Error| {
            poison(&inner, format!("{what} {}: {e}", path.display()))
        };

        // 1. The journal: one append, one sync.
        let mut journal = Vec::with_capacity(writes.iter().map(|(w, _)| w.journal.len()).sum());
        for (w, _) in writes {
            journal.extend_from_slice(&w.journal);
        }
        let journal_frames = writes.iter().filter(|(w, _)| !w.journal.is_empty()).count() as u64;
        if !journal.is_empty() {
            let j = &mut self.state.journal;
            if j.frames > 0 && j.file.len() + journal.len() as u64 > self.inner.options.journal_bytes_max {
                let next = j.number + 1;
                let old = j.number;
                j.roll(storage.as_ref(), next).map_err(|e| io("rolling the journal", &j.path(), e))?;
                let covers = std::mem::take(&mut self.state.journal_covers);
                self.state.journal_files.insert(old, covers);
                self.journal_rolled = true;
                self.inner
                    .journal_files_live
                    .store(self.state.journal_files.len() as u64, std::sync::atomic::Ordering::Relaxed);
            }
            let j = &mut self.state.journal;
            j.append(&journal, journal_frames).map_err(|e| io("writing", &j.path(), e))?;
            match self.inner.options.sync {
                SyncMode::Always => {
                    let j = &mut self.state.journal;
                    let started = Instant::now();
                    j.file.sync().map_err(|e| io("syncing", &j.path(), e))?;
                    self.inner.sync_times.record(started.elapsed());
                }
                SyncMode::IntervalMs(_) => {
                    self.unsynced_since.get_or_insert_with(Instant::now);
                }
                SyncMode::NeverUnsafe => {}
            }
            for (w, _) in writes {
                if let Some((session, end)) = w.journal_covers {
                    let e = self.state.journal_covers.entry(session).or_insert(0);
                    *e = (*e).max(end);
                }
            }
        }

        // 2. The segment: sealed blocks and session records; synced at the next checkpoint.
        let mut all_locs = Vec::with_capacity(writes.len());
        for (w, _) in writes {
            let mut locs = Vec::new();
            for frame in &w.segment {
                let (number, offset) = self.append_segment(&frame.bytes)?;
                if let Some((session, block, mut loc)) = frame.block {
                    loc.segment = self.state.segment.number;
                    loc.offset = offset;
                    loc.frame = number;
                    let sealed = self.state.sealed.entry(session).or_insert(0);
                    *sealed = (*sealed).max(loc.seq_first + u64::from(loc.events));
                    self.state.pending.blocks.push((session, block, loc));
                    lock(&self.inner.recent).entry(session).or_default().insert(block, loc);
                    locs.push(loc);
                }
            }
            self.dirty_rows.insert(w.row.1.number, w.row.clone());
            all_locs.push(locs);
        }
        Ok(all_locs)
    }

    /// Appends one frame to the segment, rolling to a new segment past the size limit, and adds
    /// it to the Merkle tree; returns its frame number and offset.
    fn append_segment(&mut self, bytes: &[u8]) -> Result<(u64, u64), AppendError> {
        let storage = self.inner.storage.clone();
        let s = &mut self.state.segment;
        if s.frames > 0 && s.file.len() + bytes.len() as u64 > self.inner.options.segment_bytes_max {
            s.roll(storage.as_ref(), self.state.next_frame)
                .map_err(|e| poison(&self.inner, format!("rolling {}: {e}", s.path().display())))?;
        }
        let s = &mut self.state.segment;
        let offset = s
            .append(bytes, 1)
            .map_err(|e| poison(&self.inner, format!("writing {}: {e}", s.path().display())))?;
        let number = self.state.next_frame;
        let leaf = merkle::leaf_hash(bytes);
        self.state.tree.push(leaf);
        self.state.ledger_pending.extend_from_slice(&leaf);
        self.state.next_frame += 1;
        self.segment_bytes_since_checkpoint += bytes.len() as u64;
        Ok((number, offset))
    }

    /// Syncs the segment, commits the index durably, records the checkpoint, and deletes the
    /// journal files whose events are all in synced segments.
    fn checkpoint(&mut self) -> Result<(), AppendError> {
        let storage = self.inner.storage.clone();
        let inner = self.inner.clone();
        // The recent batch ids of every session that took batches since the last checkpoint go
        // into the segment too: the journal that held them may be deleted below, and the index
        // is disposable.
        // (Rows recovered at open count too: their journal may go in this very checkpoint.)
        // Recovered rows first, then the rows written since: the newer one wins.
        let mut recent: BTreeMap<u64, &[(u128, u64, u64)]> = BTreeMap::new();
        for (_, row) in self.state.pending.sessions.iter().chain(self.dirty_rows.values()) {
            recent.insert(row.number, &row.progress.recent_batches);
        }
        let progress: Vec<Vec<u8>> = recent
            .into_iter()
            .filter(|(_, batches)| !batches.is_empty())
            .map(|(number, batches)| {
                let mut bytes = Vec::new();
                let payload = crate::records::progress_payload(batches);
                frame::write(&mut bytes, &FrameHeader::new(FrameKind::Progress, number), &payload);
                bytes
            })
            .collect();
        for bytes in &progress {
            self.append_segment(bytes)?;
        }
        let s = &mut self.state.segment;
        s.file.sync().map_err(|e| poison(&inner, format!("syncing {}: {e}", s.path().display())))?;
        // The leaves of the frames just made durable, then a signed head over them and over the
        // access audit log as it stands.
        if !self.state.ledger_pending.is_empty() {
            let ledger = &mut self.state.ledger;
            ledger
                .append(&self.state.ledger_pending)
                .and_then(|()| ledger.sync())
                .map_err(|e| poison(&inner, format!("writing {LEDGER_PATH}: {e}")))?;
            self.state.ledger_pending.clear();
        }
        let (audit_size, audit_root) = self.inner.vault.audit_head();
        let (keystore_changes, keystore_hash) = self.inner.vault.keystore_commitment();
        let commitments = Commitments {
            tree_size: self.state.next_frame,
            root: self.state.tree.root(),
            audit_size,
            audit_root,
            keystore_changes,
            keystore_hash,
        };
        let unchanged = self.state.last_head.as_ref().is_some_and(|h| h.commitments() == commitments);
        if !unchanged || self.state.repair != 0 {
            let prev = self.state.last_head.as_ref().map(SignedHead::link).or(self.state.chain_to);
            let head = SignedHead::sign(&self.inner.signing, prev, &commitments, self.state.repair);
            let heads = &mut self.state.heads;
            heads
                .append(&head.to_bytes())
                .and_then(|()| heads.sync())
                .map_err(|e| poison(&inner, format!("writing {HEADS_PATH}: {e}")))?;
            self.state.last_head = Some(head);
            self.state.repair = 0;
        }
        let s = &self.state.segment;
        let checkpoint = Checkpoint {
            segment: s.number,
            offset: s.file.len(),
            next_frame: self.state.next_frame,
            frontier: self.state.tree.hashes().to_vec(),
            head: self.state.last_head.as_ref().map(SignedHead::link),
        };
        let mut batch = std::mem::take(&mut self.state.pending);
        batch.sessions.extend(self.dirty_rows.drain().map(|(_, row)| row));
        self.inner
            .index
            .commit(&batch, &checkpoint)
            .map_err(|e| self.poison(format!("committing the index: {e}")))?;
        storage
            .write_atomic(Path::new(CHECKPOINT_FILE), &checkpoint.to_bytes())
            .map_err(|e| self.poison(format!("writing the checkpoint: {e}")))?;
        {
            let mut recent = lock(&self.inner.recent);
            for (session, block, _) in &batch.blocks {
                if let Some(blocks) = recent.get_mut(session) {
                    blocks.remove(*block);
                    if blocks.is_empty() {
                        recent.remove(session);
                    }
                }
            }
        }
        self.segment_bytes_since_checkpoint = 0;
        self.journal_rolled = false;

        // Journal files wholly sealed into the (now synced) segments can go.
        let sealed = &self.state.sealed;
        let done: Vec<u64> = self
            .state
            .journal_files
            .iter()
            .filter(|(_, covers)| covers.iter().all(|(s, end)| sealed.get(s).copied().unwrap_or(0) >= *end))
            .map(|(n, _)| *n)
            .collect();
        if !done.is_empty() {
            for n in &done {
                let path = self.state.journal.path_of(*n);
                storage
                    .remove(&path)
                    .map_err(|e| self.poison(format!("removing {}: {e}", path.display())))?;
                self.state.journal_files.remove(n);
            }
            self.inner
                .journal_files_live
                .store(self.state.journal_files.len() as u64, std::sync::atomic::Ordering::Relaxed);
            storage
                .sync_dir(Path::new(JOURNAL.dir))
                .map_err(|e| self.poison(format!("syncing {}: {e}", JOURNAL.dir)))?;
        }
        // When every event in the current journal file is sealed too (sessions ended, or the log
        // is idle), start a fresh file and delete this one, so a quiet log keeps no journal.
        let sealed = &self.state.sealed;
        let current_done =
            self.state.journal_covers.iter().all(|(s, end)| sealed.get(s).copied().unwrap_or(0) >= *end);
        if self.state.journal.frames > 0 && current_done {
            let old = self.state.journal.path();
            let next = self.state.journal.number + 1;
            let j = &mut self.state.journal;
            j.roll(storage.as_ref(), next)
                .map_err(|e| poison(&inner, format!("rolling {}: {e}", old.display())))?;
            self.state.journal_covers.clear();
            storage.remove(&old).map_err(|e| self.poison(format!("removing {}: {e}", old.display())))?;
            storage
                .sync_dir(Path::new(JOURNAL.dir))
                .map_err(|e| self.poison(format!("syncing {}: {e}", JOURNAL.dir)))?;
        }
        Ok(())
    }
}

/// Poisons the log (the first reason sticks) and returns the error appends get from now on.
pub(crate) fn poison(inner: &Inner, reason: String) -> AppendError {
    let mut p = lock(&inner.poisoned);
    if p.is_none() {
        tracing::error!(%reason, "the log is poisoned: no more writes until it is reopened");
        *p = Some(reason.clone());
    }
    AppendError::Poisoned(reason)
}
