//! A step: one action of a trajectory, with its timing, arguments, focused app, PyAutoGUI call and
//! lineage. docs/ACTIONS.md is the reference; DESIGN.md "Replay" fixes the JSON shape.

use std::fmt::Write as _;

use serde_json::{Value, json};
use tracevault_codecs::{Button, Screen};

use crate::keys::pyautogui_can_write;

/// A point of a pointer path: x, y, and the event's `t` in microseconds.
pub type PathPoint = (i32, i32, u64);

/// What the person did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// A press and release of a button without moving beyond the click distance; `count` is 1,
    /// 2 or 3 for click, double click, triple click (left button only).
    Click { button: Button, x: i32, y: i32, count: u8, modifiers: Vec<&'static str> },
    /// A press, movement beyond the click distance, and a release.
    Drag {
        button: Button,
        from: (i32, i32),
        to: (i32, i32),
        path: Vec<PathPoint>,
        modifiers: Vec<&'static str>,
    },
    /// A button held down while other actions happened (another button, a key, the wheel): the
    /// press is its own step, and its release a [`Action::MouseUp`] when it comes.
    MouseDown { button: Button, x: i32, y: i32 },
    /// The release of a button held as a [`Action::MouseDown`].
    MouseUp { button: Button, x: i32, y: i32 },
    /// Wheel events merged across short gaps, in one direction, in wheel units (120 a notch),
    /// signed as PyAutoGUI signs them: `dy > 0` scrolls up, `dx > 0` right.
    Scroll { dx: i32, dy: i32, x: i32, y: i32, modifiers: Vec<&'static str> },
    /// Printable keys (and committed text) merged, Backspace applied. Keys typed into secure
    /// fields leave `secure` set and no text; `inferred` when some text came from the keys' codes
    /// by the session's layout (the recorder gave no text).
    Type { text: String, secure: bool, inferred: bool },
    /// A key that prints nothing (Enter, Tab, an arrow, Escape, F5, ...): its W3C `code`, and
    /// PyAutoGUI's name for it when PyAutoGUI has the key.
    Press { code: String, key: Option<String> },
    /// A key held down (it repeated): the first press, with the repeats; its release is a
    /// [`Action::KeyUp`].
    KeyDown { code: String, key: Option<String> },
    /// The release of a key held as a [`Action::KeyDown`].
    KeyUp { code: String, key: Option<String> },
    /// Modifiers held with a key: the modifiers as PyAutoGUI names them (`ctrl`, `alt`, `shift`,
    /// `win`, in that order), the key's W3C `code`, and its PyAutoGUI name by the layout.
    Hotkey { modifiers: Vec<&'static str>, code: String, key: Option<String> },
    /// Pointer movement between actions, downsampled.
    Move { path: Vec<PathPoint> },
    /// An idle gap.
    Wait { ms: u64 },
    /// The foreground application or window changed.
    Focus { app: String, title: Option<String> },
}

/// A step's arguments as typed, flat fields: the export's columns and the replay's `args` both
/// come from here, so the two cannot disagree. Unset fields do not apply to the action.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Fields<'a> {
    /// Where the action happened (a drag's or move's end), in pixels, and normalised 0..1 by the
    /// screen when its size is known.
    pub x: Option<i32>,
    pub y: Option<i32>,
    pub nx: Option<f64>,
    pub ny: Option<f64>,
    /// Where a drag began.
    pub x0: Option<i32>,
    pub y0: Option<i32>,
    pub nx0: Option<f64>,
    pub ny0: Option<f64>,
    pub button: Option<&'static str>,
    /// Clicks of a click step (1, 2, 3).
    pub clicks: Option<u8>,
    /// Wheel units, PyAutoGUI's sign.
    pub dx: Option<i32>,
    pub dy: Option<i32>,
    pub modifiers: &'a [&'static str],
    pub text: Option<&'a str>,
    pub secure: Option<bool>,
    pub inferred: Option<bool>,
    /// PyAutoGUI's name for the key (a press, or a hotkey's last key).
    pub key: Option<&'a str>,
    /// The W3C `code` of that key.
    pub code: Option<&'a str>,
    /// A hotkey's keys, modifiers first, in PyAutoGUI's names.
    pub keys: Option<Vec<&'a str>>,
    pub ms: Option<u64>,
    pub path: Option<&'a [PathPoint]>,
    pub title: Option<&'a str>,
}

impl Action {
    /// The action's name, in the OSWorld computer_13 / PyAutoGUI vocabulary.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Click { button: Button::Right, .. } => "right_click",
            Action::Click { button: Button::Middle, .. } => "middle_click",
            Action::Click { count: 2, .. } => "double_click",
            Action::Click { count: 3, .. } => "triple_click",
            Action::Click { .. } => "click",
            Action::Drag { .. } => "drag",
            Action::MouseDown { .. } => "mouse_down",
            Action::MouseUp { .. } => "mouse_up",
            Action::Scroll { .. } => "scroll",
            Action::Type { .. } => "type",
            Action::Press { .. } => "press",
            Action::KeyDown { .. } => "key_down",
            Action::KeyUp { .. } => "key_up",
            Action::Hotkey { .. } => "hotkey",
            Action::Move { .. } => "move",
            Action::Wait { .. } => "wait",
            Action::Focus { .. } => "focus",
        }
    }

    /// Where the action happened (a drag's or a move's end).
    pub fn position(&self) -> Option<(i32, i32)> {
        match self {
            Action::Click { x, y, .. }
            | Action::MouseDown { x, y, .. }
            | Action::MouseUp { x, y, .. }
            | Action::Scroll { x, y, .. } => Some((*x, *y)),
            Action::Drag { to, .. } => Some(*to),
            Action::Move { path } => path.last().map(|p| (p.0, p.1)),
            _ => None,
        }
    }

    /// The arguments as typed fields, positions normalised by `screen` when it is known.
    pub fn fields(&self, screen: Option<Screen>) -> Fields<'_> {
        let norm = |at: Option<(i32, i32)>| -> (Option<f64>, Option<f64>) {
            match (at, screen.filter(|s| s.w > 0 && s.h > 0)) {
                (Some((x, y)), Some(s)) => {
                    (Some(round4(f64::from(x) / f64::from(s.w))), Some(round4(f64::from(y) / f64::from(s.h))))
                }
                _ => (None, None),
            }
        };
        let at = self.position();
        let (nx, ny) = norm(at);
        let mut f = Fields { x: at.map(|p| p.0), y: at.map(|p| p.1), nx, ny, ..Fields::default() };
        match self {
            Action::Click { button, count, modifiers, .. } => {
                f.button = Some(button.name());
                f.clicks = Some(*count);
                f.modifiers = modifiers;
            }
            Action::Drag { button, from, path, modifiers, .. } => {
                let (nx0, ny0) = norm(Some(*from));
                (f.x0, f.y0, f.nx0, f.ny0) = (Some(from.0), Some(from.1), nx0, ny0);
                f.button = Some(button.name());
                f.path = Some(path);
                f.modifiers = modifiers;
            }
            Action::MouseDown { button, .. } | Action::MouseUp { button, .. } => {
                f.button = Some(button.name())
            }
            Action::Scroll { dx, dy, modifiers, .. } => {
                (f.dx, f.dy) = (Some(*dx), Some(*dy));
                f.modifiers = modifiers;
            }
            Action::Type { text, secure, inferred } => {
                f.text = Some(text);
                f.secure = Some(*secure);
                f.inferred = Some(*inferred);
            }
            Action::Press { code, key } | Action::KeyDown { code, key } | Action::KeyUp { code, key } => {
                f.key = key.as_deref();
                f.code = Some(code);
            }
            Action::Hotkey { modifiers, code, key } => {
                f.key = key.as_deref();
                f.code = Some(code);
                // Without a name for the key there are no keys to press: never the modifiers alone.
                f.keys = key.as_deref().map(|k| modifiers.iter().copied().chain([k]).collect());
            }
            Action::Move { path } => f.path = Some(path),
            Action::Wait { ms } => f.ms = Some(*ms),
            Action::Focus { title, .. } => f.title = title.as_deref(),
        }
        f
    }

    /// The arguments, as JSON: the [`Fields`] that apply to the action.
    pub fn args(&self, screen: Option<Screen>) -> Value {
        let f = self.fields(screen);
        let mut v = serde_json::Map::new();
        let mut put = |name: &str, value: Value| {
            v.insert(name.to_owned(), value);
        };
        // Positioned steps always carry nx, ny (null when the screen is unknown).
        if f.x.is_some() {
            put("x", json!(f.x));
            put("y", json!(f.y));
            put("nx", json!(f.nx));
            put("ny", json!(f.ny));
        }
        if f.x0.is_some() {
            put("x0", json!(f.x0));
            put("y0", json!(f.y0));
            put("nx0", json!(f.nx0));
            put("ny0", json!(f.ny0));
        }
        for (name, value) in [
            ("button", f.button.map(|b| json!(b))),
            ("clicks", f.clicks.map(|c| json!(c))),
            ("dx", f.dx.map(|d| json!(d))),
            ("dy", f.dy.map(|d| json!(d))),
            ("text", f.text.map(|t| json!(t))),
            ("secure", f.secure.filter(|s| *s).map(|s| json!(s))),
            ("inferred", f.inferred.filter(|s| *s).map(|s| json!(s))),
            ("keys", f.keys.as_ref().map(|k| json!(k))),
            ("ms", f.ms.map(|m| json!(m))),
            ("path", f.path.map(|p| json!(p))),
        ] {
            if let Some(value) = value {
                put(name, value);
            }
        }
        if f.code.is_some() {
            put("key", json!(f.key));
            put("code", json!(f.code));
        }
        if !f.modifiers.is_empty() {
            put("modifiers", json!(f.modifiers));
        }
        if let Action::Focus { app, title } = self {
            put("app", json!(app));
            put("title", json!(title));
        }
        Value::Object(v)
    }

    /// The PyAutoGUI call that replays the action (for `wait`, `time.sleep`), or why there is
    /// none: only calls PyAutoGUI executes as recorded are given (it ignores an unknown key name,
    /// skips characters it has no key for, and raises on a button it does not know).
    pub fn pyautogui(&self, duration_us: u64) -> Result<String, String> {
        // Seconds to the millisecond, formatted as integers (float formatting was a measurable
        // part of an export's time).
        let secs = |us: u64| {
            let ms = us.saturating_add(500) / 1000;
            format!("{}.{:03}", ms / 1000, ms % 1000)
        };
        let wrap = |modifiers: &[&'static str], call: String| -> String {
            if modifiers.is_empty() {
                return call;
            }
            let mut s = String::new();
            for m in modifiers {
                let _ = write!(s, "pyautogui.keyDown('{m}'); ");
            }
            s.push_str(&call);
            for m in modifiers.iter().rev() {
                let _ = write!(s, "; pyautogui.keyUp('{m}')");
            }
            s
        };
        let button = |b: &Button| match b {
            Button::Left | Button::Right | Button::Middle => Ok(b.name()),
            other => Err(format!("PyAutoGUI has no {} button", other.name())),
        };
        Ok(match self {
            Action::Click { button: b, x, y, count, modifiers } => {
                let call = match (b, count) {
                    (Button::Left, 2) => format!("pyautogui.doubleClick(x={x}, y={y})"),
                    (Button::Left, 3) => format!("pyautogui.tripleClick(x={x}, y={y})"),
                    (Button::Left, _) => format!("pyautogui.click(x={x}, y={y})"),
                    (Button::Right, _) => format!("pyautogui.rightClick(x={x}, y={y})"),
                    (Button::Middle, _) => format!("pyautogui.middleClick(x={x}, y={y})"),
                    (other, _) => return Err(button(other).unwrap_err()),
                };
                wrap(modifiers, call)
            }
            Action::Drag { button: b, from, to, modifiers, .. } => wrap(
                modifiers,
                format!(
                    "pyautogui.moveTo({}, {}); pyautogui.dragTo({}, {}, duration={}, button='{}')",
                    from.0,
                    from.1,
                    to.0,
                    to.1,
                    secs(duration_us),
                    button(b)?
                ),
            ),
            Action::MouseDown { button: b, x, y } => {
                format!("pyautogui.mouseDown(x={x}, y={y}, button='{}')", button(b)?)
            }
            Action::MouseUp { button: b, x, y } => {
                format!("pyautogui.mouseUp(x={x}, y={y}, button='{}')", button(b)?)
            }
            Action::Scroll { dx, dy, x, y, modifiers } => {
                let mut calls = Vec::new();
                if *dy != 0 {
                    calls.push(format!("pyautogui.scroll({}, x={x}, y={y})", notches(*dy)));
                }
                if *dx != 0 {
                    calls.push(format!("pyautogui.hscroll({}, x={x}, y={y})", notches(*dx)));
                }
                if calls.is_empty() {
                    return Err("wheel events that moved nothing".to_owned());
                }
                wrap(modifiers, calls.join("; "))
            }
            Action::Type { secure: true, .. } => return Err("typed into a secure field: not recorded".into()),
            Action::Type { text, .. } if text.is_empty() => return Err("no text".into()),
            Action::Type { text, .. } if !pyautogui_can_write(text) => {
                return Err(
                    "the text has characters PyAutoGUI cannot type (it types keyboard keys only)".into()
                );
            }
            Action::Type { text, .. } => format!("pyautogui.write({})", py_str(text)),
            Action::Press { code, key: None }
            | Action::KeyDown { code, key: None }
            | Action::KeyUp { code, key: None }
            | Action::Hotkey { code, key: None, .. } => {
                return Err(format!("PyAutoGUI has no key for {code}"));
            }
            Action::Press { key: Some(key), .. } => format!("pyautogui.press({})", py_str(key)),
            Action::KeyDown { key: Some(key), .. } => format!("pyautogui.keyDown({})", py_str(key)),
            Action::KeyUp { key: Some(key), .. } => format!("pyautogui.keyUp({})", py_str(key)),
            Action::Hotkey { modifiers, key: Some(key), .. } => {
                let mut args: Vec<String> = modifiers.iter().map(|k| py_str(k)).collect();
                args.push(py_str(key));
                format!("pyautogui.hotkey({})", args.join(", "))
            }
            Action::Move { path } => match path.last() {
                Some(&(x, y, _)) => format!("pyautogui.moveTo({x}, {y}, duration={})", secs(duration_us)),
                None => return Err("an empty path".into()),
            },
            Action::Wait { ms } => format!("time.sleep({})", secs(ms * 1000)),
            Action::Focus { .. } => return Err("PyAutoGUI cannot change the focus".into()),
        })
    }
}

/// Wheel units as PyAutoGUI's whole notches, rounded to the nearest; a movement of less than
/// half a notch (a smooth-scrolling touchpad) is still one notch, never `scroll(0)`.
pub fn notches(units: i32) -> i32 {
    let n = (f64::from(units) / 120.0).round() as i32;
    if n == 0 { units.signum() } else { n }
}

fn round4(v: f64) -> f64 {
    (v * 10_000.0).round() / 10_000.0
}

/// A Python string literal for `s` (single quotes, backslash escapes).
pub fn py_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// Where a step came from: the block of its first event and the range of session-wide event
/// indices it accounts for. `events` is how many; 0 for a wait, whose first and last events are
/// the two around the idle gap (accounted for by their own steps).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lineage {
    pub block: u32,
    pub first_event: u64,
    pub last_event: u64,
    pub events: u64,
}

/// One step of a trajectory.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// The episode, from 0, within the session.
    pub episode: u32,
    /// The step, from 0, within the episode.
    pub step: u32,
    pub t_start_us: u64,
    pub t_end_us: u64,
    pub action: Action,
    /// The application in the foreground when the step started, if known.
    pub app: Option<String>,
    /// The screen the step's positions are normalised by.
    pub screen: Option<Screen>,
    pub lineage: Lineage,
    /// The step's arguments were removed by a redaction policy (a sensitive app).
    pub redacted: bool,
}

impl Step {
    /// The PyAutoGUI call that replays the step, or why there is none.
    pub fn pyautogui(&self) -> Result<String, String> {
        if self.redacted {
            return Err(format!("{} in a sensitive app: arguments redacted", self.action.name()));
        }
        self.action.pyautogui(self.t_end_us.saturating_sub(self.t_start_us))
    }

    /// The step as `replay --format jsonl` writes it.
    pub fn to_json(&self, session: &str) -> Value {
        let args = if self.redacted { json!({}) } else { self.action.args(self.screen) };
        let (pyautogui, skipped) = match self.pyautogui() {
            Ok(call) => (Some(call), None),
            Err(why) => (None, Some(why)),
        };
        json!({
            "session": session,
            "episode": self.episode,
            "step": self.step,
            "t_start_us": self.t_start_us,
            "t_end_us": self.t_end_us,
            "action": self.action.name(),
            "args": args,
            "app": self.app,
            "pyautogui": pyautogui,
            "pyautogui_skipped": skipped,
            "lineage": {
                "block": self.lineage.block,
                "first_event": self.lineage.first_event,
                "last_event": self.lineage.last_event,
                "events": self.lineage.events,
            },
        })
    }
}

/// Events that were read but belong to no step: a session holding nothing that is an action
/// (only a lone modifier press, or only screen changes). Reported so no event goes unaccounted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Absorbed {
    pub first_event: u64,
    pub last_event: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_strings_escape_what_python_needs() {
        assert_eq!(py_str("it's a \\ test\n"), "'it\\'s a \\\\ test\\n'");
        assert_eq!(py_str("\u{7}"), "'\\x07'");
    }

    #[test]
    fn a_window_title_is_never_code() {
        let focus =
            Action::Focus { app: "x\rimport os".into(), title: Some("t\nos.system('rm -rf ~')".into()) };
        assert!(focus.pyautogui(0).is_err());
        let scroll = Action::Scroll { dx: 0, dy: i32::MIN, x: 0, y: 0, modifiers: vec![] };
        assert!(scroll.pyautogui(0).unwrap().contains("scroll(-17895697"), "no overflow");
    }

    #[test]
    fn scroll_notches_round_and_never_vanish() {
        assert_eq!([notches(50), notches(-50), notches(180), notches(-300), notches(0)], [1, -1, 2, -3, 0]);
    }
}
