//! The replay engine: selects sessions, reads them (one audited access for the whole selection),
//! decodes their blocks in parallel and reduces them in order, and streams the steps to sinks.
//!
//! Parallel across sessions (a window of sessions at a time) and, within a session, across
//! blocks (a window of blocks decoded at once, reduced in order). The steps a sink sees, and so
//! every byte written, do not depend on the number of threads: sessions are taken in id order,
//! each session's steps come from one sequential reduction, and sinks receive sessions in order.
//! Memory is bounded by the windows, not by the data: a window of sessions' steps and a window of
//! decoded blocks.

use std::ops::RangeInclusive;

use rayon::prelude::*;
use tracevault_codecs::block::BlockDecoder;
use tracevault_codecs::{Event, SessionMeta};
use tracevault_core::{Access, Log, Operation, ReadError, SessionBlocks, SessionInfo, SessionProof};

use tracevault_actions::{Block, Redactable, RedactableReducer};

use crate::redact::Redactor;
use crate::reduce::{ReduceConfig, Reducer};
use crate::step::{Absorbed, Step};

/// Why a replay or export failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{path}: {source}")]
    Write { path: std::path::PathBuf, source: std::io::Error },
    #[error("parquet: {0}")]
    Parquet(String),
    #[error("{0}")]
    Invalid(String),
}

/// Which sessions to replay. Empty fields select everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    /// These sessions only.
    pub sessions: Vec<String>,
    /// This person's sessions only.
    pub user: Option<String>,
    /// Sessions that started at or after this RFC 3339 time (compared as written, so use UTC).
    pub started_from: Option<String>,
    /// Sessions that started before this RFC 3339 time.
    pub started_before: Option<String>,
    /// Sessions carrying every one of these labels.
    pub labels: Vec<(String, String)>,
}

impl Selection {
    fn matches(&self, s: &SessionInfo) -> bool {
        let m = &s.meta;
        (self.sessions.is_empty() || self.sessions.contains(&m.session))
            && self.user.as_ref().is_none_or(|u| *u == m.user)
            && self.started_from.as_ref().is_none_or(|f| m.started_at.as_ref().is_some_and(|t| t >= f))
            && self.started_before.as_ref().is_none_or(|b| m.started_at.as_ref().is_some_and(|t| t < b))
            && self.labels.iter().all(|(k, v)| m.labels.get(k) == Some(v))
    }
}

/// One session, replayed.
#[derive(Clone, Debug, PartialEq)]
pub struct SessionSteps {
    pub meta: SessionMeta,
    pub steps: Vec<Step>,
    /// The steps are already redacted (the session was read for a redacted export, and its
    /// events could only be opened through the redaction).
    pub redacted: bool,
    pub absorbed: Option<Absorbed>,
    pub events: u64,
}

/// Where steps go. A session's steps are first *rendered* (redacted, serialised: on the replay
/// threads, sessions in parallel), then *written*, one session at a time, in session order.
pub trait StepSink: Sync {
    type Rendered: Send;
    /// The redaction a sink applies: the engine needs it to open a redacted export's events,
    /// which the log hands over only as [`Redactable`] values. `None`: the sink takes plain steps
    /// (a replay, an unredacted export, a benchmark).
    fn redactor(&self) -> Option<&Redactor> {
        None
    }
    fn render(&self, session: &SessionSteps) -> Result<Self::Rendered, ReplayError>;
    /// Called from one thread at a time, in session order (while the pool renders the sessions
    /// after): a sink keeps its writer behind a lock only it takes.
    fn write(&self, rendered: Self::Rendered) -> Result<(), ReplayError>;
}

thread_local! {
    /// Each thread's block decoder: a zstd context costs more to create than a block of SapiMouse
    /// takes to decode (measured: creating one per block was 12% of a replay's time).
    static DECODER: std::cell::RefCell<BlockDecoder> = std::cell::RefCell::new(BlockDecoder::new());
}

/// Runs `f` with this thread's block decoder.
fn with_decoder<T>(f: impl FnOnce(&mut BlockDecoder) -> T) -> T {
    DECODER.with(|d| match d.try_borrow_mut() {
        Ok(mut decoder) => f(&mut decoder),
        // Only if `f` itself decodes on this thread (it does not): a decoder of its own.
        Err(_) => f(&mut BlockDecoder::new()),
    })
}

/// What a pass over the selection did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PassReport {
    pub sessions: u64,
    pub events: u64,
    pub steps: u64,
    pub episodes: u64,
    /// Events belonging to no step (sessions with no action at all).
    pub absorbed_events: u64,
    /// Sessions selected but not readable: (session, reason), such as a crypto-shredded person's.
    pub skipped: Vec<(String, String)>,
}

/// An auditor's replay of one session, proven before it was read.
#[derive(Clone, Debug)]
pub struct AuditedReplay {
    /// Every sealed block of the session, hashed and checked against the newest signed head.
    pub proof: SessionProof,
    pub session: SessionSteps,
    /// The events in the asked range, when raw events were asked for.
    pub raw: Vec<Event>,
}

/// The replay engine: the reduction's thresholds and one thread pool, made once and used for every
/// replay and export (a server keeps one for its life), over whichever log each call names.
pub struct Engine {
    config: ReduceConfig,
    pool: rayon::ThreadPool,
    threads: usize,
}

/// Blocks of one session decoded at once, per thread.
const BLOCK_WINDOW_PER_THREAD: usize = 4;
/// Sessions replayed at once, per thread.
const SESSION_WINDOW_PER_THREAD: usize = 4;

impl Engine {
    /// An engine on `threads` threads (0: one per core).
    pub fn new(config: ReduceConfig, threads: usize) -> Result<Engine, ReplayError> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("tracevault-replay-{i}"))
            .build()
            .map_err(|e| ReplayError::Invalid(format!("starting {threads} replay threads: {e}")))?;
        let threads = pool.current_num_threads();
        Ok(Engine { config, pool, threads })
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    /// The reduction's thresholds.
    pub fn config(&self) -> &ReduceConfig {
        &self.config
    }

    /// The selected sessions, in id order.
    pub fn select(&self, log: &Log, selection: &Selection) -> Result<Vec<SessionInfo>, ReplayError> {
        for id in &selection.sessions {
            if !log.has_session(id) {
                return Err(ReplayError::Read(ReadError::UnknownSession(id.clone())));
            }
        }
        Ok(log.sessions().into_iter().filter(|s| selection.matches(s)).collect())
    }

    /// Reads every block of a session and hands each, in order, to `f`: the sealed blocks read
    /// by `read` a window at a time in parallel, then the open block by `open`.
    fn in_order<T: Send>(
        &self,
        blocks: &SessionBlocks,
        read: impl Fn(usize, &mut BlockDecoder) -> Result<T, ReadError> + Sync + Send,
        open: impl FnOnce(&mut BlockDecoder) -> Result<Option<T>, ReadError>,
        mut f: impl FnMut(T),
    ) -> Result<(), ReplayError> {
        let window = (self.threads * BLOCK_WINDOW_PER_THREAD).max(1);
        let n = blocks.sealed_count();
        let mut start = 0;
        while start < n {
            let end = (start + window).min(n);
            let decoded: Vec<Result<T, ReadError>> =
                (start..end).into_par_iter().map(|i| with_decoder(|decoder| read(i, decoder))).collect();
            for block in decoded {
                f(block?);
            }
            start = end;
        }
        if let Some(block) = with_decoder(open)? {
            f(block);
        }
        Ok(())
    }

    /// Every block of a session, in order, to `f`; returns the events read.
    fn for_each_block(
        &self,
        blocks: &SessionBlocks,
        mut f: impl FnMut(u32, u64, &[Event]),
    ) -> Result<u64, ReplayError> {
        let mut events = 0u64;
        self.in_order(
            blocks,
            |i, d| blocks.read_sealed(i, d),
            |d| blocks.read_open(d),
            |b| {
                events += b.events.len() as u64;
                f(b.block, b.seq_first, &b.events);
            },
        )?;
        Ok(events)
    }

    /// As [`Engine::for_each_block`], for blocks read for a redacted export: each block goes to
    /// `f` as a [`Redactable`] value.
    fn for_each_redactable(
        &self,
        blocks: &SessionBlocks,
        mut f: impl FnMut(&Redactable<Block>),
    ) -> Result<u64, ReplayError> {
        let mut events = 0u64;
        self.in_order(
            blocks,
            |i, d| blocks.read_sealed_redactable(i, d),
            |d| blocks.read_open_redactable(d),
            |b| {
                events += b.len() as u64;
                f(&b);
            },
        )?;
        Ok(events)
    }

    /// A redacted export's session: reduced and redacted without its events or unredacted steps
    /// ever being readable here.
    fn reduce_redactable(
        &self,
        meta: &SessionMeta,
        blocks: &SessionBlocks,
        redactor: &Redactor,
    ) -> Result<SessionSteps, ReplayError> {
        let mut reducer =
            RedactableReducer::new(self.config.clone(), meta.screen).with_layout(meta.layout.as_deref());
        let events = self.for_each_redactable(blocks, |block| reducer.push(block))?;
        let (steps, absorbed) = reducer.finish();
        let steps = redactor.open(steps).map_err(ReplayError::Invalid)?;
        Ok(SessionSteps { meta: meta.clone(), steps, absorbed, events, redacted: true })
    }

    /// The steps of blocks already read (their read recorded when they were opened: a viewer's
    /// timeline over the blocks it holds), decoded on the engine's threads.
    pub fn steps_of(&self, meta: &SessionMeta, blocks: &SessionBlocks) -> Result<SessionSteps, ReplayError> {
        self.pool.install(|| self.reduce_blocks(meta, blocks))
    }

    fn reduce_blocks(&self, meta: &SessionMeta, blocks: &SessionBlocks) -> Result<SessionSteps, ReplayError> {
        let mut reducer = Reducer::new(self.config.clone(), meta.screen).with_layout(meta.layout.as_deref());
        let mut steps = Vec::new();
        let events = self.for_each_block(blocks, |block, seq_first, events| {
            reducer.push_block(block, seq_first, events);
            steps.extend(reducer.drain());
        })?;
        let (rest, absorbed) = reducer.finish();
        steps.extend(rest);
        Ok(SessionSteps { meta: meta.clone(), steps, absorbed, events, redacted: false })
    }

    /// Replays the selection of `log` into `sink` for `op` (the log's policy decides whether
    /// `access` may, and records it: one audit entry for all the sessions, before anything is
    /// read). `progress` is told (sessions done, sessions selected) after each window.
    pub fn run<S: StepSink>(
        &self,
        log: &Log,
        access: &Access,
        op: Operation,
        selection: &Selection,
        sink: &S,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<PassReport, ReplayError> {
        let selected = self.select(log, selection)?;
        let mut report = PassReport::default();
        let (readable, erased): (Vec<&SessionInfo>, Vec<&SessionInfo>) =
            selected.iter().partition(|s| !s.erased);
        for s in erased {
            report.skipped.push((s.meta.session.clone(), "its person was erased (crypto-shredded)".into()));
        }
        let ids: Vec<&str> = readable.iter().map(|s| s.meta.session.as_str()).collect();
        let readers = log.read_sessions(access, op, &ids)?;
        let total = readers.len() as u64;
        let window = (self.threads * SESSION_WINDOW_PER_THREAD).max(1);
        let shared: &S = sink;
        // A pipeline: the pool decodes, reduces and renders the next window of sessions while
        // this thread writes the one before (the sink's write is sequential, in session order).
        std::thread::scope(|scope| {
            let (tx, rx) = std::sync::mpsc::sync_channel(1);
            scope.spawn(move || {
                for (infos, blocks) in readable.chunks(window).zip(readers.chunks(window)) {
                    let results = self.pool.install(|| self.render_window(shared, infos, blocks));
                    if tx.send((infos.len() as u64, results)).is_err() {
                        return; // the writer stopped on an error
                    }
                }
            });
            let mut done = 0u64;
            for (sessions, results) in rx {
                for result in results {
                    let (counts, rendered) = result?;
                    report.sessions += counts.sessions;
                    report.events += counts.events;
                    report.steps += counts.steps;
                    report.episodes += counts.episodes;
                    report.absorbed_events += counts.absorbed_events;
                    shared.write(rendered)?;
                }
                done += sessions;
                progress(done, total);
            }
            Ok(report)
        })
    }

    /// Decodes, reduces and renders a window of sessions, in parallel on the pool.
    #[allow(clippy::type_complexity)]
    fn render_window<S: StepSink>(
        &self,
        sink: &S,
        infos: &[&SessionInfo],
        blocks: &[SessionBlocks],
    ) -> Vec<Result<(PassReport, S::Rendered), ReplayError>> {
        infos
            .par_iter()
            .zip(blocks.par_iter())
            .map(|(info, b)| {
                let session = if b.redactable_only() {
                    let redactor = sink.redactor().ok_or_else(|| {
                        ReplayError::Invalid(
                            "a redacted export's events open only through a redacting sink".into(),
                        )
                    })?;
                    self.reduce_redactable(&info.meta, b, redactor)?
                } else {
                    self.reduce_blocks(&info.meta, b)?
                };
                let counts = PassReport {
                    sessions: 1,
                    events: session.events,
                    steps: session.steps.len() as u64,
                    episodes: session.steps.last().map_or(0, |s| u64::from(s.episode) + 1),
                    absorbed_events: session.absorbed.map_or(0, |a| a.last_event - a.first_event + 1),
                    skipped: Vec::new(),
                };
                Ok((counts, sink.render(&session)?))
            })
            .collect()
    }

    /// Reads and decodes the selection without reducing it (the benchmark's baseline); returns
    /// the events read.
    pub fn decode_only(&self, log: &Log, access: &Access, selection: &Selection) -> Result<u64, ReplayError> {
        let selected = self.select(log, selection)?;
        let ids: Vec<&str> = selected.iter().filter(|s| !s.erased).map(|s| s.meta.session.as_str()).collect();
        let readers = log.read_sessions(access, Operation::ReadRaw, &ids)?;
        let window = (self.threads * SESSION_WINDOW_PER_THREAD).max(1);
        let mut total = 0;
        for blocks in readers.chunks(window) {
            let counts: Vec<Result<u64, ReplayError>> = self
                .pool
                .install(|| blocks.par_iter().map(|b| self.for_each_block(b, |_, _, _| {})).collect());
            for c in counts {
                total += c?;
            }
        }
        Ok(total)
    }

    /// An auditor's replay of one session: the steps its events reduce to (from the whole
    /// session, so steps keep their context), recorded as one read. With `raw`, the events in
    /// `t_range` are returned too (a read of raw events, [`Operation::ReadRaw`]); without it, an
    /// empty list (a read of steps, [`Operation::ReadSteps`]: a long session's events are not held
    /// in memory for nothing).
    pub fn replay_session(
        &self,
        log: &Log,
        access: &Access,
        id: &str,
        t_range: RangeInclusive<u64>,
        raw: bool,
    ) -> Result<(SessionSteps, Vec<Event>), ReplayError> {
        let info = log.session_info(id).ok_or_else(|| ReadError::UnknownSession(id.to_owned()))?;
        let op = if raw { Operation::ReadRaw } else { Operation::ReadSteps };
        let blocks = log.read_sessions(access, op, &[id])?.pop().ok_or_else(|| {
            ReplayError::Invalid(format!("session {id}: the log returned no blocks for it"))
        })?;
        let mut reducer =
            Reducer::new(self.config.clone(), info.meta.screen).with_layout(info.meta.layout.as_deref());
        let mut steps = Vec::new();
        let mut events_out = Vec::new();
        let events = self.pool.install(|| {
            self.for_each_block(&blocks, |block, seq_first, events| {
                if raw {
                    events_out.extend(events.iter().filter(|e| t_range.contains(&e.t_us)).cloned());
                }
                reducer.push_block(block, seq_first, events);
                steps.extend(reducer.drain());
            })
        })?;
        let (rest, absorbed) = reducer.finish();
        steps.extend(rest);
        steps.retain(|s| s.t_end_us >= *t_range.start() && s.t_start_us <= *t_range.end());
        Ok((SessionSteps { meta: info.meta, steps, absorbed, events, redacted: false }, events_out))
    }

    /// The auditor's verified read: proves the session's blocks are in the log under the newest
    /// signed head (checked against the frames on disk), and only then replays it (the policy
    /// decides and the audit log records, as for [`Engine::replay_session`]). A session that does
    /// not prove is not read.
    pub fn audited_replay(
        &self,
        log: &Log,
        access: &Access,
        id: &str,
        t_range: RangeInclusive<u64>,
        raw: bool,
    ) -> Result<AuditedReplay, ReplayError> {
        let proof = log.verify_session(id)?;
        let (session, raw) = self.replay_session(log, access, id, t_range, raw)?;
        Ok(AuditedReplay { proof, session, raw })
    }
}
