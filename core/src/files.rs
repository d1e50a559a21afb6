//! Files of frames: segments (the sealed blocks, kept for good) and journal files (each append,
//! kept until its events are sealed). Both start with the same 32-byte header and hold frames back
//! to back; a segment ends, once sealed, with a footer frame.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::bytes::{self, Corruption, Reader};
use crate::frame::{self, Frame, FrameHeader, FrameKind, Parsed};
pub(crate) use crate::layout::{FileKind, MAGIC_BYTES};
#[cfg(test)]
use crate::layout::{JOURNAL, SEGMENTS};
use crate::storage::{AppendFile, Storage};

pub(crate) const FILE_VERSION_BYTES: usize = 4;
pub(crate) const RESERVED_BYTES: usize = 4;
pub(crate) const FIRST_BYTES: usize = 8;
pub(crate) const FILE_CRC_BYTES: usize = 4;
/// Bytes of the header at the start of every segment and journal file.
pub const FILE_HEADER_BYTES: usize =
    MAGIC_BYTES + FILE_VERSION_BYTES + RESERVED_BYTES + FIRST_BYTES + RESERVED_BYTES + FILE_CRC_BYTES;
const _: () = assert!(FILE_HEADER_BYTES == 32);
/// The CRC comes last and covers everything before it, reserved bytes included.
const CRC_COVERS_BYTES: usize = FILE_HEADER_BYTES - FILE_CRC_BYTES;

pub(crate) const FILE_VERSION: u32 = 1;

/// The footer's payload: first frame number, frame count, SHA-256 of the segment before it.
pub(crate) const FOOTER_PAYLOAD_BYTES: usize = 8 + 8 + 32;

pub(crate) fn file_header(magic: [u8; MAGIC_BYTES], first: u64) -> [u8; FILE_HEADER_BYTES] {
    let mut covered = Vec::with_capacity(FILE_HEADER_BYTES);
    bytes::Writer::new(&mut covered)
        .bytes(&magic)
        .u32(FILE_VERSION)
        .zeros(RESERVED_BYTES)
        .u64(first)
        .zeros(RESERVED_BYTES);
    debug_assert_eq!(covered.len(), CRC_COVERS_BYTES);
    bytes::fixed(|w| {
        w.bytes(&covered).u32(crc32c::crc32c(&covered));
    })
}

/// Checks a file header and returns the number it carries (a segment's first frame number, a
/// journal file's sequence number). `Ok(None)` when the file is too short to hold one (a file
/// created just before a crash).
pub(crate) fn read_file_header(bytes: &[u8], magic: [u8; MAGIC_BYTES]) -> Result<Option<u64>, Corruption> {
    if bytes.len() < FILE_HEADER_BYTES {
        return Ok(None);
    }
    let mut r = Reader::new(&bytes[..FILE_HEADER_BYTES], "file header");
    let found: [u8; MAGIC_BYTES] = r.array("magic")?;
    if found != magic {
        return Err(Corruption::new(format!(
            "file magic {:?}, expected {:?}",
            String::from_utf8_lossy(&found),
            String::from_utf8_lossy(&magic)
        )));
    }
    let version = r.u32("version")?;
    r.take(RESERVED_BYTES, "reserved")?;
    let first = r.u64("number")?;
    r.take(RESERVED_BYTES, "reserved")?;
    let crc = r.u32("crc32c")?;
    if crc != crc32c::crc32c(&bytes[..CRC_COVERS_BYTES]) {
        return Err(Corruption::new("file header CRC32C mismatch"));
    }
    if version != FILE_VERSION {
        return Err(Corruption::new(format!(
            "file format version {version}, this build reads {FILE_VERSION}"
        )));
    }
    Ok(Some(first))
}

/// Where a scan of a file's frames stopped.
#[derive(Debug)]
pub(crate) enum Stop {
    /// At the end of the file, after a complete frame.
    End,
    /// At a frame the file ends inside of: a write torn by a crash.
    Torn,
    /// At bytes that cannot be a frame.
    Damage(Corruption),
}

/// The frames of a file, from `start`, up to the first one that is torn or damaged.
pub(crate) struct Scan<'a> {
    pub frames: Vec<(u64, Frame<'a>)>,
    /// The offset just after the last good frame.
    pub end: u64,
    pub stop: Stop,
}

pub(crate) fn scan(bytes: &[u8], start: usize) -> Scan<'_> {
    let mut frames = Vec::new();
    let mut at = start;
    let stop = loop {
        if at == bytes.len() {
            break Stop::End;
        }
        match frame::parse(&bytes[at..]) {
            Parsed::Frame(f) => {
                frames.push((at as u64, f));
                at += f.bytes.len();
            }
            Parsed::Incomplete => break Stop::Torn,
            Parsed::Corrupt(c) => break Stop::Damage(c),
        }
    };
    Scan { frames, end: at as u64, stop }
}

/// A segment's frames, checked the way every reader of segments needs them.
pub(crate) struct SegmentScan<'a> {
    /// The frames before the footer (or before a misplaced one): (offset, frame number, frame).
    pub frames: Vec<(u64, u64, Frame<'a>)>,
    pub footer: Footer,
    /// The offset just after the last good frame.
    pub end: u64,
    pub stop: Stop,
}

/// What ends a segment.
#[derive(Debug)]
pub(crate) enum Footer {
    /// No footer: the segment being written.
    Absent,
    /// The last frame is a footer matching the bytes before it: the segment is sealed.
    Valid,
    /// A footer that does not match, or one before the end: (offset, what is wrong). The frames
    /// before it are still given, so a reader can name an earlier problem first.
    Bad(u64, Corruption),
}

/// The frames of segment `number` from `offset`, numbered from `first_frame` (the number of the
/// frame at `offset`), and how the segment ends: a footer only as the file's last frame,
/// matching the bytes before it. Recovery and `verify` both read segments through this; what
/// each does with a frame, and with a torn or damaged tail, is its own.
pub(crate) fn scan_segment(bytes: &[u8], number: u64, offset: usize, first_frame: u64) -> SegmentScan<'_> {
    let Scan { frames, end, stop } = scan(bytes, offset);
    let count = frames.len();
    let mut out = Vec::with_capacity(count);
    let mut footer = Footer::Absent;
    for (k, (at, frame)) in frames.into_iter().enumerate() {
        if frame.header.kind != FrameKind::Footer {
            out.push((at, first_frame + out.len() as u64, frame));
            continue;
        }
        footer = if k + 1 != count || !matches!(stop, Stop::End) {
            Footer::Bad(at, Corruption::new("footer before the end of the segment"))
        } else {
            let frames_before = first_frame + out.len() as u64 - number;
            match check_footer(bytes, at, &frame, frames_before) {
                Ok(()) => Footer::Valid,
                Err(c) => Footer::Bad(at, Corruption::new(format!("segment footer: {c}"))),
            }
        };
        break;
    }
    SegmentScan { frames: out, footer, end, stop }
}

/// The footer that seals a segment.
pub(crate) fn footer(first_frame: u64, frame_count: u64, sha256: &[u8; 32]) -> Vec<u8> {
    let payload: [u8; FOOTER_PAYLOAD_BYTES] = bytes::fixed(|w| {
        w.u64(first_frame).u64(frame_count).bytes(sha256);
    });
    let mut out = Vec::new();
    frame::write(&mut out, &FrameHeader::new(FrameKind::Footer, 0), &payload);
    out
}

/// Checks a sealed segment's footer against the bytes before it.
pub(crate) fn check_footer(
    segment: &[u8],
    footer_offset: u64,
    footer: &Frame<'_>,
    frames_before: u64,
) -> Result<(), Corruption> {
    if footer.payload.len() != FOOTER_PAYLOAD_BYTES {
        return Err(Corruption::new(format!(
            "footer payload of {} bytes, expected {FOOTER_PAYLOAD_BYTES}",
            footer.payload.len()
        )));
    }
    let mut r = Reader::new(footer.payload, "segment footer");
    r.u64("first frame")?;
    let count = r.u64("frame count")?;
    let sha256: [u8; 32] = r.array("sha256")?;
    if count != frames_before {
        return Err(Corruption::new(format!(
            "footer counts {count} frames, the segment holds {frames_before}"
        )));
    }
    let covered = segment
        .get(..footer_offset as usize)
        .ok_or_else(|| Corruption::new("footer offset past the segment's end"))?;
    let digest: [u8; 32] = Sha256::digest(covered).into();
    if sha256 != digest {
        return Err(Corruption::new("footer SHA-256 does not match the segment's bytes"));
    }
    Ok(())
}

/// Appends frames to the newest file of a directory, rolling to a new file past a size limit.
pub(crate) struct FrameFile {
    kind: FileKind,
    /// The current file's number (first frame number for segments, sequence for journals).
    pub number: u64,
    pub file: Box<dyn AppendFile>,
    /// SHA-256 of the current file so far (segments only, for the footer).
    hasher: Option<Sha256>,
    /// Frames in the current file.
    pub frames: u64,
}

impl FrameFile {
    pub fn path_of(&self, number: u64) -> PathBuf {
        self.kind.path(number)
    }

    pub fn path(&self) -> PathBuf {
        self.path_of(self.number)
    }

    /// Creates a new, empty file (header only) and makes its directory entry durable.
    pub fn create(storage: &dyn Storage, kind: FileKind, number: u64) -> std::io::Result<FrameFile> {
        let mut file = storage.open_append(&kind.path(number))?;
        let header = file_header(kind.magic, number);
        file.append(&header)?;
        file.sync()?;
        storage.sync_dir(Path::new(kind.dir))?;
        let hasher = kind.hashed.then(|| {
            let mut h = Sha256::new();
            h.update(header);
            h
        });
        Ok(FrameFile { kind, number, file, hasher, frames: 0 })
    }

    /// Reopens an existing file whose good bytes (already truncated to them) are `bytes`, holding
    /// `frames` frames. It is synced first: recovery adopts these bytes as the log's state, so
    /// they must not vanish in a later crash (they may have been written but never synced, by a
    /// process that died or whose sync failed).
    pub fn resume(
        storage: &dyn Storage,
        kind: FileKind,
        number: u64,
        bytes: &[u8],
        frames: u64,
    ) -> std::io::Result<FrameFile> {
        let mut file = storage.open_append(&kind.path(number))?;
        file.sync()?;
        let hasher = kind.hashed.then(|| {
            let mut h = Sha256::new();
            h.update(bytes);
            h
        });
        Ok(FrameFile { kind, number, file, hasher, frames })
    }

    /// Appends frames already laid out in `bytes` (`count` of them).
    pub fn append(&mut self, bytes: &[u8], count: u64) -> std::io::Result<u64> {
        let offset = self.file.len();
        self.file.append(bytes)?;
        if let Some(h) = &mut self.hasher {
            h.update(bytes);
        }
        self.frames += count;
        Ok(offset)
    }

    /// Seals the current segment with its footer (segments only) and syncs it.
    pub fn seal(&mut self) -> std::io::Result<()> {
        if let Some(h) = self.hasher.take() {
            let digest: [u8; 32] = h.finalize().into();
            let footer = footer(self.number, self.frames, &digest);
            self.file.append(&footer)?;
        }
        self.file.sync()
    }

    /// Starts the next file, numbered `number`.
    pub fn roll(&mut self, storage: &dyn Storage, number: u64) -> std::io::Result<()> {
        self.seal()?;
        *self = FrameFile::create(storage, self.kind, number)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_damage_is_caught() {
        let h = file_header(SEGMENTS.magic, 99);
        assert_eq!(read_file_header(&h, SEGMENTS.magic), Ok(Some(99)));
        assert!(read_file_header(&h, JOURNAL.magic).is_err());
        assert_eq!(read_file_header(&h[..10], SEGMENTS.magic), Ok(None));
        for i in 0..FILE_HEADER_BYTES {
            let mut d = h;
            d[i] ^= 0x40;
            assert!(read_file_header(&d, SEGMENTS.magic).is_err(), "byte {i}");
        }
    }
}
