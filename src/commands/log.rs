//! The commands that work on the log: ingest, sessions, stats, verify.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use serde_json::json;
use tracevault_core::ingest::{self, IngestReport};
use tracevault_core::{Role, SessionInfo};

use super::Ctx;

pub fn ingest(ctx: &Ctx, files: &[PathBuf], json: bool) -> Result<ExitCode> {
    let log = ctx.open_to_write()?;
    let mut total = IngestReport::default();
    // The CLI is run by whoever holds the data directory and its keys: the store's admin.
    let access = super::privacy::cli_access(Role::Admin, "ingest recordings", None);
    for file in files {
        let name = file.display().to_string();
        let report = if name == "-" {
            let mut input = ingest::JsonlBytes::read("<stdin>", std::io::stdin().lock())?;
            ingest::ingest(&log, &access, &mut input)?
        } else if file.extension().is_some_and(|e| e == "msgpack") {
            let bytes = std::fs::read(file).with_context(|| format!("reading {name}"))?;
            ingest::ingest(&log, &access, &mut ingest::MsgpackBatch::decode(name, &bytes)?)?
        } else {
            // Progress by bytes read, for a person watching a big file go in: checked, then stored.
            let short = short_name(file);
            let bars: std::cell::RefCell<Vec<indicatif::ProgressBar>> = Default::default();
            let mut source = ingest::JsonlFile::new(file, |f: std::fs::File, pass: u32| {
                let len = f.metadata().map(|m| m.len()).unwrap_or(0);
                let what = if pass == 1 { "check" } else { "store" };
                let bar = super::progress::bar(len, &format!("{what} {short}"), json);
                bar.set_style(super::progress::bytes_style());
                let reader: Box<dyn BufRead> = Box::new(BufReader::new(bar.wrap_read(f)));
                bars.borrow_mut().push(bar);
                reader
            });
            let report = ingest::ingest(&log, &access, &mut source);
            for bar in bars.borrow().iter() {
                bar.finish_and_clear();
            }
            report?
        };
        total.add(report);
    }
    // A file holds whole recordings: seal what it brought, so its events leave the journal for
    // full blocks in the segments. A later ingest into the same session starts a new block.
    for session in &total.sessions {
        log.seal_session(session).with_context(|| format!("sealing session {session:?}"))?;
    }
    ctx.close(log)?;
    let data = ctx.data();
    let mut out = std::io::stdout().lock();
    if json {
        let value = json!({
            "files": files.len(),
            "records": total.records,
            "sessions_created": total.sessions_created,
            "events": total.events,
            "events_already_stored": total.events_already_stored,
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
        if total.events_already_stored > 0 {
            writeln!(
                out,
                "skipped {} events already stored by an earlier run of the same input",
                total.events_already_stored
            )?;
        }
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

pub fn sessions(ctx: &Ctx, user: Option<&str>, json: bool) -> Result<ExitCode> {
    let log = ctx.open_to_read()?;
    let sessions: Vec<SessionInfo> =
        log.sessions().into_iter().filter(|s| user.is_none_or(|u| s.meta.user == u)).collect();
    ctx.close(log)?;
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
    if !sessions.is_empty() {
        let mut table = super::table(
            &["SESSION", "USER", "DEVICE", "STARTED", "DURATION", "EVENTS", "BYTES"],
            &[4, 5, 6],
        );
        let mut erased = Vec::new();
        for s in &sessions {
            table.add_row(vec![
                s.meta.session.clone(),
                s.meta.user.clone(),
                s.meta.device.clone().unwrap_or_else(|| "-".into()),
                s.meta.started_at.clone().unwrap_or_else(|| "-".into()),
                format!("{:.1}s", duration_us(s) as f64 / 1e6),
                s.events.to_string(),
                s.sealed_bytes.to_string(),
            ]);
            if s.erased {
                erased.push(s.meta.session.as_str());
            }
        }
        writeln!(out, "{}", table.trim_fmt())?;
        if !erased.is_empty() {
            writeln!(
                out,
                "erased (the person's key was destroyed; the events can never be read): {}",
                erased.join(", ")
            )?;
        }
    }
    if sessions.is_empty() {
        writeln!(out, "(no sessions{})", user.map(|u| format!(" for user {u:?}")).unwrap_or_default())?;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn stats(ctx: &Ctx, json: bool) -> Result<ExitCode> {
    let log = ctx.open_to_read()?;
    let stats = log.stats();
    ctx.close(log)?;
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
