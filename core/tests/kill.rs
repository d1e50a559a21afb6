//! kill -9: a child process appends and reports each acknowledgement on stdout; the parent kills
//! it at a random moment, reopens the log, and checks that every acknowledged event is there, in
//! order, and that nothing is half-written. 20 iterations here; `cargo test -p tracevault-core
//! --test kill -- --ignored` runs 1000.
//!
//! The child is this same test binary, run with `TRACEVAULT_KILL_CHILD` set to the log's folder.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use tracevault_core::{Batch, Log, LogOptions};

const SESSIONS: u64 = 4;
const BATCH: usize = 40;

fn kill_options() -> LogOptions {
    // Small files, so kills land in rolls, seals and checkpoints too.
    LogOptions {
        block_events_max: 128,
        segment_bytes_max: 16 << 10,
        journal_bytes_max: 16 << 10,
        checkpoint_bytes: 32 << 10,
        ..common::options()
    }
}

/// The batch a child appends as its `n`-th to session `s`: deterministic, so the parent can
/// rebuild what each acknowledgement covered.
fn batch(s: u64, n: u64) -> Vec<tracevault_codecs::Event> {
    events(s * 1_000_003 + n, n * 1_000_000, BATCH)
}

/// In the child: append forever, printing "s n" after each acknowledged batch.
#[test]
fn kill_child() {
    let Some(dir) = std::env::var_os("TRACEVAULT_KILL_CHILD") else { return };
    let log = Log::open(Path::new(&dir), kill_options()).unwrap();
    let mut next = Vec::new();
    for s in 0..SESSIONS {
        log.create_session(meta(&format!("s-{s}"), "u")).unwrap();
        next.push(log.session_info(&format!("s-{s}")).unwrap().events / BATCH as u64);
    }
    for i in 0u64.. {
        let s = i % SESSIONS;
        let n = next[s as usize];
        let events = batch(s, n);
        let id = format!("s-{s}");
        let ack = log
            .append_batch(Batch {
                session: &id,
                events: &events,
                // An id per batch, as every ingest and recorder sends: the signed progress
                // records then name acknowledged batches, which each reopen checks the journal
                // still holds (a false alarm there would fail the reopen).
                batch_id: Some((u128::from(s) << 64) | u128::from(n + 1)),
                expected_seq: Some(n * BATCH as u64),
            })
            .unwrap();
        assert_eq!(ack.seq_first, n * BATCH as u64);
        println!("{s} {n}");
        next[s as usize] += 1;
        if i % 97 == 0 {
            log.seal_session(&id).unwrap();
        }
    }
}

fn run(iterations: u64) {
    let dir = std::env::temp_dir().join(format!("tracevault-kill-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let exe = std::env::current_exe().unwrap();
    let mut seed = 0x5eed_u64;
    let mut acked = vec![0u64; SESSIONS as usize];
    // Batches already compared with what was appended, per session.
    let mut checked = vec![0u64; SESSIONS as usize];
    for iteration in 0..iterations {
        let mut child = Command::new(&exe)
            .args(["--exact", "kill_child", "--nocapture", "--test-threads=1"])
            .env("TRACEVAULT_KILL_CHILD", &dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let run_for = Duration::from_millis(20 + (seed >> 33) % 300);
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut acks = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let mut parts = line.split_whitespace().map(|p| p.parse::<u64>());
                if let (Some(Ok(s)), Some(Ok(n))) = (parts.next(), parts.next()) {
                    acks.push((s, n));
                }
            }
            acks
        });
        let started = Instant::now();
        while started.elapsed() < run_for {
            std::thread::sleep(Duration::from_millis(5));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        for (s, n) in reader.join().unwrap() {
            acked[s as usize] = acked[s as usize].max(n + 1);
        }

        let log = Log::open(&dir, kill_options())
            .unwrap_or_else(|e| panic!("iteration {iteration}: reopening: {e}"));
        for s in 0..SESSIONS {
            let id = format!("s-{s}");
            let Some(info) = log.session_info(&id) else {
                assert_eq!(acked[s as usize], 0, "iteration {iteration}: session {id} lost");
                continue;
            };
            assert_eq!(info.events % BATCH as u64, 0, "iteration {iteration}: {id} holds part of a batch");
            let batches = info.events / BATCH as u64;
            assert!(
                batches >= acked[s as usize],
                "iteration {iteration}: {id} has {batches} batches, {} acknowledged",
                acked[s as usize]
            );
            // Batch n's events lie in [n, n + 1) seconds, so reading from the first batch not yet
            // checked reads only the blocks that can hold it: each check costs what is new.
            let from = checked[s as usize];
            let got = log.read_session(&common::reader(), &id, from * 1_000_000..=u64::MAX).unwrap();
            let expected: Vec<_> = (from..batches).flat_map(|n| batch(s, n)).collect();
            assert!(
                got == expected,
                "iteration {iteration}: {id} differs from what was appended after batch {from}"
            );
            checked[s as usize] = batches;
            acked[s as usize] = batches;
        }
        if iteration % 50 == 49 || iteration + 1 == iterations {
            assert_eq!(log.verify().unwrap().first_problem, None, "iteration {iteration}");
            for s in 0..SESSIONS {
                let id = format!("s-{s}");
                let all = log.read_session(&common::reader(), &id, 0..=u64::MAX).unwrap();
                let expected: Vec<_> = (0..checked[s as usize]).flat_map(|n| batch(s, n)).collect();
                assert!(all == expected, "iteration {iteration}: {id} differs from what was appended");
            }
        }
        drop(log);
    }
    assert!(acked.iter().sum::<u64>() > 0, "the child never acknowledged anything");
    eprintln!(
        "{iterations} kills: {} batches acknowledged and found again, none partly written",
        acked.iter().sum::<u64>()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn kill_9_loses_nothing_acknowledged_20() {
    run(20);
}

#[test]
#[ignore = "a soak: 1000 kills; run with --ignored"]
fn kill_9_loses_nothing_acknowledged_1000() {
    run(1000);
}
