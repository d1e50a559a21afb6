//! The JSONL export's rows: the fields of [`super::schema`], in its order.

use serde::Serialize;

use crate::engine::ReplayError;

use super::columns::{SessionRows, call, fields};

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
pub(super) const JSON_LINE_PREFIX: &[u8] = b"{\"episode_index\":0";

/// A session's JSON lines, each without [`JSON_LINE_PREFIX`], and each line's episode.
pub(super) struct RenderedLines {
    pub(super) bytes: Vec<u8>,
    pub(super) lines: Vec<(usize, u32)>,
    pub(super) episodes: u64,
}

/// A session's JSON lines, rendered on a replay thread.
pub(super) fn render(s: &SessionRows) -> Result<RenderedLines, ReplayError> {
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
