//! The log's errors, one enum per operation where callers decide differently.

use std::io;
use std::path::PathBuf;

/// Why bytes on disk are not what was written: a reason, without a location (the caller adds it).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct Corruption {
    pub reason: String,
}

impl Corruption {
    pub fn new(reason: impl Into<String>) -> Self {
        Corruption { reason: reason.into() }
    }
}

/// Opening (and recovering) a log failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path} at offset {offset}: {reason}")]
    Corrupt { path: PathBuf, offset: u64, reason: String },
    #[error("session index: {0}")]
    Index(String),
    #[error("invalid options: {0}")]
    Options(String),
    #[error("keys: {0}")]
    Keys(#[from] crate::keys::KeyError),
    #[error("{0}")]
    Audit(#[from] crate::audit::AuditError),
}

/// An append (or a session creation) was not acknowledged: nothing of it is guaranteed durable,
/// and nothing of it is half-written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppendError {
    #[error("session {0:?} does not exist: create it with its session record first")]
    UnknownSession(String),
    #[error("session {session:?} already exists with different metadata")]
    SessionConflict { session: String },
    #[error("session {session:?}: expected sequence {expected}, but the session holds {found} events")]
    Conflict { session: String, expected: u64, found: u64 },
    #[error("session {session:?}: {reason}")]
    Invalid { session: String, reason: String },
    #[error(
        "session {session:?}: its person was erased (key {key_id} crypto-shredded); it takes no more events"
    )]
    Erased { session: String, key_id: u32 },
    #[error("keys: {0}")]
    Key(String),
    #[error("denied: {0}")]
    Denied(String),
    #[error("the log is poisoned by an earlier write or sync failure ({0}); reopen it to recover")]
    Poisoned(String),
    #[error("the log is closed")]
    Closed,
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// A read failed; no data from the failing frame was returned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    #[error("session {0:?} does not exist")]
    UnknownSession(String),
    #[error("segment {path} at offset {offset}: {reason}")]
    Corrupt { path: PathBuf, offset: u64, reason: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("session index: {0}")]
    Index(String),
    #[error(
        "session {session:?}: its person was erased (key {key_id} crypto-shredded); it can never be read"
    )]
    Erased { session: String, key_id: u32 },
    #[error("denied: {0}")]
    Denied(String),
    #[error("the read was not recorded in the access audit log, so no data is returned: {0}")]
    Audit(String),
    #[error("keys: {0}")]
    Key(String),
}
