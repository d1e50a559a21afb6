//! tracevault-core: the durable, append-only log of sessions.
//!
//! # Layout
//! - [`log`]: [`Log`], the API: create sessions, append batches (acknowledged once durable), read
//!   sessions back, verify, checkpoint. Group commit in `log/writer.rs`, recovery in
//!   `log/recovery.rs`.
//! - [`frame`]: the checked unit the log writes; [`files`] the segment and journal files of frames.
//! - [`index`]: the session index in redb, disposable and rebuilt from the segments when needed.
//! - [`merkle`]: the RFC 6962 Merkle tree, audit paths and consistency proofs (not yet over the
//!   log's frames).
//! - [`storage`]: the file-system boundary, with [`storage::FaultStorage`] for crash tests.
//!
//! docs/FORMAT.md describes every byte layout.
//!
//! # Example
//! ```
//! use tracevault_core::{Log, LogOptions};
//! use tracevault_codecs::{Event, EventKind, SessionMeta};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = std::env::temp_dir().join(format!("tracevault-doc-{}", std::process::id()));
//! let log = Log::open(&dir, LogOptions::default())?;
//! log.create_session(SessionMeta {
//!     session: "s-1".into(),
//!     user: "u-1".into(),
//!     device: None,
//!     screen: None,
//!     started_at: None,
//!     labels: Default::default(),
//! })?;
//! let events = vec![Event { t_us: 16_000, kind: EventKind::Move { x: 10, y: 20 } }];
//! log.append("s-1", &events)?; // returns once the events are on disk
//! assert_eq!(log.read_session("s-1", 0..=u64::MAX)?, events);
//! log.close()?;
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

pub mod error;
pub mod files;
pub mod frame;
pub mod index;
pub mod log;
pub mod merkle;
mod records;
pub mod storage;

pub use error::{AppendError, OpenError, ReadError};
pub use log::{Ack, Batch, Log, LogOptions, SessionInfo, Stats, SyncMode, VerifyReport};
pub use tracevault_codecs as codecs;
