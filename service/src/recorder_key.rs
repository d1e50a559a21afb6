//! The server's key for sealed bodies (HPKE, see [`tracevault_codecs::sealed`]): recorders seal
//! every request to its public half, so their spools are unreadable on the device; only this
//! server opens them. It lives in `<data>/recorder.key` (0600, 32 raw bytes), made on first use.
//!
//! It is separate from the store's master key on purpose: a shred rotates the master key, and
//! batches still sealed in recorders' spools must open after it.

use std::path::{Path, PathBuf};

use tracevault_codecs::sealed::PrivateKey;

/// The key file's name in the data directory.
pub const RECORDER_KEY_FILE: &str = "recorder.key";

#[derive(Debug, thiserror::Error)]
#[error("the recorder key {path}: {reason}")]
pub struct KeyFileError {
    path: PathBuf,
    reason: String,
}

/// Loads the key, making it (atomically, 0600) if the data directory has none.
pub fn load_or_create(data: &Path) -> Result<PrivateKey, KeyFileError> {
    let path = data.join(RECORDER_KEY_FILE);
    let err = |reason: String| KeyFileError { path: path.clone(), reason };
    match std::fs::read(&path) {
        Ok(bytes) => {
            return PrivateKey::from_bytes(&bytes).map_err(|e| {
                err(format!("expected 32 bytes of an X25519 private key, found {}: {e}", bytes.len()))
            });
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e.to_string())),
    }
    let key = PrivateKey::generate();
    let tmp = path.with_extension("key.tmp");
    crate::tokens::write_private(&tmp, &key.to_bytes()).map_err(|e| err(e.to_string()))?;
    // A hard link, not a rename: if two servers race on a new store, the first key stays.
    match std::fs::hard_link(&tmp, &path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::remove_file(&tmp).map_err(|e| err(e.to_string()))?;
            return load_or_create(data);
        }
        Err(e) => return Err(err(e.to_string())),
    }
    std::fs::remove_file(&tmp).map_err(|e| err(e.to_string()))?;
    std::fs::File::open(data).and_then(|d| d.sync_all()).map_err(|e| err(e.to_string()))?;
    Ok(key)
}
