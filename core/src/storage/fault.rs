//! An in-memory [`Storage`] that can crash: it keeps every file's durable bytes apart from the
//! writes made since its last sync, and [`FaultStorage::crash`] builds the image a power cut would
//! leave, dropping, keeping or garbling each unsynced write. It can also fail writes and syncs on
//! demand, to test that the log poisons itself.
//!
//! What it models: appends are durable only after `sync`; a file created since its directory was
//! last synced may vanish. What it does not: a removed file coming back (the log tolerates stale
//! files anyway), reordering within one write, or a sync that fails after persisting part of the
//! data (a failed sync persists nothing here, which is the more forgiving case for the reader and
//! the stricter one for the writer, which must still refuse to go on).

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{AppendFile, Storage};

/// What a crash does to the writes made since the last sync.
#[derive(Clone, Copy, Debug)]
pub enum CrashPolicy {
    /// Every unsynced write reached the disk (as if the OS flushed just in time).
    KeepAll,
    /// No unsynced write reached the disk, and no unsynced new file survives.
    DropAll,
    /// Each unsynced write is kept, dropped or garbled, and each unsynced new file kept or lost,
    /// at random from this seed.
    Random(u64),
}

#[derive(Clone, Debug, Default)]
struct MemFile {
    /// The bytes as readers see them now.
    data: Vec<u8>,
    /// How many leading bytes of `data` are durable.
    durable_len: usize,
    /// The unsynced appends, as (offset, length), in order.
    pending: Vec<(usize, usize)>,
    /// Whether the directory entry is durable (the file existed at the last `sync_dir`).
    entry_durable: bool,
}

#[derive(Debug, Default)]
struct State {
    files: BTreeMap<PathBuf, MemFile>,
    fail_writes: bool,
    fail_syncs: bool,
    /// Appends and syncs to files under this directory fail (one store failing, the others not).
    fail_under: Option<PathBuf>,
    syncs: u64,
}

/// An in-memory storage for crash and fault tests. Cloning shares the same files.
#[derive(Clone, Debug, Default)]
pub struct FaultStorage {
    state: Arc<Mutex<State>>,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // A panicking test thread must not hide the files from the others.
    state.lock().unwrap_or_else(|e| e.into_inner())
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{}: no such file", path.display()))
}

fn injected(what: &str) -> io::Error {
    io::Error::other(format!("injected {what} failure"))
}

/// SplitMix64: small, seedable, good enough to choose fates.
fn next(seed: &mut u64) -> u64 {
    *seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *seed;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl FaultStorage {
    pub fn new() -> Self {
        FaultStorage::default()
    }

    /// Makes every later append fail (or stop failing).
    pub fn fail_writes(&self, fail: bool) {
        lock(&self.state).fail_writes = fail;
    }

    /// Makes every later append and sync to a file under `dir` fail (`None`: stop failing), such
    /// as the access audit log's alone.
    pub fn fail_writes_under(&self, dir: Option<&Path>) {
        lock(&self.state).fail_under = dir.map(Path::to_owned);
    }

    /// Makes every later sync fail (or stop failing).
    pub fn fail_syncs(&self, fail: bool) {
        lock(&self.state).fail_syncs = fail;
    }

    /// How many file syncs have succeeded.
    pub fn syncs(&self) -> u64 {
        lock(&self.state).syncs
    }

    /// The total bytes of every file, durable or not.
    pub fn total_bytes(&self) -> u64 {
        lock(&self.state).files.values().map(|f| f.data.len() as u64).sum()
    }

    /// The image a crash would leave now, as a new storage whose bytes are all durable. This
    /// storage is left as it was (a process still holding it keeps writing into the old world).
    pub fn crash(&self, policy: CrashPolicy) -> FaultStorage {
        let state = lock(&self.state);
        let mut seed = match policy {
            CrashPolicy::Random(seed) => seed,
            _ => 0,
        };
        let mut files = BTreeMap::new();
        for (path, file) in &state.files {
            let survives = file.entry_durable
                || match policy {
                    CrashPolicy::KeepAll => true,
                    CrashPolicy::DropAll => false,
                    CrashPolicy::Random(_) => next(&mut seed).is_multiple_of(2),
                };
            if !survives {
                continue;
            }
            let mut data = file.data[..file.durable_len].to_vec();
            for &(offset, len) in &file.pending {
                let fate = match policy {
                    CrashPolicy::KeepAll => 0,
                    CrashPolicy::DropAll => 1,
                    CrashPolicy::Random(_) => next(&mut seed) % 3,
                };
                if fate == 1 {
                    continue; // dropped: never reached the disk
                }
                if data.len() < offset + len {
                    data.resize(offset + len, 0);
                }
                let target = &mut data[offset..offset + len];
                if fate == 0 {
                    target.copy_from_slice(&file.data[offset..offset + len]);
                } else {
                    // garbled: the sectors were being written when the power went
                    for b in target.iter_mut() {
                        *b = next(&mut seed) as u8;
                    }
                }
            }
            let durable_len = data.len();
            files.insert(
                path.clone(),
                MemFile { data, durable_len, pending: Vec::new(), entry_durable: true },
            );
        }
        FaultStorage { state: Arc::new(Mutex::new(State { files, ..State::default() })) }
    }

    /// Overwrites one byte of a file in place (durably), as a disk or an attacker might.
    pub fn corrupt(&self, path: &Path, offset: u64, xor: u8) -> io::Result<()> {
        let mut state = lock(&self.state);
        let file = state.files.get_mut(path).ok_or_else(|| not_found(path))?;
        let byte = file
            .data
            .get_mut(offset as usize)
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "offset past the end"))?;
        *byte ^= xor;
        Ok(())
    }
}

struct FaultFile {
    state: Arc<Mutex<State>>,
    path: PathBuf,
    len: u64,
}

impl AppendFile for FaultFile {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        let mut state = lock(&self.state);
        if state.fail_writes || state.fail_under.as_ref().is_some_and(|d| self.path.starts_with(d)) {
            return Err(injected("write"));
        }
        let file = state.files.get_mut(&self.path).ok_or_else(|| not_found(&self.path))?;
        let offset = file.data.len();
        file.data.extend_from_slice(bytes);
        file.pending.push((offset, bytes.len()));
        self.len = file.data.len() as u64;
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        let mut state = lock(&self.state);
        if state.fail_syncs || state.fail_under.as_ref().is_some_and(|d| self.path.starts_with(d)) {
            return Err(injected("sync"));
        }
        let file = state.files.get_mut(&self.path).ok_or_else(|| not_found(&self.path))?;
        file.durable_len = file.data.len();
        file.pending.clear();
        state.syncs += 1;
        Ok(())
    }

    fn len(&self) -> u64 {
        self.len
    }
}

impl Storage for FaultStorage {
    fn create_dir_all(&self, _dir: &Path) -> io::Result<()> {
        Ok(()) // directories are implied by the paths of the files in them
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let state = lock(&self.state);
        Ok(state
            .files
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect())
    }

    fn open_append(&self, path: &Path) -> io::Result<Box<dyn AppendFile>> {
        let mut state = lock(&self.state);
        if state.fail_writes {
            return Err(injected("create"));
        }
        let file = state.files.entry(path.to_owned()).or_default();
        let len = file.data.len() as u64;
        Ok(Box::new(FaultFile { state: self.state.clone(), path: path.to_owned(), len }))
    }

    fn read_at(&self, path: &Path, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let state = lock(&self.state);
        let file = state.files.get(path).ok_or_else(|| not_found(path))?;
        let start = offset as usize;
        let bytes = file
            .data
            .get(start..start + buf.len())
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end of the file"))?;
        buf.copy_from_slice(bytes);
        Ok(())
    }

    fn read_all(&self, path: &Path) -> io::Result<Option<Vec<u8>>> {
        Ok(lock(&self.state).files.get(path).map(|f| f.data.clone()))
    }

    fn len(&self, path: &Path) -> io::Result<u64> {
        let state = lock(&self.state);
        Ok(state.files.get(path).ok_or_else(|| not_found(path))?.data.len() as u64)
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let mut state = lock(&self.state);
        let file = state.files.get_mut(path).ok_or_else(|| not_found(path))?;
        file.data.truncate(len as usize);
        file.durable_len = file.data.len();
        file.pending.clear();
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        lock(&self.state).files.remove(path).map(|_| ()).ok_or_else(|| not_found(path))
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut state = lock(&self.state);
        if state.fail_syncs {
            return Err(injected("directory sync"));
        }
        for (path, file) in state.files.iter_mut() {
            if path.parent() == Some(dir) {
                file.entry_durable = true;
            }
        }
        Ok(())
    }

    fn overwrite(&self, path: &Path, offset: u64, bytes: &[u8]) -> io::Result<()> {
        let mut state = lock(&self.state);
        if state.fail_writes || state.fail_syncs {
            return Err(injected("overwrite"));
        }
        let file = state.files.get_mut(path).ok_or_else(|| not_found(path))?;
        let start = offset as usize;
        let Some(target) = file.data.get_mut(start..start + bytes.len()) else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "overwrite past the end of the file"));
        };
        target.copy_from_slice(bytes);
        // Synced (fdatasync): every byte of the file is durable now.
        file.durable_len = file.data.len();
        file.pending.clear();
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = lock(&self.state);
        if state.fail_writes || state.fail_syncs {
            return Err(injected("rename"));
        }
        let mut file = state.files.remove(from).ok_or_else(|| not_found(from))?;
        file.entry_durable = true;
        state.files.insert(to.to_owned(), file);
        Ok(())
    }

    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut state = lock(&self.state);
        if state.fail_writes || state.fail_syncs {
            return Err(injected("atomic write"));
        }
        let file = MemFile {
            data: bytes.to_vec(),
            durable_len: bytes.len(),
            pending: Vec::new(),
            entry_durable: true,
        };
        state.files.insert(path.to_owned(), file);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_synced_bytes_survive_a_drop_all_crash() {
        let storage = FaultStorage::new();
        let path = Path::new("d/f");
        let mut f = storage.open_append(path).unwrap();
        f.append(b"hello ").unwrap();
        storage.sync_dir(Path::new("d")).unwrap();
        f.sync().unwrap();
        f.append(b"world").unwrap();
        assert_eq!(storage.read_all(path).unwrap().unwrap(), b"hello world");
        let after = storage.crash(CrashPolicy::DropAll);
        assert_eq!(after.read_all(path).unwrap().unwrap(), b"hello ");
        let kept = storage.crash(CrashPolicy::KeepAll);
        assert_eq!(kept.read_all(path).unwrap().unwrap(), b"hello world");
    }

    #[test]
    fn a_new_file_needs_its_directory_synced() {
        let storage = FaultStorage::new();
        let mut f = storage.open_append(Path::new("d/new")).unwrap();
        f.append(b"x").unwrap();
        f.sync().unwrap();
        assert_eq!(storage.crash(CrashPolicy::DropAll).read_all(Path::new("d/new")).unwrap(), None);
        storage.sync_dir(Path::new("d")).unwrap();
        assert!(storage.crash(CrashPolicy::DropAll).read_all(Path::new("d/new")).unwrap().is_some());
    }

    #[test]
    fn random_crashes_keep_the_durable_prefix_and_the_length_bound() {
        let storage = FaultStorage::new();
        let path = Path::new("f");
        let mut f = storage.open_append(path).unwrap();
        storage.sync_dir(Path::new("")).unwrap();
        f.append(b"durable").unwrap();
        f.sync().unwrap();
        for chunk in [b"aaaa", b"bbbb", b"cccc"] {
            f.append(chunk).unwrap();
        }
        for seed in 0..50 {
            let bytes = storage.crash(CrashPolicy::Random(seed)).read_all(path).unwrap().unwrap();
            assert!(bytes.starts_with(b"durable"));
            assert!(bytes.len() <= 19);
        }
    }

    #[test]
    fn injected_failures_fail() {
        let storage = FaultStorage::new();
        let mut f = storage.open_append(Path::new("f")).unwrap();
        storage.fail_syncs(true);
        assert!(f.sync().is_err());
        storage.fail_writes(true);
        assert!(f.append(b"x").is_err());
    }
}
