//! The payloads of the log's frames (docs/FORMAT.md, "Frame payloads").

use tracevault_codecs::SessionMeta;

use crate::error::Corruption;

/// Bytes before a batch record's block: first sequence number, batch id.
pub(crate) const BATCH_PREFIX_BYTES: usize = 8 + 16;
/// A journal record of one append: where its events start in the session, its batch id (0 when
/// the caller gave none), and the events as a block.
pub(crate) fn batch_payload(seq_first: u64, batch_id: u128, block: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(BATCH_PREFIX_BYTES + block.len());
    out.extend_from_slice(&seq_first.to_le_bytes());
    out.extend_from_slice(&batch_id.to_le_bytes());
    out.extend_from_slice(block);
    out
}

pub(crate) fn parse_batch(payload: &[u8]) -> Result<(u64, u128, &[u8]), Corruption> {
    if payload.len() < BATCH_PREFIX_BYTES {
        return Err(Corruption::new(format!(
            "batch payload of {} bytes, expected at least {BATCH_PREFIX_BYTES}",
            payload.len()
        )));
    }
    let seq = u64::from_le_bytes(payload[0..8].try_into().unwrap());
    let id = u128::from_le_bytes(payload[8..24].try_into().unwrap());
    Ok((seq, id, &payload[BATCH_PREFIX_BYTES..]))
}

/// Bytes before a block record's block: first sequence number.
pub(crate) const BLOCK_PREFIX_BYTES: usize = 8;
/// A sealed block: where its events start in the session, then the events as a block.
pub(crate) fn block_payload(seq_first: u64, block: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + block.len());
    out.extend_from_slice(&seq_first.to_le_bytes());
    out.extend_from_slice(block);
    out
}

pub(crate) fn parse_block(payload: &[u8]) -> Result<(u64, &[u8]), Corruption> {
    if payload.len() < 8 {
        return Err(Corruption::new(format!(
            "block payload of {} bytes, expected at least 8",
            payload.len()
        )));
    }
    Ok((u64::from_le_bytes(payload[0..8].try_into().unwrap()), &payload[8..]))
}

/// Bytes of one recent batch entry: batch id, first sequence number, event count.
pub(crate) const RECENT_ENTRY_BYTES: usize = 16 + 8 + 8;

/// A session's most recent batches: a u32 count, then each (id u128, seq_first u64, events u64).
pub(crate) fn progress_payload(recent: &[(u128, u64, u64)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + recent.len() * RECENT_ENTRY_BYTES);
    out.extend_from_slice(&(recent.len() as u32).to_le_bytes());
    for (id, seq, n) in recent {
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(&seq.to_le_bytes());
        out.extend_from_slice(&n.to_le_bytes());
    }
    out
}

pub(crate) fn parse_progress(payload: &[u8]) -> Result<Vec<(u128, u64, u64)>, Corruption> {
    let count = payload.get(..4).map(|b| u32::from_le_bytes(b.try_into().unwrap()) as usize);
    let Some(count) = count.filter(|c| 4 + c * RECENT_ENTRY_BYTES == payload.len()) else {
        return Err(Corruption::new(format!(
            "progress payload of {} bytes is not a count and its entries",
            payload.len()
        )));
    };
    Ok(payload[4..]
        .chunks_exact(RECENT_ENTRY_BYTES)
        .take(count)
        .map(|e| {
            (
                u128::from_le_bytes(e[..16].try_into().unwrap()),
                u64::from_le_bytes(e[16..24].try_into().unwrap()),
                u64::from_le_bytes(e[24..].try_into().unwrap()),
            )
        })
        .collect())
}

pub(crate) fn session_payload(meta: &SessionMeta) -> Vec<u8> {
    rmp_serde::to_vec_named(meta).expect("session metadata always serialises")
}

pub(crate) fn parse_session(payload: &[u8]) -> Result<SessionMeta, Corruption> {
    rmp_serde::from_slice(payload).map_err(|e| Corruption::new(format!("session record: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_and_short_ones_are_rejected() {
        let p = block_payload(5, b"blk");
        assert_eq!(parse_block(&p).unwrap(), (5, &b"blk"[..]));
        assert!(parse_block(&p[..7]).is_err());
        let recent = vec![(1u128, 2u64, 3u64), (u128::MAX, 5, 6)];
        assert_eq!(parse_progress(&progress_payload(&recent)).unwrap(), recent);
        assert!(parse_progress(&progress_payload(&recent)[..40]).is_err());
        let b = batch_payload(9, 11, b"x");
        assert_eq!(parse_batch(&b).unwrap(), (9, 11, &b"x"[..]));
        assert!(parse_batch(&b[..10]).is_err());
    }
}
