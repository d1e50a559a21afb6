//! The payloads of the log's frames (docs/FORMAT.md, "Frame payloads").

use tracevault_codecs::SessionMeta;

use crate::bytes::{Corruption, Reader};

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
    let mut r = Reader::new(payload, "batch payload");
    let seq = r.u64("seq_first")?;
    let id = r.u128("batch id")?;
    Ok((seq, id, r.rest()))
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
    let mut r = Reader::new(payload, "block payload");
    let seq = r.u64("seq_first")?;
    Ok((seq, r.rest()))
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
    let mut r = Reader::new(payload, "progress payload");
    let count = r.u32("count")? as usize;
    if r.remaining() != count.saturating_mul(RECENT_ENTRY_BYTES) {
        return Err(Corruption::new(format!(
            "progress payload of {} bytes is not a count and its entries",
            payload.len()
        )));
    }
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        out.push((r.u128("batch id")?, r.u64("seq_first")?, r.u64("events")?));
    }
    Ok(out)
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
