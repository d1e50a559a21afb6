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
mod append;
mod options;
mod proofs;
mod read;
mod recovery;
mod state;
mod vault;
mod writer;

pub use admin::Shredded;
pub use append::{Ack, Batch};
pub use options::{LogOptions, RECENT_BATCHES_MAX, SESSION_META_BYTES_MAX, SyncMode};
pub use read::{BlockEvents, SessionBlocks, SessionInfo};
pub use state::Log;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, RwLock};

use crate::audit::AuditLog;
use crate::error::{AppendError, OpenError};
use crate::index::{Index, IndexError};
use crate::keys::{self, KeyError, KeySource, KeyStore};
use crate::layout;
use crate::storage::{FsStorage, Storage};
use state::Request;

use state::{Inner, lock};
use vault::Vault;

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
    pub fn open(dir: &Path, options: LogOptions) -> Result<Log, OpenError> {
        if !options.create && !is_data_dir(dir) {
            return Err(OpenError::Missing { path: dir.to_owned() });
        }
        if !dir.is_dir() {
            std::fs::create_dir_all(dir).map_err(|source| OpenError::Io { path: dir.to_owned(), source })?;
            // The new directory's own entry must be durable too, or a crash could lose the log.
            let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            std::fs::File::open(parent)
                .and_then(|f| f.sync_all())
                .map_err(|source| OpenError::Io { path: parent.to_owned(), source })?;
        }
        let mut options = options;
        let keys = match options.keys.take() {
            Some(k) => k,
            None => KeySource::from_env()?,
        };
        check_key_dir_outside(dir, &keys)?;
        options.keys = Some(keys);
        let index_path = dir.join(layout::INDEX);
        let db = redb::Database::create(&index_path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => OpenError::Locked { path: dir.to_owned() },
            redb::DatabaseError::Storage(redb::StorageError::Io(source)) => {
                OpenError::Io { path: index_path.clone(), source }
            }
            other => OpenError::Index(IndexError::Db(other.into())),
        })?;
        Log::open_with(Arc::new(FsStorage::new(dir)), db, options)
    }

    /// Opens the log on any storage, with its index in `db` (tests use an in-memory redb, which a
    /// crash loses: opening then rebuilds the index from the segments).
    pub fn open_with(
        storage: Arc<dyn Storage>,
        db: redb::Database,
        options: LogOptions,
    ) -> Result<Log, OpenError> {
        options.check()?;
        let keys = match &options.keys {
            Some(k) => k.clone(),
            None => KeySource::from_env()?,
        };
        if !options.create && storage.len(Path::new(layout::KEYSTORE)).is_err() {
            return Err(OpenError::Missing { path: PathBuf::from(layout::KEYSTORE) });
        }
        let store = KeyStore::open(storage.clone(), keys.clone())?;
        let signing = keys.signing_key(options.create)?;
        let vault = Vault::new(store, AuditLog::open(storage.clone())?);
        let index = Index::open(db)?;
        let recovered = recovery::recover(storage.as_ref(), &index, &options, &vault)?;
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
        let log = Log { inner, tx: Mutex::new(Some(tx)), writer: Mutex::new(Some(handle)) };
        // Make what recovery found durable in the index, and start from a clean checkpoint.
        log.checkpoint().map_err(|e| OpenError::Recovery(Box::new(e)))?;
        Ok(log)
    }

    /// Totals, with the bytes of every file of the data directory (as [`layout::ENTRIES`] names
    /// them).
    pub fn stats(&self) -> Stats {
        let sessions = self.sessions();
        let by_entry = layout::bytes_by_entry(self.inner.storage.as_ref());
        let of = |name: &str| by_entry.iter().find(|(n, _)| *n == name).map_or(0, |(_, b)| *b);
        Stats {
            sessions: sessions.len() as u64,
            events: sessions.iter().map(|s| s.events).sum(),
            bytes_on_disk: by_entry.iter().map(|(_, b)| b).sum(),
            segment_bytes: of(layout::SEGMENTS.dir),
            journal_bytes: of(layout::JOURNAL.dir),
        }
    }

    /// Checkpoints and stops the writer. Open blocks stay in the journal and come back on open.
    pub fn close(self) -> Result<(), AppendError> {
        let result = self.checkpoint();
        self.shutdown();
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

/// Whether `dir` holds a tracevault log (its key store is the one file every log has).
fn is_data_dir(dir: &Path) -> bool {
    dir.join(layout::KEYSTORE).is_file()
}
