//! Keys: a master key kept outside the data directory, one data key per person wrapped under it
//! in the data directory's key store, and the Ed25519 key that signs the log's tree heads.
//!
//! - The master key and the signing key live in a key directory (by default
//!   `$XDG_CONFIG_HOME/tracevault`, else `~/.config/tracevault`; `$TRACEVAULT_KEY_DIR` overrides
//!   it), mode 0600 in a 0700 directory, created on first use; or they come from
//!   `$TRACEVAULT_MASTER_KEY` / `$TRACEVAULT_SIGNING_KEY` (64 hex digits each). Each data
//!   directory (each *store*, named by a random store id in its key store's header) has its own
//!   master key file, `master-<store id>.key`, so rotating one store's key never touches another.
//! - The key store (`keystore/data-keys` in the data directory) holds one fixed-size slot per data
//!   key: the person it belongs to (as a hash of the user id) and the key, sealed with
//!   XChaCha20-Poly1305 under the master key. A copy of the data directory without the master key
//!   decrypts nothing.
//! - Shredding a person erases their slots (the wrapped key becomes zeros) in an atomic rewrite of
//!   the key store: every frame sealed with that key can never be decrypted again. Then the remaining keys are
//!   re-wrapped under a new master key and the old one destroyed, so a copy of the key store taken
//!   before the shred opens with no key that still exists.
//! - The key store's header counts its changes (keys added, people shredded, rotations); every
//!   signed head commits to that counter and the file's hash, so a rolled-back or forged key store
//!   is named by `verify`.
//! - Rotating the master key re-wraps every slot under a new master key without touching the
//!   data, crash-safely (see [`KeyStore::rotate`]).
//!
//! Key material never appears in `Debug` output or error messages: [`Secret`] prints a
//! fingerprint at most.

mod seal;
mod source;
mod store;

use std::fmt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

pub(crate) use seal::{DataKey, open, seal};
pub use source::{
    ENV_KEY_DIR, ENV_MASTER_KEY, ENV_SIGNING_KEY, KeySource, SIGNING_KEY_FILE, SIGNING_PUB_FILE,
    STORE_ID_BYTES, master_key_file, parse_public_key,
};
pub use store::{
    Inspected, KEYSTORE_HEADER_BYTES, KeyInfo, KeyStore, SLOT_BYTES, SlotState, commitment, inspect,
    user_hash,
};

/// Bytes of every symmetric key, and of an Ed25519 secret key.
pub const KEY_BYTES: usize = 32;
/// Bytes of a Poly1305 tag, added to every sealed payload.
pub const TAG_BYTES: usize = 16;

/// 32 bytes of secret key material. Zeroed when dropped; never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Secret([u8; KEY_BYTES]);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Secret {
    /// A fresh key from the operating system's random source.
    pub fn random() -> Result<Secret, KeyError> {
        let mut bytes = [0u8; KEY_BYTES];
        random_fill(&mut bytes)?;
        Ok(Secret(bytes))
    }

    pub fn from_bytes(bytes: [u8; KEY_BYTES]) -> Secret {
        Secret(bytes)
    }

    /// Parses 64 hex digits. The error never quotes the input.
    pub fn from_hex(text: &str) -> Result<Secret, KeyTextError> {
        parse_hex32(text).map(Secret)
    }

    pub(crate) fn to_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(::hex::encode(self.0))
    }

    pub(crate) fn expose(&self) -> &[u8; KEY_BYTES] {
        &self.0
    }

    /// A public name for the key: the first 8 bytes of a domain-separated SHA-256, in hex.
    /// Reveals nothing about a random 256-bit key.
    pub fn fingerprint(&self) -> String {
        hex(&self.fingerprint_bytes()[..8])
    }

    pub(crate) fn fingerprint_bytes(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"tracevault key fingerprint v1\0");
        h.update(self.0);
        h.finalize().into()
    }
}

/// Bytes as lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    ::hex::encode(bytes)
}

/// 64 hex digits (surrounding whitespace ignored) as 32 bytes. The error never quotes the input:
/// it may be a key.
pub fn parse_hex32(text: &str) -> Result<[u8; KEY_BYTES], KeyTextError> {
    let text = text.trim();
    if text.len() != 2 * KEY_BYTES {
        return Err(KeyTextError(format!(
            "expected {} hex digits, found {} characters",
            2 * KEY_BYTES,
            text.len()
        )));
    }
    let mut bytes = [0u8; KEY_BYTES];
    match ::hex::decode_to_slice(text, &mut bytes) {
        Ok(()) => Ok(bytes),
        Err(e) => {
            bytes.zeroize();
            // The crate's error quotes the character; say only where it is.
            let at = match e {
                ::hex::FromHexError::InvalidHexCharacter { index, .. } => index,
                _ => 0,
            };
            Err(KeyTextError(format!("expected hex digits, found a non-hex character at digit {at}")))
        }
    }
}

pub(crate) fn random_fill(out: &mut [u8]) -> Result<(), KeyError> {
    getrandom::fill(out).map_err(|e| KeyError::Random(e.to_string()))
}

/// A key given as text is not 64 hex digits (the message never quotes the text: it may be a key).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KeyTextError(pub String);

/// Key store and key file errors. None of them carries key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {reason}")]
    Format { path: PathBuf, reason: String },
    #[error("{0}")]
    Config(String),
    #[error(
        "the key store is wrapped under master key {expected}, but the master key given is {found}: \
         is this the right key directory (or ${ENV_MASTER_KEY})?"
    )]
    WrongMasterKey { expected: String, found: String },
    #[error("key {0} was erased (crypto-shredded): the data sealed with it can never be read")]
    Erased(u32),
    #[error("key {key_id}: its slot in the key store is damaged ({reason})")]
    Damaged { key_id: u32, reason: String },
    #[error("key {0} is not in the key store")]
    Unknown(u32),
    #[error("no random bytes from the operating system: {0}")]
    Random(String),
}

impl KeyError {
    pub(crate) fn format(path: &Path, reason: impl Into<String>) -> KeyError {
        KeyError::Format { path: path.to_owned(), reason: reason.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_material_is_never_printed() {
        let secret = Secret::random().unwrap();
        let hex_key = secret.to_hex();
        let source = KeySource::given(secret.clone(), secret.clone());
        let key = DataKey::new(1, &secret);
        for text in [format!("{secret:?}"), format!("{source:?}"), format!("{key:?}")] {
            assert!(!text.contains(hex_key.as_str()) && !text.contains(&hex_key[..16]), "{text}");
        }
        let err = Secret::from_hex(&format!("{}zz", &hex_key[..62])).unwrap_err();
        assert!(!err.0.contains(&hex_key[..16]), "{err}");
    }
}
