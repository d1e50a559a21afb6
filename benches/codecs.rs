//! The block codec on real human input (SapiMouse), against three baselines run side by side:
//! (a) rmp-serde of the events + zstd, (b) JSONL + zstd, (c) a row-wise delta + zigzag varint
//! stream + zstd, all at the same zstd level and block size. Prints a table of bytes per event,
//! encode and decode rates and the ratios, then hands over to criterion for the detailed timings.
//!
//! `cargo bench --bench codecs` runs on the full data set (../shared/data/sapimouse, or
//! $TRACEVAULT_SAPIMOUSE). `cargo test` runs it too, in criterion's test mode: on the fixtures,
//! each benchmark once, so CI proves it still works without paying for a measurement.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use tracevault::sapimouse;
use tracevault_codecs::block::{BlockDecoder, BlockEncoder, DEFAULT_ZSTD_LEVEL};
use tracevault_codecs::{Event, EventKind, Key, Record, jsonl};

const BLOCK_SIZES: [usize; 3] = [256, 4096, 65536];

/// A way of turning a block of events into bytes and back.
trait Codec {
    fn name(&self) -> &'static str;
    fn encode(&mut self, events: &[Event], out: &mut Vec<u8>);
    fn decode(&mut self, bytes: &[u8], out: &mut Vec<Event>);
}

struct Tracevault {
    encoder: BlockEncoder,
    decoder: BlockDecoder,
    name: &'static str,
}

impl Tracevault {
    fn new(level: i32) -> Self {
        let name = Box::leak(format!("tracevault (zstd {level})").into_boxed_str());
        Tracevault { encoder: BlockEncoder::new(level), decoder: BlockDecoder::new(), name }
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
struct Zstd {
    compressor: zstd::bulk::Compressor<'static>,
    decompressor: zstd::bulk::Decompressor<'static>,
    scratch: Vec<u8>,
}

impl Zstd {
    fn new() -> Self {
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
struct MsgpackZstd(Zstd);

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
struct JsonlZstd(Zstd);

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
struct RowVarintZstd(Zstd);

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
        let raw = &mut self.0.scratch;
        raw.clear();
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
        self.0.seal(out);
    }
    fn decode(&mut self, bytes: &[u8], out: &mut Vec<Event>) {
        let raw = self.0.open(bytes);
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
fn blocks(sessions: &[Vec<Event>], size: usize) -> Vec<&[Event]> {
    sessions.iter().flat_map(|events| events.chunks(size)).collect()
}

struct Measured {
    bytes: usize,
    encode_s: f64,
    decode_s: f64,
}

/// Encodes and decodes every block, checks the round trip, and times both as the best of a few
/// repetitions of at least `min_time` each.
fn measure(codec: &mut dyn Codec, blocks: &[&[Event]], min_time: Duration) -> Measured {
    let mut encoded: Vec<Vec<u8>> = Vec::with_capacity(blocks.len());
    let mut best_encode = f64::INFINITY;
    let mut best_decode = f64::INFINITY;
    for _ in 0..3 {
        let (mut reps, start) = (0u32, Instant::now());
        while reps == 0 || start.elapsed() < min_time {
            encoded.clear();
            for block in blocks {
                let mut out = Vec::new();
                codec.encode(block, &mut out);
                encoded.push(out);
            }
            reps += 1;
        }
        best_encode = best_encode.min(start.elapsed().as_secs_f64() / f64::from(reps));
        let (mut reps, start) = (0u32, Instant::now());
        let mut out = Vec::new();
        while reps == 0 || start.elapsed() < min_time {
            for bytes in &encoded {
                out.clear();
                codec.decode(bytes, &mut out);
                black_box(&out);
            }
            reps += 1;
        }
        best_decode = best_decode.min(start.elapsed().as_secs_f64() / f64::from(reps));
    }
    let mut out = Vec::new();
    for (bytes, block) in encoded.iter().zip(blocks) {
        out.clear();
        codec.decode(bytes, &mut out);
        assert_eq!(out.as_slice(), *block, "{} does not round-trip", codec.name());
    }
    Measured { bytes: encoded.iter().map(Vec::len).sum(), encode_s: best_encode, decode_s: best_decode }
}

fn main() {
    // A test runner listing tests (`--list`, as cargo-nextest does, twice at once) gets none:
    // this binary is one measurement run, not a list of tests.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    // Criterion runs in test mode (each benchmark once) unless cargo passes `--bench`.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let (dir, source) = match sapimouse::shared_dir() {
        Some(dir) if !smoke => (dir, "SapiMouse, all recordings"),
        _ => (sapimouse::fixtures_dir(), "SapiMouse fixtures subset"),
    };
    let sessions: Vec<Vec<Event>> =
        sapimouse::load_dir(&dir).expect("SapiMouse data loads").into_iter().map(|r| r.events).collect();
    let events: usize = sessions.iter().map(Vec::len).sum();
    let min_time = if smoke { Duration::ZERO } else { Duration::from_millis(300) };
    println!("codecs: {source}: {} sessions, {events} events ({})", sessions.len(), dir.display());
    println!(
        "one thread; each figure the best of 3 repetitions; ratios are against tracevault at the same block size"
    );
    println!();
    println!(
        "{:>6}  {:<28} {:>11} {:>12} {:>12}   {:>10} {:>10} {:>10}",
        "block", "codec", "bytes/event", "encode Mev/s", "decode Mev/s", "size x", "encode x", "decode x"
    );
    for size in BLOCK_SIZES {
        let blocks = blocks(&sessions, size);
        let mut codecs: Vec<Box<dyn Codec>> = vec![
            Box::new(Tracevault::new(DEFAULT_ZSTD_LEVEL)),
            Box::new(MsgpackZstd(Zstd::new())),
            Box::new(JsonlZstd(Zstd::new())),
            Box::new(RowVarintZstd(Zstd::new())),
        ];
        if size == 4096 {
            // The default level is a choice; show its neighbours.
            for level in [3, 6, 9, 19] {
                codecs.push(Box::new(Tracevault::new(level)));
            }
        }
        let mut ours: Option<Measured> = None;
        for codec in &mut codecs {
            let m = measure(codec.as_mut(), &blocks, min_time);
            let per_event = m.bytes as f64 / events as f64;
            let enc = events as f64 / m.encode_s / 1e6;
            let dec = events as f64 / m.decode_s / 1e6;
            let base = ours.get_or_insert(Measured { ..m });
            println!(
                "{size:>6}  {:<28} {per_event:>11.3} {enc:>12.1} {dec:>12.1}   {:>9.2}x {:>9.2}x {:>9.2}x",
                codec.name(),
                per_event / (base.bytes as f64 / events as f64),
                enc / (events as f64 / base.encode_s / 1e6),
                dec / (events as f64 / base.decode_s / 1e6),
            );
        }
    }
    println!();
    println!("size x: the codec's bytes over tracevault's (above 1: tracevault is smaller).");
    println!("encode x / decode x: the codec's rate over tracevault's (below 1: tracevault is faster).");
    println!();

    let mut criterion = Criterion::default()
        .configure_from_args()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    let mut group = criterion.benchmark_group("codecs");
    group.throughput(Throughput::Elements(events as u64));
    for size in BLOCK_SIZES {
        let blocks = blocks(&sessions, size);
        let codecs: Vec<Box<dyn Codec>> = vec![
            Box::new(Tracevault::new(DEFAULT_ZSTD_LEVEL)),
            Box::new(MsgpackZstd(Zstd::new())),
            Box::new(JsonlZstd(Zstd::new())),
            Box::new(RowVarintZstd(Zstd::new())),
        ];
        for mut codec in codecs {
            let name = codec.name();
            let encoded: Vec<Vec<u8>> = blocks
                .iter()
                .map(|b| {
                    let mut out = Vec::new();
                    codec.encode(b, &mut out);
                    out
                })
                .collect();
            group.bench_function(BenchmarkId::new(format!("encode/{name}"), size), |b| {
                b.iter(|| {
                    for block in &blocks {
                        let mut out = Vec::new();
                        codec.encode(block, &mut out);
                        black_box(out);
                    }
                })
            });
            group.bench_function(BenchmarkId::new(format!("decode/{name}"), size), |b| {
                let mut out = Vec::new();
                b.iter(|| {
                    for bytes in &encoded {
                        out.clear();
                        codec.decode(bytes, &mut out);
                        black_box(&out);
                    }
                })
            });
        }
    }
    group.finish();
    criterion.final_summary();
}
