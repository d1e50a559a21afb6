//! A synthetic workload of realistic human input, seeded and reproducible: what `demo`, tests
//! and benchmarks use for scale (SapiMouse is the truth for the pointer; docs/GENERATOR.md says
//! how close this comes to it).
//!
//! - Pointer motion along minimum-jerk paths (Flash & Hogan 1985) whose durations follow Fitts'
//!   law, with a corrective sub-movement on some aims, hand tremor, and events sampled at the
//!   session's rate (60 Hz like a browser, or 125 Hz like a native hook) only when the pointer moves.
//! - Clicks, double clicks, drags and scrolls at the targets.
//! - Typing from a small corpus with per-digraph timing (hand alternation is faster than one
//!   hand, one finger twice is slowest), Shift for capitals, typos noticed and fixed with
//!   Backspace; hotkeys (copy, paste, save, undo; Alt+Tab switches apps).
//! - App switches (focus events), idle pauses (most short, some long, rarely past a minute), and
//!   a password typed into a secure field now and then.

use std::collections::BTreeMap;

use tracevault_codecs::{Button, Event, EventKind, Key, Screen, SessionMeta};

/// xoshiro256** seeded through SplitMix64: small, fast, reproducible across platforms.
#[derive(Clone, Debug)]
pub struct Rng([u64; 4]);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        let mut z = seed;
        let mut next = || {
            z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut x = z;
            x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            x ^ (x >> 31)
        };
        Rng([next(), next(), next(), next()])
    }

    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.0;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1).
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.f64()
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.f64() * n as f64) as usize % n.max(1)
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.f64() < p
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u = self.f64().max(1e-12);
        let v = self.f64();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }

    /// Log-normal with the given median and spread (the log's standard deviation).
    pub fn lognormal(&mut self, median: f64, sigma: f64) -> f64 {
        median * (sigma * self.normal()).exp()
    }
}

/// What to generate.
#[derive(Clone, Debug)]
pub struct Workload {
    pub sessions: usize,
    /// Minutes of input per session.
    pub minutes: f64,
    pub seed: u64,
}

const APPS: &[(&str, &str)] = &[
    ("firefox", "Inbox - Mail"),
    ("code", "main.rs - tracevault"),
    ("terminal", "~/work"),
    ("slack", "#team"),
    ("libreoffice", "Q4 plan.odt"),
];

const SENTENCES: &[&str] = &[
    "The quick brown fox jumps over the lazy dog.",
    "Meeting moved to Thursday at 10, see you there.",
    "Please review the pull request before lunch.",
    "I think the numbers look right now.",
    "Thanks, that fixed it!",
    "Can you send me the report by Friday?",
    "let total = items.iter().sum();",
    "git commit -m \"fix the flaky test\"",
    "Running the benchmarks again tonight.",
    "Call me at 555 0199 if it breaks again.",
];

/// The hand (0 left, 1 right) and finger (0..=4 from the index) of a QWERTY key.
fn finger(c: char) -> Option<(u8, u8)> {
    let c = c.to_ascii_lowercase();
    let rows = ["qwert", "yuiop", "asdfg", "hjkl;", "zxcvb", "nm,./"];
    for (i, row) in rows.iter().enumerate() {
        if let Some(pos) = row.find(c) {
            let hand = (i % 2) as u8;
            let f = if hand == 0 { (4 - pos.min(4)) as u8 } else { pos.min(4) as u8 };
            return Some((hand, f.min(3)));
        }
    }
    None
}

/// The W3C code of a character on a US keyboard, and whether it needs Shift.
fn code_of(c: char) -> (String, bool) {
    match c {
        'a'..='z' => (format!("Key{}", c.to_ascii_uppercase()), false),
        'A'..='Z' => (format!("Key{c}"), true),
        '0'..='9' => (format!("Digit{c}"), false),
        ' ' => ("Space".into(), false),
        '.' => ("Period".into(), false),
        ',' => ("Comma".into(), false),
        ';' => ("Semicolon".into(), false),
        '/' => ("Slash".into(), false),
        '-' => ("Minus".into(), false),
        '=' => ("Equal".into(), false),
        '\'' => ("Quote".into(), false),
        '"' => ("Quote".into(), true),
        '!' => ("Digit1".into(), true),
        '?' => ("Slash".into(), true),
        '(' => ("Digit9".into(), true),
        ')' => ("Digit0".into(), true),
        ':' => ("Semicolon".into(), true),
        _ => ("Unidentified".into(), false),
    }
}

/// A neighbouring key, for typos.
fn neighbour(c: char, rng: &mut Rng) -> char {
    let rows = ["qwertyuiop", "asdfghjkl", "zxcvbnm"];
    let lower = c.to_ascii_lowercase();
    for row in rows {
        if let Some(i) = row.find(lower) {
            let bytes = row.as_bytes();
            let j = if i == 0 {
                1
            } else if i + 1 == bytes.len() || rng.chance(0.5) {
                i - 1
            } else {
                i + 1
            };
            return bytes[j] as char;
        }
    }
    'e'
}

struct Session {
    rng: Rng,
    events: Vec<Event>,
    t: u64,
    pos: (f64, f64),
    screen: Screen,
    /// Microseconds between pointer samples.
    sample_us: f64,
    app: usize,
}

impl Session {
    fn push(&mut self, kind: EventKind) {
        self.events.push(Event { t_us: self.t, kind });
    }

    fn advance_ms(&mut self, ms: f64) {
        self.t += (ms.max(0.0) * 1000.0) as u64;
    }

    /// A log-normal pause with this median (ms) and spread.
    fn pause(&mut self, median_ms: f64, sigma: f64) {
        let ms = self.rng.lognormal(median_ms, sigma);
        self.advance_ms(ms);
    }

    fn clamp(&self, p: (f64, f64)) -> (f64, f64) {
        (p.0.clamp(0.0, f64::from(self.screen.w - 1)), p.1.clamp(0.0, f64::from(self.screen.h - 1)))
    }

    /// A minimum-jerk movement to `to`, timed by Fitts' law for a target `width` pixels wide.
    fn aim(&mut self, to: (f64, f64), width: f64) {
        let from = self.pos;
        let d = ((to.0 - from.0).powi(2) + (to.1 - from.1).powi(2)).sqrt();
        if d < 1.0 {
            return;
        }
        // Fitts: MT = a + b log2(D/W + 1), with person-to-person variation.
        let index = (d / width + 1.0).log2();
        let duration_ms = (70.0 + 115.0 * index) * self.rng.lognormal(1.0, 0.35);
        // Most aims land short and correct with a small second movement.
        let primary = if d > 80.0 && self.rng.chance(0.6) { self.rng.range(0.88, 0.97) } else { 1.0 };
        let mid = (from.0 + (to.0 - from.0) * primary, from.1 + (to.1 - from.1) * primary);
        self.stroke(from, mid, duration_ms * if primary < 1.0 { 0.85 } else { 1.0 });
        if primary < 1.0 {
            self.pause(60.0, 0.4);
            let rest = (((to.0 - mid.0).powi(2) + (to.1 - mid.1).powi(2)).sqrt() / width + 1.0).log2();
            let fix_ms = (40.0 + 80.0 * rest) * self.rng.lognormal(1.0, 0.2);
            self.stroke(mid, to, fix_ms);
        }
    }

    /// One minimum-jerk stroke, sampled at the session's rate, with tremor; an event for each
    /// sample where the (rounded) position changed.
    fn stroke(&mut self, from: (f64, f64), to: (f64, f64), duration_ms: f64) {
        let duration_us = (duration_ms * 1000.0).max(self.sample_us);
        let start = self.t;
        let mut elapsed = 0.0;
        let mut last = (self.pos.0.round() as i32, self.pos.1.round() as i32);
        while elapsed < duration_us {
            elapsed = (elapsed + self.sample_us * self.rng.range(0.94, 1.06)).min(duration_us);
            let tau = elapsed / duration_us;
            let s = tau.powi(3) * (10.0 - 15.0 * tau + 6.0 * tau * tau);
            let tremor = 0.6 * (1.0 - (2.0 * tau - 1.0).powi(2)) + 0.25;
            let p = (
                from.0 + (to.0 - from.0) * s + tremor * self.rng.normal(),
                from.1 + (to.1 - from.1) * s + tremor * self.rng.normal(),
            );
            let p = self.clamp(p);
            self.t = start + elapsed as u64;
            let at = (p.0.round() as i32, p.1.round() as i32);
            if at != last {
                self.push(EventKind::Move { x: at.0, y: at.1 });
                last = at;
            }
            self.pos = p;
        }
        self.pos = self.clamp(to);
    }

    fn at(&self) -> (i32, i32) {
        (self.pos.0.round() as i32, self.pos.1.round() as i32)
    }

    fn target(&mut self) -> (f64, f64) {
        (
            self.rng.range(20.0, f64::from(self.screen.w) - 20.0),
            self.rng.range(20.0, f64::from(self.screen.h) - 20.0),
        )
    }

    fn click(&mut self, button: Button) {
        let (x, y) = self.at();
        self.push(EventKind::Down { button, x, y });
        self.pause(95.0, 0.3);
        self.push(EventKind::Up { button, x, y });
    }

    fn key(&mut self, code: &str, text: Option<String>, secure: bool) {
        let key = Key { code: code.into(), text, secure };
        self.push(EventKind::KeyDown(key.clone()));
        self.pause(85.0, 0.3);
        self.push(EventKind::KeyUp(Key { text: None, ..key }));
    }

    /// Types `text` with per-digraph timing, Shift for capitals and typos fixed with Backspace.
    fn type_text(&mut self, text: &str, secure: bool) {
        let mut prev: Option<char> = None;
        let chars: Vec<char> = text.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            // The interval before this key depends on the digraph: alternating hands fastest.
            let factor = match (prev.and_then(finger), finger(c)) {
                (Some((h1, f1)), Some((h2, f2))) if h1 == h2 && f1 == f2 => 1.45,
                (Some((h1, _)), Some((h2, _))) if h1 == h2 => 1.1,
                (Some(_), Some(_)) => 0.8,
                _ => 1.0,
            };
            self.pause(175.0 * factor, 0.35);
            if !secure && c.is_ascii_alphabetic() && self.rng.chance(0.03) {
                // A typo, noticed a few keys later and erased.
                let wrong = neighbour(c, &mut self.rng);
                let run = 1 + self.rng.below(3).min(chars.len() - i - 1);
                self.type_char(wrong, false);
                for k in 1..run {
                    self.pause(170.0, 0.3);
                    self.type_char(chars[i + k], false);
                }
                self.pause(350.0, 0.3);
                for _ in 0..run {
                    self.key("Backspace", None, false);
                    self.pause(120.0, 0.25);
                }
            }
            self.type_char(c, secure);
            prev = Some(c);
            i += 1;
        }
    }

    fn type_char(&mut self, c: char, secure: bool) {
        let (code, shift) = code_of(c);
        if shift {
            self.push(EventKind::KeyDown(Key { code: "ShiftLeft".into(), text: None, secure: false }));
            self.pause(60.0, 0.3);
        }
        self.key(&code, Some(c.to_string()), secure);
        if shift {
            self.pause(30.0, 0.3);
            self.push(EventKind::KeyUp(Key { code: "ShiftLeft".into(), text: None, secure: false }));
        }
    }

    fn hotkey(&mut self, modifier: &str, code: &str) {
        self.push(EventKind::KeyDown(Key { code: modifier.into(), text: None, secure: false }));
        self.pause(90.0, 0.3);
        self.key(code, None, false);
        self.pause(50.0, 0.3);
        self.push(EventKind::KeyUp(Key { code: modifier.into(), text: None, secure: false }));
    }

    fn focus(&mut self, app: usize) {
        self.app = app;
        let (name, title) = APPS[app];
        self.push(EventKind::Focus { app: name.into(), title: Some(title.into()) });
    }

    fn idle(&mut self) {
        let r = self.rng.f64();
        let ms = if r < 0.80 {
            self.rng.lognormal(450.0, 0.6)
        } else if r < 0.985 {
            self.rng.lognormal(3_000.0, 0.7)
        } else {
            self.rng.range(60_000.0, 150_000.0) // a break: a new episode
        };
        self.advance_ms(ms);
    }

    /// The pointer wandering slowly while the person reads: a short, unhurried drift.
    fn drift(&mut self) {
        let steps = 1 + self.rng.below(3);
        for _ in 0..steps {
            let d = self.rng.lognormal(60.0, 0.6);
            let angle = self.rng.range(0.0, std::f64::consts::TAU);
            let to = self.clamp((self.pos.0 + d * angle.cos(), self.pos.1 + d * angle.sin()));
            let ms = self.rng.lognormal(400.0, 0.4);
            self.stroke(self.pos, to, ms);
            self.pause(150.0, 0.5);
        }
    }

    /// One activity: what a person does between pauses.
    fn activity(&mut self) {
        if self.rng.chance(0.2) {
            self.drift();
        }
        let r = self.rng.f64();
        if r < 0.40 {
            let to = self.target();
            let width = self.rng.range(16.0, 90.0);
            self.aim(to, width);
            self.pause(120.0, 0.4);
            if self.rng.chance(0.12) {
                self.click(Button::Left);
                self.pause(120.0, 0.3);
                self.click(Button::Left);
            } else if self.rng.chance(0.06) {
                self.click(Button::Right);
            } else {
                self.click(Button::Left);
            }
        } else if r < 0.50 {
            // A drag: select text, or move a window.
            let to = self.target();
            self.aim(to, 40.0);
            let (x, y) = self.at();
            self.push(EventKind::Down { button: Button::Left, x, y });
            self.pause(120.0, 0.3);
            let end = self.target();
            self.aim(end, 60.0);
            self.pause(80.0, 0.3);
            let (x, y) = self.at();
            self.push(EventKind::Up { button: Button::Left, x, y });
        } else if r < 0.60 {
            let notches = 2 + self.rng.below(10);
            let down = self.rng.chance(0.7);
            for _ in 0..notches {
                let (x, y) = self.at();
                self.push(EventKind::Wheel { dx: 0, dy: if down { 120 } else { -120 }, x, y });
                self.pause(45.0, 0.4);
            }
        } else if r < 0.85 {
            let sentence = SENTENCES[self.rng.below(SENTENCES.len())];
            self.type_text(sentence, false);
            if self.rng.chance(0.5) {
                self.pause(300.0, 0.3);
                self.key("Enter", Some("\r".into()), false);
            }
        } else if r < 0.93 {
            let (code, switch) =
                [("KeyC", false), ("KeyV", false), ("KeyS", false), ("KeyZ", false), ("Tab", true)]
                    [self.rng.below(5)];
            if switch {
                self.hotkey("AltLeft", code);
                let next = (self.app + 1 + self.rng.below(APPS.len() - 1)) % APPS.len();
                self.pause(150.0, 0.3);
                self.focus(next);
            } else {
                self.hotkey("ControlLeft", code);
            }
        } else if r < 0.98 {
            let next = self.rng.below(APPS.len());
            self.focus(next);
        } else {
            // A password, typed into a secure field of a login window.
            self.push(EventKind::Focus { app: "login".into(), title: Some("Sign in".into()) });
            self.pause(400.0, 0.3);
            let password: String = (0..10).map(|_| (b'a' + self.rng.below(26) as u8) as char).collect();
            self.type_text(&password, true);
            self.key("Enter", Some("\r".into()), false);
            let back = self.app;
            self.focus(back);
        }
    }
}

/// The sessions of a workload: metadata and events, generated independently per session (so any
/// session can be regenerated alone from the seed).
pub fn sessions(w: &Workload) -> Vec<(SessionMeta, Vec<Event>)> {
    (0..w.sessions).map(|i| session(w, i)).collect()
}

/// Session `i` of a workload.
pub fn session(w: &Workload, i: usize) -> (SessionMeta, Vec<Event>) {
    let mut s = Session::start(w.seed, i);
    let first = s.rng.below(APPS.len());
    s.focus(first);
    let end = (w.minutes * 60e6) as u64;
    while s.t < end {
        s.activity();
        s.idle();
    }
    let meta = s.meta(i, format!("gen-{i:04}"), "generated");
    (meta, s.events)
}

/// Session `i` of a typing workload: one person typing sentences into one app until about
/// `keys` key events (downs and ups) are recorded, as keystroke-dynamics studies record them:
/// short sessions, no pointer, irregular human timing. The shape that makes per-session costs
/// show.
pub fn typing_session(seed: u64, i: usize, keys: usize) -> (SessionMeta, Vec<Event>) {
    let mut s = Session::start(seed ^ 0x7479_7069_6e67, i);
    let app = s.rng.below(APPS.len());
    s.focus(app);
    while s.events.len() < keys {
        let sentence = SENTENCES[s.rng.below(SENTENCES.len())];
        s.type_text(sentence, false);
        s.pause(600.0, 0.5);
    }
    let meta = s.meta(i, format!("typing-{i:05}"), "generated-typing");
    (meta, s.events)
}

impl Session {
    /// A new session for person `i` of the workload seeded with `seed`: its screen, its
    /// pointer's sampling interval, the pointer at the centre.
    fn start(seed: u64, i: usize) -> Session {
        let mut rng = Rng::new(seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let screens = [Screen { w: 1920, h: 1080 }, Screen { w: 2560, h: 1440 }, Screen { w: 1440, h: 900 }];
        let screen = screens[rng.below(screens.len())];
        let sample_us = if rng.chance(0.7) { 16_667.0 } else { 8_000.0 };
        Session {
            rng,
            events: Vec::new(),
            t: 0,
            pos: (f64::from(screen.w) / 2.0, f64::from(screen.h) / 2.0),
            screen,
            sample_us,
            app: 0,
        }
    }

    fn meta(&self, i: usize, session: String, source: &str) -> SessionMeta {
        SessionMeta {
            session,
            user: format!("person-{:02}", i % 7),
            device: Some(format!("laptop-{}", i % 5)),
            screen: Some(self.screen),
            started_at: Some(format!("2026-11-{:02}T{:02}:00:00Z", 2 + i % 25, 8 + i % 9)),
            layout: None,
            labels: BTreeMap::from([("source".to_owned(), source.to_owned())]),
        }
    }
}

/// Pointer statistics to compare a workload with real recordings: the gaps between consecutive
/// pointer moves (ms) and the pointer's speed between them (px/s), as percentiles.
#[derive(Clone, Debug, PartialEq)]
pub struct PointerStats {
    pub moves: usize,
    pub gap_ms: [f64; 3],
    pub speed_px_s: [f64; 3],
}

/// Percentiles 50, 90 and 99 of move-to-move gaps; 25, 50 and 90 of speeds (over gaps under 100 ms).
pub fn pointer_stats<'a>(sessions: impl IntoIterator<Item = &'a [Event]>) -> PointerStats {
    let mut gaps = Vec::new();
    let mut speeds = Vec::new();
    for events in sessions {
        let mut prev: Option<(u64, i32, i32)> = None;
        for e in events {
            match e.kind {
                EventKind::Move { x, y } => {
                    if let Some((t, px, py)) = prev
                        && e.t_us > t
                    {
                        let ms = (e.t_us - t) as f64 / 1000.0;
                        gaps.push(ms);
                        if ms < 100.0 {
                            let d = f64::from(x - px).hypot(f64::from(y - py));
                            speeds.push(d / ms * 1000.0);
                        }
                    }
                    prev = Some((e.t_us, x, y));
                }
                _ => prev = None,
            }
        }
    }
    let q = |v: &mut Vec<f64>, p: f64| -> f64 {
        if v.is_empty() {
            return 0.0;
        }
        v.sort_by(|a, b| a.total_cmp(b));
        v[(p * (v.len() - 1) as f64) as usize]
    };
    PointerStats {
        moves: gaps.len(),
        gap_ms: [q(&mut gaps, 0.5), q(&mut gaps, 0.9), q(&mut gaps, 0.99)],
        speed_px_s: [q(&mut speeds, 0.25), q(&mut speeds, 0.5), q(&mut speeds, 0.9)],
    }
}
