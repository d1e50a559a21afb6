//! The key store: one fixed-size slot per data key, wrapped under the store's master key;
//! shredding erases slots and rotation re-wraps them, each an atomic rewrite of the file.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use chacha20poly1305::aead::AeadInOut;
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::seal::DataKey;
use super::source::{KeySource, STORE_ID_BYTES};
use super::{KEY_BYTES, KeyError, Secret, TAG_BYTES, hex, random_fill};
use crate::bytes::{self, Corruption, Reader, Writer};
use crate::frame::NONCE_BYTES;
use crate::storage::Storage;

// The key store file: a header, then one fixed-size slot per data key (slot i holds key i + 1).
pub(crate) use crate::layout::{KEYSTORE as KEYSTORE_PATH, KEYSTORE_DIR};
const KEYSTORE_MAGIC: [u8; 8] = *b"TVKEYSTR";
/// Version 2 gave the header its change counter (version 1 stores read as 0 changes).
const KEYSTORE_VERSION: u32 = 2;
const HASH_BYTES: usize = 32;
// The header's fields, in order: magic, version u32, reserved u32, store id, the master key's
// fingerprint (SHA-256), the change counter u64, reserved, crc32c u32 over everything before it.
const HEADER_RESERVED_A_BYTES: usize = 4;
const HEADER_RESERVED_B_BYTES: usize = 20;
pub const KEYSTORE_HEADER_BYTES: usize =
    8 + 4 + HEADER_RESERVED_A_BYTES + STORE_ID_BYTES + HASH_BYTES + 8 + HEADER_RESERVED_B_BYTES + 4;
const _: () = assert!(KEYSTORE_HEADER_BYTES == 96);
// A slot's fields, in order: state u8, reserved [3], key id u32, user hash [32], nonce [24],
// wrapped key + tag [48], reserved [12], crc32c u32 over everything before it.
const SLOT_RESERVED_A_BYTES: usize = 3;
const SLOT_RESERVED_B_BYTES: usize = 12;
const WRAPPED_BYTES: usize = KEY_BYTES + TAG_BYTES;
const SLOT_OFFSET_USER: usize = 1 + SLOT_RESERVED_A_BYTES + 4;
const SLOT_OFFSET_NONCE: usize = SLOT_OFFSET_USER + HASH_BYTES;
const SLOT_OFFSET_CRC: usize = SLOT_OFFSET_NONCE + NONCE_BYTES + WRAPPED_BYTES + SLOT_RESERVED_B_BYTES;
pub const SLOT_BYTES: usize = SLOT_OFFSET_CRC + 4;
const _: () = assert!(SLOT_BYTES == 128);
const SLOT_LIVE: u8 = 1;
const SLOT_ERASED: u8 = 2;

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
        let live = self.state == SlotState::Live;
        let mut covered = Vec::with_capacity(SLOT_OFFSET_CRC);
        let mut w = Writer::new(&mut covered);
        w.u8(if live { SLOT_LIVE } else { SLOT_ERASED })
            .zeros(SLOT_RESERVED_A_BYTES)
            .u32(key_id)
            .bytes(&self.user);
        if live {
            w.bytes(&self.nonce).bytes(&self.wrapped);
        } else {
            w.zeros(NONCE_BYTES + WRAPPED_BYTES);
        }
        w.zeros(SLOT_RESERVED_B_BYTES);
        bytes::fixed(|w| {
            w.bytes(&covered).u32(crc32c::crc32c(&covered));
        })
    }

    /// Reads slot `key_id` from its `SLOT_BYTES` bytes; a slot that does not check is kept as
    /// found, damaged.
    fn from_bytes(b: &[u8; SLOT_BYTES], key_id: u32) -> Slot {
        let parse = || -> Result<Slot, Corruption> {
            let mut r = Reader::new(b, "key store slot");
            let state = r.u8("state")?;
            r.take(SLOT_RESERVED_A_BYTES, "reserved")?;
            let stored_id = r.u32("key id")?;
            let user = r.array("user hash")?;
            let nonce = r.array("nonce")?;
            let wrapped = r.array("wrapped key")?;
            r.take(SLOT_RESERVED_B_BYTES, "reserved")?;
            let crc = r.u32("crc32c")?;
            let state = if crc != crc32c::crc32c(&b[..SLOT_OFFSET_CRC]) {
                SlotState::Damaged("CRC32C mismatch".into())
            } else if stored_id != key_id {
                SlotState::Damaged(format!("slot says key {stored_id}"))
            } else {
                match state {
                    SLOT_LIVE => SlotState::Live,
                    SLOT_ERASED => SlotState::Erased,
                    other => SlotState::Damaged(format!("unknown slot state {other}")),
                }
            };
            let raw = matches!(state, SlotState::Damaged(_)).then(|| Box::new(*b));
            Ok(Slot { state, user, nonce, wrapped, raw })
        };
        // A whole slot always has every field; the fallback only keeps the type total.
        parse().unwrap_or_else(|c| Slot {
            state: SlotState::Damaged(c.reason),
            user: [0; 32],
            nonce: [0; NONCE_BYTES],
            wrapped: [0; WRAPPED_BYTES],
            raw: Some(Box::new(*b)),
        })
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
        let mut wrapped = [0u8; WRAPPED_BYTES];
        wrapped.copy_from_slice(&buf);
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
        let mut key = [0u8; KEY_BYTES];
        key.copy_from_slice(&buf);
        Ok(Secret::from_bytes(key))
    }
}

fn keystore_header(
    store: &[u8; STORE_ID_BYTES],
    master: &Secret,
    changes: u64,
) -> [u8; KEYSTORE_HEADER_BYTES] {
    let mut covered = Vec::with_capacity(KEYSTORE_HEADER_BYTES - 4);
    Writer::new(&mut covered)
        .bytes(&KEYSTORE_MAGIC)
        .u32(KEYSTORE_VERSION)
        .zeros(HEADER_RESERVED_A_BYTES)
        .bytes(store)
        .bytes(&master.fingerprint_bytes())
        .u64(changes)
        .zeros(HEADER_RESERVED_B_BYTES);
    bytes::fixed(|w| {
        w.bytes(&covered).u32(crc32c::crc32c(&covered));
    })
}

/// A key store header: the store id, the fingerprint of the master key it is wrapped under, and
/// its change counter.
struct Header {
    store: [u8; STORE_ID_BYTES],
    master: [u8; HASH_BYTES],
    changes: u64,
}

fn read_keystore_header(b: &[u8]) -> Result<Header, Corruption> {
    let mut r = Reader::new(b, "key store header");
    let magic: [u8; 8] = r.array("magic")?;
    let version = r.u32("version")?;
    r.take(HEADER_RESERVED_A_BYTES, "reserved")?;
    let store = r.array("store id")?;
    let master = r.array("master key fingerprint")?;
    let changes = r.u64("changes")?;
    r.take(HEADER_RESERVED_B_BYTES, "reserved")?;
    let crc = r.u32("crc32c")?;
    if magic != KEYSTORE_MAGIC || crc != crc32c::crc32c(&b[..KEYSTORE_HEADER_BYTES - 4]) {
        return Err(Corruption::new("not a key store, or its header is damaged"));
    }
    match version {
        // Version 1 kept these bytes reserved (zeros).
        1 => Ok(Header { store, master, changes: 0 }),
        KEYSTORE_VERSION => Ok(Header { store, master, changes }),
        _ => Err(Corruption::new(format!(
            "key store version {version}, this build reads 1 and {KEYSTORE_VERSION}"
        ))),
    }
}

/// A key store file read without any key, for `verify`: its change counter and every slot's
/// state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inspected {
    pub changes: u64,
    /// (key id, user hash, state), in key id order.
    pub slots: Vec<(u32, [u8; 32], SlotState)>,
    /// Bytes after the last whole slot (a slot torn by a crash).
    pub torn_bytes: usize,
}

/// Reads a key store file's header and slots without unwrapping anything.
pub fn inspect(bytes: &[u8]) -> Result<Inspected, Corruption> {
    if bytes.len() < KEYSTORE_HEADER_BYTES {
        return Err(Corruption::new(format!(
            "{} bytes, shorter than the key store header ({KEYSTORE_HEADER_BYTES})",
            bytes.len()
        )));
    }
    let header = read_keystore_header(&bytes[..KEYSTORE_HEADER_BYTES])?;
    let body = &bytes[KEYSTORE_HEADER_BYTES..];
    let slots = body
        .chunks_exact(SLOT_BYTES)
        .enumerate()
        .map(|(i, chunk)| {
            let mut whole = [0u8; SLOT_BYTES];
            whole.copy_from_slice(chunk);
            let id = i as u32 + 1;
            let slot = Slot::from_bytes(&whole, id);
            (id, slot.user, slot.state)
        })
        .collect();
    Ok(Inspected { changes: header.changes, slots, torn_bytes: body.len() % SLOT_BYTES })
}

/// What a head commits to of a key store file: its change counter and the SHA-256 of its bytes.
pub fn commitment(bytes: &[u8]) -> (u64, [u8; 32]) {
    let changes = inspect(bytes).map_or(0, |i| i.changes);
    (changes, Sha256::digest(bytes).into())
}

/// The data keys of everyone in the log, wrapped under the master key.
pub struct KeyStore {
    storage: Arc<dyn Storage>,
    source: KeySource,
    /// The store's id: which master key file in the key directory is its own.
    store: [u8; STORE_ID_BYTES],
    master: Secret,
    /// Changes so far (keys added, people shredded, rotations), as the header says.
    changes: u64,
    /// Slot `i` holds key `i + 1`.
    slots: Vec<Slot>,
    /// The SHA-256 of the file as this process read or wrote it: what a signed head commits to
    /// (never re-read from disk, so a file changed under a running log is not signed over).
    hash: [u8; 32],
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
                let header = keystore_header(&store, &keys.current, 0);
                storage.write_atomic(path, &header).map_err(io)?;
                header.to_vec()
            }
        };
        let Header { store: store_id, master: wrapped_under, changes } =
            read_keystore_header(&bytes[..KEYSTORE_HEADER_BYTES])
                .map_err(|c| KeyError::format(path, c.reason))?;
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
        let mut store = KeyStore {
            storage,
            source,
            store: store_id,
            master,
            changes,
            hash: Sha256::digest(&bytes[..end]).into(),
            slots: Vec::new(),
            by_user: HashMap::new(),
        };
        for (i, chunk) in bytes[KEYSTORE_HEADER_BYTES..end].chunks_exact(SLOT_BYTES).enumerate() {
            let id = i as u32 + 1;
            let mut whole = [0u8; SLOT_BYTES];
            whole.copy_from_slice(chunk);
            let slot = Slot::from_bytes(&whole, id);
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
        let mut slots = self.slots.clone();
        slots.push(slot);
        self.rewrite(self.master.clone(), slots)?;
        self.by_user.insert(hash, id);
        Ok((id, Some(DataKey::new(id, &key))))
    }

    /// Replaces the key store with `slots` under `master`, one change more, atomically and
    /// durably (a temporary file, fsynced, renamed over it): a crash leaves the old store or the
    /// new one, never a mix, so the change counter always describes the slots beside it.
    fn rewrite(&mut self, master: Secret, slots: Vec<Slot>) -> Result<(), KeyError> {
        let changes = self.changes + 1;
        let mut bytes = keystore_header(&self.store, &master, changes).to_vec();
        for (i, slot) in slots.iter().enumerate() {
            bytes.extend_from_slice(&slot.to_bytes(i as u32 + 1));
        }
        let path = Path::new(KEYSTORE_PATH);
        self.storage
            .write_atomic(path, &bytes)
            .map_err(|source| KeyError::Io { path: path.to_owned(), source })?;
        self.slots = slots;
        self.master = master;
        self.changes = changes;
        self.hash = Sha256::digest(&bytes).into();
        Ok(())
    }

    /// The change counter and the SHA-256 of the key store file, as this process read or wrote
    /// it: what a signed head commits to.
    pub fn commitment(&self) -> (u64, [u8; 32]) {
        (self.changes, self.hash)
    }

    /// Whether shredding can also retire the master key (it lives in a key file tracevault
    /// rewrites, not in `$TRACEVAULT_MASTER_KEY`).
    pub fn master_key_is_managed(&self) -> bool {
        self.source.master.is_none()
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

    /// Crypto-shreds a person: every slot naming them and every slot in `also` (the keys their
    /// sessions' frames name: a damaged slot may no longer name its person, but must go too)
    /// becomes an erased slot (the wrapped key zeroed), in one atomic rewrite of the key store.
    /// Returns the key ids erased (empty if there were none left).
    pub fn shred(&mut self, user: &str, also: &[u32]) -> Result<Vec<u32>, KeyError> {
        let hash = user_hash(user);
        // (A damaged slot in `also` may no longer name them: its erased slot does.)
        self.shred_where(|id, slot| (slot.user == hash || also.contains(&id)).then_some(hash))
    }

    /// Erases every slot `chosen` returns a person for (the user hash the erased slot names).
    fn shred_where(&mut self, chosen: impl Fn(u32, &Slot) -> Option<[u8; 32]>) -> Result<Vec<u32>, KeyError> {
        let mut slots = self.slots.clone();
        let mut erased = Vec::new();
        for (i, slot) in slots.iter_mut().enumerate() {
            let id = i as u32 + 1;
            if slot.state == SlotState::Erased {
                continue;
            }
            if let Some(user) = chosen(id, slot) {
                *slot = Slot::erased(user);
                erased.push(id);
            }
        }
        if !erased.is_empty() {
            self.rewrite(self.master.clone(), slots)?;
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
        let mut slots = Vec::with_capacity(self.slots.len());
        for (i, slot) in self.slots.iter().enumerate() {
            let id = i as u32 + 1;
            slots.push(match slot.state {
                SlotState::Live => Slot::wrap(&new, id, slot.user, &slot.unwrap(&self.master, id)?)?,
                _ => slot.clone(),
            });
        }
        self.rewrite(new, slots)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{FrameHeader, FrameKind};
    use crate::keys::seal::{open, seal};
    use crate::keys::source::master_key_file;
    use crate::storage::FaultStorage;

    fn store(storage: &FaultStorage, source: &KeySource) -> KeyStore {
        KeyStore::open(Arc::new(storage.clone()), source.clone()).unwrap()
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

        // Shredding: alice's slot zeroed (the file rewritten), bob untouched.
        let mut ks = ks;
        let before = storage.read_all(Path::new(KEYSTORE_PATH)).unwrap().unwrap();
        assert_eq!(ks.shred("alice", &[]).unwrap(), vec![a]);
        let after = storage.read_all(Path::new(KEYSTORE_PATH)).unwrap().unwrap();
        assert_eq!(before.len(), after.len(), "the slot replaced, not appended");
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
}
