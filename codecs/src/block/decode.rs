//! Decoding a block back into events. The input is untrusted: every length is checked against
//! the block's own bounds and the named limits before anything is allocated, and every error names
//! the column and what was wrong.

use crate::event::{Button, Event, EventKind, Key};
use crate::limits::{BLOCK_EVENTS_MAX, BLOCK_RAW_BYTES_MAX, STRING_BYTES_MAX};

use super::varint::{Reader, VarintError};
use super::*;

/// Why bytes could not be decoded as a block.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    #[error("block is {found} bytes, expected at least {needed}")]
    Truncated { needed: usize, found: usize },
    #[error(
        "block format version {found} is not supported (this build reads versions {BLOCK_VERSION_1}, {BLOCK_VERSION_2} and {BLOCK_VERSION})"
    )]
    UnsupportedVersion { found: u8 },
    #[error("block {what} is {found}, expected at most {max}")]
    OverLimit { what: &'static str, max: u64, found: u64 },
    #[error("block is corrupt: {reason}")]
    Corrupt { reason: String },
    #[error("block column {column} is corrupt: {reason}")]
    Column { column: &'static str, reason: String },
}

fn corrupt(reason: impl Into<String>) -> DecodeError {
    DecodeError::Corrupt { reason: reason.into() }
}

fn column_error(column: Column, reason: impl Into<String>) -> DecodeError {
    DecodeError::Column { column: column.name(), reason: reason.into() }
}

impl BlockHeader {
    /// Reads and checks a block's header, whichever version it is.
    pub fn read(bytes: &[u8]) -> Result<BlockHeader, DecodeError> {
        match bytes.first() {
            Some(&v2::VERSION | &v2::VERSION_2) => v2::read_header(bytes).map(|(header, _)| header),
            _ => BlockHeader::read_v1(bytes),
        }
    }

    /// Reads and checks a version 1 block's fixed header.
    fn read_v1(bytes: &[u8]) -> Result<BlockHeader, DecodeError> {
        if bytes.len() < HEADER_BYTES {
            return Err(DecodeError::Truncated { needed: HEADER_BYTES, found: bytes.len() });
        }
        let version = bytes[OFFSET_VERSION];
        if version != BLOCK_VERSION_1 {
            return Err(DecodeError::UnsupportedVersion { found: version });
        }
        let columns = bytes[OFFSET_COLUMN_COUNT];
        if usize::from(columns) != COLUMN_COUNT {
            return Err(corrupt(format!(
                "expected {COLUMN_COUNT} columns in a version {BLOCK_VERSION_1} block, found {columns}"
            )));
        }
        let flags = u16::from_le_bytes(le(bytes, OFFSET_FLAGS));
        if flags != 0 {
            return Err(corrupt(format!("expected header flags 0, found {flags:#06x}")));
        }
        let event_count = u32::from_le_bytes(le(bytes, OFFSET_EVENT_COUNT));
        if event_count as usize > BLOCK_EVENTS_MAX {
            return Err(DecodeError::OverLimit {
                what: "event count",
                max: BLOCK_EVENTS_MAX as u64,
                found: u64::from(event_count),
            });
        }
        let t_unit_us = u64::from_le_bytes(le(bytes, OFFSET_T_UNIT));
        if t_unit_us == 0 || t_unit_us > i64::MAX as u64 {
            return Err(corrupt(format!("expected a time unit in 1..=2^63-1, found {t_unit_us}")));
        }
        Ok(BlockHeader {
            version,
            event_count,
            t_first_us: u64::from_le_bytes(le(bytes, OFFSET_T_FIRST)),
            t_unit_us,
        })
    }
}

fn le<const N: usize>(bytes: &[u8], offset: usize) -> [u8; N] {
    bytes[offset..offset + N].try_into().expect("callers check the length first")
}

/// Decodes one whole block (convenience for [`BlockDecoder::decode_into`]).
pub fn decode_block(bytes: &[u8]) -> Result<Vec<Event>, DecodeError> {
    let mut events = Vec::new();
    BlockDecoder::new().decode_into(bytes, &mut events)?;
    Ok(events)
}

/// Decodes blocks, reusing its buffers and zstd context from one block to the next.
pub struct BlockDecoder {
    decompressor: zstd::bulk::Decompressor<'static>,
    v2: v2::Decoder,
    columns: [Vec<u8>; COLUMN_COUNT],
    strings: Vec<String>,
}

impl std::fmt::Debug for BlockDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockDecoder").finish_non_exhaustive()
    }
}

impl Default for BlockDecoder {
    fn default() -> Self {
        BlockDecoder::new()
    }
}

impl BlockDecoder {
    pub fn new() -> Self {
        BlockDecoder {
            decompressor: zstd::bulk::Decompressor::new().expect("zstd creates a context"),
            v2: v2::Decoder::default(),
            columns: Default::default(),
            strings: Vec::new(),
        }
    }

    /// Decodes the block in `bytes` (exactly one block, nothing after it) and appends its events
    /// to `out`, whichever version it is. On error, `out` is left as it was.
    pub fn decode_into(&mut self, bytes: &[u8], out: &mut Vec<Event>) -> Result<BlockHeader, DecodeError> {
        if matches!(bytes.first(), Some(&v2::VERSION | &v2::VERSION_2)) {
            return self.v2.decode_into(bytes, &mut self.decompressor, out);
        }
        let header = BlockHeader::read_v1(bytes)?;
        self.load_columns(bytes)?;
        let start = out.len();
        let result = self.decode_events(&header, out);
        if result.is_err() {
            out.truncate(start);
        }
        result.map(|()| header)
    }

    /// Reads the directory and fills `self.columns` with each column's raw bytes.
    fn load_columns(&mut self, bytes: &[u8]) -> Result<(), DecodeError> {
        if bytes.len() < PREFIX_BYTES {
            return Err(DecodeError::Truncated { needed: PREFIX_BYTES, found: bytes.len() });
        }
        let mut data = PREFIX_BYTES;
        let mut raw_total = 0usize;
        for (i, column) in COLUMNS.into_iter().enumerate() {
            let entry = HEADER_BYTES + i * COLUMN_ENTRY_BYTES;
            let codec = bytes[entry];
            let raw_len = u32::from_le_bytes(le(bytes, entry + CODEC_BYTES)) as usize;
            let stored_len = u32::from_le_bytes(le(bytes, entry + CODEC_BYTES + RAW_LEN_BYTES)) as usize;
            raw_total += raw_len;
            if raw_total > BLOCK_RAW_BYTES_MAX {
                return Err(DecodeError::OverLimit {
                    what: "decompressed size",
                    max: BLOCK_RAW_BYTES_MAX as u64,
                    found: raw_total as u64,
                });
            }
            let end = data + stored_len;
            let Some(stored) = bytes.get(data..end) else {
                return Err(DecodeError::Truncated { needed: end, found: bytes.len() });
            };
            data = end;
            let raw = &mut self.columns[i];
            raw.clear();
            match codec {
                CODEC_RAW if stored_len == raw_len => raw.extend_from_slice(stored),
                CODEC_RAW => {
                    return Err(column_error(
                        column,
                        format!("raw column stores {stored_len} bytes but says it holds {raw_len}"),
                    ));
                }
                CODEC_ZSTD => {
                    raw.reserve(raw_len);
                    match self.decompressor.decompress_to_buffer(stored, raw) {
                        Ok(n) if n == raw_len => {}
                        Ok(n) => {
                            return Err(column_error(
                                column,
                                format!("decompressed to {n} bytes, expected {raw_len}"),
                            ));
                        }
                        Err(e) => {
                            return Err(column_error(
                                column,
                                format!("zstd: {e} (expected {raw_len} bytes)"),
                            ));
                        }
                    }
                }
                other => {
                    return Err(column_error(
                        column,
                        format!("unknown codec {other}, expected 0 (raw) or 1 (zstd)"),
                    ));
                }
            }
        }
        if data != bytes.len() {
            return Err(corrupt(format!(
                "{} bytes after the last column (block is {} bytes, columns end at {data})",
                bytes.len() - data,
                bytes.len()
            )));
        }
        Ok(())
    }

    fn load_strings(&mut self) -> Result<(), DecodeError> {
        self.strings.clear();
        let table = &self.columns[Column::StringTable as usize];
        if table.is_empty() {
            return Ok(());
        }
        let err = |reason: String| column_error(Column::StringTable, reason);
        let mut r = Reader::new(table);
        let count = r.varint().map_err(|e| err(varint_reason(e, "the string count")))?;
        // Each string takes at least its one-byte length, which bounds the count by the bytes.
        if count > table.len() as u64 {
            return Err(err(format!("{count} strings cannot fit in {} bytes", table.len())));
        }
        for i in 0..count {
            let len = r.varint().map_err(|e| err(varint_reason(e, "a string length")))?;
            if len > STRING_BYTES_MAX as u64 {
                return Err(err(format!("string {i} is {len} bytes, expected at most {STRING_BYTES_MAX}")));
            }
            let bytes = r
                .bytes(len as usize)
                .map_err(|_| err(format!("string {i} of {len} bytes runs past the column")))?;
            let s = std::str::from_utf8(bytes).map_err(|e| err(format!("string {i} is not UTF-8: {e}")))?;
            self.strings.push(s.to_owned());
        }
        if !r.is_at_end() {
            return Err(err(format!("{} bytes after the last string", table.len() - r.position())));
        }
        Ok(())
    }

    fn decode_events(&mut self, header: &BlockHeader, out: &mut Vec<Event>) -> Result<(), DecodeError> {
        self.load_strings()?;
        let n = header.event_count as usize;
        let kinds = self.columns[Column::Kinds as usize].as_slice();
        if kinds.len() != n {
            return Err(column_error(Column::Kinds, format!("holds {} kinds for {n} events", kinds.len())));
        }
        let mut state = EventReader {
            time: Reader::new(&self.columns[Column::Time as usize]),
            px: Reader::new(&self.columns[Column::PointerX as usize]),
            py: Reader::new(&self.columns[Column::PointerY as usize]),
            ints: Reader::new(&self.columns[Column::Ints as usize]),
            refs: Reader::new(&self.columns[Column::StringRefs as usize]),
            strings: &self.strings,
            unit: header.t_unit_us as i64,
            t_us: header.t_first_us,
            x: 0,
            y: 0,
            vx: 0,
            vy: 0,
        };
        out.reserve(n);
        for (index, &byte) in kinds.iter().enumerate() {
            if let Err(fault) = state.event(index, byte, out) {
                return Err(fault.into_error(index, &self.strings));
            }
        }
        for (reader, column) in [
            (&state.time, Column::Time),
            (&state.px, Column::PointerX),
            (&state.py, Column::PointerY),
            (&state.ints, Column::Ints),
            (&state.refs, Column::StringRefs),
        ] {
            if !reader.is_at_end() {
                return Err(column_error(column, "bytes left after the last event"));
            }
        }
        Ok(())
    }
}

/// What went wrong with one event, kept small and cheap so the decoding loop stays tight; turned
/// into a [`DecodeError`] with the event's index once, on the way out.
#[derive(Clone, Copy, Debug)]
enum Fault {
    Varint(Column, VarintError),
    Range(Column),
    Kind(u8),
    StringRef(u64),
}

impl Fault {
    #[cold]
    fn into_error(self, index: usize, strings: &[String]) -> DecodeError {
        match self {
            Fault::Varint(column, e) => {
                column_error(column, varint_reason(e, &format!("event {index}'s value")))
            }
            Fault::Range(column) => {
                column_error(column, format!("event {index}'s value leaves the range of its field"))
            }
            Fault::Kind(byte) if byte & KIND_MASK <= KIND_MARKER => column_error(
                Column::Kinds,
                format!(
                    "event {index}: flags {:#x} are not valid for kind {}",
                    byte >> FLAG_SHIFT,
                    byte & KIND_MASK
                ),
            ),
            Fault::Kind(byte) => {
                column_error(Column::Kinds, format!("event {index}: unknown kind {}", byte & KIND_MASK))
            }
            Fault::StringRef(id) => column_error(
                Column::StringRefs,
                format!("event {index} names string {id}, but the table holds {}", strings.len()),
            ),
        }
    }
}

/// The decoding state of one block: a reader per column and the running time and pointer.
struct EventReader<'a> {
    time: Reader<'a>,
    px: Reader<'a>,
    py: Reader<'a>,
    ints: Reader<'a>,
    refs: Reader<'a>,
    strings: &'a [String],
    /// `t_unit_us`, at most `i64::MAX` (checked with the header).
    unit: i64,
    t_us: u64,
    x: i64,
    y: i64,
    vx: i64,
    vy: i64,
}

/// Undoes the second difference of one coordinate: `dd` is the change in velocity.
#[inline(always)]
fn coordinate(r: &mut Reader<'_>, column: Column, p: &mut i64, v: &mut i64) -> Result<i32, Fault> {
    let dd = r.signed().map_err(|e| Fault::Varint(column, e))?;
    let d = v.checked_add(dd).ok_or(Fault::Range(column))?;
    let q = p.checked_add(d).ok_or(Fault::Range(column))?;
    let q32 = i32::try_from(q).map_err(|_| Fault::Range(column))?;
    (*v, *p) = (d, q);
    Ok(q32)
}

impl EventReader<'_> {
    /// Decodes event `index`, whose kind byte is `byte`, onto `out`. Pushing here rather than
    /// returning the event lets a move be written straight into the vector (measured: returning it
    /// through a `Result` cost a stack copy and a store-forwarding stall per event).
    #[inline(always)]
    fn event(&mut self, index: usize, byte: u8, out: &mut Vec<Event>) -> Result<(), Fault> {
        if index > 0 {
            let q = self.time.signed().map_err(|e| Fault::Varint(Column::Time, e))?;
            let delta = q.checked_mul(self.unit).ok_or(Fault::Range(Column::Time))?;
            self.t_us = self.t_us.wrapping_add(delta as u64);
        }
        if byte == KIND_MOVE {
            let (x, y) = self.pointer()?;
            out.push(Event { t_us: self.t_us, kind: EventKind::Move { x, y } });
        } else {
            let kind = self.rare_kind(byte)?;
            out.push(Event { t_us: self.t_us, kind });
        }
        Ok(())
    }

    #[inline(always)]
    fn pointer(&mut self) -> Result<(i32, i32), Fault> {
        let x = coordinate(&mut self.px, Column::PointerX, &mut self.x, &mut self.vx)?;
        let y = coordinate(&mut self.py, Column::PointerY, &mut self.y, &mut self.vy)?;
        Ok((x, y))
    }

    fn string(&mut self) -> Result<String, Fault> {
        let id = self.refs.varint().map_err(|e| Fault::Varint(Column::StringRefs, e))?;
        self.strings.get(id as usize).cloned().ok_or(Fault::StringRef(id))
    }

    fn int(&mut self) -> Result<i32, Fault> {
        let v = self.ints.signed().map_err(|e| Fault::Varint(Column::Ints, e))?;
        i32::try_from(v).map_err(|_| Fault::Range(Column::Ints))
    }

    fn uint(&mut self) -> Result<u32, Fault> {
        let v = self.ints.varint().map_err(|e| Fault::Varint(Column::Ints, e))?;
        u32::try_from(v).map_err(|_| Fault::Range(Column::Ints))
    }

    /// Every kind but a plain move, out of the hot loop.
    #[inline(never)]
    fn rare_kind(&mut self, byte: u8) -> Result<EventKind, Fault> {
        let kind = byte & KIND_MASK;
        let flags = byte >> FLAG_SHIFT;
        Ok(match kind {
            KIND_DOWN | KIND_UP => {
                let button = Button::from_code(flags).ok_or(Fault::Kind(byte))?;
                let (x, y) = self.pointer()?;
                if kind == KIND_DOWN {
                    EventKind::Down { button, x, y }
                } else {
                    EventKind::Up { button, x, y }
                }
            }
            KIND_WHEEL if flags == 0 => {
                let (x, y) = self.pointer()?;
                let (dx, dy) = (self.int()?, self.int()?);
                EventKind::Wheel { dx, dy, x, y }
            }
            KIND_KEY_DOWN | KIND_KEY_UP if byte & !(KIND_MASK | FLAG_KEY_HAS_TEXT | FLAG_KEY_SECURE) == 0 => {
                let code = self.string()?;
                let text = if byte & FLAG_KEY_HAS_TEXT != 0 { Some(self.string()?) } else { None };
                let key = Key { code, text, secure: byte & FLAG_KEY_SECURE != 0 };
                if kind == KIND_KEY_DOWN { EventKind::KeyDown(key) } else { EventKind::KeyUp(key) }
            }
            KIND_TEXT if flags == 0 => EventKind::Text { text: self.string()? },
            KIND_FOCUS if byte & !(KIND_MASK | FLAG_FOCUS_HAS_TITLE) == 0 => {
                let app = self.string()?;
                let title = if byte & FLAG_FOCUS_HAS_TITLE != 0 { Some(self.string()?) } else { None };
                EventKind::Focus { app, title }
            }
            KIND_SCREEN if flags == 0 => EventKind::Screen { w: self.uint()?, h: self.uint()? },
            KIND_MARKER if flags == 0 => EventKind::Marker { label: self.string()? },
            _ => return Err(Fault::Kind(byte)),
        })
    }
}

fn varint_reason(e: VarintError, what: &str) -> String {
    match e {
        VarintError::Truncated => format!("the column ends before {what}"),
        VarintError::Overlong => format!("{what} is a varint longer than 64 bits"),
    }
}
