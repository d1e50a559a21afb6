//! MessagePack batches, the binary batch format of the HTTP API: an array of records, each a map
//! with the interchange field names (the same records as JSONL, encoded with rmp-serde).

use serde::Deserialize;

use crate::limits::{BATCH_BYTES_MAX, BATCH_RECORDS_MAX};
use crate::record::{RawRecord, Record, RecordError};

/// A batch that could not be read. A batch is all or nothing: one bad record rejects it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BatchError {
    /// Record `index` (0-based) is not a valid record.
    #[error("record {index}: {error}")]
    Record { index: usize, error: RecordError },
    /// The batch as a whole is malformed or over a limit.
    #[error("batch: {0}")]
    Batch(String),
}

/// Encodes records as one MessagePack batch.
pub fn encode_batch(records: &[Record]) -> Vec<u8> {
    let raw: Vec<RawRecord> = records.iter().map(RawRecord::from).collect();
    rmp_serde::to_vec_named(&raw).expect("records always serialise to MessagePack")
}

/// Decodes one MessagePack batch, validating every record.
pub fn decode_batch(bytes: &[u8]) -> Result<Vec<Record>, BatchError> {
    if bytes.len() > BATCH_BYTES_MAX {
        return Err(BatchError::Batch(format!(
            "expected at most {BATCH_BYTES_MAX} bytes, found {}",
            bytes.len()
        )));
    }
    let mut de = rmp_serde::Deserializer::new(std::io::Cursor::new(bytes));
    let raw: Vec<RawRecord> = match serde_path_to_error::deserialize(&mut de) {
        Ok(raw) => raw,
        Err(e) => {
            let mut segments = e.path().iter();
            return Err(match segments.next() {
                Some(serde_path_to_error::Segment::Seq { index }) => {
                    let rest: Vec<String> = segments.map(|s| s.to_string()).collect();
                    let field = (!rest.is_empty()).then(|| rest.join(".").replace(".[", "["));
                    BatchError::Record {
                        index: *index,
                        error: RecordError { field, reason: e.inner().to_string() },
                    }
                }
                _ => BatchError::Batch(format!("expected an array of records: {}", e.inner())),
            });
        }
    };
    let consumed = de.position() as usize;
    if consumed != bytes.len() {
        return Err(BatchError::Batch(format!(
            "{} trailing bytes after the array of records",
            bytes.len() - consumed
        )));
    }
    if raw.len() > BATCH_RECORDS_MAX {
        return Err(BatchError::Batch(format!(
            "expected at most {BATCH_RECORDS_MAX} records, found {}",
            raw.len()
        )));
    }
    raw.into_iter()
        .enumerate()
        .map(|(index, r)| r.validate().map_err(|error| BatchError::Record { index, error }))
        .collect()
}

/// Reads one record map on its own (for streams that frame records individually).
pub fn decode_record(bytes: &[u8]) -> Result<Record, RecordError> {
    let mut de = rmp_serde::Deserializer::from_read_ref(bytes);
    let raw = RawRecord::deserialize(&mut de).map_err(|e| RecordError::record(e.to_string()))?;
    raw.validate()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, EventKind};
    use crate::jsonl::parse_line;

    #[test]
    fn batch_round_trips() {
        let records = vec![
            parse_line(r#"{"type":"session","session":"s","user":"u","screen":{"w":10,"h":20}}"#).unwrap(),
            Record::Event {
                session: "s".into(),
                event: Event { t_us: 5, kind: EventKind::Move { x: -3, y: 4 } },
            },
        ];
        assert_eq!(decode_batch(&encode_batch(&records)).unwrap(), records);
    }

    #[test]
    fn bad_record_is_named_by_index_and_field() {
        #[derive(serde::Serialize)]
        struct Bad<'a> {
            session: &'a str,
            t: u64,
            kind: &'a str,
            x: &'a str,
            y: i32,
        }
        let good = Record::Event {
            session: "s".into(),
            event: Event { t_us: 1, kind: EventKind::Move { x: 1, y: 1 } },
        };
        let mut bytes = Vec::new();
        rmp::encode::write_array_len(&mut bytes, 2).unwrap();
        bytes.extend(rmp_serde::to_vec_named(&RawRecord::from(&good)).unwrap());
        bytes.extend(
            rmp_serde::to_vec_named(&Bad { session: "s", t: 2, kind: "move", x: "no", y: 1 }).unwrap(),
        );
        let e = decode_batch(&bytes).unwrap_err();
        let BatchError::Record { index, error } = &e else { panic!("{e}") };
        assert_eq!(*index, 1);
        assert_eq!(error.field.as_deref(), Some("x"));
    }

    #[test]
    fn garbage_and_trailing_bytes_are_batch_errors() {
        assert!(matches!(decode_batch(b"\xc1"), Err(BatchError::Batch(_))));
        let mut bytes = encode_batch(&[]);
        bytes.push(0);
        assert!(matches!(decode_batch(&bytes), Err(BatchError::Batch(_))));
    }
}
