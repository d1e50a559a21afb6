//! Ingesting interchange files into the log: JSON Lines (or MessagePack batches), validated a
//! batch at a time so that a malformed record rejects its whole batch and nothing of it is stored.

use std::collections::BTreeMap;
use std::io::BufRead;

use tracevault_codecs::jsonl::{JsonlError, JsonlReader};
use tracevault_codecs::{Event, Record, SessionMeta, msgpack};
use tracevault_core::{AppendError, Log};

/// The most lines validated and stored together. A bad line rejects its batch only.
pub const BATCH_LINES_MAX: usize = 10_000;

/// What an ingest stored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IngestReport {
    pub records: u64,
    pub sessions_created: u64,
    pub events: u64,
    pub batches: u64,
    /// Every session that received events, in id order.
    pub sessions: std::collections::BTreeSet<String>,
}

/// Why an ingest stopped. Batches before the failing one are stored; the failing one is not.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// A record is malformed or does not fit the log (unknown session, conflicting metadata).
    #[error("{source_name}:{line}: {reason} (nothing of lines {first_line}..={last_line} was stored)")]
    Rejected { source_name: String, line: u64, reason: String, first_line: u64, last_line: u64 },
    /// The input could not be read.
    #[error("{source_name}: {reason}")]
    Input { source_name: String, reason: String },
    /// The log refused a write (I/O failure, poisoned); earlier records of the batch may be stored.
    #[error("{source_name}: storing lines {first_line}..={last_line}: {source}")]
    Store { source_name: String, first_line: u64, last_line: u64, source: AppendError },
}

/// A batch of records, validated, ready to store.
#[derive(Default)]
struct Pending {
    /// (line, record) in input order.
    records: Vec<(u64, Record)>,
}

impl Pending {
    /// Checks the batch against itself and the log, then stores it: new sessions first, then one
    /// append per session with its events in input order.
    fn store(&mut self, log: &Log, source_name: &str, report: &mut IngestReport) -> Result<(), IngestError> {
        if self.records.is_empty() {
            return Ok(());
        }
        let first_line = self.records.first().map_or(0, |r| r.0);
        let last_line = self.records.last().map_or(0, |r| r.0);
        let reject = |line: u64, reason: String| IngestError::Rejected {
            source_name: source_name.to_owned(),
            line,
            reason,
            first_line,
            last_line,
        };
        let mut new_sessions: BTreeMap<String, SessionMeta> = BTreeMap::new();
        let mut appends: BTreeMap<String, Vec<Event>> = BTreeMap::new();
        for (line, record) in self.records.drain(..) {
            match record {
                Record::Session(meta) => {
                    let existing = log
                        .session_info(&meta.session)
                        .map(|i| i.meta)
                        .or_else(|| new_sessions.get(&meta.session).cloned());
                    match existing {
                        Some(old) if old != meta => {
                            return Err(reject(
                                line,
                                format!(
                                    "session {:?} already exists with different metadata (user {:?}, device {:?})",
                                    meta.session, old.user, old.device
                                ),
                            ));
                        }
                        Some(_) => {}
                        None => {
                            new_sessions.insert(meta.session.clone(), meta);
                        }
                    }
                }
                Record::Event { session, event } => {
                    // Checked once per session and batch, not once per event.
                    let known = appends.contains_key(&session)
                        || new_sessions.contains_key(&session)
                        || log.has_session(&session);
                    if !known {
                        return Err(reject(
                            line,
                            format!(
                                "session {session:?} has no session record: put a {{\"type\":\"session\",\"session\":{session:?},\"user\":...}} line before its events"
                            ),
                        ));
                    }
                    appends.entry(session).or_default().push(event);
                }
            }
        }
        let store_error = |source| IngestError::Store {
            source_name: source_name.to_owned(),
            first_line,
            last_line,
            source,
        };
        for meta in new_sessions.into_values() {
            log.create_session(meta).map_err(store_error)?;
            report.sessions_created += 1;
        }
        for (session, events) in appends {
            for chunk in events.chunks(tracevault_codecs::limits::BLOCK_EVENTS_MAX) {
                log.append(&session, chunk).map_err(store_error)?;
                report.events += chunk.len() as u64;
            }
            report.sessions.insert(session);
        }
        report.batches += 1;
        Ok(())
    }
}

/// Ingests JSON Lines from `input`, `batch_lines` lines at a time.
pub fn ingest_jsonl(
    log: &Log,
    input: impl BufRead,
    source_name: &str,
    batch_lines: usize,
) -> Result<IngestReport, IngestError> {
    let mut report = IngestReport::default();
    let mut pending = Pending::default();
    let mut batch_start = 1;
    let mut reader = JsonlReader::new(input);
    loop {
        match reader.next() {
            None => break,
            Some(Ok((line, record))) => {
                if pending.records.is_empty() {
                    batch_start = line;
                }
                pending.records.push((line, record));
                report.records += 1;
                if pending.records.len() >= batch_lines {
                    pending.store(log, source_name, &mut report)?;
                }
            }
            Some(Err(JsonlError::Record { line, error })) => {
                // The rest of this batch is not read: the batch is rejected whole.
                let first_line = if pending.records.is_empty() { line } else { batch_start };
                return Err(IngestError::Rejected {
                    source_name: source_name.to_owned(),
                    line,
                    reason: error.to_string(),
                    first_line,
                    last_line: line,
                });
            }
            Some(Err(e)) => {
                return Err(IngestError::Input {
                    source_name: source_name.to_owned(),
                    reason: e.to_string(),
                });
            }
        }
    }
    pending.store(log, source_name, &mut report)?;
    Ok(report)
}

/// Ingests one MessagePack batch (the HTTP API's format): all of it, or nothing.
pub fn ingest_msgpack(log: &Log, bytes: &[u8], source_name: &str) -> Result<IngestReport, IngestError> {
    let records = msgpack::decode_batch(bytes).map_err(|e| IngestError::Input {
        source_name: source_name.to_owned(),
        reason: format!("{e} (nothing of the batch was stored)"),
    })?;
    let mut report = IngestReport { records: records.len() as u64, ..IngestReport::default() };
    let mut pending =
        Pending { records: records.into_iter().enumerate().map(|(i, r)| (i as u64 + 1, r)).collect() };
    pending.store(log, source_name, &mut report)?;
    Ok(report)
}
