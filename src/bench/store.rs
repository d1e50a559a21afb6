//! The store section: what a user pays on disk for their events, all of it, and where it goes.
//! Two data sets go through `tracevault ingest`'s path (a JSON Lines file, checked then stored,
//! every session sealed, the log closed): all of SapiMouse (long recordings: the codec's bytes
//! dominate) and many short typing sessions (~100 key events each: the per-session costs
//! dominate). Then the data directory is measured file by file, and the segments split into the
//! codec's bytes (the same sessions' blocks encoded alone) and the framing around them.

use std::path::Path;

use tracevault_codecs::block::{BlockEncoder, DEFAULT_ZSTD_LEVEL};
use tracevault_codecs::{Event, SessionMeta};
use tracevault_core::Log;

use super::ingest::{fresh, ingest_jsonl, options, write_jsonl};
use super::report::{Better, Figure, Section, Table};
use super::{Ctx, Result};

/// The parts of a data directory, in the order they are shown.
const PARTS: [(&str, &str); 7] = [
    ("codec", "blocks as the codec writes them"),
    ("framing", "segments beyond the blocks: frame headers, tags, session and progress records, footers"),
    ("index", "index.redb"),
    ("leaves", "integrity/leaves (32 bytes per frame)"),
    ("keystore", "keystore (128 bytes per person)"),
    ("journal", "journal (open blocks)"),
    ("other", "heads, checkpoint, audit log, lock"),
];

/// Bytes of a data directory by part (the codec's share computed apart, see [`codec_bytes`]).
fn parts(dir: &Path, codec: u64) -> Result<Vec<(&'static str, u64)>> {
    fn size(path: &Path) -> u64 {
        match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => std::fs::read_dir(path)
                .map(|entries| entries.flatten().map(|e| size(&e.path())).sum())
                .unwrap_or(0),
            Ok(m) => m.len(),
            Err(_) => 0,
        }
    }
    let total = size(dir);
    let segments = size(&dir.join("segments"));
    let index = size(&dir.join("index.redb"));
    let leaves = size(&dir.join("integrity/leaves"));
    let keystore = size(&dir.join("keystore"));
    let journal = size(&dir.join("journal"));
    let other = total - segments - index - leaves - keystore - journal;
    Ok(vec![
        ("codec", codec.min(segments)),
        ("framing", segments.saturating_sub(codec)),
        ("index", index),
        ("leaves", leaves),
        ("keystore", keystore),
        ("journal", journal),
        ("other", other),
    ])
}

/// The bytes of the sessions' blocks as the log cuts them (4096 events, the last one partial),
/// encoded alone: the codec's share of the segments.
fn codec_bytes(sessions: &[(&SessionMeta, &[Event])]) -> Result<u64> {
    let mut encoder = BlockEncoder::new(DEFAULT_ZSTD_LEVEL);
    let mut out = Vec::new();
    let mut total = 0;
    for (_, events) in sessions {
        for block in events.chunks(tracevault_core::LogOptions::default().block_events_max) {
            out.clear();
            encoder.encode(block, &mut out)?;
            total += out.len() as u64;
        }
    }
    Ok(total)
}

/// Ingests `file` into a fresh store under `root` and closes it.
fn ingest_file(root: &Path, file: &Path) -> Result<std::path::PathBuf> {
    let dir = fresh(&root.join("store"))?;
    let log = Log::open(&dir, options(root))?;
    ingest_jsonl(&log, file)?;
    log.close()?;
    Ok(dir)
}

pub fn section(ctx: &Ctx) -> Result<Section> {
    let mut section = Section {
        name: "store".into(),
        title: "the whole store: bytes per event on disk, by part".into(),
        about: "What a user pays is the data directory, not the codec alone. Each data set is \
                written as one JSON Lines file and ingested as `tracevault ingest FILE` does it \
                (checked, stored in batches, every session sealed, the log closed); then every \
                file of the data directory is measured. `codec` is the sessions' blocks encoded \
                alone (4096 events, each session's last block partial); `framing` the rest of the \
                segments. The typing set's baseline is `zstd -19` of its own JSONL file: a store \
                should not lose to compressing its input."
            .into(),
        ..Section::default()
    };
    let root = ctx.work.join("store");
    fresh(&root)?;
    let real = ctx.real()?;
    let sapimouse: Vec<(&SessionMeta, &[Event])> =
        real.recordings.iter().map(|r| (&r.meta, r.events.as_slice())).collect();
    let typing: Vec<(SessionMeta, Vec<Event>)> =
        (0..ctx.typing().len()).map(|i| crate::generate::typing_session(16, i, super::TYPING_KEYS)).collect();
    let typing: Vec<(&SessionMeta, &[Event])> = typing.iter().map(|(m, e)| (m, e.as_slice())).collect();
    let mut table = Table {
        id: "store.parts".into(),
        title: "bytes per event by part (and per session, for the typing set)".into(),
        columns: vec![
            "part".into(),
            "what".into(),
            "sapimouse B/event".into(),
            "typing B/event".into(),
            "typing B/session".into(),
        ],
        rows: Vec::new(),
    };
    let mut columns: Vec<Vec<(&str, u64)>> = Vec::new();
    let mut counts = Vec::new();
    for (key, name, sessions) in
        [("sapimouse", "SapiMouse (real)", &sapimouse), ("typing", "typing sessions", &typing)]
    {
        let file = root.join(format!("{key}.jsonl"));
        let jsonl_bytes = write_jsonl(&file, sessions.iter().copied())?;
        let events: u64 = sessions.iter().map(|(_, e)| e.len() as u64).sum();
        let dir = ingest_file(&root, &file)?;
        let parts = parts(&dir, codec_bytes(sessions)?)?;
        let total: u64 = parts.iter().map(|(_, b)| b).sum();
        let mut fig = Figure::new(
            format!("store.bytes_per_event.{key}"),
            format!("the data directory, {name}: {events} events in {} sessions", sessions.len()),
            "bytes/event",
            Better::Lower,
            vec![total as f64 / events as f64],
        );
        if key == "sapimouse" {
            fig = fig.target(1.6);
        } else {
            if !ctx.smoke() {
                let raw = std::fs::read(&file)?;
                let zstd19 = zstd::bulk::compress(&raw, 19)?.len();
                fig = fig.baseline("zstd -19 of the JSONL file", zstd19 as f64 / events as f64);
            }
            fig = fig.target(4.0);
            let per_session = Figure::new(
                "store.bytes_per_session.typing",
                format!("the data directory per typing session (~{} events)", events / sessions.len() as u64),
                "bytes/session",
                Better::Lower,
                vec![total as f64 / sessions.len() as f64],
            );
            ctx.show(&per_session);
            section.figures.push(per_session);
        }
        ctx.show(&fig);
        section.figures.push(fig);
        section.notes.push(format!(
            "{name}: JSONL {:.1} bytes/event; stored {:.3} bytes/event ({})",
            jsonl_bytes as f64 / events as f64,
            total as f64 / events as f64,
            parts
                .iter()
                .map(|(p, b)| format!("{p} {:.3}", *b as f64 / events as f64))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        columns.push(parts);
        counts.push((events, sessions.len() as u64));
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_file(&file);
    }
    for (i, (part, what)) in PARTS.iter().enumerate() {
        let of = |c: usize| columns[c][i].1 as f64;
        table.rows.push(vec![
            (*part).to_owned(),
            (*what).to_owned(),
            format!("{:.3}", of(0) / counts[0].0 as f64),
            format!("{:.3}", of(1) / counts[1].0 as f64),
            format!("{:.0}", of(1) / counts[1].1 as f64),
        ]);
    }
    section.tables.push(table);
    let _ = std::fs::remove_dir_all(&root);
    Ok(section)
}
