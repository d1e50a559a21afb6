//! Golden files: a data directory and key directory written by tracevault at format version
//! frame v2 / file v1 / checkpoint v3 / key store v2 / head v2 (docs/FORMAT.md), committed, and
//! read by today's code: every segment and journal frame, the checkpoint by its documented byte
//! map, the key store and key files, the signed heads, the audit log, and the whole store opened
//! with no index (the index is rebuilt from the segments, as after losing it). If a layout
//! changes, these fail until FORMAT.md gets a new version and the golden files a new directory.
//!
//! `TRACEVAULT_WRITE_GOLDEN=1 cargo test -p tracevault-core --test golden -- --ignored` writes
//! them again (only for a new format version).
//!
//! `golden/v1` is the store of the previous version (unchained heads v1, checkpoint v2, key store
//! v1): a normal open refuses it, naming the format, and `repair` brings it forward with every
//! event intact and the discontinuity on record.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use tracevault_core::frame::{self, FrameKind, Parsed};
use tracevault_core::integrity;
use tracevault_core::storage::FsStorage;
use tracevault_core::{Access, KeySource, Log, LogOptions, Role, audit, layout};

const SESSIONS: [(&str, &str, u64, usize); 2] = [("g-1", "alice", 1, 300), ("g-2", "bob", 2, 150)];

fn golden() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/v2")
}

fn golden_options(keys: &Path) -> LogOptions {
    LogOptions { keys: Some(KeySource::dir(keys)), block_events_max: 128, ..LogOptions::default() }
}

#[test]
#[ignore = "writes the golden files; run only for a new format version"]
fn write_golden() {
    if std::env::var_os("TRACEVAULT_WRITE_GOLDEN").is_none() {
        return;
    }
    let root = golden();
    let _ = std::fs::remove_dir_all(&root);
    let log = Log::open(&root.join("data"), golden_options(&root.join("keys"))).unwrap();
    for (id, user, seed, n) in SESSIONS {
        log.create_session(meta(id, user)).unwrap();
        for chunk in events(seed, 0, n).chunks(100) {
            log.append(id, chunk).unwrap();
        }
    }
    log.read_session(&Access::new("ada", Role::Auditor, "golden read"), "g-1", 0..=u64::MAX).unwrap();
    log.close().unwrap();
    // The index is a cache; the golden store is its input, the segments.
    std::fs::remove_file(root.join("data").join(layout::INDEX)).unwrap();
}

/// The golden directories copied where the test may write (opening recovers and checkpoints),
/// with the key files' mode restored (git keeps 0644; tracevault refuses key files others read).
fn copy() -> (PathBuf, PathBuf) {
    copy_from(&golden(), "v2")
}

fn copy_from(from: &Path, name: &str) -> (PathBuf, PathBuf) {
    let to = std::env::temp_dir().join(format!("tracevault-golden-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&to);
    copy_dir(from, &to);
    #[cfg(unix)]
    for entry in std::fs::read_dir(to.join("keys")).unwrap().flatten() {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    (to.join("data"), to.join("keys"))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Every frame of a frame file: its header checked (magic, version 1), then frames to the end.
fn frames(path: &Path, magic: &[u8; 8]) -> Vec<FrameKind> {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], magic, "{}", path.display());
    assert_eq!(u32::from_le_bytes(bytes[8..12].try_into().unwrap()), 1, "file version");
    let mut at = 32;
    let mut kinds = Vec::new();
    while at < bytes.len() {
        match frame::parse(&bytes[at..]) {
            Parsed::Frame(f) => {
                kinds.push(f.header.kind);
                at += f.bytes.len();
            }
            other => panic!("{} at {at}: {other:?}", path.display()),
        }
    }
    kinds
}

#[test]
fn golden_files_read_with_todays_code() {
    let (data, keys) = copy();
    // Segments: the session records and sealed blocks, frame by frame.
    let segment = data.join(layout::SEGMENTS.path(0));
    let kinds = frames(&segment, &layout::SEGMENTS.magic);
    assert_eq!(kinds.iter().filter(|k| **k == FrameKind::Session).count(), 2);
    assert_eq!(kinds.iter().filter(|k| **k == FrameKind::Block).count(), 300 / 128 + 150 / 128);
    // The journal: the appends whose events are not yet in a sealed block.
    let journal: Vec<PathBuf> =
        std::fs::read_dir(data.join(layout::JOURNAL.dir)).unwrap().flatten().map(|e| e.path()).collect();
    assert!(!journal.is_empty());
    let batches: usize = journal
        .iter()
        .map(|j| frames(j, &layout::JOURNAL.magic).iter().filter(|k| **k == FrameKind::Batch).count())
        .sum();
    assert!(batches > 0, "open blocks are in the journal");

    // The checkpoint, by FORMAT.md's byte map: magic, version u32, segment u64, offset u64,
    // next frame u64, the newest head's counter u64 and hash, one hash per set bit of next frame,
    // crc32c u32.
    let c = std::fs::read(data.join(layout::CHECKPOINT)).unwrap();
    assert_eq!(&c[..8], b"TVCHKPNT");
    assert_eq!(u32::from_le_bytes(c[8..12].try_into().unwrap()), 3);
    let next_frame = u64::from_le_bytes(c[28..36].try_into().unwrap());
    let head_counter = u64::from_le_bytes(c[36..44].try_into().unwrap());
    assert_eq!(c.len(), 76 + 32 * next_frame.count_ones() as usize + 4);
    assert_eq!(u32::from_le_bytes(c[c.len() - 4..].try_into().unwrap()), crc32c::crc32c(&c[..c.len() - 4]));

    // Key files: one master key file per store, the signing key and its public half.
    let names: Vec<String> = std::fs::read_dir(&keys)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let master =
        names.iter().find(|n| n.starts_with("master-") && n.ends_with(".key")).expect("a master key file");
    let text = std::fs::read_to_string(keys.join(master)).unwrap();
    assert!(text.lines().any(|l| l.starts_with("current ") && l.len() == "current ".len() + 64), "{text}");
    let public =
        integrity::parse_public_key(&std::fs::read_to_string(keys.join("signing.pub")).unwrap()).unwrap();

    // Signed heads, each verifying under the public key; the audit log, entry by entry.
    let storage = FsStorage::new(&data);
    let (heads, damage) = integrity::read_heads(&storage).unwrap();
    assert!(damage.is_none() && !heads.is_empty());
    assert!(heads.iter().all(|h| h.verify_signature(&public)));
    assert_eq!(heads.last().unwrap().counter, head_counter, "the checkpoint names the newest head");
    assert_eq!(&c[44..76], &heads.last().unwrap().hash()[..]);
    for pair in heads.windows(2) {
        assert_eq!((pair[1].counter, pair[1].prev), (pair[0].counter + 1, pair[0].hash()), "chained");
    }
    let entries = audit::scan(&storage).unwrap();
    assert!(entries.problem.is_none());
    assert!(entries.entries.iter().any(|e| e.actor == "ada" && e.sessions == ["g-1"]));
    // The whole store verifies offline, as an auditor would check it.
    let report = integrity::verify(&storage, &public).unwrap();
    assert!(report.ok(), "{:?}", report.first_problem);

    // The key store and the index's input: opened with no index (rebuilt from the segments), every
    // event reads back as it was appended.
    assert!(!data.join(layout::INDEX).exists());
    let log = Log::open(&data, LogOptions { create: false, ..golden_options(&keys) }).unwrap();
    let (_, slots) = log.keys();
    assert_eq!(slots.len(), 2);
    for (id, _, seed, n) in SESSIONS {
        assert_eq!(log.read_session(&reader(), id, 0..=u64::MAX).unwrap(), events(seed, 0, n), "{id}");
    }
    log.close().unwrap();
    std::fs::remove_dir_all(data.parent().unwrap()).unwrap();
}

#[test]
fn a_store_of_the_previous_format_is_refused_by_name_and_brought_forward_by_repair() {
    let (data, keys) = copy_from(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/v1"), "v1");
    let refused =
        Log::open(&data, LogOptions { create: false, ..golden_options(&keys) }).err().expect("refused");
    assert!(refused.to_string().contains("format v1"), "{refused}");
    let admin = Access::new("ops", Role::Admin, "upgrade to chained heads");
    let log =
        Log::open(&data, LogOptions { create: false, repair: Some(admin), ..golden_options(&keys) }).unwrap();
    assert_eq!(log.repaired().findings.len(), 1, "{:?}", log.repaired().findings);
    assert_eq!(log.repaired().moved.len(), 1, "the v1 heads are kept aside");
    for (id, _, seed, n) in SESSIONS {
        assert_eq!(log.read_session(&reader(), id, 0..=u64::MAX).unwrap(), events(seed, 0, n), "{id}");
    }
    log.close().unwrap();
    let public =
        integrity::parse_public_key(&std::fs::read_to_string(keys.join("signing.pub")).unwrap()).unwrap();
    let report = integrity::verify(&FsStorage::new(&data), &public).unwrap();
    assert!(report.ok(), "{:?}", report.first_problem);
    assert_eq!(report.discontinuities.len(), 1);
    assert!(report.discontinuities[0].found[0].contains("earlier format"), "{:?}", report.discontinuities);
    // From here a normal open works.
    Log::open(&data, LogOptions { create: false, ..golden_options(&keys) }).unwrap().close().unwrap();
    std::fs::remove_dir_all(data.parent().unwrap()).unwrap();
}
