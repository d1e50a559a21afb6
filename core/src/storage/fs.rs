//! The real file system.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{AppendFile, Storage};

/// Every file tracevault creates is readable by its owner only, and every directory listable by
/// its owner only, whatever the umask: the session directory is in clear, and no other local
/// account has any business reading even the ciphertext.
pub const FILE_MODE: u32 = 0o600;
pub const DIR_MODE: u32 = 0o700;

/// Opens for writing a file created with [`FILE_MODE`] (set again after creation, in case the
/// umask took bits the mode needs).
fn private(options: &mut OpenOptions, path: &Path) -> io::Result<File> {
    let file = options.mode(FILE_MODE).open(path)?;
    let meta = file.metadata()?;
    if meta.permissions().mode() & 0o777 != FILE_MODE {
        file.set_permissions(fs::Permissions::from_mode(FILE_MODE))?;
    }
    Ok(file)
}

/// Makes `path` and everything under it private: directories [`DIR_MODE`], files [`FILE_MODE`].
/// For data directories made by earlier versions (0755/0644) and files other tools made in it.
pub fn make_private(path: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    let want = if meta.is_dir() { DIR_MODE } else { FILE_MODE };
    if meta.permissions().mode() & 0o777 != want {
        fs::set_permissions(path, fs::Permissions::from_mode(want))?;
    }
    if meta.is_dir() {
        for entry in fs::read_dir(path)? {
            make_private(&entry?.path())?;
        }
    }
    Ok(())
}

/// Creates `dir` and its missing parents inside `root` with [`DIR_MODE`].
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir)?;
    let meta = fs::metadata(dir)?;
    if meta.permissions().mode() & 0o777 != DIR_MODE {
        fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE))?;
    }
    Ok(())
}

/// Takes an exclusive flock on the file at `path` (created 0600), without waiting: `None` if
/// another process holds it. Held as long as the returned file stays open (RocksDB's `LOCK`).
/// After locking, the file at the path must still be the one locked: a lock file deleted and
/// recreated between open and flock would otherwise let two processes in.
pub fn try_lock(path: &Path) -> io::Result<Option<File>> {
    use std::os::unix::fs::MetadataExt;
    for _ in 0..3 {
        let file = private(OpenOptions::new().create(true).truncate(false).write(true), path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Ok(None),
            Err(fs::TryLockError::Error(e)) => return Err(e),
        }
        let (held, named) = (file.metadata()?, fs::metadata(path));
        if named.is_ok_and(|n| n.ino() == held.ino() && n.dev() == held.dev()) {
            return Ok(Some(file));
        }
    }
    Ok(None)
}

/// Files under a root directory on the local file system.
#[derive(Debug, Clone)]
pub struct FsStorage {
    root: PathBuf,
}

impl FsStorage {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        FsStorage { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, relative: &Path) -> PathBuf {
        self.root.join(relative)
    }
}

struct FsFile {
    file: File,
    len: u64,
}

impl AppendFile for FsFile {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all(bytes)?;
        self.len += bytes.len() as u64;
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn len(&self) -> u64 {
        self.len
    }
}

fn sync_dir_path(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Storage for FsStorage {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let full = self.path(dir);
        if full.is_dir() {
            return Ok(());
        }
        create_private_dir(&full)?;
        // Make each new entry durable in its parent, from the deepest up to the root.
        let mut at = full.as_path();
        while let Some(parent) = at.parent() {
            sync_dir_path(parent)?;
            if parent == self.root || !parent.starts_with(&self.root) {
                break;
            }
            at = parent;
        }
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let entries = match fs::read_dir(self.path(dir)) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                names.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    fn open_append(&self, path: &Path) -> io::Result<Box<dyn AppendFile>> {
        let file = private(OpenOptions::new().create(true).append(true), &self.path(path))?;
        let len = file.metadata()?.len();
        Ok(Box::new(FsFile { file, len }))
    }

    fn read_at(&self, path: &Path, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        File::open(self.path(path))?.read_exact_at(buf, offset)
    }

    fn read_all(&self, path: &Path) -> io::Result<Option<Vec<u8>>> {
        match fs::read(self.path(path)) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn len(&self, path: &Path) -> io::Result<u64> {
        Ok(fs::metadata(self.path(path))?.len())
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let file = OpenOptions::new().write(true).open(self.path(path))?;
        file.set_len(len)?;
        file.sync_all()
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(self.path(path))
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        sync_dir_path(&self.path(dir))
    }

    fn overwrite(&self, path: &Path, offset: u64, bytes: &[u8]) -> io::Result<()> {
        let file = OpenOptions::new().write(true).open(self.path(path))?;
        if offset + bytes.len() as u64 > file.metadata()?.len() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "overwrite past the end of the file"));
        }
        std::os::unix::fs::FileExt::write_all_at(&file, bytes, offset)?;
        file.sync_data()
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let (from, to) = (self.path(from), self.path(to));
        fs::rename(&from, &to)?;
        sync_dir_path(to.parent().unwrap_or(Path::new(".")))?;
        sync_dir_path(from.parent().unwrap_or(Path::new(".")))
    }

    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let full = self.path(path);
        let mut tmp = full.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        {
            let mut file = private(OpenOptions::new().create(true).write(true).truncate(true), &tmp)?;
            file.write_all(bytes)?;
            file.sync_all()?;
        }
        fs::rename(&tmp, &full)?;
        sync_dir_path(full.parent().unwrap_or(Path::new(".")))
    }
}
