//! The `tracevault` command line. Thin: it parses arguments, calls the libraries, and maps errors
//! to exit codes (0 success, 1 failure, 2 usage).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use tracevault::sapimouse;
use tracevault_codecs::block::{BlockDecoder, BlockEncoder, DEFAULT_ZSTD_LEVEL};
use tracevault_codecs::limits::BLOCK_EVENTS_MAX;
use tracevault_codecs::{Record, jsonl};

#[derive(Parser)]
#[command(name = "tracevault", version, about = "Event-sourced session replay engine for human input")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the block codec over real human mouse input (SapiMouse) and prints what it stores:
    /// bytes per event against JSONL, encode and decode rates, and a checked round trip.
    Demo {
        /// SapiMouse recordings to use (a folder of user*/*.csv). Default: ../shared/data/sapimouse
        /// if present, else the fixtures subset in this repository.
        #[arg(long)]
        sapimouse: Option<PathBuf>,
        /// Events per block.
        #[arg(long, default_value_t = 4096)]
        block_events: usize,
        /// zstd level for the blocks.
        #[arg(long, default_value_t = DEFAULT_ZSTD_LEVEL)]
        level: i32,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo { sapimouse, block_events, level, json } => demo(sapimouse, block_events, level, json),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<std::io::Error>())
        .any(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
}

fn demo(dir: Option<PathBuf>, block_events: usize, level: i32, json: bool) -> Result<()> {
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
        return Ok(());
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
    Ok(())
}
