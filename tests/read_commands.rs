//! Commands that only read never create a data directory or a key: a mistyped `--data` is an
//! error naming the path, not "0 sessions" or "ok: log verified". And the ingest a user re-runs
//! after killing it stores every event once.

use std::process::Command;

use crate::cli::{GOOD, json, temp, tracevault};

#[test]
fn a_read_command_on_a_missing_directory_names_it_and_creates_nothing() {
    let dir = temp("missing");
    let data = dir.join("no-such-data");
    for args in [
        &["sessions"][..],
        &["stats", "--json"],
        &["verify"],
        &["audit"],
        &["audit", "verify"],
        &["keys", "list"],
        &["replay", "s-0001", "--purpose", "look"],
        &["export", "--out", dir.join("out").to_str().unwrap()],
    ] {
        let out = tracevault(&data, args, None);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains("no-such-data") && stderr.contains("no tracevault data directory"),
            "{args:?}: {stderr}"
        );
        assert!(!data.exists(), "{args:?} created the data directory");
        assert!(!dir.join("keys").exists(), "{args:?} created a key directory");
        assert!(!dir.join("out").exists(), "{args:?} created its output");
    }
}

#[test]
fn an_error_says_each_thing_once() {
    let dir = temp("once");
    let data = dir.join("data");
    let file = dir.join("a.jsonl");
    std::fs::write(&file, GOOD).unwrap();
    json(&tracevault(&data, &["ingest", file.to_str().unwrap(), "--json"], None));
    // An export to a place that cannot be written names it, once.
    let blocker = dir.join("file-not-dir");
    std::fs::write(&blocker, "x").unwrap();
    let target = blocker.join("out");
    let out = tracevault(&data, &["export", "--out", target.to_str().unwrap()], None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(target.to_str().unwrap()), "{stderr}");
    assert_eq!(stderr.matches("Not a directory").count(), 1, "{stderr}");
    assert!(!stderr.contains("another tracevault process"), "{stderr}");
}

#[test]
fn an_ingest_killed_part_way_and_run_again_stores_every_event_once() {
    let dir = temp("kill-ingest");
    let data = dir.join("data");
    let file = dir.join("big.jsonl");
    let mut text = String::new();
    let sessions = 4;
    let per_session = 20_000u64;
    for s in 0..sessions {
        text.push_str(&format!("{{\"type\":\"session\",\"session\":\"k-{s}\",\"user\":\"u-{s}\"}}\n"));
    }
    for i in 0..per_session {
        for s in 0..sessions {
            text.push_str(&format!(
                "{{\"session\":\"k-{s}\",\"t\":{},\"kind\":\"move\",\"x\":{},\"y\":{}}}\n",
                i * 8000,
                (i * 7 + s) % 1920,
                (i * 3) % 1080
            ));
        }
    }
    std::fs::write(&file, &text).unwrap();
    // Kill it at a few points (whatever it had reached: nothing, some batches, all of it).
    for delay_ms in [150u64, 400, 900] {
        let keys = dir.join("keys");
        let mut child = Command::new(env!("CARGO_BIN_EXE_tracevault"))
            .env("TRACEVAULT_KEY_DIR", &keys)
            .env_remove("TRACEVAULT_MASTER_KEY")
            .env_remove("TRACEVAULT_SIGNING_KEY")
            .arg("--data")
            .arg(&data)
            .args(["ingest", file.to_str().unwrap(), "--json"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
    }
    let out = json(&tracevault(&data, &["ingest", file.to_str().unwrap(), "--json"], None));
    let stored = out["events"].as_u64().unwrap() + out["events_already_stored"].as_u64().unwrap();
    assert_eq!(stored, sessions * per_session, "{out}");
    let listed = json(&tracevault(&data, &["sessions", "--json"], None));
    for s in listed.as_array().unwrap() {
        assert_eq!(s["events"].as_u64(), Some(per_session), "{s}");
    }
    // The stored events are exactly the file's, in order, for a session read back raw.
    let raw = tracevault(&data, &["replay", "k-2", "--purpose", "check the re-run", "--raw"], None);
    assert!(raw.status.success(), "{}", String::from_utf8_lossy(&raw.stderr));
    let expected: Vec<&str> =
        text.lines().filter(|l| l.contains("\"k-2\"") && !l.contains("\"type\"")).collect();
    let got: Vec<String> = String::from_utf8_lossy(&raw.stdout).lines().skip(1).map(str::to_owned).collect();
    assert_eq!(got.len(), expected.len());
    assert!(got.iter().zip(&expected).all(|(g, e)| g == e), "the events differ from the file's");
}
