//! The payloads of the log's frames (docs/FORMAT.md, "Frame payloads").

use tracevault_codecs::SessionMeta;

use tracevault_codecs::block::varint::{unzigzag, zigzag};

use crate::bytes::{Corruption, Reader, Writer};

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

/// Bytes of one recent batch entry in a version 1 progress payload: batch id, first sequence
/// number, event count.
pub(crate) const RECENT_ENTRY_BYTES: usize = 16 + 8 + 8;

/// The first byte of a version 2 progress payload. A version 1 payload starts with its count, a
/// u32 of at most 16, so its first byte is never this.
pub(crate) const PROGRESS_V2: u8 = 0xff;

/// A session's most recent batches (docs/FORMAT.md, "Frame payloads"): [`PROGRESS_V2`], a varint
/// count, then per batch its id (16 bytes), its first sequence number as a zigzag varint of the
/// distance from the end of the entry before (0 for batches appended back to back), and its
/// event count as a varint.
pub(crate) fn progress_payload(recent: &[(u128, u64, u64)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + recent.len() * 20);
    let mut w = Writer::new(&mut out);
    w.u8(PROGRESS_V2).varint(recent.len() as u64);
    let mut end = 0u64;
    for &(id, seq, n) in recent {
        w.u128(id).varint(zigzag(seq.wrapping_sub(end) as i64)).varint(n);
        end = seq.wrapping_add(n);
    }
    out
}

pub(crate) fn parse_progress(payload: &[u8]) -> Result<Vec<(u128, u64, u64)>, Corruption> {
    let mut r = Reader::new(payload, "progress payload");
    if payload.first() != Some(&PROGRESS_V2) {
        return parse_progress_v1(payload);
    }
    r.u8("version")?;
    let count = r.varint("count")?;
    // Each entry takes at least 18 bytes: no count beyond what the payload can hold.
    if count > (r.remaining() / 18) as u64 {
        return Err(Corruption::new(format!(
            "progress payload: {count} entries cannot fit in {} bytes",
            r.remaining()
        )));
    }
    let mut out = Vec::with_capacity(count as usize);
    let mut end = 0u64;
    for _ in 0..count {
        let id = r.u128("batch id")?;
        let seq = end.wrapping_add(unzigzag(r.varint("seq_first")?) as u64);
        let n = r.varint("events")?;
        out.push((id, seq, n));
        end = seq.wrapping_add(n);
    }
    r.finish()?;
    Ok(out)
}

/// Version 1: a u32 count, then each (id u128, seq_first u64, events u64); still read.
fn parse_progress_v1(payload: &[u8]) -> Result<Vec<(u128, u64, u64)>, Corruption> {
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

/// A session record: its metadata as a MessagePack array of every field in order (`session`,
/// `user`, `device`, `screen` as `[w, h]`, `started_at`, `layout`, `labels`). Version 1 wrote a
/// map with the field names, which [`parse_session`] still reads.
pub(crate) fn session_payload(meta: &SessionMeta) -> Vec<u8> {
    let fields = (
        &meta.session,
        &meta.user,
        &meta.device,
        meta.screen.map(|s| (s.w, s.h)),
        &meta.started_at,
        &meta.layout,
        &meta.labels,
    );
    rmp_serde::to_vec(&fields).expect("session metadata always serialises")
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
        assert!(parse_progress(&progress_payload(&recent)[..30]).is_err());
        let gapped = vec![(7u128, 100u64, 10u64), (8, 110, 5), (9, 90, 1), (10, u64::MAX - 3, 3)];
        assert_eq!(parse_progress(&progress_payload(&gapped)).unwrap(), gapped);
        // Version 1 payloads still read.
        let mut v1 = 2u32.to_le_bytes().to_vec();
        for (id, seq, n) in &recent {
            v1.extend_from_slice(&id.to_le_bytes());
            v1.extend_from_slice(&seq.to_le_bytes());
            v1.extend_from_slice(&n.to_le_bytes());
        }
        assert_eq!(parse_progress(&v1).unwrap(), recent);
        // Session records: the array written now and the map of version 1 both read.
        let meta = SessionMeta {
            session: "s-1".into(),
            user: "u".into(),
            device: None,
            screen: Some(tracevault_codecs::Screen { w: 1920, h: 1080 }),
            started_at: Some("2026-11-27T09:00:00Z".into()),
            layout: None,
            labels: [("team".to_owned(), "search".to_owned())].into(),
        };
        assert_eq!(parse_session(&session_payload(&meta)).unwrap(), meta);
        assert_eq!(parse_session(&rmp_serde::to_vec_named(&meta).unwrap()).unwrap(), meta);
        // No field names: `session`, `user`, `device`, `screen` (`w`, `h`), `started_at`, `labels`.
        assert!(session_payload(&meta).len() + 35 < rmp_serde::to_vec_named(&meta).unwrap().len());
        let b = batch_payload(9, 11, b"x");
        assert_eq!(parse_batch(&b).unwrap(), (9, 11, &b"x"[..]));
        assert!(parse_batch(&b[..10]).is_err());
    }
}
