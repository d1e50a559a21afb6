//! The `tracevault` package: the command-line binary and what its commands, tests and benchmarks
//! share. The layers live in their own crates: `tracevault-codecs` (event model and byte formats),
//! `tracevault-core` (the durable log) and `tracevault-replay` (replay and exports).
//!
//! # Layout
//! - [`config`]: the optional TOML config file.
//! - [`generate`]: a seeded synthetic workload of realistic human input (for scale).
//! - [`ingest`]: interchange files into the log, a validated batch at a time.
//! - [`sapimouse`]: reads the SapiMouse recordings (real human mouse input) as sessions.
#![forbid(unsafe_code)]

pub mod config;
pub mod generate;
pub mod ingest;
pub mod sapimouse;
