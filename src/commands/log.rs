//! The commands that work on the log: ingest, sessions, stats, verify.

use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use serde_json::json;
use tracevault::ingest::{self, IngestReport};
use tracevault_core::{KeySource, Log, LogOptions, SessionInfo};

/// `--key-dir`, when given (else $TRACEVAULT_KEY_DIR, else the config file's, else the user's
/// config directory).
pub static KEY_DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// The config file in effect (set once by `main`).
pub static CONFIG: std::sync::OnceLock<tracevault::config::Config> = std::sync::OnceLock::new();

pub fn config() -> tracevault::config::Config {
    CONFIG.get().cloned().unwrap_or_default()
}

/// Where the keys are: `--key-dir`, else `$TRACEVAULT_KEY_DIR`, else the config file's
/// `key_dir`, else the user's config directory.
pub fn key_source() -> Result<KeySource> {
    let mut keys = KeySource::from_env()?;
    let env_dir = std::env::var_os(tracevault_core::keys::ENV_KEY_DIR).filter(|v| !v.is_empty());
    if let Some(dir) = KEY_DIR.get() {
        keys.dir = dir.clone();
    } else if env_dir.is_none()
        && let Some(dir) = config().key_dir
    {
        keys.dir = dir;
    }
    Ok(keys)
}

/// The log's options: the defaults, the config file's `[log]`, and the keys.
pub fn options() -> Result<LogOptions> {
    let c = config();
    let mut options = LogOptions { keys: Some(key_source()?), ..LogOptions::default() };
    if let Some(n) = c.log.block_events {
        options.block_events_max = n;
    }
    if let Some(level) = c.log.zstd_level {
        options.zstd_level = level;
    }
    Ok(options)
}

pub fn open(data: &Path) -> Result<Log> {
    tracing::debug!(data = %data.display(), "opening the log");
    Log::open(data, options()?).with_context(|| {
        format!("opening the log in {} (is another tracevault process using it?)", data.display())
    })
}

pub fn ingest(data: &Path, files: &[PathBuf], batch_lines: usize, json: bool) -> Result<ExitCode> {
    anyhow::ensure!(batch_lines > 0, "--batch-lines must be at least 1");
    let log = open(data)?;
    let mut total = IngestReport::default();
    for file in files {
        let name = file.display().to_string();
        let report = if name == "-" {
            ingest::ingest_jsonl(&log, std::io::stdin().lock(), "<stdin>", batch_lines)?
        } else if file.extension().is_some_and(|e| e == "msgpack") {
            let bytes = std::fs::read(file).with_context(|| format!("reading {name}"))?;
            ingest::ingest_msgpack(&log, &bytes, &name)?
        } else {
            let f = std::fs::File::open(file).with_context(|| format!("opening {name}"))?;
            // Progress by bytes read, for a person watching a big file go in.
            let len = f.metadata().map(|m| m.len()).unwrap_or(0);
            let bar = super::progress::bar(len, &format!("ingest {}", short_name(file)), json);
            bar.set_style(super::progress::bytes_style());
            let report = ingest::ingest_jsonl(&log, BufReader::new(bar.wrap_read(f)), &name, batch_lines);
            bar.finish_and_clear();
            report?
        };
        total.records += report.records;
        total.sessions_created += report.sessions_created;
        total.events += report.events;
        total.batches += report.batches;
        total.sessions.extend(report.sessions);
    }
    // A file holds whole recordings: seal what it brought, so its events leave the journal for
    // full blocks in the segments. A later ingest into the same session starts a new block.
    for session in &total.sessions {
        log.seal_session(session).with_context(|| format!("sealing session {session:?}"))?;
    }
    log.close().context("closing the log")?;
    let mut out = std::io::stdout().lock();
    if json {
        let value = json!({
            "files": files.len(),
            "records": total.records,
            "sessions_created": total.sessions_created,
            "events": total.events,
        });
        writeln!(out, "{value}")?;
    } else {
        writeln!(
            out,
            "ingested {} records from {} file(s): {} new sessions, {} events, into {}",
            total.records,
            files.len(),
            total.sessions_created,
            total.events,
            data.display()
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// A file's name for a progress bar.
fn short_name(path: &Path) -> String {
    path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned())
}

fn duration_us(s: &SessionInfo) -> u64 {
    match (s.t_min_us, s.t_max_us) {
        (Some(a), Some(b)) => b.saturating_sub(a),
        _ => 0,
    }
}

pub fn sessions(data: &Path, user: Option<&str>, json: bool) -> Result<ExitCode> {
    let log = open(data)?;
    let sessions: Vec<SessionInfo> =
        log.sessions().into_iter().filter(|s| user.is_none_or(|u| s.meta.user == u)).collect();
    let mut out = std::io::stdout().lock();
    if json {
        let rows: Vec<_> = sessions
            .iter()
            .map(|s| {
                json!({
                    "session": s.meta.session,
                    "user": s.meta.user,
                    "device": s.meta.device,
                    "started_at": s.meta.started_at,
                    "duration_us": duration_us(s),
                    "events": s.events,
                    "bytes": s.sealed_bytes,
                    "labels": s.meta.labels,
                    "erased": s.erased,
                })
            })
            .collect();
        writeln!(out, "{}", serde_json::Value::Array(rows))?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(
        out,
        "{:<32} {:<16} {:<12} {:<22} {:>10} {:>10} {:>10}",
        "SESSION", "USER", "DEVICE", "STARTED", "DURATION", "EVENTS", "BYTES"
    )?;
    for s in &sessions {
        writeln!(
            out,
            "{:<32} {:<16} {:<12} {:<22} {:>9.1}s {:>10} {:>10}",
            s.meta.session,
            s.meta.user,
            s.meta.device.as_deref().unwrap_or("-"),
            s.meta.started_at.as_deref().unwrap_or("-"),
            duration_us(s) as f64 / 1e6,
            s.events,
            s.sealed_bytes
        )?;
        if s.erased {
            writeln!(
                out,
                "{:<32} (erased: this person's key was destroyed; the events can never be read)",
                ""
            )?;
        }
    }
    if sessions.is_empty() {
        writeln!(out, "(no sessions{})", user.map(|u| format!(" for user {u:?}")).unwrap_or_default())?;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn stats(data: &Path, json: bool) -> Result<ExitCode> {
    let log = open(data)?;
    let stats = log.stats();
    let per_event = if stats.events == 0 { 0.0 } else { stats.bytes_on_disk as f64 / stats.events as f64 };
    let mut out = std::io::stdout().lock();
    if json {
        let value = json!({
            "sessions": stats.sessions,
            "events": stats.events,
            "bytes_on_disk": stats.bytes_on_disk,
            "bytes_per_event": per_event,
            "segment_bytes": stats.segment_bytes,
            "journal_bytes": stats.journal_bytes,
        });
        writeln!(out, "{value}")?;
    } else {
        writeln!(out, "sessions        {}", stats.sessions)?;
        writeln!(out, "events          {}", stats.events)?;
        writeln!(
            out,
            "bytes on disk   {} (segments {}, journal {}, index and checkpoint the rest)",
            stats.bytes_on_disk, stats.segment_bytes, stats.journal_bytes
        )?;
        writeln!(out, "bytes per event {per_event:.3}")?;
    }
    Ok(ExitCode::SUCCESS)
}
