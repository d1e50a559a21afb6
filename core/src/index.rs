//! The session index in redb: which sessions exist, where each sealed block is, and how far the
//! index is complete. It is disposable: everything in it can be rebuilt from the segments, which
//! is what opening does when the index is missing or behind the checkpoint.

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use tracevault_codecs::SessionMeta;

use crate::bytes::{Corruption, Reader, Writer};
use crate::merkle::{Hash, Link};

/// Why the index could not be read or written. The index is a cache: the log rebuilds it from
/// the segments rather than trust one that fails.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IndexError {
    #[error("session index: {0}")]
    Db(#[from] redb::Error),
    #[error("session index: {0}")]
    Corrupt(#[from] Corruption),
    #[error("session index: a session row: {0}")]
    Row(String),
}

/// Session id -> MessagePack [`StoredRow`].
const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions");
/// (session number, block number) -> [`BlockLoc`] as varints.
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

/// A session row as stored: a MessagePack array with every field in place and no names (field
/// names were most of a short session's row), the session id being the row's key.
#[derive(Serialize, Deserialize)]
struct StoredRow {
    number: u64,
    user: String,
    device: Option<String>,
    screen: Option<(u32, u32)>,
    started_at: Option<String>,
    layout: Option<String>,
    labels: std::collections::BTreeMap<String, String>,
    progress: Progress,
}

impl StoredRow {
    fn from_row(row: &SessionRow) -> StoredRow {
        let meta = &row.meta;
        StoredRow {
            number: row.number,
            user: meta.user.clone(),
            device: meta.device.clone(),
            screen: meta.screen.map(|s| (s.w, s.h)),
            started_at: meta.started_at.clone(),
            layout: meta.layout.clone(),
            labels: meta.labels.clone(),
            progress: row.progress.clone(),
        }
    }

    fn into_row(self, session: String) -> SessionRow {
        SessionRow {
            number: self.number,
            meta: SessionMeta {
                session,
                user: self.user,
                device: self.device,
                screen: self.screen.map(|(w, h)| tracevault_codecs::Screen { w, h }),
                started_at: self.started_at,
                layout: self.layout,
                labels: self.labels,
            },
            progress: self.progress,
        }
    }
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

/// The index's layout version, kept under "format" in the state table: an index of another
/// version (or none, as version 2 had) is emptied at open and rebuilt from the segments.
pub(crate) const INDEX_FORMAT: u32 = 3;

impl BlockLoc {
    /// Varints, the time range as its start and length: most fields are small numbers, and a
    /// store with many short sessions has a row per block.
    fn to_bytes(self) -> Vec<u8> {
        let mut b = Vec::with_capacity(32);
        Writer::new(&mut b)
            .varint(self.segment)
            .varint(self.offset)
            .varint(u64::from(self.frame_bytes))
            .varint(u64::from(self.events))
            .varint(self.t_min_us)
            .varint(self.t_max_us.wrapping_sub(self.t_min_us))
            .varint(self.seq_first)
            .varint(self.frame);
        b
    }

    fn from_bytes(b: &[u8]) -> Result<Self, Corruption> {
        let mut r = Reader::new(b, "block location");
        let u32_field = |r: &mut Reader<'_>, field: &'static str| -> Result<u32, Corruption> {
            let v = r.varint(field)?;
            u32::try_from(v).map_err(|_| Corruption::new(format!("block location: {field} {v} is over 2^32")))
        };
        let segment = r.varint("segment")?;
        let offset = r.varint("offset")?;
        let frame_bytes = u32_field(&mut r, "frame bytes")?;
        let events = u32_field(&mut r, "events")?;
        let t_min_us = r.varint("t_min_us")?;
        let t_max_us = t_min_us.wrapping_add(r.varint("t_max_us")?);
        let loc = BlockLoc {
            segment,
            offset,
            frame_bytes,
            events,
            t_min_us,
            t_max_us,
            seq_first: r.varint("seq_first")?,
            frame: r.varint("frame")?,
        };
        r.finish()?;
        Ok(loc)
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
    /// The newest signed head when the checkpoint was written (it is written, and synced, first):
    /// heads dropped from the end of the heads file are missed by nothing else locally.
    pub head: Option<Link>,
}

pub(crate) const CHECKPOINT_MAGIC: [u8; 8] = *b"TVCHKPNT";
pub(crate) const CHECKPOINT_VERSION: u32 = 3;
/// magic, version, segment, offset, next frame, the newest head's counter (`u64::MAX`: none) and
/// hash, then the frontier's hashes, then a crc32c.
pub(crate) const CHECKPOINT_FIXED_BYTES: usize = 8 + 4 + 8 + 8 + 8 + 8 + 32;

impl Checkpoint {
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(CHECKPOINT_FIXED_BYTES + 32 * self.frontier.len() + 4);
        let mut w = Writer::new(&mut b);
        w.bytes(&CHECKPOINT_MAGIC)
            .u32(CHECKPOINT_VERSION)
            .u64(self.segment)
            .u64(self.offset)
            .u64(self.next_frame);
        match self.head {
            Some(link) => w.u64(link.counter).bytes(&link.hash),
            None => w.u64(u64::MAX).zeros(32),
        };
        for h in &self.frontier {
            w.bytes(h);
        }
        let crc = crc32c::crc32c(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        b
    }

    pub fn from_bytes(b: &[u8]) -> Result<Self, Corruption> {
        if b.len() < CHECKPOINT_FIXED_BYTES + 4 {
            return Err(Corruption::new(format!("not a checkpoint ({} bytes)", b.len())));
        }
        let (body, crc) = b.split_at(b.len() - 4);
        let mut r = Reader::new(body, "checkpoint");
        if r.array::<8>("magic")? != CHECKPOINT_MAGIC {
            return Err(Corruption::new(format!("not a checkpoint ({} bytes)", b.len())));
        }
        if Reader::new(crc, "checkpoint").u32("crc32c")? != crc32c::crc32c(body) {
            return Err(Corruption::new("checkpoint CRC32C mismatch"));
        }
        let version = r.u32("version")?;
        if version != CHECKPOINT_VERSION {
            return Err(Corruption::new(format!(
                "checkpoint version {version}, this build reads {CHECKPOINT_VERSION}"
            )));
        }
        let segment = r.u64("segment")?;
        let offset = r.u64("offset")?;
        let next_frame = r.u64("next frame")?;
        let counter = r.u64("head counter")?;
        let hash = r.array("head hash")?;
        let head = (counter != u64::MAX).then_some(Link { counter, hash });
        let hashes = r.rest();
        if hashes.len() != 32 * next_frame.count_ones() as usize {
            return Err(Corruption::new(format!(
                "checkpoint holds {} bytes of tree frontier, expected {} for {next_frame} frames",
                hashes.len(),
                32 * next_frame.count_ones()
            )));
        }
        let mut frontier = Vec::with_capacity(hashes.len() / 32);
        let mut r = Reader::new(hashes, "checkpoint frontier");
        while r.remaining() > 0 {
            frontier.push(r.array("hash")?);
        }
        Ok(Checkpoint { segment, offset, next_frame, frontier, head })
    }
}

fn err(e: impl Into<redb::Error>) -> IndexError {
    IndexError::Db(e.into())
}

/// The redb database behind the index.
pub(crate) struct Index {
    /// Written for [`Index::compact`] alone, which needs the database to itself.
    db: std::sync::RwLock<Database>,
    /// Whether this process committed anything (only then is compacting worth a look).
    written: std::sync::atomic::AtomicBool,
}

/// What one checkpoint adds to the index.
#[derive(Default)]
pub(crate) struct IndexBatch {
    pub sessions: Vec<(String, SessionRow)>,
    pub blocks: Vec<(u64, u32, BlockLoc)>,
}

impl Index {
    /// Opens the index in `db`, emptying it first if it is of another layout version (opening
    /// then rebuilds it from the segments, as for a missing index).
    pub fn open(db: Database) -> Result<Index, IndexError> {
        let tx = db.begin_write().map_err(err)?;
        {
            tx.open_table(SESSIONS).map_err(err)?;
            tx.open_table(BLOCKS).map_err(err)?;
            tx.open_table(STATE).map_err(err)?;
        }
        tx.commit().map_err(err)?;
        let index = Index { db: std::sync::RwLock::new(db), written: false.into() };
        if index.format()? != Some(INDEX_FORMAT) {
            index.clear()?;
        }
        Ok(index)
    }

    fn db(&self) -> std::sync::RwLockReadGuard<'_, Database> {
        self.db.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Gives the file's free pages back (redb keeps the pages that copy-on-write freed, and its
    /// file only grows): run when the log closes, if this process wrote to the index. The index
    /// is a cache: a compaction cut short leaves a database redb opens, or one that is rebuilt.
    pub fn compact(&self) -> Result<bool, IndexError> {
        if !self.written.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(false);
        }
        let mut db = self.db.write().unwrap_or_else(|e| e.into_inner());
        db.compact().map_err(err)
    }

    /// The layout version the index says it is in (`None`: an empty index, or version 2).
    fn format(&self) -> Result<Option<u32>, IndexError> {
        let tx = self.db().begin_read().map_err(err)?;
        let table = tx.open_table(STATE).map_err(err)?;
        let value = table.get("format").map_err(err)?;
        value
            .map(|v| Reader::new(v.value(), "index format").u32("format").map_err(IndexError::from))
            .transpose()
    }

    pub fn checkpoint(&self) -> Result<Option<Checkpoint>, IndexError> {
        let tx = self.db().begin_read().map_err(err)?;
        let table = tx.open_table(STATE).map_err(err)?;
        let value = table.get("checkpoint").map_err(err)?;
        Ok(value.map(|v| Checkpoint::from_bytes(v.value())).transpose()?)
    }

    /// Empties the index (before a rebuild from the segments).
    pub fn clear(&self) -> Result<(), IndexError> {
        let tx = self.db().begin_write().map_err(err)?;
        tx.delete_table(SESSIONS).map_err(err)?;
        tx.delete_table(BLOCKS).map_err(err)?;
        tx.delete_table(STATE).map_err(err)?;
        tx.open_table(SESSIONS).map_err(err)?;
        tx.open_table(BLOCKS).map_err(err)?;
        tx.open_table(STATE)
            .map_err(err)?
            .insert("format", INDEX_FORMAT.to_le_bytes().as_slice())
            .map_err(err)?;
        tx.commit().map_err(err)
    }

    /// Every session row, handed to `each` as it is decoded (never all of them in a list: with a
    /// million sessions that list alone would be hundreds of MB at open).
    pub fn for_each_session(&self, mut each: impl FnMut(String, SessionRow)) -> Result<(), IndexError> {
        let tx = self.db().begin_read().map_err(err)?;
        let table = tx.open_table(SESSIONS).map_err(err)?;
        for entry in table.iter().map_err(err)? {
            let (k, v) = entry.map_err(err)?;
            let row: StoredRow =
                rmp_serde::from_slice(v.value()).map_err(|e| IndexError::Row(e.to_string()))?;
            let session = k.value().to_owned();
            each(session.clone(), row.into_row(session));
        }
        Ok(())
    }

    /// The sealed blocks of a session whose time range meets `[t_from, t_to]`, in block order.
    pub fn blocks(&self, session: u64) -> Result<Vec<(u32, BlockLoc)>, IndexError> {
        let tx = self.db().begin_read().map_err(err)?;
        let table = tx.open_table(BLOCKS).map_err(err)?;
        let mut out = Vec::new();
        for entry in table.range((session, 0)..=(session, u32::MAX)).map_err(err)? {
            let (k, v) = entry.map_err(err)?;
            out.push((k.value().1, BlockLoc::from_bytes(v.value())?));
        }
        Ok(out)
    }

    /// Writes a checkpoint's additions durably, with the checkpoint they complete.
    pub fn commit(&self, batch: &IndexBatch, checkpoint: &Checkpoint) -> Result<(), IndexError> {
        let tx = self.db().begin_write().map_err(err)?;
        {
            let mut sessions = tx.open_table(SESSIONS).map_err(err)?;
            for (id, row) in &batch.sessions {
                let bytes = rmp_serde::to_vec(&StoredRow::from_row(row))
                    .map_err(|e| IndexError::Row(e.to_string()))?;
                sessions.insert(id.as_str(), bytes.as_slice()).map_err(err)?;
            }
            let mut blocks = tx.open_table(BLOCKS).map_err(err)?;
            for (session, block, loc) in &batch.blocks {
                blocks.insert((*session, *block), loc.to_bytes().as_slice()).map_err(err)?;
            }
            let mut state = tx.open_table(STATE).map_err(err)?;
            state.insert("checkpoint", checkpoint.to_bytes().as_slice()).map_err(err)?;
        }
        self.written.store(true, std::sync::atomic::Ordering::Relaxed);
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
        let c = Checkpoint {
            segment: 9,
            offset: 10,
            next_frame: 3,
            frontier: vec![[1; 32], [2; 32]],
            head: Some(Link { counter: 4, hash: [5; 32] }),
        };
        assert_eq!(
            Checkpoint::from_bytes(&Checkpoint { head: None, ..c.clone() }.to_bytes()).unwrap().head,
            None
        );
        assert_eq!(Checkpoint::from_bytes(&c.to_bytes()), Ok(c.clone()));
        let mut bad = c.to_bytes();
        bad[20] ^= 1;
        assert!(Checkpoint::from_bytes(&bad).is_err());
        let short = Checkpoint { frontier: vec![[1; 32]], ..c.clone() }.to_bytes();
        assert!(Checkpoint::from_bytes(&short).is_err(), "3 frames need 2 frontier hashes");
        assert!(Checkpoint::from_bytes(&bad).is_err());
    }
}
