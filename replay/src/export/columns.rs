//! The export's columns: one schema for Parquet and JSONL, what every row of a session shares,
//! and a session's rows as Arrow columns (built on a replay thread).

use std::borrow::Cow;
use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Float64Builder, Int32Builder, Int64Builder, ListBuilder, StringBuilder, UInt32Builder,
    UInt64Builder,
};
use arrow_array::{ArrayRef, Int32Array, ListArray, StringArray, StructArray, UInt64Array};
use arrow_buffer::{NullBuffer, OffsetBuffer};
use arrow_schema::{DataType, Field, Fields as ArrowFields, Schema};

use crate::engine::SessionSteps;
use crate::redact::Redactor;
use crate::step::{Fields, PathPoint, Step};

use super::redacted;

fn point_fields() -> ArrowFields {
    ArrowFields::from(vec![
        Field::new("x", DataType::Int32, false),
        Field::new("y", DataType::Int32, false),
        Field::new("t_us", DataType::UInt64, false),
    ])
}

fn label_fields() -> ArrowFields {
    ArrowFields::from(vec![
        Field::new("key", DataType::Utf8, false),
        Field::new("value", DataType::Utf8, false),
    ])
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
pub(super) struct SessionRows<'s> {
    pub(super) id: String,
    pub(super) user: String,
    /// When the session started, in microseconds since the Unix epoch.
    pub(super) started_us: Option<i64>,
    pub(super) started_at: Option<&'s str>,
    pub(super) labels: Vec<(String, String)>,
    pub(super) steps: Cow<'s, [Step]>,
}

impl<'s> SessionRows<'s> {
    pub(super) fn new(redactor: &Redactor, session: &'s SessionSteps) -> SessionRows<'s> {
        let (id, user, steps) = redacted(redactor, session);
        let started_at = session.meta.started_at.as_deref();
        let started_us =
            started_at.and_then(|t| t.parse::<jiff::Timestamp>().ok()).map(|t| t.as_microsecond());
        let labels = session.meta.labels.iter().map(|(k, v)| (k.clone(), redactor.text(v))).collect();
        SessionRows { id, user, started_us, started_at, labels, steps }
    }

    pub(super) fn wall(&self, t_us: u64) -> Option<i64> {
        self.started_us.and_then(|s| s.checked_add(i64::try_from(t_us).ok()?))
    }
}

/// A step's fields as the export shows them: none for a step redacted to its kind and timing.
pub(super) fn fields(step: &Step) -> Fields<'_> {
    if step.redacted { Fields::default() } else { step.action.fields(step.screen) }
}

pub(super) fn call(step: &Step) -> (Option<String>, Option<String>) {
    match step.pyautogui() {
        Ok(call) => (Some(call), None),
        Err(why) => (None, Some(why)),
    }
}

/// A session's rows as Arrow columns, built on a replay thread; `episode_index` is left for the
/// writer (it counts the episodes of the sessions before).
pub(super) struct SessionBatch {
    /// Every column of [`schema`] but the first.
    pub(super) columns: Vec<ArrayRef>,
    pub(super) episode: Vec<u32>,
    pub(super) episodes: u64,
}

pub(super) fn session_batch(s: &SessionRows) -> SessionBatch {
    let n = s.steps.len();
    let mut session = StringBuilder::with_capacity(n, n * s.id.len());
    let mut user = StringBuilder::with_capacity(n, n * s.user.len());
    let mut episode = UInt32Builder::with_capacity(n);
    let mut step_no = UInt32Builder::with_capacity(n);
    let mut t_start = UInt64Builder::with_capacity(n);
    let mut t_end = UInt64Builder::with_capacity(n);
    let mut wall_start = Int64Builder::with_capacity(n);
    let mut wall_end = Int64Builder::with_capacity(n);
    let mut started_at = StringBuilder::with_capacity(n, n * s.started_at.map_or(0, str::len));
    let mut screen_w = UInt32Builder::with_capacity(n);
    let mut screen_h = UInt32Builder::with_capacity(n);
    let mut action = StringBuilder::with_capacity(n, n * 8);
    let mut app = StringBuilder::with_capacity(n, n * 8);
    let mut title = StringBuilder::new();
    let [mut x, mut y, mut x0, mut y0, mut dx, mut dy] =
        std::array::from_fn(|_| Int32Builder::with_capacity(n));
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
    let mut pyautogui = StringBuilder::with_capacity(n, n * 48);
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
