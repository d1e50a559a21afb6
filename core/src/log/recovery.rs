//! Opening a log: from the last checkpoint, scan the segments and the journal, truncate a torn
//! tail, and rebuild what the crash lost. An acknowledged append is in the journal (synced before
//! the acknowledgement) or in a segment synced before its journal file was deleted, so it is
//! always found again; an append that was never acknowledged is either wholly there or wholly
//! gone, because a frame is checked whole (length, CRC32C, trailer) before anything in it is used.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};

use tracevault_codecs::block::BlockDecoder;
use tracevault_codecs::{Event, SessionMeta};

use crate::error::OpenError;
use crate::files::{self, FILE_HEADER_BYTES, FrameFile, Stop};
use crate::frame::{self, FrameHeader, FrameKind};
use crate::index::{BlockLoc, Checkpoint, Index, IndexBatch, Progress, SessionRow};
use crate::integrity::{self, HASH_BYTES};
use crate::keys::{self, KeyError, SlotState};
use crate::layout::{
    CHECKPOINT as CHECKPOINT_FILE, HEADS as HEADS_PATH, INTEGRITY_DIR, JOURNAL, LEDGER as LEDGER_PATH,
    SEGMENTS,
};
use crate::merkle::{self, Frontier};
use crate::records;
use crate::storage::Storage;

use super::options::{LogOptions, RECENT_BATCHES_MAX};
use super::state::{OpenBlock, Session, SessionState, segment_path};
use super::vault::{Vault, VaultError};
use super::writer::WriterState;

pub(crate) struct Recovered {
    pub sessions: HashMap<String, Arc<Session>>,
    pub next_session_number: u64,
    pub recent: HashMap<u64, BTreeMap<u32, BlockLoc>>,
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

pub(crate) fn recover(
    storage: &dyn Storage,
    index: &Index,
    options: &LogOptions,
    vault: &Vault,
) -> Result<Recovered, OpenError> {
    for dir in [SEGMENTS.dir, JOURNAL.dir, INTEGRITY_DIR] {
        storage.create_dir_all(Path::new(dir)).map_err(io_error(Path::new(dir)))?;
    }
    let ledger_path = Path::new(LEDGER_PATH);
    let ledger_len = match storage.len(ledger_path) {
        Ok(n) => n,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(io_error(ledger_path)(e)),
    };

    // 1. Where to start: the checkpoint, if the index is complete through exactly it; otherwise
    //    the index is rebuilt from the first segment.
    let checkpoint_path = Path::new(CHECKPOINT_FILE);
    let from_file = storage
        .read_all(checkpoint_path)
        .map_err(io_error(checkpoint_path))?
        .map(|b| Checkpoint::from_bytes(&b).map_err(|c| corrupt(checkpoint_path, 0, c.reason)))
        .transpose()?;
    let from_index = index.checkpoint().map_err(OpenError::Index)?;
    // Everything before the checkpoint file's position was synced: damage there is corruption to
    // report, never a torn tail to cut, even when the index is being rebuilt.
    let durable = from_file.clone();
    // The ledger must reach the checkpoint too (it is synced before it); if it does not, it and
    // the index are rebuilt from the segments.
    let start = match (from_file, from_index) {
        (Some(a), Some(b)) if a == b && ledger_len >= a.next_frame * HASH_BYTES as u64 => Some(a),
        _ => {
            index.clear().map_err(OpenError::Index)?;
            None
        }
    };
    let mut tree = match &start {
        Some(c) => Frontier::from_parts(c.next_frame, c.frontier.clone())
            .ok_or_else(|| corrupt(Path::new(CHECKPOINT_FILE), 0, "tree frontier does not match its size"))?,
        None => Frontier::default(),
    };
    // Leaves past the checkpoint are recomputed from the segments below.
    let ledger_keep = tree.size() * HASH_BYTES as u64;
    if ledger_len > ledger_keep {
        storage.truncate(ledger_path, ledger_keep).map_err(io_error(ledger_path))?;
    }
    let mut ledger_pending: Vec<u8> = Vec::new();

    let mut sessions: BTreeMap<u64, Rebuild> = BTreeMap::new();
    if start.is_some() {
        for (id, row) in index.sessions().map_err(OpenError::Index)? {
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
        }
    }

    // 2. The segments after the checkpoint.
    let segments = numbered(storage, SEGMENTS)?;
    let mut pending = IndexBatch::default();
    let mut recent: HashMap<u64, BTreeMap<u32, BlockLoc>> = HashMap::new();
    let mut next_frame = start.as_ref().map_or(0, |c| c.next_frame);
    let mut current_segment: Option<FrameFile> = None;
    let first_scanned = match &start {
        Some(c) => {
            if !segments.contains(&c.segment) {
                let path = segment_path(c.segment);
                return Err(corrupt(&path, 0, "the checkpoint's segment is missing"));
            }
            c.segment
        }
        None => 0,
    };
    let to_scan: Vec<u64> = segments.iter().copied().filter(|n| *n >= first_scanned).collect();
    for (i, &number) in to_scan.iter().enumerate() {
        let last = i + 1 == to_scan.len();
        let path = segment_path(number);
        let Some(mut bytes) = read_frame_file(storage, SEGMENTS, number, last)? else { break };
        let resume_at = match &start {
            Some(c) if c.segment == number => c.offset as usize,
            _ => {
                if number != next_frame {
                    return Err(corrupt(
                        &path,
                        0,
                        format!("segment starts at frame {number}, expected {next_frame}"),
                    ));
                }
                FILE_HEADER_BYTES
            }
        };
        if resume_at > bytes.len() {
            return Err(corrupt(
                &path,
                bytes.len() as u64,
                format!("segment ends before the checkpoint offset {resume_at}"),
            ));
        }
        let files::Scan { frames, end, stop } = files::scan(&bytes, resume_at);
        let frame_count = frames.len();
        let stop_is_end = matches!(stop, Stop::End);
        let mut sealed = false;
        for (k, (offset, frame)) in frames.iter().enumerate() {
            let h = frame.header;
            match h.kind {
                FrameKind::Session => {
                    let meta = records::parse_session(frame.payload)
                        .map_err(|c| corrupt(&path, *offset, c.reason))?;
                    sessions.entry(h.session).or_insert_with(|| Rebuild::found(meta, true));
                    leaf(&mut tree, &mut ledger_pending, frame.bytes);
                    next_frame += 1;
                }
                FrameKind::Block => {
                    let (seq_first, _) =
                        records::parse_block(frame.payload).map_err(|c| corrupt(&path, *offset, c.reason))?;
                    let Some(s) = sessions.get_mut(&h.session) else {
                        return Err(corrupt(
                            &path,
                            *offset,
                            format!("block of session {} before its session record", h.session),
                        ));
                    };
                    let loc = BlockLoc {
                        segment: number,
                        offset: *offset,
                        frame_bytes: frame.bytes.len() as u32,
                        events: h.event_count,
                        t_min_us: h.t_min_us,
                        t_max_us: h.t_max_us,
                        seq_first,
                        frame: next_frame,
                    };
                    s.progress.sealed_events =
                        s.progress.sealed_events.max(seq_first + u64::from(h.event_count));
                    s.progress.next_block = s.progress.next_block.max(h.block + 1);
                    s.progress.sealed_bytes += frame.bytes.len() as u64;
                    if h.event_count > 0 {
                        widen(&mut s.progress, h.t_min_us, h.t_max_us);
                    }
                    s.next_seq = s.progress.sealed_events;
                    s.touched = true;
                    pending.blocks.push((h.session, h.block, loc));
                    recent.entry(h.session).or_default().insert(h.block, loc);
                    leaf(&mut tree, &mut ledger_pending, frame.bytes);
                    next_frame += 1;
                }
                FrameKind::Footer => {
                    if k + 1 != frame_count || !stop_is_end {
                        return Err(corrupt(&path, *offset, "footer before the end of the segment"));
                    }
                    let frames_before = next_frame - number;
                    files::check_footer(&bytes, *offset, frame, frames_before)
                        .map_err(|c| corrupt(&path, *offset, c.reason))?;
                    sealed = true;
                }
                FrameKind::Progress => {
                    let recent = records::parse_progress(frame.payload)
                        .map_err(|c| corrupt(&path, *offset, c.reason))?;
                    let Some(s) = sessions.get_mut(&h.session) else {
                        return Err(corrupt(
                            &path,
                            *offset,
                            format!("progress of session {} before its session record", h.session),
                        ));
                    };
                    s.progress.recent_batches = recent;
                    s.touched = true;
                    leaf(&mut tree, &mut ledger_pending, frame.bytes);
                    next_frame += 1;
                }
                FrameKind::Batch | FrameKind::Audit => {
                    return Err(corrupt(&path, *offset, format!("a {:?} frame inside a segment", h.kind)));
                }
            }
        }
        drop(frames);
        let before_durable =
            durable.as_ref().is_some_and(|c| number < c.segment || (number == c.segment && end < c.offset));
        cut_tail(storage, &path, &mut bytes, end, stop, last && !before_durable)?;
        if !last && !sealed {
            return Err(corrupt(&path, end, "segment is not sealed, but a later segment exists"));
        }
        if last && !sealed {
            let frames = next_frame - number;
            current_segment =
                Some(FrameFile::resume(storage, SEGMENTS, number, &bytes, frames).map_err(io_error(&path))?);
        }
    }

    // Whose keys are erased: their journal batches cannot be (and need not be) read back.
    for s in sessions.values_mut() {
        if let Some((id, SlotState::Erased)) = vault.key_of(&s.meta.user) {
            s.erased = Some(id);
        }
    }

    // 3. The journal: every batch not yet in a sealed block goes back into its open block.
    let journal_numbers = numbered(storage, JOURNAL)?;
    let mut journal_files: BTreeMap<u64, HashMap<u64, u64>> = BTreeMap::new();
    let mut current_journal: Option<(FrameFile, HashMap<u64, u64>)> = None;
    let mut decoder = BlockDecoder::new();
    for (i, &number) in journal_numbers.iter().enumerate() {
        let last = i + 1 == journal_numbers.len();
        let path = JOURNAL.path(number);
        let Some(mut bytes) = read_frame_file(storage, JOURNAL, number, last)? else { break };
        let files::Scan { frames, end, stop } = files::scan(&bytes, FILE_HEADER_BYTES);
        let frame_count = frames.len() as u64;
        let mut covers: HashMap<u64, u64> = HashMap::new();
        for (offset, frame) in &frames {
            let h = frame.header;
            match h.kind {
                FrameKind::Session => {
                    let meta = records::parse_session(frame.payload)
                        .map_err(|c| corrupt(&path, *offset, c.reason))?;
                    sessions.entry(h.session).or_insert_with(|| Rebuild::found(meta, false));
                }
                FrameKind::Batch => {
                    let (seq_first, batch_id, _) =
                        records::parse_batch(frame.payload).map_err(|c| corrupt(&path, *offset, c.reason))?;
                    let Some(s) = sessions.get_mut(&h.session) else {
                        return Err(corrupt(
                            &path,
                            *offset,
                            format!("batch of session {} before its session record", h.session),
                        ));
                    };
                    let n = u64::from(h.event_count);
                    let end = seq_first + n;
                    let c = covers.entry(h.session).or_insert(0);
                    *c = (*c).max(end);
                    remember_batch(&mut s.progress, batch_id, seq_first, n);
                    if end <= s.next_seq || s.erased.is_some() {
                        continue; // already sealed into a block, or erased
                    }
                    if seq_first > s.next_seq {
                        return Err(corrupt(
                            &path,
                            *offset,
                            format!(
                                "session {:?}: batch starts at event {seq_first}, expected {}",
                                s.id, s.next_seq
                            ),
                        ));
                    }
                    let key = match vault.engine_key(h.key_id, "recover unsealed events from the journal") {
                        Ok(key) => key,
                        // Erased, or a slot torn by a power cut during a shred (or damaged on disk):
                        // these events can never be read, and the log opens without them.
                        Err(VaultError::Key(KeyError::Erased(id) | KeyError::Damaged { key_id: id, .. })) => {
                            s.erased = Some(id);
                            continue;
                        }
                        Err(VaultError::Key(e)) => return Err(corrupt(&path, *offset, e.to_string())),
                        Err(VaultError::Audit(e)) => return Err(OpenError::Audit(e)),
                    };
                    let block = keys::open(&key, &h, frame.payload, records::BATCH_PREFIX_BYTES)
                        .map_err(|c| corrupt(&path, *offset, c.reason))?;
                    let mut events = Vec::with_capacity(n as usize);
                    decoder
                        .decode_into(&block, &mut events)
                        .map_err(|e| corrupt(&path, *offset, e.to_string()))?;
                    if events.len() as u64 != n {
                        return Err(corrupt(
                            &path,
                            *offset,
                            format!("batch holds {} events, its frame says {n}", events.len()),
                        ));
                    }
                    if n > 0 {
                        widen(&mut s.progress, h.t_min_us, h.t_max_us);
                    }
                    let skip = (s.next_seq - seq_first) as usize;
                    s.open.extend_from_slice(&events[skip..]);
                    s.next_seq = end;
                    s.touched = true;
                }
                other => {
                    return Err(corrupt(&path, *offset, format!("a {other:?} frame inside the journal")));
                }
            }
        }
        drop(frames);
        cut_tail(storage, &path, &mut bytes, end, stop, last)?;
        if last {
            let file =
                FrameFile::resume(storage, JOURNAL, number, &bytes, frame_count).map_err(io_error(&path))?;
            current_journal = Some((file, covers));
        } else {
            journal_files.insert(number, covers);
        }
    }

    // 4. The files to go on writing.
    let mut segment = match current_segment {
        Some(s) => s,
        None => {
            FrameFile::create(storage, SEGMENTS, next_frame).map_err(io_error(Path::new(SEGMENTS.dir)))?
        }
    };
    // A session whose record reached only the journal before a crash gets it written to the
    // segment again, before any of its blocks can be sealed there (and before the journal file
    // that holds it can be deleted).
    for (number, s) in sessions.iter_mut().filter(|(_, s)| !s.in_segments) {
        let mut bytes = Vec::new();
        frame::write(
            &mut bytes,
            &FrameHeader::new(FrameKind::Session, *number),
            &records::session_payload(&s.meta),
        );
        segment.append(&bytes, 1).map_err(io_error(&segment.path()))?;
        leaf(&mut tree, &mut ledger_pending, &bytes);
        next_frame += 1;
        s.in_segments = true;
    }
    // The ledger and the signed heads files, to go on appending to.
    let ledger = storage.open_append(ledger_path).map_err(io_error(ledger_path))?;
    let heads_path = Path::new(HEADS_PATH);
    let heads_file = storage.open_append(heads_path).map_err(io_error(heads_path))?;
    let whole = heads_file.len() / integrity::HEAD_BYTES as u64 * integrity::HEAD_BYTES as u64;
    drop(heads_file);
    // The two files may have just been created: their names must survive a crash too.
    storage.sync_dir(Path::new(INTEGRITY_DIR)).map_err(io_error(Path::new(INTEGRITY_DIR)))?;
    if whole != storage.len(heads_path).map_err(io_error(heads_path))? {
        // A head torn by a crash was never relied on: nothing waits for it.
        storage.truncate(heads_path, whole).map_err(io_error(heads_path))?;
    }
    let (heads, damage) =
        integrity::read_heads(storage).map_err(|e| corrupt(heads_path, 0, e.to_string()))?;
    if let Some((offset, _)) = damage
        && offset + integrity::HEAD_BYTES as u64 == whole
    {
        // The last head was written but its sync never finished (a power cut garbled it): the
        // checkpoint it belonged to never completed. Damage before the last head is evidence.
        storage.truncate(heads_path, offset).map_err(io_error(heads_path))?;
    }
    let last_head = heads.last().map(|h| (h.tree_size, h.audit_size));
    let heads = storage.open_append(heads_path).map_err(io_error(heads_path))?;
    let (journal, journal_covers) = match current_journal {
        Some(j) => j,
        None => {
            let number = journal_numbers.last().map_or(0, |n| n + 1);
            let file =
                FrameFile::create(storage, JOURNAL, number).map_err(io_error(Path::new(JOURNAL.dir)))?;
            (file, HashMap::new())
        }
    };

    // 5. The sessions, as appends will find them.
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
        let session = Session { number, id: s.id.clone(), meta: Arc::new(s.meta), state: Mutex::new(state) };
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
            last_head,
        },
    })
}

/// Adds a frame to the tree and its leaf to the ledger's pending bytes.
fn leaf(tree: &mut Frontier, pending: &mut Vec<u8>, frame: &[u8]) {
    let hash = merkle::leaf_hash(frame);
    tree.push(hash);
    pending.extend_from_slice(&hash);
}
