//! `tracevault load`: many recorders against a server, bounded in requests and time. Each
//! recorder is a thread with its own connection that creates a session, sends batches
//! (MessagePack + zstd by default) with an `Idempotency-Key` and the expected sequence, retries a
//! batch whose answer it did not get (same key: stored once), and closes its session. It reports
//! acked events/s and the ack latency percentiles; `--acks` writes every acknowledged batch, so a
//! test can check each is stored exactly once.
//!
//! Events are a function of (session, index) ([`event`]): a checker regenerates what was sent.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracevault_codecs::batch::{encode_events_json, encode_events_msgpack};
use tracevault_codecs::{Button, Event, EventKind};

/// What to run.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    pub url: String,
    pub token: String,
    pub recorders: usize,
    pub batch: usize,
    pub seconds: f64,
    /// The device the sessions are of (the recorder token's).
    pub device: String,
    /// Session ids are `{prefix}{recorder}-{n}`.
    pub prefix: String,
    /// Batches per session before a recorder closes it and opens the next (0: one session).
    pub session_batches: u64,
    /// Total events/s to offer (0: as fast as acknowledgements come).
    pub rate: f64,
    pub msgpack: bool,
    pub zstd: bool,
    /// How long a batch is retried after `seconds` are up.
    pub grace: Duration,
    /// Real recordings to send instead of the synthetic sweep: see [`Pool`].
    pub pool: Option<Arc<Pool>>,
    /// The CA certificate an `https://` server's certificate chains to (else Mozilla's roots).
    pub ca_cert: Option<std::path::PathBuf>,
    /// Batches each recorder encodes and compresses before the clock starts (then on the fly):
    /// a benchmark of the server leaves the recorders' own work on their machines.
    pub prebuilt_batches: u64,
}

/// Real events, cycled: event `i` of a session is the pool's `(i + offset) % len`-th, its time
/// moved on by the pool's span once per cycle, so a session's clock never goes back.
#[derive(Debug)]
pub struct Pool {
    events: Vec<Event>,
    span_us: u64,
}

impl Pool {
    /// Recordings laid end to end on one clock (each starting where the one before ended).
    pub fn new(recordings: impl IntoIterator<Item = Vec<Event>>) -> Pool {
        let mut events = Vec::new();
        let mut end = 0u64;
        for recording in recordings {
            let Some(first) = recording.first().map(|e| e.t_us) else { continue };
            let mut last = end;
            for mut e in recording {
                e.t_us = (end + e.t_us.saturating_sub(first)).max(last);
                last = e.t_us;
                events.push(e);
            }
            end = last + 1_000;
        }
        Pool { events, span_us: end.max(1) }
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// The events of batch `b` of a session starting at `offset` in the pool.
    pub fn batch(&self, offset: u64, b: u64, size: usize) -> Vec<Event> {
        let n = self.events.len() as u64;
        (0..size as u64)
            .map(|k| {
                let i = b * size as u64 + k;
                let j = i + offset % n;
                let mut e = self.events[(j % n) as usize].clone();
                e.t_us += (j / n) * self.span_us;
                e
            })
            .collect()
    }
}

/// An HTTP client for the service: HTTPS checked against `ca_cert` (PEM) when given, else
/// Mozilla's roots; answers of any status returned, not turned into errors.
pub fn agent(timeout: Duration, ca_cert: Option<&std::path::Path>) -> Result<ureq::Agent, String> {
    let mut tls = ureq::tls::TlsConfig::builder();
    if let Some(path) = ca_cert {
        let pem = std::fs::read(path).map_err(|e| format!("--ca-cert {}: {e}", path.display()))?;
        let certs: Vec<ureq::tls::Certificate<'static>> = ureq::tls::parse_pem(&pem)
            .filter_map(|item| match item {
                Ok(ureq::tls::PemItem::Certificate(c)) => Some(Ok(c)),
                Ok(_) => None,
                Err(e) => Some(Err(e)),
            })
            .collect::<Result<_, _>>()
            .map_err(|e| format!("--ca-cert {}: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!("--ca-cert {}: no PEM certificate in it", path.display()));
        }
        tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&certs));
    }
    Ok(ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .tls_config(tls.build())
        .build()
        .into())
}

/// What a run measured.
#[derive(Clone, Debug, Default)]
pub struct LoadReport {
    pub batches: u64,
    pub events: u64,
    pub duplicates: u64,
    pub retries: u64,
    /// Answers that were errors (and not retried): status and message.
    pub errors: Vec<String>,
    pub seconds: f64,
    /// Ack latency of each acknowledged batch, sorted, µs.
    pub latencies_us: Vec<u64>,
    /// Every acknowledged batch: (session, seq_first, events).
    pub acks: Vec<(String, u64, u64)>,
}

impl LoadReport {
    pub fn events_per_s(&self) -> f64 {
        self.events as f64 / self.seconds.max(1e-9)
    }

    /// The `q` quantile of the ack latency, ms.
    pub fn latency_ms(&self, q: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let i = ((self.latencies_us.len() as f64 * q).ceil() as usize).clamp(1, self.latencies_us.len()) - 1;
        self.latencies_us[i] as f64 / 1e3
    }
}

/// Event `i` of a load session: a pointer sweeping the screen at 1 kHz, a click every 500 events.
pub fn event(session_seed: u64, i: u64) -> Event {
    let t_us = i * 1_000;
    let phase = (i as f64 / 240.0) + session_seed as f64;
    let x = (960.0 + 700.0 * phase.sin()) as i32;
    let y = (540.0 + 400.0 * (phase * 0.7).cos()) as i32;
    let kind = match i % 500 {
        0 if i > 0 => EventKind::Down { button: Button::Left, x, y },
        1 if i > 1 => EventKind::Up { button: Button::Left, x, y },
        _ => EventKind::Move { x, y },
    };
    Event { t_us, kind }
}

/// The events of batch `b` of a session with this seed.
pub fn batch_events(seed: u64, b: u64, size: usize) -> Vec<Event> {
    (0..size as u64).map(|k| event(seed, b * size as u64 + k)).collect()
}

/// The seed of a session id (its events are a function of it).
pub fn seed_of(session: &str) -> u64 {
    session.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3)) % 1000
}

struct Shared {
    options: LoadOptions,
    report: Mutex<LoadReport>,
}

/// Runs the load; `progress` is told the events acked so far about once a second.
pub fn run(options: LoadOptions, progress: &(dyn Fn(u64) + Sync)) -> LoadReport {
    let shared = Arc::new(Shared { options: options.clone(), report: Mutex::default() });
    // Every recorder has its bodies built (`ready`) before the clock is set and they start (`go`).
    let ready = std::sync::Barrier::new(options.recorders + 1);
    let go = std::sync::Barrier::new(options.recorders + 1);
    let clock = std::sync::OnceLock::new();
    let (mut started, mut deadline) = (Instant::now(), Instant::now());
    std::thread::scope(|scope| {
        for r in 0..options.recorders {
            let (shared, ready, go, clock) = (shared.clone(), &ready, &go, &clock);
            scope.spawn(move || {
                let prebuilt = prebuild(&shared.options, r);
                ready.wait();
                go.wait();
                recorder(&shared, r, *clock.get().expect("set before the start"), prebuilt)
            });
        }
        ready.wait();
        started = Instant::now();
        deadline = started + Duration::from_secs_f64(options.seconds);
        let _ = clock.set(deadline);
        go.wait();
        while Instant::now() < deadline {
            std::thread::sleep(
                Duration::from_millis(200).min(deadline.saturating_duration_since(Instant::now())),
            );
            progress(shared.report.lock().unwrap_or_else(|e| e.into_inner()).events);
        }
    });
    let mut report = std::mem::take(&mut *shared.report.lock().unwrap_or_else(|e| e.into_inner()));
    // New batches stop at the deadline; the time counted runs until the last answer came.
    report.seconds = started.elapsed().as_secs_f64();
    report.latencies_us.sort_unstable();
    report
}

enum Sent {
    Acked {
        events: u64,
        seq_first: u64,
        duplicate: bool,
    },
    /// Worth sending again (no answer, 429, 503, 5xx).
    Retry(String),
    Failed(String),
}

/// The session id of recorder `r`'s `n`-th session.
fn session_id(o: &LoadOptions, r: usize, n: u64) -> String {
    format!("{}{r}-{n}", o.prefix)
}

/// Batch `b` of a session, as sent: events, encoded, compressed.
fn body(o: &LoadOptions, session: &str, b: u64, compressor: &mut zstd::bulk::Compressor<'_>) -> Vec<u8> {
    let seed = seed_of(session);
    let events = match &o.pool {
        Some(pool) if !pool.is_empty() => pool.batch(seed * 7919, b, o.batch),
        _ => batch_events(seed, b, o.batch),
    };
    let body = if o.msgpack { encode_events_msgpack(&events) } else { encode_events_json(&events) };
    if o.zstd { compressor.compress(&body).expect("compressing to memory") } else { body }
}

/// The first session's first `prebuilt_batches` bodies.
fn prebuild(o: &LoadOptions, r: usize) -> Vec<Vec<u8>> {
    let mut compressor = zstd::bulk::Compressor::new(1).expect("a zstd context");
    let session = session_id(o, r, 0);
    let n =
        if o.session_batches > 0 { o.prebuilt_batches.min(o.session_batches) } else { o.prebuilt_batches };
    (0..n).map(|b| body(o, &session, b, &mut compressor)).collect()
}

fn recorder(shared: &Shared, r: usize, deadline: Instant, prebuilt: Vec<Vec<u8>>) {
    let mut prebuilt = prebuilt.into_iter();
    let o = &shared.options;
    let connect = || agent(Duration::from_secs(30), o.ca_cert.as_deref());
    let mut agent = match connect() {
        Ok(a) => a,
        Err(e) => return fail(shared, e),
    };
    let url = o.url.trim_end_matches('/');
    let auth = format!("Bearer {}", o.token);
    // Each recorder's share of the offered rate, as a batch interval.
    let interval =
        (o.rate > 0.0).then(|| Duration::from_secs_f64(o.batch as f64 * o.recorders as f64 / o.rate));
    let mut n = 0u64;
    // Recorders are independent: each starts at its own phase of the interval, not all at once.
    let mut next_send = Instant::now()
        + interval.map_or(Duration::ZERO, |every| every.mul_f64(r as f64 / o.recorders as f64));
    // One compression context for the recorder's life, as a real recorder keeps it.
    let mut compressor = zstd::bulk::Compressor::new(1).expect("a zstd context");
    'sessions: while Instant::now() < deadline {
        let session = session_id(o, r, n);
        if n > 0 {
            // A recorder that closed its session leaves; the next arrives on a new connection.
            agent = match connect() {
                Ok(a) => a,
                Err(e) => return fail(shared, e),
            };
        }
        let record = serde_json::json!({
            "type": "session", "session": session, "user": format!("load-user-{r}"),
            "device": o.device, "screen": {"w": 1920, "h": 1080},
        });
        // Creating is idempotent: retried until it answers.
        loop {
            match agent.post(format!("{url}/v1/sessions")).header("authorization", &auth).send_json(&record) {
                Ok(resp) if resp.status().is_success() => break,
                Ok(mut resp) if resp.status() == 429 || resp.status().is_server_error() => {
                    let _ = resp.body_mut().read_to_string();
                }
                Ok(mut resp) => {
                    let text = resp.body_mut().read_to_string().unwrap_or_default();
                    fail(shared, format!("creating {session}: HTTP {}: {text}", resp.status()));
                    return;
                }
                Err(_) => {}
            }
            if Instant::now() > deadline + o.grace {
                fail(shared, format!("creating {session}: no answer by the end of the grace period"));
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut b = 0u64;
        while Instant::now() < deadline && (o.session_batches == 0 || b < o.session_batches) {
            if let Some(every) = interval {
                let now = Instant::now();
                if next_send > now {
                    std::thread::sleep(next_send - now);
                }
                next_send = next_send.max(now - every) + every;
            }
            let body = match (n, prebuilt.next()) {
                (0, Some(body)) => body,
                _ => body(o, &session, b, &mut compressor),
            };
            let key = format!("{session}-{b}");
            let expected = b * o.batch as u64;
            loop {
                let sent_at = Instant::now();
                match send(&agent, url, &auth, &session, &key, expected, &body, o) {
                    Sent::Acked { events, seq_first, duplicate } => {
                        let took = sent_at.elapsed().as_micros() as u64;
                        let mut report = shared.report.lock().unwrap_or_else(|e| e.into_inner());
                        report.batches += 1;
                        report.events += events;
                        report.duplicates += duplicate as u64;
                        report.latencies_us.push(took);
                        report.acks.push((session.clone(), seq_first, events));
                        break;
                    }
                    Sent::Retry(why) => {
                        shared.report.lock().unwrap_or_else(|e| e.into_inner()).retries += 1;
                        if Instant::now() > deadline + o.grace {
                            fail(
                                shared,
                                format!("{session} batch {b}: gave up after the grace period: {why}"),
                            );
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    Sent::Failed(why) => {
                        fail(shared, format!("{session} batch {b}: {why}"));
                        continue 'sessions;
                    }
                }
            }
            b += 1;
        }
        let _ = agent
            .post(format!("{url}/v1/sessions/{session}/close"))
            .header("authorization", &auth)
            .send_empty();
        n += 1;
    }
}

#[allow(clippy::too_many_arguments)]
fn send(
    agent: &ureq::Agent,
    url: &str,
    auth: &str,
    session: &str,
    key: &str,
    expected: u64,
    body: &[u8],
    o: &LoadOptions,
) -> Sent {
    let mut request = agent
        .post(format!("{url}/v1/sessions/{session}/events?expected_seq={expected}"))
        .header("authorization", auth)
        .header("idempotency-key", key)
        .header("content-type", if o.msgpack { "application/msgpack" } else { "application/json" });
    if o.zstd {
        request = request.header("content-encoding", "zstd");
    }
    let mut response = match request.send(body) {
        Ok(r) => r,
        Err(e) => return Sent::Retry(e.to_string()),
    };
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    match status {
        200 => {
            let v: serde_json::Value = match serde_json::from_str(&text) {
                Ok(v) => v,
                Err(e) => return Sent::Retry(format!("an unreadable answer: {e}")),
            };
            Sent::Acked {
                events: v["events"].as_u64().unwrap_or(0),
                seq_first: v["seq_first"].as_u64().unwrap_or(0),
                duplicate: v["duplicate"].as_bool().unwrap_or(false),
            }
        }
        429 | 500..=599 => Sent::Retry(format!("HTTP {status}: {text}")),
        _ => Sent::Failed(format!("HTTP {status}: {text}")),
    }
}

fn fail(shared: &Shared, why: String) {
    shared.report.lock().unwrap_or_else(|e| e.into_inner()).errors.push(why);
}

/// Writes the acknowledged batches, one `session seq_first events` per line.
pub fn write_acks(path: &std::path::Path, report: &LoadReport) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for (s, seq, n) in &report.acks {
        writeln!(out, "{s} {seq} {n}")?;
    }
    out.flush()
}
