//! The attacks of whoever can write the data directory (issue 11's review), each now caught and
//! named: laundering by deletion, heads and audit log rolled back, the newest heads dropped, a key
//! store rolled back after a shred, a forged erased slot, a second writer with the index deleted,
//! an index damaged or left half-made by a kill, an audit log cut short; and witnesses that refuse
//! a rewritten history.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use tracevault_core::frame::{self, FrameKind, Parsed};
use tracevault_core::integrity::{self, PublicKey, repaired};
use tracevault_core::log::MasterKeyAfterShred;
use tracevault_core::storage::FsStorage;
use tracevault_core::witness::{CosignRequest, Cosignature, Keeper, Witness, WitnessError};
use tracevault_core::{Access, Action, KeySource, Log, LogOptions, OpenError, Role, SignedHead, layout};

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tracevault-attack-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Options with the keys in `keys` (a managed master key file, as in production).
fn opts(keys: &Path) -> LogOptions {
    LogOptions { keys: Some(KeySource::dir(keys)), block_events_max: 64, ..LogOptions::default() }
}

fn admin(purpose: &str) -> Access {
    Access::new("ops", Role::Admin, purpose)
}

/// A closed log: alice's s-1 (90 events) and bob's s-2 (150), one auditor read of s-1.
fn filled(dir: &Path) -> (PathBuf, PathBuf) {
    let (data, keys) = (dir.join("data"), dir.join("keys"));
    let log = Log::open(&data, opts(&keys)).unwrap();
    log.create_session(meta("s-1", "alice")).unwrap();
    log.append("s-1", &events(1, 0, 90)).unwrap();
    log.create_session(meta("s-2", "bob")).unwrap();
    log.append("s-2", &events(2, 0, 150)).unwrap();
    log.read_session(&reader(), "s-1", 0..=u64::MAX).unwrap();
    log.close().unwrap();
    (data, keys)
}

fn public(keys: &Path) -> PublicKey {
    KeySource::dir(keys).public_key().unwrap()
}

fn verify(data: &Path, keys: &Path) -> integrity::VerifyReport {
    integrity::verify(&FsStorage::new(data), &public(keys)).unwrap()
}

/// The reason a normal open refuses, checking it is an integrity refusal.
fn refused(data: &Path, keys: &Path) -> String {
    match Log::open(data, opts(keys)) {
        Err(e @ OpenError::Integrity { .. }) => e.to_string(),
        Err(other) => panic!("expected an integrity refusal, got: {other}"),
        Ok(_) => panic!("the open was not refused"),
    }
}

fn problem(report: &integrity::VerifyReport) -> String {
    report.first_problem.as_ref().expect("verify finds the problem").to_string()
}

fn heads_len(data: &Path) -> u64 {
    std::fs::metadata(data.join(layout::HEADS)).map_or(0, |m| m.len())
}

/// (offset, length, kind) of every frame of a segment file.
fn frames_of(bytes: &[u8]) -> Vec<(usize, usize, FrameKind)> {
    let mut at = 32;
    let mut out = Vec::new();
    while let Parsed::Frame(f) = frame::parse(&bytes[at..]) {
        out.push((at, f.bytes.len(), f.header.kind));
        at += f.bytes.len();
    }
    out
}

fn copy_file(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(from, to).unwrap();
}

#[test]
fn laundering_by_deletion_is_refused_and_only_an_audited_repair_re_anchors_the_log() {
    let dir = temp("launder");
    let (data, keys) = filled(&dir);
    // Remove a block frame, then the integrity state that would show it.
    let segment = data.join(layout::SEGMENTS.path(0));
    let mut bytes = std::fs::read(&segment).unwrap();
    let (at, len, _) = frames_of(&bytes).into_iter().find(|f| f.2 == FrameKind::Block).unwrap();
    bytes.drain(at..at + len);
    std::fs::write(&segment, &bytes).unwrap();
    std::fs::remove_dir_all(data.join(layout::INTEGRITY_DIR)).unwrap();
    std::fs::remove_file(data.join(layout::CHECKPOINT)).unwrap();
    std::fs::remove_file(data.join(layout::INDEX)).unwrap();
    let reason = refused(&data, &keys);
    assert!(reason.contains("no signed head") && reason.contains("tracevault repair"), "{reason}");
    assert_eq!(heads_len(&data), 0, "nothing was signed over it");
    assert!(problem(&verify(&data, &keys)).contains("no signed head"));

    // A repair re-anchors it, on record: the audit entry says what was found, the repair head says
    // what was missing, and every verify reports the discontinuity.
    let log = Log::open(&data, LogOptions { repair: Some(admin("disk replaced")), ..opts(&keys) }).unwrap();
    let found = &log.repaired().findings;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].bit, repaired::HEADS_MISSING);
    log.close().unwrap();
    let report = verify(&data, &keys);
    assert!(report.ok(), "{:?}", report.first_problem);
    assert_eq!(report.discontinuities.len(), 1);
    assert_eq!(report.discontinuities[0].last_known, None, "no head survived to chain to");
    assert!(report.discontinuities[0].found[0].contains("missing"));
    let audit = tracevault_core::audit::scan(&FsStorage::new(&data)).unwrap();
    let entry = audit.entries.iter().find(|e| e.action == Action::Repair).expect("the repair is recorded");
    assert!(
        entry.purpose.contains("disk replaced") && entry.purpose.contains("no signed head"),
        "{}",
        entry.purpose
    );
    // Only an admin may repair.
    let auditor = Access::new("eve", Role::Auditor, "cover up");
    let denied = Log::open(&data, LogOptions { repair: Some(auditor), ..opts(&keys) }).err().unwrap();
    assert!(denied.to_string().contains("may not repair"), "{denied}");

    // A second repair (the newest head dropped this time): verify reports both discontinuities,
    // the first from the heads file the second one moved aside.
    let log = Log::open(&data, opts(&keys)).unwrap();
    log.append("s-2", &events(3, 3_000_000, 100)).unwrap();
    log.close().unwrap();
    let heads = data.join(layout::HEADS);
    let f = std::fs::OpenOptions::new().write(true).open(&heads).unwrap();
    f.set_len(heads_len(&data) - integrity::HEAD_BYTES as u64).unwrap();
    assert!(refused(&data, &keys).contains("newest heads were removed"));
    let log = Log::open(&data, LogOptions { repair: Some(admin("second")), ..opts(&keys) }).unwrap();
    log.close().unwrap();
    let report = verify(&data, &keys);
    assert!(report.ok(), "{:?}", report.first_problem);
    assert_eq!(report.discontinuities.len(), 2, "{:?}", report.discontinuities);
    assert!(
        report.discontinuities[1].last_known.is_some(),
        "the second repair knew the head before the dropped one"
    );

    // Deleting the integrity state alone is refused the same way.
    std::fs::remove_dir_all(data.join(layout::INTEGRITY_DIR)).unwrap();
    let reason = refused(&data, &keys);
    assert!(reason.contains("heads were removed"), "{reason}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn heads_and_audit_log_copied_back_from_earlier_are_named() {
    let dir = temp("rollback");
    let (data, keys) = filled(&dir);
    let earlier = dir.join("earlier");
    for f in [layout::HEADS, &layout::audit_path().to_string_lossy()] {
        copy_file(&data.join(f), &earlier.join(f));
    }
    let log = Log::open(&data, opts(&keys)).unwrap();
    log.read_session(&reader(), "s-2", 0..=u64::MAX).unwrap();
    log.close().unwrap();
    for f in [layout::HEADS, &layout::audit_path().to_string_lossy()] {
        copy_file(&earlier.join(f), &data.join(f));
    }
    let reason = refused(&data, &keys);
    assert!(reason.contains("newest heads were removed"), "{reason}");
    assert!(problem(&verify(&data, &keys)).contains("newest heads were removed"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn dropping_the_newest_heads_is_named() {
    let dir = temp("drop");
    let (data, keys) = filled(&dir);
    let heads = data.join(layout::HEADS);
    let log = Log::open(&data, opts(&keys)).unwrap();
    log.append("s-2", &events(3, 3_000_000, 100)).unwrap();
    log.close().unwrap();
    let len = heads_len(&data);
    assert!(len >= 3 * integrity::HEAD_BYTES as u64);
    let f = std::fs::OpenOptions::new().write(true).open(&heads).unwrap();
    f.set_len(len - integrity::HEAD_BYTES as u64).unwrap();
    let reason = refused(&data, &keys);
    assert!(reason.contains("newest heads were removed"), "{reason}");
    assert!(problem(&verify(&data, &keys)).contains("newest heads were removed"));
    // Dropping a head from the middle breaks the chain.
    let (data, keys) = filled(&temp("drop-middle"));
    let log = Log::open(&data, opts(&keys)).unwrap();
    log.append("s-2", &events(3, 3_000_000, 100)).unwrap();
    log.close().unwrap();
    let heads = data.join(layout::HEADS);
    let mut bytes = std::fs::read(&heads).unwrap();
    bytes.drain(integrity::HEAD_BYTES..2 * integrity::HEAD_BYTES);
    std::fs::write(&heads, &bytes).unwrap();
    assert!(refused(&data, &keys).contains("does not chain"));
    assert!(problem(&verify(&data, &keys)).contains("does not chain"));
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_dir_all(data.parent().unwrap()).unwrap();
}

#[test]
fn a_key_store_copied_back_after_a_shred_no_longer_opens_or_is_named() {
    // A managed master key: shredding retires it, so the old copy opens with no key that exists.
    let dir = temp("shred-rollback");
    let (data, keys) = filled(&dir);
    let store = data.join(layout::KEYSTORE);
    let before = std::fs::read(&store).unwrap();
    let log = Log::open(&data, opts(&keys)).unwrap();
    let done = log.shred(&admin("erasure request"), "alice").unwrap();
    assert!(matches!(done.master_key, MasterKeyAfterShred::Replaced(_)), "{:?}", done.master_key);
    log.close().unwrap();
    assert!(verify(&data, &keys).ok());
    std::fs::write(&store, &before).unwrap();
    let err = Log::open(&data, opts(&keys)).err().expect("the old key store does not open").to_string();
    assert!(err.contains("wrapped under master key"), "{err}");
    assert!(problem(&verify(&data, &keys)).contains("rolled back"));

    // A master key tracevault cannot replace ($TRACEVAULT_MASTER_KEY): the shred says so, and a
    // key store copied back is refused by the heads, and named by verify.
    let dir2 = temp("shred-rollback-env");
    let data2 = dir2.join("data");
    let log = Log::open(&data2, small_options()).unwrap();
    log.create_session(meta("s-1", "alice")).unwrap();
    log.append("s-1", &events(1, 0, 90)).unwrap();
    log.close().unwrap();
    let store = data2.join(layout::KEYSTORE);
    let before = std::fs::read(&store).unwrap();
    let log = Log::open(&data2, small_options()).unwrap();
    let done = log.shred(&admin("erasure request"), "alice").unwrap();
    assert!(
        matches!(done.master_key, MasterKeyAfterShred::Kept(ref why) if why.contains("TRACEVAULT_MASTER_KEY"))
    );
    log.close().unwrap();
    std::fs::write(&store, &before).unwrap();
    let err = Log::open(&data2, small_options()).err().unwrap().to_string();
    assert!(err.contains("rolled back"), "{err}");
    let report = integrity::verify(&FsStorage::new(&data2), &test_keys().public_key().unwrap()).unwrap();
    assert!(problem(&report).contains("rolled back"));
    // Its change counter forged forward too: the shred the audit log records is finished again on
    // open, and the person stays erased.
    let mut forged = before.clone();
    forged[64..72].copy_from_slice(&99u64.to_le_bytes());
    let crc = crc32c::crc32c(&forged[..92]);
    forged[92..96].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&store, &forged).unwrap();
    let log = Log::open(&data2, small_options()).unwrap();
    assert!(log.read_session(&reader(), "s-1", 0..=u64::MAX).is_err(), "alice stays erased");
    log.close().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_dir_all(&dir2).unwrap();
}

/// Bob's slot (key 2) overwritten with a well-formed erased slot, valid CRC.
fn forge_erased(store: &Path) {
    let mut bytes = std::fs::read(store).unwrap();
    let at = 96 + 128;
    let user: [u8; 32] = bytes[at + 8..at + 40].try_into().unwrap();
    let mut slot = vec![2u8, 0, 0, 0];
    slot.extend_from_slice(&2u32.to_le_bytes());
    slot.extend_from_slice(&user);
    slot.extend_from_slice(&[0; 24 + 48 + 12]);
    let crc = crc32c::crc32c(&slot);
    slot.extend_from_slice(&crc.to_le_bytes());
    bytes[at..at + 128].copy_from_slice(&slot);
    std::fs::write(store, &bytes).unwrap();
}

#[test]
fn a_slot_forged_to_erased_is_named() {
    let dir = temp("forged-slot");
    let (data, keys) = filled(&dir);
    let store = data.join(layout::KEYSTORE);
    let original = std::fs::read(&store).unwrap();
    forge_erased(&store);
    let reason = refused(&data, &keys);
    assert!(reason.contains("altered or replaced"), "{reason}");
    assert!(problem(&verify(&data, &keys)).contains("altered or replaced"));
    // The change counter moved forward as well: still no shred erased key 2.
    let mut bytes = std::fs::read(&store).unwrap();
    bytes[64..72].copy_from_slice(&7u64.to_le_bytes());
    let crc = crc32c::crc32c(&bytes[..92]);
    bytes[92..96].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&store, &bytes).unwrap();
    let reason = refused(&data, &keys);
    assert!(reason.contains("key 2 is erased, but no shred"), "{reason}");
    assert!(problem(&verify(&data, &keys)).contains("key 2 is erased, but no shred"));
    // Swapped for another store's (its master key in the same key directory), or deleted: named.
    let other = temp("forged-slot-other");
    let (other_data, _) = {
        let (d, _) = (other.join("data"), ());
        let log = Log::open(&d, opts(&keys)).unwrap();
        log.create_session(meta("x", "mallory")).unwrap();
        log.append("x", &events(9, 0, 5)).unwrap();
        log.close().unwrap();
        (d, ())
    };
    std::fs::copy(other_data.join(layout::KEYSTORE), &store).unwrap();
    let reason = refused(&data, &keys);
    assert!(reason.contains("keystore/data-keys"), "{reason}");
    assert!(problem(&verify(&data, &keys)).contains("keystore/data-keys"));
    std::fs::remove_dir_all(&other).unwrap();
    drop(original);
    std::fs::remove_file(&store).unwrap();
    let reason = refused(&data, &keys);
    assert!(reason.contains("missing") && reason.contains("restore it from a backup"), "{reason}");
    assert!(problem(&verify(&data, &keys)).contains("missing"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_second_writer_is_refused_even_with_the_index_deleted() {
    let dir = temp("second-writer");
    let (data, keys) = filled(&dir);
    let first = Log::open(&data, opts(&keys)).unwrap();
    std::fs::remove_file(data.join(layout::INDEX)).unwrap();
    let err = Log::open(&data, opts(&keys)).err().expect("a second process is refused");
    assert!(matches!(err, OpenError::Locked { .. }), "{err}");
    first.append("s-2", &events(3, 3_000_000, 10)).unwrap();
    first.close().unwrap();
    let log = Log::open(&data, opts(&keys)).unwrap();
    assert_eq!(log.read_session(&reader(), "s-2", 0..=u64::MAX).unwrap().len(), 160);
    log.close().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_damaged_or_half_made_index_is_rebuilt_from_the_segments() {
    let dir = temp("index");
    let (data, keys) = filled(&dir);
    let index = data.join(layout::INDEX);
    let len = std::fs::metadata(&index).unwrap().len() as usize;
    type Damage<'a> = Box<dyn Fn(&mut Vec<u8>) + 'a>;
    let damages: [(&str, Damage); 4] = [
        (
            "garbage in the middle",
            Box::new(|b: &mut Vec<u8>| b[len / 3..len / 3 + 4096.min(len / 3)].fill(0xa5)),
        ),
        ("cut short", Box::new(|b: &mut Vec<u8>| b.truncate(100))),
        ("not a database", Box::new(|b: &mut Vec<u8>| *b = b"not a redb database".to_vec())),
        ("empty, as a kill during creation leaves it", Box::new(|b: &mut Vec<u8>| b.clear())),
    ];
    for (what, damage) in damages {
        let mut bytes = std::fs::read(&index).unwrap();
        damage(&mut bytes);
        std::fs::write(&index, &bytes).unwrap();
        let log = Log::open(&data, opts(&keys)).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(log.read_session(&reader(), "s-1", 0..=u64::MAX).unwrap(), events(1, 0, 90), "{what}");
        assert_eq!(log.sessions().len(), 2, "{what}");
        log.close().unwrap();
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_store_interrupted_at_creation_opens() {
    // What a kill early in the first open can leave: the directory, an index redb never finished,
    // a key store shorter than its header, an audit log without its header.
    let dir = temp("creation");
    let (data, keys) = (dir.join("data"), dir.join("keys"));
    std::fs::create_dir_all(data.join("keystore")).unwrap();
    std::fs::create_dir_all(data.join("audit")).unwrap();
    std::fs::write(data.join(layout::INDEX), b"\0\0\0").unwrap();
    std::fs::write(data.join(layout::KEYSTORE), b"TVKEY").unwrap();
    std::fs::write(data.join(layout::audit_path()), b"").unwrap();
    let log = Log::open(&data, opts(&keys)).unwrap();
    log.create_session(meta("s", "u")).unwrap();
    log.append("s", &events(1, 0, 10)).unwrap();
    log.close().unwrap();
    assert!(verify(&data, &keys).ok());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_audit_log_cut_short_or_deleted_fails_closed_until_an_audited_repair() {
    for deleted in [false, true] {
        let dir = temp(if deleted { "audit-deleted" } else { "audit-short" });
        let (data, keys) = filled(&dir);
        let path = data.join(layout::audit_path());
        if deleted {
            std::fs::remove_file(&path).unwrap();
        } else {
            let bytes = std::fs::read(&path).unwrap();
            let last = frames_of(&bytes).last().unwrap().0;
            std::fs::write(&path, &bytes[..last]).unwrap();
        }
        // No key is unwrapped without an audit entry, so nothing that needs one goes ahead: the open
        // (its recovery re-seals open blocks) or else the read is refused, saying why.
        let expected = if deleted { "missing" } else { "entries were removed" };
        let err = match Log::open(&data, opts(&keys)) {
            Err(e) => e.to_string(),
            Ok(log) => log.read_session(&reader(), "s-1", 0..=u64::MAX).unwrap_err().to_string(),
        };
        assert!(err.contains(expected) && err.contains("tracevault repair"), "{err}");
        assert!(!deleted || !path.exists(), "a deleted audit log is not recreated");
        assert!(problem(&verify(&data, &keys)).contains("entries were removed"));
        // The audited repair moves what is left aside and starts a new audit log.
        let log =
            Log::open(&data, LogOptions { repair: Some(admin("audit disk lost")), ..opts(&keys) }).unwrap();
        assert_eq!(log.repaired().findings[0].bit, repaired::AUDIT_LOG);
        assert_eq!(log.read_session(&reader(), "s-2", 0..=u64::MAX).unwrap().len(), 150);
        log.close().unwrap();
        let report = verify(&data, &keys);
        assert!(report.ok(), "{:?}", report.first_problem);
        assert_eq!(report.discontinuities.len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[cfg(unix)]
#[test]
fn the_data_directory_is_private_whatever_it_was() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp("modes");
    let (data, keys) = filled(&dir);
    // As an earlier version left it, or a careless copy.
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(data.join(layout::KEYSTORE), std::fs::Permissions::from_mode(0o644)).unwrap();
    Log::open(&data, opts(&keys)).unwrap().close().unwrap();
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
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A witness in this process: the real keeper, without the HTTP in between.
struct Local(Keeper);

impl Witness for Local {
    fn name(&self) -> String {
        "local".into()
    }
    fn latest(&self, log: &PublicKey) -> Result<Option<SignedHead>, WitnessError> {
        self.0.latest(log).map_err(|e| WitnessError::Unreachable(e.to_string()))
    }
    fn add(&self, log: &PublicKey, request: &CosignRequest) -> Result<Cosignature, WitnessError> {
        self.0.cosign(log, request)
    }
}

#[test]
fn witnesses_cosign_a_growing_log_and_refuse_a_rewritten_one() {
    let dir = temp("witness");
    let witnesses = [
        Local(Keeper::open(&dir.join("w1"), vec![]).unwrap()),
        Local(Keeper::open(&dir.join("w2"), vec![]).unwrap()),
    ];
    let keys_of = |ws: &[Local; 2]| ws.iter().map(|w| w.0.public_key()).collect::<Vec<_>>();
    let (data, keys) = filled(&dir);
    let state = |data: &Path| {
        integrity::verify_witnessed(&FsStorage::new(data), &public(&keys), &keys_of(&witnesses)).unwrap()
    };
    let log = Log::open(&data, opts(&keys)).unwrap();
    for w in &witnesses {
        log.cosign(w).unwrap();
    }
    // The log grows; each new head is cosigned with consistency proofs from the last.
    log.append("s-2", &events(5, 5_000_000, 300)).unwrap();
    log.read_session(&reader(), "s-2", 0..=u64::MAX).unwrap();
    log.checkpoint().unwrap();
    for w in &witnesses {
        log.cosign(w).unwrap();
    }
    // What the viewer's badge says: the newest head covering these frames, and who cosigned it.
    let newest = log.signed_heads().unwrap().last().cloned().unwrap();
    let witnessed = log.witnessed(newest.tree_size).unwrap().expect("cosigned");
    assert_eq!((witnessed.counter, witnessed.witnesses.len()), (newest.counter, 2));
    assert!(witnessed.witnesses.contains(&hex::encode(witnesses[0].0.public_key().as_bytes())));
    assert_eq!(
        log.witnessed(newest.tree_size + 1).unwrap(),
        None,
        "no head covers more frames than the log has"
    );
    log.close().unwrap();
    // Close signed no new head (nothing changed since the checkpoint): the newest is cosigned.
    let report = state(&data);
    assert!(report.ok(), "{:?}", report.first_problem);
    assert_eq!(report.cosigned_by.len(), 2);

    // Rolled back whole (heads, audit log, checkpoint, index from an earlier copy): locally
    // consistent, but the next head cannot be cosigned, and verify says so.
    let earlier = dir.join("earlier");
    copy_dir(&data, &earlier);
    let log = Log::open(&data, opts(&keys)).unwrap();
    log.read_session(&reader(), "s-1", 0..=u64::MAX).unwrap();
    log.checkpoint().unwrap();
    for w in &witnesses {
        log.cosign(w).unwrap();
    }
    log.close().unwrap();
    for f in [layout::HEADS, layout::CHECKPOINT, layout::COSIGNATURES] {
        copy_file(&earlier.join(f), &data.join(f));
    }
    copy_file(&earlier.join(layout::audit_path()), &data.join(layout::audit_path()));
    std::fs::remove_file(data.join(layout::INDEX)).unwrap();
    let log = Log::open(&data, opts(&keys)).unwrap();
    log.read_session(&reader(), "s-2", 0..=u64::MAX).unwrap();
    log.checkpoint().unwrap();
    for w in &witnesses {
        let refusal = log.cosign(w).unwrap_err();
        assert!(matches!(refusal, WitnessError::Refused(_)), "{refusal}");
    }
    log.close().unwrap();
    let report = state(&data);
    assert!(problem(&report).contains("not cosigned by witness"), "{}", problem(&report));

    // Laundered (frames removed, integrity state deleted, repaired): refused too.
    let (data, keys) = (earlier.clone(), keys.clone());
    std::fs::remove_dir_all(data.join(layout::INTEGRITY_DIR)).unwrap();
    std::fs::remove_file(data.join(layout::CHECKPOINT)).unwrap();
    let log = Log::open(&data, LogOptions { repair: Some(admin("launder")), ..opts(&keys) }).unwrap();
    for w in &witnesses {
        assert!(matches!(log.cosign(w), Err(WitnessError::Refused(_))));
    }
    log.close().unwrap();
    let report =
        integrity::verify_witnessed(&FsStorage::new(&data), &public(&keys), &keys_of(&witnesses)).unwrap();
    assert!(problem(&report).contains("not cosigned"));
    std::fs::remove_dir_all(&dir).unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_dir(&entry.path(), &target);
        } else if entry.file_name() != "LOCK" {
            std::fs::create_dir_all(to).unwrap();
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Appends a well-formed audit entry that no one made: a shred of key 2 (bob's), "allowed".
fn forge_shred_entry(data: &Path) {
    use tracevault_core::frame::FrameHeader;
    use tracevault_core::{AuditEntry, Decision};
    let path = data.join(layout::audit_path());
    let mut bytes = std::fs::read(&path).unwrap();
    let seq = frames_of(&bytes).len() as u64;
    let entry = AuditEntry {
        seq,
        time_unix_us: 1,
        actor: "admin".into(),
        role: Role::Admin,
        action: Action::Shred,
        sessions: vec!["s-2".into()],
        keys: vec![2],
        purpose: "forged".into(),
        ticket: None,
        decision: Decision::Allowed,
    };
    let payload = rmp_serde::to_vec_named(&entry).unwrap();
    frame::write(&mut bytes, &FrameHeader::new(FrameKind::Audit, seq), &payload);
    std::fs::write(&path, &bytes).unwrap();
}

#[test]
fn a_forged_shred_entry_destroys_no_key() {
    let dir = temp("forged-shred");
    let (data, keys) = filled(&dir);
    let store = data.join(layout::KEYSTORE);
    let before = std::fs::read(&store).unwrap();
    forge_shred_entry(&data);
    // The entry is not under any signed head: it could be a shred a crash interrupted, or a
    // forgery. Either way the key is refused in this process, and never erased by the open.
    let log = Log::open(&data, opts(&keys)).unwrap();
    assert!(log.read_session(&reader(), "s-2", 0..=u64::MAX).is_err(), "withheld");
    assert_eq!(log.session_info("s-2").unwrap().events, 150, "its unsealed events are kept, not dropped");
    assert_eq!(log.read_session(&reader(), "s-1", 0..=u64::MAX).unwrap().len(), 90);
    log.close().unwrap();
    assert_eq!(std::fs::read(&store).unwrap(), before, "the key store is untouched");
    let log = Log::open(&data, opts(&keys)).unwrap();
    assert_eq!(log.session_info("s-2").unwrap().events, 150, "and still there after a checkpoint");
    log.close().unwrap();
    let report = verify(&data, &keys);
    assert!(problem(&report).contains("key 2 is live, but audit entry"), "{}", problem(&report));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn deleted_journal_files_are_named_and_a_repair_takes_the_lost_batches_again() {
    use tracevault_core::Batch;
    let dir = temp("journal");
    let (data, keys) = (dir.join("data"), dir.join("keys"));
    let log = Log::open(&data, opts(&keys)).unwrap();
    log.create_session(meta("s", "u")).unwrap();
    let all = events(1, 0, 100);
    for (i, chunk) in all.chunks(25).enumerate() {
        log.append_batch(Batch {
            session: "s",
            events: chunk,
            batch_id: Some(i as u128 + 1),
            expected_seq: None,
        })
        .unwrap();
    }
    log.close().unwrap();
    // 64 events are sealed; the 36 after them are only in the journal, acknowledged.
    for f in std::fs::read_dir(data.join(layout::JOURNAL.dir)).unwrap() {
        std::fs::remove_file(f.unwrap().path()).unwrap();
    }
    let reason = refused(&data, &keys);
    assert!(
        reason.contains("acknowledged events up to 100") && reason.contains("journal files were deleted"),
        "{reason}"
    );
    let log =
        Log::open(&data, LogOptions { repair: Some(admin("journal disk lost")), ..opts(&keys) }).unwrap();
    assert_eq!(log.repaired().findings[0].bit, repaired::JOURNAL_MISSING);
    // The recorder retries the lost batches: taken again, not acknowledged as duplicates.
    let held = log.read_session(&reader(), "s", 0..=u64::MAX).unwrap().len();
    assert_eq!(held, 64);
    log.append_batch(Batch { session: "s", events: &all[64..75], batch_id: Some(3), expected_seq: None })
        .unwrap();
    log.append_batch(Batch { session: "s", events: &all[75..], batch_id: Some(4), expected_seq: None })
        .unwrap();
    assert_eq!(log.read_session(&reader(), "s", 0..=u64::MAX).unwrap(), all);
    log.close().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn wiping_everything_but_the_key_store_and_the_audit_log_is_refused() {
    let dir = temp("wipe");
    let (data, keys) = filled(&dir);
    for d in [layout::SEGMENTS.dir, layout::JOURNAL.dir, layout::INTEGRITY_DIR] {
        std::fs::remove_dir_all(data.join(d)).unwrap();
    }
    std::fs::remove_file(data.join(layout::CHECKPOINT)).unwrap();
    std::fs::remove_file(data.join(layout::INDEX)).unwrap();
    let reason = refused(&data, &keys);
    assert!(reason.contains("no signed head, but the key store is at change"), "{reason}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_audit_log_repaired_after_a_shred_keeps_the_erasure_on_record() {
    let dir = temp("repair-after-shred");
    let (data, keys) = filled(&dir);
    let log = Log::open(&data, opts(&keys)).unwrap();
    log.shred(&admin("erasure request"), "alice").unwrap();
    log.close().unwrap();
    std::fs::remove_file(data.join(layout::audit_path())).unwrap();
    let log = Log::open(&data, LogOptions { repair: Some(admin("audit disk lost")), ..opts(&keys) }).unwrap();
    assert!(log.read_session(&reader(), "s-1", 0..=u64::MAX).is_err(), "alice stays erased");
    log.close().unwrap();
    let report = verify(&data, &keys);
    assert!(report.ok(), "an honest erasure is not taken for a forged slot: {:?}", report.first_problem);
    assert_eq!(report.keystore.unwrap().erased, 1);
    // And a later normal open after a key change (a crash before its head) does not refuse.
    Log::open(&data, opts(&keys)).unwrap().close().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}
