//! One session's batch of events: the body of the HTTP API's `POST /v1/sessions/{id}/events`, as a
//! JSON array or a MessagePack array of event records. Each element is an event record of the
//! interchange format (docs/FORMAT.md) whose `session` may be left out: the batch's session is the
//! URL's. A `session` that names another session, and a session record (`"type":"session"`), are
//! errors: a session is described once, by `POST /v1/sessions`.

use std::cell::RefCell;

use serde::Deserialize;
use serde::de::{DeserializeOwned, DeserializeSeed, Error as _, SeqAccess, Visitor};

use crate::event::Event;
use crate::limits::{BATCH_BYTES_MAX, BATCH_RECORDS_MAX};
use crate::msgpack::BatchError;
use crate::record::{RawRecord, Record, RecordError};

/// The two encodings of a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Json,
    Msgpack,
}

/// Decodes one session's batch, validating every event as the interchange format does. The error
/// names the element (0-based) and its field.
///
/// Events are checked as they are read, into the result directly; only a batch that fails is
/// read a second time, tracking paths, for the error to name the element and field.
pub fn decode_events(encoding: Encoding, bytes: &[u8], session: &str) -> Result<Vec<Event>, BatchError> {
    if bytes.len() > BATCH_BYTES_MAX {
        return Err(BatchError::Batch(format!(
            "expected at most {BATCH_BYTES_MAX} bytes, found {}",
            bytes.len()
        )));
    }
    if encoding == Encoding::Msgpack
        && let Some(events) = fast_msgpack(bytes, session)
    {
        return Ok(events);
    }
    full(encoding, bytes, session)
}

/// The full path alone (for the fuzz target that holds the fast path to it).
#[doc(hidden)]
pub fn decode_events_full(encoding: Encoding, bytes: &[u8], session: &str) -> Result<Vec<Event>, BatchError> {
    full(encoding, bytes, session)
}

/// The full path: serde over the interchange records, each checked as it is read.
fn full(encoding: Encoding, bytes: &[u8], session: &str) -> Result<Vec<Event>, BatchError> {
    let failure = RefCell::new(None);
    let seed = Events { session, failure: &failure };
    let fast: Result<Vec<Event>, String> = match encoding {
        Encoding::Json => {
            let mut de = serde_json::Deserializer::from_slice(bytes);
            match seed.deserialize(&mut de) {
                Ok(events) => {
                    de.end().map_err(|e| BatchError::Batch(format!("after the array of events: {e}")))?;
                    Ok(events)
                }
                Err(e) => Err(e.to_string()),
            }
        }
        Encoding::Msgpack => {
            // Reading from the slice itself: strings and keys are borrowed, not copied out.
            let mut de = rmp_serde::Deserializer::from_read_ref(bytes);
            match seed.deserialize(&mut de) {
                Ok(events) => match serde::de::IgnoredAny::deserialize(&mut de) {
                    Err(rmp_serde::decode::Error::InvalidMarkerRead(e))
                        if e.kind() == std::io::ErrorKind::UnexpectedEof =>
                    {
                        Ok(events)
                    }
                    _ => return Err(BatchError::Batch("trailing bytes after the array of events".into())),
                },
                Err(e) => Err(e.to_string()),
            }
        }
    };
    match fast {
        Ok(events) => Ok(events),
        Err(message) => Err(failure.into_inner().unwrap_or_else(|| explain(encoding, bytes, message))),
    }
}

/// The common case, read straight from the MessagePack (keys and strings borrowed, no record per
/// event): `Some` only for a batch that is valid in every respect the full path checks, with the
/// same events; anything unusual (nil values, repeated or unknown keys, a bad event) is `None`,
/// and the full path reads the batch and names what is wrong.
fn fast_msgpack(bytes: &[u8], session: &str) -> Option<Vec<Event>> {
    use crate::event::{Button, EventKind as K, Key};
    use crate::limits::STRING_BYTES_MAX;
    use rmp::decode::{read_array_len, read_bool, read_int, read_map_len, read_str_from_slice};

    fn string<'a>(rd: &mut &'a [u8]) -> Option<&'a str> {
        let (s, rest) = read_str_from_slice(*rd).ok()?;
        *rd = rest;
        (s.len() <= STRING_BYTES_MAX).then_some(s)
    }
    let mut rd = bytes;
    let n = read_array_len(&mut rd).ok()? as usize;
    if n > BATCH_RECORDS_MAX {
        return None;
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let fields = read_map_len(&mut rd).ok()?;
        let (mut t, mut kind, mut button, mut code, mut text, mut secure) =
            (None, None, None, None, None, None);
        let (mut x, mut y, mut dx, mut dy, mut w, mut h) = (None, None, None, None, None, None);
        let (mut app, mut title, mut label, mut named) = (None, None, None, false);
        // Each key once; a nil value (`None` to serde) is left to the full path.
        fn set<T>(slot: &mut Option<T>, value: Option<T>) -> Option<()> {
            if slot.is_some() {
                return None;
            }
            *slot = Some(value?);
            Some(())
        }
        for _ in 0..fields {
            if rd.first() == Some(&0xc0) {
                return None;
            }
            let key = string(&mut rd)?;
            if rd.first() == Some(&0xc0) {
                return None;
            }
            match key {
                "t" => set(&mut t, read_int::<u64, _>(&mut rd).ok())?,
                "kind" => set(&mut kind, string(&mut rd))?,
                "x" => set(&mut x, read_int::<i32, _>(&mut rd).ok())?,
                "y" => set(&mut y, read_int::<i32, _>(&mut rd).ok())?,
                "dx" => set(&mut dx, read_int::<i32, _>(&mut rd).ok())?,
                "dy" => set(&mut dy, read_int::<i32, _>(&mut rd).ok())?,
                "w" => set(&mut w, read_int::<u32, _>(&mut rd).ok())?,
                "h" => set(&mut h, read_int::<u32, _>(&mut rd).ok())?,
                "button" => set(&mut button, string(&mut rd).and_then(Button::from_name))?,
                "code" => set(&mut code, string(&mut rd))?,
                "text" => set(&mut text, string(&mut rd))?,
                "app" => set(&mut app, string(&mut rd))?,
                "title" => set(&mut title, string(&mut rd))?,
                "label" => set(&mut label, string(&mut rd))?,
                "secure" => set(&mut secure, read_bool(&mut rd).ok())?,
                "session" => {
                    if named || string(&mut rd)? != session {
                        return None;
                    }
                    named = true;
                }
                _ => return None,
            }
        }
        let t_us = t?;
        // Exactly the fields of the kind: anything else is the full path's error to name.
        let only = |allowed: &[bool]| {
            let given = [
                button.is_some(),
                dx.is_some(),
                dy.is_some(),
                x.is_some(),
                y.is_some(),
                code.is_some(),
                text.is_some(),
                secure.is_some(),
                app.is_some(),
                title.is_some(),
                w.is_some(),
                h.is_some(),
                label.is_some(),
            ];
            given.iter().zip(allowed).all(|(g, a)| !g || *a)
        };
        //                     button dx     dy     x      y      code   text   secure app    title  w      h      label
        const POINTER: [bool; 13] =
            [false, false, false, true, true, false, false, false, false, false, false, false, false];
        const BUTTON: [bool; 13] =
            [true, false, false, true, true, false, false, false, false, false, false, false, false];
        const WHEEL: [bool; 13] =
            [false, true, true, true, true, false, false, false, false, false, false, false, false];
        const KEY: [bool; 13] =
            [false, false, false, false, false, true, true, true, false, false, false, false, false];
        const TEXT: [bool; 13] =
            [false, false, false, false, false, false, true, false, false, false, false, false, false];
        const FOCUS: [bool; 13] =
            [false, false, false, false, false, false, false, false, true, true, false, false, false];
        const SCREEN: [bool; 13] =
            [false, false, false, false, false, false, false, false, false, false, true, true, false];
        const MARKER: [bool; 13] =
            [false, false, false, false, false, false, false, false, false, false, false, false, true];
        let kind = match kind? {
            "move" if only(&POINTER) => K::Move { x: x?, y: y? },
            "down" if only(&BUTTON) => K::Down { button: button?, x: x?, y: y? },
            "up" if only(&BUTTON) => K::Up { button: button?, x: x?, y: y? },
            "wheel" if only(&WHEEL) => K::Wheel { dx: dx?, dy: dy?, x: x?, y: y? },
            k @ ("key_down" | "key_up") if only(&KEY) => {
                let code = code.filter(|c| !c.is_empty())?.to_owned();
                let key = Key { code, text: text.map(str::to_owned), secure: secure.unwrap_or(false) };
                if k == "key_down" { K::KeyDown(key) } else { K::KeyUp(key) }
            }
            "text" if only(&TEXT) => K::Text { text: text?.to_owned() },
            "focus" if only(&FOCUS) => K::Focus { app: app?.to_owned(), title: title.map(str::to_owned) },
            "screen" if only(&SCREEN) => K::Screen { w: w?, h: h? },
            "marker" if only(&MARKER) => K::Marker { label: label?.to_owned() },
            _ => return None,
        };
        out.push(Event { t_us, kind });
    }
    rd.is_empty().then_some(out)
}

/// The events of a batch, checked as they are read; the first bad one is left in `failure`.
struct Events<'a> {
    session: &'a str,
    failure: &'a RefCell<Option<BatchError>>,
}

impl<'de> DeserializeSeed<'de> for Events<'_> {
    type Value = Vec<Event>;

    fn deserialize<D: serde::Deserializer<'de>>(self, de: D) -> Result<Vec<Event>, D::Error> {
        de.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Events<'_> {
    type Value = Vec<Event>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an array of events")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Event>, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(BATCH_RECORDS_MAX));
        while let Some(raw) = seq.next_element::<RawRecord>()? {
            let index = out.len();
            if index == BATCH_RECORDS_MAX {
                *self.failure.borrow_mut() = Some(BatchError::Batch(format!(
                    "expected at most {BATCH_RECORDS_MAX} events, found more"
                )));
                return Err(A::Error::custom("too many events"));
            }
            match event_of(raw, self.session) {
                Ok(event) => out.push(event),
                Err(error) => {
                    *self.failure.borrow_mut() = Some(BatchError::Record { index, error });
                    return Err(A::Error::custom("an invalid event"));
                }
            }
        }
        Ok(out)
    }
}

/// One element of a batch as an event of `session`.
fn event_of(raw: RawRecord, session: &str) -> Result<Event, RecordError> {
    if raw.record_type.is_some() {
        return Err(RecordError::field(
            "type",
            "a batch holds events only: a session is described once, by POST /v1/sessions",
        ));
    }
    if let Some(other) = raw.session.as_deref()
        && other != session
    {
        return Err(RecordError::field(
            "session",
            format!("expected {session:?} (the session in the URL) or no `session`, found {other:?}"),
        ));
    }
    raw.check_strings()?;
    raw.into_event()
}

/// Why a batch that failed to read failed, with the element and field: read again, tracking paths.
fn explain(encoding: Encoding, bytes: &[u8], message: String) -> BatchError {
    let tracked = match encoding {
        Encoding::Json => deserialize(&mut serde_json::Deserializer::from_slice(bytes)),
        Encoding::Msgpack => deserialize(&mut rmp_serde::Deserializer::new(std::io::Cursor::new(bytes))),
    };
    match tracked {
        Err(e) => e,
        Ok(_) => BatchError::Batch(format!("expected an array of events: {message}")),
    }
}

/// Encodes a session's events as a MessagePack batch (without `session` in each element): the
/// maps rmp-serde writes for the records, written directly (no intermediate record per event),
/// as a recorder does it at thousands of events a second.
pub fn encode_events_msgpack(events: &[Event]) -> Vec<u8> {
    use crate::event::EventKind as K;
    use rmp::encode::{write_array_len, write_bool, write_map_len, write_sint, write_str, write_uint};
    let mut out = Vec::with_capacity(events.len() * 24 + 8);
    // Writing to a Vec cannot fail.
    let _ = write_array_len(&mut out, events.len() as u32);
    for e in events {
        let o = &mut out;
        let str_field = |o: &mut Vec<u8>, name: &str, value: &str| {
            let _ = write_str(o, name);
            let _ = write_str(o, value);
        };
        let int_field = |o: &mut Vec<u8>, name: &str, value: i64| {
            let _ = write_str(o, name);
            let _ = write_sint(o, value);
        };
        let fields = 2 + match &e.kind {
            K::Move { .. } => 2,
            K::Down { .. } | K::Up { .. } => 3,
            K::Wheel { .. } => 4,
            K::KeyDown(k) | K::KeyUp(k) => 1 + k.text.is_some() as u32 + k.secure as u32,
            K::Text { .. } | K::Marker { .. } => 1,
            K::Focus { title, .. } => 1 + title.is_some() as u32,
            K::Screen { .. } => 2,
        };
        let _ = write_map_len(o, fields);
        let _ = write_str(o, "t");
        let _ = write_uint(o, e.t_us);
        str_field(o, "kind", e.kind.name());
        match &e.kind {
            &K::Move { x, y } => {
                int_field(o, "x", x.into());
                int_field(o, "y", y.into());
            }
            &K::Down { button, x, y } | &K::Up { button, x, y } => {
                str_field(o, "button", button.name());
                int_field(o, "x", x.into());
                int_field(o, "y", y.into());
            }
            &K::Wheel { dx, dy, x, y } => {
                int_field(o, "dx", dx.into());
                int_field(o, "dy", dy.into());
                int_field(o, "x", x.into());
                int_field(o, "y", y.into());
            }
            K::KeyDown(k) | K::KeyUp(k) => {
                str_field(o, "code", &k.code);
                if let Some(text) = &k.text {
                    str_field(o, "text", text);
                }
                if k.secure {
                    let _ = write_str(o, "secure");
                    let _ = write_bool(o, true);
                }
            }
            K::Text { text } => str_field(o, "text", text),
            K::Focus { app, title } => {
                str_field(o, "app", app);
                if let Some(title) = title {
                    str_field(o, "title", title);
                }
            }
            &K::Screen { w, h } => {
                int_field(o, "w", w.into());
                int_field(o, "h", h.into());
            }
            K::Marker { label } => str_field(o, "label", label),
        }
    }
    out
}

/// Encodes a session's events as a JSON array (without `session` in each element).
pub fn encode_events_json(events: &[Event]) -> Vec<u8> {
    let raw: Vec<RawRecord> = events.iter().map(raw_event).collect();
    serde_json::to_vec(&raw).expect("events always serialise to JSON")
}

fn raw_event(event: &Event) -> RawRecord {
    let mut raw = RawRecord::from(&Record::Event { session: String::new(), event: event.clone() });
    raw.session = None;
    raw
}

/// Deserialises the array, naming the element and field of a failure.
fn deserialize<'de, D>(de: D) -> Result<Vec<RawRecord>, BatchError>
where
    D: serde::Deserializer<'de>,
    D::Error: std::fmt::Display,
    Vec<RawRecord>: DeserializeOwned,
{
    serde_path_to_error::deserialize(de).map_err(|e| {
        let mut segments = e.path().iter();
        match segments.next() {
            Some(serde_path_to_error::Segment::Seq { index }) => {
                let rest: Vec<String> = segments
                    .filter(|s| !matches!(s, serde_path_to_error::Segment::Unknown))
                    .map(|s| s.to_string())
                    .collect();
                let field = (!rest.is_empty()).then(|| rest.join(".").replace(".[", "["));
                BatchError::Record {
                    index: *index,
                    error: RecordError { field, reason: e.inner().to_string() },
                }
            }
            _ => BatchError::Batch(format!("expected an array of events: {}", e.inner())),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventKind;

    fn events() -> Vec<Event> {
        vec![
            Event { t_us: 1, kind: EventKind::Move { x: 1, y: 2 } },
            Event { t_us: 9, kind: EventKind::Text { text: "héllo".into() } },
        ]
    }

    #[test]
    fn the_direct_encoder_writes_what_rmp_serde_writes() {
        use crate::event::{Button, Key};
        let all = vec![
            Event { t_us: 0, kind: EventKind::Move { x: -5, y: 70_000 } },
            Event { t_us: 1, kind: EventKind::Down { button: Button::Right, x: 1, y: 2 } },
            Event { t_us: 2, kind: EventKind::Up { button: Button::Other, x: 1, y: 2 } },
            Event { t_us: 3, kind: EventKind::Wheel { dx: 0, dy: -120, x: 1, y: 2 } },
            Event {
                t_us: 4,
                kind: EventKind::KeyDown(Key { code: "KeyA".into(), text: Some("a".into()), secure: false }),
            },
            Event { t_us: 5, kind: EventKind::KeyUp(Key { code: "KeyA".into(), text: None, secure: true }) },
            Event { t_us: 6, kind: EventKind::Focus { app: "firefox".into(), title: Some("Inbox".into()) } },
            Event { t_us: 7, kind: EventKind::Focus { app: "xterm".into(), title: None } },
            Event { t_us: 8, kind: EventKind::Screen { w: 1920, h: 1080 } },
            Event { t_us: u64::MAX >> 11, kind: EventKind::Marker { label: "task".into() } },
        ];
        let raw: Vec<RawRecord> = all.iter().map(raw_event).collect();
        assert_eq!(encode_events_msgpack(&all), rmp_serde::to_vec_named(&raw).unwrap());
        assert_eq!(decode_events(Encoding::Msgpack, &encode_events_msgpack(&all), "s").unwrap(), all);
    }

    proptest::proptest! {
        /// The fast path accepts only what the full path accepts, with the same events: on valid
        /// batches and on any byte changed in them.
        #[test]
        fn the_fast_path_agrees_with_the_full_path(
            xs in proptest::collection::vec((0u64..1 << 40, -5000i32..5000, 0u8..6, 0usize..4), 1..20),
            flip in proptest::option::of((0usize..4096, 0u8..=255)),
        ) {
            use crate::event::{Button, Key};
            let events: Vec<Event> = xs.iter().map(|&(t, v, k, s)| Event { t_us: t, kind: match k {
                0 => EventKind::Move { x: v, y: -v },
                1 => EventKind::Down { button: Button::from_code(s as u8).unwrap_or(Button::Left), x: v, y: v },
                2 => EventKind::Wheel { dx: v, dy: 0, x: 1, y: 2 },
                3 => EventKind::KeyDown(Key { code: "KeyQ".into(), text: (s > 1).then(|| "q".into()), secure: s == 3 }),
                4 => EventKind::Focus { app: "a".repeat(s + 1), title: (s > 2).then(|| "t".into()) },
                _ => EventKind::Screen { w: v.unsigned_abs(), h: 3 },
            }}).collect();
            let mut bytes = encode_events_msgpack(&events);
            if let Some((at, value)) = flip {
                let at = at % bytes.len();
                bytes[at] = value;
            }
            let slow = full(Encoding::Msgpack, &bytes, "s");
            if let Some(fast) = fast_msgpack(&bytes, "s") {
                proptest::prop_assert_eq!(Some(fast), slow.ok());
            } else if flip.is_none() {
                proptest::prop_assert!(false, "the fast path refused a valid batch");
            }
        }
    }

    #[test]
    fn both_encodings_round_trip() {
        let e = events();
        assert_eq!(decode_events(Encoding::Msgpack, &encode_events_msgpack(&e), "s").unwrap(), e);
        assert_eq!(decode_events(Encoding::Json, &encode_events_json(&e), "s").unwrap(), e);
    }

    #[test]
    fn an_element_names_its_session_or_none() {
        let body = br#"[{"t":1,"kind":"move","x":1,"y":2},{"session":"s","t":2,"kind":"move","x":1,"y":2}]"#;
        assert_eq!(decode_events(Encoding::Json, body, "s").unwrap().len(), 2);
        let e = decode_events(Encoding::Json, body, "other").unwrap_err();
        assert!(
            matches!(&e, BatchError::Record { index: 0, .. }) || e.to_string().contains("session"),
            "{e}"
        );
        let e = decode_events(Encoding::Json, br#"[{"session":"x","t":2,"kind":"move","x":1,"y":2}]"#, "s")
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "record 0: field `session`: expected \"s\" (the session in the URL) or no `session`, found \"x\""
        );
    }

    #[test]
    fn errors_name_the_element_and_field() {
        let e = decode_events(
            Encoding::Json,
            br#"[{"t":1,"kind":"move","x":1,"y":2},{"t":1,"kind":"move","x":"a","y":2}]"#,
            "s",
        )
        .unwrap_err();
        let BatchError::Record { index, error } = &e else { panic!("{e}") };
        assert_eq!((*index, error.field.as_deref()), (1, Some("x")));
        let e =
            decode_events(Encoding::Json, br#"[{"t":1,"kind":"move","x":1,"y":2,"z":3}]"#, "s").unwrap_err();
        assert!(e.to_string().contains("`z`") || e.to_string().contains("z"), "{e}");
        let e = decode_events(Encoding::Json, br#"[{"type":"session","session":"s","user":"u"}]"#, "s")
            .unwrap_err();
        assert!(e.to_string().contains("POST /v1/sessions"), "{e}");
        assert!(matches!(decode_events(Encoding::Json, b"{", "s"), Err(BatchError::Batch(_))));
        assert!(matches!(decode_events(Encoding::Json, b"[] x", "s"), Err(BatchError::Batch(_))));
        assert!(matches!(decode_events(Encoding::Msgpack, b"\xc1", "s"), Err(BatchError::Batch(_))));
        let mut trailing = encode_events_msgpack(&events());
        trailing.push(0);
        let e = decode_events(Encoding::Msgpack, &trailing, "s").unwrap_err();
        assert!(e.to_string().contains("trailing"), "{e}");
        let mut cut = encode_events_msgpack(&events());
        cut.pop();
        assert!(decode_events(Encoding::Msgpack, &cut, "s").is_err());
    }
}
