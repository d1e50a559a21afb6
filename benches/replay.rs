//! Replay: events/s for decode only (read, authenticate, decrypt, decode), decode + reduce, and
//! decode + reduce + Parquet export, on 1 and 2 threads, from a durable log of SapiMouse sessions
//! (every session copied `COPIES` times under new ids, so there is enough to measure), with the
//! 2-thread speedup over 1 thread in the same run. Then the peak RSS of an export of every copy.
//!
//! `cargo bench --bench replay`; `cargo test` runs a tiny version of it on the fixtures.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use tracevault::bench::replay::{Count, build};
use tracevault::sapimouse;
use tracevault_core::{Access, Operation, Role};
use tracevault_replay::export::{ExportOptions, Format};
use tracevault_replay::{Engine, Policy, ReduceConfig, Selection};

fn rss_kib(field: &str) -> u64 {
    tracevault::bench::status_kib("/proc/self/status", field) as u64
}

/// The best of `rounds` runs of `f`, as events/s.
fn best(rounds: usize, events: u64, mut f: impl FnMut()) -> f64 {
    let mut fastest = Duration::MAX;
    for _ in 0..rounds {
        let started = Instant::now();
        f();
        fastest = fastest.min(started.elapsed());
    }
    events as f64 / fastest.as_secs_f64()
}

fn main() {
    // A test runner listing tests (`--list`, as cargo-nextest does, twice at once) gets none:
    // this binary is one measurement run, not a list of tests.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let smoke = !std::env::args().any(|a| a == "--bench");
    let source = if smoke {
        sapimouse::fixtures_dir()
    } else {
        sapimouse::shared_dir().unwrap_or_else(sapimouse::fixtures_dir)
    };
    let copies = if smoke { 1 } else { 8 };
    let rounds = if smoke { 1 } else { 5 };
    let root = std::env::var_os("TRACEVAULT_BENCH_DIR")
        .map_or_else(|| std::env::temp_dir().join("tracevault-bench-replay"), PathBuf::from);
    let recordings = sapimouse::load_dir(&source).unwrap();
    let (log, events) = build(&root.join("log"), copies, &recordings).unwrap();
    println!(
        "replay: {events} events ({} copies of SapiMouse from {}) in {} sessions, sealed in 4096-event blocks, encrypted",
        copies,
        source.display(),
        log.sessions().len()
    );
    let access = Access::new("bench", Role::Auditor, "benchmark");
    let all = Selection::default();
    println!();
    println!("{:<34} {:>14} {:>14} {:>9}", "stage", "1 thread ev/s", "2 threads ev/s", "speedup");
    let mut rates = Vec::new();
    for stage in ["decode only", "decode + reduce", "decode + reduce + Parquet"] {
        let mut per_threads = Vec::new();
        for threads in [1, 2] {
            let engine = Engine::new(ReduceConfig::default(), threads).unwrap();
            let rate = best(rounds, events, || match stage {
                "decode only" => {
                    assert_eq!(engine.decode_only(&log, &access, &all).unwrap(), events);
                }
                "decode + reduce" => {
                    let sink = Count(Default::default());
                    let r =
                        engine.run(&log, &access, Operation::ReadSteps, &all, &sink, &mut |_, _| {}).unwrap();
                    assert_eq!(r.events, events);
                }
                _ => {
                    let out = root.join(format!("export-{threads}"));
                    let options = ExportOptions {
                        out,
                        format: Format::Parquet,
                        policy: Policy::Default,
                        sensitive_apps: vec![],
                        user_key: Some([1; 32]),
                    };
                    let r = tracevault_replay::export(&log, &engine, &access, &all, &options, &mut |_, _| {})
                        .unwrap();
                    assert_eq!(r.pass.events, events);
                }
            });
            per_threads.push(rate);
        }
        println!(
            "{stage:<34} {:>14.0} {:>14.0} {:>8.2}x",
            per_threads[0],
            per_threads[1],
            per_threads[1] / per_threads[0]
        );
        rates.push(per_threads);
    }
    println!();
    println!(
        "targets: decode + reduce at least 15 M events/s on 2 threads ({:.1} M), speedup at least 1.8 ({:.2}x)",
        rates[1][1] / 1e6,
        rates[1][1] / rates[1][0]
    );
    println!(
        "target: the Parquet export at least half the speed of decode + reduce on 2 threads ({:.0}%: {})",
        100.0 * rates[2][1] / rates[1][1],
        if rates[2][1] * 2.0 >= rates[1][1] { "met" } else { "NOT met" }
    );
    let same = std::fs::read(root.join("export-1").join(Format::Parquet.file_name())).unwrap()
        == std::fs::read(root.join("export-2").join(Format::Parquet.file_name())).unwrap();
    println!("Parquet from 1 and 2 threads byte-identical: {same}");
    assert!(same, "the export must not depend on the thread count");

    // Memory: an export of everything, against the data it holds.
    let before = rss_kib("VmHWM:");
    let engine = Engine::new(ReduceConfig::default(), 2).unwrap();
    let options = ExportOptions {
        out: root.join("export-rss"),
        format: Format::Parquet,
        policy: Policy::Default,
        sensitive_apps: vec![],
        user_key: None,
    };
    tracevault_replay::export(&log, &engine, &access, &all, &options, &mut |_, _| {}).unwrap();
    let decoded_mib = (events * std::mem::size_of::<tracevault_codecs::Event>() as u64) >> 20;
    println!(
        "peak RSS {} MiB after exporting {events} events (they would take {decoded_mib} MiB decoded at once; peak before the export {} MiB)",
        rss_kib("VmHWM:") >> 10,
        before >> 10
    );
    println!();
    drop(engine);

    let mut criterion =
        Criterion::default().configure_from_args().sample_size(10).measurement_time(Duration::from_secs(3));
    // Named as the report's figure: `replay.decode_reduce.threads_2`.
    let mut group = criterion.benchmark_group("replay.decode_reduce");
    group.throughput(Throughput::Elements(events));
    let engine = Engine::new(ReduceConfig::default(), 2).unwrap();
    group.bench_function("threads_2", |b| {
        b.iter(|| {
            engine
                .run(&log, &access, Operation::ReadSteps, &all, &Count(Default::default()), &mut |_, _| {})
                .unwrap()
        })
    });
    group.finish();
    drop(engine);
    criterion.final_summary();
    drop(log);
    let _ = std::fs::remove_dir_all(&root);
}
