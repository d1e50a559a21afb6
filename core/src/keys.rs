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
//! - Shredding a person overwrites their slots in place (the wrapped key becomes zeros) and syncs:
//!   every frame sealed with that key can never be decrypted again.
//! - Rotating the master key re-wraps every slot under a new master key without touching the
//!   data, crash-safely (see [`KeyStore::rotate`]).
//!
//! Key material never appears in `Debug` output or error messages: [`Secret`] prints a
//! fingerprint at most.

use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chacha20poly1305::aead::AeadInOut;
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::error::Corruption;
use crate::frame::{FrameHeader, NONCE_BYTES};
use crate::storage::Storage;

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
    pub fn from_hex(text: &str) -> Result<Secret, String> {
        parse_hex32(text).map(Secret)
    }

    fn to_hex(&self) -> Zeroizing<String> {
        let mut out = Zeroizing::new(String::with_capacity(2 * KEY_BYTES));
        for b in self.0 {
            out.push_str(&format!("{b:02x}"));
        }
        out
    }

    pub(crate) fn expose(&self) -> &[u8; KEY_BYTES] {
        &self.0
    }

    /// A public name for the key: the first 8 bytes of a domain-separated SHA-256, in hex.
    /// Reveals nothing about a random 256-bit key.
    pub fn fingerprint(&self) -> String {
        hex(&self.fingerprint_bytes()[..8])
    }

    fn fingerprint_bytes(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"tracevault key fingerprint v1\0");
        h.update(self.0);
        h.finalize().into()
    }
}

/// Bytes as lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// 64 hex digits (surrounding whitespace ignored) as 32 bytes. The error never quotes the input:
/// it may be a key.
pub fn parse_hex32(text: &str) -> Result<[u8; KEY_BYTES], String> {
    let text = text.trim();
    if text.len() != 2 * KEY_BYTES {
        return Err(format!("expected {} hex digits, found {} characters", 2 * KEY_BYTES, text.len()));
    }
    let mut bytes = [0u8; KEY_BYTES];
    for (i, pair) in text.as_bytes().chunks_exact(2).enumerate() {
        let digit = |c: u8| (c as char).to_digit(16);
        match (digit(pair[0]), digit(pair[1])) {
            (Some(hi), Some(lo)) => bytes[i] = (hi * 16 + lo) as u8,
            _ => {
                bytes.zeroize();
                return Err(format!("expected hex digits, found a non-hex character near digit {}", 2 * i));
            }
        }
    }
    Ok(bytes)
}

pub(crate) fn random_fill(out: &mut [u8]) -> Result<(), KeyError> {
    getrandom::fill(out).map_err(|e| KeyError::Random(e.to_string()))
}

/// Where the master key and the signing key come from.
#[derive(Clone)]
pub struct KeySource {
    /// The key directory: `master.key`, `signing.key` (and `signing.pub`, the public half).
    pub dir: PathBuf,
    /// A master key given directly (`$TRACEVAULT_MASTER_KEY`), used instead of `master.key`.
    pub master: Option<Secret>,
    /// A signing key given directly (`$TRACEVAULT_SIGNING_KEY`), used instead of `signing.key`.
    pub signing: Option<Secret>,
}

impl fmt::Debug for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let given = |s: &Option<Secret>| if s.is_some() { "given" } else { "key file" };
        f.debug_struct("KeySource")
            .field("dir", &self.dir)
            .field("master", &given(&self.master))
            .field("signing", &given(&self.signing))
            .finish()
    }
}

/// The master key file of a store: `master-<store id in hex>.key` in the key directory.
pub fn master_key_file(store: &[u8; STORE_ID_BYTES]) -> String {
    format!("master-{}.key", hex(store))
}
/// Bytes of a store id.
pub const STORE_ID_BYTES: usize = 16;
pub const SIGNING_KEY_FILE: &str = "signing.key";
pub const SIGNING_PUB_FILE: &str = "signing.pub";
pub const ENV_KEY_DIR: &str = "TRACEVAULT_KEY_DIR";
pub const ENV_MASTER_KEY: &str = "TRACEVAULT_MASTER_KEY";
pub const ENV_SIGNING_KEY: &str = "TRACEVAULT_SIGNING_KEY";

impl KeySource {
    /// Keys in files under `dir`, created on first use.
    pub fn dir(dir: impl Into<PathBuf>) -> KeySource {
        KeySource { dir: dir.into(), master: None, signing: None }
    }

    /// Both keys given directly; nothing is read from or written to a key directory (except by
    /// [`KeyStore::rotate`], which refuses: a given key cannot be replaced from here).
    pub fn given(master: Secret, signing: Secret) -> KeySource {
        KeySource { dir: PathBuf::new(), master: Some(master), signing: Some(signing) }
    }

    /// The default: `$TRACEVAULT_KEY_DIR`, else `$XDG_CONFIG_HOME/tracevault`, else
    /// `$HOME/.config/tracevault`; keys from `$TRACEVAULT_MASTER_KEY` / `$TRACEVAULT_SIGNING_KEY`
    /// when set.
    pub fn from_env() -> Result<KeySource, KeyError> {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        let dir = if let Some(d) = var(ENV_KEY_DIR) {
            PathBuf::from(d)
        } else if let Some(d) = var("XDG_CONFIG_HOME") {
            PathBuf::from(d).join("tracevault")
        } else if let Some(home) = var("HOME") {
            PathBuf::from(home).join(".config").join("tracevault")
        } else {
            return Err(KeyError::Config(format!(
                "no key directory: set ${ENV_KEY_DIR} (or $HOME), or give ${ENV_MASTER_KEY} and ${ENV_SIGNING_KEY}"
            )));
        };
        let secret = |name: &str| -> Result<Option<Secret>, KeyError> {
            match std::env::var(name) {
                Ok(v) if !v.is_empty() => Secret::from_hex(&v)
                    .map(Some)
                    .map_err(|reason| KeyError::Config(format!("${name}: {reason}"))),
                _ => Ok(None),
            }
        };
        Ok(KeySource { dir, master: secret(ENV_MASTER_KEY)?, signing: secret(ENV_SIGNING_KEY)? })
    }

    /// A store's master keys: the current one, and the previous one while a rotation is under
    /// way. With `create`, a store without a key file gets a new key (never replacing a file that
    /// appeared meanwhile).
    pub(crate) fn master_keys(
        &self,
        store: &[u8; STORE_ID_BYTES],
        create: bool,
    ) -> Result<MasterKeys, KeyError> {
        if let Some(m) = &self.master {
            return Ok(MasterKeys { current: m.clone(), previous: None, file: None });
        }
        let path = self.dir.join(master_key_file(store));
        if let Some(lines) = read_key_file(&path)? {
            return MasterKeys::parse(&path, &lines);
        }
        if !create {
            return Err(KeyError::Config(format!(
                "no master key for this data directory: {} does not exist (is --key-dir / ${ENV_KEY_DIR} the \
                 directory its keys were created in, or was the key given in ${ENV_MASTER_KEY}?)",
                path.display()
            )));
        }
        let keys = MasterKeys { current: Secret::random()?, previous: None, file: Some(path.clone()) };
        if keys.write_new()? {
            Ok(keys)
        } else {
            // Another process created it first: use theirs.
            let lines = read_key_file(&path)?.ok_or_else(|| KeyError::format(&path, "vanished"))?;
            MasterKeys::parse(&path, &lines)
        }
    }

    /// The public half of the signing key, without creating anything: from the given key, else
    /// `signing.pub`, else `signing.key` in the key directory.
    pub fn public_key(&self) -> Result<ed25519_dalek::VerifyingKey, KeyError> {
        if let Some(s) = &self.signing {
            return Ok(ed25519_dalek::SigningKey::from_bytes(s.expose()).verifying_key());
        }
        let pub_path = self.dir.join(SIGNING_PUB_FILE);
        match std::fs::read_to_string(&pub_path) {
            Ok(text) => {
                return crate::integrity::parse_public_key(&text).map_err(|r| KeyError::format(&pub_path, r));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(KeyError::Io { path: pub_path, source }),
        }
        let path = self.dir.join(SIGNING_KEY_FILE);
        match read_key_file(&path)? {
            Some(lines) => {
                let line = lines.first().ok_or_else(|| KeyError::format(&path, "no key in the file"))?;
                let secret = Secret::from_hex(line).map_err(|r| KeyError::format(&path, r))?;
                Ok(ed25519_dalek::SigningKey::from_bytes(secret.expose()).verifying_key())
            }
            None => Err(KeyError::Config(format!(
                "no signing key in {}: give the public key (the signing.pub of the key directory the log was \
                 written with)",
                self.dir.display()
            ))),
        }
    }

    /// The signing key (created on first use).
    pub(crate) fn signing_key(&self) -> Result<ed25519_dalek::SigningKey, KeyError> {
        if let Some(s) = &self.signing {
            return Ok(ed25519_dalek::SigningKey::from_bytes(s.expose()));
        }
        let path = self.dir.join(SIGNING_KEY_FILE);
        let secret = match read_key_file(&path)? {
            Some(lines) => {
                let line = lines.first().ok_or_else(|| KeyError::format(&path, "no key in the file"))?;
                Secret::from_hex(line).map_err(|r| KeyError::format(&path, r))?
            }
            None => {
                let secret = Secret::random()?;
                let text = Zeroizing::new(format!(
                    "# tracevault signing key (Ed25519). Signs the log's tree heads; keep it secret.\n{}\n",
                    secret.to_hex().as_str()
                ));
                if write_private(&self.dir, SIGNING_KEY_FILE, text.as_bytes(), true)? {
                    secret
                } else {
                    // Another process created it first: use theirs.
                    return self.signing_key();
                }
            }
        };
        let key = ed25519_dalek::SigningKey::from_bytes(secret.expose());
        // The public half, for auditors who verify without any secret.
        let public = format!("{}\n", hex(key.verifying_key().as_bytes()));
        let pub_path = self.dir.join(SIGNING_PUB_FILE);
        if std::fs::read_to_string(&pub_path).ok().as_deref() != Some(public.as_str()) {
            write_private(&self.dir, SIGNING_PUB_FILE, public.as_bytes(), false)?;
        }
        Ok(key)
    }
}

/// The lines of a key file without comments; `None` if it does not exist.
fn read_key_file(path: &Path) -> Result<Option<Vec<Zeroizing<String>>>, KeyError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => Zeroizing::new(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(KeyError::Io { path: path.to_owned(), source }),
    };
    check_private(path)?;
    Ok(Some(
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| Zeroizing::new(l.to_owned()))
            .collect(),
    ))
}

/// Refuses a key file others can read.
#[cfg(unix)]
fn check_private(path: &Path) -> Result<(), KeyError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(|source| KeyError::Io { path: path.to_owned(), source })?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(KeyError::format(
            path,
            format!("mode {:o}: a key file must be readable by its owner only (chmod 600)", mode & 0o777),
        ));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_: &Path) -> Result<(), KeyError> {
    Ok(())
}

/// Writes `name` in `dir` atomically (a temporary file of its own, fsync, then rename, or with
/// `create_new` a hard link that fails if the file exists; then a directory fsync), mode 0600,
/// the directory created mode 0700. Returns false when `create_new` found the file there already.
fn write_private(dir: &Path, name: &str, bytes: &[u8], create_new: bool) -> Result<bool, KeyError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| KeyError::Io { path, source }
    };
    if !dir.is_dir() {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir).map_err(io(dir))?;
    }
    let path = dir.join(name);
    let mut unique = [0u8; 8];
    random_fill(&mut unique)?;
    let tmp = dir.join(format!(".{name}.{}.tmp", hex(&unique)));
    {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp).map_err(io(&tmp))?;
        file.write_all(bytes).map_err(io(&tmp))?;
        file.sync_all().map_err(io(&tmp))?;
    }
    let placed = if create_new {
        let linked = std::fs::hard_link(&tmp, &path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
            Err(e) => return Err(io(&path)(e)),
        }
    } else {
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        true
    };
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))?;
    Ok(placed)
}

/// The master key file's keys.
pub(crate) struct MasterKeys {
    pub current: Secret,
    /// The key being rotated away from, kept until every slot is re-wrapped.
    pub previous: Option<Secret>,
    /// The file they came from (`None` when given directly).
    file: Option<PathBuf>,
}

impl MasterKeys {
    fn parse(path: &Path, lines: &[Zeroizing<String>]) -> Result<MasterKeys, KeyError> {
        let mut current = None;
        let mut previous = None;
        for (i, line) in lines.iter().enumerate() {
            let (name, value) = line.split_once(' ').unwrap_or((line.as_str(), ""));
            let slot = match name {
                "current" => &mut current,
                "previous" => &mut previous,
                // Never quote the line: it may be a bare key.
                _ => {
                    return Err(KeyError::format(
                        path,
                        format!(
                            "key line {} ({} characters): expected \"current <64 hex digits>\" or \"previous <64 hex \
                             digits>\"",
                            i + 1,
                            line.len()
                        ),
                    ));
                }
            };
            *slot =
                Some(Secret::from_hex(value).map_err(|r| KeyError::format(path, format!("{name}: {r}")))?);
        }
        let current = current.ok_or_else(|| KeyError::format(path, "no \"current\" key"))?;
        Ok(MasterKeys { current, previous, file: Some(path.to_owned()) })
    }

    fn text(&self) -> Zeroizing<String> {
        let mut text = Zeroizing::new(String::from(
            "# tracevault master key of one data directory: wraps every person's data key. Keep it secret\n\
             # and backed up: without it nothing in that data directory can be decrypted.\n",
        ));
        text.push_str(&format!("current {}\n", self.current.to_hex().as_str()));
        if let Some(p) = &self.previous {
            text.push_str(&format!("previous {}\n", p.to_hex().as_str()));
        }
        text
    }

    fn split_path(&self) -> Result<(&Path, &str), KeyError> {
        let Some(path) = &self.file else {
            return Err(KeyError::Config(format!(
                "the master key was given in ${ENV_MASTER_KEY}; rotation writes the new key to a key file: \
                 unset ${ENV_MASTER_KEY} and keep the key in the key directory instead"
            )));
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("master.key");
        Ok((dir, name))
    }

    /// Creates the key file; false if one appeared meanwhile.
    fn write_new(&self) -> Result<bool, KeyError> {
        let (dir, name) = self.split_path()?;
        write_private(dir, name, self.text().as_bytes(), true)
    }

    /// Replaces the key file (atomically).
    fn write(&self) -> Result<(), KeyError> {
        let (dir, name) = self.split_path()?;
        write_private(dir, name, self.text().as_bytes(), false).map(|_| ())
    }
}

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
    fn format(path: &Path, reason: impl Into<String>) -> KeyError {
        KeyError::Format { path: path.to_owned(), reason: reason.into() }
    }
}

/// One person's data key, unwrapped, ready to seal and open frames. Zeroed when dropped.
pub struct DataKey {
    pub id: u32,
    cipher: XChaCha20Poly1305,
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DataKey({}, <redacted>)", self.id)
    }
}

impl DataKey {
    fn new(id: u32, key: &Secret) -> DataKey {
        DataKey { id, cipher: XChaCha20Poly1305::new(&(*key.expose()).into()) }
    }
}

// The key store file: a header, then one fixed-size slot per data key (slot i holds key i + 1).
pub(crate) const KEYSTORE_PATH: &str = "keystore/data-keys";
pub(crate) const KEYSTORE_DIR: &str = "keystore";
const KEYSTORE_MAGIC: [u8; 8] = *b"TVKEYSTR";
const KEYSTORE_VERSION: u32 = 1;
/// magic, version, reserved u32, store id, master key fingerprint, reserved, crc32c.
pub const KEYSTORE_HEADER_BYTES: usize = 8 + 4 + 4 + STORE_ID_BYTES + 32 + 28 + 4;
const _: () = assert!(KEYSTORE_HEADER_BYTES == 96);
const HEADER_OFFSET_STORE: usize = 16;
const HEADER_OFFSET_MASTER: usize = HEADER_OFFSET_STORE + STORE_ID_BYTES;
/// state u8, reserved [3], key id u32, user hash [32], nonce [24], wrapped key + tag [48],
/// reserved [12], crc32c u32.
pub const SLOT_BYTES: usize = 1 + 3 + 4 + 32 + NONCE_BYTES + KEY_BYTES + TAG_BYTES + 12 + 4;
const _: () = assert!(SLOT_BYTES == 128);
const SLOT_LIVE: u8 = 1;
const SLOT_ERASED: u8 = 2;
const SLOT_OFFSET_KEY_ID: usize = 4;
const SLOT_OFFSET_USER: usize = 8;
const SLOT_OFFSET_NONCE: usize = SLOT_OFFSET_USER + 32;
const SLOT_OFFSET_WRAPPED: usize = SLOT_OFFSET_NONCE + NONCE_BYTES;
const SLOT_OFFSET_CRC: usize = SLOT_BYTES - 4;

/// The store's name for a person: SHA-256 of their user id, domain-separated. (A user id is not
/// secret, it is in the session records; the hash just gives every slot the same size.)
pub fn user_hash(user: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"tracevault user v1\0");
    h.update(user.as_bytes());
    h.finalize().into()
}

/// What a slot holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SlotState {
    Live,
    /// Crypto-shredded: the wrapped key is zeros.
    Erased,
    /// Unreadable (a torn overwrite or a damaged disk); its key cannot be used.
    Damaged(String),
}

#[derive(Clone)]
struct Slot {
    state: SlotState,
    user: [u8; 32],
    nonce: [u8; NONCE_BYTES],
    wrapped: [u8; KEY_BYTES + TAG_BYTES],
    /// A damaged slot's bytes, kept as found (a rotation copies them, it does not judge them).
    raw: Option<Box<[u8; SLOT_BYTES]>>,
}

fn wrap_aad(key_id: u32, user: &[u8; 32]) -> Vec<u8> {
    let mut aad = b"tracevault data key v1\0".to_vec();
    aad.extend_from_slice(&key_id.to_le_bytes());
    aad.extend_from_slice(user);
    aad
}

impl Slot {
    fn to_bytes(&self, key_id: u32) -> [u8; SLOT_BYTES] {
        if let Some(raw) = &self.raw {
            return **raw;
        }
        let mut b = [0u8; SLOT_BYTES];
        b[0] = match self.state {
            SlotState::Live => SLOT_LIVE,
            _ => SLOT_ERASED,
        };
        b[SLOT_OFFSET_KEY_ID..SLOT_OFFSET_KEY_ID + 4].copy_from_slice(&key_id.to_le_bytes());
        b[SLOT_OFFSET_USER..SLOT_OFFSET_USER + 32].copy_from_slice(&self.user);
        if self.state == SlotState::Live {
            b[SLOT_OFFSET_NONCE..SLOT_OFFSET_NONCE + NONCE_BYTES].copy_from_slice(&self.nonce);
            b[SLOT_OFFSET_WRAPPED..SLOT_OFFSET_WRAPPED + KEY_BYTES + TAG_BYTES]
                .copy_from_slice(&self.wrapped);
        }
        let crc = crc32c::crc32c(&b[..SLOT_OFFSET_CRC]);
        b[SLOT_OFFSET_CRC..].copy_from_slice(&crc.to_le_bytes());
        b
    }

    fn from_bytes(b: &[u8], key_id: u32) -> Slot {
        let mut slot = Slot {
            state: SlotState::Live,
            user: b[SLOT_OFFSET_USER..SLOT_OFFSET_USER + 32].try_into().unwrap(),
            nonce: b[SLOT_OFFSET_NONCE..SLOT_OFFSET_NONCE + NONCE_BYTES].try_into().unwrap(),
            wrapped: b[SLOT_OFFSET_WRAPPED..SLOT_OFFSET_WRAPPED + KEY_BYTES + TAG_BYTES].try_into().unwrap(),
            raw: None,
        };
        let crc = u32::from_le_bytes(b[SLOT_OFFSET_CRC..].try_into().unwrap());
        let stored_id = u32::from_le_bytes(b[SLOT_OFFSET_KEY_ID..SLOT_OFFSET_KEY_ID + 4].try_into().unwrap());
        slot.state = if crc != crc32c::crc32c(&b[..SLOT_OFFSET_CRC]) {
            SlotState::Damaged("CRC32C mismatch".into())
        } else if stored_id != key_id {
            SlotState::Damaged(format!("slot says key {stored_id}"))
        } else {
            match b[0] {
                SLOT_LIVE => SlotState::Live,
                SLOT_ERASED => SlotState::Erased,
                other => SlotState::Damaged(format!("unknown slot state {other}")),
            }
        };
        if matches!(slot.state, SlotState::Damaged(_)) {
            slot.raw = Some(Box::new(b.try_into().expect("a whole slot")));
        }
        slot
    }

    fn erased(user: [u8; 32]) -> Slot {
        Slot {
            state: SlotState::Erased,
            user,
            nonce: [0; NONCE_BYTES],
            wrapped: [0; KEY_BYTES + TAG_BYTES],
            raw: None,
        }
    }

    fn wrap(master: &Secret, key_id: u32, user: [u8; 32], key: &Secret) -> Result<Slot, KeyError> {
        let mut nonce = [0u8; NONCE_BYTES];
        random_fill(&mut nonce)?;
        let cipher = XChaCha20Poly1305::new(&(*master.expose()).into());
        let mut buf = Zeroizing::new(key.expose().to_vec());
        cipher
            .encrypt_in_place(&XNonce::from(nonce), &wrap_aad(key_id, &user), &mut *buf)
            .map_err(|_| KeyError::Config("wrapping a data key failed".into()))?;
        let wrapped = buf.as_slice().try_into().expect("32 bytes of key and a 16-byte tag");
        Ok(Slot { state: SlotState::Live, user, nonce, wrapped, raw: None })
    }

    fn unwrap(&self, master: &Secret, key_id: u32) -> Result<Secret, KeyError> {
        match &self.state {
            SlotState::Live => {}
            SlotState::Erased => return Err(KeyError::Erased(key_id)),
            SlotState::Damaged(reason) => return Err(KeyError::Damaged { key_id, reason: reason.clone() }),
        }
        let cipher = XChaCha20Poly1305::new(&(*master.expose()).into());
        let mut buf = Zeroizing::new(self.wrapped.to_vec());
        cipher
            .decrypt_in_place(&XNonce::from(self.nonce), &wrap_aad(key_id, &self.user), &mut *buf)
            .map_err(|_| KeyError::Damaged {
                key_id,
                reason: "the wrapped key does not authenticate under the master key".into(),
            })?;
        Ok(Secret(buf.as_slice().try_into().expect("32 bytes")))
    }
}

fn keystore_header(store: &[u8; STORE_ID_BYTES], master: &Secret) -> [u8; KEYSTORE_HEADER_BYTES] {
    let mut h = [0u8; KEYSTORE_HEADER_BYTES];
    h[..8].copy_from_slice(&KEYSTORE_MAGIC);
    h[8..12].copy_from_slice(&KEYSTORE_VERSION.to_le_bytes());
    h[HEADER_OFFSET_STORE..HEADER_OFFSET_MASTER].copy_from_slice(store);
    h[HEADER_OFFSET_MASTER..HEADER_OFFSET_MASTER + 32].copy_from_slice(&master.fingerprint_bytes());
    let crc = crc32c::crc32c(&h[..KEYSTORE_HEADER_BYTES - 4]);
    h[KEYSTORE_HEADER_BYTES - 4..].copy_from_slice(&crc.to_le_bytes());
    h
}

/// The data keys of everyone in the log, wrapped under the master key.
pub struct KeyStore {
    storage: Arc<dyn Storage>,
    source: KeySource,
    /// The store's id: which master key file in the key directory is its own.
    store: [u8; STORE_ID_BYTES],
    master: Secret,
    /// Slot `i` holds key `i + 1`.
    slots: Vec<Slot>,
    /// Person -> their newest key id.
    by_user: HashMap<[u8; 32], u32>,
}

impl fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyStore")
            .field("master", &self.master.fingerprint())
            .field("keys", &self.slots.len())
            .finish_non_exhaustive()
    }
}

/// One key of the store, as `tracevault keys` lists it (no key material).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyInfo {
    pub id: u32,
    pub user_hash: [u8; 32],
    pub state: SlotState,
}

impl KeyStore {
    /// Opens the data directory's key store (creating it on first use), finishing a rotation a
    /// crash interrupted.
    pub fn open(storage: Arc<dyn Storage>, source: KeySource) -> Result<KeyStore, KeyError> {
        let path = Path::new(KEYSTORE_PATH);
        let io = |source| KeyError::Io { path: path.to_owned(), source };
        storage.create_dir_all(Path::new(KEYSTORE_DIR)).map_err(io)?;
        let bytes = match storage.read_all(path).map_err(io)? {
            Some(b) if b.len() >= KEYSTORE_HEADER_BYTES => b,
            // Absent, or created just before a crash: a new, empty store, with a new id and its
            // own master key (created first, so a crash leaves at worst an unused key file).
            _ => {
                let mut store = [0u8; STORE_ID_BYTES];
                random_fill(&mut store)?;
                let keys = source.master_keys(&store, true)?;
                let header = keystore_header(&store, &keys.current);
                storage.write_atomic(path, &header).map_err(io)?;
                header.to_vec()
            }
        };
        let header = &bytes[..KEYSTORE_HEADER_BYTES];
        let crc = u32::from_le_bytes(header[KEYSTORE_HEADER_BYTES - 4..].try_into().unwrap());
        if header[..8] != KEYSTORE_MAGIC || crc != crc32c::crc32c(&header[..KEYSTORE_HEADER_BYTES - 4]) {
            return Err(KeyError::format(path, "not a key store, or its header is damaged"));
        }
        let version = u32::from_le_bytes(header[8..12].try_into().unwrap());
        if version != KEYSTORE_VERSION {
            return Err(KeyError::format(
                path,
                format!("key store version {version}, this build reads {KEYSTORE_VERSION}"),
            ));
        }
        let store_id: [u8; STORE_ID_BYTES] =
            header[HEADER_OFFSET_STORE..HEADER_OFFSET_MASTER].try_into().unwrap();
        let wrapped_under: [u8; 32] =
            header[HEADER_OFFSET_MASTER..HEADER_OFFSET_MASTER + 32].try_into().unwrap();
        let mut keys = source.master_keys(&store_id, false)?;
        let mut unfinished_rotation = false;
        let master = if wrapped_under == keys.current.fingerprint_bytes() {
            keys.current.clone()
        } else if let Some(previous) =
            keys.previous.as_ref().filter(|p| p.fingerprint_bytes() == wrapped_under)
        {
            unfinished_rotation = true;
            previous.clone()
        } else {
            return Err(KeyError::WrongMasterKey {
                expected: hex(&wrapped_under[..8]),
                found: keys.current.fingerprint(),
            });
        };
        // A torn last slot was never acknowledged (a slot is synced before its key is used).
        let whole = (bytes.len() - KEYSTORE_HEADER_BYTES) / SLOT_BYTES;
        let end = KEYSTORE_HEADER_BYTES + whole * SLOT_BYTES;
        if end != bytes.len() {
            storage.truncate(path, end as u64).map_err(io)?;
        }
        let mut store =
            KeyStore { storage, source, store: store_id, master, slots: Vec::new(), by_user: HashMap::new() };
        for (i, chunk) in bytes[KEYSTORE_HEADER_BYTES..end].chunks_exact(SLOT_BYTES).enumerate() {
            let id = i as u32 + 1;
            let slot = Slot::from_bytes(chunk, id);
            // A damaged slot names nobody reliably (a power cut may have garbled a slot that was
            // never used): it stays a hole, and its person gets a new key if they need one.
            if !matches!(slot.state, SlotState::Damaged(_)) {
                store.by_user.insert(slot.user, id);
            }
            store.slots.push(slot);
        }
        if unfinished_rotation {
            // Re-wrap under the current key, then forget the previous one.
            let current = keys.current.clone();
            store.rewrite_under(current)?;
            keys.previous = None;
            keys.write()?;
        } else if keys.previous.is_some() {
            keys.previous = None;
            keys.write()?;
        }
        Ok(store)
    }

    /// The fingerprint of the master key the store is wrapped under.
    pub fn master_fingerprint(&self) -> String {
        self.master.fingerprint()
    }

    /// Every key, without key material.
    pub fn keys(&self) -> Vec<KeyInfo> {
        self.slots
            .iter()
            .enumerate()
            .map(|(i, s)| KeyInfo { id: i as u32 + 1, user_hash: s.user, state: s.state.clone() })
            .collect()
    }

    /// The person's current key id and its state, if they have one.
    pub fn key_of(&self, user: &str) -> Option<(u32, SlotState)> {
        let id = *self.by_user.get(&user_hash(user))?;
        Some((id, self.slots[id as usize - 1].state.clone()))
    }

    /// The person's key id, creating (and durably storing) a key if they have none, with the new
    /// key itself when it was just created (nothing was unwrapped). An erased person gets no new
    /// key: [`KeyError::Erased`].
    pub fn key_for_user(&mut self, user: &str) -> Result<(u32, Option<DataKey>), KeyError> {
        let hash = user_hash(user);
        if let Some(&id) = self.by_user.get(&hash) {
            return match &self.slots[id as usize - 1].state {
                SlotState::Live => Ok((id, None)),
                SlotState::Erased => Err(KeyError::Erased(id)),
                SlotState::Damaged(reason) => Err(KeyError::Damaged { key_id: id, reason: reason.clone() }),
            };
        }
        let id = self.slots.len() as u32 + 1;
        let key = Secret::random()?;
        let slot = Slot::wrap(&self.master, id, hash, &key)?;
        let path = Path::new(KEYSTORE_PATH);
        let io = |source| KeyError::Io { path: path.to_owned(), source };
        let mut file = self.storage.open_append(path).map_err(io)?;
        let expected = (KEYSTORE_HEADER_BYTES + self.slots.len() * SLOT_BYTES) as u64;
        if file.len() != expected {
            return Err(KeyError::format(path, format!("{} bytes, expected {expected}", file.len())));
        }
        file.append(&slot.to_bytes(id)).map_err(io)?;
        file.sync().map_err(io)?;
        self.slots.push(slot);
        self.by_user.insert(hash, id);
        Ok((id, Some(DataKey::new(id, &key))))
    }

    /// Whether key `id` can be unwrapped: `Ok` for a live key, else why not.
    pub fn check(&self, id: u32) -> Result<(), KeyError> {
        let slot = id.checked_sub(1).and_then(|i| self.slots.get(i as usize)).ok_or(KeyError::Unknown(id))?;
        match &slot.state {
            SlotState::Live => Ok(()),
            SlotState::Erased => Err(KeyError::Erased(id)),
            SlotState::Damaged(reason) => Err(KeyError::Damaged { key_id: id, reason: reason.clone() }),
        }
    }

    /// Unwraps a data key.
    pub(crate) fn unwrap(&self, id: u32) -> Result<DataKey, KeyError> {
        let slot = id.checked_sub(1).and_then(|i| self.slots.get(i as usize)).ok_or(KeyError::Unknown(id))?;
        let key = slot.unwrap(&self.master, id)?;
        Ok(DataKey::new(id, &key))
    }

    /// Every key id of a person: each slot naming them, live or erased.
    pub fn keys_of(&self, user: &str) -> Vec<u32> {
        let hash = user_hash(user);
        (0..self.slots.len()).filter(|&i| self.slots[i].user == hash).map(|i| i as u32 + 1).collect()
    }

    /// Crypto-shreds a person: overwrites in place, with an erased slot (the wrapped key zeroed),
    /// every slot naming them and every slot in `also` (the keys their sessions' frames name: a
    /// damaged slot may no longer name its person, but must go too), syncing each. Returns the
    /// key ids erased (empty if there were none left).
    pub fn shred(&mut self, user: &str, also: &[u32]) -> Result<Vec<u32>, KeyError> {
        let hash = user_hash(user);
        let path = Path::new(KEYSTORE_PATH);
        let mut erased = Vec::new();
        for i in 0..self.slots.len() {
            let id = i as u32 + 1;
            let theirs = self.slots[i].user == hash || also.contains(&id);
            if !theirs || self.slots[i].state == SlotState::Erased {
                continue;
            }
            let slot = Slot::erased(hash);
            let offset = (KEYSTORE_HEADER_BYTES + i * SLOT_BYTES) as u64;
            self.storage
                .overwrite(path, offset, &slot.to_bytes(id))
                .map_err(|source| KeyError::Io { path: path.to_owned(), source })?;
            self.slots[i] = slot;
            erased.push(id);
        }
        Ok(erased)
    }

    /// Rotates the master key: every slot is re-wrapped under a new key; no frame is touched.
    ///
    /// Crash-safe in three durable steps: (1) the key file gets the new key as `current` and the
    /// old one as `previous`; (2) the key store is rewritten under the new key (a temporary file
    /// renamed over it); (3) the key file drops `previous`. A crash after (1) or (2) leaves a store
    /// wrapped under one of the two keys in the file, and the next open finishes the rotation.
    /// Returns the new key's fingerprint.
    pub fn rotate(&mut self) -> Result<String, KeyError> {
        let mut keys = self.source.master_keys(&self.store, false)?;
        if keys.file.is_none() {
            return keys.write().map(|_| String::new()); // the error explaining why not
        }
        let new = Secret::random()?;
        keys.previous = Some(self.master.clone());
        keys.current = new.clone();
        keys.write()?;
        self.rewrite_under(new.clone())?;
        keys.previous = None;
        keys.write()?;
        Ok(new.fingerprint())
    }

    #[cfg(test)]
    fn rotate_given_for_test(&mut self, new: Secret) -> Result<(), KeyError> {
        self.rewrite_under(new)
    }

    fn rewrite_under(&mut self, new: Secret) -> Result<(), KeyError> {
        let mut bytes = keystore_header(&self.store, &new).to_vec();
        let mut slots = Vec::with_capacity(self.slots.len());
        for (i, slot) in self.slots.iter().enumerate() {
            let id = i as u32 + 1;
            let next = match slot.state {
                SlotState::Live => Slot::wrap(&new, id, slot.user, &slot.unwrap(&self.master, id)?)?,
                _ => slot.clone(),
            };
            bytes.extend_from_slice(&next.to_bytes(id));
            slots.push(next);
        }
        let path = Path::new(KEYSTORE_PATH);
        self.storage
            .write_atomic(path, &bytes)
            .map_err(|source| KeyError::Io { path: path.to_owned(), source })?;
        self.slots = slots;
        self.master = new;
        Ok(())
    }
}

/// The associated data of a sealed frame payload: every header field but the nonce, and the
/// payload's cleartext prefix. A frame moved to another session, block or key, or with its
/// counts or times changed, no longer opens.
fn frame_aad(header: &FrameHeader, prefix: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(48 + prefix.len());
    aad.extend_from_slice(b"tracevault frame v1\0");
    aad.push(header.kind as u8);
    aad.extend_from_slice(&header.session.to_le_bytes());
    aad.extend_from_slice(&header.block.to_le_bytes());
    aad.extend_from_slice(&header.event_count.to_le_bytes());
    aad.extend_from_slice(&header.t_min_us.to_le_bytes());
    aad.extend_from_slice(&header.t_max_us.to_le_bytes());
    aad.extend_from_slice(&header.key_id.to_le_bytes());
    aad.extend_from_slice(prefix);
    aad
}

/// Seals a frame payload in place: its first `prefix_len` bytes stay in clear (bound as associated
/// data), the rest is encrypted and a tag appended. Sets the header's key id and a fresh random
/// nonce.
pub(crate) fn seal(
    key: &DataKey,
    header: &mut FrameHeader,
    mut payload: Vec<u8>,
    prefix_len: usize,
) -> Result<Vec<u8>, KeyError> {
    header.key_id = key.id;
    random_fill(&mut header.nonce)?;
    let aad = frame_aad(header, &payload[..prefix_len]);
    let tag = key
        .cipher
        .encrypt_inout_detached(&XNonce::from(header.nonce), &aad, (&mut payload[prefix_len..]).into())
        .map_err(|_| KeyError::Config("a frame payload too large to seal".into()))?;
    payload.extend_from_slice(&tag);
    Ok(payload)
}

/// Opens a sealed payload (`prefix || ciphertext || tag`), returning the plaintext body.
pub(crate) fn open(
    key: &DataKey,
    header: &FrameHeader,
    payload: &[u8],
    prefix_len: usize,
) -> Result<Vec<u8>, Corruption> {
    if header.key_id != key.id {
        return Err(Corruption::new(format!("frame sealed with key {}, not key {}", header.key_id, key.id)));
    }
    if payload.len() < prefix_len + TAG_BYTES {
        return Err(Corruption::new(format!(
            "sealed payload of {} bytes, expected at least {}",
            payload.len(),
            prefix_len + TAG_BYTES
        )));
    }
    let (prefix, rest) = payload.split_at(prefix_len);
    let mut body = rest.to_vec();
    key.cipher
        .decrypt_in_place(&XNonce::from(header.nonce), &frame_aad(header, prefix), &mut body)
        .map_err(|_| Corruption::new(format!("payload does not authenticate under key {}", key.id)))?;
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::FrameKind;
    use crate::storage::FaultStorage;

    fn store(storage: &FaultStorage, source: &KeySource) -> KeyStore {
        KeyStore::open(Arc::new(storage.clone()), source.clone()).unwrap()
    }

    #[test]
    fn frames_seal_and_open_and_any_change_is_refused() {
        let key = DataKey::new(3, &Secret::random().unwrap());
        let mut header = FrameHeader::new(FrameKind::Block, 9);
        header.block = 2;
        let sealed = seal(&key, &mut header, b"presecret words".to_vec(), 3).unwrap();
        assert_eq!(header.key_id, 3);
        assert!(!sealed.windows(12).any(|w| w == b"secret words"));
        assert_eq!(open(&key, &header, &sealed, 3).unwrap(), b"secret words");
        let mut moved = header;
        moved.block = 3;
        assert!(open(&key, &moved, &sealed, 3).is_err(), "moved to another block");
        let mut moved = header;
        moved.session = 8;
        assert!(open(&key, &moved, &sealed, 3).is_err(), "moved to another session");
        let mut prefix_changed = sealed.clone();
        prefix_changed[0] ^= 1;
        assert!(open(&key, &header, &prefix_changed, 3).is_err());
        let other = DataKey::new(3, &Secret::random().unwrap());
        assert!(open(&other, &header, &sealed, 3).is_err());
    }

    #[test]
    fn keys_persist_shred_in_place_and_rotate() {
        let dir = std::env::temp_dir().join(format!("tracevault-keys-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let source = KeySource::dir(&dir);
        let storage = FaultStorage::new();
        let mut ks = store(&storage, &source);
        let a = ks.key_for_user("alice").unwrap().0;
        let b = ks.key_for_user("bob").unwrap().0;
        assert_eq!((a, b), (1, 2));
        assert_eq!(ks.key_for_user("alice").unwrap().0, 1);
        let probe = |ks: &KeyStore, id| {
            let mut h = FrameHeader::new(FrameKind::Block, 1);
            let sealed = seal(&ks.unwrap(id).unwrap(), &mut h, b"x".to_vec(), 0).unwrap();
            (h, sealed)
        };
        let (h_a, sealed_a) = probe(&ks, a);
        let (h_b, sealed_b) = probe(&ks, b);

        // Rotation: the store re-wrapped, the same data keys.
        let old_fp = ks.master_fingerprint();
        let new_fp = ks.rotate().unwrap();
        assert_ne!(old_fp, new_fp);
        let ks = store(&storage, &source);
        assert_eq!(ks.master_fingerprint(), new_fp);
        assert_eq!(open(&ks.unwrap(a).unwrap(), &h_a, &sealed_a, 0).unwrap(), b"x");
        let text = std::fs::read_to_string(dir.join(master_key_file(&ks.store))).unwrap();
        assert!(!text.contains("previous"), "the old master key is gone after rotation");

        // Shredding: alice's slot zeroed in place, bob untouched.
        let mut ks = ks;
        let before = storage.read_all(Path::new(KEYSTORE_PATH)).unwrap().unwrap();
        assert_eq!(ks.shred("alice", &[]).unwrap(), vec![a]);
        let after = storage.read_all(Path::new(KEYSTORE_PATH)).unwrap().unwrap();
        assert_eq!(before.len(), after.len(), "overwritten in place, not appended");
        let slot = &after[KEYSTORE_HEADER_BYTES..KEYSTORE_HEADER_BYTES + SLOT_BYTES];
        assert!(slot[SLOT_OFFSET_NONCE..SLOT_OFFSET_CRC].iter().all(|&b| b == 0));
        let ks = store(&storage, &source);
        assert!(matches!(ks.unwrap(a), Err(KeyError::Erased(1))));
        assert_eq!(open(&ks.unwrap(b).unwrap(), &h_b, &sealed_b, 0).unwrap(), b"x");
        let mut ks = ks;
        assert!(matches!(ks.key_for_user("alice"), Err(KeyError::Erased(1))));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_rotation_interrupted_after_any_step_is_finished_on_open() {
        let dir = std::env::temp_dir().join(format!("tracevault-rot-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let source = KeySource::dir(&dir);
        let storage = FaultStorage::new();
        let mut ks = store(&storage, &source);
        let id = ks.key_for_user("u").unwrap().0;
        let mut h = FrameHeader::new(FrameKind::Block, 1);
        let sealed = seal(&ks.unwrap(id).unwrap(), &mut h, b"data".to_vec(), 0).unwrap();
        // Step (1) done, crash before (2): the key file names a new current key, the store is
        // still under the old one.
        let mut keys = source.master_keys(&ks.store, false).unwrap();
        keys.previous = Some(keys.current.clone());
        keys.current = Secret::random().unwrap();
        keys.write().unwrap();
        let ks = store(&storage, &source);
        assert_eq!(ks.master_fingerprint(), keys.current.fingerprint());
        assert_eq!(open(&ks.unwrap(id).unwrap(), &h, &sealed, 0).unwrap(), b"data");
        let text = std::fs::read_to_string(dir.join(master_key_file(&ks.store))).unwrap();
        assert!(!text.contains("previous"));
        // A wrong master key is named by fingerprint, not opened.
        let wrong = KeySource { master: Some(Secret::random().unwrap()), ..source.clone() };
        let err = KeyStore::open(Arc::new(storage.clone()), wrong).unwrap_err();
        assert!(matches!(err, KeyError::WrongMasterKey { .. }), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_damaged_slot_is_a_hole_and_its_person_can_get_a_new_key() {
        let storage = FaultStorage::new();
        let source = KeySource::given(Secret::random().unwrap(), Secret::random().unwrap());
        let mut ks = store(&storage, &source);
        ks.key_for_user("a").unwrap();
        ks.key_for_user("b").unwrap();
        // A power cut garbled b's slot while it was being written.
        let at = (KEYSTORE_HEADER_BYTES + SLOT_BYTES + 50) as u64;
        storage.corrupt(Path::new(KEYSTORE_PATH), at, 0xff).unwrap();
        let mut ks = store(&storage, &source);
        assert!(matches!(ks.check(2), Err(KeyError::Damaged { key_id: 2, .. })));
        assert!(ks.check(1).is_ok(), "the other keys are untouched");
        let (id, created) = ks.key_for_user("b").unwrap();
        assert_eq!(id, 3);
        assert!(created.is_some());
    }

    #[test]
    fn each_store_has_its_own_master_key_so_rotating_one_leaves_the_others_readable() {
        let dir = std::env::temp_dir().join(format!("tracevault-stores-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let source = KeySource::dir(&dir);
        let (a, b) = (FaultStorage::new(), FaultStorage::new());
        let mut ka = store(&a, &source);
        let mut kb = store(&b, &source);
        assert_ne!(ka.store, kb.store);
        let id_b = kb.key_for_user("u").unwrap().0;
        ka.key_for_user("u").unwrap();
        ka.rotate().unwrap();
        let kb = store(&b, &source);
        assert!(kb.unwrap(id_b).is_ok(), "store b is untouched by a's rotation");
        assert_ne!(ka.master_fingerprint(), kb.master_fingerprint());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_malformed_key_file_is_named_without_quoting_it() {
        let dir = std::env::temp_dir().join(format!("tracevault-badkey-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let source = KeySource::dir(&dir);
        let storage = FaultStorage::new();
        let ks = store(&storage, &source);
        let path = dir.join(master_key_file(&ks.store));
        let bare = "ab".repeat(32); // `openssl rand -hex 32 > master.key`
        std::fs::write(&path, format!("{bare}\n")).unwrap();
        let err = KeyStore::open(Arc::new(storage.clone()), source.clone()).unwrap_err().to_string();
        assert!(!err.contains("abab"), "{err}");
        assert!(err.contains("key line 1"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn shredding_erases_a_damaged_slot_of_theirs_and_rotation_keeps_damaged_slots_as_found() {
        let storage = FaultStorage::new();
        let source = KeySource::given(Secret::random().unwrap(), Secret::random().unwrap());
        let mut ks = store(&storage, &source);
        ks.key_for_user("a").unwrap();
        ks.key_for_user("b").unwrap();
        // a's slot garbled where it names them: it no longer says whose it is.
        let at = (KEYSTORE_HEADER_BYTES + SLOT_OFFSET_USER + 3) as u64;
        storage.corrupt(Path::new(KEYSTORE_PATH), at, 0x10).unwrap();
        let mut ks = store(&storage, &source);
        let before = storage.read_all(Path::new(KEYSTORE_PATH)).unwrap().unwrap();
        let damaged = before[KEYSTORE_HEADER_BYTES..KEYSTORE_HEADER_BYTES + SLOT_BYTES].to_vec();
        // Rotation carries the damaged slot over byte for byte, neither erased nor repaired.
        ks.rotate_given_for_test(Secret::random().unwrap()).unwrap();
        let after = storage.read_all(Path::new(KEYSTORE_PATH)).unwrap().unwrap();
        assert_eq!(&after[KEYSTORE_HEADER_BYTES..KEYSTORE_HEADER_BYTES + SLOT_BYTES], &damaged[..]);
        // Shredding a, with the key id their sessions name, erases the damaged slot too.
        assert_eq!(ks.shred("a", &[1]).unwrap(), vec![1]);
        assert!(matches!(ks.check(1), Err(KeyError::Erased(1))));
        assert!(ks.check(2).is_ok());
    }

    #[test]
    fn no_raw_data_key_or_master_key_is_stored() {
        let storage = FaultStorage::new();
        let master = Secret::random().unwrap();
        let source = KeySource::given(master.clone(), Secret::random().unwrap());
        let mut ks = store(&storage, &source);
        for user in ["a", "b", "c"] {
            ks.key_for_user(user).unwrap();
        }
        let raw: Vec<Secret> =
            (0..3).map(|i| ks.slots[i].unwrap(&ks.master, i as u32 + 1).unwrap()).collect();
        let bytes = storage.read_all(Path::new(KEYSTORE_PATH)).unwrap().unwrap();
        for key in raw.iter().chain([&master]) {
            assert!(!bytes.windows(KEY_BYTES).any(|w| w == key.expose()), "a raw key in the key store");
            assert!(!bytes.windows(2 * KEY_BYTES).any(|w| w == key.to_hex().as_bytes()));
        }
    }

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
        assert!(!err.contains(&hex_key[..16]), "{err}");
    }
}
