//! Opening a log: from the last checkpoint, scan the segments and the journal, truncate a torn
//! tail, and rebuild what the crash lost. An acknowledged append is in the journal (synced before
//! the acknowledgement) or in a segment synced before its journal file was deleted, so it is
//! always found again; an append that was never acknowledged is either wholly there or wholly
//! gone, because a frame is checked whole (length, CRC32C, trailer) before anything in it is used.
//!
//! Five phases over one [`Recovery`] state, in order: where to start (here), the segments
//! (`segments.rs`), whose keys are erased (here), the journal (`journal.rs`), the files to go on
//! writing and the sessions as appends will find them (here).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};

use tracevault_codecs::{Event, SessionMeta};

use crate::error::OpenError;
use crate::files::{self, FrameFile, Stop};
use crate::frame::{self, FrameHeader, FrameKind};
use crate::index::{Checkpoint, Index, IndexBatch, Progress, SessionRow};
use crate::integrity::HASH_BYTES;
use crate::keys::SlotState;
use crate::layout::{
    CHECKPOINT as CHECKPOINT_FILE, HEADS as HEADS_PATH, INTEGRITY_DIR, JOURNAL, LEDGER as LEDGER_PATH,
    SEGMENTS,
};
use crate::merkle::{self, Frontier, Hash};
use crate::records;
use crate::storage::Storage;

mod journal;
mod segments;

use super::anchor::Anchor;
use super::options::{LogOptions, RECENT_BATCHES_MAX};
use super::state::{OpenBlock, RecentBlocks, Session, SessionState};
use super::vault::Vault;
use super::writer::WriterState;

pub(crate) struct Recovered {
    pub sessions: HashMap<String, Arc<Session>>,
    pub next_session_number: u64,
    pub recent: HashMap<u64, RecentBlocks>,
    pub writer: WriterState,
}

/// A session while it is being rebuilt.
struct Rebuild {
    id: String,
    meta: SessionMeta,
    progress: Progress,
    next_seq: u64,
    open: Vec<Event>,
    touched: bool,
    /// Its session record is in a segment (or in the index, which only holds what segments do).
    in_segments: bool,
    /// Its person's key was erased (the key id).
    erased: Option<u32>,
}

impl Rebuild {
    /// A session first seen in a session frame, of a segment (`in_segments`) or of the journal.
    fn found(meta: SessionMeta, in_segments: bool) -> Rebuild {
        Rebuild {
            id: meta.session.clone(),
            meta,
            progress: Progress::default(),
            next_seq: 0,
            open: Vec::new(),
            touched: true,
            in_segments,
            erased: None,
        }
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> OpenError + '_ {
    move |source| OpenError::Io { path: path.to_owned(), source }
}

fn corrupt(path: &Path, offset: u64, reason: impl Into<String>) -> OpenError {
    OpenError::Corrupt { path: path.to_owned(), offset, reason: reason.into() }
}

fn numbered(storage: &dyn Storage, kind: files::FileKind) -> Result<Vec<u64>, OpenError> {
    kind.numbers(storage).map_err(io_error(Path::new(kind.dir)))
}

fn remember_batch(progress: &mut Progress, id: u128, seq_first: u64, events: u64) {
    if id == 0 || progress.recent_batches.iter().any(|b| b.0 == id) {
        return;
    }
    if progress.recent_batches.len() == RECENT_BATCHES_MAX {
        progress.recent_batches.remove(0);
    }
    progress.recent_batches.push((id, seq_first, events));
}

fn widen(progress: &mut Progress, t_min: u64, t_max: u64) {
    progress.t_min_us = Some(progress.t_min_us.map_or(t_min, |t| t.min(t_min)));
    progress.t_max_us = Some(progress.t_max_us.map_or(t_max, |t| t.max(t_max)));
}

/// Reads a segment or journal file and checks its header. `Ok(None)` for a last file too short to
/// hold its header (created just before a crash, before the header was durable): it is removed,
/// and a fresh one is started.
fn read_frame_file(
    storage: &dyn Storage,
    kind: files::FileKind,
    number: u64,
    last: bool,
) -> Result<Option<Vec<u8>>, OpenError> {
    let path = kind.path(number);
    let bytes = storage.read_all(&path).map_err(io_error(&path))?.unwrap_or_default();
    match files::read_file_header(&bytes, kind.magic) {
        Ok(Some(n)) if n == number => Ok(Some(bytes)),
        Ok(Some(n)) => Err(corrupt(&path, 0, format!("header says number {n}, the name {number}"))),
        Ok(None) if last => {
            storage.remove(&path).map_err(io_error(&path))?;
            storage.sync_dir(Path::new(kind.dir)).map_err(io_error(&path))?;
            Ok(None)
        }
        Ok(None) => Err(corrupt(&path, 0, "file shorter than its header")),
        Err(c) => Err(corrupt(&path, 0, c.reason)),
    }
}

/// Where a scan stopped: at the end, fine; at a torn or damaged frame where `cuttable` (the tail
/// of the last file, written after the last durable point), truncated away; anywhere else, an
/// error naming the file and offset.
fn cut_tail(
    storage: &dyn Storage,
    path: &Path,
    bytes: &mut Vec<u8>,
    end: u64,
    stop: Stop,
    cuttable: bool,
) -> Result<(), OpenError> {
    match stop {
        Stop::End => Ok(()),
        Stop::Torn | Stop::Damage(_) if cuttable => {
            tracing::warn!(file = %path.display(), offset = end, "cutting a tail torn by a crash");
            storage.truncate(path, end).map_err(io_error(path))?;
            bytes.truncate(end as usize);
            Ok(())
        }
        Stop::Torn => Err(corrupt(path, end, "file ends inside a frame, but a later file exists")),
        Stop::Damage(c) => Err(corrupt(path, end, c.reason)),
    }
}

/// Recovers the log, checking its frames against the newest signed head in `anchor` (before
/// anything is written: a torn tail cut is all that happens first).
pub(crate) fn recover(
    storage: &dyn Storage,
    index: &Index,
    options: &LogOptions,
    vault: &Vault,
    anchor: &mut Anchor,
) -> Result<Recovered, OpenError> {
    let head_size = anchor.newest().map(|h| h.tree_size);
    let mut recovery = Recovery::start(storage, index, options, vault, head_size)?;
    recovery.scan_segments()?;
    anchor.check_frames(recovery.tree.size(), recovery.root_at_head)?;
    // How far each session's acknowledged batches go, as the progress records in the (signed)
    // segments say: the journal must bring every session at least that far.
    let acknowledged: Vec<(u64, u64)> = recovery
        .sessions
        .iter()
        .map(|(n, s)| (*n, s.progress.recent_batches.iter().map(|b| b.1 + b.2).max().unwrap_or(0)))
        .collect();
    recovery.mark_erased();
    recovery.replay_journal()?;
    if options.sync == super::options::SyncMode::Always {
        for (number, end) in acknowledged {
            let Some(s) = recovery.sessions.get_mut(&number) else { continue };
            if s.erased.is_some() || s.next_seq >= end {
                continue;
            }
            let reason = format!(
                "session {:?}: the signed progress records name acknowledged events up to {end}, the segments and \
                 the journal hold {}: journal files were deleted or cut",
                s.id, s.next_seq
            );
            anchor.found(crate::integrity::repaired::JOURNAL_MISSING, Path::new(JOURNAL.dir), reason)?;
            // Repairing: those events are gone; a recorder's retry of them must be taken again,
            // not acknowledged as a duplicate.
            let kept = s.next_seq;
            s.progress.recent_batches.retain(|b| b.1 + b.2 <= kept);
            s.touched = true;
        }
    }
    let chain_to = anchor.settle(storage)?;
    let files = recovery.open_files()?;
    let mut recovered = recovery.finish(files)?;
    recovered.writer.last_head = anchor.newest().cloned();
    recovered.writer.chain_to = chain_to;
    recovered.writer.repair = anchor.bits();
    Ok(recovered)
}

/// Recovery's state, phase to phase.
struct Recovery<'a> {
    storage: &'a dyn Storage,
    options: &'a LogOptions,
    vault: &'a Vault,
    /// The checkpoint the scan resumes from; `None`: from the first segment (the index rebuilt).
    start: Option<Checkpoint>,
    /// The checkpoint file's position, rebuilt index or not: everything before it was synced.
    durable: Option<Checkpoint>,
    tree: Frontier,
    /// Where the ledger is cut back to before the writer appends to it, if it is longer.
    ledger_keep: Option<u64>,
    /// The newest signed head's tree size, and the tree's root when it held that many frames.
    head_size: Option<u64>,
    root_at_head: Option<Hash>,
    /// Leaf hashes for the ledger, not yet written.
    ledger_pending: Vec<u8>,
    sessions: BTreeMap<u64, Rebuild>,
    /// What the index gains at the first checkpoint.
    pending: IndexBatch,
    /// Blocks sealed after the checkpoint, by session and block.
    recent: HashMap<u64, RecentBlocks>,
    next_frame: u64,
    /// The last segment, unsealed, to go on writing.
    current_segment: Option<FrameFile>,
    journal_numbers: Vec<u64>,
    /// Closed journal files: session -> the sequence number each holds events up to.
    journal_files: BTreeMap<u64, HashMap<u64, u64>>,
    current_journal: Option<(FrameFile, HashMap<u64, u64>)>,
}

/// The files recovery leaves open for the writer.
struct OpenFiles {
    segment: FrameFile,
    ledger: Box<dyn crate::storage::AppendFile>,
    heads: Box<dyn crate::storage::AppendFile>,
    journal: FrameFile,
    journal_covers: HashMap<u64, u64>,
}

impl<'a> Recovery<'a> {
    /// Phase 1: where to start. The checkpoint, if the index is complete through exactly it;
    /// otherwise the index is rebuilt from the first segment.
    fn start(
        storage: &'a dyn Storage,
        index: &'a Index,
        options: &'a LogOptions,
        vault: &'a Vault,
        head_size: Option<u64>,
    ) -> Result<Recovery<'a>, OpenError> {
        for dir in [SEGMENTS.dir, JOURNAL.dir, INTEGRITY_DIR] {
            storage.create_dir_all(Path::new(dir)).map_err(io_error(Path::new(dir)))?;
        }
        let ledger_path = Path::new(LEDGER_PATH);
        let ledger_len = match storage.len(ledger_path) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(io_error(ledger_path)(e)),
        };

        let checkpoint_path = Path::new(CHECKPOINT_FILE);
        // The checkpoint is a cache: one that does not read (damaged, or of an earlier version)
        // means starting from the first segment, checked against the signed heads all the same.
        let from_file = match storage.read_all(checkpoint_path).map_err(io_error(checkpoint_path))? {
            Some(b) => match Checkpoint::from_bytes(&b) {
                Ok(c) => Some(c),
                Err(c) => {
                    tracing::warn!(reason = %c.reason, "the checkpoint does not read: rebuilding the index");
                    None
                }
            },
            None => None,
        };
        let from_index = index.checkpoint().map_err(OpenError::Index)?;
        // Everything before the checkpoint file's position was synced: damage there is corruption to
        // report, never a torn tail to cut, even when the index is being rebuilt.
        let durable = from_file.clone();
        // The ledger must reach the checkpoint too (it is synced before it); if it does not, it and
        // the index are rebuilt from the segments.
        let start = match (from_file, from_index) {
            // A checkpoint past the newest signed head could not be checked against it.
            (Some(a), Some(b))
                if a == b
                    && ledger_len >= a.next_frame * HASH_BYTES as u64
                    && head_size.is_none_or(|s| a.next_frame <= s)
                    // A repair rechecks every frame, not just those after the checkpoint.
                    && options.repair.is_none() =>
            {
                Some(a)
            }
            _ => {
                index.clear().map_err(OpenError::Index)?;
                None
            }
        };
        let tree = match &start {
            Some(c) => Frontier::from_parts(c.next_frame, c.frontier.clone()).ok_or_else(|| {
                corrupt(Path::new(CHECKPOINT_FILE), 0, "tree frontier does not match its size")
            })?,
            None => Frontier::default(),
        };
        // Leaves past the checkpoint are recomputed from the segments below; the ledger is cut
        // back to it only once the open has checked everything (it is what `verify` names a frame
        // by, if the open refuses).
        let ledger_keep =
            (ledger_len > tree.size() * HASH_BYTES as u64).then(|| tree.size() * HASH_BYTES as u64);
        let ledger_pending: Vec<u8> = Vec::new();

        let mut sessions: BTreeMap<u64, Rebuild> = BTreeMap::new();
        if start.is_some() {
            index
                .for_each_session(|id, row| {
                    let next_seq = row.progress.sealed_events;
                    sessions.insert(
                        row.number,
                        Rebuild {
                            id,
                            meta: row.meta,
                            progress: row.progress,
                            next_seq,
                            open: Vec::new(),
                            touched: false,
                            in_segments: true,
                            erased: None,
                        },
                    );
                })
                .map_err(OpenError::Index)?;
        }

        let next_frame = start.as_ref().map_or(0, |c| c.next_frame);
        let root_at_head = (head_size == Some(tree.size())).then(|| tree.root());
        Ok(Recovery {
            storage,
            options,
            vault,
            start,
            durable,
            tree,
            ledger_keep,
            head_size,
            root_at_head,
            ledger_pending,
            sessions,
            pending: IndexBatch::default(),
            recent: HashMap::new(),
            next_frame,
            current_segment: None,
            journal_numbers: Vec::new(),
            journal_files: BTreeMap::new(),
            current_journal: None,
        })
    }

    /// Whose keys are erased: their journal batches cannot be (and need not be) read back.
    fn mark_erased(&mut self) {
        for s in self.sessions.values_mut() {
            if let Some((id, SlotState::Erased)) = self.vault.key_of(&s.meta.user) {
                s.erased = Some(id);
            }
        }
    }

    /// Phase 4: the files to go on writing.
    fn open_files(&mut self) -> Result<OpenFiles, OpenError> {
        let ledger_path = Path::new(LEDGER_PATH);
        if let Some(keep) = self.ledger_keep {
            self.storage.truncate(ledger_path, keep).map_err(io_error(ledger_path))?;
        }
        let mut segment = match self.current_segment.take() {
            Some(s) => s,
            None => FrameFile::create(self.storage, SEGMENTS, self.next_frame)
                .map_err(io_error(Path::new(SEGMENTS.dir)))?,
        };
        // A session whose record reached only the journal before a crash gets it written to the
        // segment again, before any of its blocks can be sealed there (and before the journal file
        // that holds it can be deleted).
        let journal_only: Vec<u64> =
            self.sessions.iter().filter(|(_, s)| !s.in_segments).map(|(n, _)| *n).collect();
        for number in journal_only {
            let s = self.sessions.get_mut(&number).expect("listed above");
            s.in_segments = true;
            let mut bytes = Vec::new();
            frame::write(
                &mut bytes,
                &FrameHeader::new(FrameKind::Session, number),
                &records::session_payload(&s.meta),
            );
            segment.append(&bytes, 1).map_err(io_error(&segment.path()))?;
            self.leaf(&bytes);
            self.next_frame += 1;
        }
        // The ledger and the signed heads files (read and checked by the anchor), to go on
        // appending to.
        let ledger = self.storage.open_append(ledger_path).map_err(io_error(ledger_path))?;
        let heads_path = Path::new(HEADS_PATH);
        let heads = self.storage.open_append(heads_path).map_err(io_error(heads_path))?;
        // The two files may have just been created: their names must survive a crash too.
        self.storage.sync_dir(Path::new(INTEGRITY_DIR)).map_err(io_error(Path::new(INTEGRITY_DIR)))?;
        let (journal, journal_covers) = match self.current_journal.take() {
            Some(j) => j,
            None => {
                let number = self.journal_numbers.last().map_or(0, |n| n + 1);
                let file = FrameFile::create(self.storage, JOURNAL, number)
                    .map_err(io_error(Path::new(JOURNAL.dir)))?;
                (file, HashMap::new())
            }
        };
        Ok(OpenFiles { segment, ledger, heads, journal, journal_covers })
    }

    /// Phase 5: the sessions, as appends will find them.
    fn finish(self, files: OpenFiles) -> Result<Recovered, OpenError> {
        let Recovery {
            options,
            vault,
            start,
            tree,
            ledger_pending,
            sessions,
            mut pending,
            recent,
            next_frame,
            journal_files,
            ..
        } = self;
        let OpenFiles { segment, ledger, heads, journal, journal_covers } = files;
        let next_session_number = sessions.keys().next_back().map_or(1, |n| n + 1);
        let mut sealed = HashMap::new();
        let mut live = HashMap::new();
        let mut encoder = tracevault_codecs::block::BlockEncoder::new(options.zstd_level);
        for (number, s) in sessions {
            // An erased session's journal entries never need sealing.
            sealed.insert(number, if s.erased.is_some() { u64::MAX } else { s.progress.sealed_events });
            if s.touched {
                pending.sessions.push((
                    s.id.clone(),
                    SessionRow { number, meta: s.meta.clone(), progress: s.progress.clone() },
                ));
            }
            let open = OpenBlock::from_events(&mut encoder, &s.open).map_err(|reason| {
                corrupt(
                    Path::new(JOURNAL.dir),
                    0,
                    format!("re-encoding session {:?}'s open block: {reason}", s.id),
                )
            })?;
            let key_id = match vault.key_of(&s.meta.user) {
                Some((id, SlotState::Live)) => Some(id),
                _ => None,
            };
            let state = SessionState {
                next_seq: s.next_seq,
                progress: s.progress,
                open,
                open_since: None,
                key_id: s.erased.or(key_id),
                erased: s.erased,
            };
            let session =
                Session { number, id: s.id.clone(), meta: Arc::new(s.meta), state: Mutex::new(state) };
            live.insert(s.id, Arc::new(session));
        }
        tracing::info!(
            sessions = live.len(),
            frames = next_frame,
            from_checkpoint = start.is_some(),
            "recovered the log"
        );
        Ok(Recovered {
            sessions: live,
            next_session_number,
            recent,
            writer: WriterState {
                segment,
                journal,
                next_frame,
                journal_files,
                journal_covers,
                sealed,
                pending,
                tree,
                ledger,
                ledger_pending,
                heads,
                last_head: None,
                chain_to: None,
                repair: 0,
            },
        })
    }
}

impl Recovery<'_> {
    /// Adds a frame to the tree and its leaf to the ledger's pending bytes, noting the root when
    /// the tree reaches the newest signed head's size.
    fn leaf(&mut self, frame: &[u8]) {
        let hash = merkle::leaf_hash(frame);
        self.tree.push(hash);
        self.ledger_pending.extend_from_slice(&hash);
        if self.head_size == Some(self.tree.size()) {
            self.root_at_head = Some(self.tree.root());
        }
    }
}
