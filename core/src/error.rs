//! The log's errors, one enum per operation where callers decide differently, each with an
//! [`ErrorKind`] a front end can match on (the HTTP service maps kinds to statuses, the CLI to
//! exit codes) without reading messages.

use std::io;
use std::path::PathBuf;

use crate::audit::AuditError;
pub use crate::bytes::Corruption;
use crate::index::IndexError;
use crate::keys::KeyError;
use crate::policy::Denied;

/// What kind of failure an error is, for a front end to decide what to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The request is malformed or does not fit: fix it and send it again.
    BadInput,
    /// What was named does not exist (or was erased).
    NotFound,
    /// The policy refused (the refusal is in the audit log).
    Forbidden,
    /// The request conflicts with what the log holds (a sequence number, a session's metadata).
    Conflict,
    /// The log cannot serve now (I/O, poisoned, closed, held by another process): retry later or
    /// reopen.
    Unavailable,
    /// Bytes on disk are not what was written.
    Corrupt,
    /// A bug or an environment tracevault cannot work in.
    Internal,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::BadInput => "bad input",
            ErrorKind::NotFound => "not found",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Corrupt => "corrupt",
            ErrorKind::Internal => "internal",
        }
    }
}

/// Opening (and recovering) a log failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// A read-only open found no data directory there.
    #[error("{path}: no tracevault data directory here (nothing was created; check --data)")]
    Missing { path: PathBuf },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path} at offset {offset}: {reason}")]
    Corrupt { path: PathBuf, offset: u64, reason: String },
    #[error("{path}: another process has this log open (one process at a time)")]
    Locked { path: PathBuf },
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error("invalid options: {0}")]
    Options(String),
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error("finishing recovery: {0}")]
    Recovery(Box<AppendError>),
    /// The integrity state (signed heads, the audit log, the key store) does not verify against
    /// the data: opening would sign over it. Nothing was signed (only a tail torn by a crash may
    /// have been cut).
    #[error(
        "{path}: {reason}. The log was not opened, and nothing was signed over it: `tracevault verify` says \
         what is wrong; `tracevault repair` re-anchors the log, recording this discontinuity in a signed head"
    )]
    Integrity { path: PathBuf, reason: String },
}

impl OpenError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            OpenError::Missing { .. } => ErrorKind::NotFound,
            OpenError::Io { .. } | OpenError::Locked { .. } => ErrorKind::Unavailable,
            OpenError::Corrupt { .. } | OpenError::Integrity { .. } => ErrorKind::Corrupt,
            OpenError::Index(_) => ErrorKind::Corrupt,
            OpenError::Options(_) => ErrorKind::BadInput,
            OpenError::Keys(k) => k.kind(),
            OpenError::Audit(a) => a.kind(),
            OpenError::Recovery(e) => e.kind(),
        }
    }
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
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("denied: {0}")]
    Denied(#[from] Denied),
    #[error("the log is poisoned by an earlier write or sync failure ({0}); reopen it to recover")]
    Poisoned(String),
    #[error("the log is closed")]
    Closed,
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Index(#[from] IndexError),
}

impl AppendError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            AppendError::UnknownSession(_) => ErrorKind::NotFound,
            AppendError::SessionConflict { .. } | AppendError::Conflict { .. } => ErrorKind::Conflict,
            AppendError::Invalid { .. } => ErrorKind::BadInput,
            AppendError::Erased { .. } => ErrorKind::NotFound,
            AppendError::Key(k) => k.kind(),
            AppendError::Denied(_) => ErrorKind::Forbidden,
            AppendError::Poisoned(_) | AppendError::Closed | AppendError::Io { .. } => ErrorKind::Unavailable,
            AppendError::Index(_) => ErrorKind::Corrupt,
        }
    }
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
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error(
        "session {session:?}: its person was erased (key {key_id} crypto-shredded); it can never be read"
    )]
    Erased { session: String, key_id: u32 },
    #[error("denied: {0}")]
    Denied(#[from] Denied),
    #[error("the read was not recorded in the access audit log, so no data is returned: {0}")]
    Audit(Box<AppendError>),
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The integrity files do not hold what a proof needs.
    #[error("{0}")]
    Proof(String),
    /// A request the log cannot answer as asked (sizes out of range).
    #[error("{0}")]
    Invalid(String),
    /// A write the read needed first (a checkpoint before proving) failed.
    #[error("{0}")]
    Write(Box<AppendError>),
}

impl ReadError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            ReadError::UnknownSession(_) | ReadError::Erased { .. } => ErrorKind::NotFound,
            ReadError::Corrupt { .. } | ReadError::Index(_) | ReadError::Proof(_) => ErrorKind::Corrupt,
            ReadError::Io { .. } | ReadError::Audit(_) => ErrorKind::Unavailable,
            ReadError::Denied(_) => ErrorKind::Forbidden,
            ReadError::Key(k) => k.kind(),
            ReadError::Invalid(_) => ErrorKind::BadInput,
            ReadError::Write(e) => e.kind(),
        }
    }
}

impl KeyError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            KeyError::Io { .. } | KeyError::Random(_) => ErrorKind::Unavailable,
            KeyError::Format { .. } | KeyError::Damaged { .. } => ErrorKind::Corrupt,
            KeyError::Config(_) | KeyError::WrongMasterKey { .. } => ErrorKind::BadInput,
            KeyError::Erased(_) | KeyError::Unknown(_) => ErrorKind::NotFound,
        }
    }
}

impl AuditError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            AuditError::Io { .. } | AuditError::Broken(_) => ErrorKind::Unavailable,
        }
    }
}
