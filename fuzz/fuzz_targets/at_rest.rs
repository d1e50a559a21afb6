//! The files a copy of the data directory holds besides segments, read back after someone may
//! have damaged or forged them: the key store (opened, and inspected offline as `verify` does),
//! the access audit log, the signed heads, the checkpoint, the witnesses' cosignatures, and a
//! whole segment under `verify`. None of it may panic; damage is an error or a named problem.
//! The first byte chooses the file.
#![no_main]

use std::path::Path;
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use tracevault_core::storage::{FaultStorage, Storage};
use tracevault_core::{KeySource, Secret, audit, integrity, keys::KeyStore};

fn keys() -> KeySource {
    KeySource::given(Secret::from_bytes([0x11; 32]), Secret::from_bytes([0x22; 32]))
}

fn write(storage: &FaultStorage, path: &str, bytes: &[u8]) {
    let mut f = storage.open_append(Path::new(path)).unwrap();
    f.append(bytes).unwrap();
    f.sync().unwrap();
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else { return };
    let storage = FaultStorage::new();
    match which % 6 {
        0 => {
            // Slots after a valid header for the fixed master key.
            drop(KeyStore::open(Arc::new(storage.clone()), keys()).unwrap());
            write(&storage, "keystore/data-keys", rest);
            if let Ok(mut ks) = KeyStore::open(Arc::new(storage.clone()), keys()) {
                for k in ks.keys() {
                    let _ = ks.check(k.id);
                }
                let _ = ks.key_for_user("fuzz");
                let _ = ks.shred("fuzz", &[1]);
            }
            let whole = storage.read_all(Path::new("keystore/data-keys")).unwrap().unwrap_or_default();
            let _ = tracevault_core::keys::inspect(&whole);
            let _ = tracevault_core::keys::inspect(rest);
        }
        4 => {
            // A checkpoint and cosignatures, as verify reads them beside valid heads.
            write(&storage, "checkpoint", rest);
            write(&storage, "integrity/cosignatures", rest);
            let public = integrity::PublicKey::from(&ed25519_dalek::SigningKey::from_bytes(&[0x22; 32]));
            let _ = tracevault_core::witness::read_cosignatures(&storage);
            let _ = integrity::verify_witnessed(&storage, &public, &[public]);
        }
        5 => {
            // A witness's view: a forged head and proofs against a witness that saw one before.
            let _ = tracevault_core::SignedHead::from_bytes(rest);
            let _ = tracevault_core::witness::Cosignature::from_bytes(rest);
        }
        1 => {
            write(&storage, &audit::audit_path().to_string_lossy(), rest);
            let _ = audit::scan(&storage);
        }
        2 => {
            write(&storage, "integrity/heads", rest);
            let public = integrity::PublicKey::from(&ed25519_dalek::SigningKey::from_bytes(&[0x22; 32]));
            let _ = integrity::read_heads(&storage);
            let _ = integrity::verify_audit(&storage, &public);
        }
        _ => {
            write(&storage, "segments/00000000000000000000.seg", rest);
            let public = integrity::PublicKey::from(&ed25519_dalek::SigningKey::from_bytes(&[0x22; 32]));
            let _ = integrity::verify(&storage, &public);
        }
    }
});
