//! The ingest pipeline: interchange records (JSON Lines or a MessagePack batch) into the log,
//! checked whole before anything is stored, and safe to run again after any failure.
//!
//! Two passes over the input. The first parses and checks every record (docs/FORMAT.md,
//! "Ingest rules") and plans each session's batches; a bad record stops the ingest there, naming
//! the source, line, field, what was expected and what was found, with nothing stored. The second
//! appends the planned batches.
//!
//! Retry safety: a session's events in an input are cut into batches of [`BATCH_EVENTS`] in input
//! order, and each batch gets an id derived from the input itself (SHA-256 over the session id,
//! the previous batch's id and the batch's events), which the log keeps with the session. Run the
//! same input again after a failure, a kill or a power cut and the plan starts each session after
//! the last of its batches the log holds: every event is stored exactly once. The log also
//! acknowledges a retried batch id again without writing it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, Read};

use sha2::{Digest, Sha256};
use tracevault_codecs::jsonl::{JsonlError, JsonlReader};
use tracevault_codecs::{Event, Record, SessionMeta, msgpack};

use crate::error::{AppendError, ErrorKind, ReadError};
use crate::log::{Batch, Log};
use crate::policy::{self, Access, Operation};

mod rules;
pub use rules::{T_BACKWARDS_US_MAX, T_US_MAX, check_meta, check_times};

/// Events per planned batch: fixed (not a caller's choice), because batch ids derive from where
/// batches are cut, and a re-run must cut the same input the same way.
pub const BATCH_EVENTS: usize = 4096;

/// A planned batch also ends once its events take this many bytes in their MessagePack form, so
/// that a batch of long strings (pastes, titles) still fits one frame (`FRAME_BYTES_MAX`, 64 MiB)
/// and one block: checked in the first pass, never found too large in the second.
pub const PLANNED_BATCH_BYTES_MAX: usize = 8 << 20;

/// Where a record came from: the source's name and its line (a MessagePack batch: its record
/// number, from 1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Place {
    pub source: String,
    pub line: u64,
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.source, self.line)
    }
}

/// What an ingest stored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IngestReport {
    pub records: u64,
    pub sessions_created: u64,
    /// Events appended by this run.
    pub events: u64,
    /// Events of the input the log already held (from an earlier run of the same input): skipped.
    pub events_already_stored: u64,
    pub batches: u64,
    /// Every session of the input that holds events, in id order.
    pub sessions: BTreeSet<String>,
}

impl IngestReport {
    pub fn add(&mut self, other: IngestReport) {
        self.records += other.records;
        self.sessions_created += other.sessions_created;
        self.events += other.events;
        self.events_already_stored += other.events_already_stored;
        self.batches += other.batches;
        self.sessions.extend(other.sessions);
    }
}

/// Why an ingest stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IngestError {
    /// A record is malformed or does not fit the log: nothing of the input was stored.
    #[error("{place}: {reason} (nothing of {source_name} was stored)", source_name = place.source)]
    Rejected { place: Place, reason: String },
    /// The input could not be read: nothing of it was stored.
    #[error("{source_name}: {reason} (nothing of it was stored)")]
    Input { source_name: String, reason: String },
    /// The input changed between the check and the store.
    #[error("{place}: the input changed while it was being stored ({reason}); run the ingest again")]
    Changed { place: Place, reason: String },
    /// The policy refused.
    #[error("denied: {0}")]
    Denied(#[from] policy::Denied),
    /// The policy refused, and the refusal could not be recorded.
    #[error("{0}")]
    Refusal(ReadError),
    /// The log refused a write. What this run stored before it stays stored, and running the
    /// same input again stores the rest, each event once.
    #[error(
        "{source_name}: storing session {session:?}: {error}; stored before the failure: {stored_events} events \
         (running the same ingest again is safe: what is stored is skipped)"
    )]
    Store { source_name: String, session: String, stored_events: u64, error: Box<AppendError> },
}

impl IngestError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            IngestError::Rejected { .. } | IngestError::Input { .. } | IngestError::Changed { .. } => {
                ErrorKind::BadInput
            }
            IngestError::Denied(_) => ErrorKind::Forbidden,
            IngestError::Refusal(e) => e.kind(),
            IngestError::Store { error, .. } => error.kind(),
        }
    }
}

/// Records with their line numbers (or record numbers), as a [`Source`] yields them.
pub type Records<'a> = Box<dyn Iterator<Item = Result<(u64, Record), IngestError>> + 'a>;

/// A source of records that can be read twice (the check, then the store).
pub trait Source {
    /// The name errors give it (a path, `<stdin>`).
    fn name(&self) -> &str;
    /// The records from the start, each with its line number (or record number).
    fn records(&mut self) -> Result<Records<'_>, IngestError>;
}

/// JSON Lines held in memory (standard input, a request body).
pub struct JsonlBytes {
    pub name: String,
    pub bytes: Vec<u8>,
}

impl JsonlBytes {
    /// Reads all of `input`.
    pub fn read(name: impl Into<String>, mut input: impl Read) -> Result<JsonlBytes, IngestError> {
        let name = name.into();
        let mut bytes = Vec::new();
        input
            .read_to_end(&mut bytes)
            .map_err(|e| IngestError::Input { source_name: name.clone(), reason: e.to_string() })?;
        Ok(JsonlBytes { name, bytes })
    }
}

impl Source for JsonlBytes {
    fn name(&self) -> &str {
        &self.name
    }

    fn records(&mut self) -> Result<Records<'_>, IngestError> {
        Ok(jsonl_records(self.name.clone(), &self.bytes[..]))
    }
}

/// A JSON Lines file, opened once per pass, each opening given to `wrap` with the pass (1: the
/// check, 2: the store), e.g. to show progress.
pub struct JsonlFile<F> {
    pub path: std::path::PathBuf,
    name: String,
    wrap: F,
    opened: u32,
}

impl<F: FnMut(std::fs::File, u32) -> Box<dyn BufRead>> JsonlFile<F> {
    pub fn new(path: impl Into<std::path::PathBuf>, wrap: F) -> JsonlFile<F> {
        let path = path.into();
        JsonlFile { name: path.display().to_string(), path, wrap, opened: 0 }
    }
}

impl<F: FnMut(std::fs::File, u32) -> Box<dyn BufRead>> Source for JsonlFile<F> {
    fn name(&self) -> &str {
        &self.name
    }

    fn records(&mut self) -> Result<Records<'_>, IngestError> {
        let file = std::fs::File::open(&self.path)
            .map_err(|e| IngestError::Input { source_name: self.name.clone(), reason: e.to_string() })?;
        self.opened += 1;
        Ok(jsonl_records(self.name.clone(), (self.wrap)(file, self.opened)))
    }
}

fn jsonl_records<'a>(name: String, input: impl BufRead + 'a) -> Records<'a> {
    Box::new(JsonlReader::new(input).map(move |r| {
        r.map_err(|e| match e {
            JsonlError::Record { line, error } => IngestError::Rejected {
                place: Place { source: name.clone(), line },
                reason: error.to_string(),
            },
            other => IngestError::Input { source_name: name.clone(), reason: other.to_string() },
        })
    }))
}

/// A MessagePack batch (the HTTP API's format): records numbered from 1.
pub struct MsgpackBatch {
    pub name: String,
    records: Vec<Record>,
}

impl MsgpackBatch {
    pub fn decode(name: impl Into<String>, bytes: &[u8]) -> Result<MsgpackBatch, IngestError> {
        let name = name.into();
        let records = msgpack::decode_batch(bytes)
            .map_err(|e| IngestError::Input { source_name: name.clone(), reason: e.to_string() })?;
        Ok(MsgpackBatch { name, records })
    }
}

impl Source for MsgpackBatch {
    fn name(&self) -> &str {
        &self.name
    }

    fn records(&mut self) -> Result<Records<'_>, IngestError> {
        Ok(Box::new(self.records.iter().cloned().enumerate().map(|(i, r)| Ok((i as u64 + 1, r)))))
    }
}

/// One session's part of the input, as the check planned it.
#[derive(Debug)]
struct SessionPlan {
    meta: SessionMeta,
    exists: bool,
    batches: Vec<PlannedBatch>,
    /// Events of the input for this session.
    events: u64,
    /// Batches the log already holds (from an earlier run): skipped.
    skip: usize,
    /// The session's events before this run, for the append's expected sequence number.
    held: u64,
}

/// One batch of a session's part of the input.
#[derive(Debug)]
struct PlannedBatch {
    id: u128,
    events: u64,
    /// Its first event's time and place.
    t_first_us: u64,
    place: Place,
}

/// Cuts a session's events into batches and chains their ids: each commits to the session, the
/// batch before it and its events. Both passes cut with it, so they cut alike.
#[derive(Clone)]
struct Chain {
    hasher: Sha256,
    previous: u128,
    pending: usize,
    bytes: usize,
    /// An event's MessagePack form, reused event after event.
    buf: Vec<u8>,
}

impl Chain {
    fn new(session: &str) -> Chain {
        let mut c = Chain { hasher: Sha256::new(), previous: 0, pending: 0, bytes: 0, buf: Vec::new() };
        c.start(session);
        c
    }

    fn start(&mut self, session: &str) {
        self.hasher = Sha256::new();
        self.hasher.update(b"tracevault ingest batch v1\0");
        self.hasher.update((session.len() as u64).to_le_bytes());
        self.hasher.update(session.as_bytes());
        self.hasher.update(self.previous.to_le_bytes());
    }

    fn push(&mut self, event: &Event) {
        // The event's interchange form, whatever the input's: a JSONL and a MessagePack copy of
        // the same recording get the same ids.
        self.buf.clear();
        // Writing to a Vec cannot fail; an event always serialises.
        let _ = rmp_serde::encode::write(&mut self.buf, event);
        self.hasher.update((self.buf.len() as u64).to_le_bytes());
        self.hasher.update(&self.buf);
        self.pending += 1;
        self.bytes += self.buf.len();
    }

    /// Whether the batch is complete.
    fn full(&self) -> bool {
        self.pending == BATCH_EVENTS || self.bytes >= PLANNED_BATCH_BYTES_MAX
    }

    /// Ends the batch: its id (never 0, which means "no id" to the log).
    fn finish(&mut self, session: &str) -> u128 {
        let digest: [u8; 32] = std::mem::replace(&mut self.hasher, Sha256::new()).finalize().into();
        let mut id = [0u8; 16];
        id.copy_from_slice(&digest[..16]);
        let id = u128::from_le_bytes(id).max(1);
        self.previous = id;
        self.pending = 0;
        self.bytes = 0;
        self.start(session);
        id
    }
}

/// Ingests `source` into `log` for `access` (a role that may append): checks it all, then stores
/// what the log does not hold yet.
pub fn ingest(log: &Log, access: &Access, source: &mut dyn Source) -> Result<IngestReport, IngestError> {
    // Refused before anything is read (and the refusal recorded in the audit log).
    log.check_access(access, Operation::Append).map_err(|e| match e {
        ReadError::Denied(d) => IngestError::Denied(d),
        other => IngestError::Refusal(other),
    })?;
    let name = source.name().to_owned();
    let mut report = IngestReport::default();

    // Pass 1: every record checked, every session's batches planned.
    let mut plans: BTreeMap<String, SessionPlan> = BTreeMap::new();
    let mut chains: HashMap<String, (Chain, Option<u64>)> = HashMap::new();
    for item in source.records()? {
        let (line, record) = item?;
        let place = Place { source: name.clone(), line };
        report.records += 1;
        let reject = |reason: String| IngestError::Rejected { place: place.clone(), reason };
        match record {
            Record::Session(meta) => {
                check_meta(&meta).map_err(reject)?;
                if let Some(plan) = plans.get(&meta.session) {
                    if plan.meta != meta {
                        return Err(reject(format!(
                            "session {:?} is described again with other metadata (first: user {:?}, device {:?}; here: \
                             user {:?}, device {:?}): one session, one description",
                            meta.session, plan.meta.user, plan.meta.device, meta.user, meta.device
                        )));
                    }
                    continue;
                }
                let info = log.session_info(&meta.session);
                if let Some(info) = &info
                    && info.meta != meta
                {
                    return Err(reject(format!(
                        "session {:?} already exists with other metadata (user {:?}, device {:?}; here: user {:?}, \
                         device {:?})",
                        meta.session, info.meta.user, info.meta.device, meta.user, meta.device
                    )));
                }
                chains.insert(meta.session.clone(), (Chain::new(&meta.session), None));
                plans.insert(
                    meta.session.clone(),
                    SessionPlan {
                        exists: info.is_some(),
                        held: info.as_ref().map_or(0, |i| i.events),
                        meta,
                        batches: Vec::new(),
                        events: 0,
                        skip: 0,
                    },
                );
            }
            Record::Event { session, event } => {
                if !chains.contains_key(&session) {
                    let Some(info) = log.session_info(&session) else {
                        return Err(reject(format!(
                            "session {session:?} has no session record: put a \
                             {{\"type\":\"session\",\"session\":{session:?},\"user\":...}} line before its events"
                        )));
                    };
                    chains.insert(session.clone(), (Chain::new(&session), None));
                    plans.insert(
                        session.clone(),
                        SessionPlan {
                            held: info.events,
                            meta: info.meta,
                            exists: true,
                            batches: Vec::new(),
                            events: 0,
                            skip: 0,
                        },
                    );
                }
                let (chain, last_t) = chains.get_mut(&session).expect("inserted above");
                check_times(*last_t, std::slice::from_ref(&event)).map_err(|(_, reason)| reject(reason))?;
                *last_t = Some(event.t_us);
                let plan = plans.get_mut(&session).expect("planned with its chain");
                if chain.pending == 0 {
                    plan.batches.push(PlannedBatch {
                        id: 0,
                        events: 0,
                        t_first_us: event.t_us,
                        place: place.clone(),
                    });
                }
                chain.push(&event);
                plan.events += 1;
                let batch = plan.batches.last_mut().expect("pushed above");
                batch.events += 1;
                if chain.full() {
                    batch.id = chain.finish(&session);
                }
            }
        }
    }
    for (session, (chain, _)) in &mut chains {
        if chain.pending > 0 {
            let plan = plans.get_mut(session).expect("planned with its chain");
            plan.batches.last_mut().expect("a batch is open").id = chain.finish(session);
        }
    }
    // Where each session starts: after the last of its batches the log holds, which must be the
    // last thing the session holds (else the input overlaps stored events it did not write: a
    // grown or cut copy of an earlier input).
    for (session, plan) in &mut plans {
        let recent = log.recent_batches(session);
        let matched = plan.batches.iter().rposition(|b| recent.iter().any(|r| r.0 == b.id));
        if let Some(j) = matched {
            let m = recent.iter().position(|r| r.0 == plan.batches[j].id).expect("matched above");
            let (_, seq_first, events) = recent[m];
            if m + 1 != recent.len() || seq_first + events != plan.held {
                let place = plan
                    .batches
                    .get(j + 1)
                    .map_or_else(|| plan.batches[j].place.clone(), |b| b.place.clone());
                return Err(IngestError::Rejected {
                    place,
                    reason: format!(
                        "session {session:?} holds {} events, and after this input's batch {} (events {}..{}) it holds \
                         events this input did not write: the input overlaps what is stored (a grown or cut copy of an \
                         earlier input?); ingest only the new part, under the same or a new session",
                        plan.held,
                        j + 1,
                        seq_first,
                        seq_first + events
                    ),
                });
            }
        }
        plan.skip = matched.map_or(0, |j| j + 1);
        report.events_already_stored += plan.batches[..plan.skip].iter().map(|b| b.events).sum::<u64>();
        if let (Some(first), Some(t_max)) =
            (plan.batches.get(plan.skip), log.session_info(session).and_then(|i| i.t_max_us))
            && first.t_first_us + T_BACKWARDS_US_MAX < t_max
        {
            return Err(IngestError::Rejected {
                place: first.place.clone(),
                reason: format!(
                    "field t: {} goes back {} µs from the session's latest stored event ({t_max}): is this input \
                     already stored (by a run whose batches the log no longer remembers), or another session's?",
                    first.t_first_us,
                    t_max - first.t_first_us
                ),
            });
        }
    }

    // Pass 2: the planned batches, in input order per session, each cut and hashed again and
    // stored only if it is the batch the check planned.
    let mut stored = 0u64;
    let store_error = |session: &str, stored: u64, error| IngestError::Store {
        source_name: name.clone(),
        session: session.to_owned(),
        stored_events: stored,
        error: Box::new(error),
    };
    let changed = |line: u64, reason: String| IngestError::Changed {
        place: Place { source: name.clone(), line },
        reason,
    };
    for plan in plans.values() {
        if !plan.exists
            && log
                .create_session(plan.meta.clone())
                .map_err(|e| store_error(&plan.meta.session, stored, e))?
        {
            report.sessions_created += 1;
        }
    }
    struct Storing {
        chain: Chain,
        events: Vec<Event>,
        batch: usize,
        /// The session's events, for the next append's expected sequence number.
        seq: u64,
    }
    let flush = |session: &str, s: &mut Storing, line: u64, stored: &mut u64| -> Result<(), IngestError> {
        let plan = &plans[session];
        let id = s.chain.finish(session);
        let Some(planned) = plan.batches.get(s.batch) else {
            return Err(changed(
                line,
                format!("session {session:?} has more events than when it was checked"),
            ));
        };
        if planned.id != id {
            return Err(changed(
                line,
                format!("session {session:?}'s batch {} differs from the one checked", s.batch + 1),
            ));
        }
        if s.batch >= plan.skip {
            let ack = log
                .append_batch(Batch {
                    session,
                    events: &s.events,
                    batch_id: Some(id),
                    expected_seq: Some(s.seq),
                })
                .map_err(|e| store_error(session, *stored, e))?;
            if !ack.duplicate {
                *stored += ack.events;
            }
            s.seq = ack.seq_first + ack.events;
        }
        s.events.clear();
        s.batch += 1;
        Ok(())
    };
    let mut storing: HashMap<String, Storing> = HashMap::new();
    let mut line = 0;
    for item in source.records()? {
        // A record that now fails to read was read fine by the check: the input changed.
        let (at, record) = item.map_err(|e| match e {
            IngestError::Rejected { place, reason } => IngestError::Changed { place, reason },
            other => other,
        })?;
        line = at;
        let Record::Event { session, event } = record else { continue };
        let Some(plan) = plans.get(&session) else {
            return Err(changed(
                line,
                format!("session {session:?} was not in the input when it was checked"),
            ));
        };
        let s = storing.entry(session.clone()).or_insert_with(|| Storing {
            chain: Chain::new(&session),
            events: Vec::new(),
            batch: 0,
            seq: plan.held,
        });
        s.chain.push(&event);
        s.events.push(event);
        if s.chain.full() {
            flush(&session, s, line, &mut stored)?;
        }
    }
    for (session, s) in &mut storing {
        if !s.events.is_empty() {
            flush(session, s, line, &mut stored)?;
        }
    }
    for (session, plan) in &plans {
        if storing.get(session).map_or(0, |s| s.batch) != plan.batches.len() {
            return Err(changed(
                line,
                format!("session {session:?} has fewer events than when it was checked"),
            ));
        }
    }
    report.events = stored;
    report.batches = plans.values().map(|p| (p.batches.len() - p.skip) as u64).sum();
    report.sessions = plans.iter().filter(|(_, p)| p.events > 0).map(|(s, _)| s.clone()).collect();
    Ok(report)
}
