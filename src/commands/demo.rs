//! `tracevault demo`: the block codec on real human mouse input.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use tracevault::sapimouse;
use tracevault_codecs::block::{BlockDecoder, BlockEncoder};
use tracevault_codecs::limits::BLOCK_EVENTS_MAX;
use tracevault_codecs::{Record, jsonl};
use tracevault_core::{KeySource, Log, LogOptions};

pub fn demo(dir: Option<PathBuf>, block_events: usize, level: i32, json: bool) -> Result<ExitCode> {
    if block_events == 0 || block_events > BLOCK_EVENTS_MAX {
        bail!("--block-events must be between 1 and {BLOCK_EVENTS_MAX}, found {block_events}");
    }
    let dir = dir.or_else(sapimouse::shared_dir).unwrap_or_else(sapimouse::fixtures_dir);
    let recordings = sapimouse::load_dir(&dir)?;
    let events: usize = recordings.iter().map(|r| r.events.len()).sum();

    let mut jsonl_bytes = 0usize;
    let mut line = Vec::new();
    for r in &recordings {
        line.clear();
        jsonl::write_record(&mut line, &Record::Session(r.meta.clone()))?;
        jsonl_bytes += line.len();
        for event in &r.events {
            line.clear();
            let record = Record::Event { session: r.meta.session.clone(), event: event.clone() };
            jsonl::write_record(&mut line, &record)?;
            jsonl_bytes += line.len();
        }
    }

    let mut encoder = BlockEncoder::new(level);
    let started = Instant::now();
    let mut blocks = Vec::new();
    for r in &recordings {
        for chunk in r.events.chunks(block_events) {
            let mut block = Vec::new();
            encoder.encode(chunk, &mut block).context("encoding a block")?;
            blocks.push(block);
        }
    }
    let encode_s = started.elapsed().as_secs_f64();

    let mut decoder = BlockDecoder::new();
    let started = Instant::now();
    let mut decoded = Vec::with_capacity(events);
    for block in &blocks {
        decoder.decode_into(block, &mut decoded).context("decoding a block")?;
    }
    let decode_s = started.elapsed().as_secs_f64();
    let original = recordings.iter().flat_map(|r| &r.events);
    if let Some((i, _)) = original.zip(&decoded).enumerate().find(|(_, (a, b))| a != b) {
        bail!("round trip failed at event {i}: the codec changed an event");
    }
    if decoded.len() != events {
        bail!("round trip failed: {events} events in, {} out", decoded.len());
    }

    let stored: usize = blocks.iter().map(Vec::len).sum();
    let durable = durable_log(&recordings, level)?;
    let summary = serde_json::json!({
        "source": dir.display().to_string(),
        "sessions": recordings.len(),
        "events": events,
        "blocks": blocks.len(),
        "block_events": block_events,
        "zstd_level": encoder.level(),
        "bytes": stored,
        "bytes_per_event": stored as f64 / events as f64,
        "jsonl_bytes_per_event": jsonl_bytes as f64 / events as f64,
        "encode_events_per_s": events as f64 / encode_s,
        "decode_events_per_s": events as f64 / decode_s,
        "round_trip": "exact",
        "log": {
            "batch_events": DEMO_BATCH_EVENTS,
            "durable_events_per_s": durable.events as f64 / durable.ingest_s,
            "bytes_on_disk": durable.bytes_on_disk,
            "segment_bytes_per_event": durable.segment_bytes as f64 / durable.events as f64,
            "read_back": "exact",
            "verify": "ok",
            "data_keys": durable.keys,
            "audit_entries": durable.audit_entries,
            "signed_heads": durable.signed_heads,
        },
    });
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{summary}")?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(out, "tracevault demo: the block codec on real human mouse input")?;
    writeln!(
        out,
        "  input       {} sessions, {events} events of SapiMouse ({})",
        recordings.len(),
        dir.display()
    )?;
    writeln!(
        out,
        "  blocks      {} of up to {block_events} events, zstd level {}",
        blocks.len(),
        encoder.level()
    )?;
    writeln!(
        out,
        "  stored      {stored} bytes: {:.3} bytes/event (the same events as JSONL: {:.1} bytes/event, {:.0}x larger)",
        stored as f64 / events as f64,
        jsonl_bytes as f64 / events as f64,
        jsonl_bytes as f64 / stored as f64
    )?;
    writeln!(
        out,
        "  speed       encode {:.1} M events/s, decode {:.1} M events/s (one thread, one pass)",
        events as f64 / encode_s / 1e6,
        events as f64 / decode_s / 1e6
    )?;
    writeln!(out, "  round trip  every event decoded exactly as recorded")?;
    writeln!(out)?;
    writeln!(out, "the durable log: the same sessions appended as recorders would send them")?;
    writeln!(
        out,
        "  ingest      {} events in {DEMO_BATCH_EVENTS}-event batches from {} concurrent sessions: {:.2} M events/s, each batch acknowledged once on disk",
        durable.events,
        recordings.len(),
        durable.events as f64 / durable.ingest_s / 1e6
    )?;
    writeln!(
        out,
        "  encrypted   with {} data keys, one per person (XChaCha20-Poly1305), wrapped under a master key kept outside the data",
        durable.keys
    )?;
    writeln!(
        out,
        "  on disk     {} bytes in all; segments {:.3} bytes/event (small batches sealed into {}-event blocks)",
        durable.bytes_on_disk,
        durable.segment_bytes as f64 / durable.events as f64,
        LogOptions::default().block_events_max
    )?;
    writeln!(
        out,
        "  read back   every session exactly as appended, each read first recorded in the access audit log ({} entries)",
        durable.audit_entries
    )?;
    writeln!(
        out,
        "  verify      every frame, its place in the Merkle tree under {} signed heads, and the audit log: ok",
        durable.signed_heads
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "next: `cargo bench --bench codecs` and `cargo bench --bench append` measure both against baselines;"
    )?;
    writeln!(
        out,
        "      `tracevault ingest FILE.jsonl` stores your own recordings (`--help` for every command)"
    )?;
    Ok(ExitCode::SUCCESS)
}

/// Events per append in the demo: a recorder sends a few seconds of input at a time.
const DEMO_BATCH_EVENTS: usize = 100;

struct Durable {
    events: u64,
    /// Data keys: one per person recorded.
    keys: usize,
    audit_entries: u64,
    signed_heads: u64,
    ingest_s: f64,
    bytes_on_disk: u64,
    segment_bytes: u64,
}

/// Appends every recording to a fresh log in a temporary directory, one thread per session in
/// recorder-sized batches, then reads everything back, verifies, and removes the directory.
fn durable_log(recordings: &[sapimouse::Recording], level: i32) -> Result<Durable> {
    let dir = std::env::temp_dir().join(format!("tracevault-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let result = durable_log_in(&dir, recordings, level);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn durable_log_in(dir: &Path, recordings: &[sapimouse::Recording], level: i32) -> Result<Durable> {
    // The demo's keys sit beside its data (outside it, as always), and go when the demo ends.
    let keys = KeySource::dir(dir.join("keys"));
    let options = LogOptions { zstd_level: level, keys: Some(keys), ..LogOptions::default() };
    let data = dir.join("data");
    let log =
        Log::open(&data, options).with_context(|| format!("opening a demo log in {}", data.display()))?;
    let started = Instant::now();
    std::thread::scope(|scope| -> Result<()> {
        let handles: Vec<_> = recordings
            .iter()
            .map(|r| {
                let log = &log;
                scope.spawn(move || -> Result<()> {
                    log.create_session(r.meta.clone())?;
                    for batch in r.events.chunks(DEMO_BATCH_EVENTS) {
                        log.append(&r.meta.session, batch)?;
                    }
                    log.seal_session(&r.meta.session)?;
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join().map_err(|_| anyhow::anyhow!("a demo writer thread panicked"))??;
        }
        Ok(())
    })?;
    log.checkpoint()?;
    let ingest_s = started.elapsed().as_secs_f64();
    let access = super::privacy::cli_access("demo: check every session reads back as appended", None);
    for r in recordings {
        let back = log.read_session(&access, &r.meta.session, 0..=u64::MAX)?;
        if back != r.events {
            bail!("session {} did not read back as appended", r.meta.session);
        }
    }
    let report = log.verify()?;
    if let Some(problem) = report.first_problem {
        bail!("verify failed: {problem}");
    }
    let stats = log.stats();
    let keys = log.keys().1.len();
    log.close()?;
    Ok(Durable {
        events: stats.events,
        keys,
        audit_entries: report.audit_entries,
        signed_heads: report.heads,
        ingest_s,
        bytes_on_disk: stats.bytes_on_disk,
        segment_bytes: stats.segment_bytes,
    })
}
