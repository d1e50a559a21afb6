//! The durable log: sessions appended in batches, acknowledged only once on disk, recovered intact
//! after any crash.
//!
//! # How an append becomes durable
//! Every append is written as one frame to the *journal* and acknowledged once the journal is
//! synced (group commit: one writer thread, one fdatasync for every append waiting). Its events
//! also join the session's *open block* in memory. When an open block reaches
//! `block_events_max`, it is sealed: encoded as one block and written as a frame to the current
//! *segment*. Segments are synced lazily, at each checkpoint; a journal file is deleted once every
//! event in it is in a synced segment. So a recorder's few-hundred-event batches are stored, in the
//! end, as 4096-event blocks (about 1.7 bytes per event on real input, not the 2.6 of
//! one block per batch), and an acknowledgement costs one fdatasync.
//!
//! # Recovery
//! Opening reads the last checkpoint (the index is complete and the segments durable up to it),
//! scans the segments after it, truncates a torn tail, and replays the journal: every batch whose
//! events are not yet in a sealed block goes back into its session's open block.

mod admin;
mod anchor;
mod append;
mod options;
mod proofs;
mod read;
mod recovery;
mod state;
mod timings;
mod vault;
mod witnessing;
mod writer;

pub use admin::{AccessHistory, MasterKeyAfterShred, Shredded};
pub use anchor::Finding;
pub use append::{Ack, Batch};
pub use options::{LogOptions, RECENT_BATCHES_MAX, SESSION_META_BYTES_MAX, SyncMode};
pub use read::{BlockEvents, SessionBlocks, SessionInfo};
pub use state::Log;
pub use timings::{SYNC_BOUNDS_S, SyncHistogram};
pub use witnessing::Witnessed;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, RwLock};

use crate::audit::{Action, AuditLog, Decision};
use crate::error::{AppendError, OpenError};
use crate::index::{Index, IndexError};
use crate::keys::{self, KeyError, KeySource, KeyStore, SlotState};
use crate::layout;
use crate::policy::{self, Access, Operation};
use crate::storage::{FsStorage, Storage};
use anchor::Anchor;
use state::Request;

use state::{Inner, lock};
use vault::Vault;

/// What a repair found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Repaired {
    /// Each thing that did not verify, as the repair head and its audit entry record it.
    pub findings: Vec<Finding>,
    /// Evidence moved aside (from, to), relative to the data directory: kept, never deleted.
    pub moved: Vec<(PathBuf, PathBuf)>,
}

/// Totals over the whole log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stats {
    pub sessions: u64,
    pub events: u64,
    /// Every file of the log: segments, journal, index, checkpoint, key store, integrity files,
    /// the audit log.
    pub bytes_on_disk: u64,
    pub segment_bytes: u64,
    pub journal_bytes: u64,
}

impl Log {
    /// Opens the log in `dir` on the local file system, recovering from any crash first. With
    /// `options.create` (the default) a missing data directory and its keys are created; without
    /// it (for commands that only read) a directory that holds no log is [`OpenError::Missing`]
    /// and nothing is created.
    ///
    /// The process holds the directory's `LOCK` file (flock) until the log is dropped: a second
    /// process gets [`OpenError::Locked`], whatever happened to the index. The directory is made
    /// private (0700, files 0600). The index is a cache: one that does not open or read is
    /// rebuilt from the segments.
    pub fn open(dir: &Path, options: LogOptions) -> Result<Log, OpenError> {
        if !options.create && !is_data_dir(dir) {
            return Err(OpenError::Missing { path: dir.to_owned() });
        }
        if !dir.is_dir() {
            crate::storage::create_private_dir(dir)
                .map_err(|source| OpenError::Io { path: dir.to_owned(), source })?;
            // The new directory's own entry must be durable too, or a crash could lose the log.
            let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            std::fs::File::open(parent)
                .and_then(|f| f.sync_all())
                .map_err(|source| OpenError::Io { path: parent.to_owned(), source })?;
        }
        let lock = Arc::new(lock_dir(dir)?);
        crate::storage::make_private(dir).map_err(|source| OpenError::Io { path: dir.to_owned(), source })?;
        let mut options = options;
        let keys = match options.keys.take() {
            Some(k) => k,
            None => KeySource::from_env()?,
        };
        check_key_dir_outside(dir, &keys)?;
        options.keys = Some(keys);
        let index_path = dir.join(layout::INDEX);
        let storage: Arc<dyn Storage> = Arc::new(FsStorage::new(dir));
        let db = open_index(&index_path, false)?;
        match Log::open_locked(storage.clone(), db, options.clone(), Some(lock.clone())) {
            Err(OpenError::Index(e)) => {
                tracing::warn!(error = %e, "the session index does not read: rebuilding it from the segments");
                let db = open_index(&index_path, true)?;
                Log::open_locked(storage, db, options, Some(lock))
            }
            opened => opened,
        }
    }

    /// Opens the log on any storage, with its index in `db` (tests use an in-memory redb, which a
    /// crash loses: opening then rebuilds the index from the segments).
    pub fn open_with(
        storage: Arc<dyn Storage>,
        db: redb::Database,
        options: LogOptions,
    ) -> Result<Log, OpenError> {
        Log::open_locked(storage, db, options, None)
    }

    fn open_locked(
        storage: Arc<dyn Storage>,
        db: redb::Database,
        options: LogOptions,
        lock_file: Option<Arc<std::fs::File>>,
    ) -> Result<Log, OpenError> {
        options.check()?;
        if let Some(access) = &options.repair {
            // Checked before anything is looked at or moved.
            policy::check(access, Operation::Repair)
                .map_err(|d| OpenError::Options(format!("repair: {d}")))?;
        }
        let keys = match &options.keys {
            Some(k) => k.clone(),
            None => KeySource::from_env()?,
        };
        let signing = keys.signing_key(options.create)?;
        // First, so that an index that does not open is rebuilt before a repair has moved anything.
        let index = Index::open(db)?;
        // Nothing is signed over state that was not checked against the newest signed head.
        let mut anchor = Anchor::read(storage.as_ref(), &signing.verifying_key(), options.repair.is_some())?;
        anchor.check_keystore_present(storage.as_ref())?;
        if !options.create && storage.len(Path::new(layout::KEYSTORE)).is_err() {
            return Err(OpenError::Missing { path: PathBuf::from(layout::KEYSTORE) });
        }
        let store = KeyStore::open(storage.clone(), keys.clone())?;
        anchor.check_keystore(&store)?;
        let audit = anchor.check_audit(&storage, AuditLog::open(storage.clone(), anchor.audit_anchor())?)?;
        let withheld = anchor.check_shreds(&store, &audit, storage.as_ref())?;
        anchor.check_unsigned(&store, &audit)?;
        let vault = Vault::new(store, audit, withheld);
        let recovered = recovery::recover(storage.as_ref(), &index, &options, &vault, &mut anchor)?;
        if let Some(access) = &options.repair
            && !anchor.findings.is_empty()
        {
            // The repair is on record before the head that records the discontinuity is signed.
            let found: Vec<String> =
                anchor.findings.iter().map(|f| format!("{}: {}", f.path.display(), f.reason)).collect();
            let access = Access {
                purpose: format!("{}; found: {}", access.purpose, found.join("; ")),
                ..access.clone()
            };
            vault.record(&access, Action::Repair, Vec::new(), Vec::new(), Decision::Allowed)?;
            if anchor.bits() & crate::integrity::repaired::AUDIT_LOG != 0 {
                // The audit log that recorded the erasures was moved aside: the new one records the
                // keys erased as the repair found them, so that an erased key is never taken for a
                // forged one.
                let erased: Vec<u32> =
                    vault.keys().into_iter().filter(|k| k.state == SlotState::Erased).map(|k| k.id).collect();
                if !erased.is_empty() {
                    let carried = Access {
                        purpose: "erasures carried over by a repair (the audit log that recorded them was moved aside)"
                            .into(),
                        ..access
                    };
                    vault.record(&carried, Action::Shred, Vec::new(), erased, Decision::Allowed)?;
                }
            }
        }
        let repaired = Repaired { findings: anchor.findings, moved: anchor.moved };
        let inner = Arc::new(Inner {
            storage,
            options,
            sessions: RwLock::new(recovered.sessions),
            next_session_number: Mutex::new(recovered.next_session_number),
            index,
            recent: Mutex::new(recovered.recent),
            poisoned: Mutex::new(None),
            encoders: Mutex::new(Vec::new()),
            open_order: Mutex::new(BTreeSet::new()),
            open_bytes: AtomicU64::new(0),
            append_counter: AtomicU64::new(0),
            journal_files_live: AtomicU64::new(0),
            relieving: AtomicBool::new(false),
            vault,
            signing,
            repaired,
            cosigning: Mutex::new(()),
            sync_times: Default::default(),
            // 256 leaves (8 KiB of ledger) per chunk: a proof reads and hashes a few chunks.
            subtrees: Mutex::new(crate::merkle::Subtrees::new(8)),
        });
        for session in inner.sessions.read().unwrap_or_else(|e| e.into_inner()).values() {
            let mut state = lock(&session.state);
            inner.track_open(&session.id, &mut state, 0, true);
        }
        let (tx, rx): (Sender<Request>, Receiver<Request>) = mpsc::channel();
        let writer = writer::Writer::new(inner.clone(), recovered.writer);
        let handle = std::thread::Builder::new()
            .name("tracevault-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|source| OpenError::Io { path: PathBuf::from("<writer thread>"), source })?;
        let log = Log { inner, tx: Mutex::new(Some(tx)), writer: Mutex::new(Some(handle)), _lock: lock_file };
        // Make what recovery found durable in the index, and start from a clean checkpoint.
        log.checkpoint().map_err(|e| OpenError::Recovery(Box::new(e)))?;
        Ok(log)
    }

    /// What this open repaired ([`LogOptions::repair`]): empty when nothing needed it.
    pub fn repaired(&self) -> &Repaired {
        &self.inner.repaired
    }

    /// Totals, with the bytes of every file of the data directory (as [`layout::ENTRIES`] names
    /// them).
    /// How long the journal's syncs took (each group commit's fdatasync), since the log opened.
    pub fn journal_syncs(&self) -> SyncHistogram {
        self.inner.sync_times.snapshot()
    }

    /// Counts and sizes, summed under the session map's lock: no session is copied (with a
    /// million sessions, copying their metadata cost more memory than the log itself held).
    pub fn stats(&self) -> Stats {
        let (sessions, events) = {
            let map = self.inner.sessions.read().unwrap_or_else(|e| e.into_inner());
            let events = map.values().map(|s| state::lock(&s.state).next_seq).sum();
            (map.len() as u64, events)
        };
        let by_entry = layout::bytes_by_entry(self.inner.storage.as_ref());
        let of = |name: &str| by_entry.iter().find(|(n, _)| *n == name).map_or(0, |(_, b)| *b);
        Stats {
            sessions,
            events,
            bytes_on_disk: by_entry.iter().map(|(_, b)| b).sum(),
            segment_bytes: of(layout::SEGMENTS.dir),
            journal_bytes: of(layout::JOURNAL.dir),
        }
    }

    /// Checkpoints and stops the writer, then gives the index's free pages back. Open blocks stay
    /// in the journal and come back on open.
    pub fn close(self) -> Result<(), AppendError> {
        let result = self.checkpoint();
        self.shutdown();
        if result.is_ok()
            && let Err(e) = self.inner.index.compact()
        {
            // A cache that stays larger than it needs to be: worth a line, not a failed close.
            tracing::warn!(error = %e, "compacting the session index");
        }
        result
    }

    pub(crate) fn shutdown(&self) {
        lock(&self.tx).take();
        if let Some(handle) = lock(&self.writer).take() {
            let _ = handle.join();
        }
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A key directory inside the data directory would put the keys in every copy of the data.
fn check_key_dir_outside(data: &Path, keys: &KeySource) -> Result<(), OpenError> {
    if keys.master.is_some() && keys.signing.is_some() {
        return Ok(());
    }
    let absolute = |p: &Path| {
        let p = std::path::absolute(p).unwrap_or_else(|_| p.to_owned());
        // Resolve symlinks where the path exists, so two spellings of one place compare equal.
        p.canonicalize().unwrap_or(p)
    };
    let (data, key_dir) = (absolute(data), absolute(&keys.dir));
    if key_dir.starts_with(&data) {
        return Err(OpenError::Keys(KeyError::Config(format!(
            "the key directory {} is inside the data directory {}: a copy of the data would carry the keys \
             that decrypt it; keep keys elsewhere (${})",
            key_dir.display(),
            data.display(),
            keys::ENV_KEY_DIR
        ))));
    }
    Ok(())
}

/// Takes the data directory's `LOCK` file, held as long as the log is open.
fn lock_dir(dir: &Path) -> Result<std::fs::File, OpenError> {
    let path = dir.join(layout::LOCK);
    match crate::storage::try_lock(&path) {
        Ok(Some(file)) => Ok(file),
        Ok(None) => Err(OpenError::Locked { path: dir.to_owned() }),
        Err(source) => Err(OpenError::Io { path, source }),
    }
}

/// The index's page cache.
const INDEX_CACHE_BYTES: usize = 64 << 20;

/// Opens (creating) the index database. The index is a cache: a file that redb cannot open (a
/// crash during creation, damage) is removed and created again, and recovery rebuilds it from
/// the segments; `fresh` removes it first. Only "held by another process" and I/O errors on the
/// directory itself are errors.
fn open_index(path: &Path, fresh: bool) -> Result<redb::Database, OpenError> {
    let remove = |path: &Path| match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(OpenError::Io { path: path.to_owned(), source }),
    };
    if fresh {
        remove(path)?;
    }
    // redb caches up to 1 GiB of pages by default: a long-running server's RSS would grow with
    // its index toward that. The index is read at open and for blocks not in memory; 64 MiB of
    // its pages is plenty.
    let create =
        || std::panic::catch_unwind(|| redb::Builder::new().set_cache_size(INDEX_CACHE_BYTES).create(path));
    // A page damaged outside redb makes a plain read panic, and a closed index is compacted (no
    // free pages left for damage to fall on harmlessly): every page's checksum is checked before
    // the index is trusted, and one that fails is rebuilt rather than repaired, since a repair
    // keeps what it can and the index must be whole. (The index is read whole at open anyway.)
    let reason = match create() {
        Ok(Ok(mut db)) => {
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| db.check_integrity())) {
                Ok(Ok(true)) => return Ok(db),
                Ok(Ok(false)) => "its integrity check failed".to_owned(),
                Ok(Err(e)) => format!("its integrity check failed: {e}"),
                Err(_) => "redb panicked checking it".to_owned(),
            }
        }
        Ok(Err(redb::DatabaseError::DatabaseAlreadyOpen)) => {
            return Err(OpenError::Locked { path: path.parent().unwrap_or(path).to_owned() });
        }
        Ok(Err(e)) => e.to_string(),
        Err(_) => "redb panicked opening it".to_owned(),
    };
    tracing::warn!(file = %path.display(), %reason, "the session index does not open: rebuilding it from the segments");
    remove(path)?;
    match create() {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(e)) => Err(OpenError::Index(IndexError::Db(e.into()))),
        Err(_) => Err(OpenError::Index(IndexError::Row("redb panicked creating a new index".into()))),
    }
}

/// Whether `dir` holds a tracevault log (its key store is the one file every log has).
fn is_data_dir(dir: &Path) -> bool {
    // (Or its signed heads, so that a log whose key store was deleted is named as such.)
    dir.join(layout::KEYSTORE).is_file() || dir.join(layout::HEADS).is_file()
}
