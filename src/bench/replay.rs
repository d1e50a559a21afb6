//! Replay from a durable, encrypted log of SapiMouse sessions: decode only (read, authenticate,
//! decrypt, decode), decode + reduce into steps, and decode + reduce + the Parquet export, at 1..N
//! threads, with the speedup over one thread. `tracevault bench` and `cargo bench --bench replay`
//! both measure through this module.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::ensure;
use tracevault_core::{Access, KeySource, Log, LogOptions, Operation, Role};
use tracevault_replay::export::{ExportOptions, Format};
use tracevault_replay::{Engine, Policy, ReduceConfig, ReplayError, Selection, SessionSteps, StepSink};

use super::Result;

/// A sink that keeps nothing: reduction alone.
pub struct Count(pub AtomicU64);

impl StepSink for Count {
    type Rendered = u64;

    fn render(&self, s: &SessionSteps) -> Result<u64, ReplayError> {
        Ok(s.steps.len() as u64)
    }

    fn write(&self, steps: u64) -> Result<(), ReplayError> {
        self.0.fetch_add(steps, Ordering::Relaxed);
        Ok(())
    }
}

/// A log holding `copies` copies of every recording (new session ids), sealed and checkpointed.
pub fn build(dir: &Path, copies: usize, recordings: &[crate::sapimouse::Recording]) -> Result<(Log, u64)> {
    let _ = std::fs::remove_dir_all(dir);
    let options =
        LogOptions { keys: Some(KeySource::dir(dir.with_extension("keys"))), ..LogOptions::default() };
    let log = Log::open(dir, options)?;
    let mut events = 0;
    for copy in 0..copies {
        std::thread::scope(|scope| -> Result<()> {
            let handles: Vec<_> = recordings
                .iter()
                .map(|r| {
                    let log = &log;
                    scope.spawn(move || -> Result<()> {
                        let mut meta = r.meta.clone();
                        meta.session = format!("{}-c{copy}", meta.session);
                        log.create_session(meta.clone())?;
                        for batch in r.events.chunks(4096) {
                            log.append(&meta.session, batch)?;
                        }
                        log.seal_session(&meta.session)?;
                        Ok(())
                    })
                })
                .collect();
            handles.into_iter().try_for_each(|h| h.join().expect("a writer does not panic"))
        })?;
        events += recordings.iter().map(|r| r.events.len() as u64).sum::<u64>();
    }
    log.checkpoint()?;
    Ok((log, events))
}

pub const STAGES: [&str; 3] = ["decode", "decode_reduce", "decode_reduce_parquet"];

/// Runs one stage once on `threads` threads; returns the seconds it took.
pub fn run_stage(log: &Log, events: u64, stage: &str, threads: usize, out: &Path) -> Result<f64> {
    let access = Access::new("bench", Role::Auditor, "benchmark");
    let all = Selection::default();
    let engine = Engine::new(ReduceConfig::default(), threads)?;
    let started = Instant::now();
    match stage {
        "decode" => ensure!(engine.decode_only(log, &access, &all)? == events, "decode lost events"),
        "decode_reduce" => {
            let r = engine.run(
                log,
                &access,
                Operation::ReadSteps,
                &all,
                &Count(AtomicU64::new(0)),
                &mut |_, _| {},
            )?;
            ensure!(r.events == events, "reduce lost events");
        }
        _ => {
            let options = ExportOptions {
                out: out.to_owned(),
                format: Format::Parquet,
                policy: Policy::Default,
                sensitive_apps: vec![],
                user_key: Some([1; 32]),
            };
            let r = tracevault_replay::export(log, &engine, &access, &all, &options, &mut |_, _| {})?;
            ensure!(r.pass.events == events, "the export lost events");
        }
    }
    Ok(started.elapsed().as_secs_f64())
}

pub fn section(ctx: &super::Ctx) -> Result<super::report::Section> {
    use super::report::{Better, Chart, Figure, Line, Section};
    let data = ctx.real()?;
    let copies = match (ctx.smoke(), ctx.full()) {
        (true, _) => 1,
        (_, true) => 8,
        _ => 4,
    };
    let root = ctx.work.join("replay");
    let (log, events) = build(&root.join("log"), copies, &data.recordings)?;
    let max_threads = ctx.limits.cores.max(1);
    let threads: Vec<usize> = (1..=max_threads).collect();
    let mut section = Section {
        name: "replay".into(),
        title: "replay at 1..N threads".into(),
        about: format!(
            "{copies} copies of every SapiMouse recording ({events} events in {} sessions) in a \
             durable log, sealed in 4096-event blocks, encrypted. Each stage reads every session: \
             decode (read, CRC, decrypt, decode), + reduce into steps and episodes, + the Parquet \
             export (redacted by default, zstd). Threads 1..{max_threads} (the cores); each figure \
             the median of {} runs; the speedup is N threads over 1. The Parquet files from every \
             thread count are compared byte for byte.",
            log.sessions().len(),
            ctx.repeats
        ),
        ..Section::default()
    };
    let event_bytes = std::mem::size_of::<tracevault_codecs::Event>() as f64;
    let mut lines = Vec::new();
    let mut first_parquet: Option<Vec<u8>> = None;
    for stage in STAGES {
        let mut line = Line { name: stage.replace('_', " + "), points: Vec::new() };
        let mut one = 0.0;
        for &t in &threads {
            let out = root.join(format!("export-{t}"));
            let mut samples = Vec::new();
            for _ in 0..ctx.repeats {
                samples.push(events as f64 / run_stage(&log, events, stage, t, &out)?);
            }
            if stage == "decode_reduce_parquet" {
                let bytes = std::fs::read(out.join(Format::Parquet.file_name()))?;
                match &first_parquet {
                    None => first_parquet = Some(bytes),
                    Some(first) => ensure!(
                        *first == bytes,
                        "the Parquet export from {t} threads differs from 1 thread's"
                    ),
                }
            }
            let mut fig = Figure::new(
                format!("replay.{stage}.threads_{t}"),
                format!("{}, {t} thread{}", stage.replace('_', " + "), if t == 1 { "" } else { "s" }),
                "events/s",
                Better::Higher,
                samples,
            );
            if t == 1 {
                one = fig.value;
            } else {
                fig = fig.baseline("1 thread", one);
            }
            if stage == "decode" {
                fig = fig.limit(
                    format!("memcpy of decoded events x {t} thread{}", if t == 1 { "" } else { "s" }),
                    ctx.limits.memcpy_mib_s * 1048576.0 / event_bytes * t as f64,
                );
            }
            if stage == "decode_reduce" && t == 2 {
                fig = fig.target(15e6);
            }
            line.points.push((t as f64, fig.value / 1e6));
            ctx.show(&fig);
            section.figures.push(fig);
        }
        lines.push(line);
    }
    section.charts.push(Chart {
        file: "replay-threads.svg".into(),
        title: "replay throughput against threads".into(),
        x_label: "threads".into(),
        y_label: "M events/s".into(),
        log_x: false,
        lines,
    });
    section.notes.push("The Parquet export is byte-identical at every thread count (checked).".into());
    drop(log);
    let _ = std::fs::remove_dir_all(&root);
    Ok(section)
}
