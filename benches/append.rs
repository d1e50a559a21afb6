//! Durable appends: events/s and ack latency (p50, p99) with 1, 64 and 1024 sessions appending
//! concurrently, in batches of 100 and 1000 events, against the obvious naive designs run side by
//! side on the same data: one key per event in sled 0.34 (rmp-serde values, flush per batch), the
//! same in redb (one durable transaction per batch), and SQLite (rusqlite, WAL, synchronous=FULL,
//! one transaction per batch). Every store acknowledges a batch only once it is durable. Then
//! bytes on disk per event for each, and the peak RSS of tracevault with 100,000 sessions open.
//!
//! `cargo bench --bench append`; `cargo test` runs a tiny version of it on the fixtures.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use tracevault::sapimouse;
use tracevault_codecs::{Event, SessionMeta};
use tracevault_core::{KeySource, Log, LogOptions};

/// A store under test: sessions, appends that return once durable, and its size at the end.
trait Store: Sync {
    fn name(&self) -> &'static str;
    fn create(&self, session: usize);
    fn append(&self, session: usize, seq: u64, events: &[Event]);
    /// Finishes (seals, checkpoints) and returns the bytes on disk: every file, and the files
    /// that grow with the data (tracevault: the segments; the others: every file).
    fn finish(&self) -> (u64, u64);
}

fn meta(session: usize) -> SessionMeta {
    SessionMeta {
        session: format!("s-{session}"),
        user: format!("u-{}", session % 100),
        device: None,
        screen: None,
        started_at: None,
        layout: None,
        labels: Default::default(),
    }
}

fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let meta = entry.metadata().unwrap();
        total += if meta.is_dir() { dir_bytes(&entry.path()) } else { meta.len() };
    }
    total
}

struct Tracevault {
    log: Log,
    dir: PathBuf,
    sessions: AtomicU64,
}

impl Store for Tracevault {
    fn name(&self) -> &'static str {
        "tracevault"
    }
    fn create(&self, session: usize) {
        self.log.create_session(meta(session)).unwrap();
        self.sessions.fetch_max(session as u64 + 1, Ordering::Relaxed);
    }
    fn append(&self, session: usize, _seq: u64, events: &[Event]) {
        self.log.append(&format!("s-{session}"), events).unwrap();
    }
    fn finish(&self) -> (u64, u64) {
        for s in 0..self.sessions.load(Ordering::Relaxed) as usize {
            self.log.seal_session(&format!("s-{s}")).unwrap();
        }
        self.log.checkpoint().unwrap();
        (dir_bytes(&self.dir), self.log.stats().segment_bytes)
    }
}

fn key(session: usize, seq: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&(session as u64).to_be_bytes());
    k[8..].copy_from_slice(&seq.to_be_bytes());
    k
}

struct Sled {
    db: sled::Db,
    dir: PathBuf,
}

impl Store for Sled {
    fn name(&self) -> &'static str {
        "sled 0.34 (key per event)"
    }
    fn create(&self, _session: usize) {}
    fn append(&self, session: usize, seq: u64, events: &[Event]) {
        for (i, e) in events.iter().enumerate() {
            self.db.insert(key(session, seq + i as u64), rmp_serde::to_vec(e).unwrap()).unwrap();
        }
        self.db.flush().unwrap();
    }
    fn finish(&self) -> (u64, u64) {
        self.db.flush().unwrap();
        let bytes = dir_bytes(&self.dir);
        (bytes, bytes)
    }
}

const REDB_EVENTS: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("events");

struct Redb {
    db: redb::Database,
    dir: PathBuf,
}

impl Store for Redb {
    fn name(&self) -> &'static str {
        "redb (key per event)"
    }
    fn create(&self, _session: usize) {}
    fn append(&self, session: usize, seq: u64, events: &[Event]) {
        let tx = self.db.begin_write().unwrap();
        {
            let mut table = tx.open_table(REDB_EVENTS).unwrap();
            for (i, e) in events.iter().enumerate() {
                table
                    .insert(key(session, seq + i as u64).as_slice(), rmp_serde::to_vec(e).unwrap().as_slice())
                    .unwrap();
            }
        }
        tx.commit().unwrap();
    }
    fn finish(&self) -> (u64, u64) {
        let bytes = dir_bytes(&self.dir);
        (bytes, bytes)
    }
}

struct Sqlite {
    conn: Mutex<rusqlite::Connection>,
    dir: PathBuf,
}

impl Store for Sqlite {
    fn name(&self) -> &'static str {
        "SQLite WAL (row per event)"
    }
    fn create(&self, _session: usize) {}
    fn append(&self, session: usize, seq: u64, events: &[Event]) {
        let mut conn = self.conn.lock().unwrap();
        let tx = conn.transaction().unwrap();
        {
            let mut insert =
                tx.prepare_cached("INSERT INTO events (session, seq, event) VALUES (?1, ?2, ?3)").unwrap();
            for (i, e) in events.iter().enumerate() {
                insert
                    .execute((session as i64, (seq + i as u64) as i64, rmp_serde::to_vec(e).unwrap()))
                    .unwrap();
            }
        }
        tx.commit().unwrap();
    }
    fn finish(&self) -> (u64, u64) {
        self.conn.lock().unwrap().execute_batch("PRAGMA wal_checkpoint(TRUNCATE);").unwrap();
        let bytes = dir_bytes(&self.dir);
        (bytes, bytes)
    }
}

/// The defaults, every payload sealed with its person's key; the keys beside the data directory.
fn options(root: &Path) -> LogOptions {
    LogOptions { keys: Some(KeySource::dir(root.join("keys"))), ..LogOptions::default() }
}

fn fresh(dir: &Path) -> PathBuf {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    dir.to_owned()
}

fn open_store(kind: usize, root: &Path) -> Box<dyn Store> {
    match kind {
        0 => {
            let dir = fresh(&root.join("tracevault"));
            let log = Log::open(&dir, options(root)).unwrap();
            Box::new(Tracevault { log, dir, sessions: AtomicU64::new(0) })
        }
        1 => {
            let dir = fresh(&root.join("sled"));
            Box::new(Sled { db: sled::open(&dir).unwrap(), dir })
        }
        2 => {
            let dir = fresh(&root.join("redb"));
            Box::new(Redb { db: redb::Database::create(dir.join("events.redb")).unwrap(), dir })
        }
        _ => {
            let dir = fresh(&root.join("sqlite"));
            let conn = rusqlite::Connection::open(dir.join("events.sqlite")).unwrap();
            conn.execute_batch(
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;
                 CREATE TABLE events (session INTEGER, seq INTEGER, event BLOB, PRIMARY KEY (session, seq)) WITHOUT ROWID;",
            )
            .unwrap();
            Box::new(Sqlite { conn: Mutex::new(conn), dir })
        }
    }
}

struct Outcome {
    events: u64,
    seconds: f64,
    p50_ms: f64,
    p99_ms: f64,
    bytes: u64,
    data_bytes: u64,
}

/// `sessions` threads, one per session, append `batch`-event batches of real input until
/// `duration` has passed; every append returns only once durable.
fn run(store: &dyn Store, data: &[Event], sessions: usize, batch: usize, duration: Duration) -> Outcome {
    for s in 0..sessions {
        store.create(s);
    }
    let latencies = Mutex::new(Vec::new());
    let events = AtomicU64::new(0);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for s in 0..sessions {
            let (latencies, events) = (&latencies, &events);
            std::thread::Builder::new()
                .stack_size(256 << 10)
                .spawn_scoped(scope, move || {
                    let mut mine = Vec::new();
                    let mut at = (s * 7919) % data.len();
                    let mut seq = 0u64;
                    while started.elapsed() < duration {
                        if at + batch > data.len() {
                            at = 0;
                        }
                        let t0 = Instant::now();
                        store.append(s, seq, &data[at..at + batch]);
                        mine.push(t0.elapsed());
                        at += batch;
                        seq += batch as u64;
                    }
                    events.fetch_add(seq, Ordering::Relaxed);
                    latencies.lock().unwrap().extend(mine);
                })
                .unwrap();
        }
    });
    let seconds = started.elapsed().as_secs_f64();
    let mut latencies = latencies.into_inner().unwrap();
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    let (bytes, data_bytes) = store.finish();
    Outcome { events: events.into_inner(), seconds, p50_ms: pct(0.50), p99_ms: pct(0.99), bytes, data_bytes }
}

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
    let dir = fresh(&root.join("many"));
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
            let store = open_store(kind, &root);
            let o = run(store.as_ref(), &data, sessions, batch, duration);
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
    let mut group = criterion.benchmark_group("append");
    let sessions = 64;
    let batch = 100;
    group.throughput(Throughput::Elements((sessions * batch) as u64));
    let store = open_store(0, &root);
    for s in 0..sessions {
        store.create(s);
    }
    let seq = AtomicU64::new(0);
    group.bench_function("tracevault/64 sessions x 100 events, one round", |b| {
        b.iter(|| {
            let round = seq.fetch_add(1, Ordering::Relaxed);
            std::thread::scope(|scope| {
                for s in 0..sessions {
                    let (store, data) = (&store, &data);
                    scope.spawn(move || {
                        let at = (s * 7919 + round as usize * batch) % (data.len() - batch);
                        store.append(s, round * batch as u64, &data[at..at + batch]);
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
