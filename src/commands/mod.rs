//! One function per command. Each returns the exit code, or an error for `main` to print.

mod demo;
mod log;
mod privacy;
pub mod progress;
mod replay;

pub use demo::{DemoArgs, demo};
pub use log::{CONFIG, KEY_DIR, ingest, sessions, stats};
pub use privacy::{audit_list, audit_verify, keys_list, keys_rotate, shred, verify};
pub use replay::{ExportArgs, ReplayArgs, ReplayFormat, export, parse_time, replay};
