//! The payloads of the log's frames (docs/FORMAT.md, "Frame payloads").

use tracevault_codecs::SessionMeta;

use crate::error::Corruption;

/// Bytes before a batch record's block: first sequence number, batch id.
pub(crate) const BATCH_PREFIX_BYTES: usize = 8 + 16;
/// Bytes of one entry of a block's batch table: batch id, event count.
pub(crate) const BATCH_ENTRY_BYTES: usize = 16 + 4;
/// The most entries a block's batch table may hold (one per event at most).
pub(crate) const BATCH_ENTRIES_MAX: usize = tracevault_codecs::limits::BLOCK_EVENTS_MAX;

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

/// A sealed block: where its events start in the session, which batches they came from, and the
/// events as a block.
pub(crate) fn block_payload(seq_first: u64, batches: &[(u128, u32)], block: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + batches.len() * BATCH_ENTRY_BYTES + block.len());
    out.extend_from_slice(&seq_first.to_le_bytes());
    out.extend_from_slice(&(batches.len() as u32).to_le_bytes());
    for (id, events) in batches {
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(&events.to_le_bytes());
    }
    out.extend_from_slice(block);
    out
}

/// A parsed block payload: first sequence number, batch table, block bytes.
pub(crate) type BlockPayload<'a> = (u64, Vec<(u128, u32)>, &'a [u8]);

pub(crate) fn parse_block(payload: &[u8]) -> Result<BlockPayload<'_>, Corruption> {
    if payload.len() < 12 {
        return Err(Corruption::new(format!(
            "block payload of {} bytes, expected at least 12",
            payload.len()
        )));
    }
    let seq = u64::from_le_bytes(payload[0..8].try_into().unwrap());
    let count = u32::from_le_bytes(payload[8..12].try_into().unwrap()) as usize;
    let table_end = 12usize.saturating_add(count.saturating_mul(BATCH_ENTRY_BYTES));
    if count > BATCH_ENTRIES_MAX || table_end > payload.len() {
        return Err(Corruption::new(format!("batch table of {count} entries does not fit the payload")));
    }
    let batches = payload[12..table_end]
        .chunks_exact(BATCH_ENTRY_BYTES)
        .map(|e| {
            (
                u128::from_le_bytes(e[..16].try_into().unwrap()),
                u32::from_le_bytes(e[16..].try_into().unwrap()),
            )
        })
        .collect();
    Ok((seq, batches, &payload[table_end..]))
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
        let p = block_payload(5, &[(7, 2), (0, 3)], b"blk");
        assert_eq!(parse_block(&p).unwrap(), (5, vec![(7, 2), (0, 3)], &b"blk"[..]));
        assert!(parse_block(&p[..20]).is_err());
        let mut huge = p.clone();
        huge[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(parse_block(&huge).is_err());
        let b = batch_payload(9, 11, b"x");
        assert_eq!(parse_batch(&b).unwrap(), (9, 11, &b"x"[..]));
        assert!(parse_batch(&b[..10]).is_err());
    }
}
