//! Every file of a data directory, named once. The log, recovery, `verify`, `stats` and the docs
//! (docs/FORMAT.md, "Files") follow this table: a new kind of file is added here, and `stats`
//! counts it without anyone remembering to.

use std::io;
use std::path::{Path, PathBuf};

use crate::storage::Storage;

/// Bytes of a frame file's magic.
pub const MAGIC_BYTES: usize = 8;

/// A directory of numbered frame files: where it lives, how its files are named, their magic,
/// whether a file is sealed with a hashed footer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileKind {
    pub dir: &'static str,
    pub extension: &'static str,
    pub magic: [u8; MAGIC_BYTES],
    pub hashed: bool,
}

impl FileKind {
    /// `dir/00000000000000000042.ext`: names sort in numeric order.
    pub fn path(&self, number: u64) -> PathBuf {
        Path::new(self.dir).join(format!("{number:020}.{}", self.extension))
    }

    /// The number in a file name of this kind, if it is one.
    pub fn number(&self, name: &str) -> Option<u64> {
        let stem = name.strip_suffix(self.extension)?.strip_suffix('.')?;
        (stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit())).then(|| stem.parse().ok()).flatten()
    }

    /// The numbers of this kind's files in `storage`, ascending.
    pub fn numbers(&self, storage: &dyn Storage) -> io::Result<Vec<u64>> {
        Ok(storage.list(Path::new(self.dir))?.iter().filter_map(|n| self.number(n)).collect())
    }
}

/// Sealed blocks and session records, kept for good.
pub const SEGMENTS: FileKind =
    FileKind { dir: "segments", extension: "seg", magic: *b"TVSEGMNT", hashed: true };
/// Every append, kept until its events are in a synced segment.
pub const JOURNAL: FileKind =
    FileKind { dir: "journal", extension: "wal", magic: *b"TVJOURNL", hashed: false };
/// The access audit log (one file, number 0).
pub const AUDIT: FileKind = FileKind { dir: "audit", extension: "log", magic: *b"TVAUDITL", hashed: false };

/// Held (flock) by the one process that has the log open.
pub const LOCK: &str = "LOCK";
/// Where recovery starts: the index and the segments are complete up to it.
pub const CHECKPOINT: &str = "checkpoint";
/// The session index (redb): a cache, rebuilt from the segments.
pub const INDEX: &str = "index.redb";
pub const KEYSTORE_DIR: &str = "keystore";
/// One wrapped data key per person.
pub const KEYSTORE: &str = "keystore/data-keys";
pub const INTEGRITY_DIR: &str = "integrity";
/// The Merkle leaf of every segment frame.
pub const LEDGER: &str = "integrity/leaves";
/// The signed tree heads.
pub const HEADS: &str = "integrity/heads";
/// Witnesses' cosignatures of signed heads.
pub const COSIGNATURES: &str = "integrity/cosignatures";

/// The access audit log's file.
pub fn audit_path() -> PathBuf {
    AUDIT.path(0)
}

/// What one top-level entry of a data directory is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub name: &'static str,
    pub is_dir: bool,
    /// Rebuilt from the segments when missing (a cache, not evidence).
    pub rebuildable: bool,
    pub holds: &'static str,
}

/// Every top-level entry of a data directory.
pub const ENTRIES: [Entry; 8] = [
    Entry {
        name: SEGMENTS.dir,
        is_dir: true,
        rebuildable: false,
        holds: "sealed blocks and session records",
    },
    Entry {
        name: JOURNAL.dir,
        is_dir: true,
        rebuildable: false,
        holds: "appends not yet in a synced segment",
    },
    Entry { name: CHECKPOINT, is_dir: false, rebuildable: true, holds: "where recovery starts" },
    Entry { name: INDEX, is_dir: false, rebuildable: true, holds: "the session index (redb)" },
    Entry { name: KEYSTORE_DIR, is_dir: true, rebuildable: false, holds: "wrapped data keys" },
    Entry { name: INTEGRITY_DIR, is_dir: true, rebuildable: false, holds: "Merkle leaves and signed heads" },
    Entry { name: AUDIT.dir, is_dir: true, rebuildable: false, holds: "the access audit log" },
    Entry {
        name: LOCK,
        is_dir: false,
        rebuildable: true,
        holds: "the lock of the process that has the log open",
    },
];

/// Bytes of each top-level entry (a directory: the files in it), in [`ENTRIES`] order; an
/// absent entry is 0.
pub fn bytes_by_entry(storage: &dyn Storage) -> Vec<(&'static str, u64)> {
    ENTRIES
        .iter()
        .map(|e| {
            let bytes = if e.is_dir {
                let dir = Path::new(e.name);
                storage
                    .list(dir)
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|n| storage.len(&dir.join(n)).ok())
                    .sum()
            } else {
                storage.len(Path::new(e.name)).unwrap_or(0)
            };
            (e.name, bytes)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_and_parse() {
        assert_eq!(SEGMENTS.path(42), Path::new("segments/00000000000000000042.seg"));
        assert_eq!(SEGMENTS.number("00000000000000000042.seg"), Some(42));
        assert_eq!(SEGMENTS.number("42.seg"), None);
        assert_eq!(SEGMENTS.number("00000000000000000042.seg.tmp"), None);
        assert_eq!(SEGMENTS.number("+0000000000000000042.seg"), None);
    }

    #[test]
    fn every_file_the_log_writes_is_under_an_entry() {
        for path in [LEDGER, HEADS, KEYSTORE] {
            let top = Path::new(path).components().next().unwrap().as_os_str().to_str().unwrap();
            assert!(ENTRIES.iter().any(|e| e.name == top && e.is_dir), "{path}");
        }
    }
}
