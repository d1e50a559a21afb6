//! Named bounds on everything an untrusted input can make the codecs allocate or loop over.
//! Units are last in each name (TIGER_STYLE); docs/FORMAT.md lists the same values.

/// The longest string a record or block may carry (a key's text, an app title, a pasted text).
pub const STRING_BYTES_MAX: usize = 1 << 20;

/// The longest JSONL line accepted.
pub const LINE_BYTES_MAX: usize = 4 << 20;

/// The most records one MessagePack batch may hold.
pub const BATCH_RECORDS_MAX: usize = 1 << 20;

/// The largest MessagePack batch accepted, in bytes.
pub const BATCH_BYTES_MAX: usize = 64 << 20;

/// The most events one block may hold.
pub const BLOCK_EVENTS_MAX: usize = 1 << 20;

/// The most bytes one block's columns may take once decompressed, all columns together.
pub const BLOCK_RAW_BYTES_MAX: usize = 64 << 20;
