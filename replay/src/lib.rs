//! tracevault-replay: turns stored sessions into action sequences, ML trajectories and auditor
//! timelines.
//!
//! - [`config`]: settings (config file, environment, flags) resolved once by a front end.
//! - [`reduce`]: the action reduction state machine (docs/ACTIONS.md states every rule).
//! - [`step`]: a step: action, arguments, PyAutoGUI call, lineage; its JSON form.
//! - [`redact`]: the redaction policies applied before anything is exported.
//! - [`engine`]: selection, parallel decoding (rayon) and ordered reduction, streamed to sinks.
//! - [`export`]: JSON Lines and Parquet exports with `meta/info.json`.
//! - [`timeline`]: the auditor's readable timeline.
//!
//! Every read goes through the log's audited path: an export or a replay is one entry in the
//! access audit log, written before any event is decrypted.
#![forbid(unsafe_code)]

pub mod config;
pub mod engine;
pub mod export;
pub mod redact;
pub mod reduce;
pub mod step;
pub mod timeline;

pub use engine::{AuditedReplay, Engine, PassReport, ReplayError, Selection, SessionSteps, StepSink};
pub use export::{ExportOptions, ExportReport, Format, export};
pub use redact::{Policy, Redactor};
pub use reduce::{ReduceConfig, Reducer, reduce};
pub use step::{Absorbed, Action, Lineage, Step};
pub use tracevault_core as core;
