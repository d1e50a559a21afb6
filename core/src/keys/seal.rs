//! Sealing frame payloads with a person's data key (XChaCha20-Poly1305), the associated data
//! binding every header field.

use std::fmt;

use chacha20poly1305::aead::AeadInOut;
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};

use super::{KeyError, Secret, TAG_BYTES, random_fill};
use crate::bytes::Corruption;
use crate::frame::FrameHeader;

/// One person's data key, unwrapped, ready to seal and open frames. Zeroed when dropped.
pub struct DataKey {
    pub id: u32,
    pub(crate) cipher: XChaCha20Poly1305,
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DataKey({}, <redacted>)", self.id)
    }
}

impl DataKey {
    pub(crate) fn new(id: u32, key: &Secret) -> DataKey {
        DataKey { id, cipher: XChaCha20Poly1305::new(&(*key.expose()).into()) }
    }
}

/// The associated data of a sealed frame payload: every header field but the nonce, and the
/// payload's cleartext prefix. A frame moved to another session, block or key, or with its
/// counts or times changed, no longer opens.
fn frame_aad(header: &FrameHeader, prefix: &[u8]) -> Vec<u8> {
    let fields = header.authenticated();
    let mut aad = Vec::with_capacity(FRAME_AAD_DOMAIN.len() + fields.len() + prefix.len());
    aad.extend_from_slice(FRAME_AAD_DOMAIN);
    aad.extend_from_slice(&fields);
    aad.extend_from_slice(prefix);
    aad
}

const FRAME_AAD_DOMAIN: &[u8] = b"tracevault frame v1\0";

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
}
