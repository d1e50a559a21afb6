//! Encoding events into a block.

use std::collections::HashMap;

use crate::event::{Event, EventKind, Key};
use crate::limits::{BLOCK_EVENTS_MAX, BLOCK_RAW_BYTES_MAX, STRING_BYTES_MAX};

use super::varint::{put, zigzag};
use super::*;

/// Why events could not be encoded. Nothing is written when encoding fails.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    #[error("a block holds at most {max} events, found {found}")]
    TooManyEvents { max: usize, found: usize },
    #[error("event {index}: a string of {found} bytes, expected at most {max}")]
    StringTooLong { index: usize, max: usize, found: usize },
    #[error("the block's columns take {found} bytes, expected at most {max}")]
    TooLarge { max: usize, found: usize },
    #[error("zstd failed to compress column {column}: {reason}")]
    Compress { column: &'static str, reason: String },
}

/// Encodes blocks, reusing its buffers and zstd context from one block to the next.
pub struct BlockEncoder {
    level: i32,
    version: u8,
    v2: v2::Encoder,
    compressor: zstd::bulk::Compressor<'static>,
    columns: [Vec<u8>; COLUMN_COUNT],
    compressed: Vec<u8>,
}

impl std::fmt::Debug for BlockEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockEncoder")
            .field("level", &self.level)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl Default for BlockEncoder {
    fn default() -> Self {
        BlockEncoder::new(DEFAULT_ZSTD_LEVEL)
    }
}

impl BlockEncoder {
    /// An encoder writing the current format, [`BLOCK_VERSION`]; `level` is the zstd level for
    /// the parts still compressed with zstd (version 2: the block's new strings), clamped to
    /// zstd's range.
    pub fn new(level: i32) -> Self {
        BlockEncoder::with_version(BLOCK_VERSION, level)
    }

    /// An encoder writing version 1 blocks (zstd over delta-coded columns), for comparison and
    /// for tests of stores written before version 2.
    pub fn v1(level: i32) -> Self {
        BlockEncoder::with_version(BLOCK_VERSION_1, level)
    }

    fn with_version(version: u8, level: i32) -> Self {
        let range = zstd::compression_level_range();
        let level = level.clamp(*range.start(), *range.end());
        let mut compressor =
            zstd::bulk::Compressor::new(level).expect("zstd accepts every level in its range");
        // The directory stores each column's length, so zstd's own copy of it is redundant.
        compressor
            .set_parameter(zstd::zstd_safe::CParameter::ContentSizeFlag(false))
            .expect("zstd accepts ContentSizeFlag");
        BlockEncoder {
            level,
            version,
            v2: v2::Encoder::default(),
            compressor,
            columns: Default::default(),
            compressed: Vec::new(),
        }
    }

    /// The zstd level in use.
    pub fn level(&self) -> i32 {
        self.level
    }

    /// The block format version this encoder writes.
    pub fn version(&self) -> u8 {
        self.version
    }

    /// Where the bits of the last version 2 block this encoder wrote (`total` bytes) went.
    pub fn breakdown(&self, total: usize) -> Breakdown {
        self.v2.breakdown(total)
    }

    /// Appends one block holding `events` to `out`. On error `out` is left as it was.
    pub fn encode(&mut self, events: &[Event], out: &mut Vec<u8>) -> Result<(), EncodeError> {
        if events.len() > BLOCK_EVENTS_MAX {
            return Err(EncodeError::TooManyEvents { max: BLOCK_EVENTS_MAX, found: events.len() });
        }
        if self.version == v2::VERSION {
            return self.v2.encode(events, &mut self.compressor, out);
        }
        let t_unit_us = time_unit(events);
        self.fill_columns(events, t_unit_us)?;
        let raw_total: usize = self.columns.iter().map(Vec::len).sum();
        if raw_total > BLOCK_RAW_BYTES_MAX {
            return Err(EncodeError::TooLarge { max: BLOCK_RAW_BYTES_MAX, found: raw_total });
        }

        let start = out.len();
        out.push(BLOCK_VERSION_1);
        out.push(COLUMN_COUNT as u8);
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&(events.len() as u32).to_le_bytes());
        out.extend_from_slice(&events.first().map_or(0, |e| e.t_us).to_le_bytes());
        out.extend_from_slice(&t_unit_us.to_le_bytes());
        debug_assert_eq!(out.len() - start, HEADER_BYTES);
        let directory = out.len();
        out.resize(directory + COLUMN_COUNT * COLUMN_ENTRY_BYTES, 0);

        for (i, column) in COLUMNS.into_iter().enumerate() {
            let raw = &self.columns[i];
            let mut codec = CODEC_RAW;
            let mut stored = raw.as_slice();
            if raw.len() > 16 {
                self.compressed.clear();
                self.compressed.reserve(zstd::zstd_safe::compress_bound(raw.len()));
                if let Err(e) = self.compressor.compress_to_buffer(raw, &mut self.compressed) {
                    out.truncate(start);
                    return Err(EncodeError::Compress { column: column.name(), reason: e.to_string() });
                }
                if self.compressed.len() < raw.len() {
                    codec = CODEC_ZSTD;
                    stored = &self.compressed;
                }
            }
            let entry = directory + i * COLUMN_ENTRY_BYTES;
            out[entry] = codec;
            out[entry + CODEC_BYTES..entry + CODEC_BYTES + RAW_LEN_BYTES]
                .copy_from_slice(&(raw.len() as u32).to_le_bytes());
            out[entry + CODEC_BYTES + RAW_LEN_BYTES..entry + COLUMN_ENTRY_BYTES]
                .copy_from_slice(&(stored.len() as u32).to_le_bytes());
            out.extend_from_slice(stored);
        }
        Ok(())
    }

    fn fill_columns(&mut self, events: &[Event], t_unit_us: u64) -> Result<(), EncodeError> {
        let [kinds, time, px, py, ints, refs, table] = &mut self.columns;
        for c in [&mut *kinds, &mut *time, &mut *px, &mut *py, &mut *ints, &mut *refs, &mut *table] {
            c.clear();
        }
        kinds.reserve(events.len());
        time.reserve(events.len());
        px.reserve(events.len());
        py.reserve(events.len());

        let mut strings = Strings::default();
        let (mut x_prev, mut y_prev, mut vx_prev, mut vy_prev) = (0i64, 0i64, 0i64, 0i64);
        let mut t_prev = events.first().map_or(0, |e| e.t_us);
        for (index, event) in events.iter().enumerate() {
            if index > 0 {
                let delta = event.t_us.wrapping_sub(t_prev) as i64;
                // `time_unit` divides every delta exactly and fits an i64, so this neither
                // loses a remainder nor overflows.
                put(time, zigzag(delta / t_unit_us as i64));
                t_prev = event.t_us;
            }
            let mut pointer = |x: i32, y: i32| {
                let (dx, dy) = (i64::from(x) - x_prev, i64::from(y) - y_prev);
                put(px, zigzag(dx - vx_prev));
                put(py, zigzag(dy - vy_prev));
                (x_prev, y_prev, vx_prev, vy_prev) = (i64::from(x), i64::from(y), dx, dy);
            };
            let byte = match &event.kind {
                &EventKind::Move { x, y } => {
                    pointer(x, y);
                    KIND_MOVE
                }
                &EventKind::Down { button, x, y } => {
                    pointer(x, y);
                    KIND_DOWN | button.code() << FLAG_SHIFT
                }
                &EventKind::Up { button, x, y } => {
                    pointer(x, y);
                    KIND_UP | button.code() << FLAG_SHIFT
                }
                &EventKind::Wheel { dx, dy, x, y } => {
                    pointer(x, y);
                    put(ints, zigzag(i64::from(dx)));
                    put(ints, zigzag(i64::from(dy)));
                    KIND_WHEEL
                }
                EventKind::KeyDown(key) => KIND_KEY_DOWN | key_flags(index, key, &mut strings, refs)?,
                EventKind::KeyUp(key) => KIND_KEY_UP | key_flags(index, key, &mut strings, refs)?,
                EventKind::Text { text } => {
                    strings.put(index, text, refs)?;
                    KIND_TEXT
                }
                EventKind::Focus { app, title } => {
                    strings.put(index, app, refs)?;
                    match title {
                        Some(title) => {
                            strings.put(index, title, refs)?;
                            KIND_FOCUS | FLAG_FOCUS_HAS_TITLE
                        }
                        None => KIND_FOCUS,
                    }
                }
                &EventKind::Screen { w, h } => {
                    put(ints, u64::from(w));
                    put(ints, u64::from(h));
                    KIND_SCREEN
                }
                EventKind::Marker { label } => {
                    strings.put(index, label, refs)?;
                    KIND_MARKER
                }
            };
            kinds.push(byte);
        }
        strings.write_table(table);
        Ok(())
    }
}

fn key_flags<'a>(
    index: usize,
    key: &'a Key,
    strings: &mut Strings<'a>,
    refs: &mut Vec<u8>,
) -> Result<u8, EncodeError> {
    strings.put(index, &key.code, refs)?;
    let mut flags = if key.secure { FLAG_KEY_SECURE } else { 0 };
    if let Some(text) = &key.text {
        strings.put(index, text, refs)?;
        flags |= FLAG_KEY_HAS_TEXT;
    }
    Ok(flags)
}

/// The largest step that divides every time delta in the block (1 when there is none), so deltas
/// from a millisecond clock are stored as small numbers.
pub(super) fn time_unit(events: &[Event]) -> u64 {
    let mut unit = 0u64;
    for pair in events.windows(2) {
        let delta = (pair[1].t_us.wrapping_sub(pair[0].t_us) as i64).unsigned_abs();
        unit = gcd(unit, delta);
        if unit == 1 {
            break;
        }
    }
    // The quotient must fit an i64 for every delta; a unit of 2^63 (only i64::MIN deltas) is
    // replaced by 2^62, which divides them too.
    match unit {
        0 => 1,
        u if u > i64::MAX as u64 => 1 << 62,
        u => u,
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// The block's string table under construction: each distinct string once, in first-use order.
#[derive(Default)]
struct Strings<'a> {
    index: HashMap<&'a str, u32>,
    order: Vec<&'a str>,
}

impl<'a> Strings<'a> {
    fn put(&mut self, event: usize, s: &'a str, refs: &mut Vec<u8>) -> Result<(), EncodeError> {
        if s.len() > STRING_BYTES_MAX {
            return Err(EncodeError::StringTooLong { index: event, max: STRING_BYTES_MAX, found: s.len() });
        }
        let next = self.order.len() as u32;
        let id = *self.index.entry(s).or_insert_with(|| {
            self.order.push(s);
            next
        });
        put(refs, u64::from(id));
        Ok(())
    }

    fn write_table(&self, table: &mut Vec<u8>) {
        if self.order.is_empty() {
            return;
        }
        put(table, self.order.len() as u64);
        for s in &self.order {
            put(table, s.len() as u64);
            table.extend_from_slice(s.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_unit_finds_the_common_step() {
        let ev = |t_us| Event { t_us, kind: EventKind::Move { x: 0, y: 0 } };
        assert_eq!(time_unit(&[]), 1);
        assert_eq!(time_unit(&[ev(5), ev(5)]), 1);
        assert_eq!(time_unit(&[ev(0), ev(16_000), ev(33_000), ev(32_000)]), 1000);
        assert_eq!(time_unit(&[ev(0), ev(1 << 63)]), 1 << 62);
    }
}
