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
    #[error("block format version {found} is not supported (this build reads version {BLOCK_VERSION})")]
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
    /// Reads and checks the fixed header.
    pub fn read(bytes: &[u8]) -> Result<BlockHeader, DecodeError> {
        if bytes.len() < HEADER_BYTES {
            return Err(DecodeError::Truncated { needed: HEADER_BYTES, found: bytes.len() });
        }
        let version = bytes[OFFSET_VERSION];
        if version != BLOCK_VERSION {
            return Err(DecodeError::UnsupportedVersion { found: version });
        }
        let columns = bytes[OFFSET_COLUMN_COUNT];
        if usize::from(columns) != COLUMN_COUNT {
            return Err(corrupt(format!(
                "expected {COLUMN_COUNT} columns in a version {BLOCK_VERSION} block, found {columns}"
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
        if t_unit_us == 0 || t_unit_us > 1 << 62 {
            return Err(corrupt(format!("expected a time unit in 1..=2^62, found {t_unit_us}")));
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
            columns: Default::default(),
            strings: Vec::new(),
        }
    }

    /// Decodes the block in `bytes` (exactly one block, nothing after it) and appends its events
    /// to `out`. On error, `out` is left as it was.
    pub fn decode_into(&mut self, bytes: &[u8], out: &mut Vec<Event>) -> Result<BlockHeader, DecodeError> {
        let header = BlockHeader::read(bytes)?;
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
            let stored_len =
                u32::from_le_bytes(le(bytes, entry + CODEC_BYTES + RAW_LEN_BYTES)) as usize;
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
                            return Err(column_error(column, format!("zstd: {e} (expected {raw_len} bytes)")));
                        }
                    }
                }
                other => {
                    return Err(column_error(column, format!("unknown codec {other}, expected 0 (raw) or 1 (zstd)")));
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
            let s = std::str::from_utf8(bytes)
                .map_err(|e| err(format!("string {i} is not UTF-8: {e}")))?;
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
            return Err(column_error(
                Column::Kinds,
                format!("holds {} kinds for {n} events", kinds.len()),
            ));
        }
        let mut time = Reader::new(&self.columns[Column::Time as usize]);
        let mut px = Reader::new(&self.columns[Column::PointerX as usize]);
        let mut py = Reader::new(&self.columns[Column::PointerY as usize]);
        let mut ints = Reader::new(&self.columns[Column::Ints as usize]);
        let mut refs = Reader::new(&self.columns[Column::StringRefs as usize]);
        let strings = &self.strings;
        let mut string = |index: usize| -> Result<String, DecodeError> {
            let id = refs
                .varint()
                .map_err(|e| column_error(Column::StringRefs, varint_reason(e, &format!("event {index}'s string"))))?;
            strings.get(id as usize).cloned().ok_or_else(|| {
                column_error(
                    Column::StringRefs,
                    format!("event {index} names string {id}, but the table holds {}", strings.len()),
                )
            })
        };

        out.reserve(n);
        let unit = i128::from(header.t_unit_us);
        let mut t_us = header.t_first_us;
        let (mut x, mut y, mut vx, mut vy) = (0i64, 0i64, 0i64, 0i64);
        for (index, &byte) in kinds.iter().enumerate() {
            if index > 0 {
                let q = time
                    .signed()
                    .map_err(|e| column_error(Column::Time, varint_reason(e, &format!("event {index}'s time"))))?;
                let delta = i64::try_from(i128::from(q) * unit).map_err(|_| {
                    column_error(Column::Time, format!("event {index}'s time step overflows 64 bits"))
                })?;
                t_us = t_us.wrapping_add(delta as u64);
            }
            let kind = byte & KIND_MASK;
            let flags = byte >> FLAG_SHIFT;
            let mut pointer = || -> Result<(i32, i32), DecodeError> {
                let pos = |r: &mut Reader<'_>, column, p: &mut i64, v: &mut i64| {
                    let dd = r.signed().map_err(|e| {
                        column_error(column, varint_reason(e, &format!("event {index}'s coordinate")))
                    })?;
                    let next = v.checked_add(dd).and_then(|d| Some((d, p.checked_add(d)?)));
                    match next {
                        Some((d, q)) if i32::try_from(q).is_ok() => {
                            (*v, *p) = (d, q);
                            Ok(q as i32)
                        }
                        _ => Err(column_error(column, format!("event {index}'s coordinate leaves the i32 range"))),
                    }
                };
                Ok((pos(&mut px, Column::PointerX, &mut x, &mut vx)?, pos(&mut py, Column::PointerY, &mut y, &mut vy)?))
            };
            let bad_flags = || {
                column_error(Column::Kinds, format!("event {index}: flags {flags:#x} are not valid for kind {kind}"))
            };
            let event_kind = match kind {
                KIND_MOVE if flags == 0 => {
                    let (x, y) = pointer()?;
                    EventKind::Move { x, y }
                }
                KIND_DOWN | KIND_UP => {
                    let button = Button::from_code(flags).ok_or_else(bad_flags)?;
                    let (x, y) = pointer()?;
                    if kind == KIND_DOWN {
                        EventKind::Down { button, x, y }
                    } else {
                        EventKind::Up { button, x, y }
                    }
                }
                KIND_WHEEL if flags == 0 => {
                    let (x, y) = pointer()?;
                    let mut int = || -> Result<i32, DecodeError> {
                        let v = ints.signed().map_err(|e| {
                            column_error(Column::Ints, varint_reason(e, &format!("event {index}'s wheel delta")))
                        })?;
                        i32::try_from(v).map_err(|_| {
                            column_error(Column::Ints, format!("event {index}'s wheel delta {v} leaves the i32 range"))
                        })
                    };
                    let (dx, dy) = (int()?, int()?);
                    EventKind::Wheel { dx, dy, x, y }
                }
                KIND_KEY_DOWN | KIND_KEY_UP
                    if byte & !(KIND_MASK | FLAG_KEY_HAS_TEXT | FLAG_KEY_SECURE) == 0 =>
                {
                    let code = string(index)?;
                    let text = if byte & FLAG_KEY_HAS_TEXT != 0 { Some(string(index)?) } else { None };
                    let key = Key { code, text, secure: byte & FLAG_KEY_SECURE != 0 };
                    if kind == KIND_KEY_DOWN { EventKind::KeyDown(key) } else { EventKind::KeyUp(key) }
                }
                KIND_TEXT if flags == 0 => EventKind::Text { text: string(index)? },
                KIND_FOCUS if byte & !(KIND_MASK | FLAG_FOCUS_HAS_TITLE) == 0 => {
                    let app = string(index)?;
                    let title =
                        if byte & FLAG_FOCUS_HAS_TITLE != 0 { Some(string(index)?) } else { None };
                    EventKind::Focus { app, title }
                }
                KIND_SCREEN if flags == 0 => {
                    let mut dim = || -> Result<u32, DecodeError> {
                        let v = ints.varint().map_err(|e| {
                            column_error(Column::Ints, varint_reason(e, &format!("event {index}'s screen size")))
                        })?;
                        u32::try_from(v).map_err(|_| {
                            column_error(Column::Ints, format!("event {index}'s screen size {v} leaves the u32 range"))
                        })
                    };
                    let (w, h) = (dim()?, dim()?);
                    EventKind::Screen { w, h }
                }
                KIND_MARKER if flags == 0 => EventKind::Marker { label: string(index)? },
                KIND_MOVE..=KIND_MARKER => return Err(bad_flags()),
                other => {
                    return Err(column_error(Column::Kinds, format!("event {index}: unknown kind {other}")));
                }
            };
            out.push(Event { t_us, kind: event_kind });
        }
        for (reader, column) in [
            (&time, Column::Time),
            (&px, Column::PointerX),
            (&py, Column::PointerY),
            (&ints, Column::Ints),
        ] {
            if !reader.is_at_end() {
                return Err(column_error(column, "bytes left after the last event"));
            }
        }
        drop(string);
        if !refs.is_at_end() {
            return Err(column_error(Column::StringRefs, "bytes left after the last event"));
        }
        Ok(())
    }
}

fn varint_reason(e: VarintError, what: &str) -> String {
    match e {
        VarintError::Truncated => format!("the column ends before {what}"),
        VarintError::Overlong => format!("{what} is a varint longer than 64 bits"),
    }
}
