//! Decoding a version 2 block. The input is untrusted: every length is checked against the block
//! and the named limits before anything is allocated, every table against the alphabet, and the
//! coder's final state against its start, so damage is reported rather than decoded into events.

use super::ans::{DecTable, RansDecoder, RansError, Slot};
use super::bits::BitReader;
use super::freqs::Freqs;
use super::layout::pointer_map;
use super::*;
use crate::block::decode::DecodeError;
use crate::block::varint::{Reader, VarintError, unzigzag};
use crate::block::{
    BlockHeader, CODEC_RAW, CODEC_ZSTD, FLAG_FOCUS_HAS_TITLE, FLAG_KEY_HAS_TEXT, FLAG_KEY_SECURE, FLAG_SHIFT,
    KIND_DOWN, KIND_FOCUS, KIND_KEY_DOWN, KIND_KEY_UP, KIND_MARKER, KIND_MASK, KIND_MOVE, KIND_SCREEN,
    KIND_TEXT, KIND_UP, KIND_WHEEL,
};
use crate::event::{Button, Event, EventKind, Key};
use crate::limits::{BLOCK_EVENTS_MAX, BLOCK_RAW_BYTES_MAX, STRING_BYTES_MAX};

fn corrupt(reason: impl Into<String>) -> DecodeError {
    DecodeError::Corrupt { reason: reason.into() }
}

fn section(name: &'static str, reason: impl Into<String>) -> DecodeError {
    DecodeError::Column { column: name, reason: reason.into() }
}

fn varint(r: &mut Reader<'_>, what: &str) -> Result<u64, DecodeError> {
    r.varint().map_err(|e| match e {
        VarintError::Truncated => corrupt(format!("the block ends before {what}")),
        VarintError::Overlong => corrupt(format!("{what} is a varint longer than 64 bits")),
    })
}

/// Reads the version 2 header (version byte, event count, first time, time unit); returns it and
/// the offset of the strings section.
pub(crate) fn read_header(bytes: &[u8]) -> Result<(BlockHeader, usize), DecodeError> {
    let mut r = Reader::new(bytes);
    let version = r.byte().map_err(|_| DecodeError::Truncated { needed: 1, found: 0 })?;
    if version != VERSION && version != VERSION_2 {
        return Err(DecodeError::UnsupportedVersion { found: version });
    }
    let event_count = varint(&mut r, "the event count")?;
    if event_count > BLOCK_EVENTS_MAX as u64 {
        return Err(DecodeError::OverLimit {
            what: "event count",
            max: BLOCK_EVENTS_MAX as u64,
            found: event_count,
        });
    }
    let t_first_us = varint(&mut r, "the first event's time")?;
    let t_unit_us = varint(&mut r, "the time unit")?;
    if t_unit_us == 0 || t_unit_us > i64::MAX as u64 {
        return Err(corrupt(format!("expected a time unit in 1..=2^63-1, found {t_unit_us}")));
    }
    let header = BlockHeader { version, event_count: event_count as u32, t_first_us, t_unit_us };
    Ok((header, r.position()))
}

/// The block's decoding tables.
struct Tables {
    /// Every table's slots, one after another.
    slots: Vec<Slot>,
    kinds: [DecTable; KIND_CONTEXTS],
    /// The time table to use after a delta with each token.
    time_next: Vec<DecTable>,
    /// The time table of the first delta.
    time_first: DecTable,
    /// The time table of a pointer button event (version 3).
    time_button: DecTable,
    time: [DecTable; TIME_CONTEXTS],
    /// The pointer table of each (second difference class, velocity class), copied in place: the
    /// context picks the table in one load.
    pointer_by_context: [[DecTable; POINTER_V]; POINTER_R],
    /// The block's pointer tables, in order.
    pointer: [DecTable; POINTER_FINE],
    ints: DecTable,
    refs: [DecTable; REF_CONTEXTS],
}

impl Default for Tables {
    fn default() -> Self {
        Tables {
            slots: Vec::new(),
            kinds: [DecTable::default(); KIND_CONTEXTS],
            time_next: Vec::new(),
            time_first: DecTable::default(),
            time_button: DecTable::default(),
            time: [DecTable::default(); TIME_CONTEXTS],
            pointer_by_context: [[DecTable::default(); POINTER_V]; POINTER_R],
            pointer: [DecTable::default(); POINTER_FINE],
            ints: DecTable::default(),
            refs: [DecTable::default(); REF_CONTEXTS],
        }
    }
}

impl Tables {
    /// Reads the tables of a block of `version` (3, or 2: docs/FORMAT.md says how they differ).
    fn read(&mut self, bytes: &[u8], version: u8) -> Result<(), String> {
        let v2 = version == VERSION_2;
        let mut r = BitReader::new(bytes);
        let slots = &mut self.slots;
        slots.clear();
        let mut freqs = |r: &mut BitReader<'_>, t: &mut DecTable| -> Result<(), String> {
            *t = DecTable::build(&Freqs::read(r, ALPHABET, version)?, slots);
            Ok(())
        };
        // Version 2 had no held-press contexts: its kind contexts are the first KIND_CODES.
        self.kinds = [DecTable::default(); KIND_CONTEXTS];
        for t in &mut self.kinds[..if v2 { KIND_CODES } else { KIND_CONTEXTS }] {
            freqs(&mut r, t)?;
        }
        let mode = r.gamma().map_err(|_| "the tables end before the time mode".to_owned())? - 1;
        if mode >= ALPHABET as u64 {
            return Err(format!("time mode token {mode} is outside the alphabet of {ALPHABET}"));
        }
        let mode = mode as u16;
        // The table after each token, copied in place: the next delta's table in one load.
        self.time_next.clear();
        if v2 {
            for t in &mut self.time[..3] {
                freqs(&mut r, t)?;
            }
            let time = &self.time;
            self.time_next.extend((0..ALPHABET as u16).map(|t| time[time_context_v2(t, mode)]));
            self.time_first = self.time[0];
        } else {
            let grouping =
                r.get(2).map_err(|_| "the tables end before the time grouping".to_owned())? as usize;
            if grouping >= TIME_GROUPINGS.len() {
                return Err(format!("time grouping {grouping}, expected 0..{}", TIME_GROUPINGS.len()));
            }
            for t in &mut self.time[..TIME_GROUPS[grouping]] {
                freqs(&mut r, t)?;
            }
            let (time, map) = (&self.time, TIME_GROUPINGS[grouping]);
            self.time_next
                .extend((0..ALPHABET as u16).map(|t| time[usize::from(map[time_context(t, mode)])]));
            self.time_first = time[usize::from(map[TIME_CONTEXT_FIRST])];
            self.time_button = time[usize::from(map[TIME_BUTTON])];
        }
        let ends = |_| "the tables end before the pointer layout".to_owned();
        // Version 2: one group (its tables by velocity alone), and no grouping field.
        let grouping = if v2 { 0 } else { r.get(2).map_err(ends)? as usize };
        if grouping >= POINTER_GROUPINGS.len() {
            return Err(format!("pointer grouping {grouping}, expected 0..{}", POINTER_GROUPINGS.len()));
        }
        let mut buckets = [1; POINTER_R];
        let mut start = 0;
        for b in &mut buckets[..POINTER_GROUPS[grouping]] {
            *b = POINTER_BUCKETS[r.get(3).map_err(ends)? as usize];
            for t in &mut self.pointer[start..start + *b] {
                freqs(&mut r, t)?;
            }
            start += *b;
        }
        let map = pointer_map(grouping, &buckets);
        for (row, tables) in map.iter().zip(&mut self.pointer_by_context) {
            for (&table, slot) in row.iter().zip(tables) {
                *slot = self.pointer[usize::from(table)];
            }
        }
        freqs(&mut r, &mut self.ints)?;
        for t in &mut self.refs {
            freqs(&mut r, t)?;
        }
        if !r.is_at_end() {
            return Err("bits after the last table".to_owned());
        }
        Ok(())
    }
}

/// The reusable state of the version 2 decoder.
#[derive(Default)]
pub(crate) struct Decoder {
    tables: Tables,
    raw: Vec<u8>,
    strings: Vec<String>,
    recency: [Recency; REF_LISTS],
    /// Moves decoded but not yet appended (see `flush_moves`).
    moves: Vec<(u64, i32, i32)>,
}

impl Decoder {
    /// Decodes the version 2 block in `bytes` onto `out`. On error `out` is left as it was.
    pub(crate) fn decode_into(
        &mut self,
        bytes: &[u8],
        decompressor: &mut zstd::bulk::Decompressor<'static>,
        out: &mut Vec<Event>,
    ) -> Result<BlockHeader, DecodeError> {
        let (header, at) = read_header(bytes)?;
        let mut r = Reader::new(bytes);
        r.bytes(at).expect("the header was read from these bytes");
        self.load_strings(&mut r, decompressor)?;
        let tables_len = varint(&mut r, "the tables' length")?;
        let tables = r.bytes(tables_len.min(bytes.len() as u64) as usize).map_err(|_| {
            section("tables", format!("{tables_len} bytes of tables run past the block's end"))
        })?;
        self.tables.read(tables, header.version).map_err(|reason| section("tables", reason))?;
        let rans_len = varint(&mut r, "the rANS section's length")?;
        let rans = r.bytes(rans_len.min(bytes.len() as u64) as usize).map_err(|_| {
            section("rans", format!("{rans_len} bytes of coded symbols run past the block's end"))
        })?;
        let extras = &bytes[r.position()..];

        let start = out.len();
        // One loop per version, each with its contexts fixed at compile time.
        let result = if header.version == VERSION_2 {
            self.decode_events::<false>(&header, rans, extras, out)
        } else {
            self.decode_events::<true>(&header, rans, extras, out)
        };
        if result.is_err() {
            out.truncate(start);
        }
        result.map(|()| header)
    }

    fn load_strings(
        &mut self,
        r: &mut Reader<'_>,
        decompressor: &mut zstd::bulk::Decompressor<'static>,
    ) -> Result<(), DecodeError> {
        self.strings.clear();
        let count = varint(r, "the string count")?;
        if count == 0 {
            return Ok(());
        }
        let err = |reason: String| section("strings", reason);
        let codec = r.byte().map_err(|_| err("the block ends before the strings' codec".to_owned()))?;
        let raw_len = varint(r, "the strings' length")?;
        let stored_len = varint(r, "the strings' stored length")?;
        if raw_len > BLOCK_RAW_BYTES_MAX as u64 {
            return Err(DecodeError::OverLimit {
                what: "string section size",
                max: BLOCK_RAW_BYTES_MAX as u64,
                found: raw_len,
            });
        }
        // Each string takes at least its one-byte length.
        if count > raw_len {
            return Err(err(format!("{count} strings cannot fit in {raw_len} bytes")));
        }
        let stored = r
            .bytes(stored_len.min(u64::from(u32::MAX)) as usize)
            .map_err(|_| err(format!("{stored_len} stored bytes run past the block's end")))?;
        let raw_len = raw_len as usize;
        self.raw.clear();
        match codec {
            CODEC_RAW if stored.len() == raw_len => self.raw.extend_from_slice(stored),
            CODEC_RAW => {
                return Err(err(format!(
                    "raw strings store {} bytes but say they hold {raw_len}",
                    stored.len()
                )));
            }
            CODEC_ZSTD => {
                self.raw.reserve(raw_len);
                match decompressor.decompress_to_buffer(stored, &mut self.raw) {
                    Ok(n) if n == raw_len => {}
                    Ok(n) => return Err(err(format!("decompressed to {n} bytes, expected {raw_len}"))),
                    Err(e) => return Err(err(format!("zstd: {e} (expected {raw_len} bytes)"))),
                }
            }
            other => return Err(err(format!("unknown codec {other}, expected 0 (raw) or 1 (zstd)"))),
        }
        let mut s = Reader::new(&self.raw);
        for i in 0..count {
            let len = s.varint().map_err(|_| err(format!("string {i}'s length is cut off")))?;
            if len > STRING_BYTES_MAX as u64 {
                return Err(err(format!("string {i} is {len} bytes, expected at most {STRING_BYTES_MAX}")));
            }
            let bytes = s
                .bytes(len as usize)
                .map_err(|_| err(format!("string {i} of {len} bytes runs past the section")))?;
            let text =
                std::str::from_utf8(bytes).map_err(|e| err(format!("string {i} is not UTF-8: {e}")))?;
            if dictionary::find(text).is_some() {
                return Err(err(format!(
                    "string {i} ({text:?}) is in the dictionary and must not be stored"
                )));
            }
            self.strings.push(text.to_owned());
        }
        if !s.is_at_end() {
            return Err(err(format!("{} bytes after the last string", self.raw.len() - s.position())));
        }
        Ok(())
    }

    /// Decodes the events; `V3`: with version 3's contexts (held presses, the second difference
    /// along the motion), else version 2's.
    fn decode_events<const V3: bool>(
        &mut self,
        header: &BlockHeader,
        rans: &[u8],
        extras: &[u8],
        out: &mut Vec<Event>,
    ) -> Result<(), DecodeError> {
        let n = header.event_count as usize;
        for r in &mut self.recency {
            r.clear();
        }
        self.moves.clear();
        let mut state = EventReader::<V3> {
            rans: RansDecoder::new(rans).map_err(|e| match e {
                RansError::BadState => {
                    section("rans", "an initial state outside [2^23, 2^31): no encoder wrote it")
                }
                _ => section("rans", format!("{} bytes cannot hold the coder's two states", rans.len())),
            })?,
            extras: BitReader::new(extras),
            tables: &self.tables,
            strings: &self.strings,
            recency: &mut self.recency,
            moves: &mut self.moves,
            unit: header.t_unit_us as i64,
            t_us: header.t_first_us,
            time_table: self.tables.time_first,
            x: 0,
            y: 0,
            vx: 0,
            vy: 0,
            rx: 0,
            ry: 0,
            held: 0,
        };
        // A block of identical events can code a million of them in a few bytes: grow with the
        // output rather than trusting the count for the whole reservation.
        out.reserve(n.min(64 + 64 * (rans.len() + extras.len())));
        let mut kind_ctx = kind_context(KIND_MOVE, 0);
        for index in 0..n {
            match state.event(index, kind_ctx, out) {
                Ok(context) => kind_ctx = context,
                Err(fault) => return Err(fault.into_error(index, self.strings.len())),
            }
        }
        flush_moves(state.moves, out);
        if !state.rans.is_at_end() {
            return Err(section("rans", "coded symbols left after the last event, or a damaged final state"));
        }
        if !state.extras.is_at_end() {
            return Err(section("extras", "bits left after the last event"));
        }
        Ok(())
    }
}

/// Appends the pending moves to `out` as events. Moves are gathered as `(t, x, y)` and turned
/// into events in runs: pushed one by one from the decoding loop, each event was built on the
/// stack in pieces and copied out with wider loads, a store-forwarding stall per event (measured:
/// a third of decoding time); `extend` over a slice writes them in place.
fn flush_moves(moves: &mut Vec<(u64, i32, i32)>, out: &mut Vec<Event>) {
    out.extend(moves.iter().map(|&(t_us, x, y)| Event { t_us, kind: EventKind::Move { x, y } }));
    moves.clear();
}

/// What went wrong with one event, kept small so the decoding loop stays tight.
#[derive(Clone, Copy, Debug)]
enum Fault {
    Rans(&'static str, RansError),
    Extras(&'static str),
    Range(&'static str),
    Kind(u16),
    StringRef(u64),
}

impl Fault {
    #[cold]
    fn into_error(self, index: usize, block_strings: usize) -> DecodeError {
        match self {
            Fault::Rans(what, RansError::NoTable) => {
                section(what, format!("event {index}'s value is in a context the block has no table for"))
            }
            Fault::Rans(what, RansError::Truncated | RansError::BadState) => {
                section(what, format!("the coded symbols end before event {index}'s value"))
            }
            Fault::Extras(what) => section(what, format!("the extra bits end before event {index}'s value")),
            Fault::Range(what) => {
                section(what, format!("event {index}'s value leaves the range of its field"))
            }
            Fault::Kind(byte)
                if byte < 256 && usize::from(byte as u8 & KIND_MASK) <= usize::from(KIND_MARKER) =>
            {
                section(
                    "kinds",
                    format!(
                        "event {index}: flags {:#x} are not valid for kind {}",
                        byte >> FLAG_SHIFT,
                        byte & 0x0f
                    ),
                )
            }
            Fault::Kind(byte) if byte < 256 => {
                section("kinds", format!("event {index}: unknown kind {}", byte & 0x0f))
            }
            Fault::Kind(symbol) => {
                section("kinds", format!("event {index}: kind symbol {symbol} is not a byte"))
            }
            Fault::StringRef(r) => section(
                "string_refs",
                format!(
                    "event {index}'s reference {r} names no string (the dictionary holds {}, the block {block_strings})",
                    dictionary::LEN
                ),
            ),
        }
    }
}

/// The decoding state of one block.
struct EventReader<'a, const V3: bool> {
    rans: RansDecoder<'a>,
    extras: BitReader<'a>,
    tables: &'a Tables,
    strings: &'a [String],
    recency: &'a mut [Recency; REF_LISTS],
    moves: &'a mut Vec<(u64, i32, i32)>,
    /// `t_unit_us`, at most `i64::MAX` (checked with the header).
    unit: i64,
    t_us: u64,
    /// The table of the next time delta.
    time_table: DecTable,
    x: i64,
    y: i64,
    vx: i64,
    vy: i64,
    rx: i64,
    ry: i64,
    /// Presses not yet released.
    held: u32,
}

impl<const V3: bool> EventReader<'_, V3> {
    /// The token and value of the next symbol, coded with `table`.
    #[inline(always)]
    fn value(&mut self, table: &DecTable, what: &'static str) -> Result<(u16, u64), Fault> {
        let t = self.rans.get(table, &self.tables.slots).map_err(|e| Fault::Rans(what, e))?;
        if u64::from(t) < DIRECT {
            return Ok((t, u64::from(t)));
        }
        let (n, top) = token_shape(t);
        let low = self.extras.get(n - 2).map_err(|_| Fault::Extras(what))?;
        Ok((t, (4 | top) << (n - 2) | low))
    }

    /// Decodes event `index` onto `out`; returns the next event's kind context.
    #[inline(always)]
    fn event(&mut self, index: usize, kind_ctx: usize, out: &mut Vec<Event>) -> Result<usize, Fault> {
        let tables = self.tables;
        let symbol =
            self.rans.get(&tables.kinds[kind_ctx], &tables.slots).map_err(|e| Fault::Rans("kinds", e))?;
        let button = V3 && symbol < 256 && is_button(symbol as u8 & KIND_MASK);
        if index > 0 {
            // A button's delta is off the clock: it leaves the clocked deltas' context alone.
            let z = if button {
                self.value(&tables.time_button, "time")?.1
            } else {
                let table = self.time_table;
                let (t, z) = self.value(&table, "time")?;
                self.time_table = tables.time_next[usize::from(t)];
                z
            };
            let delta = unzigzag(z).checked_mul(self.unit).ok_or(Fault::Range("time"))?;
            self.t_us = self.t_us.wrapping_add(delta as u64);
        }
        if symbol == u16::from(KIND_MOVE) {
            let (x, y) = self.pointer()?;
            self.moves.push((self.t_us, x, y));
            return Ok(self.kind_context(KIND_MOVE));
        }
        let byte = u8::try_from(symbol).map_err(|_| Fault::Kind(symbol))?;
        let kind = self.rare_kind(byte)?;
        flush_moves(self.moves, out);
        out.push(Event { t_us: self.t_us, kind });
        if V3 {
            self.held = held_after(self.held, byte & KIND_MASK);
        }
        Ok(self.kind_context(byte & KIND_MASK))
    }

    /// The kind context after an event of kind code `kind`.
    #[inline(always)]
    fn kind_context(&self, kind: u8) -> usize {
        if V3 { kind_context(kind, self.held) } else { usize::from(kind) }
    }

    /// One axis: its position `p`, velocity `v` and second difference `r` before the event;
    /// returns them after.
    #[inline(always)]
    fn axis(&mut self, p: i64, v: i64, r: i64) -> Result<(i64, i64, i64), Fault> {
        let tables = self.tables;
        let v_class = if V3 { pointer_v(v) } else { pointer_v_v2(v) };
        let (_, z) = self.value(&tables.pointer_by_context[pointer_r(r)][v_class], "pointer")?;
        let r = if V3 { along(unzigzag(z), v) } else { unzigzag(z) };
        let d = v.checked_add(r).ok_or(Fault::Range("pointer"))?;
        let q = p.checked_add(d).ok_or(Fault::Range("pointer"))?;
        Ok((q, d, r))
    }

    #[inline(always)]
    fn pointer(&mut self) -> Result<(i32, i32), Fault> {
        let (x, vx, rx) = self.axis(self.x, self.vx, self.rx)?;
        let (y, vy, ry) = self.axis(self.y, self.vy, self.ry)?;
        let x32 = i32::try_from(x).map_err(|_| Fault::Range("pointer"))?;
        let y32 = i32::try_from(y).map_err(|_| Fault::Range("pointer"))?;
        (self.x, self.y, self.vx, self.vy, self.rx, self.ry) = (x, y, vx, vy, rx, ry);
        Ok((x32, y32))
    }

    #[inline(always)]
    fn string(&mut self, context: usize) -> Result<String, Fault> {
        let tables = self.tables;
        let (_, r) = self.value(&tables.refs[context], "string_refs")?;
        let ids = (dictionary::LEN + self.strings.len()) as u64;
        let id = self.recency[REF_LIST[context]].resolve(r, ids).ok_or(Fault::StringRef(r))? as usize;
        Ok(match id.checked_sub(dictionary::LEN) {
            None => dictionary::get(id).to_owned(),
            Some(i) => self.strings[i].clone(),
        })
    }

    #[inline(always)]
    fn int(&mut self) -> Result<i32, Fault> {
        let tables = self.tables;
        let (_, z) = self.value(&tables.ints, "ints")?;
        i32::try_from(unzigzag(z)).map_err(|_| Fault::Range("ints"))
    }

    #[inline(always)]
    fn uint(&mut self) -> Result<u32, Fault> {
        let tables = self.tables;
        let (_, v) = self.value(&tables.ints, "ints")?;
        u32::try_from(v).map_err(|_| Fault::Range("ints"))
    }

    /// Every kind but a plain move. Inlined like the rest: a call taking the reader by reference
    /// would keep its state (the coder's, the positions) in memory rather than in registers for
    /// the whole loop.
    #[inline(always)]
    fn rare_kind(&mut self, byte: u8) -> Result<EventKind, Fault> {
        let kind = byte & KIND_MASK;
        let flags = byte >> FLAG_SHIFT;
        let bad = Fault::Kind(u16::from(byte));
        Ok(match kind {
            KIND_DOWN | KIND_UP => {
                let button = Button::from_code(flags).ok_or(bad)?;
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
                let down = kind == KIND_KEY_DOWN;
                let code = self.string(if down { REF_CODE_DOWN } else { REF_CODE_UP })?;
                let text = if byte & FLAG_KEY_HAS_TEXT != 0 {
                    Some(self.string(if down { REF_TEXT_DOWN } else { REF_TEXT_UP })?)
                } else {
                    None
                };
                let key = Key { code, text, secure: byte & FLAG_KEY_SECURE != 0 };
                if down { EventKind::KeyDown(key) } else { EventKind::KeyUp(key) }
            }
            KIND_TEXT if flags == 0 => EventKind::Text { text: self.string(REF_TEXT)? },
            KIND_FOCUS if byte & !(KIND_MASK | FLAG_FOCUS_HAS_TITLE) == 0 => {
                let app = self.string(REF_APP)?;
                let title =
                    if byte & FLAG_FOCUS_HAS_TITLE != 0 { Some(self.string(REF_TITLE)?) } else { None };
                EventKind::Focus { app, title }
            }
            KIND_SCREEN if flags == 0 => EventKind::Screen { w: self.uint()?, h: self.uint()? },
            KIND_MARKER if flags == 0 => EventKind::Marker { label: self.string(REF_LABEL)? },
            _ => return Err(bad),
        })
    }
}
