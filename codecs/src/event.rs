//! The event model: one person's session on one device, and the input events it holds.
//!
//! DESIGN.md "Event model" is the reference; this module is its one definition in code.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// What a session is: who, on which device, with which screen. Opened by a `"type":"session"`
/// record in the interchange formats.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionMeta {
    /// The session id, unique in a store.
    pub session: String,
    /// The pseudonymous id of the person recorded.
    pub user: String,
    /// The device id, when the recorder knows it.
    pub device: Option<String>,
    /// The screen geometry at the start of the session, when known.
    pub screen: Option<Screen>,
    /// When the session started, as the recorder wrote it (RFC 3339).
    pub started_at: Option<String>,
    /// The keyboard layout the recorder declares (`us`, `de`, ...): what a key typed when the
    /// recorder gives its code but no text. Absent in sessions stored before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layout: Option<String>,
    /// Free labels (team, task, ...).
    pub labels: BTreeMap<String, String>,
}

/// Display geometry in pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Screen {
    pub w: u32,
    pub h: u32,
}

/// One input event (its serde form is Rust's own shape; the interchange formats are in
/// [`crate::jsonl`] and [`crate::msgpack`]). `t_us` counts microseconds since the session started; it is expected to be
/// non-decreasing but real recorders sometimes go backwards, and such events are kept as they are.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub t_us: u64,
    pub kind: EventKind,
}

/// What happened. Coordinates are screen pixels and may be negative (multi-monitor set-ups).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    Move {
        x: i32,
        y: i32,
    },
    Down {
        button: Button,
        x: i32,
        y: i32,
    },
    Up {
        button: Button,
        x: i32,
        y: i32,
    },
    /// `dy > 0` scrolls down; units are wheel ticks x 120.
    Wheel {
        dx: i32,
        dy: i32,
        x: i32,
        y: i32,
    },
    KeyDown(Key),
    KeyUp(Key),
    /// Committed text that no key produced (an IME, a paste by the OS).
    Text {
        text: String,
    },
    /// The foreground application or window changed.
    Focus {
        app: String,
        title: Option<String>,
    },
    /// The display geometry changed.
    Screen {
        w: u32,
        h: u32,
    },
    /// A free annotation (task start or end, a frame reference).
    Marker {
        label: String,
    },
}

/// A key event's payload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Key {
    /// The physical key as a W3C UI Events `KeyboardEvent.code` value ("KeyA", "ShiftLeft").
    pub code: String,
    /// The characters the key produced, if any.
    pub text: Option<String>,
    /// The key went to a password or other secure field: its text must never be stored.
    pub secure: bool,
}

/// A pointer button.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Button {
    Left,
    Right,
    Middle,
    Back,
    Forward,
    Other,
}

impl Button {
    /// Every button, in the order of their wire codes.
    pub const ALL: [Button; 6] =
        [Button::Left, Button::Right, Button::Middle, Button::Back, Button::Forward, Button::Other];

    /// The interchange name ("left", ...).
    pub fn name(self) -> &'static str {
        match self {
            Button::Left => "left",
            Button::Right => "right",
            Button::Middle => "middle",
            Button::Back => "back",
            Button::Forward => "forward",
            Button::Other => "other",
        }
    }

    /// The stable wire code used by the block format (docs/FORMAT.md).
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The button for a wire code, if it names one.
    pub fn from_code(code: u8) -> Option<Button> {
        Button::ALL.get(usize::from(code)).copied()
    }

    /// The button for an interchange name, if it names one.
    pub fn from_name(name: &str) -> Option<Button> {
        Button::ALL.into_iter().find(|b| b.name() == name)
    }
}

impl fmt::Display for Button {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Key {
    /// Whether the key typically produces a character (W3C UI Events "writing system keys",
    /// the space bar and the numpad's character keys), as opposed to a functional key (Enter,
    /// Tab, Backspace, modifiers, arrows, F-keys) whose identity is needed to replay edits.
    pub fn is_printable(&self) -> bool {
        let c = self.code.as_str();
        c.starts_with("Key")
            || c.starts_with("Digit")
            || c.starts_with("Intl")
            || (c.starts_with("Numpad") && !matches!(c, "NumpadEnter" | "NumpadBackspace" | "NumpadClear"))
            || matches!(
                c,
                "Backquote"
                    | "Backslash"
                    | "BracketLeft"
                    | "BracketRight"
                    | "Comma"
                    | "Equal"
                    | "Minus"
                    | "Period"
                    | "Quote"
                    | "Semicolon"
                    | "Slash"
                    | "Space"
            )
    }

    /// What may be stored of a key that went to a secure field: never its text, and for a
    /// printable key not even which key it was (`Unidentified`); only its timing survives.
    /// A key that is not secure is returned unchanged.
    pub fn redacted(&self) -> Key {
        if !self.secure {
            return self.clone();
        }
        let code = if self.is_printable() { "Unidentified".to_owned() } else { self.code.clone() };
        Key { code, text: None, secure: true }
    }
}

impl Event {
    /// The event as it may be stored (see [`Key::redacted`]); `None` when it is already fine.
    pub fn redacted(&self) -> Option<Event> {
        if !self.needs_redaction() {
            return None;
        }
        let kind = match &self.kind {
            EventKind::KeyDown(k) => EventKind::KeyDown(k.redacted()),
            EventKind::KeyUp(k) => EventKind::KeyUp(k.redacted()),
            _ => unreachable!("only key events need redaction"),
        };
        Some(Event { t_us: self.t_us, kind })
    }

    /// Whether [`Event::redacted`] would change the event (checked without allocating).
    pub fn needs_redaction(&self) -> bool {
        match &self.kind {
            EventKind::KeyDown(k) | EventKind::KeyUp(k) => k.secure && (k.text.is_some() || k.is_printable()),
            _ => false,
        }
    }
}

impl EventKind {
    /// The interchange name of the kind ("move", "key_down", ...).
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::Move { .. } => "move",
            EventKind::Down { .. } => "down",
            EventKind::Up { .. } => "up",
            EventKind::Wheel { .. } => "wheel",
            EventKind::KeyDown(_) => "key_down",
            EventKind::KeyUp(_) => "key_up",
            EventKind::Text { .. } => "text",
            EventKind::Focus { .. } => "focus",
            EventKind::Screen { .. } => "screen",
            EventKind::Marker { .. } => "marker",
        }
    }

    /// The pointer position this event carries, if it carries one.
    pub fn pointer(&self) -> Option<(i32, i32)> {
        match *self {
            EventKind::Move { x, y }
            | EventKind::Down { x, y, .. }
            | EventKind::Up { x, y, .. }
            | EventKind::Wheel { x, y, .. } => Some((x, y)),
            _ => None,
        }
    }
}

/// Every kind name, as the interchange formats spell them.
pub const KIND_NAMES: [&str; 10] =
    ["move", "down", "up", "wheel", "key_down", "key_up", "text", "focus", "screen", "marker"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secure_keys_keep_only_timing_and_functional_codes() {
        let key = |code: &str, text: Option<&str>, secure| Key {
            code: code.into(),
            text: text.map(Into::into),
            secure,
        };
        let typed = Event { t_us: 5, kind: EventKind::KeyDown(key("KeyH", Some("h"), true)) };
        assert_eq!(
            typed.redacted(),
            Some(Event { t_us: 5, kind: EventKind::KeyDown(key("Unidentified", None, true)) })
        );
        let enter = Event { t_us: 6, kind: EventKind::KeyUp(key("Enter", None, true)) };
        assert_eq!(enter.redacted(), None, "a functional key in a secure field keeps its code");
        let shift_text = Event { t_us: 7, kind: EventKind::KeyDown(key("ShiftLeft", Some("x"), true)) };
        assert_eq!(shift_text.redacted().unwrap().kind, EventKind::KeyDown(key("ShiftLeft", None, true)));
        let plain = Event { t_us: 8, kind: EventKind::KeyDown(key("KeyH", Some("h"), false)) };
        assert_eq!(plain.redacted(), None);
        for printable in ["KeyZ", "Digit0", "Numpad7", "NumpadAdd", "Space", "Quote", "IntlBackslash"] {
            assert!(key(printable, None, true).is_printable(), "{printable}");
        }
        for functional in
            ["Enter", "Tab", "Backspace", "ShiftLeft", "ArrowUp", "F5", "NumpadEnter", "Unidentified"]
        {
            assert!(!key(functional, None, true).is_printable(), "{functional}");
        }
    }

    #[test]
    fn button_codes_and_names_round_trip() {
        for b in Button::ALL {
            assert_eq!(Button::from_code(b.code()), Some(b));
            assert_eq!(Button::from_name(b.name()), Some(b));
        }
        assert_eq!(Button::from_code(6), None);
        assert_eq!(Button::from_name("Left"), None);
    }
}
