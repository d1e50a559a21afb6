//! tracevault-codecs: the event model and its byte formats. Pure: no I/O beyond the readers
//! it is handed, no threads.
//!
//! # Layout
//! - [`event`]: sessions and the input events they hold ([`Event`], [`EventKind`], [`SessionMeta`]).
//! - [`jsonl`]: JSON Lines, the interchange format with recorders and tools, strict on input.
//! - [`msgpack`]: the same records as a MessagePack batch, the HTTP API's binary format.
//! - [`block`]: the columnar, delta-encoded, zstd-compressed block that the log stores.
//! - [`sealed`]: a request body sealed to the server's public key (HPKE), as recorders send and spool it.
//! - [`limits`]: the named bounds every decoder of untrusted bytes checks.
//!
//! docs/FORMAT.md describes every byte layout.
//!
//! # Example
//! ```
//! use tracevault_codecs::{block::{BlockEncoder, decode_block}, jsonl, Record};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let input = r#"{"session":"s-1","t":16000,"kind":"move","x":129,"y":337}
//! {"session":"s-1","t":21000,"kind":"down","button":"left","x":130,"y":337}"#;
//! let mut events = Vec::new();
//! for record in jsonl::JsonlReader::new(input.as_bytes()) {
//!     if let (_line, Record::Event { event, .. }) = record? {
//!         events.push(event);
//!     }
//! }
//! let mut block = Vec::new();
//! BlockEncoder::default().encode(&events, &mut block)?;
//! assert_eq!(decode_block(&block)?, events);
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

pub mod batch;
pub mod block;
pub mod event;
pub mod jsonl;
pub mod limits;
pub mod msgpack;
mod record;
pub mod sealed;

pub use event::{Button, Event, EventKind, Key, Screen, SessionMeta};
pub use record::{Record, RecordError};
