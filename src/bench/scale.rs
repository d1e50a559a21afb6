//! Costs against the size of the data: the same pipeline at 10^5..10^8 events, and 10^3..10^6
//! sessions. Per event (or per session) the ingest time, the bytes on disk, the time to open the
//! store, list it (`stats`) and replay it, and the peak RSS of each, must stay flat as the data
//! grows. The open, the listing, the replay and an auditor's first action are measured in a fresh
//! process (`tracevault bench probe`), so their memory and time are those of a user's command, not
//! of a warm benchmark process.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use tracevault_codecs::block::BlockDecoder;
use tracevault_codecs::{Event, SessionMeta};
use tracevault_core::{Access, KeySource, Log, LogOptions, Role};
use tracevault_replay::{Engine, ReduceConfig, Reducer, Selection};

use super::Result;
use super::report::{Better, Chart, Figure, Line, Section, Table};

pub fn options(dir: &Path) -> LogOptions {
    LogOptions { keys: Some(KeySource::dir(dir.with_extension("keys"))), ..LogOptions::default() }
}

/// What `tracevault bench probe` measured in its own process.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Probe {
    pub sessions: u64,
    pub events: u64,
    pub open_ms: f64,
    /// `Log::stats` (what `tracevault stats` prints: every session listed, the files summed).
    pub stats_ms: f64,
    /// VmHWM after the open and stats.
    pub open_peak_rss_mib: f64,
    /// An auditor's time to the first action of a session: proven, the read recorded (fdatasync),
    /// its first block decoded and reduced until the first step. One sample per session probed.
    pub first_action_ms: Vec<f64>,
    /// Decode + reduce of everything, cores threads, and the VmHWM during it.
    pub replay_s: Option<f64>,
    pub replay_peak_rss_mib: Option<f64>,
}

/// The probe's work, in this process: `tracevault bench probe --store DIR`.
pub fn probe(dir: &Path, first_actions: usize, replay: bool) -> Result<Probe> {
    super::reset_peak_rss();
    let started = Instant::now();
    let log = Log::open(dir, LogOptions { create: false, ..options(dir) })?;
    let open_ms = started.elapsed().as_secs_f64() * 1e3;
    let started = Instant::now();
    let stats = log.stats();
    let stats_ms = started.elapsed().as_secs_f64() * 1e3;
    let mut probe = Probe {
        sessions: stats.sessions,
        events: stats.events,
        open_ms,
        stats_ms,
        open_peak_rss_mib: super::peak_rss_mib(),
        ..Probe::default()
    };
    if first_actions > 0 {
        let ids: Vec<String> = log.sessions().into_iter().map(|s| s.meta.session).collect();
        let access = Access::new("bench-auditor", Role::Auditor, "benchmark: time to the first action");
        for k in 0..first_actions.min(ids.len()) {
            // Spread over the store, not only its first sessions.
            let id = &ids[(k * 7919 + ids.len() / 2) % ids.len()];
            let started = Instant::now();
            first_action(&log, &access, id)?;
            probe.first_action_ms.push(started.elapsed().as_secs_f64() * 1e3);
        }
    }
    if replay {
        super::reset_peak_rss();
        let engine = Engine::new(ReduceConfig::default(), super::machine::cores())?;
        let access = Access::new("bench", Role::Auditor, "benchmark");
        let started = Instant::now();
        let sink = super::replay::Count(Default::default());
        let r = engine.run(
            &log,
            &access,
            tracevault_core::Operation::ReadSteps,
            &Selection::default(),
            &sink,
            &mut |_, _| {},
        )?;
        if r.events != probe.events {
            bail!("the replay read {} events of {}", r.events, probe.events);
        }
        probe.replay_s = Some(started.elapsed().as_secs_f64());
        probe.replay_peak_rss_mib = Some(super::peak_rss_mib());
    }
    log.close()?;
    Ok(probe)
}

/// What an auditor waits for before the first action of `id` shows: the session proven against
/// the newest signed head, the read recorded, the first block read, decrypted, decoded and reduced
/// until a step comes out. Returns the step's name.
pub fn first_action(log: &Log, access: &Access, id: &str) -> Result<&'static str> {
    let proof = log.verify_session(id)?;
    let mut blocks = log.session_blocks(access, id, 0..=u64::MAX)?;
    blocks.bind_to_proof(&proof)?;
    let screen = log.session_info(id).and_then(|s| s.meta.screen);
    let mut reducer = Reducer::new(ReduceConfig::default(), screen);
    let mut decoder = BlockDecoder::new();
    for i in 0..blocks.sealed_count() {
        let b = blocks.read_sealed(i, &mut decoder)?;
        reducer.push_block(b.block, b.seq_first, &b.events);
        if let Some(step) = reducer.drain().next() {
            return Ok(step.action.name());
        }
    }
    if let Some(b) = blocks.read_open(&mut decoder)? {
        reducer.push_block(b.block, b.seq_first, &b.events);
    }
    let (steps, _) = reducer.finish();
    Ok(steps.first().map_or("none", |s| s.action.name()))
}

/// Runs the probe in a fresh process of `exe`.
pub fn probe_process(exe: &Path, dir: &Path, first_actions: usize, replay: bool) -> Result<Probe> {
    let mut cmd = Command::new(exe);
    cmd.args(["bench", "probe", "--store"]).arg(dir).args(["--first-actions", &first_actions.to_string()]);
    if replay {
        cmd.arg("--replay");
    }
    let out = cmd.output().with_context(|| format!("running {} bench probe", exe.display()))?;
    if !out.status.success() {
        bail!("bench probe of {} failed: {}", dir.display(), String::from_utf8_lossy(&out.stderr).trim());
    }
    serde_json::from_slice(&out.stdout).context("bench probe's output")
}

/// Sessions of `per_session` events, cut from the pool, until `total` events; each session a new
/// id and one of `users` people.
fn plan(pool: &[Vec<Event>], total: u64, per_session: usize) -> Vec<(usize, usize, usize)> {
    // (pool session, start, len)
    let mut plan = Vec::new();
    let mut left = total as usize;
    let mut k = 0usize;
    while left > 0 {
        let src = &pool[k % pool.len()];
        let len = per_session.min(src.len()).min(left);
        let start = (k / pool.len() * 977) % (src.len() - len + 1);
        plan.push((k % pool.len(), start, len));
        left -= len;
        k += 1;
    }
    plan
}

/// Writes the planned sessions with `threads` writers, each session created, appended in
/// `batch`-event batches (each durable) and sealed. Returns the seconds.
fn write(
    log: &Log,
    pool: &[Vec<Event>],
    plan: &[(usize, usize, usize)],
    batch: usize,
    threads: usize,
) -> Result<f64> {
    let next = AtomicUsize::new(0);
    let started = Instant::now();
    std::thread::scope(|scope| -> Result<()> {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let next = &next;
                std::thread::Builder::new().stack_size(512 << 10).spawn_scoped(
                    scope,
                    move || -> Result<()> {
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            let Some(&(src, start, len)) = plan.get(i) else { return Ok(()) };
                            let id = format!("scale-{i:08}");
                            log.create_session(SessionMeta {
                                session: id.clone(),
                                user: format!("person-{}", i % 1000),
                                device: Some("bench".into()),
                                screen: Some(tracevault_codecs::Screen { w: 1920, h: 1080 }),
                                started_at: None,
                                layout: None,
                                labels: Default::default(),
                            })?;
                            for chunk in pool[src][start..start + len].chunks(batch) {
                                log.append(&id, chunk)?;
                            }
                            log.seal_session(&id)?;
                        }
                    },
                )
            })
            .collect::<std::io::Result<_>>()?;
        handles.into_iter().try_for_each(|h| h.join().expect("a writer does not panic"))
    })?;
    Ok(started.elapsed().as_secs_f64())
}

struct Point {
    size: u64,
    write_s: f64,
    write_rss_mib: f64,
    disk_bytes: u64,
    probe: Probe,
}

fn measure_point(
    ctx: &super::Ctx,
    pool: &[Vec<Event>],
    name: &str,
    total_events: u64,
    per_session: usize,
    first_actions: usize,
    replay: bool,
) -> Result<Point> {
    let dir = ctx.work.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(dir.with_extension("keys"));
    let plan = plan(pool, total_events, per_session);
    super::reset_peak_rss();
    let log = Log::open(&dir, options(&dir))?;
    let write_s = write(&log, pool, &plan, 1000, 64)?;
    log.close()?;
    let write_rss_mib = super::peak_rss_mib();
    let disk_bytes = super::ingest::dir_bytes(&dir)?;
    let probe = probe_process(&ctx.exe, &dir, first_actions, replay)?;
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(dir.with_extension("keys"));
    Ok(Point { size: plan.len() as u64, write_s, write_rss_mib, disk_bytes, probe })
}

fn exponent(n: u64) -> String {
    let e = (n as f64).log10().round() as i32;
    if 10u64.pow(e as u32) == n { format!("1e{e}") } else { n.to_string() }
}

/// The events axis: one pipeline per size, sessions of up to 20,000 events.
pub fn events_section(ctx: &super::Ctx) -> Result<Section> {
    let sizes: Vec<u64> = match (ctx.smoke(), ctx.full()) {
        (true, _) => vec![10_000, 100_000],
        (_, true) => vec![100_000, 1_000_000, 10_000_000, 100_000_000],
        _ => vec![100_000, 1_000_000, 10_000_000],
    };
    let pool = ctx.generated();
    let mut section = Section {
        name: "events".into(),
        title: "scaling in events".into(),
        about: "The same pipeline at each size: the generator's sessions (cut to at most 20,000 events \
                each, new ids, 1000 people) written by 64 threads in durable 1000-event batches, \
                every session sealed, the log closed; then, in a fresh process, the log opened, \
                `stats`, and a decode + reduce of everything on every core. Flat per-event costs and \
                a flat RSS are the goal: nothing may grow with the data held."
            .into(),
        ..Section::default()
    };
    let mut table = Table {
        id: "events.table".into(),
        title: "Per event, against the events held".into(),
        columns: [
            "events",
            "sessions",
            "ingest ns/event",
            "ingest peak RSS MiB",
            "bytes/event on disk",
            "open ms",
            "open peak RSS MiB",
            "replay ns/event",
            "replay peak RSS MiB",
        ]
        .map(String::from)
        .to_vec(),
        rows: Vec::new(),
    };
    let mut ingest_line = Line { name: "ingest ns/event".into(), points: vec![] };
    let mut replay_line = Line { name: "replay ns/event".into(), points: vec![] };
    let mut rss_lines = [
        Line { name: "ingest".into(), points: vec![] },
        Line { name: "open + stats".into(), points: vec![] },
        Line { name: "replay".into(), points: vec![] },
    ];
    println!("  {}", table.columns.join(" | "));
    for &n in &sizes {
        let p = measure_point(ctx, pool, "scale-events", n, 20_000, 0, true)?;
        let e = p.probe.events as f64;
        if p.probe.events != n {
            bail!("the store held {} events, {n} were written", p.probe.events);
        }
        let ingest_ns = p.write_s * 1e9 / e;
        let replay_ns = p.probe.replay_s.unwrap_or(0.0) * 1e9 / e;
        table.rows.push(vec![
            exponent(n),
            p.size.to_string(),
            format!("{ingest_ns:.1}"),
            format!("{:.0}", p.write_rss_mib),
            format!("{:.3}", p.disk_bytes as f64 / e),
            format!("{:.1}", p.probe.open_ms),
            format!("{:.0}", p.probe.open_peak_rss_mib),
            format!("{replay_ns:.1}"),
            format!("{:.0}", p.probe.replay_peak_rss_mib.unwrap_or(0.0)),
        ]);
        println!("  {}", table.rows.last().expect("pushed").join(" | "));
        ingest_line.points.push((n as f64, ingest_ns));
        replay_line.points.push((n as f64, replay_ns));
        rss_lines[0].points.push((n as f64, p.write_rss_mib));
        rss_lines[1].points.push((n as f64, p.probe.open_peak_rss_mib));
        rss_lines[2].points.push((n as f64, p.probe.replay_peak_rss_mib.unwrap_or(0.0)));
        let key = exponent(n);
        for fig in [
            Figure::new(
                format!("events.ingest_ns_per_event.{key}"),
                format!("ingest, {key} events"),
                "ns/event",
                Better::Lower,
                vec![ingest_ns],
            ),
            Figure::new(
                format!("events.replay_ns_per_event.{key}"),
                format!("decode + reduce, {key} events"),
                "ns/event",
                Better::Lower,
                vec![replay_ns],
            ),
            Figure::new(
                format!("events.replay_peak_rss_mib.{key}"),
                format!("replay peak RSS, {key} events"),
                "MiB",
                Better::Lower,
                vec![p.probe.replay_peak_rss_mib.unwrap_or(0.0)],
            ),
            Figure::new(
                format!("events.open_ms.{key}"),
                format!("open, {key} events"),
                "ms",
                Better::Lower,
                vec![p.probe.open_ms],
            ),
        ] {
            section.figures.push(fig);
        }
    }
    section.tables.push(table);
    section.notes.push(
        "The open reads the segment being written from its start (its footer will hash all of it): at most \
         `segment_bytes_max` (64 MiB), so the open's time and RSS grow with the data until the first segment \
         is full, then stay bounded. After a clean close nothing else is scanned."
            .into(),
    );
    section.charts.push(Chart {
        file: "events-cost.svg".into(),
        title: "cost per event against events held".into(),
        x_label: "events".into(),
        y_label: "ns per event".into(),
        log_x: true,
        lines: vec![ingest_line, replay_line],
    });
    section.charts.push(Chart {
        file: "events-rss.svg".into(),
        title: "peak RSS against events held".into(),
        x_label: "events".into(),
        y_label: "MiB".into(),
        log_x: true,
        lines: rss_lines.into(),
    });
    Ok(section)
}

/// The sessions axis: short sessions (100 events each), and an auditor's time to the first action
/// of one of them.
pub fn sessions_section(ctx: &super::Ctx) -> Result<Section> {
    let sizes: Vec<u64> = match (ctx.smoke(), ctx.full()) {
        (true, _) => vec![100, 1_000],
        (_, true) => vec![1_000, 10_000, 100_000, 1_000_000],
        _ => vec![1_000, 10_000, 100_000],
    };
    let per_session = 100;
    let pool = ctx.generated();
    let probes = if ctx.smoke() { 3 } else { 12 };
    let mut section = Section {
        name: "sessions".into(),
        title: "scaling in sessions, and an auditor's first action".into(),
        about: format!(
            "Short sessions of {per_session} events each (cut from the generator's), 1000 people, \
             written by 64 threads, each session created, appended (durable) and sealed, then the \
             log closed. Then, in a fresh process: the open, `stats` (every session listed), and an \
             auditor's time to the first action of {probes} sessions spread over the store (the \
             session proven against the newest signed head, the read recorded in the audit log with \
             its fdatasync, the first block decrypted, decoded and reduced until a step comes out), one \
             after another. The first after the open is its own figure (it also fills the proof \
             cache: the Merkle tree's complete 256-leaf chunks hashed once); the figure is the median \
             of the others. Per session, every cost must stay flat."
        ),
        ..Section::default()
    };
    let mut table = Table {
        id: "sessions.table".into(),
        title: "Per session, against the sessions held".into(),
        columns: [
            "sessions",
            "ingest µs/session",
            "ingest peak RSS MiB",
            "bytes/session on disk",
            "open ms",
            "open µs/session",
            "stats ms",
            "open + stats peak RSS MiB",
            "KiB RSS/session",
            "first action ms (median of the later)",
            "first action after the open ms",
        ]
        .map(String::from)
        .to_vec(),
        rows: Vec::new(),
    };
    let mut cost = [
        Line { name: "ingest µs/session".into(), points: vec![] },
        Line { name: "open µs/session".into(), points: vec![] },
        Line { name: "stats µs/session".into(), points: vec![] },
    ];
    let mut rss = [
        Line { name: "ingest KiB/session".into(), points: vec![] },
        Line { name: "open + stats KiB/session".into(), points: vec![] },
    ];
    let mut first = Line { name: "first action ms".into(), points: vec![] };
    println!("  {}", table.columns.join(" | "));
    for &n in &sizes {
        let p =
            measure_point(ctx, pool, "scale-sessions", n * per_session as u64, per_session, probes, false)?;
        if p.probe.sessions != n {
            bail!("the store held {} sessions, {n} were written", p.probe.sessions);
        }
        let s = n as f64;
        // The first proof after the open also hashes the tree's chunks into the cache: it is its own
        // figure, so it does not widen the others' noise band.
        let (after_open, later) = match p.probe.first_action_ms.split_first() {
            Some((first, rest)) if !rest.is_empty() => (*first, rest.to_vec()),
            Some((first, _)) => (*first, vec![*first]),
            None => (0.0, vec![]),
        };
        let fa = super::report::median(&later);
        table.rows.push(vec![
            exponent(n),
            format!("{:.1}", p.write_s * 1e6 / s),
            format!("{:.0}", p.write_rss_mib),
            format!("{:.0}", p.disk_bytes as f64 / s),
            format!("{:.1}", p.probe.open_ms),
            format!("{:.2}", p.probe.open_ms * 1e3 / s),
            format!("{:.1}", p.probe.stats_ms),
            format!("{:.0}", p.probe.open_peak_rss_mib),
            format!("{:.2}", p.probe.open_peak_rss_mib * 1024.0 / s),
            format!("{fa:.2}"),
            format!("{after_open:.2}"),
        ]);
        println!("  {}", table.rows.last().expect("pushed").join(" | "));
        cost[0].points.push((s, p.write_s * 1e6 / s));
        cost[1].points.push((s, p.probe.open_ms * 1e3 / s));
        cost[2].points.push((s, p.probe.stats_ms * 1e3 / s));
        rss[0].points.push((s, p.write_rss_mib * 1024.0 / s));
        rss[1].points.push((s, p.probe.open_peak_rss_mib * 1024.0 / s));
        first.points.push((s, fa));
        let key = exponent(n);
        section.figures.push(Figure::new(
            format!("sessions.ingest_us_per_session.{key}"),
            format!("ingest, {key} sessions of {per_session} events"),
            "µs/session",
            Better::Lower,
            vec![p.write_s * 1e6 / s],
        ));
        section.figures.push(Figure::new(
            format!("sessions.open_ms.{key}"),
            format!("open, {key} sessions"),
            "ms",
            Better::Lower,
            vec![p.probe.open_ms],
        ));
        section.figures.push(Figure::new(
            format!("sessions.open_peak_rss_mib.{key}"),
            format!("open + stats peak RSS, {key} sessions"),
            "MiB",
            Better::Lower,
            vec![p.probe.open_peak_rss_mib],
        ));
        section.figures.push(Figure::new(
            format!("auditor.first_action_after_open_ms.{key}"),
            format!("auditor's first action after the open, among {key} sessions"),
            "ms",
            Better::Lower,
            vec![after_open],
        ));
        let fig = Figure::new(
            format!("auditor.first_action_ms.{key}"),
            format!("auditor's first action among {key} sessions"),
            "ms",
            Better::Lower,
            later,
        )
        .limit("one fdatasync (the audit entry)", ctx.limits.fdatasync_p50_ms)
        .target(5.0);
        ctx.show(&fig);
        section.figures.push(fig);
    }
    section.tables.push(table);
    section.notes.push(
        "Every session's state (its metadata, progress and recent batch ids) is held in memory while the log \
         is open, by design: RSS grows by a constant amount per session, on top of the index's page cache \
         (at most 64 MiB)."
            .into(),
    );
    section.charts.push(Chart {
        file: "sessions-cost.svg".into(),
        title: "cost per session against sessions held".into(),
        x_label: "sessions".into(),
        y_label: "µs per session".into(),
        log_x: true,
        lines: cost.into(),
    });
    section.charts.push(Chart {
        file: "sessions-rss.svg".into(),
        title: "peak RSS per session against sessions held".into(),
        x_label: "sessions".into(),
        y_label: "KiB per session".into(),
        log_x: true,
        lines: rss.into(),
    });
    section.charts.push(Chart {
        file: "auditor-first-action.svg".into(),
        title: "an auditor's time to the first action".into(),
        x_label: "sessions in the store".into(),
        y_label: "ms".into(),
        log_x: true,
        lines: vec![first],
    });
    Ok(section)
}
