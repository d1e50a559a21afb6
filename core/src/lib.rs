//! tracevault-core: the durable, append-only log of sessions.
//!
//! # Layout
//! - [`log`]: [`Log`], the API: create sessions, append batches (acknowledged once durable), read
//!   sessions back, verify, checkpoint. Group commit in `log/writer.rs`, recovery in
//!   `log/recovery.rs`.
//! - [`frame`]: the checked unit the log writes; [`files`] the segment and journal files of frames.
//! - [`index`]: the session index in redb, disposable and rebuilt from the segments when needed.
//! - [`keys`]: the master key, a data key per person (XChaCha20-Poly1305), crypto-shredding,
//!   rotation; [`audit`]: the access audit log, written before any decrypted byte is released.
//! - [`merkle`]: the RFC 6962 Merkle tree; [`integrity`]: the tree over the log's frames, the
//!   signed tree heads, proofs, and `verify`.
//! - [`storage`]: the file-system boundary, with [`storage::FaultStorage`] for crash tests.
//!
//! docs/FORMAT.md describes every byte layout.
//!
//! # Example
//! ```
//! use tracevault_core::{Access, KeySource, Log, LogOptions, Role};
//! use tracevault_codecs::{Event, EventKind, SessionMeta};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let tmp = std::env::temp_dir().join(format!("tracevault-doc-{}", std::process::id()));
//! // Keys live outside the data directory (by default in ~/.config/tracevault).
//! let options = LogOptions { keys: Some(KeySource::dir(tmp.join("keys"))), ..LogOptions::default() };
//! let log = Log::open(&tmp.join("data"), options)?;
//! log.create_session(SessionMeta {
//!     session: "s-1".into(),
//!     user: "u-1".into(),
//!     device: None,
//!     screen: None,
//!     started_at: None,
//!     layout: None,
//!     labels: Default::default(),
//! })?;
//! let events = vec![Event { t_us: 16_000, kind: EventKind::Move { x: 10, y: 20 } }];
//! log.append("s-1", &events)?; // returns once the events are on disk, encrypted with u-1's key
//! // Every read names who reads and why, and is in the access audit log before any data.
//! let auditor = Access::new("ada", Role::Auditor, "ticket review").with_ticket("T-1");
//! assert_eq!(log.read_session(&auditor, "s-1", 0..=u64::MAX)?, events);
//! assert!(log.verify()?.ok());
//! log.close()?;
//! # std::fs::remove_dir_all(&tmp)?;
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

pub mod audit;
pub mod bytes;
pub mod error;
pub mod files;
pub mod frame;
pub mod index;
pub mod ingest;
pub mod integrity;
pub mod keys;
pub mod layout;
pub mod log;
pub mod merkle;
pub mod policy;
mod records;
pub mod storage;
mod sync;
pub mod witness;

pub use audit::{Action, AuditEntry, Decision};
pub use error::{AppendError, ErrorKind, OpenError, ReadError};
pub use integrity::{Problem, SessionProof, SignedHead, VerifyReport};
pub use keys::{KeySource, Secret};
pub use log::{
    AccessHistory, Ack, Batch, BlockEvents, Log, LogOptions, SessionBlocks, SessionInfo, Shredded, Stats,
    SyncMode,
};
pub use policy::{Access, Denied, Operation, Role};
pub use tracevault_codecs as codecs;
