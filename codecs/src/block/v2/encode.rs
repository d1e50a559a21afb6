//! Encoding events into a version 2 block: one pass turns events into (context, token) symbols and
//! counts them, the counts become the block's tables, and the rANS coder codes the symbols last
//! first so the decoder reads them first first.

use std::collections::HashMap;

use super::ans::{EncSymbol, RansEncoder, build_enc_table};
use super::bits::BitWriter;
use super::freqs::{self, Freqs};
use super::layout::PointerLayout;
use super::*;
use crate::block::encode::{EncodeError, time_unit};
use crate::block::varint::{put, zigzag};
use crate::block::{
    CODEC_RAW, CODEC_ZSTD, FLAG_FOCUS_HAS_TITLE, FLAG_KEY_HAS_TEXT, FLAG_KEY_SECURE, FLAG_SHIFT, KIND_DOWN,
    KIND_FOCUS, KIND_KEY_DOWN, KIND_KEY_UP, KIND_MARKER, KIND_MASK, KIND_MOVE, KIND_SCREEN, KIND_TEXT,
    KIND_UP, KIND_WHEEL,
};
use crate::event::{Event, EventKind, Key};
use crate::limits::{BLOCK_RAW_BYTES_MAX, STRING_BYTES_MAX};

/// `Encoder::enc_start` of a context whose table codes in no bits.
const TRIVIAL: u32 = u32::MAX;

/// The strings section is zstd-compressed only when it is longer than this.
const STRINGS_COMPRESS_MIN: usize = 32;

/// Symbols and their counts, gathered in event order.
struct Sink {
    /// `fine context << 16 | token`.
    symbols: Vec<u32>,
    /// By fine context, then token (rows of [`ALPHABET`]).
    counts: Vec<u32>,
    /// One more than the largest symbol of the block: the part of each row in use.
    width: usize,
    /// Pointer events in the block.
    pointers: usize,
    extras: BitWriter,
}

impl Sink {
    #[inline(always)]
    fn emit(&mut self, context: usize, v: u64) {
        let (t, extra) = token(v);
        if extra > 0 {
            self.extras.put(v, extra);
        }
        self.symbols.push((context as u32) << 16 | u32::from(t));
        self.counts[context * ALPHABET + usize::from(t)] += 1;
        self.width = self.width.max(usize::from(t) + 1);
    }

    /// A symbol coded as itself, with no extra bits: the kind byte.
    #[inline(always)]
    fn emit_symbol(&mut self, context: usize, symbol: u8) {
        self.symbols.push((context as u32) << 16 | u32::from(symbol));
        self.counts[context * ALPHABET + usize::from(symbol)] += 1;
        self.width = self.width.max(usize::from(symbol) + 1);
    }
}

/// The reusable state of the version 2 encoder.
pub(crate) struct Encoder {
    sink: Sink,
    recency: [Recency; REF_LISTS],
    time_counts: Vec<u32>,
    coarse_counts: Vec<u32>,
    /// Every table's coded symbols, `width` per table, one table after another.
    enc_symbols: Vec<EncSymbol>,
    /// Where each fine context's table starts in `enc_symbols`, or [`TRIVIAL`].
    enc_start: [u32; FINE_CONTEXTS],
    table_bits: BitWriter,
    strings_raw: Vec<u8>,
    compressed: Vec<u8>,
    rans: Vec<u8>,
    last_coarse: [u8; FINE_CONTEXTS],
    freqs: Vec<Freqs>,
}

/// Where a block's bits go, in bits: the ideal cost of each symbol group under the block's
/// tables, its extra bits, the strings and the tables; `header` is the rest (the header, the
/// sections' lengths, the coder's flushed states and its few bits over the ideal).
#[derive(Clone, Copy, Debug, Default)]
pub struct Breakdown {
    pub header: f64,
    pub strings: f64,
    pub tables: f64,
    pub kinds: f64,
    pub time: f64,
    pub time_extras: f64,
    pub pointer: f64,
    pub pointer_extras: f64,
    pub other: f64,
}

impl Default for Encoder {
    fn default() -> Self {
        Encoder {
            sink: Sink {
                symbols: Vec::new(),
                counts: vec![0; FINE_CONTEXTS * ALPHABET],
                width: 0,
                pointers: 0,
                extras: BitWriter::default(),
            },
            recency: Default::default(),
            time_counts: vec![0; ALPHABET],
            coarse_counts: Vec::new(),
            enc_symbols: Vec::new(),
            enc_start: [TRIVIAL; FINE_CONTEXTS],
            table_bits: BitWriter::default(),
            strings_raw: Vec::new(),
            compressed: Vec::new(),
            rans: Vec::new(),
            last_coarse: [0; FINE_CONTEXTS],
            freqs: Vec::new(),
        }
    }
}

/// Division by the block's time unit, which divides every delta exactly: a shift by the unit's
/// power of two, then a multiply by its odd part's inverse modulo 2^64 (exact division needs no
/// division; measured: the divide was a tenth of encoding time).
#[derive(Clone, Copy)]
struct ExactDivisor {
    shift: u32,
    inverse: u64,
}

impl ExactDivisor {
    /// For `unit` in `1..=i64::MAX` (what `time_unit` returns).
    fn new(unit: u64) -> ExactDivisor {
        let shift = unit.trailing_zeros();
        let odd = unit >> shift;
        // Newton's iteration doubles the correct low bits each step: 3 (an odd number is its own
        // inverse modulo 8), 6, 12, 24, 48, 96.
        let mut inverse = odd;
        for _ in 0..5 {
            inverse = inverse.wrapping_mul(2u64.wrapping_sub(odd.wrapping_mul(inverse)));
        }
        debug_assert_eq!(odd.wrapping_mul(inverse), 1);
        ExactDivisor { shift, inverse }
    }

    /// `v / unit` for a `v` that `unit` divides.
    #[inline(always)]
    fn divide(self, v: i64) -> i64 {
        ((v >> self.shift) as u64).wrapping_mul(self.inverse) as i64
    }
}

/// The kind byte of an event (docs/FORMAT.md, "kind byte"; the same as version 1's).
fn kind_byte(kind: &EventKind) -> u8 {
    let key = |k: &Key| {
        (if k.secure { FLAG_KEY_SECURE } else { 0 }) | (if k.text.is_some() { FLAG_KEY_HAS_TEXT } else { 0 })
    };
    match kind {
        EventKind::Move { .. } => KIND_MOVE,
        EventKind::Down { button, .. } => KIND_DOWN | button.code() << FLAG_SHIFT,
        EventKind::Up { button, .. } => KIND_UP | button.code() << FLAG_SHIFT,
        EventKind::Wheel { .. } => KIND_WHEEL,
        EventKind::KeyDown(k) => KIND_KEY_DOWN | key(k),
        EventKind::KeyUp(k) => KIND_KEY_UP | key(k),
        EventKind::Text { .. } => KIND_TEXT,
        EventKind::Focus { title: Some(_), .. } => KIND_FOCUS | FLAG_FOCUS_HAS_TITLE,
        EventKind::Focus { title: None, .. } => KIND_FOCUS,
        EventKind::Screen { .. } => KIND_SCREEN,
        EventKind::Marker { .. } => KIND_MARKER,
    }
}

/// The strings of one block that the dictionary does not hold, in first-use order.
#[derive(Default)]
struct Strings<'a> {
    index: HashMap<&'a str, u32>,
    order: Vec<&'a str>,
}

impl<'a> Strings<'a> {
    fn id(&mut self, event: usize, s: &'a str) -> Result<u32, EncodeError> {
        if let Some(id) = dictionary::find(s) {
            return Ok(id);
        }
        if s.len() > STRING_BYTES_MAX {
            return Err(EncodeError::StringTooLong { index: event, max: STRING_BYTES_MAX, found: s.len() });
        }
        let next = (dictionary::LEN + self.order.len()) as u32;
        Ok(*self.index.entry(s).or_insert_with(|| {
            self.order.push(s);
            next
        }))
    }
}

/// The ideal cost in bits of coding `counts` with their own table, plus a rough table size (about
/// what a table spends per symbol).
fn cost(counts: &[u32]) -> f64 {
    let mut n = 0u64;
    let mut sum_c_log_c = 0.0;
    let mut symbols = 0u32;
    for &c in counts.iter().filter(|&&c| c > 0) {
        n += u64::from(c);
        sum_c_log_c += freqs::x_log2_x(c);
        symbols += 1;
    }
    if n == 0 {
        return 1.0;
    }
    (n as f64) * (n as f64).log2() - sum_c_log_c + 5.5 * f64::from(symbols)
}

impl Encoder {
    /// Appends one version 2 block holding `events` to `out`. On error `out` is left as it was.
    pub(crate) fn encode(
        &mut self,
        events: &[Event],
        compressor: &mut zstd::bulk::Compressor<'static>,
        out: &mut Vec<u8>,
    ) -> Result<(), EncodeError> {
        let t_unit = time_unit(events);
        let t_first = events.first().map_or(0, |e| e.t_us);
        let unit = ExactDivisor::new(t_unit);
        let mode = self.time_mode(events, unit);
        let mut strings = Strings::default();
        self.symbols(events, unit, mode, &mut strings)?;
        self.strings_section(&strings, compressor)?;

        let layout = self.pointer_layout();
        let time_grouping = self.time_grouping();
        let coarse = self.tables(mode, time_grouping, &layout);

        // Code the symbols last first, alternating lanes over the symbols of non-trivial tables.
        let mut rans = RansEncoder::new(std::mem::take(&mut self.rans));
        for &s in self.sink.symbols.iter().rev() {
            let start = self.enc_start[(s >> 16) as usize];
            if start != TRIVIAL {
                rans.put(self.enc_symbols[start as usize + (s & 0xffff) as usize]);
            }
        }
        self.rans = rans.finish();
        self.sink.extras.finish();
        self.last_coarse = coarse;

        let start = out.len();
        out.push(VERSION);
        put(out, events.len() as u64);
        put(out, t_first);
        put(out, t_unit);
        out.extend_from_slice(&self.strings_raw);
        put(out, self.table_bits.bytes.len() as u64);
        out.extend_from_slice(&self.table_bits.bytes);
        put(out, self.rans.len() as u64);
        out.extend_from_slice(&self.rans);
        out.extend_from_slice(&self.sink.extras.bytes);
        if out.len() - start > BLOCK_RAW_BYTES_MAX {
            let found = out.len() - start;
            out.truncate(start);
            return Err(EncodeError::TooLarge { max: BLOCK_RAW_BYTES_MAX, found });
        }
        Ok(())
    }

    /// Where the bits of the block just encoded (`total` bytes) went.
    pub(crate) fn breakdown(&self, total: usize) -> Breakdown {
        let mut b = Breakdown {
            strings: self.strings_raw.len() as f64 * 8.0,
            tables: self.table_bits.bytes.len() as f64 * 8.0,
            ..Breakdown::default()
        };
        for &s in &self.sink.symbols {
            let fine = (s >> 16) as usize;
            let t = (s & 0xffff) as u16;
            let freqs = &self.freqs[usize::from(self.last_coarse[fine])];
            let bits = if freqs.symbols.len() <= 1 {
                0.0
            } else {
                let f = freqs.symbols.iter().find(|x| x.0 == t).expect("coded symbol").1;
                f64::from(freqs.precision) - f64::from(f).log2()
            };
            let extra =
                if fine < FINE_TIME || u64::from(t) < DIRECT { 0.0 } else { f64::from(token_shape(t).0 - 2) };
            if fine < FINE_TIME {
                b.kinds += bits;
            } else if fine < FINE_POINTER {
                b.time += bits;
                b.time_extras += extra;
            } else if fine < FINE_INTS {
                b.pointer += bits;
                b.pointer_extras += extra;
            } else {
                b.other += bits + extra;
            }
        }
        let counted =
            b.strings + b.tables + b.kinds + b.time + b.time_extras + b.pointer + b.pointer_extras + b.other;
        b.header = total as f64 * 8.0 - counted;
        b
    }

    /// The most common time token of the block (0 when there are no deltas).
    fn time_mode(&mut self, events: &[Event], unit: ExactDivisor) -> u16 {
        self.time_counts.fill(0);
        for pair in events.windows(2) {
            let q = unit.divide(pair[1].t_us.wrapping_sub(pair[0].t_us) as i64);
            self.time_counts[usize::from(token(zigzag(q)).0)] += 1;
        }
        let max = self.time_counts.iter().copied().max().unwrap_or(0);
        self.time_counts.iter().position(|&c| c == max).unwrap_or(0) as u16
    }

    /// Turns every event into symbols, counted by fine context.
    fn symbols<'a>(
        &mut self,
        events: &'a [Event],
        unit: ExactDivisor,
        mode: u16,
        strings: &mut Strings<'a>,
    ) -> Result<(), EncodeError> {
        let sink = &mut self.sink;
        sink.symbols.clear();
        sink.symbols.reserve(events.len() * 4);
        // Only the part of each row the previous block used can be non-zero.
        for row in sink.counts.chunks_exact_mut(ALPHABET) {
            row[..sink.width].fill(0);
        }
        sink.width = 0;
        sink.pointers = 0;
        sink.extras.clear();
        for r in &mut self.recency {
            r.clear();
        }
        let recency = &mut self.recency;

        let mut kind_ctx = kind_context(KIND_MOVE, 0);
        let mut held = 0;
        let mut time_ctx = TIME_CONTEXT_FIRST;
        let mut t_prev = events.first().map_or(0, |e| e.t_us);
        let (mut x, mut y, mut vx, mut vy, mut rx, mut ry) = (0i64, 0i64, 0i64, 0i64, 0i64, 0i64);
        for (index, event) in events.iter().enumerate() {
            let byte = kind_byte(&event.kind);
            sink.emit_symbol(FINE_KIND + kind_ctx, byte);
            held = held_after(held, byte & KIND_MASK);
            kind_ctx = kind_context(byte & KIND_MASK, held);
            if index > 0 {
                let q = unit.divide(event.t_us.wrapping_sub(t_prev) as i64);
                let z = zigzag(q);
                if is_button(byte & KIND_MASK) {
                    sink.emit(FINE_TIME + TIME_BUTTON, z);
                } else {
                    sink.emit(FINE_TIME + time_ctx, z);
                    time_ctx = time_context(token(z).0, mode);
                }
                t_prev = event.t_us;
            }
            let mut pointer = |sink: &mut Sink, px: i32, py: i32| {
                let (dx, dy) = (i64::from(px) - x, i64::from(py) - y);
                sink.emit(FINE_POINTER + pointer_fine(vx, rx), zigzag(along(dx - vx, vx)));
                sink.emit(FINE_POINTER + pointer_fine(vy, ry), zigzag(along(dy - vy, vy)));
                (rx, ry) = (dx - vx, dy - vy);
                (x, y, vx, vy) = (i64::from(px), i64::from(py), dx, dy);
                sink.pointers += 1;
            };
            let mut string = |sink: &mut Sink, context: usize, s: &'a str| -> Result<(), EncodeError> {
                let id = strings.id(index, s)?;
                sink.emit(FINE_REFS + context, recency[REF_LIST[context]].reference(id));
                Ok(())
            };
            match &event.kind {
                &EventKind::Move { x, y } | &EventKind::Down { x, y, .. } | &EventKind::Up { x, y, .. } => {
                    pointer(sink, x, y);
                }
                &EventKind::Wheel { dx, dy, x, y } => {
                    pointer(sink, x, y);
                    sink.emit(FINE_INTS, zigzag(i64::from(dx)));
                    sink.emit(FINE_INTS, zigzag(i64::from(dy)));
                }
                EventKind::KeyDown(key) | EventKind::KeyUp(key) => {
                    let down = matches!(event.kind, EventKind::KeyDown(_));
                    string(sink, if down { REF_CODE_DOWN } else { REF_CODE_UP }, &key.code)?;
                    if let Some(text) = &key.text {
                        string(sink, if down { REF_TEXT_DOWN } else { REF_TEXT_UP }, text)?;
                    }
                }
                EventKind::Text { text } => string(sink, REF_TEXT, text)?,
                EventKind::Focus { app, title } => {
                    string(sink, REF_APP, app)?;
                    if let Some(title) = title {
                        string(sink, REF_TITLE, title)?;
                    }
                }
                &EventKind::Screen { w, h } => {
                    sink.emit(FINE_INTS, u64::from(w));
                    sink.emit(FINE_INTS, u64::from(h));
                }
                EventKind::Marker { label } => string(sink, REF_LABEL, label)?,
            }
        }
        Ok(())
    }

    /// Fills `strings_raw` with the strings section: the count, then (when there are any) the
    /// codec, the raw and stored lengths and the stored bytes.
    fn strings_section(
        &mut self,
        strings: &Strings<'_>,
        compressor: &mut zstd::bulk::Compressor<'static>,
    ) -> Result<(), EncodeError> {
        self.strings_raw.clear();
        put(&mut self.strings_raw, strings.order.len() as u64);
        if strings.order.is_empty() {
            return Ok(());
        }
        let mut raw = Vec::new();
        for s in &strings.order {
            put(&mut raw, s.len() as u64);
            raw.extend_from_slice(s.as_bytes());
        }
        if raw.len() > BLOCK_RAW_BYTES_MAX {
            return Err(EncodeError::TooLarge { max: BLOCK_RAW_BYTES_MAX, found: raw.len() });
        }
        let mut codec = CODEC_RAW;
        if raw.len() > STRINGS_COMPRESS_MIN {
            self.compressed.clear();
            self.compressed.reserve(zstd::zstd_safe::compress_bound(raw.len()));
            compressor
                .compress_to_buffer(&raw, &mut self.compressed)
                .map_err(|e| EncodeError::Compress { column: "strings", reason: e.to_string() })?;
            if self.compressed.len() < raw.len() {
                codec = CODEC_ZSTD;
            }
        }
        let stored = if codec == CODEC_ZSTD { &self.compressed } else { &raw };
        self.strings_raw.push(codec);
        put(&mut self.strings_raw, raw.len() as u64);
        put(&mut self.strings_raw, stored.len() as u64);
        self.strings_raw.extend_from_slice(stored);
        Ok(())
    }

    /// How this block groups its time contexts: the grouping that codes the time symbols in
    /// the fewest bits, tables included.
    fn time_grouping(&self) -> usize {
        let counts = &self.sink.counts;
        let width = self.sink.width;
        let mut merged = vec![0u32; width];
        let mut best = (f64::INFINITY, 0);
        for (grouping, groups) in TIME_GROUPINGS.iter().enumerate() {
            let mut bits = 0.0;
            for group in 0..TIME_GROUPS[grouping] {
                merged.fill(0);
                for c in (0..TIME_CONTEXTS).filter(|&c| usize::from(groups[c]) == group) {
                    let row = &counts[(FINE_TIME + c) * ALPHABET..][..width];
                    for (m, &n) in merged.iter_mut().zip(row) {
                        *m += n;
                    }
                }
                bits += cost(&merged);
            }
            if bits < best.0 {
                best = (bits, grouping);
            }
        }
        best.1
    }

    /// How this block groups its pointer contexts: the grouping of the previous second
    /// difference's classes, and each group's velocity bucket count, that code the pointer
    /// symbols in the fewest bits, tables included.
    fn pointer_layout(&self) -> PointerLayout {
        // A block without pointer events (typing) has one empty pointer table whatever the
        // search says: the search itself was most of encoding a short typing session.
        if self.sink.pointers == 0 {
            return PointerLayout::default();
        }
        let counts = &self.sink.counts;
        let width = self.sink.width;
        let row = |r: usize, v: usize| {
            let c = FINE_POINTER + r * POINTER_V + v;
            &counts[c * ALPHABET..][..width]
        };
        let mut best = (f64::INFINITY, PointerLayout::default());
        let mut rows = vec![vec![0u32; width]; POINTER_V];
        let mut merged = vec![0u32; width];
        for (grouping, classes) in POINTER_GROUPINGS.iter().enumerate() {
            let mut layout = PointerLayout { grouping, buckets: [1; POINTER_R] };
            let mut total = 2.0;
            for group in 0..POINTER_GROUPS[grouping] {
                for (v, merged_row) in rows.iter_mut().enumerate() {
                    merged_row.fill(0);
                    for r in (0..POINTER_R).filter(|&r| usize::from(classes[r]) == group) {
                        for (m, &n) in merged_row.iter_mut().zip(row(r, v)) {
                            *m += n;
                        }
                    }
                }
                let fine: Vec<f64> = rows.iter().map(|r| cost(r)).collect();
                merged.fill(0);
                let mut group_best = (f64::INFINITY, 1);
                for v in (0..POINTER_V).rev() {
                    for (m, &n) in merged.iter_mut().zip(&rows[v]) {
                        *m += n;
                    }
                    let buckets = v + 1;
                    if POINTER_BUCKETS.contains(&buckets) {
                        let bits = fine[..v].iter().sum::<f64>() + cost(&merged);
                        if bits <= group_best.0 {
                            group_best = (bits, buckets);
                        }
                    }
                }
                total += group_best.0 + 3.0;
                layout.buckets[group] = group_best.1;
            }
            if total < best.0 {
                best = (total, layout);
            }
        }
        best.1
    }

    /// Builds and writes the block's tables; returns the table of each fine context.
    fn tables(&mut self, mode: u16, time_grouping: usize, layout: &PointerLayout) -> [u8; FINE_CONTEXTS] {
        let map = layout.map();
        let coarse_pointer = FINE_TIME + TIME_GROUPS[time_grouping];
        let coarse_ints = coarse_pointer + layout.tables();
        let coarse_refs = coarse_ints + 1;
        let table_count = coarse_refs + REF_CONTEXTS;
        let mut coarse = [0u8; FINE_CONTEXTS];
        for (f, c) in coarse.iter_mut().enumerate() {
            *c = match f {
                _ if f < FINE_TIME => f,
                _ if f < FINE_POINTER => {
                    FINE_TIME + usize::from(TIME_GROUPINGS[time_grouping][f - FINE_TIME])
                }
                _ if f < FINE_INTS => {
                    let p = f - FINE_POINTER;
                    coarse_pointer + usize::from(map[p / POINTER_V][p % POINTER_V])
                }
                FINE_INTS => coarse_ints,
                _ => coarse_refs + (f - FINE_REFS),
            } as u8;
        }
        self.coarse_counts.clear();
        let width = self.sink.width;
        self.coarse_counts.resize(table_count * width, 0);
        for (f, &c) in coarse.iter().enumerate() {
            let (from, to) = (f * ALPHABET, usize::from(c) * width);
            for s in 0..width {
                self.coarse_counts[to + s] += self.sink.counts[from + s];
            }
        }
        self.enc_symbols.clear();
        self.enc_symbols.resize(table_count * width, EncSymbol::default());
        let mut trivial = [true; FINE_CONTEXTS];
        self.freqs.resize_with(table_count, Freqs::default);
        let w = &mut self.table_bits;
        w.clear();
        let mut group_starts = layout.group_starts();
        for (c, trivial) in trivial.iter_mut().enumerate().take(table_count) {
            if c == FINE_TIME {
                w.gamma(u64::from(mode) + 1);
                w.put(time_grouping as u64, 2);
            }
            if c == coarse_pointer {
                w.put(layout.grouping as u64, 2);
            }
            if let Some(&(start, group)) = group_starts.peek()
                && c == coarse_pointer + start
            {
                let buckets = layout.buckets[group];
                let index = POINTER_BUCKETS.iter().position(|&b| b == buckets).expect("a candidate");
                w.put(index as u64, 3);
                group_starts.next();
            }
            let freqs = Freqs::normalize(&self.coarse_counts[c * width..(c + 1) * width]);
            freqs.write(w);
            *trivial = build_enc_table(&freqs, &mut self.enc_symbols[c * width..(c + 1) * width]);
            self.freqs[c] = freqs;
        }
        w.finish();
        for (start, &c) in self.enc_start.iter_mut().zip(&coarse) {
            let c = usize::from(c);
            *start = if trivial[c] { TRIVIAL } else { (c * width) as u32 };
        }
        coarse
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn exact_division_matches_the_divide() {
        for unit in [1u64, 2, 3, 1000, 15_625, 16_667, 1 << 40, 3 << 61, i64::MAX as u64] {
            let d = super::ExactDivisor::new(unit);
            for q in [0i64, 1, -1, 7, -123_456, i64::MAX / unit as i64, i64::MIN / unit as i64] {
                // Deltas are i64s that the unit divides: only products that fit.
                if let Some(v) = q.checked_mul(unit as i64) {
                    assert_eq!(d.divide(v), q, "{q} * {unit}");
                }
            }
        }
    }
}
