//! tracevault-recorder: the device side of ingest. What it captures is sealed to the server's
//! public key the moment a batch is cut, kept in a bounded spool until the server acknowledges
//! it, and sent with the same idempotency key however often it is retried.
//!
//! # Layout
//! - [`spool`]: the on-disk queue of sealed requests, bounded, oldest batches dropped first
//!   (and the gap recorded in the session).
//! - [`deliver`]: the HTTP client that drains the spool in order, retrying what may succeed
//!   later and setting aside what the server refused.
//! - [`capture`]: where input comes from, a backend per windowing system (X11 today).
//! - [`mask`] and [`atspi`]: masking on the device, before anything is written: secure input
//!   (password fields by AT-SPI, password prompts by the policy), sensitive apps, pause.
//! - [`session`]: a recording from start to end, what `tracevault record` runs.
//! - [`Recorder`]: a session's events cut into batches (every N events or T seconds), each sealed
//!   and spooled before anything is sent.
//!
//! docs/RECORDER.md is the guide; docs/FORMAT.md "Sealed bodies" and "Recorder spool" the bytes.

// Unsafe code is denied everywhere but in the one module that calls libxkbcommon.
#![deny(unsafe_code)]

pub mod atspi;
pub mod capture;
pub mod deliver;
pub mod mask;
mod recorder;
pub mod session;
pub mod spool;

pub use deliver::{Delivery, Outcome};
pub use recorder::{BatchPolicy, Recorder, RecorderError, spawn_delivery};
pub use spool::{Request, Spool, SpoolError};
