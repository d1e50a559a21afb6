//! A step: one action of a trajectory, with its timing, arguments, focused app, PyAutoGUI call and
//! lineage. docs/ACTIONS.md is the reference; DESIGN.md "Replay" fixes the JSON shape.

use std::fmt::Write as _;

use serde_json::{Value, json};
use tracevault_codecs::{Button, Screen};

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
    /// Wheel events merged across short gaps; `dy > 0` scrolls down, in wheel units (120 a notch).
    Scroll { dx: i32, dy: i32, x: i32, y: i32 },
    /// Printable keys (and committed text) merged, Backspace applied. Keys typed into secure
    /// fields leave `secure` set and no text.
    Type { text: String, secure: bool },
    /// A key that prints nothing (Enter, Tab, an arrow, Escape, F5, ...), by its `code`.
    Press { key: String },
    /// Modifiers held with a key, as PyAutoGUI names them: `["ctrl", "shift", "t"]`.
    Hotkey { keys: Vec<String> },
    /// Pointer movement between actions, downsampled.
    Move { path: Vec<PathPoint> },
    /// An idle gap.
    Wait { ms: u64 },
    /// The foreground application or window changed.
    Focus { app: String, title: Option<String> },
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
            Action::Scroll { .. } => "scroll",
            Action::Type { .. } => "type",
            Action::Press { .. } => "press",
            Action::Hotkey { .. } => "hotkey",
            Action::Move { .. } => "move",
            Action::Wait { .. } => "wait",
            Action::Focus { .. } => "focus",
        }
    }

    /// The arguments, as JSON (pixels, and 0..1 positions normalised by the screen when known).
    pub fn args(&self, screen: Option<Screen>) -> Value {
        let norm = |x: i32, y: i32| -> (Value, Value) {
            match screen.filter(|s| s.w > 0 && s.h > 0) {
                Some(s) => (
                    json!(round4(f64::from(x) / f64::from(s.w))),
                    json!(round4(f64::from(y) / f64::from(s.h))),
                ),
                None => (Value::Null, Value::Null),
            }
        };
        match self {
            Action::Click { button, x, y, modifiers, .. } => {
                let (nx, ny) = norm(*x, *y);
                let mut v = json!({"x": x, "y": y, "button": button.name(), "nx": nx, "ny": ny});
                if !modifiers.is_empty() {
                    v["modifiers"] = json!(modifiers);
                }
                v
            }
            Action::Drag { button, from, to, path, modifiers } => {
                let path: Vec<(i32, i32, u64)> = path.clone();
                let mut v = json!({"from": [from.0, from.1], "to": [to.0, to.1], "button": button.name(), "path": path});
                if !modifiers.is_empty() {
                    v["modifiers"] = json!(modifiers);
                }
                v
            }
            Action::Scroll { dx, dy, x, y } => json!({"dx": dx, "dy": dy, "x": x, "y": y}),
            Action::Type { text, secure } => {
                if *secure {
                    json!({"text": text, "secure": true})
                } else {
                    json!({"text": text})
                }
            }
            Action::Press { key } => json!({"key": key}),
            Action::Hotkey { keys } => json!({"keys": keys}),
            Action::Move { path } => {
                let path: Vec<(i32, i32, u64)> = path.clone();
                json!({"path": path})
            }
            Action::Wait { ms } => json!({"ms": ms}),
            Action::Focus { app, title } => json!({"app": app, "title": title}),
        }
    }

    /// The PyAutoGUI call that replays the action (for `wait`, `time.sleep`; for `focus`, which
    /// PyAutoGUI cannot do, a comment).
    pub fn pyautogui(&self, duration_us: u64) -> String {
        let secs = |us: u64| format!("{:.3}", us as f64 / 1e6);
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
        match self {
            Action::Click { button, x, y, count, modifiers } => {
                let call = match (button, count) {
                    (Button::Left, 2) => format!("pyautogui.doubleClick(x={x}, y={y})"),
                    (Button::Left, 3) => format!("pyautogui.tripleClick(x={x}, y={y})"),
                    (Button::Left, _) => format!("pyautogui.click(x={x}, y={y})"),
                    (Button::Right, _) => format!("pyautogui.rightClick(x={x}, y={y})"),
                    (Button::Middle, _) => format!("pyautogui.middleClick(x={x}, y={y})"),
                    (other, _) => format!("pyautogui.click(x={x}, y={y}, button='{}')", other.name()),
                };
                wrap(modifiers, call)
            }
            Action::Drag { button, from, to, modifiers, .. } => wrap(
                modifiers,
                format!(
                    "pyautogui.moveTo({}, {}); pyautogui.dragTo({}, {}, duration={}, button='{}')",
                    from.0,
                    from.1,
                    to.0,
                    to.1,
                    secs(duration_us),
                    button.name()
                ),
            ),
            Action::Scroll { dx, dy, x, y } => {
                // PyAutoGUI counts notches, positive up (and right for hscroll).
                let mut calls = Vec::new();
                if *dy != 0 {
                    calls.push(format!("pyautogui.scroll({}, x={x}, y={y})", -(dy / 120)));
                }
                if *dx != 0 {
                    calls.push(format!("pyautogui.hscroll({}, x={x}, y={y})", dx / 120));
                }
                if calls.is_empty() {
                    calls.push(format!("pyautogui.scroll(0, x={x}, y={y})"));
                }
                calls.join("; ")
            }
            Action::Type { secure: true, .. } => "# typed into a secure field: not recorded".to_owned(),
            Action::Type { text, .. } => format!("pyautogui.typewrite({})", py_str(text)),
            Action::Press { key } => format!("pyautogui.press({})", py_str(&pyautogui_key(key))),
            Action::Hotkey { keys } => {
                let args: Vec<String> = keys.iter().map(|k| py_str(k)).collect();
                format!("pyautogui.hotkey({})", args.join(", "))
            }
            Action::Move { path } => match path.last() {
                Some(&(x, y, _)) => format!("pyautogui.moveTo({x}, {y}, duration={})", secs(duration_us)),
                None => "pass".to_owned(),
            },
            Action::Wait { ms } => format!("time.sleep({})", secs(ms * 1000)),
            // A comment: no control character may end it (a title with "\r" or "\n" would
            // otherwise put code on the next line of a script built from these calls).
            Action::Focus { app, title } => match title {
                Some(t) => format!("# focus: {} - {}", one_line(app), one_line(t)),
                None => format!("# focus: {}", one_line(app)),
            },
        }
    }
}

/// `s` with every control character (line breaks included) as a space.
fn one_line(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
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

/// PyAutoGUI's name for a W3C `KeyboardEvent.code`.
pub fn pyautogui_key(code: &str) -> String {
    if let Some(letter) = code.strip_prefix("Key") {
        return letter.to_ascii_lowercase();
    }
    if let Some(digit) = code.strip_prefix("Digit") {
        return digit.to_owned();
    }
    if code.len() <= 3 && code.starts_with('F') && code[1..].chars().all(|c| c.is_ascii_digit()) {
        return code.to_ascii_lowercase();
    }
    let name = match code {
        "Enter" | "NumpadEnter" => "enter",
        "Tab" => "tab",
        "Backspace" => "backspace",
        "Escape" => "esc",
        "Space" => "space",
        "Delete" => "delete",
        "Insert" => "insert",
        "Home" => "home",
        "End" => "end",
        "PageUp" => "pageup",
        "PageDown" => "pagedown",
        "ArrowLeft" => "left",
        "ArrowRight" => "right",
        "ArrowUp" => "up",
        "ArrowDown" => "down",
        "CapsLock" => "capslock",
        "NumLock" => "numlock",
        "ScrollLock" => "scrolllock",
        "PrintScreen" => "printscreen",
        "Pause" => "pause",
        "ContextMenu" => "apps",
        "ShiftLeft" => "shiftleft",
        "ShiftRight" => "shiftright",
        "ControlLeft" => "ctrlleft",
        "ControlRight" => "ctrlright",
        "AltLeft" => "altleft",
        "AltRight" => "altright",
        "MetaLeft" | "OSLeft" => "winleft",
        "MetaRight" | "OSRight" => "winright",
        "Minus" => "-",
        "Equal" => "=",
        "BracketLeft" => "[",
        "BracketRight" => "]",
        "Backslash" => "\\",
        "Semicolon" => ";",
        "Quote" => "'",
        "Backquote" => "`",
        "Comma" => ",",
        "Period" => ".",
        "Slash" => "/",
        "AudioVolumeUp" => "volumeup",
        "AudioVolumeDown" => "volumedown",
        "AudioVolumeMute" => "volumemute",
        other => return other.to_ascii_lowercase(),
    };
    name.to_owned()
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
    /// The step as the JSONL export and `replay --format jsonl` write it.
    pub fn to_json(&self, session: &str) -> Value {
        let args = if self.redacted { json!({}) } else { self.action.args(self.screen) };
        let pyautogui = if self.redacted {
            format!("# {} in a sensitive app: arguments redacted", self.action.name())
        } else {
            self.action.pyautogui(self.t_end_us.saturating_sub(self.t_start_us))
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
    fn a_window_title_cannot_break_out_of_its_comment() {
        let focus =
            Action::Focus { app: "x\rimport os".into(), title: Some("t\nos.system('rm -rf ~')".into()) };
        let call = focus.pyautogui(0);
        assert!(!call.contains('\n') && !call.contains('\r') && call.starts_with("# focus:"), "{call}");
        let scroll = Action::Scroll { dx: 0, dy: i32::MIN, x: 0, y: 0 };
        assert!(scroll.pyautogui(0).contains("scroll(17895697"), "no overflow: {}", scroll.pyautogui(0));
    }

    #[test]
    fn key_names_follow_pyautogui() {
        for (code, name) in [
            ("KeyT", "t"),
            ("Digit7", "7"),
            ("F5", "f5"),
            ("F12", "f12"),
            ("ArrowLeft", "left"),
            ("Escape", "esc"),
        ] {
            assert_eq!(pyautogui_key(code), name);
        }
    }
}
