//! Many writers at once: sessions appended concurrently from several threads all read back
//! complete and in order, and the group commit shares syncs between them.

mod common;

use std::sync::Arc;

use common::*;
use tracevault_core::storage::FaultStorage;
use tracevault_core::{Log, LogOptions};

#[test]
fn sessions_1024_from_8_threads_read_back_complete_and_in_order() {
    let storage = FaultStorage::new();
    let options = LogOptions { block_events_max: 256, ..common::options() };
    let log = Arc::new(open_fault(&storage, options.clone()));
    const SESSIONS: u64 = 1024;
    const THREADS: u64 = 8;
    const ROUNDS: u64 = 6;
    const BATCH: usize = 60;
    for s in 0..SESSIONS {
        log.create_session(meta(&format!("s-{s}"), &format!("u-{}", s % 50))).unwrap();
    }
    let syncs_before = storage.syncs();
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                for round in 0..ROUNDS {
                    for s in (t..SESSIONS).step_by(THREADS as usize) {
                        let batch = events(s * 1000 + round, round * 10_000_000, BATCH);
                        let ack = log.append(&format!("s-{s}"), &batch).unwrap();
                        assert_eq!(ack.seq_first, round * BATCH as u64);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let appends = SESSIONS * ROUNDS;
    let syncs = storage.syncs() - syncs_before;
    assert!(syncs <= appends, "{syncs} syncs for {appends} appends");

    let check = |log: &Log| {
        for s in 0..SESSIONS {
            let expected: Vec<_> =
                (0..ROUNDS).flat_map(|round| events(s * 1000 + round, round * 10_000_000, BATCH)).collect();
            assert_eq!(
                log.read_session(&reader(), &format!("s-{s}"), 0..=u64::MAX).unwrap(),
                expected,
                "session s-{s}"
            );
        }
    };
    check(&log);
    drop(log);
    let log = open_fault(&storage, options);
    check(&log);
    assert_eq!(log.stats().events, SESSIONS * ROUNDS * BATCH as u64);
}
