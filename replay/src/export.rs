//! Exports: steps as JSON Lines or Parquet, redacted before anything is written, with
//! `meta/info.json` describing the export. docs/ACTIONS.md ("Exports") documents the schema.
//!
//! ```text
//! <out>/steps.jsonl or <out>/steps.parquet
//! <out>/meta/info.json
//! ```

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{Float64Builder, Int32Builder, StringBuilder, UInt32Builder, UInt64Builder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde_json::json;
use tracevault_core::{Access, Log, Operation};

use crate::engine::{Engine, PassReport, ReplayError, Selection, SessionSteps, StepSink};
use crate::redact::{Policy, Redactor};
use crate::step::{Action, Step};

/// The version of the export's layout (file names, JSON fields, Parquet columns).
pub const EXPORT_SCHEMA_VERSION: u32 = 1;
/// Rows per Parquet row group (and per Arrow batch), fixed so the file does not depend on how
/// the sessions were split among threads.
pub const PARQUET_ROWS_PER_GROUP: usize = 65_536;

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

    pub fn file_name(self) -> &'static str {
        match self {
            Format::Jsonl => "steps.jsonl",
            Format::Parquet => "steps.parquet",
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

/// The user id a step's session belongs to, as the export shows it.
fn export_user(redactor: &Redactor, session: &SessionSteps) -> String {
    redactor.user(&session.meta.user)
}

/// A session's steps as the export holds them: redacted (typed text scrubbed across its pieces),
/// with the session id and user id as the export shows them.
pub fn redacted(redactor: &Redactor, session: &SessionSteps) -> (String, String, Vec<Step>) {
    let mut steps = session.steps.clone();
    if !session.redacted {
        redactor.steps(&mut steps);
    }
    (redactor.session(&session.meta.session), export_user(redactor, session), steps)
}

/// One redacted step as a JSON object, with the session and user as the export shows them.
fn step_json(session: &str, user: &str, step: &Step) -> serde_json::Value {
    let mut v = step.to_json(session);
    v["user"] = json!(user);
    v
}

struct JsonlSink<'r> {
    out: BufWriter<File>,
    redactor: &'r Redactor,
}

impl StepSink for JsonlSink<'_> {
    type Rendered = Vec<u8>;

    fn redactor(&self) -> Option<&Redactor> {
        Some(self.redactor)
    }

    fn render(&self, session: &SessionSteps) -> Result<Vec<u8>, ReplayError> {
        let (id, user, steps) = redacted(self.redactor, session);
        let mut out = Vec::new();
        for step in &steps {
            serde_json::to_writer(&mut out, &step_json(&id, &user, step))
                .map_err(|e| ReplayError::Io(e.into()))?;
            out.push(b'\n');
        }
        Ok(out)
    }

    fn write(&mut self, rendered: Vec<u8>) -> Result<(), ReplayError> {
        self.out.write_all(&rendered)?;
        Ok(())
    }
}

/// The Parquet schema of `steps.parquet` (docs/ACTIONS.md "Exports").
pub fn parquet_schema() -> Schema {
    Schema::new(vec![
        Field::new("session", DataType::Utf8, false),
        Field::new("user", DataType::Utf8, false),
        Field::new("episode", DataType::UInt32, false),
        Field::new("step", DataType::UInt32, false),
        Field::new("t_start_us", DataType::UInt64, false),
        Field::new("t_end_us", DataType::UInt64, false),
        Field::new("action", DataType::Utf8, false),
        Field::new("app", DataType::Utf8, true),
        Field::new("x", DataType::Int32, true),
        Field::new("y", DataType::Int32, true),
        Field::new("nx", DataType::Float64, true),
        Field::new("ny", DataType::Float64, true),
        Field::new("text", DataType::Utf8, true),
        Field::new("key", DataType::Utf8, true),
        Field::new("args", DataType::Utf8, false),
        Field::new("pyautogui", DataType::Utf8, false),
        Field::new("block", DataType::UInt32, false),
        Field::new("first_event", DataType::UInt64, false),
        Field::new("last_event", DataType::UInt64, false),
        Field::new("events", DataType::UInt64, false),
    ])
}

/// One step as the Parquet columns hold it, rendered on a replay thread.
struct Row {
    session: String,
    user: String,
    episode: u32,
    step: u32,
    t_start: u64,
    t_end: u64,
    action: &'static str,
    app: Option<String>,
    x: Option<i32>,
    y: Option<i32>,
    nx: Option<f64>,
    ny: Option<f64>,
    text: Option<String>,
    key: Option<String>,
    args: String,
    pyautogui: String,
    block: u32,
    first: u64,
    last: u64,
    events: u64,
}

impl Row {
    /// A row of an already redacted step.
    fn new(session: &str, user: &str, step: Step) -> Row {
        let json = step.to_json(session);
        let args = &json["args"];
        let (x, y) = match (&step.action, step.redacted) {
            (_, true) => (None, None),
            (Action::Click { x, y, .. } | Action::Scroll { x, y, .. }, _) => (Some(*x), Some(*y)),
            (Action::Drag { to, .. }, _) => (Some(to.0), Some(to.1)),
            (Action::Move { path }, _) => path.last().map_or((None, None), |p| (Some(p.0), Some(p.1))),
            _ => (None, None),
        };
        let key = match &args["keys"] {
            serde_json::Value::Array(keys) => {
                Some(keys.iter().filter_map(|k| k.as_str()).collect::<Vec<_>>().join("+"))
            }
            _ => args["key"].as_str().map(str::to_owned),
        };
        Row {
            session: session.to_owned(),
            user: user.to_owned(),
            episode: step.episode,
            step: step.step,
            t_start: step.t_start_us,
            t_end: step.t_end_us,
            action: step.action.name(),
            app: step.app.clone(),
            x,
            y,
            nx: args["nx"].as_f64(),
            ny: args["ny"].as_f64(),
            text: args["text"].as_str().map(str::to_owned),
            key,
            args: args.to_string(),
            pyautogui: json["pyautogui"].as_str().unwrap_or_default().to_owned(),
            block: step.lineage.block,
            first: step.lineage.first_event,
            last: step.lineage.last_event,
            events: step.lineage.events,
        }
    }
}

#[derive(Default)]
struct Columns {
    session: StringBuilder,
    user: StringBuilder,
    episode: UInt32Builder,
    step: UInt32Builder,
    t_start: UInt64Builder,
    t_end: UInt64Builder,
    action: StringBuilder,
    app: StringBuilder,
    x: Int32Builder,
    y: Int32Builder,
    nx: Float64Builder,
    ny: Float64Builder,
    text: StringBuilder,
    key: StringBuilder,
    args: StringBuilder,
    pyautogui: StringBuilder,
    block: UInt32Builder,
    first: UInt64Builder,
    last: UInt64Builder,
    events: UInt64Builder,
    rows: usize,
}

impl Columns {
    fn push(&mut self, r: Row) {
        self.session.append_value(r.session);
        self.user.append_value(r.user);
        self.episode.append_value(r.episode);
        self.step.append_value(r.step);
        self.t_start.append_value(r.t_start);
        self.t_end.append_value(r.t_end);
        self.action.append_value(r.action);
        self.app.append_option(r.app);
        self.x.append_option(r.x);
        self.y.append_option(r.y);
        self.nx.append_option(r.nx);
        self.ny.append_option(r.ny);
        self.text.append_option(r.text);
        self.key.append_option(r.key);
        self.args.append_value(r.args);
        self.pyautogui.append_value(r.pyautogui);
        self.block.append_value(r.block);
        self.first.append_value(r.first);
        self.last.append_value(r.last);
        self.events.append_value(r.events);
        self.rows += 1;
    }

    fn finish(&mut self, schema: &Arc<Schema>) -> Result<RecordBatch, ReplayError> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.session.finish()),
            Arc::new(self.user.finish()),
            Arc::new(self.episode.finish()),
            Arc::new(self.step.finish()),
            Arc::new(self.t_start.finish()),
            Arc::new(self.t_end.finish()),
            Arc::new(self.action.finish()),
            Arc::new(self.app.finish()),
            Arc::new(self.x.finish()),
            Arc::new(self.y.finish()),
            Arc::new(self.nx.finish()),
            Arc::new(self.ny.finish()),
            Arc::new(self.text.finish()),
            Arc::new(self.key.finish()),
            Arc::new(self.args.finish()),
            Arc::new(self.pyautogui.finish()),
            Arc::new(self.block.finish()),
            Arc::new(self.first.finish()),
            Arc::new(self.last.finish()),
            Arc::new(self.events.finish()),
        ];
        self.rows = 0;
        RecordBatch::try_new(schema.clone(), columns).map_err(|e| ReplayError::Parquet(e.to_string()))
    }
}

struct ParquetSink<'r> {
    /// Behind a mutex only so the sink can be shared with the rendering threads (which never
    /// touch it); writing goes through `&mut self`, without locking.
    writer: std::sync::Mutex<ArrowWriter<File>>,
    schema: Arc<Schema>,
    columns: Columns,
    redactor: &'r Redactor,
}

impl ParquetSink<'_> {
    fn flush(&mut self) -> Result<(), ReplayError> {
        if self.columns.rows == 0 {
            return Ok(());
        }
        let batch = self.columns.finish(&self.schema)?;
        let writer = self.writer.get_mut().unwrap_or_else(|e| e.into_inner());
        writer.write(&batch).map_err(|e| ReplayError::Parquet(e.to_string()))?;
        writer.flush().map_err(|e| ReplayError::Parquet(e.to_string()))
    }
}

impl StepSink for ParquetSink<'_> {
    type Rendered = Vec<Row>;

    fn redactor(&self) -> Option<&Redactor> {
        Some(self.redactor)
    }

    fn render(&self, session: &SessionSteps) -> Result<Vec<Row>, ReplayError> {
        let (id, user, steps) = redacted(self.redactor, session);
        Ok(steps.into_iter().map(|step| Row::new(&id, &user, step)).collect())
    }

    fn write(&mut self, rows: Vec<Row>) -> Result<(), ReplayError> {
        for row in rows {
            self.columns.push(row);
            if self.columns.rows == PARQUET_ROWS_PER_GROUP {
                self.flush()?;
            }
        }
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
    let meta_dir = options.out.join("meta");
    std::fs::create_dir_all(&meta_dir)
        .map_err(|source| ReplayError::Write { path: meta_dir.clone(), source })?;
    let head = log.signed_heads()?.last().cloned();
    let steps_path = options.out.join(options.format.file_name());
    let file = create_private(&steps_path)
        .map_err(|source| ReplayError::Write { path: steps_path.clone(), source })?;
    let pass = match options.format {
        Format::Jsonl => {
            let mut sink = JsonlSink { out: BufWriter::new(file), redactor: &redactor };
            let pass = engine.run(log, access, op, selection, &mut sink, progress)?;
            sink.out.flush()?;
            sink.out.get_ref().sync_all()?;
            pass
        }
        Format::Parquet => {
            let schema = Arc::new(parquet_schema());
            let props = WriterProperties::builder()
                .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).expect("level 3 is valid")))
                .set_max_row_group_row_count(Some(PARQUET_ROWS_PER_GROUP))
                .set_created_by(format!("tracevault {}", env!("CARGO_PKG_VERSION")))
                .build();
            let writer = ArrowWriter::try_new(file, schema.clone(), Some(props))
                .map_err(|e| ReplayError::Parquet(e.to_string()))?;
            let mut sink = ParquetSink {
                writer: std::sync::Mutex::new(writer),
                schema,
                columns: Columns::default(),
                redactor: &redactor,
            };
            let pass = engine.run(log, access, op, selection, &mut sink, progress)?;
            sink.flush()?;
            let writer = sink.writer.into_inner().unwrap_or_else(|e| e.into_inner());
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
