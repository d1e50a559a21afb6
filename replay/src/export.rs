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
use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Float64Builder, Int32Builder, Int64Builder, ListBuilder, StringBuilder, UInt32Builder,
    UInt64Builder,
};
use arrow_array::{ArrayRef, Int32Array, ListArray, RecordBatch, StringArray, StructArray, UInt64Array};
use arrow_buffer::{NullBuffer, OffsetBuffer};
use arrow_schema::{DataType, Field, Fields as ArrowFields, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde::Serialize;
use serde_json::json;
use tracevault_core::{Access, Log, Operation};

use crate::engine::{Engine, PassReport, ReplayError, Selection, SessionSteps, StepSink};
use crate::redact::{Policy, Redactor};
use crate::step::{Fields, PathPoint, Step};

/// The version of the export's layout (file names, JSON fields, Parquet columns).
pub const EXPORT_SCHEMA_VERSION: u32 = 2;
/// Rows per Parquet row group, fixed so the file does not depend on how the sessions were split
/// among threads.
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

fn point_fields() -> ArrowFields {
    ArrowFields::from(vec![
        Field::new("x", DataType::Int32, false),
        Field::new("y", DataType::Int32, false),
        Field::new("t_us", DataType::UInt64, false),
    ])
}

fn label_fields() -> ArrowFields {
    ArrowFields::from(vec![Field::new("key", DataType::Utf8, false), Field::new("value", DataType::Utf8, false)])
}

fn list_of(item: DataType) -> DataType {
    DataType::List(Arc::new(Field::new("item", item, true)))
}

/// The columns of an export, in order, for both formats (docs/ACTIONS.md "Exports").
pub fn schema() -> Schema {
    let f = |name: &str, t: DataType, nullable: bool| Field::new(name, t, nullable);
    Schema::new(vec![
        f("episode_index", DataType::UInt64, false),
        f("session", DataType::Utf8, false),
        f("user", DataType::Utf8, false),
        f("episode", DataType::UInt32, false),
        f("step", DataType::UInt32, false),
        f("t_start_us", DataType::UInt64, false),
        f("t_end_us", DataType::UInt64, false),
        f("wall_start_us", DataType::Int64, true),
        f("wall_end_us", DataType::Int64, true),
        f("started_at", DataType::Utf8, true),
        f("screen_w", DataType::UInt32, true),
        f("screen_h", DataType::UInt32, true),
        f("labels", list_of(DataType::Struct(label_fields())), false),
        f("action", DataType::Utf8, false),
        f("app", DataType::Utf8, true),
        f("title", DataType::Utf8, true),
        f("x", DataType::Int32, true),
        f("y", DataType::Int32, true),
        f("nx", DataType::Float64, true),
        f("ny", DataType::Float64, true),
        f("x0", DataType::Int32, true),
        f("y0", DataType::Int32, true),
        f("nx0", DataType::Float64, true),
        f("ny0", DataType::Float64, true),
        f("button", DataType::Utf8, true),
        f("clicks", DataType::UInt32, true),
        f("dx", DataType::Int32, true),
        f("dy", DataType::Int32, true),
        f("modifiers", list_of(DataType::Utf8), false),
        f("text", DataType::Utf8, true),
        f("secure", DataType::Boolean, true),
        f("inferred", DataType::Boolean, true),
        f("key", DataType::Utf8, true),
        f("code", DataType::Utf8, true),
        f("keys", list_of(DataType::Utf8), true),
        f("ms", DataType::UInt64, true),
        f("path", list_of(DataType::Struct(point_fields())), true),
        f("pyautogui", DataType::Utf8, true),
        f("pyautogui_skipped", DataType::Utf8, true),
        f("redacted", DataType::Boolean, false),
        f("block", DataType::UInt32, false),
        f("first_event", DataType::UInt64, false),
        f("last_event", DataType::UInt64, false),
        f("events", DataType::UInt64, false),
    ])
}

/// What every row of one session shares.
struct SessionRows<'s> {
    id: String,
    user: String,
    /// When the session started, in microseconds since the Unix epoch.
    started_us: Option<i64>,
    started_at: Option<&'s str>,
    labels: Vec<(String, String)>,
    steps: Cow<'s, [Step]>,
}

impl<'s> SessionRows<'s> {
    fn new(redactor: &Redactor, session: &'s SessionSteps) -> SessionRows<'s> {
        let (id, user, steps) = redacted(redactor, session);
        let started_at = session.meta.started_at.as_deref();
        let started_us = started_at
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            .map(|t| t.as_microsecond());
        let labels =
            session.meta.labels.iter().map(|(k, v)| (k.clone(), redactor.text(v))).collect();
        SessionRows { id, user, started_us, started_at, labels, steps }
    }

    fn wall(&self, t_us: u64) -> Option<i64> {
        self.started_us.and_then(|s| s.checked_add(i64::try_from(t_us).ok()?))
    }
}

/// A step's fields as the export shows them: none for a step redacted to its kind and timing.
fn fields(step: &Step) -> Fields<'_> {
    if step.redacted { Fields::default() } else { step.action.fields(step.screen) }
}

fn call(step: &Step) -> (Option<String>, Option<String>) {
    match step.pyautogui() {
        Ok(call) => (Some(call), None),
        Err(why) => (None, Some(why)),
    }
}

#[derive(Serialize)]
struct JsonLabel<'a> {
    key: &'a str,
    value: &'a str,
}

#[derive(Serialize)]
struct JsonPoint {
    x: i32,
    y: i32,
    t_us: u64,
}

/// One row of the JSONL export: the fields of [`schema`], in its order.
#[derive(Serialize)]
struct JsonRow<'a> {
    episode_index: u64,
    session: &'a str,
    user: &'a str,
    episode: u32,
    step: u32,
    t_start_us: u64,
    t_end_us: u64,
    wall_start_us: Option<i64>,
    wall_end_us: Option<i64>,
    started_at: Option<&'a str>,
    screen_w: Option<u32>,
    screen_h: Option<u32>,
    labels: Vec<JsonLabel<'a>>,
    action: &'static str,
    app: Option<&'a str>,
    title: Option<&'a str>,
    x: Option<i32>,
    y: Option<i32>,
    nx: Option<f64>,
    ny: Option<f64>,
    x0: Option<i32>,
    y0: Option<i32>,
    nx0: Option<f64>,
    ny0: Option<f64>,
    button: Option<&'static str>,
    clicks: Option<u8>,
    dx: Option<i32>,
    dy: Option<i32>,
    modifiers: &'a [&'static str],
    text: Option<&'a str>,
    secure: Option<bool>,
    inferred: Option<bool>,
    key: Option<&'a str>,
    code: Option<&'a str>,
    keys: Option<Vec<&'a str>>,
    ms: Option<u64>,
    path: Option<Vec<JsonPoint>>,
    pyautogui: Option<String>,
    pyautogui_skipped: Option<String>,
    redacted: bool,
    block: u32,
    first_event: u64,
    last_event: u64,
    events: u64,
}

/// The bytes `{"episode_index":0` that begin every rendered line; the writer puts the export-wide
/// episode index in their place (only it knows how many episodes came before).
const JSON_LINE_PREFIX: &[u8] = b"{\"episode_index\":0";

/// A session's JSON lines, each without [`JSON_LINE_PREFIX`], and each line's episode.
struct RenderedLines {
    bytes: Vec<u8>,
    lines: Vec<(usize, u32)>,
    episodes: u64,
}

struct JsonlSink<'r> {
    out: BufWriter<File>,
    redactor: &'r Redactor,
    episodes_before: u64,
}

impl StepSink for JsonlSink<'_> {
    type Rendered = RenderedLines;

    fn redactor(&self) -> Option<&Redactor> {
        Some(self.redactor)
    }

    fn render(&self, session: &SessionSteps) -> Result<RenderedLines, ReplayError> {
        let s = SessionRows::new(self.redactor, session);
        let mut out = RenderedLines { bytes: Vec::new(), lines: Vec::new(), episodes: 0 };
        let labels: Vec<JsonLabel> = s.labels.iter().map(|(key, value)| JsonLabel { key, value }).collect();
        let mut line = Vec::new();
        for step in s.steps.iter() {
            let f = fields(step);
            let (pyautogui, pyautogui_skipped) = call(step);
            let row = JsonRow {
                episode_index: 0,
                session: &s.id,
                user: &s.user,
                episode: step.episode,
                step: step.step,
                t_start_us: step.t_start_us,
                t_end_us: step.t_end_us,
                wall_start_us: s.wall(step.t_start_us),
                wall_end_us: s.wall(step.t_end_us),
                started_at: s.started_at,
                screen_w: step.screen.map(|s| s.w),
                screen_h: step.screen.map(|s| s.h),
                labels: labels.iter().map(|l| JsonLabel { key: l.key, value: l.value }).collect(),
                action: step.action.name(),
                app: step.app.as_deref(),
                title: f.title,
                x: f.x,
                y: f.y,
                nx: f.nx,
                ny: f.ny,
                x0: f.x0,
                y0: f.y0,
                nx0: f.nx0,
                ny0: f.ny0,
                button: f.button,
                clicks: f.clicks,
                dx: f.dx,
                dy: f.dy,
                modifiers: f.modifiers,
                text: f.text,
                secure: f.secure,
                inferred: f.inferred,
                key: f.key,
                code: f.code,
                keys: f.keys.clone(),
                ms: f.ms,
                path: f.path.map(|p| p.iter().map(|&(x, y, t_us)| JsonPoint { x, y, t_us }).collect()),
                pyautogui,
                pyautogui_skipped,
                redacted: step.redacted,
                block: step.lineage.block,
                first_event: step.lineage.first_event,
                last_event: step.lineage.last_event,
                events: step.lineage.events,
            };
            line.clear();
            serde_json::to_writer(&mut line, &row).map_err(|e| ReplayError::Io(e.into()))?;
            debug_assert!(line.starts_with(JSON_LINE_PREFIX));
            out.bytes.extend_from_slice(&line[JSON_LINE_PREFIX.len()..]);
            out.bytes.push(b'\n');
            out.lines.push((out.bytes.len(), step.episode));
            out.episodes = out.episodes.max(u64::from(step.episode) + 1);
        }
        Ok(out)
    }

    fn write(&mut self, rendered: RenderedLines) -> Result<(), ReplayError> {
        let mut start = 0;
        for (end, episode) in rendered.lines {
            write!(self.out, "{{\"episode_index\":{}", self.episodes_before + u64::from(episode))?;
            self.out.write_all(&rendered.bytes[start..end])?;
            start = end;
        }
        self.episodes_before += rendered.episodes;
        Ok(())
    }
}

/// A session's rows as Arrow columns, built on a replay thread; `episode_index` is left for the
/// writer (it counts the episodes of the sessions before).
struct SessionBatch {
    /// Every column of [`schema`] but the first.
    columns: Vec<ArrayRef>,
    episode: Vec<u32>,
    episodes: u64,
}

fn session_batch(s: &SessionRows) -> SessionBatch {
    let n = s.steps.len();
    let mut session = StringBuilder::with_capacity(n, n * s.id.len());
    let mut user = StringBuilder::with_capacity(n, n * s.user.len());
    let mut episode = UInt32Builder::with_capacity(n);
    let mut step_no = UInt32Builder::with_capacity(n);
    let mut t_start = UInt64Builder::with_capacity(n);
    let mut t_end = UInt64Builder::with_capacity(n);
    let mut wall_start = Int64Builder::with_capacity(n);
    let mut wall_end = Int64Builder::with_capacity(n);
    let mut started_at = StringBuilder::new();
    let mut screen_w = UInt32Builder::with_capacity(n);
    let mut screen_h = UInt32Builder::with_capacity(n);
    let mut action = StringBuilder::new();
    let mut app = StringBuilder::new();
    let mut title = StringBuilder::new();
    let [mut x, mut y, mut x0, mut y0, mut dx, mut dy] = std::array::from_fn(|_| Int32Builder::with_capacity(n));
    let [mut nx, mut ny, mut nx0, mut ny0] = std::array::from_fn(|_| Float64Builder::with_capacity(n));
    let mut button = StringBuilder::new();
    let mut clicks = UInt32Builder::with_capacity(n);
    let mut modifiers = ListBuilder::new(StringBuilder::new());
    let mut text = StringBuilder::new();
    let [mut secure, mut inferred, mut redacted] = std::array::from_fn(|_| BooleanBuilder::with_capacity(n));
    let mut key = StringBuilder::new();
    let mut code = StringBuilder::new();
    let mut keys = ListBuilder::new(StringBuilder::new());
    let mut ms = UInt64Builder::with_capacity(n);
    let mut path = PathColumn::default();
    let mut pyautogui = StringBuilder::new();
    let mut skipped = StringBuilder::new();
    let mut block = UInt32Builder::with_capacity(n);
    let [mut first, mut last, mut events] = std::array::from_fn(|_| UInt64Builder::with_capacity(n));
    let mut episodes = 0;
    let mut episode_of = Vec::with_capacity(n);
    for st in s.steps.iter() {
        let f = fields(st);
        let (call, why) = call(st);
        session.append_value(&s.id);
        user.append_value(&s.user);
        episode.append_value(st.episode);
        episode_of.push(st.episode);
        episodes = episodes.max(u64::from(st.episode) + 1);
        step_no.append_value(st.step);
        t_start.append_value(st.t_start_us);
        t_end.append_value(st.t_end_us);
        wall_start.append_option(s.wall(st.t_start_us));
        wall_end.append_option(s.wall(st.t_end_us));
        started_at.append_option(s.started_at);
        screen_w.append_option(st.screen.map(|s| s.w));
        screen_h.append_option(st.screen.map(|s| s.h));
        action.append_value(st.action.name());
        app.append_option(st.app.as_deref());
        title.append_option(f.title);
        x.append_option(f.x);
        y.append_option(f.y);
        nx.append_option(f.nx);
        ny.append_option(f.ny);
        x0.append_option(f.x0);
        y0.append_option(f.y0);
        nx0.append_option(f.nx0);
        ny0.append_option(f.ny0);
        button.append_option(f.button);
        clicks.append_option(f.clicks.map(u32::from));
        dx.append_option(f.dx);
        dy.append_option(f.dy);
        for m in f.modifiers {
            modifiers.values().append_value(m);
        }
        modifiers.append(true);
        text.append_option(f.text);
        secure.append_option(f.secure);
        inferred.append_option(f.inferred);
        key.append_option(f.key);
        code.append_option(f.code);
        match &f.keys {
            Some(ks) => {
                for k in ks {
                    keys.values().append_value(k);
                }
                keys.append(true);
            }
            None => keys.append(false),
        }
        ms.append_option(f.ms);
        path.push(f.path);
        pyautogui.append_option(call);
        skipped.append_option(why);
        redacted.append_value(st.redacted);
        block.append_value(st.lineage.block);
        first.append_value(st.lineage.first_event);
        last.append_value(st.lineage.last_event);
        events.append_value(st.lineage.events);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(session.finish()),
        Arc::new(user.finish()),
        Arc::new(episode.finish()),
        Arc::new(step_no.finish()),
        Arc::new(t_start.finish()),
        Arc::new(t_end.finish()),
        Arc::new(wall_start.finish()),
        Arc::new(wall_end.finish()),
        Arc::new(started_at.finish()),
        Arc::new(screen_w.finish()),
        Arc::new(screen_h.finish()),
        labels_column(&s.labels, n),
        Arc::new(action.finish()),
        Arc::new(app.finish()),
        Arc::new(title.finish()),
        Arc::new(x.finish()),
        Arc::new(y.finish()),
        Arc::new(nx.finish()),
        Arc::new(ny.finish()),
        Arc::new(x0.finish()),
        Arc::new(y0.finish()),
        Arc::new(nx0.finish()),
        Arc::new(ny0.finish()),
        Arc::new(button.finish()),
        Arc::new(clicks.finish()),
        Arc::new(dx.finish()),
        Arc::new(dy.finish()),
        Arc::new(modifiers.finish()),
        Arc::new(text.finish()),
        Arc::new(secure.finish()),
        Arc::new(inferred.finish()),
        Arc::new(key.finish()),
        Arc::new(code.finish()),
        Arc::new(keys.finish()),
        Arc::new(ms.finish()),
        path.finish(),
        Arc::new(pyautogui.finish()),
        Arc::new(skipped.finish()),
        Arc::new(redacted.finish()),
        Arc::new(block.finish()),
        Arc::new(first.finish()),
        Arc::new(last.finish()),
        Arc::new(events.finish()),
    ];
    SessionBatch { columns, episode: episode_of, episodes }
}

/// The `labels` column: the session's labels on each of its `n` rows.
fn labels_column(labels: &[(String, String)], n: usize) -> ArrayRef {
    let keys: StringArray = (0..n).flat_map(|_| labels.iter().map(|(k, _)| Some(k.as_str()))).collect();
    let values: StringArray = (0..n).flat_map(|_| labels.iter().map(|(_, v)| Some(v.as_str()))).collect();
    let entries = StructArray::new(label_fields(), vec![Arc::new(keys), Arc::new(values)], None);
    Arc::new(ListArray::new(
        Arc::new(Field::new("item", DataType::Struct(label_fields()), true)),
        OffsetBuffer::from_repeated_length(labels.len(), n),
        Arc::new(entries),
        None,
    ))
}

/// The `path` column, built as flat child arrays and offsets (no per-point builder calls).
#[derive(Default)]
struct PathColumn {
    x: Vec<i32>,
    y: Vec<i32>,
    t: Vec<u64>,
    lengths: Vec<usize>,
    valid: Vec<bool>,
}

impl PathColumn {
    fn push(&mut self, path: Option<&[PathPoint]>) {
        let points = path.unwrap_or_default();
        for &(x, y, t) in points {
            self.x.push(x);
            self.y.push(y);
            self.t.push(t);
        }
        self.lengths.push(points.len());
        self.valid.push(path.is_some());
    }

    fn finish(self) -> ArrayRef {
        let points = StructArray::new(
            point_fields(),
            vec![
                Arc::new(Int32Array::from(self.x)),
                Arc::new(Int32Array::from(self.y)),
                Arc::new(UInt64Array::from(self.t)),
            ],
            None,
        );
        Arc::new(ListArray::new(
            Arc::new(Field::new("item", DataType::Struct(point_fields()), true)),
            OffsetBuffer::from_lengths(self.lengths),
            Arc::new(points),
            Some(NullBuffer::from(self.valid)),
        ))
    }
}

struct ParquetSink<'r> {
    /// Behind a mutex only so the sink can be shared with the rendering threads (which never
    /// touch it); writing goes through `&mut self`, without locking.
    writer: std::sync::Mutex<ArrowWriter<File>>,
    schema: Arc<Schema>,
    redactor: &'r Redactor,
    episodes_before: u64,
}

impl StepSink for ParquetSink<'_> {
    type Rendered = SessionBatch;

    fn redactor(&self) -> Option<&Redactor> {
        Some(self.redactor)
    }

    fn render(&self, session: &SessionSteps) -> Result<SessionBatch, ReplayError> {
        Ok(session_batch(&SessionRows::new(self.redactor, session)))
    }

    fn write(&mut self, batch: SessionBatch) -> Result<(), ReplayError> {
        if batch.episode.is_empty() {
            return Ok(());
        }
        let before = self.episodes_before;
        let index: UInt64Array = batch.episode.iter().map(|&e| before + u64::from(e)).collect();
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(batch.columns.len() + 1);
        columns.push(Arc::new(index));
        columns.extend(batch.columns);
        let batch_rows = RecordBatch::try_new(self.schema.clone(), columns)
            .map_err(|e| ReplayError::Parquet(e.to_string()))?;
        // The writer cuts row groups every PARQUET_ROWS_PER_GROUP rows, whatever the batches.
        let writer = self.writer.get_mut().unwrap_or_else(|e| e.into_inner());
        writer.write(&batch_rows).map_err(|e| ReplayError::Parquet(e.to_string()))?;
        self.episodes_before += batch.episodes;
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
            let mut sink = JsonlSink { out: BufWriter::new(file), redactor: &redactor, episodes_before: 0 };
            let pass = engine.run(log, access, op, selection, &mut sink, progress)?;
            sink.out.flush()?;
            sink.out.get_ref().sync_all()?;
            pass
        }
        Format::Parquet => {
            let schema = Arc::new(schema());
            let props = WriterProperties::builder()
                .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).expect("level 3 is valid")))
                .set_max_row_group_row_count(Some(PARQUET_ROWS_PER_GROUP))
                .set_created_by(format!("tracevault {}", env!("CARGO_PKG_VERSION")))
                .build();
            let writer = ArrowWriter::try_new(file, schema.clone(), Some(props))
                .map_err(|e| ReplayError::Parquet(e.to_string()))?;
            let mut sink =
                ParquetSink { writer: std::sync::Mutex::new(writer), schema, redactor: &redactor, episodes_before: 0 };
            let pass = engine.run(log, access, op, selection, &mut sink, progress)?;
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
