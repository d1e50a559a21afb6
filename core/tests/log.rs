//! The durable log through its public API: appends come back, survive reopening and crashes,
//! damage is named, retries are idempotent, and a failed sync poisons the log.

mod common;

use std::path::Path;

use common::*;
use tracevault_core::storage::{CrashPolicy, FaultStorage, Storage};
use tracevault_core::{AppendError, Batch, Log, LogOptions, ReadError};

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tracevault-core-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn appends_read_back_and_survive_reopen() {
    let dir = temp_dir("reopen");
    let log = Log::open(&dir, small_options()).unwrap();
    assert!(log.create_session(meta("s-1", "u-1")).unwrap());
    assert!(!log.create_session(meta("s-1", "u-1")).unwrap(), "creating the same session again is a no-op");
    let mut expected = Vec::new();
    for i in 0..20 {
        let batch = events(i, i * 1_000_000, 37);
        let ack = log.append("s-1", &batch).unwrap();
        assert_eq!(ack.seq_first, expected.len() as u64);
        expected.extend(batch);
    }
    assert_eq!(log.read_session(&reader(), "s-1", 0..=u64::MAX).unwrap(), expected);
    let info = log.session_info("s-1").unwrap();
    assert_eq!((info.events, info.blocks), (740, 11), "37-event batches sealed into 64-event blocks");
    log.close().unwrap();

    let log = Log::open(&dir, small_options()).unwrap();
    assert_eq!(log.read_session(&reader(), "s-1", 0..=u64::MAX).unwrap(), expected);
    let more = events(99, 50_000_000, 10);
    log.append("s-1", &more).unwrap();
    expected.extend(more);
    drop(log); // no clean close: the journal carries the open block
    let log = Log::open(&dir, small_options()).unwrap();
    assert_eq!(log.read_session(&reader(), "s-1", 0..=u64::MAX).unwrap(), expected);
    assert_eq!(log.verify().unwrap().first_problem, None);
    let window: Vec<_> =
        expected.iter().filter(|e| (2_000_000..=3_000_000).contains(&e.t_us)).cloned().collect();
    assert_eq!(log.read_session(&reader(), "s-1", 2_000_000..=3_000_000).unwrap(), window);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn unknown_sessions_and_conflicts_are_errors() {
    let storage = FaultStorage::new();
    let log = open_fault(&storage, small_options());
    assert!(matches!(log.append("nope", &events(0, 0, 1)), Err(AppendError::UnknownSession(_))));
    assert!(matches!(log.read_session(&reader(), "nope", 0..=1), Err(ReadError::UnknownSession(_))));
    log.create_session(meta("s", "u")).unwrap();
    assert!(matches!(log.create_session(meta("s", "other")), Err(AppendError::SessionConflict { .. })));
    log.append("s", &events(0, 0, 5)).unwrap();
    let stale = Batch { session: "s", events: &events(1, 0, 5), batch_id: None, expected_seq: Some(0) };
    let e = log.append_batch(stale).unwrap_err();
    assert_eq!(e.to_string(), "session \"s\": expected sequence 0, but the session holds 5 events");
    let next = Batch { session: "s", events: &events(1, 0, 5), batch_id: None, expected_seq: Some(5) };
    assert_eq!(log.append_batch(next).unwrap().seq_first, 5);
}

#[test]
fn a_retried_batch_is_acknowledged_again_not_written_twice() {
    let storage = FaultStorage::new();
    let log = open_fault(&storage, small_options());
    log.create_session(meta("s", "u")).unwrap();
    let batch = events(7, 0, 50);
    let b = Batch { session: "s", events: &batch, batch_id: Some(42), expected_seq: None };
    let first = log.append_batch(b).unwrap();
    let again = log.append_batch(b).unwrap();
    assert!(!first.duplicate && again.duplicate);
    assert_eq!((again.seq_first, again.events), (first.seq_first, first.events));
    drop(log);
    let log = open_fault(&storage.crash(CrashPolicy::DropAll), small_options());
    assert!(log.append_batch(b).unwrap().duplicate, "the batch id survives a crash");
    assert_eq!(log.read_session(&reader(), "s", 0..=u64::MAX).unwrap(), batch);
}

#[test]
fn a_failed_sync_poisons_the_log_until_reopened() {
    let storage = FaultStorage::new();
    let log = open_fault(&storage, small_options());
    log.create_session(meta("s", "u")).unwrap();
    let acked = events(1, 0, 10);
    log.append("s", &acked).unwrap();
    storage.fail_syncs(true);
    let lost = events(2, 1_000_000, 10);
    assert!(matches!(log.append("s", &lost), Err(AppendError::Poisoned(_))));
    storage.fail_syncs(false);
    let e = log.append("s", &events(3, 2_000_000, 10)).unwrap_err();
    assert!(matches!(e, AppendError::Poisoned(_)), "still poisoned after the disk recovers: {e}");
    drop(log);
    // The unacknowledged batch is wholly there or wholly gone, never half.
    for policy in [CrashPolicy::DropAll, CrashPolicy::KeepAll] {
        let log = open_fault(&storage.crash(policy), small_options());
        let got = log.read_session(&reader(), "s", 0..=u64::MAX).unwrap();
        assert!(
            got == acked || got == [acked.clone(), lost.clone()].concat(),
            "{policy:?}: {} events",
            got.len()
        );
    }
}

#[test]
fn journal_files_are_deleted_once_their_events_are_sealed() {
    let storage = FaultStorage::new();
    let log = open_fault(&storage, small_options());
    for s in 0..8 {
        log.create_session(meta(&format!("s-{s}"), "u")).unwrap();
    }
    for round in 0..40u64 {
        for s in 0..8 {
            log.append(&format!("s-{s}"), &events(round * 8 + s, round * 1_000_000, 30)).unwrap();
        }
    }
    for s in 0..8 {
        log.seal_session(&format!("s-{s}")).unwrap();
    }
    log.checkpoint().unwrap();
    let stats = log.stats();
    assert_eq!(stats.events, 8 * 40 * 30);
    assert!(stats.journal_bytes < 9 << 10, "journal still holds {} bytes", stats.journal_bytes);
    for s in 0..8 {
        assert_eq!(log.read_session(&reader(), &format!("s-{s}"), 0..=u64::MAX).unwrap().len(), 1200);
    }
    assert_eq!(log.verify().unwrap().first_problem, None);
}

#[test]
fn every_flipped_byte_of_a_sealed_segment_is_caught_never_returned_as_data() {
    let storage = FaultStorage::new();
    let options = LogOptions { block_events_max: 16, segment_bytes_max: 4096, ..small_options() };
    let log = open_fault(&storage, options.clone());
    log.create_session(meta("a", "u")).unwrap();
    log.create_session(meta("b", "u")).unwrap();
    for i in 0..120 {
        log.append(if i % 2 == 0 { "a" } else { "b" }, &events(i, i * 100_000, 9)).unwrap();
    }
    log.close().unwrap();
    assert!(storage.list(Path::new("segments")).unwrap().len() >= 2, "the first segment must be sealed");
    let clean = open_fault(&storage, options.clone());
    let expected_a = clean.read_session(&reader(), "a", 0..=u64::MAX).unwrap();
    let expected_b = clean.read_session(&reader(), "b", 0..=u64::MAX).unwrap();
    drop(clean);
    let sealed = Path::new("segments/00000000000000000000.seg");
    let len = Storage::len(&storage, sealed).unwrap();
    assert!(len > 1000);
    for offset in 0..len {
        let damaged = storage.crash(CrashPolicy::KeepAll);
        damaged.corrupt(sealed, offset, 0x20).unwrap();
        // Reopening over a damaged sealed segment either refuses, naming it, or opens and then
        // every read of the damaged frame fails; verify always names it.
        match tracevault_core::Log::open_with(
            std::sync::Arc::new(damaged.clone()),
            memory_index(),
            options.clone(),
        ) {
            Err(e) => assert!(e.to_string().contains("00000000000000000000.seg"), "offset {offset}: {e}"),
            Ok(log) => {
                let report = log.verify().unwrap();
                let tracevault_core::Problem { path, .. } =
                    report.first_problem.unwrap_or_else(|| panic!("offset {offset}: verify passed"));
                assert!(path.ends_with("00000000000000000000.seg"));
                for (id, expected) in [("a", &expected_a), ("b", &expected_b)] {
                    if let Ok(got) = log.read_session(&reader(), id, 0..=u64::MAX) {
                        assert_eq!(&got, expected, "offset {offset}: session {id} returned damaged data");
                    }
                }
            }
        }
    }
}

#[test]
fn past_the_memory_budget_the_oldest_open_blocks_are_sealed() {
    let storage = FaultStorage::new();
    // Open blocks are kept encoded, a few bytes per event: 20 KiB holds a few thousand events.
    let options = LogOptions { block_events_max: 4096, memory_bytes_max: 20 << 10, ..small_options() };
    let log = open_fault(&storage, options);
    for s in 0..50 {
        log.create_session(meta(&format!("s-{s}"), "u")).unwrap();
    }
    for round in 0..20u64 {
        for s in 0..50u64 {
            log.append(&format!("s-{s}"), &events(s + round, round * 1_000_000, 50)).unwrap();
        }
    }
    let sessions = log.sessions();
    let open: u64 = sessions.iter().map(|s| s.events - s.sealed_events).sum();
    assert!(open < 50 * 20 * 50, "nothing was sealed early: {open} events open");
    assert!(sessions.iter().filter(|s| s.blocks > 0).count() >= 25, "the oldest open blocks were sealed");
    for s in 0..50u64 {
        let expected: Vec<_> =
            (0..20u64).flat_map(|round| events(s + round, round * 1_000_000, 50)).collect();
        assert_eq!(log.read_session(&reader(), &format!("s-{s}"), 0..=u64::MAX).unwrap(), expected);
    }
}

#[test]
fn closed_journal_files_waiting_on_open_blocks_are_bounded() {
    let storage = FaultStorage::new();
    let options = LogOptions { block_events_max: 1_000_000, journal_files_max: 2, ..small_options() };
    let log = open_fault(&storage, options);
    for s in 0..4 {
        log.create_session(meta(&format!("s-{s}"), "u")).unwrap();
    }
    for round in 0..200u64 {
        log.append(&format!("s-{}", round % 4), &events(round, round * 1_000_000, 20)).unwrap();
    }
    let journal = storage.list(Path::new("journal")).unwrap().len();
    assert!(journal <= 4, "{journal} journal files: blocks that never fill must not pin the journal");
    assert_eq!(log.stats().events, 4000);
}

#[test]
fn with_an_intact_index_a_flipped_byte_is_caught_on_read_naming_segment_and_offset() {
    let dir = temp_dir("flip-read");
    let options = LogOptions { block_events_max: 16, segment_bytes_max: 4096, ..small_options() };
    let log = Log::open(&dir, options.clone()).unwrap();
    log.create_session(meta("a", "u")).unwrap();
    for i in 0..40 {
        log.append("a", &events(i, i * 100_000, 9)).unwrap();
    }
    log.close().unwrap();
    // Flip a byte in the middle of the first (sealed) segment: inside some block's frame.
    let sealed = dir.join("segments/00000000000000000000.seg");
    let mut bytes = std::fs::read(&sealed).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    std::fs::write(&sealed, &bytes).unwrap();

    let log = Log::open(&dir, options).unwrap(); // the index is intact: open does not rescan it
    match log.read_session(&reader(), "a", 0..=u64::MAX) {
        Err(ReadError::Corrupt { path, offset, reason }) => {
            assert!(path.ends_with("00000000000000000000.seg"), "{}", path.display());
            assert!(offset <= at as u64, "the damaged frame starts at or before the flipped byte");
            assert!(!reason.is_empty());
        }
        other => panic!("expected a corruption error, got {:?}", other.map(|v| v.len())),
    }
    let tracevault_core::Problem { path, .. } =
        log.verify().unwrap().first_problem.expect("verify names it too");
    assert!(path.ends_with("00000000000000000000.seg"));
    drop(log);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn oversized_session_metadata_is_an_error_not_a_panic() {
    let storage = FaultStorage::new();
    let log = open_fault(&storage, small_options());
    let mut m = meta("big", "u");
    m.labels = (0..2000).map(|i| (format!("label-{i}"), "x".repeat(1000))).collect();
    let e = log.create_session(m).unwrap_err();
    assert!(e.to_string().contains("session metadata of"), "{e}");
    assert!(log.session_info("big").is_none());
}

#[test]
fn keys_typed_into_secure_fields_reach_the_log_without_text_or_identity() {
    use tracevault_codecs::{Event, EventKind, Key};
    let storage = FaultStorage::new();
    let log = open_fault(&storage, small_options());
    log.create_session(meta("s", "u")).unwrap();
    let canary = "CANARYpw";
    let mut typed = Vec::new();
    for (i, ch) in canary.chars().enumerate() {
        let key =
            Key { code: format!("Key{}", ch.to_ascii_uppercase()), text: Some(ch.to_string()), secure: true };
        typed.push(Event { t_us: i as u64 * 100_000, kind: EventKind::KeyDown(key.clone()) });
        typed.push(Event {
            t_us: i as u64 * 100_000 + 50_000,
            kind: EventKind::KeyUp(Key { text: None, ..key }),
        });
    }
    let enter = Key { code: "Enter".into(), text: None, secure: true };
    typed.push(Event { t_us: 2_000_000, kind: EventKind::KeyDown(enter.clone()) });
    log.append("s", &typed).unwrap();
    log.seal_session("s").unwrap();
    log.checkpoint().unwrap();

    let back = log.read_session(&reader(), "s", 0..=u64::MAX).unwrap();
    assert_eq!(back.len(), typed.len());
    for (got, sent) in back.iter().zip(&typed) {
        assert_eq!(got.t_us, sent.t_us, "timing survives");
        match &got.kind {
            EventKind::KeyDown(k) | EventKind::KeyUp(k) => {
                assert_eq!(k.text, None);
                assert!(k.code == "Unidentified" || k.code == "Enter", "{}", k.code);
            }
            other => panic!("{other:?}"),
        }
    }
    // Nowhere in the files either (journal, segments, index, checkpoint).
    for dir in ["journal", "segments", ""] {
        for name in storage.list(Path::new(dir)).unwrap() {
            let bytes = storage.read_all(&Path::new(dir).join(&name)).unwrap().unwrap();
            assert!(!bytes.windows(canary.len()).any(|w| w == canary.as_bytes()), "{dir}/{name}");
            assert!(!bytes.windows(4).any(|w| w == b"KeyC"), "{dir}/{name} holds a secure key's code");
        }
    }
}
