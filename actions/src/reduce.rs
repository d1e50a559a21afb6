//! Action reduction: a state machine that turns a session's events, in order, into steps.
//! docs/ACTIONS.md states every rule; the names of [`ReduceConfig`]'s fields are the thresholds
//! it refers to.
//!
//! Every event is accounted for exactly once: each step's lineage is a contiguous range of event
//! indices, the ranges of consecutive steps meet, and events that are no action of their own (key
//! releases, a lone modifier, jitter while a click waits for its second click, screen changes,
//! markers) fall into the range of the step they come with. A `wait` covers no event. Only a
//! session with no step at all reports its events as [`Absorbed`].
//!
//! Longer than 600 lines: one state machine whose rules (docs/ACTIONS.md) read in order;
//! split into files, a rule and the state it reads would sit apart.

use tracevault_codecs::{Button, Event, EventKind, Key, Screen};

use crate::keys::{Layout, pyautogui_name};
use crate::step::{Absorbed, Action, Lineage, PathPoint, Step};

/// The thresholds of the rules, with their defaults (docs/ACTIONS.md).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReduceConfig {
    /// The farthest (in pixels, per axis) a press may move before its release and still be a
    /// click; farther, it is a drag. Also how near the presses of a double click must be.
    pub click_slop_px: i32,
    /// The longest from a release to the next press for the presses to be one double (or triple)
    /// click.
    pub multi_click_ms: u64,
    /// Wheel events closer than this merge into one scroll.
    pub scroll_gap_ms: u64,
    /// An idle gap at least this long is a `wait` step.
    pub wait_min_ms: u64,
    /// An idle gap at least this long ends the episode (and is no `wait`).
    pub episode_gap_ms: u64,
    /// Whether a focus change starts a new episode.
    pub split_on_focus: bool,
    /// A pointer path keeps at most one point per this many milliseconds (and always the last).
    pub path_sample_ms: u64,
    /// The most points a move or drag path keeps (evenly thinned beyond it).
    pub path_points_max: usize,
}

impl Default for ReduceConfig {
    fn default() -> Self {
        ReduceConfig {
            click_slop_px: 6,
            multi_click_ms: 500,
            scroll_gap_ms: 300,
            wait_min_ms: 1_000,
            episode_gap_ms: 60_000,
            split_on_focus: false,
            path_sample_ms: 50,
            path_points_max: 32,
        }
    }
}

const SHIFT: u8 = 1;
const CTRL: u8 = 2;
const ALT: u8 = 4;
const META: u8 = 8;

fn modifier(code: &str) -> Option<u8> {
    Some(match code {
        "ShiftLeft" | "ShiftRight" => SHIFT,
        "ControlLeft" | "ControlRight" => CTRL,
        "AltLeft" | "AltRight" | "AltGraph" => ALT,
        "MetaLeft" | "MetaRight" | "OSLeft" | "OSRight" => META,
        _ => return None,
    })
}

/// The modifiers held, as PyAutoGUI names them, in a fixed order.
fn modifier_names(mods: u8) -> Vec<&'static str> {
    [(CTRL, "ctrl"), (ALT, "alt"), (SHIFT, "shift"), (META, "win")]
        .into_iter()
        .filter(|(bit, _)| mods & bit != 0)
        .map(|(_, name)| name)
        .collect()
}

/// Text a key produced that is typing: non-empty, no control characters (Enter's "\r" and Tab's
/// "\t" are presses).
fn typed(key: &Key) -> Option<&str> {
    key.text.as_deref().filter(|t| !t.is_empty() && !t.chars().any(char::is_control))
}

fn near(a: (i32, i32), b: (i32, i32), slop: i32) -> bool {
    let slop = slop.unsigned_abs();
    a.0.abs_diff(b.0) <= slop && a.1.abs_diff(b.1) <= slop
}

/// A gesture that is not finished yet: the next events decide what it is.
enum Pending {
    Move {
        path: Vec<PathPoint>,
        /// Where the pointer was before the move began.
        from: (i32, i32),
        /// Whether the pointer went farther than the click distance from there: a move that
        /// never did is jitter, no step of its own.
        left: bool,
        t_start: u64,
        t_last: u64,
        last: u64,
    },
    /// A click waiting for a possible next click of a double or triple click.
    Click {
        button: Button,
        at: (i32, i32),
        count: u8,
        t_start: u64,
        t_up: u64,
        last: u64,
        modifiers: u8,
        /// The app it was pressed in.
        app: Option<String>,
    },
    Scroll {
        /// Wheel units as recorded (`dy > 0` down).
        dx: i32,
        dy: i32,
        at: (i32, i32),
        modifiers: u8,
        t_start: u64,
        t_last: u64,
        last: u64,
    },
    Type {
        text: String,
        secure: bool,
        inferred: bool,
        t_start: u64,
        t_last: u64,
        last: u64,
    },
}

impl Pending {
    fn last_mut(&mut self) -> &mut u64 {
        match self {
            Pending::Move { last, .. }
            | Pending::Click { last, .. }
            | Pending::Scroll { last, .. }
            | Pending::Type { last, .. } => last,
        }
    }
}

/// A button held down.
struct Press {
    button: Button,
    /// Where the step says the press was: a double click's second press is where its first was.
    at: (i32, i32),
    /// Where this press itself went down: whether it moved (a drag) is measured from here.
    origin: (i32, i32),
    /// The event of the press.
    seq_down: u64,
    /// Clicks before this press in the same double/triple click (0 for a first press).
    chain: u8,
    t_start: u64,
    dragging: bool,
    path: Vec<PathPoint>,
    last: u64,
    modifiers: u8,
    /// The app in the foreground when the button went down: the step's app, whatever happens
    /// before the release.
    app: Option<String>,
    /// The click(s) this press continues (a double click's first click): emitted on their own if
    /// the press turns into a drag (a double-click-and-drag selects words).
    chained: Option<Pending>,
}

/// Reduces one session. Feed it the session's blocks in order ([`Reducer::push_block`]), take
/// the finished steps as they come ([`Reducer::drain`]), and [`Reducer::finish`] at the end.
pub struct Reducer {
    config: ReduceConfig,
    screen: Option<Screen>,
    app: Option<String>,
    /// Steps finished and final.
    out: Vec<Step>,
    /// The newest step with events, and the waits after it: trailing events that belong to no
    /// step yet may still join that step's range.
    newest: Vec<Step>,
    episode: u32,
    step: u32,
    /// The first event index not yet in any step.
    unassigned_from: u64,
    prev: Option<(u64, u64)>,
    /// (first event index, block number) of each block fed.
    blocks: Vec<(u64, u32)>,
    pending: Option<Pending>,
    press: Option<Press>,
    /// Buttons held down as a `mouse_down` step, waiting for their release.
    held: Vec<Button>,
    /// Keys (not modifiers) down now, by code: a second press of one is its auto-repeat.
    keys_down: Vec<String>,
    /// Keys held as a `key_down` step, waiting for their release.
    held_keys: Vec<String>,
    mods: u8,
    caps_lock: bool,
    /// Where the pointer was last seen.
    pointer: Option<(i32, i32)>,
    /// The layout key codes are read by (None: one this reducer does not know).
    layout: Option<Layout>,
    /// The recorder gave a key's text at least once: it reports text, so a character key
    /// without text is a dead key or an IME composing, not a key to infer text for.
    recorder_gives_text: bool,
}

impl Reducer {
    pub fn new(config: ReduceConfig, screen: Option<Screen>) -> Reducer {
        Reducer {
            config,
            screen,
            app: None,
            out: Vec::new(),
            newest: Vec::new(),
            episode: 0,
            step: 0,
            unassigned_from: 0,
            prev: None,
            blocks: Vec::new(),
            pending: None,
            press: None,
            held: Vec::new(),
            keys_down: Vec::new(),
            held_keys: Vec::new(),
            mods: 0,
            caps_lock: false,
            pointer: None,
            layout: Some(Layout::Us),
            recorder_gives_text: false,
        }
    }

    /// The keyboard layout the session declared (`layout` in its session record; US when it
    /// declares none). A layout the reducer does not know infers no text.
    pub fn with_layout(mut self, layout: Option<&str>) -> Reducer {
        self.layout = layout.map_or(Some(Layout::Us), Layout::from_name);
        self
    }

    /// Feeds one block: its number, the session-wide index of its first event, its events.
    pub fn push_block(&mut self, block: u32, seq_first: u64, events: &[Event]) {
        if self.blocks.is_empty() {
            self.unassigned_from = seq_first;
        }
        self.blocks.push((seq_first, block));
        for (i, e) in events.iter().enumerate() {
            self.push(seq_first + i as u64, e);
        }
    }

    /// The steps finished so far (the newest is held back until the next one, or the end).
    pub fn drain(&mut self) -> std::vec::Drain<'_, Step> {
        self.out.drain(..)
    }

    /// Ends the session: flushes what is pending and returns the last steps, and the events that
    /// belong to no step when there is none.
    pub fn finish(mut self) -> (Vec<Step>, Option<Absorbed>) {
        if let Some(p) = self.press.take() {
            let t_end = self.prev.map_or(p.t_start, |(t, _)| t);
            self.finish_press(p, t_end, None);
        }
        self.flush();
        let last_seq = self.prev.map(|(_, s)| s);
        let absorbed = match last_seq {
            Some(last) if self.unassigned_from <= last => {
                self.extend_held(last);
                (self.unassigned_from <= last)
                    .then_some(Absorbed { first_event: self.unassigned_from, last_event: last })
            }
            _ => None,
        };
        self.out.append(&mut self.newest);
        (self.out, absorbed)
    }

    fn block_of(&self, seq: u64) -> u32 {
        match self.blocks.partition_point(|&(first, _)| first <= seq) {
            0 => self.blocks.first().map_or(0, |b| b.1),
            i => self.blocks[i - 1].1,
        }
    }

    /// Emits a step accounting for every unassigned event up to `last`.
    fn emit(&mut self, action: Action, t_start: u64, t_end: u64, last: u64) {
        let app = self.app.clone();
        self.emit_in(action, t_start, t_end, last, app);
    }

    /// Emits a step that happened in `app`.
    fn emit_in(&mut self, action: Action, t_start: u64, t_end: u64, last: u64, app: Option<String>) {
        let first = self.unassigned_from.min(last);
        let lineage = Lineage {
            block: self.block_of(first),
            first_event: first,
            last_event: last,
            events: last - first + 1,
        };
        self.unassigned_from = last + 1;
        self.push_step(action, t_start, t_end, lineage, app);
    }

    fn push_step(&mut self, action: Action, t_start: u64, t_end: u64, lineage: Lineage, app: Option<String>) {
        let step = Step {
            episode: self.episode,
            step: self.step,
            t_start_us: t_start,
            // Time can go backwards in real recordings: a step never ends before it starts.
            t_end_us: t_end.max(t_start),
            action,
            app,
            screen: self.screen,
            lineage,
            redacted: false,
        };
        self.step += 1;
        if step.lineage.events > 0 {
            self.out.append(&mut self.newest);
        }
        self.newest.push(step);
    }

    /// Gives the events up to `last` that belong to no step to the newest step with events (no
    /// step with events can have come after it, only waits).
    fn extend_held(&mut self, last: u64) {
        if let Some(held) = self.newest.first_mut().filter(|s| s.lineage.events > 0)
            && self.unassigned_from <= last
        {
            held.lineage.last_event = last;
            held.lineage.events = last - held.lineage.first_event + 1;
            self.unassigned_from = last + 1;
        }
    }

    fn thin(&self, mut path: Vec<PathPoint>) -> Vec<PathPoint> {
        let max = self.config.path_points_max.max(2);
        if path.len() > max {
            let n = path.len();
            path = (0..max).map(|i| path[i * (n - 1) / (max - 1)]).collect();
        }
        path
    }

    /// Finishes the pending gesture as its step.
    fn flush(&mut self) {
        let Some(pending) = self.pending.take() else { return };
        match pending {
            // Jitter that never left the click distance, and typing that Backspace erased, are no
            // action: their events join the next step (or the previous one).
            Pending::Move { left: false, .. } => {}
            Pending::Type { ref text, secure: false, .. } if text.is_empty() => {}
            Pending::Move { path, t_start, t_last, last, .. } => {
                let path = self.thin(path);
                self.emit(Action::Move { path }, t_start, t_last, last);
            }
            click @ Pending::Click { .. } => self.emit_click(click),
            Pending::Scroll { dx, dy, at, modifiers, t_start, t_last, last } => {
                // PyAutoGUI's sign: positive scrolls up (the wheel's `dy > 0` is down).
                let action = Action::Scroll {
                    dx,
                    dy: dy.saturating_neg(),
                    x: at.0,
                    y: at.1,
                    modifiers: modifier_names(modifiers),
                };
                self.emit(action, t_start, t_last, last);
            }
            Pending::Type { text, secure, inferred, t_start, t_last, last } => {
                self.emit(Action::Type { text, secure, inferred }, t_start, t_last, last);
            }
        }
    }

    /// Emits a click that was waiting for a next click ([`Pending::Click`]) as its step.
    fn emit_click(&mut self, click: Pending) {
        if let Pending::Click { button, at, count, t_start, t_up, last, modifiers, app } = click {
            let action =
                Action::Click { button, x: at.0, y: at.1, count, modifiers: modifier_names(modifiers) };
            self.emit_in(action, t_start, t_up, last, app);
        }
    }

    /// An event that is no action of its own joins the gesture under way, if any.
    fn absorb(&mut self, seq: u64) {
        if let Some(p) = &mut self.press {
            p.last = seq;
        } else if let Some(p) = &mut self.pending {
            *p.last_mut() = seq;
        }
    }

    fn new_episode(&mut self) {
        self.out.append(&mut self.newest);
        // An episode with no step yet is simply continued: numbers have no gaps.
        if self.step > 0 {
            self.episode += 1;
            self.step = 0;
        }
    }

    fn push(&mut self, seq: u64, e: &Event) {
        let t = e.t_us;
        let episode_gap = self.config.episode_gap_ms.saturating_mul(1000);
        if let Some((prev_t, _)) = self.prev
            && t > prev_t
            && t - prev_t >= episode_gap
        {
            // A button held across an episode gap lost its release (the recorder missed it): the
            // press ends where the input stopped. Modifiers and held buttons are not carried into
            // the next episode either: a release the recorder missed (the secure desktop of
            // Ctrl+Alt+Del or Win+L takes it) must not turn all later typing into hotkeys.
            if let Some(p) = self.press.take() {
                self.finish_press(p, prev_t, None);
            }
            self.mods = 0;
            self.held.clear();
            self.keys_down.clear();
            self.held_keys.clear();
        }
        if let Some((prev_t, prev_seq)) = self.prev
            && t > prev_t
            && self.press.is_none()
        {
            let gap_us = t - prev_t;
            if gap_us >= self.config.wait_min_ms.saturating_mul(1000) {
                self.flush();
                self.extend_held(prev_seq);
                if gap_us >= episode_gap {
                    self.new_episode();
                } else {
                    let lineage = Lineage {
                        block: self.block_of(prev_seq),
                        first_event: prev_seq,
                        last_event: seq,
                        events: 0,
                    };
                    let app = self.app.clone();
                    self.push_step(Action::Wait { ms: gap_us / 1000 }, prev_t, t, lineage, app);
                }
            }
        }
        self.prev = Some((t, seq));
        match &e.kind {
            EventKind::Move { x, y } => self.on_move(seq, t, (*x, *y)),
            EventKind::Down { button, x, y } => self.on_down(seq, t, *button, (*x, *y)),
            EventKind::Up { button, x, y } => self.on_up(seq, t, *button, (*x, *y)),
            EventKind::Wheel { dx, dy, x, y } => self.on_wheel(seq, t, *dx, *dy, (*x, *y)),
            EventKind::KeyDown(k) => self.on_key_down(seq, t, k),
            EventKind::KeyUp(k) => {
                if let Some(m) = modifier(&k.code) {
                    self.mods &= !m;
                }
                self.keys_down.retain(|c| *c != k.code);
                if self.held_keys.contains(&k.code) {
                    self.held_keys.retain(|c| *c != k.code);
                    self.hold_press(); // a key's release while a button is down: the button is held
                    self.flush();
                    let key = pyautogui_name(&k.code, self.layout);
                    self.emit(Action::KeyUp { code: k.code.clone(), key }, t, t, seq);
                } else {
                    self.absorb(seq);
                }
            }
            EventKind::Text { text } => {
                self.hold_press();
                // A pasted line break is one Enter, whichever platform wrote it.
                let text: std::borrow::Cow<str> = if text.contains('\r') {
                    text.replace("\r\n", "\n").replace('\r', "\n").into()
                } else {
                    text.as_str().into()
                };
                self.type_push(seq, t, &text, false, false);
            }
            EventKind::Focus { app, title } => {
                if self.press.is_some() {
                    // Dragging from one window into another: the drag's own app is kept.
                    self.app = Some(app.clone());
                    self.absorb(seq);
                    return;
                }
                self.flush();
                self.mods = 0; // a focus change ends any chord (and a release lost with it)
                // (An episode with no step yet simply goes on: see new_episode.)
                if self.config.split_on_focus {
                    self.extend_held(seq.saturating_sub(1));
                    self.new_episode();
                }
                self.app = Some(app.clone());
                self.emit(Action::Focus { app: app.clone(), title: title.clone() }, t, t, seq);
            }
            EventKind::Screen { w, h } => {
                self.screen = Some(Screen { w: *w, h: *h });
                self.absorb(seq);
            }
            EventKind::Marker { .. } => self.absorb(seq),
        }
        if let EventKind::Move { x, y }
        | EventKind::Down { x, y, .. }
        | EventKind::Up { x, y, .. }
        | EventKind::Wheel { x, y, .. } = &e.kind
        {
            self.pointer = Some((*x, *y));
        }
    }

    /// Adds a point to a path: kept points are at least `path_sample_ms` apart, each the first
    /// point a period past the one before, and the newest point rides at the end until it is
    /// kept or replaced. A point where the path already is adds nothing.
    fn sample(&self, path: &mut Vec<PathPoint>, point: PathPoint) {
        let period = self.config.path_sample_ms.saturating_mul(1000);
        let n = path.len();
        if n >= 2 && path[n - 1].2.saturating_sub(path[n - 2].2) < period {
            path.pop(); // the riding point, replaced by this one
        }
        if path.last().is_some_and(|q| (q.0, q.1) == (point.0, point.1)) {
            return;
        }
        path.push(point);
    }

    fn on_move(&mut self, seq: u64, t: u64, at: (i32, i32)) {
        let slop = self.config.click_slop_px;
        if let Some(mut p) = self.press.take() {
            if !p.dragging && !near(p.origin, at, slop) {
                p.dragging = true;
            }
            self.sample(&mut p.path, (at.0, at.1, t));
            if p.path.len() > 4 * self.config.path_points_max.max(2) {
                p.path = self.thin(std::mem::take(&mut p.path)); // bounded however long the press
            }
            p.last = seq;
            self.press = Some(p);
            return;
        }
        match &mut self.pending {
            Some(Pending::Click { at: c, t_up, last, .. })
                if near(*c, at, slop) && t.saturating_sub(*t_up) <= self.config.multi_click_ms * 1000 =>
            {
                *last = seq; // jitter while a second click may follow
            }
            Some(Pending::Move { .. }) => {
                let Some(Pending::Move { mut path, from, left, t_start, .. }) = self.pending.take() else {
                    unreachable!()
                };
                self.sample(&mut path, (at.0, at.1, t));
                let left = left || !near(from, at, slop);
                self.pending = Some(Pending::Move { path, from, left, t_start, t_last: t, last: seq });
            }
            _ => {
                self.flush();
                let from = self.pointer.unwrap_or(at);
                self.pending = Some(Pending::Move {
                    path: vec![(at.0, at.1, t)],
                    from,
                    left: !near(from, at, slop),
                    t_start: t,
                    t_last: t,
                    last: seq,
                });
            }
        }
    }

    /// The button held down becomes a `mouse_down` step of its own (another button, a key or the
    /// wheel came while it was down), and its release, when it comes, a `mouse_up`. So a held
    /// button, or one whose release the recorder lost, never swallows what follows.
    fn hold_press(&mut self) {
        let Some(mut p) = self.press.take() else { return };
        if let Some(click) = p.chained.take() {
            self.emit_click(click);
        }
        let t_down = p.path.first().map_or(p.t_start, |q| q.2);
        let down = Action::MouseDown { button: p.button, x: p.origin.0, y: p.origin.1 };
        if p.dragging {
            self.emit_in(down, t_down, t_down, p.seq_down, p.app.clone());
            let t_end = p.path.last().map_or(t_down, |q| q.2);
            let path = self.thin(std::mem::take(&mut p.path));
            self.emit_in(Action::Move { path }, t_down, t_end, p.last, p.app);
        } else {
            self.emit_in(down, t_down, t_down, p.last, p.app);
        }
        self.held.push(p.button);
    }

    fn on_down(&mut self, seq: u64, t: u64, button: Button, at: (i32, i32)) {
        match self.press.take() {
            // The same button pressed again: its release was lost; the press ended before this.
            Some(p) if p.button == button => {
                let t_end = self.prev_input_t(p.t_start);
                self.finish_press(p, t_end, None);
            }
            Some(p) => {
                self.press = Some(p);
                self.hold_press(); // a second button while one is held
            }
            None => {}
        }
        // A held button pressed again: its release was lost.
        self.held.retain(|b| *b != button);
        let mut chain = 0;
        let mut t_start = t;
        let mut press_at = at;
        let mut chained = None;
        if let Some(Pending::Click { button: b, at: c, count, t_start: t0, t_up, .. }) = &self.pending
            && *b == button
            && button == Button::Left
            && *count < 3
            && near(*c, at, self.config.click_slop_px)
            && t.saturating_sub(*t_up) <= self.config.multi_click_ms * 1000
        {
            chain = *count;
            t_start = *t0;
            press_at = *c; // a double click is where its first click was
            chained = self.pending.take(); // continued by this press, unless it becomes a drag
        } else {
            self.flush();
        }
        self.press = Some(Press {
            button,
            at: press_at,
            origin: at,
            seq_down: seq,
            chain,
            t_start,
            dragging: false,
            path: vec![(at.0, at.1, t)],
            last: seq,
            modifiers: self.mods,
            app: self.app.clone(),
            chained,
        });
    }

    /// The time of the event before this one (for a press whose release was lost).
    fn prev_input_t(&self, floor: u64) -> u64 {
        self.prev.map_or(floor, |(t, _)| t.max(floor))
    }

    fn finish_press(&mut self, mut p: Press, t_end: u64, release: Option<(u64, (i32, i32))>) {
        let last = release.map_or(p.last, |(seq, _)| seq);
        // A release beyond the click distance of its press is a drag, moves between or not.
        if let Some((_, at)) = release
            && !near(p.origin, at, self.config.click_slop_px)
        {
            p.dragging = true;
        }
        if p.dragging {
            // A double click that then dragged: the click(s) first, then the drag from where the
            // last press began.
            let mut t_start = p.t_start;
            if let Some(click) = p.chained.take() {
                self.emit_click(click);
                t_start = p.path.first().map_or(t_start, |q| q.2);
            }
            let from = p.origin;
            let to = release.map_or_else(|| p.path.last().map_or(p.origin, |q| (q.0, q.1)), |(_, at)| at);
            let mut path = std::mem::take(&mut p.path);
            if let Some((_, at)) = release {
                self.sample(&mut path, (at.0, at.1, t_end));
            }
            let path = self.thin(path);
            let action =
                Action::Drag { button: p.button, from, to, path, modifiers: modifier_names(p.modifiers) };
            self.emit_in(action, t_start, t_end, last, p.app);
            return;
        }
        let count = p.chain + 1;
        if p.button == Button::Left && count < 3 && release.is_some() {
            self.pending = Some(Pending::Click {
                button: p.button,
                at: p.at,
                count,
                t_start: p.t_start,
                t_up: t_end,
                last,
                modifiers: p.modifiers,
                app: p.app,
            });
        } else {
            let action = Action::Click {
                button: p.button,
                x: p.at.0,
                y: p.at.1,
                count,
                modifiers: modifier_names(p.modifiers),
            };
            self.emit_in(action, p.t_start, t_end, last, p.app);
        }
    }

    fn on_up(&mut self, seq: u64, t: u64, button: Button, at: (i32, i32)) {
        match self.press.take() {
            Some(p) if p.button == button => return self.finish_press(p, t, Some((seq, at))),
            Some(p) => {
                self.press = Some(p);
                if !self.held.contains(&button) {
                    self.absorb(seq); // a release whose press came before the recording
                    return;
                }
                // A held button released while another is down: both are held.
                self.hold_press();
            }
            None => {}
        }
        if let Some(i) = self.held.iter().position(|b| *b == button) {
            self.held.remove(i);
            self.flush();
            self.emit(Action::MouseUp { button, x: at.0, y: at.1 }, t, t, seq);
        } else {
            self.absorb(seq); // a release whose press came before the recording
        }
    }

    fn on_wheel(&mut self, seq: u64, t: u64, dx: i32, dy: i32, at: (i32, i32)) {
        self.hold_press();
        // Wheel events merge while they come close together, keep their direction on each axis
        // (scrolling down then back up is two scrolls), and are made with the same modifiers
        // (Ctrl+wheel zooms).
        let same_way = |a: i32, b: i32| a == 0 || b == 0 || (a > 0) == (b > 0);
        if let Some(Pending::Scroll { dx: sx, dy: sy, modifiers, t_last, last, .. }) = &mut self.pending
            && t.saturating_sub(*t_last) <= self.config.scroll_gap_ms * 1000
            && *modifiers == self.mods
            && same_way(*sx, dx)
            && same_way(*sy, dy)
        {
            *sx = sx.saturating_add(dx);
            *sy = sy.saturating_add(dy);
            *t_last = t;
            *last = seq;
            return;
        }
        self.flush();
        self.pending =
            Some(Pending::Scroll { dx, dy, at, modifiers: self.mods, t_start: t, t_last: t, last: seq });
    }

    fn type_push(&mut self, seq: u64, t: u64, text: &str, secure: bool, inferred: bool) {
        if let Some(Pending::Type { text: pending, secure: s, inferred: i, t_last, last, .. }) =
            &mut self.pending
            && *s == secure
        {
            pending.push_str(text);
            *i |= inferred;
            *t_last = t;
            *last = seq;
            return;
        }
        self.flush();
        self.pending =
            Some(Pending::Type { text: text.to_owned(), secure, inferred, t_start: t, t_last: t, last: seq });
    }

    /// A key that repeats (held down, no release between) right after its press: the press
    /// becomes a `key_down` step that takes the repeats, and the release will be a `key_up`.
    /// Whether it did (not when something else came between the press and the repeat).
    fn hold_key(&mut self, seq: u64, code: &str) -> bool {
        let [step] = &mut self.newest[..] else { return false };
        match &step.action {
            Action::Press { code: c, key } if c == code => {
                step.action = Action::KeyDown { code: c.clone(), key: key.clone() };
                if !self.held_keys.iter().any(|h| h == code) {
                    self.held_keys.push(code.to_owned());
                }
            }
            Action::KeyDown { code: c, .. } if c == code => {}
            _ => return false,
        }
        self.extend_held(seq);
        true
    }

    /// The text a key without text typed, by the session's layout, Shift and Caps Lock; only
    /// for recorders that give codes alone, and only without Ctrl, Alt or Meta held.
    fn inferred_text(&self, key: &Key) -> Option<char> {
        if self.recorder_gives_text
            || key.secure
            || key.text.is_some()
            || self.mods & (CTRL | ALT | META) != 0
        {
            return None;
        }
        self.layout?.text(&key.code, self.mods & SHIFT != 0, self.caps_lock)
    }

    fn on_key_down(&mut self, seq: u64, t: u64, key: &Key) {
        if key.text.as_deref().is_some_and(|t| !t.is_empty()) {
            self.recorder_gives_text = true;
        }
        if let Some(m) = modifier(&key.code) {
            self.mods |= m;
            self.absorb(seq);
            return;
        }
        if key.code == "CapsLock" && !self.keys_down.iter().any(|c| c == "CapsLock") {
            // Toggled by its press, not by the key-downs it repeats while held.
            self.caps_lock = !self.caps_lock;
            self.keys_down.push(key.code.clone());
        }
        if matches!(key.code.as_str(), "CapsLock" | "NumLock" | "ScrollLock") {
            // Locks show in the text typed after them.
            self.absorb(seq);
            return;
        }
        self.hold_press(); // a key while a button is down: the button is held
        let repeat = self.keys_down.contains(&key.code);
        if !repeat {
            self.keys_down.push(key.code.clone());
        }
        let inferred = self.inferred_text(key);
        let mut buf = [0u8; 4];
        let (text, inferred) = match inferred {
            Some(c) => (Some(&*c.encode_utf8(&mut buf)), true),
            None => (typed(key), false),
        };
        // Ctrl or Meta with a key is a hotkey; Alt only when the key types nothing (AltGr and
        // macOS Option produce characters: that is typing).
        // Windows reports AltGr as Ctrl+Alt: with a character produced, that is typing too.
        let altgr = self.mods & (CTRL | ALT) == CTRL | ALT && self.mods & META == 0 && text.is_some();
        let chord = !altgr && (self.mods & (CTRL | META) != 0 || (self.mods & ALT != 0 && text.is_none()));
        if !chord {
            if let Some(text) = text {
                self.type_push(seq, t, text, false, inferred);
                return;
            }
            if key.secure && key.code == "Unidentified" {
                self.type_push(seq, t, "", true, false);
                return;
            }
            if key.code == "Backspace"
                && let Some(Pending::Type { text, secure: false, t_last, last, .. }) = &mut self.pending
                && text.pop().is_some()
            {
                *t_last = t;
                *last = seq;
                return;
            }
            if key.is_printable() && key.code != "Space" && !key.secure && self.recorder_gives_text {
                // A character key that produced nothing from a recorder that gives text (a dead
                // key, an IME composing): what it typed arrives later, as text.
                self.absorb(seq);
                return;
            }
        }
        self.flush();
        if repeat && self.mods == 0 && self.hold_key(seq, &key.code) {
            return;
        }
        let name = pyautogui_name(&key.code, self.layout);
        let action = if self.mods != 0 {
            Action::Hotkey { modifiers: modifier_names(self.mods), code: key.code.clone(), key: name }
        } else {
            Action::Press { code: key.code.clone(), key: name }
        };
        self.emit(action, t, t, seq);
    }
}

/// Reduces a whole session held in memory (tests, and short auditor replays).
pub fn reduce(
    config: &ReduceConfig,
    screen: Option<Screen>,
    events: &[Event],
) -> (Vec<Step>, Option<Absorbed>) {
    let mut r = Reducer::new(config.clone(), screen);
    r.push_block(0, 0, events);
    r.finish()
}
