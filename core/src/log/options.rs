//! How a log is run: its sync mode and every bound, each with its unit.

use tracevault_codecs::block::DEFAULT_ZSTD_LEVEL;
use tracevault_codecs::limits::BLOCK_EVENTS_MAX;

use crate::error::OpenError;
use crate::keys::KeySource;

/// The largest session metadata (ids, device, labels) accepted, encoded.
pub const SESSION_META_BYTES_MAX: usize = 1 << 20;

/// How many of a session's latest batch ids are remembered, so a retried batch is acknowledged
/// again instead of written twice.
pub const RECENT_BATCHES_MAX: usize = 16;

/// When an acknowledged append is durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncMode {
    /// Acknowledge after fdatasync (the default): an acknowledged append survives any crash.
    Always,
    /// Sync at most every `n` milliseconds and acknowledge before the sync: a crash (of the
    /// machine, not just the process) can lose the appends of the last `n` ms.
    IntervalMs(u64),
    /// Never sync. Unsafe: for benchmarks only; a machine crash can lose anything not yet
    /// written back by the OS.
    NeverUnsafe,
}

/// How a log is run. Every bound carries its unit.
#[derive(Clone, Debug)]
pub struct LogOptions {
    pub sync: SyncMode,
    /// A segment is sealed and a new one started past this size.
    pub segment_bytes_max: u64,
    /// A journal file is closed and a new one started past this size.
    pub journal_bytes_max: u64,
    /// Events per sealed block.
    pub block_events_max: usize,
    pub zstd_level: i32,
    /// Segment bytes written between checkpoints.
    pub checkpoint_bytes: u64,
    /// The most appends one group commit takes.
    pub group_appends_max: usize,
    /// Memory for open blocks, all sessions together. Past it, the oldest open blocks are sealed
    /// early (smaller blocks, bounded memory).
    pub memory_bytes_max: u64,
    /// Closed journal files kept waiting for their sessions' open blocks to fill. Past it, the
    /// oldest open blocks are sealed early so the files can go.
    pub journal_files_max: u64,
    /// Where the master key and the signing key come from; `None`: [`KeySource::from_env`].
    pub keys: Option<KeySource>,
    /// Create the data directory, its key store and keys when missing (false for commands that
    /// only read: a mistyped path is then an error, not a new empty log).
    pub create: bool,
    /// Open to repair (who asks, and why): what does not verify against the newest signed head is
    /// recorded (an audit entry, then a repair head saying what was found) instead of refused, and
    /// evidence that does not verify is moved aside. `None`: a normal open, which refuses.
    pub repair: Option<crate::policy::Access>,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            sync: SyncMode::Always,
            segment_bytes_max: 64 << 20,
            journal_bytes_max: 64 << 20,
            block_events_max: 4096,
            zstd_level: DEFAULT_ZSTD_LEVEL,
            checkpoint_bytes: 64 << 20,
            group_appends_max: 4096,
            memory_bytes_max: 256 << 20,
            journal_files_max: 8,
            keys: None,
            create: true,
            repair: None,
        }
    }
}

impl LogOptions {
    pub(crate) fn check(&self) -> Result<(), OpenError> {
        if self.block_events_max == 0 || self.block_events_max > BLOCK_EVENTS_MAX {
            return Err(OpenError::Options(format!(
                "block_events_max must be in 1..={BLOCK_EVENTS_MAX}, found {}",
                self.block_events_max
            )));
        }
        if self.segment_bytes_max < 4096 || self.journal_bytes_max < 4096 {
            return Err(OpenError::Options(
                "segment_bytes_max and journal_bytes_max must be at least 4096".into(),
            ));
        }
        if self.group_appends_max == 0 {
            return Err(OpenError::Options("group_appends_max must be at least 1".into()));
        }
        Ok(())
    }
}
