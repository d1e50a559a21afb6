//! JSON Lines, the interchange format with recorders and tools: one record per line.
//!
//! Reading is strict: unknown fields, wrong types and missing fields are errors that name the line
//! and the field. Writing produces the canonical form, which reads back to the same records.

use std::io::{self, BufRead, Write};

use crate::limits::LINE_BYTES_MAX;
use crate::record::{RawRecord, Record, RecordError};

/// A line that could not be read as a record.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JsonlError {
    /// The line is not a valid record; `line` counts from 1.
    #[error("line {line}: {error}")]
    Record { line: u64, error: RecordError },
    /// Reading the input failed.
    #[error("reading line {line}: {source}")]
    Io { line: u64, source: io::Error },
}

impl JsonlError {
    /// The 1-based line the error is about.
    pub fn line(&self) -> u64 {
        match self {
            JsonlError::Record { line, .. } | JsonlError::Io { line, .. } => *line,
        }
    }
}

/// Parses one line (without its line break) as a record.
///
/// A line is read once, without tracking where the deserializer is; only a line that fails is read
/// again with the path tracked, for the error to name the field (tracking every line cost more than
/// the rest of the parse).
pub fn parse_line(line: &str) -> Result<Record, RecordError> {
    if let Ok(raw) = serde_json::from_str::<RawRecord>(line) {
        return raw.validate();
    }
    let mut de = serde_json::Deserializer::from_str(line);
    let raw: RawRecord = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().clone();
        RecordError::from_path(&path, without_position(e.inner()))
    })?;
    de.end().map_err(|e| RecordError::record(without_position(&e)))?;
    raw.validate()
}

/// serde_json's message without its "at line 1 column N" suffix (a line is parsed on its own, so
/// its line number is ours to give), with the column kept.
fn without_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let message = match text.rfind(" at line ") {
        Some(at) => &text[..at],
        None => &text,
    };
    format!("{message} (column {})", e.column())
}

/// Writes one record as a line in the canonical field order, with its line break.
pub fn write_record<W: Write>(out: &mut W, record: &Record) -> io::Result<()> {
    serde_json::to_writer(&mut *out, &RawRecord::from(record))?;
    out.write_all(b"\n")
}

/// A record as a line of text, without its line break.
pub fn to_line(record: &Record) -> String {
    serde_json::to_string(&RawRecord::from(record)).expect("records always serialise to JSON")
}

/// Reads records from JSON Lines, one per non-blank line, with bounded line length.
///
/// Lines are read in batches (up to [`BATCH_LINES`] lines or [`BATCH_BYTES`] bytes) and a batch is
/// parsed on up to [`PARSE_THREADS_MAX`] threads at once; records come out in input order, and the
/// first bad line comes out where it is, as if read one by one.
pub struct JsonlReader<R> {
    input: R,
    line: u64,
    buf: Vec<u8>,
    /// Parsed, not yet handed out.
    ready: std::collections::VecDeque<Result<(u64, Record), JsonlError>>,
    /// A read error (or an over-long line) met while filling the last batch: handed out after it.
    stopped: Option<JsonlError>,
    threads: usize,
}

/// Lines per parsed batch.
pub const BATCH_LINES: usize = 4096;
/// Bytes per parsed batch (lines may be up to [`LINE_BYTES_MAX`] each).
pub const BATCH_BYTES: usize = 4 << 20;
/// Threads a batch is parsed on, at most.
pub const PARSE_THREADS_MAX: usize = 4;

impl<R: BufRead> JsonlReader<R> {
    pub fn new(input: R) -> Self {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(PARSE_THREADS_MAX);
        JsonlReader { input, line: 0, buf: Vec::new(), ready: Default::default(), stopped: None, threads }
    }

    /// Reads the next batch of lines and parses it into `self.ready`.
    fn fill(&mut self) {
        let mut text: Vec<u8> = Vec::new();
        let mut lines: Vec<(u64, std::ops::Range<usize>)> = Vec::new();
        while lines.len() < BATCH_LINES && text.len() < BATCH_BYTES {
            match self.next_line() {
                Ok(false) => break,
                Ok(true) => {}
                Err(e) => {
                    self.stopped = Some(e);
                    break;
                }
            }
            let bytes = self.buf.strip_suffix(b"\n").unwrap_or(&self.buf);
            let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
            if bytes.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let start = text.len();
            text.extend_from_slice(bytes);
            lines.push((self.line, start..text.len()));
        }
        let parse = |chunk: &[(u64, std::ops::Range<usize>)]| -> Vec<Result<(u64, Record), JsonlError>> {
            chunk.iter().map(|(line, range)| parse_numbered(*line, &text[range.clone()])).collect()
        };
        // Below a few hundred lines a thread costs more than it saves.
        let threads = if lines.len() < 512 { 1 } else { self.threads };
        if threads <= 1 {
            self.ready.extend(parse(&lines));
        } else {
            let per = lines.len().div_ceil(threads);
            let parsed: Vec<Vec<_>> = std::thread::scope(|scope| {
                let handles: Vec<_> =
                    lines.chunks(per).skip(1).map(|c| scope.spawn(move || parse(c))).collect();
                let first = parse(&lines[..per.min(lines.len())]);
                std::iter::once(first)
                    .chain(handles.into_iter().map(|h| h.join().expect("parsing a line does not panic")))
                    .collect()
            });
            self.ready.extend(parsed.into_iter().flatten());
        }
    }

    /// The number of the last line read (1-based; 0 before the first).
    pub fn line(&self) -> u64 {
        self.line
    }

    /// Reads the next line into `self.buf`; `Ok(false)` at the end of the input.
    fn next_line(&mut self) -> Result<bool, JsonlError> {
        self.buf.clear();
        self.line += 1;
        let line = self.line;
        loop {
            let available = match self.input.fill_buf() {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => return Err(JsonlError::Io { line, source }),
            };
            if available.is_empty() {
                return Ok(!self.buf.is_empty());
            }
            let (take, done) = match memchr_newline(available) {
                Some(i) => (i + 1, true),
                None => (available.len(), false),
            };
            if self.buf.len() + take > LINE_BYTES_MAX + 2 {
                return Err(JsonlError::Record {
                    line,
                    error: RecordError::record(format!("line longer than {LINE_BYTES_MAX} bytes")),
                });
            }
            self.buf.extend_from_slice(&available[..take]);
            self.input.consume(take);
            if done {
                return Ok(true);
            }
        }
    }
}

fn memchr_newline(bytes: &[u8]) -> Option<usize> {
    memchr::memchr(b'\n', bytes)
}

impl<R: BufRead> Iterator for JsonlReader<R> {
    type Item = Result<(u64, Record), JsonlError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.ready.is_empty() && self.stopped.is_none() {
            self.fill();
        }
        match self.ready.pop_front() {
            Some(item) => Some(item),
            None => self.stopped.take().map(Err),
        }
    }
}

/// One line (without its line break) numbered `line`: checked as UTF-8, then parsed.
fn parse_numbered(line: u64, bytes: &[u8]) -> Result<(u64, Record), JsonlError> {
    let text = std::str::from_utf8(bytes).map_err(|e| JsonlError::Record {
        line,
        error: RecordError::record(format!(
            "expected UTF-8 text, found an invalid byte at column {}",
            e.valid_up_to() + 1
        )),
    })?;
    parse_line(text).map(|record| (line, record)).map_err(|error| JsonlError::Record { line, error })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Button, Event, EventKind, Key};

    #[test]
    fn batches_parsed_in_parallel_come_out_in_order_and_stop_at_the_first_bad_line() {
        let mut text = String::from("{\"type\":\"session\",\"session\":\"s\",\"user\":\"u\"}\n\n");
        for i in 0..(BATCH_LINES * 2 + 10) {
            if i == BATCH_LINES + 700 {
                text.push_str("{\"session\":\"s\",\"t\":1,\"kind\":\"move\",\"x\":\"no\",\"y\":1}\n");
            } else {
                text.push_str(&format!(
                    "{{\"session\":\"s\",\"t\":{i},\"kind\":\"move\",\"x\":1,\"y\":2}}\r\n"
                ));
            }
        }
        let mut reader = JsonlReader::new(text.as_bytes());
        let (line, first) = reader.next().unwrap().unwrap();
        assert_eq!(line, 1);
        assert!(matches!(first, Record::Session(_)));
        let mut expected_t = 0u64;
        let mut last_line = 1;
        loop {
            match reader.next().unwrap() {
                Ok((line, Record::Event { event, .. })) => {
                    assert_eq!(event.t_us, expected_t, "line {line}");
                    assert_eq!(
                        line,
                        last_line + 1 + u64::from(last_line == 1),
                        "the blank line 2 is counted"
                    );
                    last_line = line;
                    expected_t += 1;
                }
                Ok(other) => panic!("{other:?}"),
                Err(e) => {
                    // Line 3 is the first event; the bad one is event BATCH_LINES + 700.
                    assert_eq!(e.line(), 3 + (BATCH_LINES + 700) as u64, "{e}");
                    assert!(e.to_string().contains("field `x`"), "{e}");
                    break;
                }
            }
        }
        assert_eq!(expected_t, (BATCH_LINES + 700) as u64);
    }

    fn err(line: &str) -> RecordError {
        parse_line(line).expect_err(line)
    }

    #[test]
    fn design_example_parses_and_prints_back_identically() {
        let text = r#"{"type":"session","session":"s-0001","user":"u-17","device":"d-3","screen":{"w":1920,"h":1080},"started_at":"2026-11-27T09:00:00Z","labels":{"team":"search"}}
{"session":"s-0001","t":16000,"kind":"move","x":129,"y":337}
{"session":"s-0001","t":21000,"kind":"down","button":"left","x":130,"y":337}
{"session":"s-0001","t":95000,"kind":"up","button":"left","x":130,"y":337}
{"session":"s-0001","t":120000,"kind":"wheel","dx":0,"dy":120,"x":130,"y":337}
{"session":"s-0001","t":300000,"kind":"key_down","code":"KeyH","text":"h"}
{"session":"s-0001","t":380000,"kind":"key_up","code":"KeyH"}
{"session":"s-0001","t":400000,"kind":"focus","app":"firefox","title":"Inbox"}
"#;
        let records: Vec<_> = JsonlReader::new(text.as_bytes()).map(|r| r.unwrap().1).collect();
        assert_eq!(records.len(), 8);
        assert_eq!(
            records[2],
            Record::Event {
                session: "s-0001".into(),
                event: Event { t_us: 21000, kind: EventKind::Down { button: Button::Left, x: 130, y: 337 } }
            }
        );
        let mut printed = Vec::new();
        for r in &records {
            write_record(&mut printed, r).unwrap();
        }
        assert_eq!(String::from_utf8(printed).unwrap(), text);
    }

    #[test]
    fn secure_key_round_trips_and_false_is_omitted() {
        let line = r#"{"session":"s","t":1,"kind":"key_down","code":"KeyA","secure":true}"#;
        let record = parse_line(line).unwrap();
        let Record::Event { event, .. } = &record else { panic!() };
        assert_eq!(event.kind, EventKind::KeyDown(Key { code: "KeyA".into(), text: None, secure: true }));
        assert_eq!(to_line(&record), line);
        let plain = r#"{"session":"s","t":1,"kind":"key_up","code":"KeyA","secure":false}"#;
        assert!(!to_line(&parse_line(plain).unwrap()).contains("secure"));
    }

    #[test]
    fn unknown_field_is_named() {
        let e = err(r#"{"session":"s","t":1,"kind":"move","x":1,"y":2,"z":3}"#);
        assert!(e.to_string().contains("unknown field `z`"), "{e}");
    }

    #[test]
    fn wrong_type_names_the_field_and_both_types() {
        let e = err(r#"{"session":"s","t":1,"kind":"move","x":"12","y":2}"#);
        assert_eq!(e.field.as_deref(), Some("x"));
        assert!(e.reason.contains("invalid type: string \"12\", expected i32"), "{e}");
        let e = err(r#"{"session":"s","t":-5,"kind":"move","x":1,"y":2}"#);
        assert_eq!(e.field.as_deref(), Some("t"));
        let e = err(r#"{"type":"session","session":"s","user":"u","screen":{"w":1,"h":"x"}}"#);
        assert_eq!(e.field.as_deref(), Some("screen.h"));
    }

    #[test]
    fn missing_and_misplaced_fields_are_named() {
        let e = err(r#"{"session":"s","t":1,"kind":"move","x":1}"#);
        assert_eq!(
            (e.field.as_deref(), e.reason.as_str()),
            (Some("y"), "missing: expected an integer (i32)")
        );
        let e = err(r#"{"session":"s","kind":"move","x":1,"y":1}"#);
        assert_eq!(e.field.as_deref(), Some("t"));
        let e = err(r#"{"session":"s","t":1,"kind":"move","x":1,"y":1,"button":"left"}"#);
        assert_eq!(e.field.as_deref(), Some("button"));
        assert!(e.reason.contains("does not belong to a `move` event"), "{e}");
        let e = err(r#"{"session":"s","t":1,"kind":"jump"}"#);
        assert_eq!(e.field.as_deref(), Some("kind"));
        let e = err(r#"{"session":"s","t":1,"kind":"down","button":"Left","x":1,"y":1}"#);
        assert!(e.reason.contains("found \"Left\""), "{e}");
        let e = err(r#"{"type":"session","session":"s"}"#);
        assert_eq!(e.field.as_deref(), Some("user"));
        let e = err(r#"{"type":"sesion","session":"s","user":"u"}"#);
        assert_eq!(e.field.as_deref(), Some("type"));
        let e = err(r#"{"type":"session","session":"s","user":"u","t":3}"#);
        assert_eq!(e.field.as_deref(), Some("t"));
    }

    #[test]
    fn malformed_json_and_trailing_text_are_errors() {
        assert!(err(r#"{"session":"s","t":1,"#).to_string().contains("column"));
        assert!(parse_line(r#"{"session":"s","t":1,"kind":"move","x":1,"y":1} x"#).is_err());
        assert!(parse_line("[1,2]").is_err());
    }

    #[test]
    fn reader_counts_lines_skips_blank_ones_and_reports_the_bad_one() {
        let text =
            "\n{\"session\":\"s\",\"t\":1,\"kind\":\"move\",\"x\":1,\"y\":1}\r\n\n{\"session\":\"s\"}\n";
        let results: Vec<_> = JsonlReader::new(text.as_bytes()).collect();
        assert_eq!(results.len(), 2);
        assert_eq!(results[0].as_ref().unwrap().0, 2);
        let e = results[1].as_ref().unwrap_err();
        assert_eq!(e.line(), 4);
        assert!(e.to_string().starts_with("line 4: field `t`"), "{e}");
    }

    #[test]
    fn invalid_utf8_is_an_error_naming_the_column() {
        let bytes = b"{\"session\":\"\xff\"}\n";
        let e = JsonlReader::new(&bytes[..]).next().unwrap().unwrap_err();
        assert!(e.to_string().contains("line 1: expected UTF-8 text"), "{e}");
    }
}
