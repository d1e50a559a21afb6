//! Durable appends: events/s and ack latency (p50, p99) with 1, 64 and 1024 sessions appending
//! concurrently, in batches of 100 and 1000 events, against the obvious naive designs run side by
//! side on the same data: one key per event in sled 0.34 (rmp-serde values, flush per batch), the
//! same in redb (one durable transaction per batch), and SQLite (rusqlite, WAL, synchronous=FULL,
//! one transaction per batch). Every store acknowledges a batch only once it is durable. Then
//! bytes on disk per event for each, and the peak RSS of tracevault with 100,000 sessions open.
//!
//! The stores and the runner are `tracevault::bench::ingest`'s, which `tracevault bench` measures
//! through too; the criterion benchmark carries the report's figure name.
//!
//! `cargo bench --bench append`; `cargo test` runs a tiny version of it on the fixtures.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use tracevault::bench::ingest::{fresh, meta, open_store, options, run};
use tracevault::sapimouse;
use tracevault_codecs::Event;
use tracevault_core::Log;

fn rss_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Peak RSS with many sessions open at once, each with an open block.
fn many_open_sessions(root: &Path, data: &[Event], sessions: usize) {
    let dir = fresh(&root.join("many")).unwrap();
    let before = rss_kib("VmRSS:");
    let log = Log::open(&dir, options(root)).unwrap();
    let started = Instant::now();
    let threads = 256.min(sessions);
    std::thread::scope(|scope| {
        for t in 0..threads {
            let log = &log;
            std::thread::Builder::new()
                .stack_size(256 << 10)
                .spawn_scoped(scope, move || {
                    for s in (t..sessions).step_by(threads) {
                        log.create_session(meta(s)).unwrap();
                        let at = (s * 101) % (data.len() - 100);
                        log.append(&format!("s-{s}"), &data[at..at + 100]).unwrap();
                    }
                })
                .unwrap();
        }
    });
    let open: u64 = log.sessions().iter().map(|s| s.events - s.sealed_events).sum();
    println!(
        "{sessions} sessions open at once, 100 events each: peak RSS {} MiB (RSS before the log opened: {} MiB), \
         {open} events left open under the 256 MiB budget, {:.1} s",
        rss_kib("VmHWM:") / 1024,
        before / 1024,
        started.elapsed().as_secs_f64()
    );
    drop(log);
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() {
    // A test runner listing tests (`--list`, as cargo-nextest does, twice at once) gets none:
    // this binary is one measurement run, not a list of tests.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    // Criterion runs in test mode (each benchmark once) unless cargo passes `--bench`.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let dir = if smoke {
        sapimouse::fixtures_dir()
    } else {
        sapimouse::shared_dir().unwrap_or_else(sapimouse::fixtures_dir)
    };
    let data: Vec<Event> = sapimouse::load_dir(&dir).unwrap().into_iter().flat_map(|r| r.events).collect();
    let root = std::env::var_os("TRACEVAULT_BENCH_DIR")
        .map_or_else(|| std::env::temp_dir().join("tracevault-bench-append"), PathBuf::from);
    println!(
        "append: {} events of SapiMouse ({}), files under {}",
        data.len(),
        dir.display(),
        root.display()
    );

    many_open_sessions(&root, &data, if smoke { 1000 } else { 100_000 });

    let scenarios: &[(usize, usize)] = if smoke {
        &[(1, 100), (8, 1000)]
    } else {
        &[(1, 100), (1, 1000), (64, 100), (64, 1000), (1024, 100), (1024, 1000)]
    };
    let duration = if smoke { Duration::from_millis(100) } else { Duration::from_secs(3) };
    println!(
        "each store appends for {:.1} s per row; every ack is durable (fdatasync or the store's own commit)",
        duration.as_secs_f64()
    );
    println!();
    println!(
        "{:>8} {:>6}  {:<28} {:>12} {:>9} {:>9} {:>12} {:>12}   {:>9}",
        "sessions",
        "batch",
        "store",
        "events/s",
        "p50 ms",
        "p99 ms",
        "bytes/event",
        "data b/event",
        "speed x"
    );
    let mut ours_bytes = std::collections::BTreeMap::new();
    for &(sessions, batch) in scenarios {
        let mut ours = 0.0;
        for kind in 0..4 {
            let store = open_store(kind, &root).unwrap();
            let o = run(store.as_ref(), &data, sessions, batch, duration).unwrap();
            let rate = o.events as f64 / o.seconds;
            if kind == 0 {
                ours = rate;
                ours_bytes.insert((sessions, batch), o.data_bytes as f64 / o.events.max(1) as f64);
            }
            println!(
                "{sessions:>8} {batch:>6}  {:<28} {rate:>12.0} {:>9.2} {:>9.2} {:>12.3} {:>12.3}   {:>8.1}x",
                store.name(),
                o.p50_ms,
                o.p99_ms,
                o.bytes as f64 / o.events.max(1) as f64,
                o.data_bytes as f64 / o.events.max(1) as f64,
                ours / rate
            );
            drop(store);
        }
    }
    println!();
    println!(
        "speed x: tracevault's events/s over the store's, same row. bytes/event: everything in the store's"
    );
    println!(
        "folder after its last append (tracevault: after sealing open blocks and a checkpoint), over the"
    );
    println!(
        "events appended; data b/event: only the files that grow with the data (tracevault: the segments,"
    );
    println!("without the index's fixed size; the others: the same as bytes/event).");
    let mut seen = std::collections::BTreeSet::new();
    for &(sessions, _) in scenarios.iter().filter(|(s, _)| seen.insert(*s)) {
        if let (Some(small), Some(large)) =
            (ours_bytes.get(&(sessions, 100)), ours_bytes.get(&(sessions, 1000)))
        {
            println!(
                "tracevault, {sessions} sessions: {small:.3} data bytes/event from 100-event batches, {large:.3} from 1000-event batches ({:+.1}%)",
                (small / large - 1.0) * 100.0
            );
        }
    }
    println!();

    let mut criterion =
        Criterion::default().configure_from_args().sample_size(10).measurement_time(Duration::from_secs(3));
    // Named as the report's figure: `ingest.events_per_s.64x100/tracevault`.
    let mut group = criterion.benchmark_group("ingest.events_per_s.64x100");
    let sessions = 64;
    let batch = 100;
    group.throughput(Throughput::Elements((sessions * batch) as u64));
    let store = open_store(0, &root).unwrap();
    for s in 0..sessions {
        store.create(s).unwrap();
    }
    let seq = AtomicU64::new(0);
    group.bench_function("tracevault", |b| {
        b.iter(|| {
            let round = seq.fetch_add(1, Ordering::Relaxed);
            std::thread::scope(|scope| {
                for s in 0..sessions {
                    let (store, data) = (&store, &data);
                    scope.spawn(move || {
                        let at = (s * 7919 + round as usize * batch) % (data.len() - batch);
                        store.append(s, round * batch as u64, &data[at..at + batch]).unwrap();
                    });
                }
            });
        })
    });
    group.finish();
    drop(store);
    criterion.final_summary();
    let _ = std::fs::remove_dir_all(&root);
}
