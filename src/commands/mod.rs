//! One function per command. Each returns the exit code, or an error for `main` to print.

mod demo;
mod log;

pub use demo::demo;
pub use log::{ingest, sessions, stats, verify};
