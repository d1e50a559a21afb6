//! tracevault-replay: turns stored sessions into action sequences, ML trajectories and auditor
//! timelines.
//!
//! - [`config`]: settings (config file, environment, flags) resolved once by a front end.
//! - [`reduce`], [`step`], [`redact`]: the action reduction, steps and redaction, from
//!   tracevault-actions (below the log, so the log can hand a redacted export's events over as
//!   values only the reduction and the redaction open).
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
pub mod timeline;

// `reduce` names both the module and the function, as in tracevault-actions.
pub use tracevault_actions::{
    Absorbed, Action, Lineage, Policy, Redactor, ReduceConfig, Reducer, Step, redact, reduce, step,
};

pub use engine::{AuditedReplay, Engine, PassReport, ReplayError, Selection, SessionSteps, StepSink};
pub use export::{ExportOptions, ExportReport, Format, export};
pub use tracevault_core as core;
