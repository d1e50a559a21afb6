//! The privacy commands, driven as an admin and an auditor would: what is on disk after ingest,
//! shredding a person, the audit log, rotation, and verification with nothing but the public key.

use std::path::{Path, PathBuf};

use super::cli::{GOOD, json, temp, tracevault};

const CANARY: &str = "CANARY-quarterly-layoff-list";

/// A second person's session, in which they type the canary (committed by an IME) and focus a
/// window titled with it.
fn canary_session() -> String {
    format!(
        r#"{{"type":"session","session":"s-0002","user":"u-99","device":"d-4"}}
{{"session":"s-0002","t":1000,"kind":"move","x":5,"y":5}}
{{"session":"s-0002","t":2000,"kind":"text","text":"{CANARY}"}}
{{"session":"s-0002","t":3000,"kind":"focus","app":"mail","title":"Re: {CANARY}"}}
{{"session":"s-0002","t":4000,"kind":"key_down","code":"KeyQ","text":"q","secure":true}}
"#
    )
}

fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_containing(&path, needle));
        } else if std::fs::read(&path).unwrap().windows(needle.len()).any(|w| w == needle) {
            out.push(path);
        }
    }
    out
}

#[test]
fn an_admin_shreds_a_person_and_an_auditor_verifies_with_the_public_key_alone() {
    let dir = temp("privacy");
    let data = dir.join("data");
    let keys = dir.join("keys");
    std::fs::write(dir.join("a.jsonl"), GOOD).unwrap();
    std::fs::write(dir.join("b.jsonl"), canary_session()).unwrap();
    for f in ["a.jsonl", "b.jsonl"] {
        let out = tracevault(&data, &["ingest", dir.join(f).to_str().unwrap(), "--json"], None);
        json(&out);
    }
    // Nothing typed is readable at rest, in the data or in the key directory.
    assert_eq!(files_containing(&data, CANARY.as_bytes()), Vec::<PathBuf>::new());
    assert_eq!(files_containing(&keys, CANARY.as_bytes()), Vec::<PathBuf>::new());
    let master_files = std::fs::read_dir(&keys)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("master-"))
        .count();
    assert_eq!(master_files, 1, "one master key file for the one data directory");
    assert!(keys.join("signing.pub").is_file());

    let verified = json(&tracevault(&data, &["verify", "--json"], None));
    assert_eq!(verified["ok"], true);
    assert!(verified["signed_heads"].as_u64().unwrap() >= 1);
    let proof = json(&tracevault(&data, &["verify", "--session", "s-0002", "--json"], None));
    assert_eq!((proof["ok"].as_bool(), proof["events"].as_u64()), (Some(true), Some(4)));

    // Shred u-99: their key is gone, the other person is untouched, the log still verifies.
    let out = json(&tracevault(&data, &["shred", "--user", "u-99", "--ticket", "DSR-4", "--json"], None));
    assert_eq!(out["sessions"], serde_json::json!(["s-0002"]));
    assert_eq!(out["keys_erased"].as_array().unwrap().len(), 1);
    let listed = json(&tracevault(&data, &["keys", "list", "--json"], None));
    let states: Vec<&str> =
        listed["keys"].as_array().unwrap().iter().map(|k| k["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["live", "erased"]);
    let sessions = json(&tracevault(&data, &["sessions", "--json"], None));
    assert_eq!(
        sessions.as_array().unwrap().len(),
        2,
        "the sessions are still listed, their events unreadable"
    );

    // An auditor with only the public key verifies the log, and the audit log, offline.
    let public = keys.join("signing.pub");
    let public = public.to_str().unwrap();
    let offline = json(&tracevault(&data, &["verify", "--public-key", public, "--json"], None));
    assert_eq!(offline["ok"], true, "{offline}");
    let audit_ok = json(&tracevault(&data, &["audit", "verify", "--public-key", public, "--json"], None));
    assert_eq!(audit_ok["ok"], true, "{audit_ok}");
    let entries = tracevault(&data, &["audit", "--json"], None);
    assert!(entries.status.success());
    let entries: Vec<serde_json::Value> =
        String::from_utf8_lossy(&entries.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let shred = entries.iter().find(|e| e["action"] == "shred").expect("the erasure is recorded");
    assert_eq!(shred["ticket"], "DSR-4");
    assert_eq!(shred["sessions"], serde_json::json!(["s-0002"]));
    assert_eq!(shred["role"], "admin");
    assert!(shred["actor"].as_str().unwrap().contains("uid"), "the OS user is the actor: {shred}");

    // Rotation re-wraps the one remaining key; everything still verifies and reads.
    let rotated = json(&tracevault(&data, &["keys", "rotate", "--json"], None));
    assert_ne!(rotated["old_master"], rotated["new_master"]);
    assert_eq!(json(&tracevault(&data, &["verify", "--json"], None))["ok"], true);

    // A byte flipped in a frame: verify fails, naming the file, offset and frame number.
    let segment = data.join("segments").join(format!("{:020}.seg", 0));
    let mut bytes = std::fs::read(&segment).unwrap();
    let at = 32 + 8 + 64 + 3; // inside the first frame's payload
    bytes[at] ^= 0x20;
    std::fs::write(&segment, &bytes).unwrap();
    let out = tracevault(&data, &["verify", "--public-key", public], None);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("FAILED") && text.contains("(frame 0)") && text.contains("00000000000000000000.seg"),
        "{text}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_key_directory_inside_the_data_directory_is_refused_with_the_reason() {
    let dir = temp("keys-inside");
    let data = dir.join("data");
    let out = tracevault(
        &data,
        &["--key-dir", data.join("k").to_str().unwrap(), "ingest", "-"],
        Some(crate::cli::GOOD),
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("inside the data directory"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}
