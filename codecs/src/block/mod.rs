//! The block codec: a bounded run of one session's events, delta-coded and compressed.
//! docs/FORMAT.md ("Block") is the byte map of each version.
//!
//! A block decodes on its own: no state is carried from one block to the next, so replay can
//! decode a session's blocks in parallel. Every block names its version in its first byte;
//! [`BlockDecoder`] reads both, [`BlockEncoder`] writes version 2 (or version 1, on request).
//!
//! Version 1 (this module's `encode.rs` and `decode.rs`) splits events into columns by meaning
//! and compresses each with zstd: time in units of the block's greatest common step, pointer
//! coordinates as the change in velocity (second differences), because hand motion is smooth.
//! Version 2 (`v2/`) keeps those transforms and replaces zstd, which spends its effort looking
//! for repeats that human motion does not have, with an entropy coder under context models: on
//! SapiMouse at 4096-event blocks, 1.712 to 1.417 bytes per event (`cargo bench --bench codecs`
//! prints the figures).

mod decode;
mod encode;
mod v2;
/// LEB128 varints and zigzag mapping: the integer encoding of the block formats, and of the
/// core's varint fields (one implementation).
pub mod varint;

pub use decode::{BlockDecoder, DecodeError, decode_block};
pub use encode::{BlockEncoder, EncodeError};
pub use v2::Breakdown;

/// The block format version new blocks are written in. Version 1 blocks still decode, and a
/// store may hold both: every block names its version in its first byte.
pub const BLOCK_VERSION: u8 = v2::VERSION;
/// The first layout: zstd over delta-coded columns, kept for stores written before version 2.
pub const BLOCK_VERSION_1: u8 = 1;
/// The first entropy-coded layout, read (not written): version 3 codes its tables more tightly
/// and its contexts see more.
pub const BLOCK_VERSION_2: u8 = v2::VERSION_2;

/// The zstd level blocks are compressed at unless configured otherwise, chosen by measurement:
/// see docs/BENCHMARKS-HISTORY.md ("codecs") and the codec section of docs/BENCHMARKS.md.
pub const DEFAULT_ZSTD_LEVEL: i32 = 1;

// The fixed header: version, column count, flags, event count, first t, t unit.
pub(crate) const VERSION_BYTES: usize = 1;
pub(crate) const COLUMN_COUNT_BYTES: usize = 1;
pub(crate) const FLAGS_BYTES: usize = 2;
pub(crate) const EVENT_COUNT_BYTES: usize = 4;
pub(crate) const T_FIRST_BYTES: usize = 8;
pub(crate) const T_UNIT_BYTES: usize = 8;
/// Bytes of the fixed block header.
pub const HEADER_BYTES: usize =
    VERSION_BYTES + COLUMN_COUNT_BYTES + FLAGS_BYTES + EVENT_COUNT_BYTES + T_FIRST_BYTES + T_UNIT_BYTES;
const _: () = assert!(HEADER_BYTES == 24);

pub(crate) const OFFSET_VERSION: usize = 0;
pub(crate) const OFFSET_COLUMN_COUNT: usize = OFFSET_VERSION + VERSION_BYTES;
pub(crate) const OFFSET_FLAGS: usize = OFFSET_COLUMN_COUNT + COLUMN_COUNT_BYTES;
pub(crate) const OFFSET_EVENT_COUNT: usize = OFFSET_FLAGS + FLAGS_BYTES;
pub(crate) const OFFSET_T_FIRST: usize = OFFSET_EVENT_COUNT + EVENT_COUNT_BYTES;
pub(crate) const OFFSET_T_UNIT: usize = OFFSET_T_FIRST + T_FIRST_BYTES;
const _: () = assert!(OFFSET_T_UNIT + T_UNIT_BYTES == HEADER_BYTES);

// One column directory entry: codec, raw (decompressed) length, stored length.
pub(crate) const CODEC_BYTES: usize = 1;
pub(crate) const RAW_LEN_BYTES: usize = 4;
pub(crate) const STORED_LEN_BYTES: usize = 4;
/// Bytes of one column directory entry.
pub const COLUMN_ENTRY_BYTES: usize = CODEC_BYTES + RAW_LEN_BYTES + STORED_LEN_BYTES;
const _: () = assert!(COLUMN_ENTRY_BYTES == 9);

/// How a column's bytes are stored.
pub(crate) const CODEC_RAW: u8 = 0;
pub(crate) const CODEC_ZSTD: u8 = 1;

/// The columns of a version 1 block, in their on-disk order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Column {
    /// One byte per event: kind in the low nibble, flags in the high nibble.
    Kinds = 0,
    /// Events 1.. : zigzag varint of (t[i] - t[i-1]) / t_unit.
    Time = 1,
    /// Pointer events: zigzag varint of the second difference of x.
    PointerX = 2,
    /// Pointer events: zigzag varint of the second difference of y.
    PointerY = 3,
    /// Wheel dx, dy (zigzag varints) and screen w, h (varints), in event order.
    Ints = 4,
    /// Every string field, in event order: a varint index into the string table.
    StringRefs = 5,
    /// A varint count, then each distinct string as a varint length and its UTF-8 bytes.
    StringTable = 6,
}

pub(crate) const COLUMN_COUNT: usize = 7;
pub(crate) const COLUMNS: [Column; COLUMN_COUNT] = [
    Column::Kinds,
    Column::Time,
    Column::PointerX,
    Column::PointerY,
    Column::Ints,
    Column::StringRefs,
    Column::StringTable,
];
/// Bytes of a version 1 block before its first column's data.
pub const PREFIX_BYTES: usize = HEADER_BYTES + COLUMN_COUNT * COLUMN_ENTRY_BYTES;

impl Column {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Column::Kinds => "kinds",
            Column::Time => "time",
            Column::PointerX => "pointer_x",
            Column::PointerY => "pointer_y",
            Column::Ints => "ints",
            Column::StringRefs => "string_refs",
            Column::StringTable => "string_table",
        }
    }
}

// The kind byte: the kind in the low nibble ...
pub(crate) const KIND_MOVE: u8 = 0;
pub(crate) const KIND_DOWN: u8 = 1;
pub(crate) const KIND_UP: u8 = 2;
pub(crate) const KIND_WHEEL: u8 = 3;
pub(crate) const KIND_KEY_DOWN: u8 = 4;
pub(crate) const KIND_KEY_UP: u8 = 5;
pub(crate) const KIND_TEXT: u8 = 6;
pub(crate) const KIND_FOCUS: u8 = 7;
pub(crate) const KIND_SCREEN: u8 = 8;
pub(crate) const KIND_MARKER: u8 = 9;
pub(crate) const KIND_MASK: u8 = 0x0f;
// ... and flags in the high nibble, by kind: down/up carry the button code (0..=5) ...
pub(crate) const FLAG_SHIFT: u8 = 4;
// ... key_down/key_up whether `text` is present and whether the key was secure ...
pub(crate) const FLAG_KEY_HAS_TEXT: u8 = 0x10;
pub(crate) const FLAG_KEY_SECURE: u8 = 0x20;
// ... and focus whether `title` is present.
pub(crate) const FLAG_FOCUS_HAS_TITLE: u8 = 0x10;

/// What a block's header says, readable without decoding the rest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockHeader {
    pub version: u8,
    pub event_count: u32,
    pub t_first_us: u64,
    pub t_unit_us: u64,
}

#[cfg(test)]
mod tests;
