//! Exports: steps as JSON Lines or Parquet, redacted before anything is written, with
//! `meta/info.json` describing the export. docs/ACTIONS.md ("Exports") documents the schema.
//!
//! ```text
//! <out>/data/train-00000-of-00001.parquet   or   .jsonl
//! <out>/meta/info.json
//! ```
//!
//! The layout is the one Hugging Face `datasets` reads as a `train` split
//! (`load_dataset("parquet", data_dir=OUT)`), and both formats have one shape: the same columns,
//! in the same order, with the same types ([`schema`]).

use std::borrow::Cow;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arrow_array::{ArrayRef, RecordBatch, UInt64Array};
use arrow_schema::Schema;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;
use serde_json::json;
use tracevault_core::{Access, Log, Operation};

use crate::engine::{Engine, PassReport, ReplayError, Selection, SessionSteps, StepSink};
use crate::redact::{Policy, Redactor};
use crate::step::Step;

mod columns;
mod jsonl;

pub use columns::schema;
use columns::{SessionBatch, SessionRows, session_batch};
use jsonl::RenderedLines;

/// The version of the export's layout (file names, JSON fields, Parquet columns).
pub const EXPORT_SCHEMA_VERSION: u32 = 2;
/// Rows per Parquet row group, fixed so the file does not depend on how the sessions were split
/// among threads.
pub const PARQUET_ROWS_PER_GROUP: usize = 65_536;

/// String columns whose values repeat: the only ones dictionary-encoded.
const DICTIONARY_COLUMNS: &[&str] = &[
    "session",
    "user",
    "started_at",
    "action",
    "app",
    "title",
    "button",
    "key",
    "code",
    "pyautogui_skipped",
];

/// The export's file format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Jsonl,
    Parquet,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Jsonl => "jsonl",
            Format::Parquet => "parquet",
        }
    }

    /// The steps file, relative to the export directory: a `train` split as `datasets` names one.
    pub fn file_name(self) -> &'static str {
        match self {
            Format::Jsonl => "data/train-00000-of-00001.jsonl",
            Format::Parquet => "data/train-00000-of-00001.parquet",
        }
    }
}

impl std::str::FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Format, String> {
        match s {
            "jsonl" => Ok(Format::Jsonl),
            "parquet" => Ok(Format::Parquet),
            other => Err(format!("unknown format {other:?}, expected parquet or jsonl")),
        }
    }
}

/// A session's steps as the export holds them: redacted (typed text scrubbed across its pieces),
/// with the session id and user id as the export shows them.
pub fn redacted<'s>(redactor: &Redactor, session: &'s SessionSteps) -> (String, String, Cow<'s, [Step]>) {
    let steps = if session.redacted {
        Cow::Borrowed(&session.steps[..])
    } else {
        let mut steps = session.steps.clone();
        redactor.steps(&mut steps);
        Cow::Owned(steps)
    };
    (redactor.session(&session.meta.session), redactor.user(&session.meta.user), steps)
}

struct JsonlSink<'r> {
    /// The file, and the episodes of the sessions written so far (only the writer locks it).
    out: Mutex<(BufWriter<File>, u64)>,
    redactor: &'r Redactor,
}

impl StepSink for JsonlSink<'_> {
    type Rendered = RenderedLines;

    fn redactor(&self) -> Option<&Redactor> {
        Some(self.redactor)
    }

    fn render(&self, session: &SessionSteps) -> Result<RenderedLines, ReplayError> {
        jsonl::render(&SessionRows::new(self.redactor, session))
    }

    fn write(&self, rendered: RenderedLines) -> Result<(), ReplayError> {
        let mut guard = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let (out, episodes_before) = &mut *guard;
        let mut start = 0;
        for (end, episode) in rendered.lines {
            write!(out, "{{\"episode_index\":{}", *episodes_before + u64::from(episode))?;
            out.write_all(&rendered.bytes[start..end])?;
            start = end;
        }
        *episodes_before += rendered.episodes;
        Ok(())
    }
}

struct ParquetSink<'r> {
    /// The writer, and the episodes of the sessions written so far (only the writer locks it;
    /// the rendering threads share the sink for its redactor).
    writer: Mutex<(ArrowWriter<File>, u64)>,
    schema: Arc<Schema>,
    redactor: &'r Redactor,
}

impl StepSink for ParquetSink<'_> {
    type Rendered = SessionBatch;

    fn redactor(&self) -> Option<&Redactor> {
        Some(self.redactor)
    }

    fn render(&self, session: &SessionSteps) -> Result<SessionBatch, ReplayError> {
        Ok(session_batch(&SessionRows::new(self.redactor, session)))
    }

    fn write(&self, batch: SessionBatch) -> Result<(), ReplayError> {
        if batch.episode.is_empty() {
            return Ok(());
        }
        let mut guard = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let (writer, episodes_before) = &mut *guard;
        let before = *episodes_before;
        let index: UInt64Array = batch.episode.iter().map(|&e| before + u64::from(e)).collect();
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(batch.columns.len() + 1);
        columns.push(Arc::new(index));
        columns.extend(batch.columns);
        let batch_rows = RecordBatch::try_new(self.schema.clone(), columns)
            .map_err(|e| ReplayError::Parquet(e.to_string()))?;
        // The writer cuts row groups every PARQUET_ROWS_PER_GROUP rows, whatever the batches.
        writer.write(&batch_rows).map_err(|e| ReplayError::Parquet(e.to_string()))?;
        *episodes_before += batch.episodes;
        Ok(())
    }
}

/// What to export, and how.
#[derive(Clone, Debug)]
pub struct ExportOptions {
    pub out: PathBuf,
    pub format: Format,
    pub policy: Policy,
    /// Apps whose steps keep only kinds and timing under the default policy.
    pub sensitive_apps: Vec<String>,
    /// The key user ids are hashed with; `None`: a fresh random one (exports cannot be joined).
    pub user_key: Option<[u8; 32]>,
}

/// What an export wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportReport {
    pub pass: PassReport,
    pub files: Vec<PathBuf>,
}

/// Exports the selection. `--redaction none` is for auditors only (the log's policy decides); the access is
/// recorded (one audit entry, action `export`) before any event is read.
pub fn export(
    log: &Log,
    engine: &Engine,
    access: &Access,
    selection: &Selection,
    options: &ExportOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<ExportReport, ReplayError> {
    // What the export is, for the log's policy: only the redacted one is open to ML.
    let op = match options.policy {
        Policy::Default => Operation::ExportRedacted,
        Policy::None => Operation::ExportUnredacted,
    };
    // Refused before a file is made (the refusal is recorded in the audit log).
    log.check_access(access, op)?;
    let redactor = Redactor::new(options.policy, &options.sensitive_apps, options.user_key)
        .map_err(ReplayError::Invalid)?;
    for dir in ["meta", "data"] {
        let dir = options.out.join(dir);
        std::fs::create_dir_all(&dir).map_err(|source| ReplayError::Write { path: dir.clone(), source })?;
    }
    let head = log.signed_heads()?.last().cloned();
    let steps_path = options.out.join(options.format.file_name());
    let file = create_private(&steps_path)
        .map_err(|source| ReplayError::Write { path: steps_path.clone(), source })?;
    let pass = match options.format {
        Format::Jsonl => {
            let sink = JsonlSink { out: Mutex::new((BufWriter::new(file), 0)), redactor: &redactor };
            let pass = engine.run(log, access, op, selection, &sink, progress)?;
            let (mut out, _) = sink.out.into_inner().unwrap_or_else(|e| e.into_inner());
            out.flush()?;
            out.get_ref().sync_all()?;
            pass
        }
        Format::Parquet => {
            let schema = Arc::new(schema());
            // Dictionary encoding only for the strings that repeat (session, action, app, ...):
            // numbers and unique strings go plain and zstd compresses them; interning every
            // value was the writer's largest cost (measured).
            let mut props = WriterProperties::builder()
                .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).expect("level 3 is valid")))
                .set_max_row_group_row_count(Some(PARQUET_ROWS_PER_GROUP))
                .set_dictionary_enabled(false)
                .set_created_by(format!("tracevault {}", env!("CARGO_PKG_VERSION")));
            for column in DICTIONARY_COLUMNS {
                props = props.set_column_dictionary_enabled(ColumnPath::from(*column), true);
            }
            let props = props.build();
            let writer = ArrowWriter::try_new(file, schema.clone(), Some(props))
                .map_err(|e| ReplayError::Parquet(e.to_string()))?;
            let sink = ParquetSink { writer: Mutex::new((writer, 0)), schema, redactor: &redactor };
            let pass = engine.run(log, access, op, selection, &sink, progress)?;
            let (writer, _) = sink.writer.into_inner().unwrap_or_else(|e| e.into_inner());
            let file = writer.into_inner().map_err(|e| ReplayError::Parquet(e.to_string()))?;
            file.sync_all()?;
            pass
        }
    };
    let info = json!({
        "schema_version": EXPORT_SCHEMA_VERSION,
        "format": options.format.name(),
        "file": options.format.file_name(),
        "redaction": options.policy.name(),
        "user_ids": match (options.policy, options.user_key) {
            (Policy::None, _) => "as recorded",
            (Policy::Default, Some(_)) => "HMAC-SHA256 under the given export key, first 16 bytes, hex",
            (Policy::Default, None) => "HMAC-SHA256 under a random key of this export, first 16 bytes, hex",
        },
        "sensitive_apps": options.sensitive_apps,
        "sensitive_window_titles": match options.policy {
            Policy::Default => crate::redact::SENSITIVE_TITLES.to_vec(),
            Policy::None => Vec::new(),
        },
        "recognisers": match options.policy {
            Policy::Default => crate::redact::recognisers(),
            Policy::None => Vec::new(),
        },
        "sessions": pass.sessions,
        "events": pass.events,
        "episodes": pass.episodes,
        "steps": pass.steps,
        "absorbed_events": pass.absorbed_events,
        "skipped_sessions": pass
            .skipped
            .iter()
            .map(|(s, r)| json!({"session": redactor.session(s), "reason": r}))
            .collect::<Vec<_>>(),
        "read_at": head.map(|h| json!({
            "tree_size": h.tree_size,
            "root": tracevault_core::keys::hex(&h.root),
        })),
        "reduce": engine_config_json(engine),
        "columns": schema().fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>(),
        "layouts": ["us", "gb", "de", "fr"],
    });
    let info_path = options.out.join("meta").join("info.json");
    write_synced(&info_path, format!("{}\n", serde_json::to_string_pretty(&info).expect("JSON")).as_bytes())?;
    Ok(ExportReport { pass, files: vec![steps_path, info_path] })
}

fn engine_config_json(engine: &Engine) -> serde_json::Value {
    let c = engine.config();
    json!({
        "click_slop_px": c.click_slop_px,
        "multi_click_ms": c.multi_click_ms,
        "scroll_gap_ms": c.scroll_gap_ms,
        "wait_min_ms": c.wait_min_ms,
        "episode_gap_ms": c.episode_gap_ms,
        "split_on_focus": c.split_on_focus,
        "path_sample_ms": c.path_sample_ms,
        "path_points_max": c.path_points_max,
    })
}

/// Creates (truncating) an export file readable by its owner only: exports hold what people did,
/// and whoever they are for should get them by decision, not by default permissions.
fn create_private(path: &Path) -> std::io::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = create_private(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}
