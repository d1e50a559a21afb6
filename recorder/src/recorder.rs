//! One recorded session: events cut into batches, each sealed and spooled before it is sent, and
//! a delivery thread that drains the spool to the server in order.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracevault_codecs::sealed::{self, PublicKey};
use tracevault_codecs::{Event, EventKind, Record, SessionMeta, batch, jsonl};

use crate::deliver::Delivery;
use crate::spool::{Header, Request, Spool, SpoolError};

/// When a batch is cut: at `max_events` events or when its first event is `max_age` old,
/// whichever comes first.
#[derive(Clone, Copy, Debug)]
pub struct BatchPolicy {
    pub max_events: usize,
    pub max_age: Duration,
}

impl Default for BatchPolicy {
    fn default() -> BatchPolicy {
        BatchPolicy { max_events: 2000, max_age: Duration::from_secs(2) }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RecorderError {
    #[error(transparent)]
    Spool(#[from] SpoolError),
}

/// A session being recorded.
pub struct Recorder {
    spool: Arc<Mutex<Spool>>,
    key: PublicKey,
    session: String,
    policy: BatchPolicy,
    pending: Vec<Event>,
    first_at: Option<Instant>,
    batches: u64,
    /// Events the spool dropped (when full) and not yet recorded in the session.
    gap: (u64, u64),
    last_t: u64,
}

impl Recorder {
    /// Starts a session: its record is sealed and spooled before any event.
    pub fn start(
        spool: Arc<Mutex<Spool>>,
        key: PublicKey,
        meta: &SessionMeta,
        policy: BatchPolicy,
    ) -> Result<Recorder, RecorderError> {
        let mut recorder = Recorder {
            spool,
            key,
            session: meta.session.clone(),
            policy,
            pending: Vec::new(),
            first_at: None,
            batches: 0,
            gap: (0, 0),
            last_t: 0,
        };
        let body = jsonl::to_line(&Record::Session(meta.clone())).into_bytes();
        recorder.push("/v1/sessions".to_owned(), format!("{}-session", meta.session), body, 0, (0, 0))?;
        Ok(recorder)
    }

    pub fn session(&self) -> &str {
        &self.session
    }

    /// Adds an event; cuts a batch when the policy says so.
    pub fn record(&mut self, event: Event) -> Result<(), RecorderError> {
        self.last_t = self.last_t.max(event.t_us);
        self.pending.push(event);
        self.first_at.get_or_insert_with(Instant::now);
        if self.pending.len() >= self.policy.max_events {
            self.flush()?;
        }
        Ok(())
    }

    /// Cuts a batch if the oldest pending event has waited `max_age` (call it on a timer).
    pub fn tick(&mut self) -> Result<(), RecorderError> {
        if self.first_at.is_some_and(|t| t.elapsed() >= self.policy.max_age) {
            self.flush()?;
        }
        Ok(())
    }

    /// Seals and spools what is pending (with a gap marker first, if batches were dropped).
    pub fn flush(&mut self) -> Result<(), RecorderError> {
        if self.pending.is_empty() && self.gap.0 == 0 {
            return Ok(());
        }
        let mut events = std::mem::take(&mut self.pending);
        self.first_at = None;
        let gap = std::mem::take(&mut self.gap);
        if gap.0 > 0 {
            let (batches, dropped) = gap;
            let t_us = events.first().map_or(self.last_t, |e| e.t_us);
            let label = format!("recorder.gap batches={batches} events={dropped} reason=spool-full");
            events.insert(0, Event { t_us, kind: EventKind::Marker { label } });
        }
        self.batches += 1;
        let body = zstd::bulk::compress(&batch::encode_events_msgpack(&events), 3)
            .expect("zstd compresses into a growable buffer");
        let path = format!("/v1/sessions/{}/events", self.session);
        let key = format!("{}-{}", self.session, self.batches);
        self.push(path, key, body, events.len() as u64, gap)
    }

    /// Ends the session: the last batch, then the close.
    pub fn close(mut self) -> Result<(), RecorderError> {
        self.flush()?;
        // The last batch may have pushed others out: a marker-only batch records that. A spool
        // so full that each marker pushes out the one before gives up after a few, and says so.
        for _ in 0..8 {
            if self.gap.0 == 0 {
                break;
            }
            self.flush()?;
        }
        if self.gap.0 > 0 {
            tracing::error!(
                "session {}: {} batches ({} events) dropped from a full spool, and no room left to record it",
                self.session,
                self.gap.0,
                self.gap.1
            );
        }
        let path = format!("/v1/sessions/{}/close", self.session);
        let header = self.header(path, format!("{}-close", self.session), None, None, 0, (0, 0));
        let request = Request { header, body: Vec::new() };
        self.spool.lock().unwrap_or_else(|e| e.into_inner()).push(&request)?;
        Ok(())
    }

    fn header(
        &self,
        path: String,
        idempotency_key: String,
        content_type: Option<String>,
        content_encoding: Option<String>,
        events: u64,
        gap: (u64, u64),
    ) -> Header {
        Header {
            method: "POST".into(),
            path,
            idempotency_key,
            content_type,
            content_encoding,
            session: self.session.clone(),
            events,
            gap_batches: gap.0,
            gap_events: gap.1,
        }
    }

    fn push(
        &mut self,
        path: String,
        idempotency_key: String,
        plain: Vec<u8>,
        events: u64,
        gap: (u64, u64),
    ) -> Result<(), RecorderError> {
        let aad = sealed::request_aad("POST", &path, &idempotency_key);
        let body = self.key.seal(&aad, &plain);
        let (content_type, content_encoding) = if events > 0 {
            ("application/msgpack", format!("zstd, {}", sealed::CONTENT_CODING))
        } else {
            ("application/json", sealed::CONTENT_CODING.to_owned())
        };
        let header = self.header(
            path,
            idempotency_key,
            Some(content_type.into()),
            Some(content_encoding),
            events,
            gap,
        );
        let request = Request { header, body };
        let dropped = self.spool.lock().unwrap_or_else(|e| e.into_inner()).push(&request)?;
        for d in dropped {
            tracing::warn!(
                "spool full: dropped {} batches ({} events) of session {}",
                d.batches,
                d.events,
                d.session
            );
            if d.session == self.session {
                self.gap.0 += d.batches;
                self.gap.1 += d.events;
            }
        }
        Ok(())
    }
}

/// The delivery thread: drains the spool whenever there is something to send, backing off
/// (0.25 s doubling to 8 s) while the server cannot take it. Stops when `stop` is set and the
/// spool is empty, or `stop` is set and `give_up_after` has passed since.
pub fn spawn_delivery(
    delivery: Delivery,
    spool: Arc<Mutex<Spool>>,
    stop: Arc<AtomicBool>,
    give_up_after: Duration,
) -> JoinHandle<Result<(), SpoolError>> {
    std::thread::spawn(move || {
        let mut backoff = Duration::from_millis(250);
        let mut stopping_since: Option<Instant> = None;
        let mut last_error: Option<String> = None;
        loop {
            match delivery.drain(&spool)? {
                Ok(sent) => {
                    if last_error.take().is_some() {
                        tracing::info!("the server is reachable again");
                    }
                    if sent > 0 {
                        tracing::debug!("delivered {sent} requests");
                    }
                    backoff = Duration::from_millis(250);
                }
                Err(why) => {
                    if last_error.as_deref() != Some(&why) {
                        tracing::warn!("delivery paused, batches stay sealed in the spool: {why}");
                    }
                    last_error = Some(why);
                }
            }
            let empty = spool.lock().unwrap_or_else(|e| e.into_inner()).is_empty();
            if stop.load(Ordering::Acquire) {
                let since = *stopping_since.get_or_insert_with(Instant::now);
                if empty || since.elapsed() >= give_up_after {
                    return Ok(());
                }
            }
            let wait = if last_error.is_some() {
                let w = backoff;
                backoff = (backoff * 2).min(Duration::from_secs(8));
                w
            } else {
                Duration::from_millis(100)
            };
            std::thread::sleep(wait);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracevault_codecs::sealed::PrivateKey;

    fn meta() -> SessionMeta {
        SessionMeta {
            session: "s-gap".into(),
            user: "u-1".into(),
            device: Some("d".into()),
            screen: None,
            started_at: None,
            layout: None,
            labels: Default::default(),
        }
    }

    fn moves(from: u64, n: u64) -> Vec<Event> {
        (from..from + n)
            .map(|i| Event { t_us: i * 8000, kind: EventKind::Move { x: i as i32, y: 7 } })
            .collect()
    }

    #[test]
    fn a_full_spool_drops_the_oldest_batches_and_the_next_batch_says_so() {
        let dir = std::env::temp_dir().join(format!("tv-recorder-gap-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let server = PrivateKey::generate();
        // Room for the session's creation and about three batches of 100 moves.
        let spool = Arc::new(Mutex::new(Spool::open(&dir, 3 * 1024).unwrap()));
        let policy = BatchPolicy { max_events: 100, max_age: Duration::from_secs(3600) };
        let mut r = Recorder::start(spool.clone(), server.public(), &meta(), policy).unwrap();
        for e in moves(0, 1000) {
            r.record(e).unwrap();
        }
        r.close().unwrap();
        let mut spool = spool.lock().unwrap();
        let mut kinds = Vec::new();
        let (mut gap_batches, mut gap_events, mut delivered) = (0, 0, 0);
        while let Some(entry) = spool.oldest().unwrap() {
            let h = entry.request.header.clone();
            let aad = sealed::request_aad(&h.method, &h.path, &h.idempotency_key);
            if h.events > 0 {
                let plain =
                    zstd::stream::decode_all(&server.open(&aad, &entry.request.body).unwrap()[..]).unwrap();
                let events = batch::decode_events(batch::Encoding::Msgpack, &plain, "s-gap").unwrap();
                delivered +=
                    events.iter().filter(|e| matches!(e.kind, EventKind::Move { .. })).count() as u64;
                if let EventKind::Marker { label } = &events[0].kind {
                    let n = |k: &str| -> u64 {
                        let v = label.split(' ').find_map(|p| p.strip_prefix(k)).unwrap();
                        v.parse().unwrap()
                    };
                    assert!(label.ends_with(" reason=spool-full"), "{label}");
                    gap_batches += n("batches=");
                    gap_events += n("events=");
                }
            }
            kinds.push(h.path.rsplit('/').next().unwrap().to_owned());
            spool.remove(&entry).unwrap();
        }
        assert_eq!(kinds.first().map(String::as_str), Some("sessions"), "the creation is never dropped");
        assert_eq!(kinds.last().map(String::as_str), Some("close"));
        // Every dropped batch is accounted for by the gap markers that survived, once.
        assert!(delivered < 1000, "the spool was small enough to drop");
        assert_eq!(gap_events, 1000 - delivered, "the markers account for every move that did not arrive");
        assert_eq!(gap_batches * 100, gap_events, "and for the batches that held them");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
