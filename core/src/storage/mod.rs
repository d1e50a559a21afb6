//! Where the log's bytes live. The log talks to files only through [`Storage`], so tests can put a
//! [`FaultStorage`] underneath: it keeps written and durable bytes apart and builds the image a
//! crash would leave, as SQLite's crash tests and redb's `crash_consistency` test do.
//!
//! The contract is POSIX's, made explicit: bytes appended to a file are durable only after
//! [`AppendFile::sync`]; a newly created or removed file is durable only after [`Storage::sync_dir`]
//! on its directory; [`Storage::truncate`] and [`Storage::write_atomic`] are durable when they
//! return.

mod fault;
mod fs;

use std::io;
use std::path::Path;

pub use fault::{CrashPolicy, FaultStorage};
pub use fs::{DIR_MODE, FILE_MODE, FsStorage, create_private_dir, make_private, try_lock};

/// A file open for appending. Appends are buffered by the OS until [`AppendFile::sync`].
pub trait AppendFile: Send {
    /// Appends `bytes` at the end of the file.
    fn append(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Makes every byte appended so far durable (fdatasync).
    fn sync(&mut self) -> io::Result<()>;
    /// The file's length, including bytes not yet durable.
    fn len(&self) -> u64;
    /// Whether the file is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Files and directories, as the log needs them. Paths are relative to the storage's root.
pub trait Storage: Send + Sync + 'static {
    /// Creates a directory and its parents (durably: the parents are synced).
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// The names of the files in `dir`, sorted; empty if `dir` does not exist.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Opens a file for appending, creating it empty if it does not exist.
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn AppendFile>>;
    /// Reads `buf.len()` bytes at `offset`; an error if the file is shorter.
    fn read_at(&self, path: &Path, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// The whole file; `Ok(None)` if it does not exist.
    fn read_all(&self, path: &Path) -> io::Result<Option<Vec<u8>>>;
    /// The file's current length.
    fn len(&self, path: &Path) -> io::Result<u64>;
    /// Cuts the file to `len` bytes, durably.
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()>;
    /// Removes a file (durable after [`Storage::sync_dir`]).
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Makes the directory's entries (files created or removed in it) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Overwrites `bytes.len()` bytes of an existing file at `offset` (within its length) in place,
    /// durably (the data is synced before returning). For the key store's shredding.
    fn overwrite(&self, path: &Path, offset: u64, bytes: &[u8]) -> io::Result<()>;
    /// Renames a file, durably (both directories synced): how damaged evidence is moved aside
    /// rather than deleted.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Replaces `path` with `bytes` atomically and durably: a temporary file, fsynced, renamed
    /// over `path`, and the directory fsynced. After a crash the file holds the old bytes or the
    /// new ones, never a mix.
    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> io::Result<()>;
}
