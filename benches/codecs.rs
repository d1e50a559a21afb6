//! The block codec, version 2 and version 1, on three data sets (SapiMouse's real human input,
//! the generator's sessions, short keystroke-heavy sessions), against three baselines run side by side
//! (`tracevault::bench::codec`, which `tracevault bench` measures through too): (a) rmp-serde of
//! the events + zstd, (b) JSONL + zstd, (c) a row-wise delta + zigzag varint stream + zstd, all at
//! the same zstd level and block size. Prints a table of bytes per event, encode and decode rates
//! and the ratios (SapiMouse at three block sizes and, for v1, five zstd levels; the other sets at
//! 4096), then hands over to criterion, whose benchmark names are the report's figure names
//! (`codec.encode.sapimouse/...`).
//!
//! `cargo bench --bench codecs` runs on the full data set (../shared/data/sapimouse, or
//! $TRACEVAULT_SAPIMOUSE). `cargo test` runs it too, in criterion's test mode: on the fixtures,
//! each benchmark once, so CI proves it still works without paying for a measurement.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput};
use tracevault::bench::TYPING_KEYS;
use tracevault::bench::codec::{
    BLOCK_SIZES, Codec, JsonlZstd, Measured, MsgpackZstd, RowVarintZstd, Tracevault, Zstd, blocks, measure,
};
use tracevault::generate::{self, Workload};
use tracevault::sapimouse;
use tracevault_codecs::Event;
use tracevault_codecs::block::DEFAULT_ZSTD_LEVEL;

/// A data set's name, its sessions, and the block sizes it is cut into.
type DataSet<'a> = (&'static str, &'a [Vec<Event>], &'static [usize]);

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
    let generated: Vec<Vec<Event>> = generate::sessions(&Workload {
        sessions: if smoke { 2 } else { 16 },
        minutes: if smoke { 1.0 } else { 6.0 },
        seed: 16,
    })
    .into_iter()
    .map(|(_, events)| events)
    .collect();
    let typing: Vec<Vec<Event>> =
        (0..if smoke { 20 } else { 2000 }).map(|i| generate::typing_session(16, i, TYPING_KEYS).1).collect();
    let events: usize = sessions.iter().map(Vec::len).sum();
    let min_time = if smoke { Duration::ZERO } else { Duration::from_millis(300) };
    println!("codecs: {source}: {} sessions, {events} events ({})", sessions.len(), dir.display());
    println!(
        "one thread; each figure the best of 3 repetitions; ratios are against tracevault v3 (the block format written now) at the same block size"
    );
    println!();
    println!(
        "{:<10} {:>6}  {:<28} {:>11} {:>12} {:>12}   {:>10} {:>10} {:>10}",
        "data",
        "block",
        "codec",
        "bytes/event",
        "encode Mev/s",
        "decode Mev/s",
        "size x",
        "encode x",
        "decode x"
    );
    let sets: [DataSet<'_>; 3] = [
        ("sapimouse", &sessions, &BLOCK_SIZES),
        ("generated", &generated, &[4096]),
        ("typing", &typing, &[4096]),
    ];
    for (set, data, sizes) in sets {
        let events: usize = data.iter().map(Vec::len).sum();
        for &size in sizes {
            let blocks = blocks(data, size);
            let mut codecs: Vec<Box<dyn Codec>> = vec![
                Box::new(Tracevault::new(DEFAULT_ZSTD_LEVEL)),
                Box::new(Tracevault::v1(DEFAULT_ZSTD_LEVEL)),
                Box::new(MsgpackZstd(Zstd::new())),
                Box::new(JsonlZstd(Zstd::new())),
                Box::new(RowVarintZstd(Zstd::new())),
            ];
            if size == 4096 && set == "sapimouse" {
                // Version 1's level was a choice; show its neighbours.
                for level in [3, 9, 19] {
                    codecs.push(Box::new(Tracevault::v1(level)));
                }
            }
            let mut ours: Option<Measured> = None;
            for codec in &mut codecs {
                let m = measure(codec.as_mut(), &blocks, min_time, 3).expect("every codec round-trips");
                let per_event = m.bytes as f64 / events as f64;
                let enc = events as f64 / m.best_encode_s() / 1e6;
                let dec = events as f64 / m.best_decode_s() / 1e6;
                let base = ours.get_or_insert(Measured { ..m });
                println!(
                    "{set:<10} {size:>6}  {:<28} {per_event:>11.3} {enc:>12.1} {dec:>12.1}   {:>9.2}x {:>9.2}x {:>9.2}x",
                    codec.name(),
                    per_event / (base.bytes as f64 / events as f64),
                    enc / (events as f64 / base.best_encode_s() / 1e6),
                    dec / (events as f64 / base.best_decode_s() / 1e6),
                );
            }
        }
    }
    println!();
    println!("size x: the codec's bytes over tracevault v3's (above 1: v3 is smaller).");
    println!("encode x / decode x: the codec's rate over v3's (below 1: v3 is faster).");
    println!();

    let mut criterion = Criterion::default()
        .configure_from_args()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    // Named as the report's figures: `codec.encode.sapimouse/<codec>/<block size>`.
    let mut group = criterion.benchmark_group("codec");
    group.throughput(Throughput::Elements(events as u64));
    for size in BLOCK_SIZES {
        let blocks = blocks(&sessions, size);
        let codecs: Vec<Box<dyn Codec>> = vec![
            Box::new(Tracevault::new(DEFAULT_ZSTD_LEVEL)),
            Box::new(Tracevault::v1(DEFAULT_ZSTD_LEVEL)),
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
            group.bench_function(BenchmarkId::new(format!("encode.sapimouse/{name}"), size), |b| {
                b.iter(|| {
                    for block in &blocks {
                        let mut out = Vec::new();
                        codec.encode(block, &mut out);
                        black_box(out);
                    }
                })
            });
            group.bench_function(BenchmarkId::new(format!("decode.sapimouse/{name}"), size), |b| {
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
