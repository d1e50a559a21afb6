//! Records of the interchange formats: a session description or one event of a named session.
//!
//! JSONL and MessagePack share the field names and the validation here, so a record means the same
//! thing in both and is rejected for the same reasons, with the field named.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::event::{Button, Event, EventKind, KIND_NAMES, Key, Screen, SessionMeta};
use crate::limits::STRING_BYTES_MAX;

/// One record of the interchange formats.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// Opens or describes a session.
    Session(SessionMeta),
    /// One event of the session it names.
    Event { session: String, event: Event },
}

/// Why one record was rejected: the field (when one is to blame) and what was wrong with it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct RecordError {
    /// The field's path, such as `x` or `screen.w`; `None` when the record as a whole is wrong.
    pub field: Option<String>,
    /// What was expected and what was found.
    pub reason: String,
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.field {
            Some(field) => write!(f, "field `{field}`: {}", self.reason),
            None => f.write_str(&self.reason),
        }
    }
}

impl RecordError {
    pub(crate) fn field(field: &str, reason: impl Into<String>) -> RecordError {
        RecordError { field: Some(field.to_owned()), reason: reason.into() }
    }

    pub(crate) fn record(reason: impl Into<String>) -> RecordError {
        RecordError { field: None, reason: reason.into() }
    }

    /// Turns a serde error with its path into a record error naming the field.
    pub(crate) fn from_path<E: fmt::Display>(path: &serde_path_to_error::Path, error: E) -> Self {
        let path = path.to_string();
        let field = (!path.is_empty() && path != ".").then_some(path);
        RecordError { field, reason: error.to_string() }
    }
}

/// Every field a record may carry, with the interchange names. Deserialised first, then checked
/// against the record's type and kind by [`RawRecord::validate`].
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRecord {
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub record_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub screen: Option<Screen>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub t: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub button: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dx: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dy: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secure: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub w: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub h: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

/// Which fields each kind of event takes. `session`, `t` and `kind` belong to every event.
fn kind_fields(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "move" => &["x", "y"],
        "down" | "up" => &["button", "x", "y"],
        "wheel" => &["dx", "dy", "x", "y"],
        "key_down" | "key_up" => &["code", "text", "secure"],
        "text" => &["text"],
        "focus" => &["app", "title"],
        "screen" => &["w", "h"],
        "marker" => &["label"],
        _ => return None,
    })
}

const SESSION_FIELDS: &[&str] =
    &["type", "session", "user", "device", "screen", "started_at", "layout", "labels"];

impl RawRecord {
    /// The names of the fields present, in the interchange order.
    fn present(&self) -> impl Iterator<Item = &'static str> + '_ {
        [
            ("type", self.record_type.is_some()),
            ("session", self.session.is_some()),
            ("user", self.user.is_some()),
            ("device", self.device.is_some()),
            ("screen", self.screen.is_some()),
            ("started_at", self.started_at.is_some()),
            ("layout", self.layout.is_some()),
            ("labels", self.labels.is_some()),
            ("t", self.t.is_some()),
            ("kind", self.kind.is_some()),
            ("button", self.button.is_some()),
            ("dx", self.dx.is_some()),
            ("dy", self.dy.is_some()),
            ("x", self.x.is_some()),
            ("y", self.y.is_some()),
            ("code", self.code.is_some()),
            ("text", self.text.is_some()),
            ("secure", self.secure.is_some()),
            ("app", self.app.is_some()),
            ("title", self.title.is_some()),
            ("w", self.w.is_some()),
            ("h", self.h.is_some()),
            ("label", self.label.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, present)| present.then_some(name))
    }

    /// Checks the record against its type and kind and builds the typed record.
    pub(crate) fn validate(self) -> Result<Record, RecordError> {
        self.check_strings()?;
        match self.record_type.as_deref() {
            Some("session") => self.validate_session(),
            Some(other) => Err(RecordError::field(
                "type",
                format!("expected \"session\" or no `type` for an event, found {other:?}"),
            )),
            None => self.validate_event(),
        }
    }

    /// Every string within [`STRING_BYTES_MAX`].
    pub(crate) fn check_strings(&self) -> Result<(), RecordError> {
        for (name, value) in self.strings() {
            if value.len() > STRING_BYTES_MAX {
                return Err(RecordError::field(
                    name,
                    format!("expected at most {STRING_BYTES_MAX} bytes, found {}", value.len()),
                ));
            }
        }
        Ok(())
    }

    fn strings(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [
            ("session", &self.session),
            ("user", &self.user),
            ("device", &self.device),
            ("started_at", &self.started_at),
            ("layout", &self.layout),
            ("code", &self.code),
            ("text", &self.text),
            ("app", &self.app),
            ("title", &self.title),
            ("label", &self.label),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.as_deref().map(|v| (name, v)))
    }

    fn validate_session(self) -> Result<Record, RecordError> {
        if let Some(extra) = self.present().find(|f| !SESSION_FIELDS.contains(f)) {
            return Err(RecordError::field(
                extra,
                "does not belong to a session record (its fields: session, user, device, screen, started_at, layout, labels)",
            ));
        }
        let session = required_id("session", self.session)?;
        let user = required_id("user", self.user)?;
        Ok(Record::Session(SessionMeta {
            session,
            user,
            device: self.device,
            screen: self.screen,
            started_at: self.started_at,
            layout: self.layout,
            labels: self.labels.unwrap_or_default(),
        }))
    }

    fn validate_event(mut self) -> Result<Record, RecordError> {
        let session = required_id("session", self.session.take())?;
        Ok(Record::Event { session, event: self.into_event()? })
    }

    /// The event this record describes, its `session` aside (checked by the caller).
    pub(crate) fn into_event(self) -> Result<Event, RecordError> {
        let t_us = self.t.ok_or_else(|| missing("t", "a time in microseconds (u64)"))?;
        let kind_name = self
            .kind
            .as_deref()
            .ok_or_else(|| missing("kind", &format!("one of {}", KIND_NAMES.join(", "))))?;
        let fields = kind_fields(kind_name).ok_or_else(|| {
            RecordError::field(
                "kind",
                format!("expected one of {}, found {kind_name:?}", KIND_NAMES.join(", ")),
            )
        })?;
        if let Some(extra) =
            self.present().find(|f| !matches!(*f, "session" | "t" | "kind") && !fields.contains(f))
        {
            return Err(RecordError::field(
                extra,
                format!("does not belong to a `{kind_name}` event (its fields: {})", fields.join(", ")),
            ));
        }
        let need_i32 = |name: &str, v: Option<i32>| v.ok_or_else(|| missing(name, "an integer (i32)"));
        let need_u32 = |name: &str, v: Option<u32>| v.ok_or_else(|| missing(name, "an integer (u32)"));
        let kind = match kind_name {
            "move" => EventKind::Move { x: need_i32("x", self.x)?, y: need_i32("y", self.y)? },
            "down" | "up" => {
                let button = parse_button(self.button.as_deref())?;
                let (x, y) = (need_i32("x", self.x)?, need_i32("y", self.y)?);
                if kind_name == "down" {
                    EventKind::Down { button, x, y }
                } else {
                    EventKind::Up { button, x, y }
                }
            }
            "wheel" => EventKind::Wheel {
                dx: need_i32("dx", self.dx)?,
                dy: need_i32("dy", self.dy)?,
                x: need_i32("x", self.x)?,
                y: need_i32("y", self.y)?,
            },
            "key_down" | "key_up" => {
                let code =
                    self.code.ok_or_else(|| missing("code", "a W3C KeyboardEvent.code such as \"KeyA\""))?;
                if code.is_empty() {
                    return Err(RecordError::field(
                        "code",
                        "expected a W3C KeyboardEvent.code such as \"KeyA\", found an empty string",
                    ));
                }
                let key = Key { code, text: self.text, secure: self.secure.unwrap_or(false) };
                if kind_name == "key_down" { EventKind::KeyDown(key) } else { EventKind::KeyUp(key) }
            }
            "text" => EventKind::Text { text: self.text.ok_or_else(|| missing("text", "a string"))? },
            "focus" => EventKind::Focus {
                app: self.app.ok_or_else(|| missing("app", "a string"))?,
                title: self.title,
            },
            "screen" => EventKind::Screen { w: need_u32("w", self.w)?, h: need_u32("h", self.h)? },
            "marker" => EventKind::Marker { label: self.label.ok_or_else(|| missing("label", "a string"))? },
            _ => unreachable!("kind_fields accepted {kind_name:?}"),
        };
        Ok(Event { t_us, kind })
    }
}

fn missing(field: &str, expected: &str) -> RecordError {
    RecordError::field(field, format!("missing: expected {expected}"))
}

fn required_id(field: &str, value: Option<String>) -> Result<String, RecordError> {
    match value {
        None => Err(missing(field, "a non-empty string")),
        Some(v) if v.is_empty() => Err(RecordError::field(field, "expected a non-empty string, found \"\"")),
        Some(v) => Ok(v),
    }
}

fn parse_button(name: Option<&str>) -> Result<Button, RecordError> {
    const EXPECTED: &str = "one of left, right, middle, back, forward, other";
    let name = name.ok_or_else(|| missing("button", EXPECTED))?;
    Button::from_name(name)
        .ok_or_else(|| RecordError::field("button", format!("expected {EXPECTED}, found {name:?}")))
}

impl From<&Record> for RawRecord {
    fn from(record: &Record) -> RawRecord {
        match record {
            Record::Session(meta) => RawRecord {
                record_type: Some("session".to_owned()),
                session: Some(meta.session.clone()),
                user: Some(meta.user.clone()),
                device: meta.device.clone(),
                screen: meta.screen,
                started_at: meta.started_at.clone(),
                layout: meta.layout.clone(),
                labels: (!meta.labels.is_empty()).then(|| meta.labels.clone()),
                ..RawRecord::default()
            },
            Record::Event { session, event } => {
                let mut raw = RawRecord {
                    session: Some(session.clone()),
                    t: Some(event.t_us),
                    kind: Some(event.kind.name().to_owned()),
                    ..RawRecord::default()
                };
                match &event.kind {
                    &EventKind::Move { x, y } => (raw.x, raw.y) = (Some(x), Some(y)),
                    &EventKind::Down { button, x, y } | &EventKind::Up { button, x, y } => {
                        raw.button = Some(button.name().to_owned());
                        (raw.x, raw.y) = (Some(x), Some(y));
                    }
                    &EventKind::Wheel { dx, dy, x, y } => {
                        (raw.dx, raw.dy, raw.x, raw.y) = (Some(dx), Some(dy), Some(x), Some(y));
                    }
                    EventKind::KeyDown(key) | EventKind::KeyUp(key) => {
                        raw.code = Some(key.code.clone());
                        raw.text = key.text.clone();
                        raw.secure = key.secure.then_some(true);
                    }
                    EventKind::Text { text } => raw.text = Some(text.clone()),
                    EventKind::Focus { app, title } => {
                        raw.app = Some(app.clone());
                        raw.title = title.clone();
                    }
                    &EventKind::Screen { w, h } => (raw.w, raw.h) = (Some(w), Some(h)),
                    EventKind::Marker { label } => raw.label = Some(label.clone()),
                }
                raw
            }
        }
    }
}
