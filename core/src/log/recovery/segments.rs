//! Recovery, phase 2: the segments after the checkpoint, frame by frame. A torn tail written
//! after the last durable point is cut; damage before it is an error naming file and offset.

use crate::error::OpenError;
use crate::files::{self, FILE_HEADER_BYTES, FrameFile};
use crate::frame::FrameKind;
use crate::index::BlockLoc;
use crate::layout::SEGMENTS;
use crate::records;

use super::super::state::segment_path;
use super::{Rebuild, Recovery, corrupt, cut_tail, io_error, numbered, read_frame_file, widen};

impl Recovery<'_> {
    /// Phase 2: the segments after the checkpoint, frame by frame; a torn tail cut.
    pub(super) fn scan_segments(&mut self) -> Result<(), OpenError> {
        let segments = numbered(self.storage, SEGMENTS)?;
        let first_scanned = match &self.start {
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
            let Some(mut bytes) = read_frame_file(self.storage, SEGMENTS, number, last)? else { break };
            let resume_at = match &self.start {
                Some(c) if c.segment == number => c.offset as usize,
                _ => {
                    if number != self.next_frame {
                        return Err(corrupt(
                            &path,
                            0,
                            format!("segment starts at frame {number}, expected {}", self.next_frame),
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
            let files::SegmentScan { frames, footer, end, stop } =
                files::scan_segment(&bytes, number, resume_at, self.next_frame);
            for (offset, frame_number, frame) in &frames {
                debug_assert_eq!(*frame_number, self.next_frame);
                let h = frame.header;
                match h.kind {
                    FrameKind::Session => {
                        let meta = records::parse_session(frame.payload)
                            .map_err(|c| corrupt(&path, *offset, c.reason))?;
                        self.sessions.entry(h.session).or_insert_with(|| Rebuild::found(meta, true));
                        self.leaf(frame.bytes);
                        self.next_frame += 1;
                    }
                    FrameKind::Block => {
                        let (seq_first, _) = records::parse_block(frame.payload)
                            .map_err(|c| corrupt(&path, *offset, c.reason))?;
                        let Some(s) = self.sessions.get_mut(&h.session) else {
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
                            frame: self.next_frame,
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
                        self.pending.blocks.push((h.session, h.block, loc));
                        self.recent.entry(h.session).or_default().insert(h.block, loc);
                        self.leaf(frame.bytes);
                        self.next_frame += 1;
                    }
                    FrameKind::Progress => {
                        let batches = records::parse_progress(frame.payload)
                            .map_err(|c| corrupt(&path, *offset, c.reason))?;
                        let Some(s) = self.sessions.get_mut(&h.session) else {
                            return Err(corrupt(
                                &path,
                                *offset,
                                format!("progress of session {} before its session record", h.session),
                            ));
                        };
                        s.progress.recent_batches = batches;
                        s.touched = true;
                        self.leaf(frame.bytes);
                        self.next_frame += 1;
                    }
                    FrameKind::Batch | FrameKind::Audit | FrameKind::Footer => {
                        return Err(corrupt(
                            &path,
                            *offset,
                            format!("a {:?} frame inside a segment", h.kind),
                        ));
                    }
                }
            }
            drop(frames);
            let sealed = match footer {
                files::Footer::Absent => false,
                files::Footer::Valid => true,
                files::Footer::Bad(offset, c) => return Err(corrupt(&path, offset, c.reason)),
            };
            let before_durable = self
                .durable
                .as_ref()
                .is_some_and(|c| number < c.segment || (number == c.segment && end < c.offset));
            cut_tail(self.storage, &path, &mut bytes, end, stop, last && !before_durable)?;
            if !last && !sealed {
                return Err(corrupt(&path, end, "segment is not sealed, but a later segment exists"));
            }
            if last && !sealed {
                let frames = self.next_frame - number;
                self.current_segment = Some(
                    FrameFile::resume(self.storage, SEGMENTS, number, &bytes, frames)
                        .map_err(io_error(&path))?,
                );
            }
        }
        Ok(())
    }
}
