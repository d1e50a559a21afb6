//! tracevault-replay: turns stored sessions into action sequences, ML trajectories and auditor
//! timelines.
//!
//! Not built yet: this crate holds its place in the layering (codecs <- core <- replay <- the
//! binary). Its design is in DESIGN.md "Replay": blocks decode independently
//! ([`tracevault_codecs::block`]), so replay can decode a session's blocks in parallel and reduce
//! them in order.
#![forbid(unsafe_code)]

pub use tracevault_core as core;
