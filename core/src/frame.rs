//! Frames: the unit the log writes, checks and hashes. docs/FORMAT.md ("Frame") is the byte map;
//! offsets here are built from the named constants.
//!
//! `len u32 | crc32c u32 | header | payload | len u32`: the leading length bounds the read, the
//! CRC covers header and payload, and the trailing copy of the length lets a reader tell a torn
//! frame (the write stopped part-way) from a complete one.

use crate::bytes::{self, Corruption, Reader};

/// The current frame format version.
/// Version 2: block and batch payloads are sealed with a data key (version 1 stored them in clear).
pub const FRAME_VERSION: u8 = 2;

pub(crate) const LEN_BYTES: usize = 4;
pub(crate) const CRC_BYTES: usize = 4;

// The header's fields, in order.
pub(crate) const VERSION_BYTES: usize = 1;
pub(crate) const KIND_BYTES: usize = 1;
pub(crate) const FLAGS_BYTES: usize = 2;
pub(crate) const SESSION_BYTES: usize = 8;
pub(crate) const BLOCK_BYTES: usize = 4;
pub(crate) const EVENT_COUNT_BYTES: usize = 4;
pub(crate) const T_MIN_BYTES: usize = 8;
pub(crate) const T_MAX_BYTES: usize = 8;
pub(crate) const KEY_ID_BYTES: usize = 4;
/// XChaCha20-Poly1305 takes a 24-byte nonce.
pub const NONCE_BYTES: usize = 24;
/// Bytes of the fixed frame header.
pub const HEADER_BYTES: usize = VERSION_BYTES
    + KIND_BYTES
    + FLAGS_BYTES
    + SESSION_BYTES
    + BLOCK_BYTES
    + EVENT_COUNT_BYTES
    + T_MIN_BYTES
    + T_MAX_BYTES
    + KEY_ID_BYTES
    + NONCE_BYTES;
const _: () = assert!(HEADER_BYTES == 64);

const OFFSET_KIND: usize = VERSION_BYTES;
const OFFSET_FLAGS: usize = OFFSET_KIND + KIND_BYTES;
const OFFSET_SESSION: usize = OFFSET_FLAGS + FLAGS_BYTES;
const OFFSET_BLOCK: usize = OFFSET_SESSION + SESSION_BYTES;
const OFFSET_EVENT_COUNT: usize = OFFSET_BLOCK + BLOCK_BYTES;
const OFFSET_T_MIN: usize = OFFSET_EVENT_COUNT + EVENT_COUNT_BYTES;
const OFFSET_T_MAX: usize = OFFSET_T_MIN + T_MIN_BYTES;
const OFFSET_KEY_ID: usize = OFFSET_T_MAX + T_MAX_BYTES;
const OFFSET_NONCE: usize = OFFSET_KEY_ID + KEY_ID_BYTES;
const _: () = assert!(OFFSET_NONCE + NONCE_BYTES == HEADER_BYTES);

/// Bytes a frame adds around its payload.
pub const OVERHEAD_BYTES: usize = LEN_BYTES + CRC_BYTES + HEADER_BYTES + LEN_BYTES;

/// The most bytes of header and payload one frame may hold.
pub const FRAME_BYTES_MAX: usize = 64 << 20;

/// What a frame holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameKind {
    /// A session's description (payload: MessagePack `SessionMeta`).
    Session = 1,
    /// A sealed block of one session's events.
    Block = 2,
    /// One append's events, in the journal, until they are sealed into a block.
    Batch = 3,
    /// The last frame of a sealed segment: counts and a hash of everything before it.
    Footer = 4,
    /// A session's most recent batch ids, written at each checkpoint for the sessions that took
    /// batches since the last one, so a rebuilt index still recognises retried batches.
    Progress = 5,
    /// An entry of the access audit log (its own file; payload: MessagePack `AuditEntry`).
    Audit = 6,
}

impl FrameKind {
    fn from_code(code: u8) -> Option<FrameKind> {
        Some(match code {
            1 => FrameKind::Session,
            2 => FrameKind::Block,
            3 => FrameKind::Batch,
            4 => FrameKind::Footer,
            5 => FrameKind::Progress,
            6 => FrameKind::Audit,
            _ => return None,
        })
    }
}

/// A frame's header fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    pub kind: FrameKind,
    /// The log's number for the session (0 for frames that belong to none).
    pub session: u64,
    /// The session's block number (blocks, batches), else 0.
    pub block: u32,
    pub event_count: u32,
    /// The smallest and largest `t` of the events (time can go backwards, so not first/last).
    pub t_min_us: u64,
    pub t_max_us: u64,
    /// The data key the payload is sealed with; 0 for frames in clear (session records,
    /// progress, footers, audit entries).
    pub key_id: u32,
    pub nonce: [u8; NONCE_BYTES],
}

impl FrameHeader {
    pub fn new(kind: FrameKind, session: u64) -> Self {
        FrameHeader {
            kind,
            session,
            block: 0,
            event_count: 0,
            t_min_us: 0,
            t_max_us: 0,
            key_id: 0,
            nonce: [0; NONCE_BYTES],
        }
    }
}

impl FrameHeader {
    /// The header's bytes, as written in a frame. The one serialisation of a header: the frame
    /// writer and the AEAD associated data ([`FrameHeader::authenticated`]) both use it, so a
    /// field can never be written without being authenticated.
    pub fn to_bytes(&self) -> [u8; HEADER_BYTES] {
        bytes::fixed(|w| {
            w.u8(FRAME_VERSION)
                .u8(self.kind as u8)
                .u16(0)
                .u64(self.session)
                .u32(self.block)
                .u32(self.event_count)
                .u64(self.t_min_us)
                .u64(self.t_max_us)
                .u32(self.key_id)
                .bytes(&self.nonce);
        })
    }

    /// Parses a header, checking its version, kind and flags.
    pub fn from_bytes(b: &[u8]) -> Result<FrameHeader, Corruption> {
        let mut r = Reader::new(b, "frame header");
        let version = r.u8("version")?;
        if version != FRAME_VERSION {
            return Err(Corruption::new(format!(
                "frame version {version}, this build reads {FRAME_VERSION}"
            )));
        }
        let code = r.u8("kind")?;
        let kind = FrameKind::from_code(code)
            .ok_or_else(|| Corruption::new(format!("unknown frame kind {code}")))?;
        let flags = r.u16("flags")?;
        if flags != 0 {
            return Err(Corruption::new(format!("frame flags {flags:#06x}, expected 0")));
        }
        let header = FrameHeader {
            kind,
            session: r.u64("session")?,
            block: r.u32("block")?,
            event_count: r.u32("event_count")?,
            t_min_us: r.u64("t_min_us")?,
            t_max_us: r.u64("t_max_us")?,
            key_id: r.u32("key_id")?,
            nonce: r.array("nonce")?,
        };
        r.finish()?;
        Ok(header)
    }

    /// The header bytes a sealed payload's associated data binds: the kind, then every field from
    /// the session to the key id, taken from [`FrameHeader::to_bytes`]. (The version and flags
    /// are fixed values every reader checks; the nonce is the cipher's own input.)
    pub fn authenticated(&self) -> [u8; 1 + OFFSET_NONCE - OFFSET_SESSION] {
        let all = self.to_bytes();
        let mut out = [0u8; 1 + OFFSET_NONCE - OFFSET_SESSION];
        out[0] = all[OFFSET_KIND];
        out[1..].copy_from_slice(&all[OFFSET_SESSION..OFFSET_NONCE]);
        out
    }
}

/// Appends one frame to `out`.
pub fn write(out: &mut Vec<u8>, header: &FrameHeader, payload: &[u8]) {
    let len = HEADER_BYTES + payload.len();
    assert!(
        len <= FRAME_BYTES_MAX,
        "frame of {len} bytes exceeds FRAME_BYTES_MAX; callers bound their payloads"
    );
    let start = out.len();
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(&[0; CRC_BYTES]);
    let body = out.len();
    out.extend_from_slice(&header.to_bytes());
    out.extend_from_slice(payload);
    let crc = crc32c::crc32c(&out[body..]);
    out[start + LEN_BYTES..body].copy_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&(len as u32).to_le_bytes());
}

/// A complete, checked frame inside a buffer.
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    pub header: FrameHeader,
    pub payload: &'a [u8],
    /// The whole frame's bytes, envelope included (what the Merkle tree hashes).
    pub bytes: &'a [u8],
}

/// What is at an offset: a frame, the end of what was written part-way, or damage.
#[derive(Debug)]
pub enum Parsed<'a> {
    Frame(Frame<'a>),
    /// The buffer ends inside the frame: a torn write at the tail, not (yet) an error.
    Incomplete,
    /// The bytes cannot be a frame.
    Corrupt(Corruption),
}

/// Reads the frame at the start of `buf`, checking its bounds, CRC and trailer.
pub fn parse(buf: &[u8]) -> Parsed<'_> {
    let mut r = Reader::new(buf, "frame");
    let Ok(len) = r.u32("len") else { return Parsed::Incomplete };
    let len = len as usize;
    if !(HEADER_BYTES..=FRAME_BYTES_MAX).contains(&len) {
        return Parsed::Corrupt(Corruption::new(format!(
            "frame length {len} outside {HEADER_BYTES}..={FRAME_BYTES_MAX}"
        )));
    }
    if r.remaining() < CRC_BYTES + len + LEN_BYTES {
        return Parsed::Incomplete;
    }
    let checked = (|| {
        let crc = r.u32("crc32c")?;
        let body = r.take(len, "header and payload")?;
        let trailer = r.u32("trailing len")? as usize;
        let actual = crc32c::crc32c(body);
        if crc != actual {
            return Err(Corruption::new(format!("CRC32C {actual:#010x}, expected {crc:#010x}")));
        }
        if trailer != len {
            return Err(Corruption::new(format!("trailing length {trailer}, expected {len}")));
        }
        let (header, payload) = body.split_at(HEADER_BYTES);
        Ok((FrameHeader::from_bytes(header)?, payload))
    })();
    match checked {
        Ok((header, payload)) => Parsed::Frame(Frame { header, payload, bytes: &buf[..r.offset()] }),
        Err(c) => Parsed::Corrupt(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (FrameHeader, Vec<u8>) {
        let mut header = FrameHeader::new(FrameKind::Block, 7);
        header.block = 3;
        header.event_count = 2;
        header.t_min_us = 10;
        header.t_max_us = 20;
        let mut out = Vec::new();
        write(&mut out, &header, b"payload");
        (header, out)
    }

    #[test]
    fn round_trips() {
        let (header, bytes) = sample();
        assert_eq!(bytes.len(), OVERHEAD_BYTES + 7);
        let Parsed::Frame(frame) = parse(&bytes) else { panic!() };
        assert_eq!(frame.header, header);
        assert_eq!(frame.payload, b"payload");
        assert_eq!(frame.bytes, &bytes[..]);
    }

    #[test]
    fn every_prefix_is_incomplete_and_every_flip_is_caught() {
        let (_, bytes) = sample();
        for len in 0..bytes.len() {
            assert!(matches!(parse(&bytes[..len]), Parsed::Incomplete | Parsed::Corrupt(_)), "prefix {len}");
        }
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut damaged = bytes.clone();
                damaged[i] ^= 1 << bit;
                assert!(!matches!(parse(&damaged), Parsed::Frame(_)), "flip at {i} bit {bit} went unseen");
            }
        }
    }
}
