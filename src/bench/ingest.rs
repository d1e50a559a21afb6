//! Durable ingest in process: recorder-sized batches appended by 1, 64 or 1024 sessions at once,
//! each acknowledged only once durable, against the obvious naive designs on the same data: one
//! key per event in sled 0.34 (rmp-serde values, flush per batch) and in redb (one durable
//! transaction per batch), and SQLite (WAL, synchronous=FULL, one transaction per batch). Then
//! ingest from a JSON Lines file, as `tracevault ingest` does. `tracevault bench` and `cargo bench
//! --bench append` both measure through this module.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tracevault_codecs::{Event, SessionMeta};
use tracevault_core::{KeySource, Log, LogOptions};

use super::Result;

/// A store under test: sessions, appends that return once durable, and its size at the end.
pub trait Store: Sync {
    fn name(&self) -> &'static str;
    fn create(&self, session: usize) -> Result<()>;
    fn append(&self, session: usize, seq: u64, events: &[Event]) -> Result<()>;
    /// Finishes (seals, checkpoints) and returns the bytes on disk: every file, and the files
    /// that grow with the data (tracevault: the segments; the others: every file).
    fn finish(&self) -> Result<(u64, u64)>;
}

pub fn meta(session: usize) -> SessionMeta {
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

pub fn dir_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)?.flatten() {
        let meta = entry.metadata()?;
        total += if meta.is_dir() { dir_bytes(&entry.path())? } else { meta.len() };
    }
    Ok(total)
}

pub struct Tracevault {
    log: Log,
    dir: PathBuf,
    sessions: AtomicU64,
}

impl Store for Tracevault {
    fn name(&self) -> &'static str {
        "tracevault"
    }
    fn create(&self, session: usize) -> Result<()> {
        self.log.create_session(meta(session))?;
        self.sessions.fetch_max(session as u64 + 1, Ordering::Relaxed);
        Ok(())
    }
    fn append(&self, session: usize, _seq: u64, events: &[Event]) -> Result<()> {
        self.log.append(&format!("s-{session}"), events)?;
        Ok(())
    }
    fn finish(&self) -> Result<(u64, u64)> {
        for s in 0..self.sessions.load(Ordering::Relaxed) as usize {
            self.log.seal_session(&format!("s-{s}"))?;
        }
        self.log.checkpoint()?;
        Ok((dir_bytes(&self.dir)?, self.log.stats().segment_bytes))
    }
}

pub fn key(session: usize, seq: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&(session as u64).to_be_bytes());
    k[8..].copy_from_slice(&seq.to_be_bytes());
    k
}

pub struct Sled {
    db: sled::Db,
    dir: PathBuf,
}

impl Store for Sled {
    fn name(&self) -> &'static str {
        "sled 0.34 (key per event)"
    }
    fn create(&self, _session: usize) -> Result<()> {
        Ok(())
    }
    fn append(&self, session: usize, seq: u64, events: &[Event]) -> Result<()> {
        for (i, e) in events.iter().enumerate() {
            self.db.insert(key(session, seq + i as u64), rmp_serde::to_vec(e)?)?;
        }
        self.db.flush()?;
        Ok(())
    }
    fn finish(&self) -> Result<(u64, u64)> {
        self.db.flush()?;
        let bytes = dir_bytes(&self.dir)?;
        Ok((bytes, bytes))
    }
}

const REDB_EVENTS: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("events");

pub struct Redb {
    db: redb::Database,
    dir: PathBuf,
}

impl Store for Redb {
    fn name(&self) -> &'static str {
        "redb (key per event)"
    }
    fn create(&self, _session: usize) -> Result<()> {
        Ok(())
    }
    fn append(&self, session: usize, seq: u64, events: &[Event]) -> Result<()> {
        let tx = self.db.begin_write()?;
        {
            let mut table = tx.open_table(REDB_EVENTS)?;
            for (i, e) in events.iter().enumerate() {
                table.insert(key(session, seq + i as u64).as_slice(), rmp_serde::to_vec(e)?.as_slice())?;
            }
        }
        tx.commit()?;
        Ok(())
    }
    fn finish(&self) -> Result<(u64, u64)> {
        let bytes = dir_bytes(&self.dir)?;
        Ok((bytes, bytes))
    }
}

pub struct Sqlite {
    conn: Mutex<rusqlite::Connection>,
    dir: PathBuf,
}

impl Store for Sqlite {
    fn name(&self) -> &'static str {
        "SQLite WAL (row per event)"
    }
    fn create(&self, _session: usize) -> Result<()> {
        Ok(())
    }
    fn append(&self, session: usize, seq: u64, events: &[Event]) -> Result<()> {
        let mut conn = self.conn.lock().expect("not poisoned");
        let tx = conn.transaction()?;
        {
            let mut insert =
                tx.prepare_cached("INSERT INTO events (session, seq, event) VALUES (?1, ?2, ?3)")?;
            for (i, e) in events.iter().enumerate() {
                insert.execute((session as i64, (seq + i as u64) as i64, rmp_serde::to_vec(e)?))?;
            }
        }
        tx.commit()?;
        Ok(())
    }
    fn finish(&self) -> Result<(u64, u64)> {
        self.conn.lock().expect("not poisoned").execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
        let bytes = dir_bytes(&self.dir)?;
        Ok((bytes, bytes))
    }
}

/// The defaults, every payload sealed with its person's key; the keys beside the data directory.
pub fn options(root: &Path) -> LogOptions {
    LogOptions { keys: Some(KeySource::dir(root.join("keys"))), ..LogOptions::default() }
}

pub fn fresh(dir: &Path) -> Result<PathBuf> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    Ok(dir.to_owned())
}

pub fn open_store(kind: usize, root: &Path) -> Result<Box<dyn Store>> {
    Ok(match kind {
        0 => {
            let dir = fresh(&root.join("tracevault"))?;
            let log = Log::open(&dir, options(root))?;
            Box::new(Tracevault { log, dir, sessions: AtomicU64::new(0) })
        }
        1 => {
            let dir = fresh(&root.join("sled"))?;
            Box::new(Sled { db: sled::open(&dir)?, dir })
        }
        2 => {
            let dir = fresh(&root.join("redb"))?;
            Box::new(Redb { db: redb::Database::create(dir.join("events.redb"))?, dir })
        }
        _ => {
            let dir = fresh(&root.join("sqlite"))?;
            let conn = rusqlite::Connection::open(dir.join("events.sqlite"))?;
            conn.execute_batch(
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;
                 CREATE TABLE events (session INTEGER, seq INTEGER, event BLOB, PRIMARY KEY (session, seq)) WITHOUT ROWID;",
            )
            ?;
            Box::new(Sqlite { conn: Mutex::new(conn), dir })
        }
    })
}

pub struct Outcome {
    pub events: u64,
    pub seconds: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub bytes: u64,
    pub data_bytes: u64,
}

/// `sessions` threads, one per session, append `batch`-event batches of real input until
/// `duration` has passed; every append returns only once durable.
pub fn run(
    store: &dyn Store,
    data: &[Event],
    sessions: usize,
    batch: usize,
    duration: Duration,
) -> Result<Outcome> {
    for s in 0..sessions {
        store.create(s)?;
    }
    let failed: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    let latencies = Mutex::new(Vec::new());
    let events = AtomicU64::new(0);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for s in 0..sessions {
            let (latencies, events, failed) = (&latencies, &events, &failed);
            std::thread::Builder::new().stack_size(256 << 10).spawn_scoped(scope, move || {
                let mut mine = Vec::new();
                let mut at = (s * 7919) % data.len();
                let mut seq = 0u64;
                while started.elapsed() < duration {
                    if at + batch > data.len() {
                        at = 0;
                    }
                    let t0 = Instant::now();
                    if let Err(e) = store.append(s, seq, &data[at..at + batch]) {
                        failed.lock().expect("not poisoned").get_or_insert(e);
                        break;
                    }
                    mine.push(t0.elapsed());
                    at += batch;
                    seq += batch as u64;
                }
                events.fetch_add(seq, Ordering::Relaxed);
                latencies.lock().expect("not poisoned").extend(mine);
            })?;
        }
        Ok::<(), std::io::Error>(())
    })?;
    if let Some(e) = failed.into_inner().expect("not poisoned") {
        return Err(e.context(format!("{} with {sessions} sessions", store.name())));
    }
    let seconds = started.elapsed().as_secs_f64();
    let mut latencies = latencies.into_inner().expect("not poisoned");
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    let (bytes, data_bytes) = store.finish()?;
    Ok(Outcome {
        events: events.into_inner(),
        seconds,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        bytes,
        data_bytes,
    })
}

const STORE_NAMES: [&str; 4] = ["tracevault", "sled 0.34", "redb", "SQLite"];

/// The ingest section: every store at 1, 64 and 1024 sessions.
pub fn section(ctx: &super::Ctx) -> Result<super::report::Section> {
    use super::report::{Better, Figure, Section};
    let duration = ctx.row_time();
    let batches: &[usize] = if ctx.full() { &[100, 1000] } else { &[1000] };
    let mut section = Section {
        name: "ingest".into(),
        title: "durable ingest in process, against sled, redb and SQLite".into(),
        about: format!(
            "All of SapiMouse's real events as recorder batches; 1, 64 or 1024 sessions append at \
             once, a thread each, for {:.1} s per row. Every store acknowledges a batch only once it \
             is durable: tracevault with its defaults (group commit, fdatasync, 4096-event blocks, \
             every payload encrypted); sled 0.34 with one key per event and flush() per batch; redb \
             with the same keys, one durable transaction per batch; SQLite (WAL, synchronous=FULL) \
             with a row per event and a transaction per batch. tracevault's row is the median of {} \
             runs, each baseline one run. Bytes on disk: every file in the store's folder after its \
             last append (tracevault: after sealing and a checkpoint). Limits: one session can ack \
             no faster than one fdatasync per batch; more sessions no faster than the disk writes \
             the stored bytes.",
            duration.as_secs_f64(),
            ctx.repeats
        ),
        ..Section::default()
    };
    let data = ctx.real()?;
    let events = &data.events;
    let root = ctx.work.join("ingest");
    let mut table = super::report::Table {
        id: "ingest.rows".into(),
        title: "Every store, every row".into(),
        columns: ["sessions", "batch", "store", "events/s", "p50 ms", "p99 ms", "bytes/event"]
            .map(String::from)
            .to_vec(),
        rows: Vec::new(),
    };
    for &batch in batches {
        let counts: &[usize] = if ctx.smoke() { &[1, 16] } else { &[1, 64, 1024] };
        for &sessions in counts {
            let mut ours = Vec::new();
            for _ in 0..ctx.repeats {
                let store = open_store(0, &root)?;
                ours.push(run(store.as_ref(), events, sessions, batch, duration)?);
            }
            let mut theirs = Vec::new();
            for kind in 1..4 {
                let store = open_store(kind, &root)?;
                theirs.push(run(store.as_ref(), events, sessions, batch, duration)?);
            }
            for (i, o) in ours.iter().take(1).chain(&theirs).enumerate() {
                table.rows.push(vec![
                    sessions.to_string(),
                    batch.to_string(),
                    STORE_NAMES[i].to_owned(),
                    super::report::number(o.events as f64 / o.seconds),
                    format!("{:.2}", o.p50_ms),
                    format!("{:.2}", o.p99_ms),
                    format!("{:.3}", o.bytes as f64 / o.events.max(1) as f64),
                ]);
            }
            let row = format!("{sessions}x{batch}");
            let what = format!("{sessions} sessions, {batch}-event batches");
            let rate = |o: &Outcome| o.events as f64 / o.seconds;
            let per_event = |o: &Outcome| o.bytes as f64 / o.events.max(1) as f64;
            let mut fig = Figure::new(
                format!("ingest.events_per_s.{row}"),
                format!("durable events/s, {what}"),
                "events/s",
                Better::Higher,
                ours.iter().map(rate).collect(),
            );
            for (name, o) in STORE_NAMES[1..].iter().zip(&theirs) {
                fig = fig.baseline(*name, rate(o));
            }
            let stored = super::report::median(&ours.iter().map(per_event).collect::<Vec<_>>());
            fig = if sessions == 1 {
                fig.limit("one fdatasync per batch", batch as f64 / (ctx.limits.fdatasync_p50_ms / 1e3))
            } else {
                fig.limit(
                    "the disk's sequential write of the stored bytes",
                    ctx.limits.seq_write_mib_s * 1048576.0 / stored,
                )
            };
            if sessions == 1024 && batch == 1000 {
                fig = fig.target(5e6);
            }
            ctx.show(&fig);
            section.figures.push(fig);
            for (q, name) in [(0.5, "p50"), (0.99, "p99")] {
                let pick = |o: &Outcome| if q == 0.5 { o.p50_ms } else { o.p99_ms };
                let mut fig = Figure::new(
                    format!("ingest.ack_{name}_ms.{row}"),
                    format!("ack latency {name}, {what}"),
                    "ms",
                    Better::Lower,
                    ours.iter().map(pick).collect(),
                );
                for (store, o) in STORE_NAMES[1..].iter().zip(&theirs) {
                    fig = fig.baseline(*store, pick(o));
                }
                if sessions == 1 {
                    fig = fig.limit("one fdatasync", ctx.limits.fdatasync_p50_ms);
                }
                ctx.show(&fig);
                section.figures.push(fig);
            }
            let mut fig = Figure::new(
                format!("ingest.bytes_per_event.{row}"),
                format!("bytes on disk per event, {what}"),
                "bytes/event",
                Better::Lower,
                ours.iter().map(per_event).collect(),
            );
            for (store, o) in STORE_NAMES[1..].iter().zip(&theirs) {
                fig = fig.baseline(*store, per_event(o));
            }
            ctx.show(&fig);
            section.figures.push(fig);
        }
    }
    section.tables.push(table);
    let _ = std::fs::remove_dir_all(&root);
    Ok(section)
}

/// Writes sessions as an interchange file, synced; returns its size.
pub fn write_jsonl<'a>(
    path: &Path,
    sessions: impl IntoIterator<Item = (&'a tracevault_codecs::SessionMeta, &'a [tracevault_codecs::Event])>,
) -> Result<u64> {
    use std::io::Write;

    use tracevault_codecs::{Record, jsonl};
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut line = Vec::new();
    for (meta, events) in sessions {
        jsonl::write_record(&mut out, &Record::Session(meta.clone()))?;
        for e in events {
            line.clear();
            jsonl::write_record(
                &mut line,
                &Record::Event { session: meta.session.clone(), event: e.clone() },
            )?;
            out.write_all(&line)?;
        }
    }
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(std::fs::metadata(path)?.len())
}

/// Stores `file` in `log` as `tracevault ingest FILE` does: checked, stored, every session sealed.
pub fn ingest_jsonl(log: &Log, file: &Path) -> Result<()> {
    use std::io::{BufRead, BufReader};

    use tracevault_core::{Access, Role, ingest};
    let access = Access::new("bench", Role::Admin, "benchmark");
    let mut source =
        ingest::JsonlFile::new(file, |f: std::fs::File, _| Box::new(BufReader::new(f)) as Box<dyn BufRead>);
    let report = ingest::ingest(log, &access, &mut source)?;
    for s in &report.sessions {
        log.seal_session(s)?;
    }
    Ok(())
}

/// Ingest from a JSON Lines file, as `tracevault ingest FILE` does (check pass, store pass, every
/// session sealed, the log closed), with the parse alone beside it: where the time goes.
pub fn jsonl_section(ctx: &super::Ctx) -> Result<super::report::Section> {
    use std::io::{BufRead, BufReader};

    use tracevault_codecs::jsonl;

    use super::report::{Better, Figure, Section};
    let data = ctx.real()?;
    let root = ctx.work.join("jsonl");
    fresh(&root)?;
    let file = root.join("sapimouse.jsonl");
    let bytes = write_jsonl(&file, data.recordings.iter().map(|r| (&r.meta, r.events.as_slice())))?;
    let events = data.events.len() as f64;
    let mut section = Section {
        name: "jsonl".into(),
        title: "ingest from a JSON Lines file".into(),
        about: format!(
            "All of SapiMouse as one interchange file ({} MiB, {} events in {} sessions), ingested \
             as `tracevault ingest FILE` does it: every line parsed and checked in a first pass (a \
             bad line rejects the file before anything is stored), then parsed again and stored in \
             batches, every session sealed and the log closed (fdatasync'd). Beside it, one pass of \
             reading and parsing the lines alone (`jsonl::parse_line`), the floor of this design. {} \
             runs, a fresh store each.",
            bytes >> 20,
            data.events.len(),
            data.recordings.len(),
            ctx.repeats
        ),
        ..Section::default()
    };
    let mut full = Vec::new();
    for _ in 0..ctx.repeats {
        let dir = fresh(&root.join("store"))?;
        let log = Log::open(&dir, options(&root))?;
        let started = Instant::now();
        ingest_jsonl(&log, &file)?;
        log.close()?;
        full.push(events / started.elapsed().as_secs_f64());
    }
    let mut parse = Vec::new();
    for _ in 0..ctx.repeats {
        let started = Instant::now();
        let mut reader = BufReader::new(std::fs::File::open(&file)?);
        let mut text = String::new();
        let mut n = 0u64;
        while reader.read_line(&mut text)? > 0 {
            std::hint::black_box(jsonl::parse_line(text.trim_end())?);
            text.clear();
            n += 1;
        }
        std::hint::black_box(n);
        parse.push(events / started.elapsed().as_secs_f64());
    }
    let parse_fig = Figure::new(
        "jsonl.parse_only",
        "read + parse the lines once, one thread",
        "events/s",
        Better::Higher,
        parse,
    );
    let fig =
        Figure::new("jsonl.ingest", "`tracevault ingest FILE`, durable", "events/s", Better::Higher, full)
            .baseline("parse alone (one pass)", parse_fig.value)
            .target(3e6);
    ctx.show(&fig);
    ctx.show(&parse_fig);
    section.figures.push(fig);
    section.figures.push(parse_fig);
    let _ = std::fs::remove_dir_all(&root);
    Ok(section)
}
