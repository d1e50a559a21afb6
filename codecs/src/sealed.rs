//! A request body sealed to the server's public key with HPKE (RFC 9180, base mode,
//! DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305): what a recorder sends and what
//! its spool holds, so that nothing on the device, the recorder included, can read a batch back
//! once it is sealed. The server opens it with its private key (docs/FORMAT.md "Sealed bodies").
//!
//! Layout: `0x01` (the version), the 32-byte encapsulated key, then the AEAD ciphertext (the
//! plaintext and a 16-byte tag). The associated data binds the body to the request it belongs
//! to ([`request_aad`]): a sealed batch cannot be replayed into another session or under another
//! idempotency key.

use hpke::aead::ChaCha20Poly1305;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem, OpModeR, OpModeS, Serializable};

/// The format's version byte.
pub const VERSION: u8 = 1;
/// The HPKE `info` string: the context the key schedule is bound to.
const INFO: &[u8] = b"tracevault sealed body v1";
/// Bytes of the encapsulated key.
const ENC_LEN: usize = 32;
/// Bytes a body grows by when sealed: the version, the encapsulated key, the tag.
pub const OVERHEAD: usize = 1 + ENC_LEN + 16;
/// The `Content-Encoding` token of a sealed body (applied last, removed first).
pub const CONTENT_CODING: &str = "tracevault-hpke";

type KemT = X25519HkdfSha256;

/// Why a sealed body did not open.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("a sealed body is at least {OVERHEAD} bytes, found {0}")]
    Short(usize),
    #[error("sealed body version {0}: expected {VERSION}")]
    Version(u8),
    #[error("not sealed to this server's key, or altered, or bound to another request")]
    Open,
    #[error("a key is 32 bytes (64 hex digits): {0}")]
    Key(String),
}

/// The server's public key, as recorders hold it.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey(<KemT as Kem>::PublicKey);

/// The server's private key.
pub struct PrivateKey(<KemT as Kem>::PrivateKey);

impl PublicKey {
    pub fn from_bytes(bytes: &[u8]) -> Result<PublicKey, SealError> {
        <KemT as Kem>::PublicKey::from_bytes(bytes).map(PublicKey).map_err(|e| SealError::Key(e.to_string()))
    }

    pub fn to_bytes(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        self.0.write_exact(&mut out);
        out
    }

    /// Lowercase hex, as the server publishes it.
    pub fn to_hex(&self) -> String {
        self.to_bytes().iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn from_hex(hex: &str) -> Result<PublicKey, SealError> {
        PublicKey::from_bytes(&unhex(hex)?)
    }

    /// Seals `plaintext` to this key, bound to `aad`.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let (enc, ciphertext) = hpke::single_shot_seal::<ChaCha20Poly1305, HkdfSha256, KemT>(
            &OpModeS::Base,
            &self.0,
            INFO,
            plaintext,
            aad,
        )
        .expect("sealing to a valid X25519 key with the OS random source cannot fail");
        let mut out = Vec::with_capacity(OVERHEAD + plaintext.len());
        out.push(VERSION);
        out.extend_from_slice(&enc.to_bytes());
        out.extend_from_slice(&ciphertext);
        out
    }
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", self.to_hex())
    }
}

impl PrivateKey {
    /// A new key pair from the OS random source.
    pub fn generate() -> PrivateKey {
        PrivateKey(KemT::gen_keypair().0)
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<PrivateKey, SealError> {
        <KemT as Kem>::PrivateKey::from_bytes(bytes)
            .map(PrivateKey)
            .map_err(|e| SealError::Key(e.to_string()))
    }

    pub fn to_bytes(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        self.0.write_exact(&mut out);
        out
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(KemT::sk_to_pk(&self.0))
    }

    /// Opens a body sealed to this key's public half under the same `aad`.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        if sealed.len() < OVERHEAD {
            return Err(SealError::Short(sealed.len()));
        }
        if sealed[0] != VERSION {
            return Err(SealError::Version(sealed[0]));
        }
        let enc =
            <KemT as Kem>::EncappedKey::from_bytes(&sealed[1..1 + ENC_LEN]).map_err(|_| SealError::Open)?;
        hpke::single_shot_open::<ChaCha20Poly1305, HkdfSha256, KemT>(
            &OpModeR::Base,
            &self.0,
            &enc,
            INFO,
            &sealed[1 + ENC_LEN..],
            aad,
        )
        .map_err(|_| SealError::Open)
    }
}

/// The associated data of a request's sealed body: its method, its path and its idempotency key
/// (empty when it has none), each length-prefixed.
pub fn request_aad(method: &str, path: &str, idempotency_key: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + method.len() + path.len() + idempotency_key.len());
    for part in [method, path, idempotency_key] {
        out.extend_from_slice(&(part.len() as u32).to_le_bytes());
        out.extend_from_slice(part.as_bytes());
    }
    out
}

fn unhex(hex: &str) -> Result<Vec<u8>, SealError> {
    let hex = hex.trim();
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(SealError::Key(format!("found {} characters {:?}", hex.len(), truncate(hex))));
    }
    Ok((0..32).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("checked hex")).collect())
}

fn truncate(s: &str) -> String {
    s.chars().take(16).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_only_with_its_key_and_its_request() {
        let key = PrivateKey::generate();
        let aad = request_aad("POST", "/v1/sessions/s-1/events", "b-7");
        let sealed = key.public().seal(&aad, b"the batch");
        assert_eq!(key.open(&aad, &sealed).unwrap(), b"the batch");
        assert!(!sealed.windows(9).any(|w| w == b"the batch"), "the plaintext shows through");
        assert_eq!(PrivateKey::generate().open(&aad, &sealed), Err(SealError::Open));
        let other = request_aad("POST", "/v1/sessions/s-2/events", "b-7");
        assert_eq!(key.open(&other, &sealed), Err(SealError::Open));
        let mut altered = sealed.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert_eq!(key.open(&aad, &altered), Err(SealError::Open));
        assert_eq!(key.open(&aad, &sealed[..10]), Err(SealError::Short(10)));
    }

    #[test]
    fn keys_round_trip_as_bytes_and_hex() {
        let key = PrivateKey::generate();
        let again = PrivateKey::from_bytes(&key.to_bytes()).unwrap();
        assert_eq!(again.public(), key.public());
        assert_eq!(PublicKey::from_hex(&key.public().to_hex()).unwrap(), key.public());
        assert!(matches!(PublicKey::from_hex("abc"), Err(SealError::Key(_))));
    }
}
