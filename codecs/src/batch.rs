//! One session's batch of events: the body of the HTTP API's `POST /v1/sessions/{id}/events`, as a
//! JSON array or a MessagePack array of event records. Each element is an event record of the
//! interchange format (docs/FORMAT.md) whose `session` may be left out: the batch's session is the
//! URL's. A `session` that names another session, and a session record (`"type":"session"`), are
//! errors: a session is described once, by `POST /v1/sessions`.

use serde::de::DeserializeOwned;

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
pub fn decode_events(encoding: Encoding, bytes: &[u8], session: &str) -> Result<Vec<Event>, BatchError> {
    if bytes.len() > BATCH_BYTES_MAX {
        return Err(BatchError::Batch(format!(
            "expected at most {BATCH_BYTES_MAX} bytes, found {}",
            bytes.len()
        )));
    }
    let raw: Vec<RawRecord> = match encoding {
        Encoding::Json => {
            let mut de = serde_json::Deserializer::from_slice(bytes);
            let raw = deserialize(&mut de)?;
            de.end().map_err(|e| BatchError::Batch(format!("after the array of events: {e}")))?;
            raw
        }
        Encoding::Msgpack => {
            let mut de = rmp_serde::Deserializer::new(std::io::Cursor::new(bytes));
            let raw = deserialize(&mut de)?;
            let consumed = de.position() as usize;
            if consumed != bytes.len() {
                return Err(BatchError::Batch(format!(
                    "{} trailing bytes after the array of events",
                    bytes.len() - consumed
                )));
            }
            raw
        }
    };
    if raw.len() > BATCH_RECORDS_MAX {
        return Err(BatchError::Batch(format!(
            "expected at most {BATCH_RECORDS_MAX} events, found {}",
            raw.len()
        )));
    }
    raw.into_iter()
        .enumerate()
        .map(|(index, mut r)| {
            let error = |error| BatchError::Record { index, error };
            if r.record_type.is_some() {
                return Err(error(RecordError::field(
                    "type",
                    "a batch holds events only: a session is described once, by POST /v1/sessions",
                )));
            }
            match &r.session {
                None => r.session = Some(session.to_owned()),
                Some(s) if s == session => {}
                Some(other) => {
                    return Err(error(RecordError::field(
                        "session",
                        format!(
                            "expected {session:?} (the session in the URL) or no `session`, found {other:?}"
                        ),
                    )));
                }
            }
            match r.validate().map_err(error)? {
                Record::Event { event, .. } => Ok(event),
                Record::Session(_) => unreachable!("a record without `type` is an event"),
            }
        })
        .collect()
}

/// Encodes a session's events as a MessagePack batch (without `session` in each element).
pub fn encode_events_msgpack(events: &[Event]) -> Vec<u8> {
    let raw: Vec<RawRecord> = events.iter().map(raw_event).collect();
    rmp_serde::to_vec_named(&raw).expect("events always serialise to MessagePack")
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
    }
}
