//! tracevault-core: the durable, append-only log of sessions.
//!
//! Not built yet: this crate holds its place in the layering (codecs <- core <- replay <- the
//! binary) so that the dependency direction is fixed from the first commit. Its design is in
//! DESIGN.md "Storage": segments of CRC-checked frames, each frame one encrypted
//! [`tracevault_codecs::block`]; group commit; recovery; a key per person; a Merkle tree over the
//! frames; the access audit log. It gains code, and docs/FORMAT.md its layouts, when the durable
//! log lands.
#![forbid(unsafe_code)]

pub use tracevault_codecs as codecs;
