//! The ingest pipeline, called as a front end calls it: checked whole before anything is stored,
//! and safe to run again after any failure (every event stored exactly once).

mod common;

use std::cell::Cell;
use std::rc::Rc;

use common::*;
use tracevault_codecs::{Record, jsonl};
use tracevault_core::ingest::{self, BATCH_EVENTS, IngestError, JsonlBytes, Source};
use tracevault_core::storage::FaultStorage;
use tracevault_core::{Access, ErrorKind, Log, Role};

fn admin() -> Access {
    Access::new("loader", Role::Admin, "ingest recordings")
}

/// Three sessions interleaved line by line, each a few batches long.
fn input(events_per_session: usize) -> (String, Vec<(String, Vec<tracevault_codecs::Event>)>) {
    let sessions: Vec<(String, Vec<_>)> =
        (0..3).map(|s| (format!("s-{s}"), events(s, 0, events_per_session))).collect();
    let mut text = String::new();
    for (id, _) in &sessions {
        let meta = meta(id, &format!("u-{id}"));
        text.push_str(&jsonl::to_line(&Record::Session(meta)));
        text.push('\n');
    }
    for i in 0..events_per_session {
        for (id, evs) in &sessions {
            text.push_str(&jsonl::to_line(&Record::Event { session: id.clone(), event: evs[i].clone() }));
            text.push('\n');
        }
    }
    (text, sessions)
}

/// A source whose second pass (the store) makes the disk fail after `ok_records` records.
struct FailingMidway {
    inner: JsonlBytes,
    storage: FaultStorage,
    ok_records: usize,
    passes: Rc<Cell<u32>>,
}

impl Source for FailingMidway {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn records(&mut self) -> Result<ingest::Records<'_>, IngestError> {
        self.passes.set(self.passes.get() + 1);
        let storing = self.passes.get() == 2;
        let storage = self.storage.clone();
        let ok = self.ok_records;
        let records = self.inner.records()?;
        Ok(Box::new(records.enumerate().map(move |(i, r)| {
            if storing && i == ok {
                storage.fail_writes(true);
            }
            r
        })))
    }
}

fn read_all(log: &Log, id: &str) -> Vec<tracevault_codecs::Event> {
    log.read_session(&reader(), id, 0..=u64::MAX).unwrap()
}

#[test]
fn a_failure_mid_ingest_then_a_rerun_stores_every_event_exactly_once() {
    let n = BATCH_EVENTS * 2 + 100;
    let (text, sessions) = input(n);
    for ok_records in [3 + 3 * BATCH_EVENTS + 10, 3 + 6 * BATCH_EVENTS + 7, 3 + 3 * n - 5] {
        let storage = FaultStorage::new();
        let log = open_fault(&storage, small_options());
        let mut source = FailingMidway {
            inner: JsonlBytes { name: "big.jsonl".into(), bytes: text.clone().into_bytes() },
            storage: storage.clone(),
            ok_records,
            passes: Rc::new(Cell::new(0)),
        };
        let err = ingest::ingest(&log, &admin(), &mut source).unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, IngestError::Store { .. }), "{message}");
        assert!(message.contains("running the same ingest again is safe"), "{message}");
        drop(log);
        storage.fail_writes(false);

        // The same input again: what is stored is skipped, the rest is stored, once.
        let log = open_fault(&storage, small_options());
        let mut again = JsonlBytes { name: "big.jsonl".into(), bytes: text.clone().into_bytes() };
        let report = ingest::ingest(&log, &admin(), &mut again).unwrap();
        assert_eq!(report.events + report.events_already_stored, 3 * n as u64, "{report:?}");
        for (id, expected) in &sessions {
            assert_eq!(&read_all(&log, id), expected, "{id} after a failure at record {ok_records}");
        }
        // And a third time: nothing new.
        let report = ingest::ingest(&log, &admin(), &mut again).unwrap();
        assert_eq!(report.events, 0);
        for (id, expected) in &sessions {
            assert_eq!(read_all(&log, id).len(), expected.len());
        }
    }
}

/// The first user's report: a bad line at 12,001 left 9,999 events stored, and the fixed file
/// stored them again (24,999 events, time going backwards). Now the bad line stores nothing and
/// the fixed file stores each event once.
#[test]
fn a_bad_line_stores_nothing_and_the_fixed_file_stores_each_event_once() {
    let (text, sessions) = input(5_000);
    let mut lines: Vec<&str> = text.lines().collect();
    let good = lines[12_000].to_owned();
    lines[12_000] = r#"{"session":"s-0","t":"soon","kind":"move","x":1,"y":2}"#;
    let bad = lines.join("\n") + "\n";
    let log = open_fault(&FaultStorage::new(), small_options());
    let err =
        ingest::ingest(&log, &admin(), &mut JsonlBytes { name: "f.jsonl".into(), bytes: bad.into_bytes() })
            .unwrap_err();
    assert!(err.to_string().starts_with("f.jsonl:12001: "), "{err}");
    assert_eq!(err.kind(), ErrorKind::BadInput);
    assert!(log.sessions().is_empty(), "nothing of the file is stored");
    lines[12_000] = &good;
    let fixed = lines.join("\n") + "\n";
    for _ in 0..2 {
        let mut source = JsonlBytes { name: "f.jsonl".into(), bytes: fixed.clone().into_bytes() };
        ingest::ingest(&log, &admin(), &mut source).unwrap();
    }
    for (id, expected) in &sessions {
        assert_eq!(&read_all(&log, id), expected);
    }
}

fn rejected(text: &str) -> String {
    let log = open_fault(&FaultStorage::new(), small_options());
    let mut source = JsonlBytes { name: "in.jsonl".into(), bytes: text.as_bytes().to_vec() };
    let err = ingest::ingest(&log, &admin(), &mut source).unwrap_err();
    assert!(matches!(err, IngestError::Rejected { .. }), "{err}");
    assert!(log.sessions().is_empty(), "nothing stored for {text}");
    err.to_string()
}

const HEADER: &str = r#"{"type":"session","session":"s","user":"u","started_at":"2026-11-27T09:00:00Z"}"#;

#[test]
fn records_are_checked_as_format_md_states() {
    let err = rejected(r#"{"type":"session","session":"s","user":"u","started_at":"yesterday"}"#);
    assert!(err.starts_with("in.jsonl:1: field started_at: expected an RFC 3339 time"), "{err}");
    assert!(err.contains("\"yesterday\""), "{err}");

    let backwards = format!(
        "{HEADER}\n{}\n{}\n",
        r#"{"session":"s","t":5000000,"kind":"move","x":1,"y":2}"#,
        r#"{"session":"s","t":1000,"kind":"move","x":1,"y":2}"#
    );
    let err = rejected(&backwards);
    assert!(err.starts_with("in.jsonl:3: field t: 1000 goes back 4999000 µs"), "{err}");

    let at_max =
        format!("{HEADER}\n{{\"session\":\"s\",\"t\":{},\"kind\":\"move\",\"x\":1,\"y\":2}}\n", u64::MAX);
    let err = rejected(&at_max);
    assert!(err.starts_with("in.jsonl:2: field t: expected at most 9007199254740991"), "{err}");

    let repeated = format!(
        "{HEADER}\n{}\n",
        r#"{"type":"session","session":"s","user":"someone else","started_at":"2026-11-27T09:00:00Z"}"#
    );
    let err = rejected(&repeated);
    assert!(err.starts_with("in.jsonl:2: session \"s\" is described again with other metadata"), "{err}");

    // Real input's small steps back (a clock adjusting) are kept, in order.
    let log = open_fault(&FaultStorage::new(), small_options());
    let small_step = format!(
        "{HEADER}\n{}\n{}\n",
        r#"{"session":"s","t":50000,"kind":"move","x":1,"y":2}"#,
        r#"{"session":"s","t":34000,"kind":"move","x":3,"y":4}"#
    );
    let mut source = JsonlBytes { name: "in.jsonl".into(), bytes: small_step.into_bytes() };
    ingest::ingest(&log, &admin(), &mut source).unwrap();
    let ts: Vec<u64> = read_all(&log, "s").iter().map(|e| e.t_us).collect();
    assert_eq!(ts, [50_000, 34_000]);
}

#[test]
fn a_role_that_may_not_append_stores_nothing() {
    let log = open_fault(&FaultStorage::new(), small_options());
    let ml = Access::new("trainer", Role::Ml, "ingest");
    let mut source = JsonlBytes { name: "in.jsonl".into(), bytes: format!("{HEADER}\n").into_bytes() };
    let err = ingest::ingest(&log, &ml, &mut source).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Forbidden, "{err}");
    assert!(log.sessions().is_empty());
}

fn jsonl_of(sessions: &[(String, Vec<tracevault_codecs::Event>)]) -> String {
    let mut text = String::new();
    for (id, evs) in sessions {
        text.push_str(&jsonl::to_line(&Record::Session(meta(id, &format!("u-{id}")))));
        text.push('\n');
        for e in evs {
            text.push_str(&jsonl::to_line(&Record::Event { session: id.clone(), event: e.clone() }));
            text.push('\n');
        }
    }
    text
}

/// A review found it: an input that starts like one already stored (the same recording, grown)
/// matched the stored input's first batch and stored the overlap again. It is now refused, and
/// names the overlap; the stored events are untouched.
#[test]
fn a_grown_copy_of_a_stored_input_is_refused_not_stored_twice() {
    let log = open_fault(&FaultStorage::new(), small_options());
    let all = events(7, 0, 6_000);
    let first = jsonl_of(&[("g".into(), all[..5_000].to_vec())]);
    let grown = jsonl_of(&[("g".into(), all.clone())]);
    ingest::ingest(&log, &admin(), &mut JsonlBytes { name: "a.jsonl".into(), bytes: first.into_bytes() })
        .unwrap();
    let err =
        ingest::ingest(&log, &admin(), &mut JsonlBytes { name: "b.jsonl".into(), bytes: grown.into_bytes() })
            .unwrap_err();
    assert!(err.to_string().contains("overlaps what is stored"), "{err}");
    assert_eq!(read_all(&log, "g"), all[..5_000]);
}

/// A source whose records change between the check and the store (a recorder still writing
/// the file): one more event in the second pass.
struct Growing {
    first: JsonlBytes,
    second: JsonlBytes,
    passes: u32,
}

impl Source for Growing {
    fn name(&self) -> &str {
        "growing.jsonl"
    }

    fn records(&mut self) -> Result<ingest::Records<'_>, IngestError> {
        self.passes += 1;
        if self.passes == 1 { self.first.records() } else { self.second.records() }
    }
}

#[test]
fn an_input_that_changes_between_the_check_and_the_store_stores_no_changed_batch() {
    let all = events(3, 0, BATCH_EVENTS + 10);
    for (checked, stored) in
        [(BATCH_EVENTS, BATCH_EVENTS + 10), (BATCH_EVENTS + 10, BATCH_EVENTS + 3), (0, 10)]
    {
        let log = open_fault(&FaultStorage::new(), small_options());
        let mut source = Growing {
            first: JsonlBytes {
                name: "g".into(),
                bytes: jsonl_of(&[("c".into(), all[..checked].to_vec())]).into_bytes(),
            },
            second: JsonlBytes {
                name: "g".into(),
                bytes: jsonl_of(&[("c".into(), all[..stored].to_vec())]).into_bytes(),
            },
            passes: 0,
        };
        let err = ingest::ingest(&log, &admin(), &mut source).unwrap_err();
        assert!(matches!(err, IngestError::Changed { .. }), "{err}");
        // What was stored is a prefix of the input, batch-whole; the input as it is now then goes
        // in exactly once.
        let held = read_all(&log, "c");
        assert!(held.len().is_multiple_of(BATCH_EVENTS) && all.starts_with(&held), "{} events", held.len());
        let now = jsonl_of(&[("c".into(), all[..stored].to_vec())]);
        ingest::ingest(&log, &admin(), &mut JsonlBytes { name: "g".into(), bytes: now.into_bytes() })
            .unwrap();
        assert_eq!(read_all(&log, "c"), all[..stored]);
    }
}

/// A review found it: 4096 events of long pastes encode past a block's bound, which the second
/// pass found after earlier batches were stored, on every re-run. Batches now also end on size.
#[test]
fn long_pastes_are_cut_into_batches_that_fit() {
    let log = open_fault(&FaultStorage::new(), small_options());
    let paste = "x".repeat(1_000_000);
    let evs: Vec<_> = (0..70)
        .map(|i| tracevault_codecs::Event {
            t_us: i * 1000,
            kind: tracevault_codecs::EventKind::Text { text: paste.clone() },
        })
        .collect();
    let text = jsonl_of(&[("p".into(), evs.clone())]);
    let report = ingest::ingest(
        &log,
        &admin(),
        &mut JsonlBytes { name: "paste.jsonl".into(), bytes: text.into_bytes() },
    )
    .unwrap();
    assert_eq!(report.events, 70);
    assert!(report.batches > 1, "{report:?}");
    assert_eq!(read_all(&log, "p"), evs);
}
