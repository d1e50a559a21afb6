//! Recovery, phase 3: the journal. Every batch not yet in a sealed block goes back into its
//! session's open block; an erased person's batches are skipped.

use std::collections::HashMap;

use tracevault_codecs::block::BlockDecoder;

use crate::error::OpenError;
use crate::files::{self, FILE_HEADER_BYTES, FrameFile};
use crate::frame::FrameKind;
use crate::keys::{self, KeyError};
use crate::layout::JOURNAL;
use crate::records;

use super::super::vault::VaultError;
use super::{
    Rebuild, Recovery, corrupt, cut_tail, io_error, numbered, read_frame_file, remember_batch, widen,
};

impl Recovery<'_> {
    /// Phase 3: the journal. Every batch not yet in a sealed block goes back into its open block.
    pub(super) fn replay_journal(&mut self) -> Result<(), OpenError> {
        self.journal_numbers = numbered(self.storage, JOURNAL)?;
        let mut decoder = BlockDecoder::new();
        for (i, &number) in self.journal_numbers.iter().enumerate() {
            let last = i + 1 == self.journal_numbers.len();
            let path = JOURNAL.path(number);
            let Some(mut bytes) = read_frame_file(self.storage, JOURNAL, number, last)? else { break };
            let files::Scan { frames, end, stop } = files::scan(&bytes, FILE_HEADER_BYTES);
            let frame_count = frames.len() as u64;
            let mut covers: HashMap<u64, u64> = HashMap::new();
            for (offset, frame) in &frames {
                let h = frame.header;
                match h.kind {
                    FrameKind::Session => {
                        let meta = records::parse_session(frame.payload)
                            .map_err(|c| corrupt(&path, *offset, c.reason))?;
                        self.sessions.entry(h.session).or_insert_with(|| Rebuild::found(meta, false));
                    }
                    FrameKind::Batch => {
                        let (seq_first, batch_id, _) = records::parse_batch(frame.payload)
                            .map_err(|c| corrupt(&path, *offset, c.reason))?;
                        let Some(s) = self.sessions.get_mut(&h.session) else {
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
                        let key = match self
                            .vault
                            .engine_key(h.key_id, "recover unsealed events from the journal")
                        {
                            Ok(key) => key,
                            // Erased, or a slot torn by a power cut during a shred (or damaged on disk):
                            // these events can never be read, and the log opens without them.
                            Err(VaultError::Key(
                                KeyError::Erased(id) | KeyError::Damaged { key_id: id, .. },
                            )) => {
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
            cut_tail(self.storage, &path, &mut bytes, end, stop, last)?;
            if last {
                let file = FrameFile::resume(self.storage, JOURNAL, number, &bytes, frame_count)
                    .map_err(io_error(&path))?;
                self.current_journal = Some((file, covers));
            } else {
                self.journal_files.insert(number, covers);
            }
        }
        Ok(())
    }
}
