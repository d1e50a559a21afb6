//! Frames: the unit the log writes, checks and hashes. docs/FORMAT.md ("Frame") is the byte map;
//! offsets here are built from the named constants.
//!
//! `len u32 | crc32c u32 | header | payload | len u32`: the leading length bounds the read, the
//! CRC covers header and payload, and the trailing copy of the length lets a reader tell a torn
//! frame (the write stopped part-way) from a complete one.

use crate::error::Corruption;

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

const OFFSET_VERSION: usize = 0;
const OFFSET_KIND: usize = OFFSET_VERSION + VERSION_BYTES;
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
    out.push(FRAME_VERSION);
    out.push(header.kind as u8);
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&header.session.to_le_bytes());
    out.extend_from_slice(&header.block.to_le_bytes());
    out.extend_from_slice(&header.event_count.to_le_bytes());
    out.extend_from_slice(&header.t_min_us.to_le_bytes());
    out.extend_from_slice(&header.t_max_us.to_le_bytes());
    out.extend_from_slice(&header.key_id.to_le_bytes());
    out.extend_from_slice(&header.nonce);
    debug_assert_eq!(out.len() - body, HEADER_BYTES);
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

fn le<const N: usize>(bytes: &[u8], offset: usize) -> [u8; N] {
    bytes[offset..offset + N].try_into().expect("callers check the length first")
}

/// Reads the frame at the start of `buf`, checking its bounds, CRC and trailer.
pub fn parse(buf: &[u8]) -> Parsed<'_> {
    if buf.len() < LEN_BYTES {
        return Parsed::Incomplete;
    }
    let len = u32::from_le_bytes(le(buf, 0)) as usize;
    if !(HEADER_BYTES..=FRAME_BYTES_MAX).contains(&len) {
        return Parsed::Corrupt(Corruption::new(format!(
            "frame length {len} outside {HEADER_BYTES}..={FRAME_BYTES_MAX}"
        )));
    }
    let total = LEN_BYTES + CRC_BYTES + len + LEN_BYTES;
    if buf.len() < total {
        return Parsed::Incomplete;
    }
    let crc = u32::from_le_bytes(le(buf, LEN_BYTES));
    let body = &buf[LEN_BYTES + CRC_BYTES..LEN_BYTES + CRC_BYTES + len];
    let actual = crc32c::crc32c(body);
    if crc != actual {
        return Parsed::Corrupt(Corruption::new(format!("CRC32C {actual:#010x}, expected {crc:#010x}")));
    }
    let trailer = u32::from_le_bytes(le(buf, total - LEN_BYTES)) as usize;
    if trailer != len {
        return Parsed::Corrupt(Corruption::new(format!("trailing length {trailer}, expected {len}")));
    }
    let version = body[OFFSET_VERSION];
    if version != FRAME_VERSION {
        return Parsed::Corrupt(Corruption::new(format!(
            "frame version {version}, this build reads {FRAME_VERSION}"
        )));
    }
    let Some(kind) = FrameKind::from_code(body[OFFSET_KIND]) else {
        return Parsed::Corrupt(Corruption::new(format!("unknown frame kind {}", body[OFFSET_KIND])));
    };
    let flags = u16::from_le_bytes(le(body, OFFSET_FLAGS));
    if flags != 0 {
        return Parsed::Corrupt(Corruption::new(format!("frame flags {flags:#06x}, expected 0")));
    }
    let header = FrameHeader {
        kind,
        session: u64::from_le_bytes(le(body, OFFSET_SESSION)),
        block: u32::from_le_bytes(le(body, OFFSET_BLOCK)),
        event_count: u32::from_le_bytes(le(body, OFFSET_EVENT_COUNT)),
        t_min_us: u64::from_le_bytes(le(body, OFFSET_T_MIN)),
        t_max_us: u64::from_le_bytes(le(body, OFFSET_T_MAX)),
        key_id: u32::from_le_bytes(le(body, OFFSET_KEY_ID)),
        nonce: le(body, OFFSET_NONCE),
    };
    Parsed::Frame(Frame { header, payload: &body[HEADER_BYTES..], bytes: &buf[..total] })
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
