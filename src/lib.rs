//! The `tracevault` package: the command-line binary and what its commands, tests and benchmarks
//! share. The layers live in their own crates: `tracevault-codecs` (event model and byte formats),
//! `tracevault-core` (the durable log, the access policy, the ingest pipeline) and `tracevault-replay`
//! (replay, exports, settings).
//!
//! # Layout
//! - [`bench`]: `tracevault bench`, the macro benchmarks and their report.
//! - [`generate`]: a seeded synthetic workload of realistic human input (for scale).
//! - [`load`]: many recorders against a server (`tracevault load`, the service benchmark).
//! - [`sapimouse`]: reads the SapiMouse recordings (real human mouse input) as sessions.
#![forbid(unsafe_code)]

pub mod bench;
pub mod generate;
pub mod load;
pub mod sapimouse;
pub mod witness;
