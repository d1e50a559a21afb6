//! Who may do what: the one access policy, a table of role × operation that [`crate::Log`]
//! consults itself on every read, erasure, rotation and audit query, so no front end (the CLI,
//! the HTTP service, the viewer) can decide otherwise. A front end only says who is asking
//! ([`Access`]); the answer, and its record in the access audit log, come from here.
//!
//! Least privilege (DESIGN.md): an ML role never receives raw decrypted events, nor steps with
//! unredacted text; a recorder only appends; an admin runs the store (erases people, rotates keys,
//! mints tokens) but does not read what people typed.

use serde::{Deserialize, Serialize};

/// A role: what the actor is allowed to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Sends events; may not read them back.
    Recorder,
    /// Exports redacted trajectories.
    Ml,
    /// Replays named sessions with a stated purpose; exports unredacted with one.
    Auditor,
    /// Runs the store: erases people, rotates keys, mints tokens, reads the audit log, repairs.
    Admin,
    /// tracevault itself (recovery and sealing unwrap keys to re-encode open blocks).
    System,
    /// A recorded person, reading who read their sessions (a token bound to one user).
    Subject,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Recorder => "recorder",
            Role::Ml => "ml",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
            Role::System => "system",
            Role::Subject => "subject",
        }
    }

    /// Whether the role may perform `op`: the policy table.
    pub fn may(self, op: Operation) -> bool {
        use Operation::*;
        match self {
            Role::Recorder => matches!(op, Append),
            Role::Ml => matches!(op, ExportRedacted),
            Role::Auditor => {
                matches!(
                    op,
                    ListSessions
                        | ReadRaw
                        | ReadSteps
                        | ExportRedacted
                        | ExportUnredacted
                        | ReadAudit
                        | ReadAccessHistory
                )
            }
            Role::Admin => {
                matches!(
                    op,
                    ListSessions
                        | Append
                        | Shred
                        | Rotate
                        | ReadAudit
                        | ReadAccessHistory
                        | MintTokens
                        | Repair
                )
            }
            Role::System => matches!(op, Append | Unwrap),
            Role::Subject => matches!(op, ReadAccessHistory),
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Role, String> {
        Ok(match s {
            "recorder" => Role::Recorder,
            "ml" => Role::Ml,
            "auditor" => Role::Auditor,
            "admin" => Role::Admin,
            "subject" => Role::Subject,
            other => {
                return Err(format!(
                    "unknown role {other:?}, expected recorder, ml, auditor, admin or subject"
                ));
            }
        })
    }
}

/// What a caller asks to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Operation {
    /// Append events (and create sessions).
    Append,
    /// List the sessions: ids, people's (pseudonymous) ids, devices, times, sizes; no events.
    ListSessions,
    /// Read a session's decrypted events as recorded.
    ReadRaw,
    /// Read a session's reduced steps, text as typed (an auditor's timeline).
    ReadSteps,
    /// Export trajectories with the default redaction.
    ExportRedacted,
    /// Export trajectories as recorded.
    ExportUnredacted,
    /// Crypto-erase a person.
    Shred,
    /// Rotate the master key.
    Rotate,
    /// Read the access audit log.
    ReadAudit,
    /// Read one person's access history: the audit entries that name their sessions, cut to
    /// them (a subject's view of who read their data).
    ReadAccessHistory,
    /// Mint API tokens.
    MintTokens,
    /// Unwrap a data key for tracevault's own work.
    Unwrap,
    /// Re-anchor a log whose integrity state was lost, recording the discontinuity.
    Repair,
}

impl Operation {
    pub const ALL: [Operation; 13] = [
        Operation::Append,
        Operation::ListSessions,
        Operation::ReadRaw,
        Operation::ReadSteps,
        Operation::ExportRedacted,
        Operation::ExportUnredacted,
        Operation::Shred,
        Operation::Rotate,
        Operation::ReadAudit,
        Operation::ReadAccessHistory,
        Operation::MintTokens,
        Operation::Unwrap,
        Operation::Repair,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Append => "append",
            Operation::ListSessions => "list sessions",
            Operation::ReadRaw => "read raw events",
            Operation::ReadSteps => "read steps",
            Operation::ExportRedacted => "export redacted",
            Operation::ExportUnredacted => "export unredacted",
            Operation::Shred => "erase people",
            Operation::Rotate => "rotate keys",
            Operation::ReadAudit => "read the audit log",
            Operation::ReadAccessHistory => "read a person's access history",
            Operation::MintTokens => "mint tokens",
            Operation::Unwrap => "unwrap keys",
            Operation::Repair => "repair the log's integrity state",
        }
    }

    /// Whether the operation releases personal data, and so must state a purpose.
    pub fn reads_personal_data(self) -> bool {
        matches!(
            self,
            Operation::ReadRaw
                | Operation::ReadSteps
                | Operation::ExportRedacted
                | Operation::ExportUnredacted
        )
    }
}

/// Who is asking, and why. Every read of personal data carries one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Access {
    pub actor: String,
    pub role: Role,
    pub purpose: String,
    pub ticket: Option<String>,
}

impl Access {
    pub fn new(actor: impl Into<String>, role: Role, purpose: impl Into<String>) -> Access {
        Access { actor: actor.into(), role, purpose: purpose.into(), ticket: None }
    }

    pub fn with_ticket(mut self, ticket: impl Into<String>) -> Access {
        self.ticket = Some(ticket.into());
        self
    }
}

/// Why the policy refused: said to the caller, and recorded in the audit log.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Denied(pub String);

/// The policy's decision on `access` asking for `op`: the role must hold the operation, every
/// request must name its actor, and every release of personal data must state its purpose.
pub fn check(access: &Access, op: Operation) -> Result<(), Denied> {
    if !access.role.may(op) {
        return Err(Denied(format!("role {} may not {}", access.role.as_str(), op.as_str())));
    }
    if access.actor.trim().is_empty() {
        return Err(Denied("a request must name its actor".into()));
    }
    if op.reads_personal_data() && access.purpose.trim().is_empty() {
        return Err(Denied("a read must state its purpose".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_gives_ml_nothing_raw_and_recorders_nothing_to_read() {
        for op in Operation::ALL {
            if op != Operation::ExportRedacted {
                assert!(!Role::Ml.may(op), "ml may {op:?}");
            }
            if op != Operation::Append {
                assert!(!Role::Recorder.may(op), "recorder may {op:?}");
            }
            if op.reads_personal_data() {
                assert!(!Role::Admin.may(op), "admin may {op:?}");
            }
            if op != Operation::ReadAccessHistory {
                assert!(!Role::Subject.may(op), "subject may {op:?}");
            }
        }
        assert!(Role::Auditor.may(Operation::ReadRaw));
        let ml = Access::new("m", Role::Ml, "training");
        assert_eq!(check(&ml, Operation::ReadRaw).unwrap_err().0, "role ml may not read raw events");
        assert!(check(&ml, Operation::ExportRedacted).is_ok());
        let no_purpose = Access::new("a", Role::Auditor, " ");
        assert!(check(&no_purpose, Operation::ReadRaw).is_err());
        assert!(check(&Access::new("", Role::Admin, "x"), Operation::Shred).is_err());
    }
}
