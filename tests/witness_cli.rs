//! The evidence against an insider, end to end with the built binary: two witness processes on
//! loopback cosign a normal run's heads; after laundering, they refuse and `verify --witness-key`
//! fails. Also: a kill during a store's creation never leaves a store that does not open, the
//! files are private whatever the umask, and the audit actor is the OS account, not `$USER`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use super::cli::{GOOD, json, temp, tracevault};

/// A `tracevault witness serve` on a free loopback port; killed when dropped.
struct WitnessProcess {
    child: Child,
    url: String,
    key: String,
}

impl WitnessProcess {
    fn start(state: &Path) -> WitnessProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tracevault"))
            .args(["witness", "serve", "--listen", "127.0.0.1:0", "--state"])
            .arg(state)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        // "witness <key> listening on http://<addr>"
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let words: Vec<&str> = line.split_whitespace().collect();
        assert!(words.len() == 5 && words[0] == "witness", "unexpected first line: {line:?}");
        WitnessProcess { child, url: words[4].to_owned(), key: words[1].to_owned() }
    }
}

impl Drop for WitnessProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn text(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn two_witnesses_cosign_a_normal_run_and_refuse_a_laundered_one() {
    let dir = temp("witnesses");
    let (a, b) = (WitnessProcess::start(&dir.join("w1")), WitnessProcess::start(&dir.join("w2")));
    let data = dir.join("data");
    let file = dir.join("a.jsonl");
    std::fs::write(&file, GOOD).unwrap();
    let with = |args: &[&str]| {
        let mut all = vec!["--witness", &a.url, "--witness", &b.url];
        all.extend_from_slice(args);
        tracevault(&data, &all, None)
    };
    let verify = |extra: &[&str]| {
        let mut all = vec!["verify", "--witness-key", &a.key, "--witness-key", &b.key];
        all.extend_from_slice(extra);
        tracevault(&data, &all, None)
    };
    // A normal run: every command's last head is cosigned by both.
    let out = with(&["ingest", file.to_str().unwrap()]);
    assert!(out.status.success() && !text(&out).contains("did not cosign"), "{}", text(&out));
    let out = with(&["replay", "s-0001", "--purpose", "ticket review", "--raw"]);
    assert!(out.status.success() && !text(&out).contains("did not cosign"), "{}", text(&out));
    let report = json(&verify(&["--json"]));
    assert_eq!(report["cosigned_by"].as_array().unwrap().len(), 2, "{report}");
    // A command run without the witnesses leaves the newest head uncosigned: verify says so.
    assert!(tracevault(&data, &["replay", "s-0001", "--purpose", "quiet look"], None).status.success());
    let out = verify(&[]);
    assert!(!out.status.success() && text(&out).contains("not cosigned by witness"), "{}", text(&out));
    assert!(with(&["stats"]).status.success(), "the witnesses catch up on the next head");
    assert!(verify(&[]).status.success(), "{}", text(&verify(&[])));

    // Rolled back whole, cosignatures and all: consistent with itself, so the offline check
    // passes; asking the witnesses (`--witness` with verify) finds their later head missing.
    let backup = dir.join("backup");
    copy_dir(&data, &backup);
    let out = with(&["replay", "s-0001", "--purpose", "second look"]);
    assert!(out.status.success(), "{}", text(&out));
    std::fs::remove_dir_all(&data).unwrap();
    copy_dir(&backup, &data);
    assert!(verify(&[]).status.success(), "offline, a whole rollback looks consistent");
    let out = with(&["verify"]);
    assert!(
        !out.status.success() && text(&out).contains("which the chain here does not hold"),
        "{}",
        text(&out)
    );

    // Laundering: a frame removed, the integrity state, checkpoint and index deleted.
    let segment = data.join("segments/00000000000000000000.seg");
    let bytes = std::fs::read(&segment).unwrap();
    std::fs::write(&segment, &bytes[..bytes.len() - 40]).unwrap();
    std::fs::remove_dir_all(data.join("integrity")).unwrap();
    std::fs::remove_file(data.join("checkpoint")).unwrap();
    std::fs::remove_file(data.join("index.redb")).unwrap();
    let out = with(&["stats"]);
    assert!(!out.status.success() && text(&out).contains("tracevault repair"), "{}", text(&out));
    let out = with(&["repair", "--purpose", "make it pass"]);
    assert!(out.status.success(), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains("found:") && said.matches("did not cosign").count() == 2, "{said}");
    assert!(said.contains("refused"), "{said}");
    let out = verify(&[]);
    assert!(!out.status.success() && text(&out).contains("not cosigned by witness"), "{}", text(&out));
    // Without the witnesses, verify still reports the discontinuity, and fails unless told.
    let out = tracevault(&data, &["verify"], None);
    assert!(!out.status.success() && text(&out).contains("DISCONTINUITY"), "{}", text(&out));
    assert!(tracevault(&data, &["verify", "--allow-repaired"], None).status.success());
    drop((a, b));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_kill_during_creation_never_leaves_a_store_that_does_not_open() {
    let dir = temp("creation-kills");
    let file = dir.join("a.jsonl");
    std::fs::write(&file, GOOD).unwrap();
    let bin = env!("CARGO_BIN_EXE_tracevault");
    // Kills spread over the first tens of milliseconds, where the directory, keys, index, key
    // store, audit log and the first head are created.
    for i in 0..24u64 {
        let data = dir.join(format!("data-{i}"));
        let mut child = Command::new(bin)
            .env("TRACEVAULT_KEY_DIR", dir.join(format!("keys-{i}")))
            .arg("--data")
            .arg(&data)
            .args(["ingest", file.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_micros(500 + i * 1_500));
        let _ = child.kill();
        let _ = child.wait();
        let out = Command::new(bin)
            .env("TRACEVAULT_KEY_DIR", dir.join(format!("keys-{i}")))
            .arg("--data")
            .arg(&data)
            .args(["ingest", file.to_str().unwrap(), "--json"])
            .output()
            .unwrap();
        assert!(out.status.success(), "kill {i}: {}", text(&out));
        let out = Command::new(bin)
            .env("TRACEVAULT_KEY_DIR", dir.join(format!("keys-{i}")))
            .arg("--data")
            .arg(&data)
            .args(["verify"])
            .output()
            .unwrap();
        assert!(out.status.success(), "kill {i}: {}", text(&out));
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn files_are_private_whatever_the_umask_and_the_actor_is_the_os_account() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp("umask");
    let file = dir.join("a.jsonl");
    std::fs::write(&file, GOOD).unwrap();
    let data = dir.join("data");
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "umask 000 && USER=alice \"$0\" --data {} ingest {} && USER=alice \"$0\" --data {} replay s-0001 \
             --purpose check",
            data.display(),
            file.display(),
            data.display()
        ))
        .arg(env!("CARGO_BIN_EXE_tracevault"))
        .env("TRACEVAULT_KEY_DIR", dir.join("keys"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let mut stack = vec![data.clone()];
    while let Some(p) = stack.pop() {
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        if p.is_dir() {
            assert_eq!(mode, 0o700, "{}", p.display());
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        } else {
            assert_eq!(mode, 0o600, "{}", p.display());
        }
    }
    let audit = tracevault(&data, &["audit", "--json"], None);
    let entries = String::from_utf8_lossy(&audit.stdout);
    let read = entries.lines().find(|l| l.contains("\"read\"")).expect("the read is recorded");
    assert!(read.contains("(uid ") && !read.contains("\"actor\":\"alice\""), "{read}");
    std::fs::remove_dir_all(&dir).unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else if entry.file_name() != "LOCK" {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}
