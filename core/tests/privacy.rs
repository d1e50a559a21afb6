//! Privacy and integrity at rest, as the people recorded and their auditors rely on them: no
//! plaintext on disk, crypto-shredding, every read in the access audit log (fail closed), and a
//! log whose tampering `verify` names to the frame.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::*;
use tracevault_codecs::block::BlockEncoder;
use tracevault_codecs::{Event, EventKind, Key};
use tracevault_core::audit::{self, Action};
use tracevault_core::error::{AppendError, ReadError};
use tracevault_core::frame::{self, FrameHeader, FrameKind, Parsed};
use tracevault_core::integrity::{self, PublicKey};
use tracevault_core::keys::KeyError;
use tracevault_core::storage::{FaultStorage, FsStorage, Storage};
use tracevault_core::{
    Access, Decision, KeySource, Log, LogOptions, OpenError, Operation, Role, Secret, merkle,
};

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tracevault-privacy-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A canary per person: words they type that must never be readable at rest.
fn canary(user: &str) -> String {
    format!("CANARY-{user}-confidential-salary-talk")
}

/// A session of `user` in which they type their canary (as IME text and in a window title) among
/// ordinary input.
fn typed(user: &str, n: usize) -> Vec<Event> {
    let mut events = events(user.len() as u64, 0, n);
    let t = events.last().map_or(0, |e| e.t_us);
    events.push(Event { t_us: t + 1, kind: EventKind::Text { text: canary(user) } });
    events.push(Event {
        t_us: t + 2,
        kind: EventKind::Focus { app: "chat".into(), title: Some(format!("DM: {}", canary(user))) },
    });
    events.push(Event {
        t_us: t + 3,
        kind: EventKind::KeyDown(Key { code: "KeyP".into(), text: Some("p".into()), secure: true }),
    });
    events
}

/// What the log keeps of `events`: secure keys without their text or identity.
fn stored(events: &[Event]) -> Vec<Event> {
    events.iter().map(|e| e.redacted().unwrap_or_else(|| e.clone())).collect()
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Every file under `dirs` that contains `needle`.
fn find(dirs: &[&Path], needle: &[u8]) -> Vec<PathBuf> {
    dirs.iter()
        .flat_map(|d| files_under(d))
        .filter(|f| std::fs::read(f).unwrap().windows(needle.len()).any(|w| w == needle))
        .collect()
}

/// The one master key file in a key directory (one data directory was opened with it).
fn master_file(keys: &Path) -> PathBuf {
    let found: Vec<PathBuf> = files_under(keys)
        .into_iter()
        .filter(|f| f.file_name().unwrap().to_str().unwrap().starts_with("master-"))
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    found[0].clone()
}

fn file_options(keys: &Path) -> LogOptions {
    LogOptions { keys: Some(KeySource::dir(keys)), ..small_options() }
}

fn admin() -> Access {
    Access::new("root", Role::Admin, "erasure request").with_ticket("GDPR-17")
}

#[test]
fn nothing_typed_and_no_data_key_is_readable_at_rest() {
    let dir = temp("canary");
    let (data, keys) = (dir.join("data"), dir.join("keys"));
    let users = ["alice", "bob"];
    // The search is meaningful: the same events, encoded without encryption, show the canary.
    let mut plain = Vec::new();
    BlockEncoder::new(1).encode(&typed("alice", 50), &mut plain).unwrap();
    assert!(plain.windows(canary("alice").len()).any(|w| w == canary("alice").as_bytes()));

    let log = Log::open(&data, file_options(&keys)).unwrap();
    for (i, user) in users.iter().enumerate() {
        let id = format!("s-{i}");
        log.create_session(meta(&id, user)).unwrap();
        // Some events sealed into blocks in the segments, the rest left in the journal.
        for chunk in typed(user, 300).chunks(50) {
            log.append(&id, chunk).unwrap();
        }
    }
    log.checkpoint().unwrap();
    // Every place bytes rest, while the log is open and after it is closed.
    for user in users {
        assert_eq!(find(&[&data, &keys], canary(user).as_bytes()), Vec::<PathBuf>::new(), "{user}'s canary");
    }
    // The secure key's text never reached the log at all.
    let got = log.read_session(&reader(), "s-0", 0..=u64::MAX).unwrap();
    assert!(got.iter().any(|e| matches!(&e.kind, EventKind::Text { text } if *text == canary("alice"))));
    assert!(got.iter().all(|e| !matches!(&e.kind, EventKind::KeyDown(k) if k.text.is_some() && k.secure)));
    log.close().unwrap();
    for user in users {
        assert_eq!(find(&[&data, &keys], canary(user).as_bytes()), Vec::<PathBuf>::new(), "{user}'s canary");
    }
    // The master key is in its file outside the data directory and nowhere inside it.
    let master = std::fs::read_to_string(master_file(&keys)).unwrap();
    let hex = master.lines().find_map(|l| l.strip_prefix("current ")).unwrap().to_owned();
    let raw: Vec<u8> = (0..32).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap()).collect();
    assert_eq!(find(&[&data], &raw), Vec::<PathBuf>::new());
    assert_eq!(find(&[&data], hex.as_bytes()), Vec::<PathBuf>::new());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(master_file(&keys)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_key_directory_inside_the_data_directory_is_refused() {
    let dir = temp("inside");
    let options = LogOptions { keys: Some(KeySource::dir(dir.join("keys"))), ..small_options() };
    let err = Log::open(&dir, options).err().expect("refused");
    assert!(err.to_string().contains("inside the data directory"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn shredding_a_person_erases_exactly_their_events_and_the_log_still_verifies() {
    let dir = temp("shred");
    let (data, keys) = (dir.join("data"), dir.join("keys"));
    let log = Log::open(&data, file_options(&keys)).unwrap();
    let users = ["ann", "ben", "cat"];
    let mut expected = Vec::new();
    for (i, user) in users.iter().enumerate() {
        for k in 0..2 {
            let id = format!("s-{user}-{k}");
            log.create_session(meta(&id, user)).unwrap();
            let events = typed(user, 150 + 40 * i);
            for chunk in events.chunks(37) {
                log.append(&id, chunk).unwrap();
            }
            let events = stored(&events);
            // Half the sessions sealed, half with events still open in the journal.
            if k == 0 {
                log.seal_session(&id).unwrap();
            }
            expected.push((id, user.to_string(), events));
        }
    }
    let before = log.verify().unwrap();
    assert!(before.ok(), "{:?}", before.first_problem);

    // A non-admin cannot erase anyone, and the refusal is recorded.
    let denied = log.shred(&reader(), "ben");
    assert!(matches!(denied, Err(AppendError::Denied(_))), "{denied:?}");
    let done = log.shred(&admin(), "ben").unwrap();
    assert_eq!(done.sessions, vec!["s-ben-0".to_owned(), "s-ben-1".to_owned()]);
    assert_eq!(done.keys.len(), 1);
    let check = |log: &Log| {
        for (id, user, events) in &expected {
            match log.read_session(&reader(), id, 0..=u64::MAX) {
                Ok(got) if *user != "ben" => assert!(got == *events, "{id} reads back otherwise"),
                Err(ReadError::Erased { session, key_id }) if *user == "ben" => {
                    assert_eq!((&session, key_id), (id, done.keys[0]));
                }
                other => panic!("{id} of {user}: {other:?}"),
            }
            assert_eq!(log.session_info(id).unwrap().erased, *user == "ben");
        }
        let report = log.verify().unwrap();
        assert!(report.ok(), "verification after shredding: {:?}", report.first_problem);
    };
    check(&log);
    assert!(matches!(log.append("s-ben-1", &events(1, 0, 3)), Err(AppendError::Erased { .. })));
    assert!(matches!(log.create_session(meta("s-ben-2", "ben")), Err(AppendError::Erased { .. })));
    log.close().unwrap();

    // Nowhere on disk, and no reopened log can read them either.
    assert_eq!(find(&[&data, &keys], canary("ben").as_bytes()), Vec::<PathBuf>::new());
    let log = Log::open(&data, file_options(&keys)).unwrap();
    check(&log);
    let audit = audit::scan(&FsStorage::new(&data)).unwrap().entries;
    let shreds: Vec<_> = audit.iter().filter(|e| e.action == Action::Shred).collect();
    assert_eq!(shreds.len(), 2);
    assert!(matches!(shreds[0].decision, Decision::Denied(_)));
    assert_eq!((shreds[1].decision.clone(), shreds[1].keys.clone()), (Decision::Allowed, done.keys.clone()));
    assert_eq!(shreds[1].ticket.as_deref(), Some("GDPR-17"));
    log.close().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn rotating_the_master_key_keeps_every_session_readable_and_retires_the_old_key() {
    let dir = temp("rotate");
    let (data, keys) = (dir.join("data"), dir.join("keys"));
    let log = Log::open(&data, file_options(&keys)).unwrap();
    log.create_session(meta("s", "u")).unwrap();
    let events = typed("u", 200);
    log.append("s", &events).unwrap();
    let old_master = std::fs::read_to_string(master_file(&keys)).unwrap();
    let old_hex = old_master.lines().find_map(|l| l.strip_prefix("current ")).unwrap().to_owned();
    let (old_fp, _) = log.keys();
    let segments_before = std::fs::read(data.join("segments/00000000000000000000.seg")).unwrap();
    let new_fp = log.rotate_master_key(&admin()).unwrap();
    assert_ne!(old_fp, new_fp);
    assert!(matches!(log.rotate_master_key(&reader()), Err(AppendError::Denied(_))));
    log.close().unwrap();
    assert!(
        std::fs::read(data.join("segments/00000000000000000000.seg")).unwrap().starts_with(&segments_before),
        "no data rewritten"
    );
    let log = Log::open(&data, file_options(&keys)).unwrap();
    assert!(log.read_session(&reader(), "s", 0..=u64::MAX).unwrap() == stored(&events));
    log.close().unwrap();
    // The old master key opens nothing now.
    let old = KeySource { master: Some(Secret::from_hex(&old_hex).unwrap()), ..KeySource::dir(&keys) };
    let err = Log::open(&data, LogOptions { keys: Some(old), ..small_options() }).err().unwrap();
    assert!(matches!(err, OpenError::Keys(KeyError::WrongMasterKey { .. })), "{err}");
    assert!(!err.to_string().contains(&old_hex) && !err.to_string().contains(&old_hex[..16]));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn every_read_is_one_audit_entry_written_before_the_data_and_a_refused_role_gets_nothing() {
    let storage = FaultStorage::new();
    let log = open_fault(&storage, small_options());
    for s in 0..3 {
        log.create_session(meta(&format!("s-{s}"), &format!("u-{s}"))).unwrap();
        log.append(&format!("s-{s}"), &events(s, 0, 100)).unwrap();
    }
    log.close().unwrap();
    let log = open_fault(&storage, small_options());
    let entries = || audit::scan(&storage).unwrap().entries;
    let start = entries().len();
    let ml = Access::new("trainer", Role::Ml, "train the click model");
    let mut reads = 0;
    for s in 0..3 {
        log.read_session(&reader(), &format!("s-{s}"), 0..=u64::MAX).unwrap();
        // The ML role never gets raw events from core, whichever door it tries (refused, and the
        // refusal recorded).
        let denied = log.session_blocks(&ml, &format!("s-{s}"), 0..=u64::MAX);
        assert!(matches!(denied, Err(ReadError::Denied(_))), "ml read raw events");
        reads += 2;
    }
    // A redacted export's blocks give their events only sealed for the redaction: the plain
    // readers refuse.
    let mut blocks = log.read_sessions(&ml, Operation::ExportRedacted, &["s-0", "s-1", "s-2"]).unwrap();
    reads += 1;
    let mut decoder = tracevault_codecs::block::BlockDecoder::new();
    assert!(blocks.iter().all(|b| b.redactable_only()));
    assert!(matches!(blocks[0].read_sealed(0, &mut decoder), Err(ReadError::Denied(_))));
    assert!(matches!(blocks[0].read_open(&mut decoder), Err(ReadError::Denied(_))));
    assert!(matches!(blocks[0].next(), Some(Err(ReadError::Denied(_)))));
    assert!(blocks[0].read_sealed_redactable(0, &mut decoder).is_ok());
    for op in [Operation::ReadRaw, Operation::ReadSteps, Operation::ExportUnredacted] {
        let denied = log.read_sessions(&ml, op, &["s-0"]);
        assert!(matches!(denied, Err(ReadError::Denied(_))), "ml may {op:?}");
        assert!(matches!(log.read_session(&ml, "s-0", 0..=u64::MAX), Err(ReadError::Denied(_))));
        reads += 2;
    }
    // An admin runs the store but does not read what people typed.
    let admin = Access::new("root", Role::Admin, "curious");
    assert!(matches!(log.read_session(&admin, "s-0", 0..=u64::MAX), Err(ReadError::Denied(_))));
    reads += 1;
    let recorder = Access::new("laptop-7", Role::Recorder, "just looking");
    assert!(matches!(log.read_session(&recorder, "s-0", 0..=u64::MAX), Err(ReadError::Denied(_))));
    let no_purpose = Access::new("ada", Role::Auditor, " ");
    assert!(matches!(log.read_session(&no_purpose, "s-0", 0..=u64::MAX), Err(ReadError::Denied(_))));
    reads += 2;
    let new = &entries()[start..];
    assert_eq!(new.len(), reads, "one entry per read, no more, no fewer: {new:#?}");
    assert!(new.iter().all(|e| matches!(e.action, Action::Read | Action::Export)));
    assert_eq!(new[0].sessions, vec!["s-0".to_owned()]);
    assert_eq!(new[0].actor, "test");
    assert!(matches!(new[1].decision, Decision::Denied(_)) && new[1].role == Role::Ml);
    assert_eq!(new[6].sessions.len(), 3);
    assert!(matches!(new[6].decision, Decision::Allowed));
    assert!(new[7..13].iter().all(|e| matches!(e.decision, Decision::Denied(_)) && e.role == Role::Ml));
    assert!(matches!(new[13].decision, Decision::Denied(_)) && new[13].role == Role::Admin);
    assert!(matches!(new[14].decision, Decision::Denied(_)) && new[14].role == Role::Recorder);

    // The audit log's storage fails: the read fails and returns no data, and keeps failing (no
    // entry could be trusted to be durable) until the log is reopened.
    storage.fail_writes(true);
    let err = log.read_session(&reader(), "s-1", 0..=u64::MAX).unwrap_err();
    assert!(matches!(err, ReadError::Audit(_)), "{err}");
    assert!(matches!(log.session_blocks(&reader(), "s-1", 0..=u64::MAX), Err(ReadError::Audit(_))));
    storage.fail_writes(false);
    assert!(matches!(log.read_session(&reader(), "s-1", 0..=u64::MAX), Err(ReadError::Audit(_))));
    drop(log);
    let log = open_fault(&storage, small_options());
    assert_eq!(log.read_session(&reader(), "s-1", 0..=u64::MAX).unwrap(), events(1, 0, 100));
    // The audit log verifies against the heads, which commit to it.
    log.close().unwrap();
    let public = PublicKey::from(&ed25519_dalek_signing_key());
    let report = integrity::verify_audit(&storage, &public).unwrap();
    assert!(report.ok(), "{:?}", report.first_problem);
}

/// The signing key the tests' fixed keys hold.
fn ed25519_dalek_signing_key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[0x22; 32])
}

#[test]
fn key_material_appears_in_no_debug_output_or_error() {
    let master = Secret::random().unwrap();
    let options = LogOptions {
        keys: Some(KeySource::given(master.clone(), Secret::from_bytes([0x33; 32]))),
        ..small_options()
    };
    let shown = format!("{options:?} {master:?}");
    assert!(!shown.contains("333333"), "{shown}");
    assert!(shown.contains("<redacted>") || shown.contains("given"), "{shown}");
    // A wrong key is named by fingerprint only.
    let storage = FaultStorage::new();
    drop(open_fault(&storage, small_options()));
    let wrong = LogOptions {
        keys: Some(KeySource::given(master, Secret::from_bytes([0x22; 32]))),
        ..small_options()
    };
    let err =
        Log::open_with(Arc::new(storage.clone()) as Arc<dyn Storage>, memory_index(), wrong).err().unwrap();
    let text = format!("{err} {err:?}");
    assert!(!text.contains("1111111111") && !text.contains("2222222222"), "{text}");
    assert!(text.contains("master key"), "{text}");
    // An unparsable key in the environment's format is not echoed back.
    let bad = "11".repeat(31) + "zz";
    let err = Secret::from_hex(&bad).unwrap_err();
    assert!(!err.to_string().contains("1111"), "{err}");
}

/// A log of sealed segments (small, so there are several) with a signed head at every checkpoint.
fn sealed_log(dir: &Path) -> (PathBuf, PublicKey, Vec<tracevault_core::SignedHead>) {
    let data = dir.join("data");
    let options = LogOptions {
        keys: Some(test_keys()),
        block_events_max: 32,
        segment_bytes_max: 4096,
        checkpoint_bytes: 2048,
        ..small_options()
    };
    let log = Log::open(&data, options).unwrap();
    for s in 0..4 {
        log.create_session(meta(&format!("s-{s}"), &format!("u-{s}"))).unwrap();
    }
    for round in 0..12 {
        for s in 0..4u64 {
            log.append(&format!("s-{s}"), &events(s * 100 + round, round * 1_000_000, 40)).unwrap();
        }
        log.checkpoint().unwrap();
    }
    let public = log.public_key();
    let heads: Vec<_> = log.signed_heads().unwrap().into_iter().filter(|h| h.tree_size > 0).collect();
    // Consistency between every pair of signed heads, from the ledger.
    for (a, b) in [(0, heads.len() - 1), (heads.len() / 2, heads.len() - 1), (1, 2)] {
        let (old, new) = (&heads[a], &heads[b]);
        let proof = log.consistency_proof(old.tree_size, new.tree_size).unwrap();
        assert!(merkle::verify_consistency(old.tree_size, new.tree_size, &proof, &old.root, &new.root));
    }
    log.close().unwrap();
    (data, public, heads)
}

/// The frames of a segment file: (offset, length) of each, footer last.
fn frames_of(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut at = tracevault_core::files::FILE_HEADER_BYTES;
    let mut out = Vec::new();
    while at < bytes.len() {
        let Parsed::Frame(f) = frame::parse(&bytes[at..]) else { panic!("segment parses") };
        out.push((at, f.bytes.len()));
        at += f.bytes.len();
    }
    out
}

/// A fresh footer for `body` (a segment without its footer), as an attacker would forge one.
fn reseal(body: &[u8], first_frame: u64, frames: u64) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut payload = Vec::new();
    payload.extend_from_slice(&first_frame.to_le_bytes());
    payload.extend_from_slice(&frames.to_le_bytes());
    payload.extend_from_slice(&Sha256::digest(body));
    let mut out = body.to_vec();
    frame::write(&mut out, &FrameHeader::new(FrameKind::Footer, 0), &payload);
    out
}

/// The second sealed segment: (path, its first frame number, bytes).
fn second_segment(data: &Path) -> (PathBuf, u64, Vec<u8>) {
    let mut segs: Vec<_> = files_under(&data.join("segments"));
    segs.sort();
    let path = segs[1].clone();
    let first: u64 = path.file_stem().unwrap().to_str().unwrap().parse().unwrap();
    let bytes = std::fs::read(&path).unwrap();
    (path, first, bytes)
}

#[test]
fn tampering_with_a_sealed_segment_is_named_to_the_frame_and_older_heads_still_prove_their_prefix() {
    let dir = temp("tamper");
    let (data, public, heads) = sealed_log(&dir);
    let pristine = integrity::verify(&FsStorage::new(&data), &public).unwrap();
    assert!(pristine.ok(), "{:?}", pristine.first_problem);
    assert!(pristine.heads >= 4 && pristine.signed_frames == pristine.frames);
    let backup = dir.join("backup");
    copy_dir(&data, &backup);
    let (path, first, bytes) = second_segment(&data);
    let frames: &'static [(usize, usize)] = Box::leak(frames_of(&bytes).into_boxed_slice());
    assert!(frames.len() >= 4, "a sealed segment of several frames: {frames:?}");
    let n = frames.len() - 1; // without the footer
    let k = 2; // the frame tampered with, within the segment
    let footer_at = frames[n].0;

    type Tamper = Box<dyn Fn(&[u8]) -> Vec<u8>>;
    let cases: Vec<(&str, Tamper)> = vec![
        (
            "flip one byte",
            Box::new(move |b: &[u8]| {
                let mut b = b.to_vec();
                b[frames[k].0 + 40] ^= 0x01;
                b
            }),
        ),
        (
            "delete a frame",
            Box::new(move |b: &[u8]| {
                let mut out = b[..frames[k].0].to_vec();
                out.extend_from_slice(&b[frames[k].0 + frames[k].1..]);
                out
            }),
        ),
        (
            "swap two frames",
            Box::new(move |b: &[u8]| {
                let (x, y) = (frames[k], frames[k + 1]);
                let mut out = b[..x.0].to_vec();
                out.extend_from_slice(&b[y.0..y.0 + y.1]);
                out.extend_from_slice(&b[x.0..x.0 + x.1]);
                out.extend_from_slice(&b[y.0 + y.1..]);
                out
            }),
        ),
        (
            "truncate and re-append, with a forged footer",
            Box::new(move |b: &[u8]| {
                // Cut at frame k, append the later frames again in another order, and seal the
                // segment with a footer that matches its new bytes.
                let mut body = b[..frames[k].0].to_vec();
                for &(at, len) in frames[k..n].iter().rev() {
                    body.extend_from_slice(&b[at..at + len]);
                }
                assert_eq!(body.len(), footer_at);
                reseal(&body, first, n as u64)
            }),
        ),
    ];
    for (what, tamper) in &cases {
        std::fs::write(&path, tamper(&bytes)).unwrap();
        let report = integrity::verify(&FsStorage::new(&data), &public).unwrap();
        let problem = report.first_problem.clone().unwrap_or_else(|| panic!("{what}: verify passed"));
        assert_eq!(problem.frame, Some(first + k as u64), "{what}: {problem}");
        assert!(problem.path.ends_with(path.file_name().unwrap()), "{what}: {problem}");
        // Every head signed before the tampered frame still proves the log up to its size.
        let before: Vec<_> = heads.iter().filter(|h| h.tree_size <= first + k as u64).collect();
        assert!(!before.is_empty());
        assert_eq!(report.signed_frames, before.last().unwrap().tree_size, "{what}");
        std::fs::write(&path, &bytes).unwrap();
    }

    // An attacker who also rewrites the ledger to match is caught by the signed heads.
    std::fs::write(&path, cases[3].1(&bytes)).unwrap();
    let mut ledger = Vec::new();
    for seg in {
        let mut s = files_under(&data.join("segments"));
        s.sort();
        s
    } {
        let b = std::fs::read(&seg).unwrap();
        let fs = frames_of(&b);
        let last = if fs.last().is_some_and(|&(at, _)| matches!(frame::parse(&b[at..]), Parsed::Frame(f) if f.header.kind == FrameKind::Footer)) { fs.len() - 1 } else { fs.len() };
        for &(at, len) in &fs[..last] {
            ledger.extend_from_slice(&merkle::leaf_hash(&b[at..at + len]));
        }
    }
    std::fs::write(data.join("integrity/leaves"), &ledger).unwrap();
    let report = integrity::verify(&FsStorage::new(&data), &public).unwrap();
    let problem = report.first_problem.expect("the signed root no longer matches");
    assert!(problem.reason.contains("do not match signed head"), "{problem}");

    // A head signed with another key is refused.
    let report = integrity::verify(
        &FsStorage::new(&backup),
        &PublicKey::from(&ed25519_dalek::SigningKey::from_bytes(&[9; 32])),
    )
    .unwrap();
    assert!(report.first_problem.unwrap().reason.contains("signature does not verify"));
    // Removing the heads does not make an altered log pass unproven.
    std::fs::remove_file(backup.join("integrity/heads")).unwrap();
    let report = integrity::verify(&FsStorage::new(&backup), &public).unwrap();
    let problem = report.first_problem.unwrap();
    assert!(problem.reason.contains("heads were removed"), "{problem}");
    std::fs::remove_file(backup.join("checkpoint")).unwrap();
    let report = integrity::verify(&FsStorage::new(&backup), &public).unwrap();
    assert!(report.first_problem.unwrap().reason.contains("no signed head"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_auditor_proves_one_session_frame_by_frame() {
    let dir = temp("prove");
    let (data, public, _) = sealed_log(&dir);
    let log = Log::open(&data, LogOptions { keys: Some(test_keys()), ..small_options() }).unwrap();
    log.seal_session("s-2").unwrap();
    let proof = log.verify_session("s-2").unwrap();
    assert_eq!(proof.events, 12 * 40);
    assert_eq!(proof.unsealed_events, 0);
    assert!(proof.head.verify_signature(&public));
    for f in &proof.frames {
        assert!(merkle::verify_inclusion(&f.leaf, f.frame, proof.head.tree_size, &f.path, &proof.head.root));
    }
    log.close().unwrap();
    // A block of that session altered on disk: its proof fails, naming it.
    let f = &proof.frames[3];
    let path = data.join(format!("segments/{:020}.seg", f.segment));
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[f.offset as usize + 80] ^= 0x80;
    std::fs::write(&path, &bytes).unwrap();
    let log = Log::open(&data, LogOptions { keys: Some(test_keys()), ..small_options() }).unwrap();
    let err = log.verify_session("s-2").unwrap_err();
    assert!(err.to_string().contains(&format!("frame {}", f.frame)), "{err}");
    drop(log);
    std::fs::remove_dir_all(&dir).unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    for f in files_under(from) {
        let target = to.join(f.strip_prefix(from).unwrap());
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(&f, &target).unwrap();
    }
}

#[test]
fn a_signed_head_garbled_by_a_power_cut_is_cut_on_open_and_one_damaged_earlier_is_reported() {
    let storage = FaultStorage::new();
    let log = open_fault(&storage, small_options());
    log.create_session(meta("s", "u")).unwrap();
    log.append("s", &events(1, 0, 200)).unwrap();
    log.close().unwrap();
    let heads = Path::new("integrity/heads");
    let mut f = storage.open_append(heads).unwrap();
    f.append(&[0xa5; tracevault_core::integrity::HEAD_BYTES]).unwrap();
    f.sync().unwrap();
    drop(f);
    let log = open_fault(&storage, small_options());
    let report = log.verify().unwrap();
    assert!(report.ok(), "{:?}", report.first_problem);
    log.close().unwrap();
    // The first head damaged, later ones intact: evidence, neither cut nor signed over. The open
    // refuses, naming it, and so does verify.
    storage.corrupt(heads, 20, 0x01).unwrap();
    let refused =
        Log::open_with(Arc::new(storage.clone()), memory_index(), small_options()).err().expect("refused");
    assert!(matches!(refused, OpenError::Integrity { .. }), "{refused}");
    assert!(refused.to_string().contains("integrity/heads: at offset 0"), "{refused}");
    let problem = integrity::verify(&storage, &test_keys().public_key().unwrap())
        .unwrap()
        .first_problem
        .expect("a damaged head is named");
    assert!(problem.path.ends_with("heads") && problem.offset == 0, "{problem}");
}
