//! The session index in redb: which sessions exist, where each sealed block is, and how far the
//! index is complete. It is disposable: everything in it can be rebuilt from the segments, which
//! is what opening does when the index is missing or behind the checkpoint.

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use tracevault_codecs::SessionMeta;

use crate::merkle::Hash;

/// Session id -> MessagePack [`SessionRow`].
const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions");
/// (session number, block number) -> [`BlockLoc`] in [`BLOCK_LOC_BYTES`] fixed bytes.
const BLOCKS: TableDefinition<(u64, u32), &[u8]> = TableDefinition::new("blocks");
/// "checkpoint" -> the checkpoint the index is complete through.
const STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("state");

/// What the index keeps of a session.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct SessionRow {
    pub number: u64,
    pub meta: SessionMeta,
    pub progress: Progress,
}

/// How far a session's sealed blocks go, and its most recent batch ids (for idempotent retries).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub(crate) struct Progress {
    /// Events in sealed blocks.
    pub sealed_events: u64,
    pub next_block: u32,
    pub sealed_bytes: u64,
    /// The range of `t` over every event appended (sealed or not).
    pub t_min_us: Option<u64>,
    pub t_max_us: Option<u64>,
    /// (batch id, first sequence number, event count), oldest first.
    pub recent_batches: Vec<(u128, u64, u64)>,
}

/// Where a sealed block's frame is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockLoc {
    /// The segment's number (its first frame number).
    pub segment: u64,
    pub offset: u64,
    pub frame_bytes: u32,
    pub events: u32,
    pub t_min_us: u64,
    pub t_max_us: u64,
    /// The sequence number (within the session) of the block's first event.
    pub seq_first: u64,
    /// The frame's number in the log: its leaf index in the Merkle tree.
    pub frame: u64,
}

pub(crate) const BLOCK_LOC_BYTES: usize = 8 + 8 + 4 + 4 + 8 + 8 + 8 + 8;

impl BlockLoc {
    fn to_bytes(self) -> [u8; BLOCK_LOC_BYTES] {
        let mut b = [0u8; BLOCK_LOC_BYTES];
        b[0..8].copy_from_slice(&self.segment.to_le_bytes());
        b[8..16].copy_from_slice(&self.offset.to_le_bytes());
        b[16..20].copy_from_slice(&self.frame_bytes.to_le_bytes());
        b[20..24].copy_from_slice(&self.events.to_le_bytes());
        b[24..32].copy_from_slice(&self.t_min_us.to_le_bytes());
        b[32..40].copy_from_slice(&self.t_max_us.to_le_bytes());
        b[40..48].copy_from_slice(&self.seq_first.to_le_bytes());
        b[48..56].copy_from_slice(&self.frame.to_le_bytes());
        b
    }

    fn from_bytes(b: &[u8]) -> Result<Self, String> {
        if b.len() != BLOCK_LOC_BYTES {
            return Err(format!("block location of {} bytes, expected {BLOCK_LOC_BYTES}", b.len()));
        }
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap());
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
        Ok(BlockLoc {
            segment: u64_at(0),
            offset: u64_at(8),
            frame_bytes: u32_at(16),
            events: u32_at(20),
            t_min_us: u64_at(24),
            t_max_us: u64_at(32),
            seq_first: u64_at(40),
            frame: u64_at(48),
        })
    }
}

/// A point in the segment log: everything before it is durable and indexed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Checkpoint {
    /// The segment being written (its number) and the offset just past its last frame.
    pub segment: u64,
    pub offset: u64,
    /// The number the next frame will get (the Merkle tree's size).
    pub next_frame: u64,
    /// The Merkle tree's frontier over frames `0..next_frame` (one hash per set bit).
    pub frontier: Vec<Hash>,
}

pub(crate) const CHECKPOINT_MAGIC: [u8; 8] = *b"TVCHKPNT";
pub(crate) const CHECKPOINT_VERSION: u32 = 2;
/// magic, version, segment, offset, next frame, then the frontier's hashes, then a crc32c.
pub(crate) const CHECKPOINT_FIXED_BYTES: usize = 8 + 4 + 8 + 8 + 8;

impl Checkpoint {
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(CHECKPOINT_FIXED_BYTES + 32 * self.frontier.len() + 4);
        b.extend_from_slice(&CHECKPOINT_MAGIC);
        b.extend_from_slice(&CHECKPOINT_VERSION.to_le_bytes());
        b.extend_from_slice(&self.segment.to_le_bytes());
        b.extend_from_slice(&self.offset.to_le_bytes());
        b.extend_from_slice(&self.next_frame.to_le_bytes());
        for h in &self.frontier {
            b.extend_from_slice(h);
        }
        let crc = crc32c::crc32c(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        b
    }

    pub fn from_bytes(b: &[u8]) -> Result<Self, String> {
        if b.len() < CHECKPOINT_FIXED_BYTES + 4 || b[0..8] != CHECKPOINT_MAGIC {
            return Err(format!("not a checkpoint ({} bytes)", b.len()));
        }
        let (body, crc) = b.split_at(b.len() - 4);
        if u32::from_le_bytes(crc.try_into().unwrap()) != crc32c::crc32c(body) {
            return Err("checkpoint CRC32C mismatch".into());
        }
        let version = u32::from_le_bytes(b[8..12].try_into().unwrap());
        if version != CHECKPOINT_VERSION {
            return Err(format!("checkpoint version {version}, this build reads {CHECKPOINT_VERSION}"));
        }
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap());
        let next_frame = u64_at(28);
        let hashes = &body[CHECKPOINT_FIXED_BYTES..];
        if hashes.len() != 32 * next_frame.count_ones() as usize {
            return Err(format!(
                "checkpoint holds {} bytes of tree frontier, expected {} for {next_frame} frames",
                hashes.len(),
                32 * next_frame.count_ones()
            ));
        }
        Ok(Checkpoint {
            segment: u64_at(12),
            offset: u64_at(20),
            next_frame,
            frontier: hashes.chunks_exact(32).map(|h| h.try_into().unwrap()).collect(),
        })
    }
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// The redb database behind the index.
pub(crate) struct Index {
    db: Database,
}

/// What one checkpoint adds to the index.
#[derive(Default)]
pub(crate) struct IndexBatch {
    pub sessions: Vec<(String, SessionRow)>,
    pub blocks: Vec<(u64, u32, BlockLoc)>,
}

impl Index {
    pub fn open(db: Database) -> Result<Index, String> {
        let tx = db.begin_write().map_err(err)?;
        {
            tx.open_table(SESSIONS).map_err(err)?;
            tx.open_table(BLOCKS).map_err(err)?;
            tx.open_table(STATE).map_err(err)?;
        }
        tx.commit().map_err(err)?;
        Ok(Index { db })
    }

    pub fn checkpoint(&self) -> Result<Option<Checkpoint>, String> {
        let tx = self.db.begin_read().map_err(err)?;
        let table = tx.open_table(STATE).map_err(err)?;
        let value = table.get("checkpoint").map_err(err)?;
        value.map(|v| Checkpoint::from_bytes(v.value())).transpose()
    }

    /// Empties the index (before a rebuild from the segments).
    pub fn clear(&self) -> Result<(), String> {
        let tx = self.db.begin_write().map_err(err)?;
        tx.delete_table(SESSIONS).map_err(err)?;
        tx.delete_table(BLOCKS).map_err(err)?;
        tx.delete_table(STATE).map_err(err)?;
        tx.open_table(SESSIONS).map_err(err)?;
        tx.open_table(BLOCKS).map_err(err)?;
        tx.open_table(STATE).map_err(err)?;
        tx.commit().map_err(err)
    }

    pub fn sessions(&self) -> Result<Vec<(String, SessionRow)>, String> {
        let tx = self.db.begin_read().map_err(err)?;
        let table = tx.open_table(SESSIONS).map_err(err)?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(err)? {
            let (k, v) = entry.map_err(err)?;
            let row: SessionRow = rmp_serde::from_slice(v.value()).map_err(err)?;
            out.push((k.value().to_owned(), row));
        }
        Ok(out)
    }

    /// The sealed blocks of a session whose time range meets `[t_from, t_to]`, in block order.
    pub fn blocks(&self, session: u64) -> Result<Vec<(u32, BlockLoc)>, String> {
        let tx = self.db.begin_read().map_err(err)?;
        let table = tx.open_table(BLOCKS).map_err(err)?;
        let mut out = Vec::new();
        for entry in table.range((session, 0)..=(session, u32::MAX)).map_err(err)? {
            let (k, v) = entry.map_err(err)?;
            out.push((k.value().1, BlockLoc::from_bytes(v.value())?));
        }
        Ok(out)
    }

    /// Writes a checkpoint's additions durably, with the checkpoint they complete.
    pub fn commit(&self, batch: &IndexBatch, checkpoint: &Checkpoint) -> Result<(), String> {
        let tx = self.db.begin_write().map_err(err)?;
        {
            let mut sessions = tx.open_table(SESSIONS).map_err(err)?;
            for (id, row) in &batch.sessions {
                let bytes = rmp_serde::to_vec_named(row).map_err(err)?;
                sessions.insert(id.as_str(), bytes.as_slice()).map_err(err)?;
            }
            let mut blocks = tx.open_table(BLOCKS).map_err(err)?;
            for (session, block, loc) in &batch.blocks {
                blocks.insert((*session, *block), loc.to_bytes().as_slice()).map_err(err)?;
            }
            let mut state = tx.open_table(STATE).map_err(err)?;
            state.insert("checkpoint", checkpoint.to_bytes().as_slice()).map_err(err)?;
        }
        tx.commit().map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_locations_and_checkpoints_round_trip() {
        let loc = BlockLoc {
            segment: 1,
            offset: 2,
            frame_bytes: 3,
            events: 4,
            t_min_us: 5,
            t_max_us: 6,
            seq_first: 7,
            frame: 8,
        };
        assert_eq!(BlockLoc::from_bytes(&loc.to_bytes()), Ok(loc));
        let c = Checkpoint { segment: 9, offset: 10, next_frame: 3, frontier: vec![[1; 32], [2; 32]] };
        assert_eq!(Checkpoint::from_bytes(&c.to_bytes()), Ok(c.clone()));
        let mut bad = c.to_bytes();
        bad[20] ^= 1;
        assert!(Checkpoint::from_bytes(&bad).is_err());
        let short = Checkpoint { frontier: vec![[1; 32]], ..c.clone() }.to_bytes();
        assert!(Checkpoint::from_bytes(&short).is_err(), "3 frames need 2 frontier hashes");
        assert!(Checkpoint::from_bytes(&bad).is_err());
    }
}
