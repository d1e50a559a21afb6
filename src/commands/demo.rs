//! `tracevault demo`: the block codec on real human mouse input.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use tracevault::sapimouse;
use tracevault_codecs::block::{BlockDecoder, BlockEncoder};
use tracevault_codecs::limits::BLOCK_EVENTS_MAX;
use tracevault_codecs::{Record, jsonl};

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
    writeln!(out, "next: `cargo bench --bench codecs` measures the codec against three baselines")?;
    Ok(ExitCode::SUCCESS)
}
