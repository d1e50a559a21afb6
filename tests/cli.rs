//! The built binary, driven as a user would: ingest, sessions, stats, verify, and the errors a
//! user sees for bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn tracevault(data: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tracevault"));
    // Keys beside the data directory (never inside it), not in the user's config directory.
    let keys = data.parent().unwrap().join("keys");
    cmd.env("TRACEVAULT_KEY_DIR", keys)
        .env_remove("TRACEVAULT_MASTER_KEY")
        .env_remove("TRACEVAULT_SIGNING_KEY")
        .env_remove("TRACEVAULT_SERVER")
        .env_remove("TRACEVAULT_TOKEN")
        .env_remove("TRACEVAULT_CA_CERT");
    cmd.arg("--data").arg(data).args(args);
    match stdin {
        None => cmd.output().unwrap(),
        Some(text) => {
            use std::io::Write;
            cmd.stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            let mut child = cmd.spawn().unwrap();
            child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
            child.wait_with_output().unwrap()
        }
    }
}

pub fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tracevault-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub const GOOD: &str = r#"{"type":"session","session":"s-0001","user":"u-17","device":"d-3","screen":{"w":1920,"h":1080},"started_at":"2026-11-27T09:00:00Z","labels":{"team":"search"}}
{"session":"s-0001","t":16000,"kind":"move","x":129,"y":337}
{"session":"s-0001","t":21000,"kind":"down","button":"left","x":130,"y":337}
{"session":"s-0001","t":95000,"kind":"up","button":"left","x":130,"y":337}
{"session":"s-0001","t":120000,"kind":"wheel","dx":0,"dy":120,"x":130,"y":337}
{"session":"s-0001","t":300000,"kind":"key_down","code":"KeyH","text":"h"}
{"session":"s-0001","t":380000,"kind":"key_up","code":"KeyH"}
{"session":"s-0001","t":400000,"kind":"focus","app":"firefox","title":"Inbox"}
"#;

pub fn json(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn ingest_then_list_count_and_verify() {
    let dir = temp("ingest");
    let file = dir.join("a.jsonl");
    std::fs::write(&file, GOOD).unwrap();
    let data = dir.join("data");
    let out = tracevault(&data, &["ingest", file.to_str().unwrap(), "--json"], None);
    assert_eq!(json(&out)["events"], 7);
    let sessions = json(&tracevault(&data, &["sessions", "--json"], None));
    assert_eq!(sessions[0]["session"], "s-0001");
    assert_eq!(sessions[0]["user"], "u-17");
    assert_eq!(sessions[0]["events"], 7);
    assert_eq!(sessions[0]["duration_us"], 384000);
    assert_eq!(
        json(&tracevault(&data, &["sessions", "--json", "--user", "nobody"], None)),
        serde_json::json!([])
    );
    let stats = json(&tracevault(&data, &["stats", "--json"], None));
    assert_eq!((stats["sessions"].as_u64(), stats["events"].as_u64()), (Some(1), Some(7)));
    assert!(stats["bytes_on_disk"].as_u64().unwrap() > 0 && stats["bytes_per_event"].as_f64().unwrap() > 0.0);
    assert_eq!(json(&tracevault(&data, &["verify", "--json"], None))["ok"], true);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_malformed_line_7_is_named_and_nothing_of_its_batch_is_stored() {
    let dir = temp("bad");
    let bad: String = GOOD
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i == 6 {
                r#"{"session":"s-0001","t":380000,"kind":"key_up","code":7}"#.to_owned()
            } else {
                l.to_owned()
            }
        })
        .map(|l| l + "\n")
        .collect();
    let file = dir.join("bad.jsonl");
    std::fs::write(&file, bad).unwrap();
    let data = dir.join("data");
    let out = tracevault(&data, &["ingest", file.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.jsonl:7: field `code`: invalid type: integer `7`, expected a string"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    let stats = json(&tracevault(&data, &["stats", "--json"], None));
    assert_eq!(
        (stats["sessions"].as_u64(), stats["events"].as_u64()),
        (Some(0), Some(0)),
        "nothing of the batch was stored"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn stdin_events_without_a_session_record_are_rejected_with_what_to_do() {
    let dir = temp("stdin");
    let out = tracevault(
        &dir.join("data"),
        &["ingest", "-"],
        Some("{\"session\":\"zz\",\"t\":1,\"kind\":\"move\",\"x\":1,\"y\":1}\n"),
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("<stdin>:1: session \"zz\" has no session record"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn usage_errors_exit_2_and_missing_files_exit_1() {
    let dir = temp("usage");
    assert_eq!(tracevault(&dir, &["no-such-command"], None).status.code(), Some(2));
    let out = tracevault(&dir.join("data"), &["ingest", "/no/such/file.jsonl"], None);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/no/such/file.jsonl: No such file"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_demo_at_a_tiny_size_writes_its_store_exports_and_a_verified_log() {
    let dir = temp("demo");
    let out = dir.join("out");
    let fixtures = tracevault::sapimouse::fixtures_dir();
    let args = [
        "demo",
        "--sessions",
        "2",
        "--minutes",
        "0.5",
        "--sapimouse",
        fixtures.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--json",
    ];
    let summary = json(&tracevault(&dir, &args, None));
    assert_eq!(summary["real_events"], 17_100);
    assert_eq!(summary["sessions"], 6);
    assert_eq!(summary["verify"], "ok");
    assert!(summary["steps"].as_u64().unwrap() > 100);
    for file in [
        "parquet/data/train-00000-of-00001.parquet",
        "parquet/meta/info.json",
        "jsonl/data/train-00000-of-00001.jsonl",
        "data/index.redb",
    ] {
        assert!(out.join(file).is_file(), "{file} is missing");
    }
    assert!(summary["bytes_per_event"]["sapimouse"].as_f64().unwrap() < 3.0);
    // Run again: the previous demo's folder is replaced; a folder that is not a demo's is refused.
    assert!(tracevault(&dir, &args, None).status.success());
    let foreign = dir.join("precious");
    std::fs::create_dir_all(&foreign).unwrap();
    std::fs::write(foreign.join("notes.txt"), "keep me").unwrap();
    let mut refused = args;
    refused[8] = foreign.to_str().unwrap();
    let out = tracevault(&dir, &refused, None);
    assert_eq!(out.status.code(), Some(1));
    assert!(foreign.join("notes.txt").is_file());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn replay_raw_returns_exactly_what_was_ingested_and_export_writes_its_files() {
    let dir = temp("replay");
    let file = dir.join("a.jsonl");
    std::fs::write(&file, GOOD).unwrap();
    let data = dir.join("data");
    json(&tracevault(&data, &["ingest", file.to_str().unwrap(), "--json"], None));
    // The round trip through the whole system: JSONL in, encrypted log, JSONL out.
    let out = tracevault(&data, &["replay", "s-0001", "--purpose", "round trip", "--raw"], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), GOOD);
    // The timeline names its integrity check and the steps.
    let out = tracevault(&data, &["replay", "s-0001", "--purpose", "review", "--ticket", "T-7"], None);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("integrity: 1 sealed block(s) proven") && text.contains("click at (130, 337)"),
        "{text}"
    );
    // A window of the session.
    let out = tracevault(
        &data,
        &["replay", "s-0001", "--purpose", "p", "--raw", "--from", "100ms", "--to", "0.35"],
        None,
    );
    let lines: Vec<_> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 1 + 2, "the session record and the events at 120 ms and 300 ms: {lines:?}");
    // Without a purpose: refused, nothing read.
    let out = tracevault(&data, &["replay", "s-0001", "--purpose", " "], None);
    assert_eq!(out.status.code(), Some(1));
    for format in ["parquet", "jsonl"] {
        let target = dir.join(format!("out-{format}"));
        let report = json(&tracevault(
            &data,
            &["export", "--out", target.to_str().unwrap(), "--format", format, "--threads", "2", "--json"],
            None,
        ));
        // click, scroll, type, focus (the first move only says where the pointer is: no step).
        assert_eq!((report["sessions"].as_u64(), report["steps"].as_u64()), (Some(1), Some(4)));
        let data_file = target.join(format!("data/train-00000-of-00001.{format}"));
        assert!(data_file.is_file() && target.join("meta/info.json").is_file());
    }
    let audit = tracevault(&data, &["audit", "--json"], None);
    let actions: Vec<String> = String::from_utf8_lossy(&audit.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["action"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(actions.iter().filter(|a| *a == "export").count(), 2);
    assert!(actions.iter().filter(|a| *a == "read").count() >= 3);
    std::fs::remove_dir_all(&dir).unwrap();
}
