//! The block codec (version 2, and version 1 beside it) against its baselines, on the same
//! blocks: (a) rmp-serde of the events + zstd,
//! (b) JSONL + zstd, (c) a row-wise delta + zigzag varint stream + zstd, all at the block codec's
//! zstd level; and, for size only, `xz -9` of the plain row delta stream (c without zstd) as a
//! near-limit reference. `tracevault bench`'s codec section and `cargo bench --bench codecs` both
//! measure through this module.

use std::hint::black_box;
use std::time::{Duration, Instant};

use tracevault_codecs::block::{BlockDecoder, BlockEncoder, DEFAULT_ZSTD_LEVEL};
use tracevault_codecs::{Event, EventKind, Key, Record, jsonl};

pub const BLOCK_SIZES: [usize; 3] = [256, 4096, 65536];

/// A way of turning a block of events into bytes and back.
pub trait Codec {
    fn name(&self) -> &'static str;
    fn encode(&mut self, events: &[Event], out: &mut Vec<u8>);
    fn decode(&mut self, bytes: &[u8], out: &mut Vec<Event>);
}

pub struct Tracevault {
    encoder: BlockEncoder,
    decoder: BlockDecoder,
    name: &'static str,
}

impl Tracevault {
    /// The current block format (version 2), its strings at zstd `level`.
    pub fn new(level: i32) -> Self {
        let name = if level == DEFAULT_ZSTD_LEVEL {
            "tracevault v3".to_owned()
        } else {
            format!("tracevault v3 (zstd {level})")
        };
        Tracevault {
            encoder: BlockEncoder::new(level),
            decoder: BlockDecoder::new(),
            name: Box::leak(name.into()),
        }
    }

    /// Block format version 1 (zstd over delta-coded columns) at zstd `level`.
    pub fn v1(level: i32) -> Self {
        let name = Box::leak(format!("tracevault v1 (zstd {level})").into_boxed_str());
        Tracevault { encoder: BlockEncoder::v1(level), decoder: BlockDecoder::new(), name }
    }
}

impl Codec for Tracevault {
    fn name(&self) -> &'static str {
        self.name
    }
    fn encode(&mut self, events: &[Event], out: &mut Vec<u8>) {
        self.encoder.encode(events, out).unwrap();
    }
    fn decode(&mut self, bytes: &[u8], out: &mut Vec<Event>) {
        self.decoder.decode_into(bytes, out).unwrap();
    }
}

/// zstd around a byte encoding, at the same level as the block codec.
pub struct Zstd {
    compressor: zstd::bulk::Compressor<'static>,
    decompressor: zstd::bulk::Decompressor<'static>,
    scratch: Vec<u8>,
}

impl Default for Zstd {
    fn default() -> Self {
        Zstd::new()
    }
}

impl Zstd {
    pub fn new() -> Self {
        Zstd {
            compressor: zstd::bulk::Compressor::new(DEFAULT_ZSTD_LEVEL).unwrap(),
            decompressor: zstd::bulk::Decompressor::new().unwrap(),
            scratch: Vec::new(),
        }
    }
    /// Compresses `self.scratch` onto `out` behind a u32 raw length.
    fn seal(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.scratch.len() as u32).to_le_bytes());
        out.extend(self.compressor.compress(&self.scratch).unwrap());
    }
    fn open<'a>(&'a mut self, bytes: &[u8]) -> &'a [u8] {
        let len = u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize;
        self.scratch = self.decompressor.decompress(&bytes[4..], len).unwrap();
        &self.scratch
    }
}

/// (a) rmp-serde of the events + zstd.
pub struct MsgpackZstd(pub Zstd);

impl Codec for MsgpackZstd {
    fn name(&self) -> &'static str {
        "(a) rmp-serde + zstd"
    }
    fn encode(&mut self, events: &[Event], out: &mut Vec<u8>) {
        self.0.scratch.clear();
        rmp_serde::encode::write(&mut self.0.scratch, events).unwrap();
        self.0.seal(out);
    }
    fn decode(&mut self, bytes: &[u8], out: &mut Vec<Event>) {
        let raw = self.0.open(bytes);
        out.extend(rmp_serde::from_slice::<Vec<Event>>(raw).unwrap());
    }
}

/// (b) JSONL (the interchange format, session id on every line) + zstd.
pub struct JsonlZstd(pub Zstd);

impl Codec for JsonlZstd {
    fn name(&self) -> &'static str {
        "(b) JSONL + zstd"
    }
    fn encode(&mut self, events: &[Event], out: &mut Vec<u8>) {
        self.0.scratch.clear();
        for event in events {
            let record =
                Record::Event { session: "sapimouse-user1-session_3min".into(), event: event.clone() };
            jsonl::write_record(&mut self.0.scratch, &record).unwrap();
        }
        self.0.seal(out);
    }
    fn decode(&mut self, bytes: &[u8], out: &mut Vec<Event>) {
        let raw = self.0.open(bytes);
        for line in std::str::from_utf8(raw).unwrap().lines() {
            let Record::Event { event, .. } = jsonl::parse_line(line).unwrap() else { unreachable!() };
            out.push(event);
        }
    }
}

/// (c) One row per event: kind, zigzag varint time delta, pointer deltas from the previous
/// pointer position, then the kind's other fields; + zstd.
pub struct RowVarintZstd(pub Zstd);

fn put(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}
fn zz(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}
fn get(bytes: &[u8], pos: &mut usize) -> u64 {
    let mut v = 0;
    for shift in (0..64).step_by(7) {
        let b = bytes[*pos];
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            break;
        }
    }
    v
}
fn unzz(v: u64) -> i64 {
    (v >> 1) as i64 ^ -((v & 1) as i64)
}
fn put_str(out: &mut Vec<u8>, s: &str) {
    put(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}
fn get_str(bytes: &[u8], pos: &mut usize) -> String {
    let len = get(bytes, pos) as usize;
    let s = std::str::from_utf8(&bytes[*pos..*pos + len]).unwrap().to_owned();
    *pos += len;
    s
}

impl Codec for RowVarintZstd {
    fn name(&self) -> &'static str {
        "(c) row delta+varint + zstd"
    }
    fn encode(&mut self, events: &[Event], out: &mut Vec<u8>) {
        self.0.scratch.clear();
        row_stream(events, &mut self.0.scratch);
        self.0.seal(out);
    }
    fn decode(&mut self, bytes: &[u8], out: &mut Vec<Event>) {
        row_unstream(self.0.open(bytes), out);
    }
}

/// The plain row delta stream of (c), appended to `raw`: no compression.
pub fn row_stream(events: &[Event], raw: &mut Vec<u8>) {
    {
        let (mut t, mut px, mut py) = (0u64, 0i64, 0i64);
        for e in events {
            let (code, button) = match &e.kind {
                EventKind::Move { .. } => (0, None),
                EventKind::Down { button, .. } => (1, Some(*button)),
                EventKind::Up { button, .. } => (2, Some(*button)),
                EventKind::Wheel { .. } => (3, None),
                EventKind::KeyDown(_) => (4, None),
                EventKind::KeyUp(_) => (5, None),
                EventKind::Text { .. } => (6, None),
                EventKind::Focus { .. } => (7, None),
                EventKind::Screen { .. } => (8, None),
                EventKind::Marker { .. } => (9, None),
            };
            raw.push(code | button.map_or(0, |b| b.code() << 4));
            put(raw, zz(e.t_us.wrapping_sub(t) as i64));
            t = e.t_us;
            if let Some((x, y)) = e.kind.pointer() {
                put(raw, zz(i64::from(x) - px));
                put(raw, zz(i64::from(y) - py));
                (px, py) = (i64::from(x), i64::from(y));
            }
            match &e.kind {
                EventKind::Wheel { dx, dy, .. } => {
                    put(raw, zz(i64::from(*dx)));
                    put(raw, zz(i64::from(*dy)));
                }
                EventKind::KeyDown(k) | EventKind::KeyUp(k) => {
                    raw.push(u8::from(k.secure) | u8::from(k.text.is_some()) << 1);
                    put_str(raw, &k.code);
                    if let Some(text) = &k.text {
                        put_str(raw, text);
                    }
                }
                EventKind::Text { text: s } | EventKind::Marker { label: s } => put_str(raw, s),
                EventKind::Focus { app, title } => {
                    put_str(raw, app);
                    raw.push(u8::from(title.is_some()));
                    if let Some(title) = title {
                        put_str(raw, title);
                    }
                }
                EventKind::Screen { w, h } => {
                    put(raw, u64::from(*w));
                    put(raw, u64::from(*h));
                }
                _ => {}
            }
        }
    }
}

fn row_unstream(raw: &[u8], out: &mut Vec<Event>) {
    {
        let (mut pos, mut t, mut px, mut py) = (0usize, 0u64, 0i64, 0i64);
        while pos < raw.len() {
            let byte = raw[pos];
            pos += 1;
            t = t.wrapping_add(unzz(get(raw, &mut pos)) as u64);
            let mut pointer = |pos: &mut usize| {
                px += unzz(get(raw, pos));
                py += unzz(get(raw, pos));
                (px as i32, py as i32)
            };
            let button = tracevault_codecs::Button::from_code(byte >> 4);
            let kind = match byte & 0xf {
                0 => {
                    let (x, y) = pointer(&mut pos);
                    EventKind::Move { x, y }
                }
                1 | 2 => {
                    let (x, y) = pointer(&mut pos);
                    let button = button.unwrap();
                    if byte & 0xf == 1 {
                        EventKind::Down { button, x, y }
                    } else {
                        EventKind::Up { button, x, y }
                    }
                }
                3 => {
                    let (x, y) = pointer(&mut pos);
                    let dx = unzz(get(raw, &mut pos)) as i32;
                    let dy = unzz(get(raw, &mut pos)) as i32;
                    EventKind::Wheel { dx, dy, x, y }
                }
                4 | 5 => {
                    let flags = raw[pos];
                    pos += 1;
                    let code = get_str(raw, &mut pos);
                    let text = (flags & 2 != 0).then(|| get_str(raw, &mut pos));
                    let key = Key { code, text, secure: flags & 1 != 0 };
                    if byte & 0xf == 4 { EventKind::KeyDown(key) } else { EventKind::KeyUp(key) }
                }
                6 => EventKind::Text { text: get_str(raw, &mut pos) },
                7 => {
                    let app = get_str(raw, &mut pos);
                    let has_title = raw[pos] != 0;
                    pos += 1;
                    EventKind::Focus { app, title: has_title.then(|| get_str(raw, &mut pos)) }
                }
                8 => EventKind::Screen { w: get(raw, &mut pos) as u32, h: get(raw, &mut pos) as u32 },
                _ => EventKind::Marker { label: get_str(raw, &mut pos) },
            };
            out.push(Event { t_us: t, kind });
        }
    }
}

/// The data set cut into blocks of `size` events, session by session.
pub fn blocks(sessions: &[Vec<Event>], size: usize) -> Vec<&[Event]> {
    sessions.iter().flat_map(|events| events.chunks(size)).collect()
}

/// Where the current block format's bytes go on `blocks`, per event: each part's share.
pub fn breakdown(blocks: &[&[Event]]) -> Vec<(&'static str, f64)> {
    let mut encoder = BlockEncoder::new(DEFAULT_ZSTD_LEVEL);
    let mut out = Vec::new();
    let mut sum = [0.0f64; 9];
    for block in blocks {
        out.clear();
        encoder.encode(block, &mut out).expect("the blocks encode");
        let b = encoder.breakdown(out.len());
        let parts = [
            b.header,
            b.strings,
            b.tables,
            b.kinds,
            b.time,
            b.time_extras,
            b.pointer,
            b.pointer_extras,
            b.other,
        ];
        for (s, p) in sum.iter_mut().zip(parts) {
            *s += p;
        }
    }
    let events: usize = blocks.iter().map(|b| b.len()).sum();
    let names = [
        "header",
        "strings",
        "tables",
        "kinds",
        "time (coded)",
        "time (extra bits)",
        "pointer (coded)",
        "pointer (extra bits)",
        "other fields",
    ];
    names.into_iter().zip(sum).map(|(n, bits)| (n, bits / 8.0 / events as f64)).collect()
}

pub struct Measured {
    pub bytes: usize,
    /// Seconds per pass over all the blocks, each repetition.
    pub encode_s: Vec<f64>,
    pub decode_s: Vec<f64>,
}

impl Measured {
    pub fn best_encode_s(&self) -> f64 {
        self.encode_s.iter().copied().fold(f64::INFINITY, f64::min)
    }
    pub fn best_decode_s(&self) -> f64 {
        self.decode_s.iter().copied().fold(f64::INFINITY, f64::min)
    }
}

/// Encodes and decodes every block `reps` times, each repetition at least `min_time` long, and
/// checks the round trip: a codec that does not give back its input is an error, not a figure.
pub fn measure(
    codec: &mut dyn Codec,
    blocks: &[&[Event]],
    min_time: Duration,
    reps: usize,
) -> Result<Measured, String> {
    let mut encoded: Vec<Vec<u8>> = Vec::with_capacity(blocks.len());
    let (mut encode_s, mut decode_s) = (Vec::new(), Vec::new());
    for _ in 0..reps.max(1) {
        let (mut passes, start) = (0u32, Instant::now());
        while passes == 0 || start.elapsed() < min_time {
            encoded.clear();
            for block in blocks {
                let mut out = Vec::new();
                codec.encode(block, &mut out);
                encoded.push(out);
            }
            passes += 1;
        }
        encode_s.push(start.elapsed().as_secs_f64() / f64::from(passes));
        let (mut passes, start) = (0u32, Instant::now());
        let mut out = Vec::new();
        while passes == 0 || start.elapsed() < min_time {
            for bytes in &encoded {
                out.clear();
                codec.decode(bytes, &mut out);
                black_box(&out);
            }
            passes += 1;
        }
        decode_s.push(start.elapsed().as_secs_f64() / f64::from(passes));
    }
    let mut out = Vec::new();
    for (i, (bytes, block)) in encoded.iter().zip(blocks).enumerate() {
        out.clear();
        codec.decode(bytes, &mut out);
        if out.as_slice() != *block {
            return Err(format!("{} does not round-trip block {i} ({} events)", codec.name(), block.len()));
        }
    }
    Ok(Measured { bytes: encoded.iter().map(Vec::len).sum(), encode_s, decode_s })
}

/// The codec section: bytes per event on real and generated input, then encode and decode rates,
/// each against the baselines on the same 4096-event blocks.
pub fn section(ctx: &super::Ctx) -> super::Result<super::report::Section> {
    use super::report::{Better, Figure, Section, Table};
    let mut section = Section {
        name: "codec".into(),
        title: "the block codec, bytes per event and speed".into(),
        about: format!(
            "Every recording cut into 4096-event blocks (the log's default), one thread. The current \
             block format (v3: context-modelled rANS) against v1 (zstd over delta-coded columns) and \
             baselines at the same zstd level ({DEFAULT_ZSTD_LEVEL}) on the same blocks: (a) rmp-serde of the events, \
             (b) the JSONL interchange lines, (c) one row per event (kind, zigzag varint time and pointer \
             deltas); `xz -9` of (c)'s plain stream, the whole data set at once, as a near-limit \
             reference for size. Every codec's output is decoded and compared with its input before a \
             figure is kept. Rates: {} repetitions of at least {} ms each.",
            ctx.repeats,
            ctx.min_time().as_millis()
        ),
        ..Section::default()
    };
    let real = ctx.real()?;
    let sets: [(&str, &str, &[Vec<Event>]); 3] = [
        ("sapimouse", "SapiMouse (real)", &real.sessions),
        ("generated", "generator", ctx.generated()),
        ("typing", "typing sessions (~100 key events each)", ctx.typing()),
    ];
    for &(key, name, sessions) in &sets {
        let blocks = blocks(sessions, 4096);
        let events: usize = sessions.iter().map(Vec::len).sum();
        let parts = breakdown(&blocks);
        if section.tables.is_empty() {
            section.tables.push(Table {
                id: "codec.parts".into(),
                title: "where the block format's bytes go, bytes per event (the coded parts at their \
                        ideal cost under the block's tables, within a few bytes of what is written)"
                    .into(),
                columns: std::iter::once("part".to_owned())
                    .chain(sets.iter().map(|s| s.0.to_owned()))
                    .collect(),
                rows: parts.iter().map(|(p, _)| vec![(*p).to_owned()]).collect(),
            });
        }
        for (row, (_, v)) in section.tables[0].rows.iter_mut().zip(&parts) {
            row.push(format!("{v:.4}"));
        }
        let per_event = |bytes: usize| bytes as f64 / events as f64;
        let reps = ctx.repeats;
        let ours = measure(&mut Tracevault::new(DEFAULT_ZSTD_LEVEL), &blocks, ctx.min_time(), reps)
            .map_err(anyhow::Error::msg)?;
        let v1_time = if key == "sapimouse" { ctx.min_time() } else { Duration::ZERO };
        let v1 = measure(&mut Tracevault::v1(DEFAULT_ZSTD_LEVEL), &blocks, v1_time, reps)
            .map_err(anyhow::Error::msg)?;
        let a =
            measure(&mut MsgpackZstd(Zstd::new()), &blocks, Duration::ZERO, 1).map_err(anyhow::Error::msg)?;
        let c = measure(&mut RowVarintZstd(Zstd::new()), &blocks, Duration::ZERO, 1)
            .map_err(anyhow::Error::msg)?;
        let b =
            measure(&mut JsonlZstd(Zstd::new()), &blocks, Duration::ZERO, 1).map_err(anyhow::Error::msg)?;
        let mut size = Figure::new(
            format!("codec.bytes_per_event.{key}"),
            format!("bytes/event, {name}, {events} events"),
            "bytes/event",
            Better::Lower,
            vec![per_event(ours.bytes)],
        )
        .baseline(format!("tracevault v1 (zstd {DEFAULT_ZSTD_LEVEL})"), per_event(v1.bytes))
        .baseline("(a) rmp-serde + zstd", per_event(a.bytes))
        .baseline("(b) JSONL + zstd", per_event(b.bytes))
        .baseline("(c) row delta + zstd", per_event(c.bytes));
        let mut raw = Vec::new();
        for block in &blocks {
            row_stream(block, &mut raw);
        }
        match xz9(&raw) {
            Ok(bytes) => size = size.baseline("xz -9 of (c)'s stream", per_event(bytes)),
            Err(e) => section.notes.push(format!("SKIPPED: xz -9 reference for {name}: {e}")),
        }
        if key == "sapimouse" {
            size = size.target(1.5);
        }
        ctx.show(&size);
        section.figures.push(size);
        if key != "sapimouse" {
            continue;
        }
        let rate = |seconds: &[f64]| -> Vec<f64> { seconds.iter().map(|s| events as f64 / s).collect() };
        let encode = Figure::new(
            format!("codec.encode.{key}"),
            format!("encode, {name}, one thread"),
            "events/s",
            Better::Higher,
            rate(&ours.encode_s),
        )
        .baseline("tracevault v1", events as f64 / v1.best_encode_s())
        .baseline("(a) rmp-serde + zstd", events as f64 / a.best_encode_s())
        .baseline("(c) row delta + zstd", events as f64 / c.best_encode_s())
        .target(15e6);
        ctx.show(&encode);
        section.figures.push(encode);
        let event_bytes = std::mem::size_of::<Event>() as f64;
        let decode = Figure::new(
            format!("codec.decode.{key}"),
            format!("decode, {name}, one thread"),
            "events/s",
            Better::Higher,
            rate(&ours.decode_s),
        )
        .baseline("tracevault v1", events as f64 / v1.best_decode_s())
        .baseline("(a) rmp-serde + zstd", events as f64 / a.best_decode_s())
        .baseline("(c) row delta + zstd", events as f64 / c.best_decode_s())
        .limit(
            format!("memcpy of decoded events ({event_bytes:.0} B each)"),
            ctx.limits.memcpy_mib_s * 1048576.0 / event_bytes,
        )
        .target(40e6);
        ctx.show(&decode);
        section.figures.push(decode);
    }
    Ok(section)
}

/// The size of `raw` under `xz -9` (the xz program).
fn xz9(raw: &[u8]) -> Result<usize, String> {
    use std::io::{Read, Write};
    let mut child = std::process::Command::new("xz")
        .args(["-9", "-c", "-T1", "-q"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("running xz: {e} (Debian: apt-get install xz-utils)"))?;
    let mut stdin = child.stdin.take().expect("piped");
    let mut stdout = child.stdout.take().expect("piped");
    let len = std::thread::scope(|s| {
        let reader = s.spawn(move || {
            let mut out = Vec::new();
            stdout.read_to_end(&mut out).map(|_| out.len())
        });
        let written = stdin.write_all(raw);
        drop(stdin);
        written.and_then(|()| reader.join().expect("the reader does not panic"))
    })
    .map_err(|e| format!("piping through xz: {e}"))?;
    let status = child.wait().map_err(|e| format!("waiting for xz: {e}"))?;
    if !status.success() {
        return Err(format!("xz failed: {status}"));
    }
    Ok(len)
}
