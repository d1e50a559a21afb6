//! The routes: each authenticates its caller by token, says who is asking to the core (an
//! [`Access`] naming the token and the client address), and maps the core's typed errors to
//! problem details. The core's policy decides what a role may do and records every read; the
//! only rule decided here is a recorder's ownership (its token writes for one device).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, FailedToBufferBody, QueryRejection};
use axum::extract::{ConnectInfo, MatchedPath, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use tracevault_codecs::batch::{self, Encoding};
use tracevault_codecs::msgpack::BatchError;
use tracevault_codecs::{Record, SessionMeta, jsonl};
use tracevault_core::log::MasterKeyAfterShred;
use tracevault_core::{Access, Batch, Log, Operation, Role, SessionInfo};
use tracevault_replay::export::{ExportOptions, Format};
use tracevault_replay::{AuditedReplay, Engine, Policy, Selection};

use crate::metrics::Metrics;
use crate::problem::Problem;
use crate::tokens::{TokenRecord, Tokens};

/// Bounds on what one client can make the server hold: beyond them a request is refused (413,
/// 429, 503 with Retry-After), never queued without bound.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Bytes of a request body as sent (compressed or not).
    pub body_bytes_max: usize,
    /// Bytes of a batch once decompressed.
    pub decoded_bytes_max: usize,
    /// Events in one batch.
    pub batch_events_max: usize,
    /// Sessions one token may hold open (created, not closed).
    pub open_sessions_per_token: usize,
    /// Requests served at once under `/v1`; more get 503.
    pub concurrent_requests: usize,
    /// Exports run at once; more get 503.
    pub concurrent_exports: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            body_bytes_max: 16 << 20,
            decoded_bytes_max: 64 << 20,
            batch_events_max: 100_000,
            open_sessions_per_token: 1024,
            concurrent_requests: 512,
            concurrent_exports: 2,
        }
    }
}

pub(crate) struct AppState {
    pub log: Arc<Log>,
    pub engine: Engine,
    pub tokens: Tokens,
    pub limits: Limits,
    pub metrics: Metrics,
    pub sensitive_apps: Vec<String>,
    /// Sessions each token created and has not closed.
    open: Mutex<HashMap<String, HashSet<String>>>,
    busy: Arc<Semaphore>,
    exports: Arc<Semaphore>,
    export_dir: PathBuf,
}

impl AppState {
    pub fn new(
        log: Arc<Log>,
        engine: Engine,
        tokens: Tokens,
        limits: Limits,
        sensitive_apps: Vec<String>,
        export_dir: PathBuf,
    ) -> AppState {
        AppState {
            log,
            engine,
            tokens,
            metrics: Metrics::default(),
            sensitive_apps,
            open: Mutex::new(HashMap::new()),
            busy: Arc::new(Semaphore::new(limits.concurrent_requests)),
            exports: Arc::new(Semaphore::new(limits.concurrent_exports)),
            limits,
            export_dir,
        }
    }

    fn open_sessions(&self) -> usize {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).values().map(HashSet::len).sum()
    }
}

type Shared = Arc<AppState>;

/// The client's address, as plain TCP or TLS connections give it (the audit log names it).
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, tokio::net::TcpListener>>
    for ClientAddr
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, tokio::net::TcpListener>) -> ClientAddr {
        ClientAddr(*stream.remote_addr())
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, crate::tls::Listener>>
    for ClientAddr
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, crate::tls::Listener>) -> ClientAddr {
        ClientAddr(*stream.remote_addr())
    }
}

pub(crate) fn router(state: Shared) -> Router {
    let api = Router::new()
        .route("/v1/sessions", post(create_session).get(list_sessions))
        .route("/v1/sessions/{id}/events", post(append_events))
        .route("/v1/sessions/{id}/close", post(close_session))
        .route("/v1/sessions/{id}/replay", get(replay))
        .route("/v1/exports", post(export))
        .route("/v1/users/{user}/shred", post(shred))
        .route("/v1/audit", get(audit))
        .route("/v1/audit/verify", get(audit_verify))
        .route_layer(middleware::from_fn_with_state(state.clone(), bounded));
    Router::new()
        .merge(api)
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .route("/v1/openapi.json", get(|| async { Json(crate::openapi::document()) }))
        .route_layer(middleware::from_fn_with_state(state.clone(), counted))
        .fallback(|| async { Problem::new(StatusCode::NOT_FOUND, "no such route: see /v1/openapi.json") })
        .layer(axum::extract::DefaultBodyLimit::max(state.limits.body_bytes_max))
        .with_state(state)
}

/// Counts every answered request by its route and status.
async fn counted(State(state): State<Shared>, request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map(|p| route_name(p.as_str())).unwrap_or("other");
    let response = next.run(request).await;
    state.metrics.request(route, response.status().as_u16());
    response
}

/// The route's template as a static label (so a label set cannot grow with the ids requested).
fn route_name(path: &str) -> &'static str {
    const ROUTES: [&str; 11] = [
        "/v1/sessions",
        "/v1/sessions/{id}/events",
        "/v1/sessions/{id}/close",
        "/v1/sessions/{id}/replay",
        "/v1/exports",
        "/v1/users/{user}/shred",
        "/v1/audit",
        "/v1/audit/verify",
        "/healthz",
        "/metrics",
        "/v1/openapi.json",
    ];
    ROUTES.into_iter().find(|r| *r == path).unwrap_or("other")
}

/// At most `concurrent_requests` API requests at once: the next is refused with 503 and
/// Retry-After, so a burst is pushed back to the clients instead of queueing in memory.
async fn bounded(State(state): State<Shared>, request: Request, next: Next) -> Response {
    let Ok(permit) = state.busy.clone().try_acquire_owned() else {
        state.metrics.rejected_busy.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the server is serving {} requests; try again shortly", state.limits.concurrent_requests),
        )
        .retry_after(1)
        .into_response();
    };
    state.metrics.in_flight.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let response = next.run(request).await;
    state.metrics.in_flight.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    drop(permit);
    response
}

async fn metrics(State(state): State<Shared>) -> Response {
    let text = state.metrics.render(&state.log, state.open_sessions());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// Who is asking: the token presented, and where from.
struct Caller {
    token: Arc<TokenRecord>,
    addr: SocketAddr,
}

impl Caller {
    fn of(state: &AppState, headers: &HeaderMap, addr: SocketAddr) -> Result<Caller, Problem> {
        let header = headers.get(header::AUTHORIZATION).map(|v| v.to_str().unwrap_or(""));
        let token = state
            .tokens
            .authenticate(header)
            .map_err(|e| Problem::new(StatusCode::UNAUTHORIZED, e.to_string()))?;
        Ok(Caller { token, addr })
    }

    /// The access the core decides on and records: the actor names the token and the client.
    fn access(&self, purpose: &str, ticket: Option<&str>) -> Access {
        let actor = format!("{} (token {}, {})", self.token.name, self.token.id, self.addr.ip());
        let access = Access::new(actor, self.token.role, purpose);
        match ticket {
            Some(t) => access.with_ticket(t),
            None => access,
        }
    }

    /// A recorder writes only its own device's sessions; other roles the policy decides alone.
    fn owns(&self, meta: &SessionMeta) -> Result<(), Problem> {
        if self.token.role != Role::Recorder {
            return Ok(());
        }
        let device = self.token.device.as_deref().unwrap_or("");
        if meta.device.as_deref() == Some(device) {
            return Ok(());
        }
        Err(Problem::new(
            StatusCode::FORBIDDEN,
            format!(
                "token {} records for device {device:?}; session {:?} is {}",
                self.token.id,
                meta.session,
                match &meta.device {
                    Some(d) => format!("device {d:?}'s"),
                    None => "of no device".to_owned(),
                }
            ),
        ))
    }
}

/// Runs blocking work (the log's reads and writes) off the async workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, Problem> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        Problem::new(StatusCode::INTERNAL_SERVER_ERROR, format!("the request's task failed: {e}"))
    })
}

fn body(bytes: Result<Bytes, BytesRejection>, limits: &Limits) -> Result<Bytes, Problem> {
    bytes.map_err(|e| match e {
        BytesRejection::FailedToBufferBody(FailedToBufferBody::LengthLimitError(_)) => Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is over {} bytes", limits.body_bytes_max),
        ),
        other => Problem::bad_request(format!("reading the request body: {other}")),
    })
}

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, Problem> {
    q.map(|Query(q)| q).map_err(|e| Problem::bad_request(e.body_text()))
}

/// The body as the client meant it: decompressed (`Content-Encoding: zstd`), within the limit.
fn decoded(headers: &HeaderMap, bytes: Bytes, limits: &Limits) -> Result<Bytes, Problem> {
    let encoding =
        headers.get(header::CONTENT_ENCODING).map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase());
    match encoding.as_deref() {
        None | Some("identity") | Some("") => Ok(bytes),
        Some("zstd") => unzstd(&bytes, limits.decoded_bytes_max).map(Bytes::from),
        Some(other) => Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Content-Encoding {other:?}: expected zstd or none"),
        )),
    }
}

thread_local! {
    /// One decompression context per thread, reused request after request.
    static UNZSTD: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { std::cell::RefCell::new(None) };
}

/// A zstd body decompressed, at most `max` bytes: in one call when the frame states its size
/// (as zstd's one-shot compressors write it), else streamed.
fn unzstd(bytes: &[u8], max: usize) -> Result<Vec<u8>, Problem> {
    let too_large =
        || Problem::new(StatusCode::PAYLOAD_TOO_LARGE, format!("the body decompresses to over {max} bytes"));
    let invalid = |e: std::io::Error| Problem::bad_request(format!("body: not a valid zstd stream: {e}"));
    if let Ok(Some(size)) = zstd::zstd_safe::get_frame_content_size(bytes) {
        if size > max as u64 {
            return Err(too_large());
        }
        let single_frame = zstd::zstd_safe::find_frame_compressed_size(bytes).is_ok_and(|n| n == bytes.len());
        if single_frame {
            return UNZSTD.with(|cell| {
                let mut cell = cell.borrow_mut();
                if cell.is_none() {
                    *cell = Some(zstd::bulk::Decompressor::new().map_err(invalid)?);
                }
                let d = cell.as_mut().expect("made above");
                d.decompress(bytes, size as usize).map_err(invalid)
            });
        }
    }
    use std::io::Read;
    let mut out = Vec::new();
    zstd::stream::read::Decoder::with_buffer(bytes)
        .map_err(invalid)?
        .take(max as u64 + 1)
        .read_to_end(&mut out)
        .map_err(invalid)?;
    if out.len() > max {
        return Err(too_large());
    }
    Ok(out)
}

fn encoding_of(headers: &HeaderMap) -> Result<Encoding, Problem> {
    let ct = headers.get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap_or("?").to_ascii_lowercase());
    let essence = ct.as_deref().map(|c| c.split(';').next().unwrap_or("").trim().to_owned());
    match essence.as_deref() {
        None | Some("application/json") => Ok(Encoding::Json),
        Some("application/msgpack" | "application/x-msgpack" | "application/vnd.msgpack") => {
            Ok(Encoding::Msgpack)
        }
        Some(other) => Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Content-Type {other:?}: expected application/json or application/msgpack"),
        )),
    }
}

/// `POST /v1/sessions`: a session record (as a JSONL line: `type` may be left out).
async fn create_session(
    State(state): State<Shared>,
    ConnectInfo(ClientAddr(addr)): ConnectInfo<ClientAddr>,
    headers: HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let caller = Caller::of(&state, &headers, addr)?;
    let bytes = decoded(&headers, body(bytes, &state.limits)?, &state.limits)?;
    let mut value: Value =
        serde_json::from_slice(&bytes).map_err(|e| Problem::bad_request(format!("body: not JSON: {e}")))?;
    if let Some(object) = value.as_object_mut() {
        object.entry("type").or_insert_with(|| json!("session"));
    }
    let meta = match jsonl::parse_line(&value.to_string()) {
        Ok(Record::Session(meta)) => meta,
        Ok(Record::Event { .. }) => unreachable!("a record with type session is a session"),
        Err(e) => {
            let p = Problem::bad_request(format!("session record: {e}"));
            return Err(match e.field {
                Some(f) => p.field(f),
                None => p,
            });
        }
    };
    tracevault_core::ingest::check_meta(&meta)
        .map_err(|e| Problem::bad_request(format!("session record: {e}")).field("started_at"))?;
    caller.owns(&meta)?;
    {
        let open = state.open.lock().unwrap_or_else(|e| e.into_inner());
        let mine = open.get(&caller.token.id);
        if !mine.is_some_and(|s| s.contains(&meta.session))
            && mine.map_or(0, HashSet::len) >= state.limits.open_sessions_per_token
        {
            return Err(Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "token {} holds {} open sessions, the most allowed: close one (POST /v1/sessions/{{id}}/close) first",
                    caller.token.id, state.limits.open_sessions_per_token
                ),
            )
            .retry_after(5));
        }
    }
    let access = caller.access("create a session", None);
    let st = state.clone();
    let id = meta.session.clone();
    let created = blocking(move || {
        st.log.check_access(&access, Operation::Append)?;
        st.log.create_session(meta).map_err(Problem::from)
    })
    .await??;
    state
        .open
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(caller.token.id.clone())
        .or_default()
        .insert(id.clone());
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(json!({"session": id, "created": created}))).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    /// The number of events the client believes the session holds: else 409.
    expected_seq: Option<u64>,
}

/// The batch id a request's `Idempotency-Key` names (scoped to the session), else a fresh one:
/// every batch carries an id, so the open can check the journal against the signed progress.
fn batch_id(session: &str, headers: &HeaderMap) -> Result<u128, Problem> {
    let digest: [u8; 32] = match headers.get("idempotency-key") {
        Some(v) => {
            let key = v.to_str().ok().filter(|k| !k.is_empty() && k.len() <= 255).ok_or_else(|| {
                Problem::bad_request("Idempotency-Key: expected 1 to 255 visible ASCII characters")
                    .field("Idempotency-Key")
            })?;
            let mut h = Sha256::new();
            h.update(b"tracevault http batch v1\0");
            h.update((session.len() as u64).to_le_bytes());
            h.update(session.as_bytes());
            h.update(key.as_bytes());
            h.finalize().into()
        }
        None => {
            let mut random = [0u8; 32];
            getrandom::fill(&mut random).map_err(|e| {
                Problem::new(StatusCode::SERVICE_UNAVAILABLE, format!("the OS random source: {e}"))
            })?;
            random
        }
    };
    Ok(u128::from_le_bytes(digest[..16].try_into().expect("16 bytes")).max(1))
}

/// `POST /v1/sessions/{id}/events`: a batch, acknowledged once durable.
async fn append_events(
    State(state): State<Shared>,
    ConnectInfo(ClientAddr(addr)): ConnectInfo<ClientAddr>,
    Path(id): Path<String>,
    q: Result<Query<EventsQuery>, QueryRejection>,
    headers: HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let started = Instant::now();
    let caller = Caller::of(&state, &headers, addr)?;
    let q = query(q)?;
    let encoding = encoding_of(&headers)?;
    let bytes = body(bytes, &state.limits)?;
    let batch_id = batch_id(&id, &headers)?;
    let st = state.clone();
    let access = caller.access("append", None);
    // A refusal is recorded (a write: off the async workers); an allowance costs nothing.
    if tracevault_core::policy::check(&access, Operation::Append).is_err() {
        let (st, access) = (state.clone(), access.clone());
        blocking(move || st.log.check_access(&access, Operation::Append)).await??;
    }
    let info = state.log.session_info(&id).ok_or_else(|| {
        Problem::new(StatusCode::NOT_FOUND, format!("session {id:?} does not exist: POST /v1/sessions first"))
    })?;
    caller.owns(&info.meta)?;
    // Decoding runs here, on the runtime's workers (one per core), so a burst of batches is
    // decoded a core at a time instead of by a thread per request; only the append, which
    // waits for the group commit, goes to a blocking thread.
    let bytes = decoded(&headers, bytes, &st.limits)?;
    let events = batch::decode_events(encoding, &bytes, &id).map_err(|e| match e {
        BatchError::Record { index, error } => {
            let field = match &error.field {
                Some(f) => format!("[{index}].{f}"),
                None => format!("[{index}]"),
            };
            Problem::bad_request(format!("event {index}: {error}")).field(field)
        }
        other => Problem::bad_request(format!("body: {other}")),
    })?;
    drop(bytes);
    if events.len() > st.limits.batch_events_max {
        return Err(Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("a batch holds at most {} events, found {}", st.limits.batch_events_max, events.len()),
        ));
    }
    tracevault_core::ingest::check_times(info.t_max_us, &events).map_err(|(i, reason)| {
        Problem::bad_request(format!("event {i}: {reason}")).field(format!("[{i}].t"))
    })?;
    let (ack, session) = blocking(move || -> Result<_, Problem> {
        let ack = st.log.append_batch(Batch { session: &id, events: &events, batch_id: Some(batch_id), expected_seq: q.expected_seq })?;
        if ack.duplicate && ack.events != events.len() as u64 {
            return Err(Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "Idempotency-Key already acknowledged for a batch of {} events at sequence {}; this batch has {}: use a new key for a new batch",
                    ack.events, ack.seq_first, events.len()
                ),
            )
            .field("Idempotency-Key"));
        }
        Ok((ack, id))
    })
    .await??;
    state.metrics.acked(ack.events, started.elapsed());
    Ok(Json(json!({
        "session": session,
        "seq_first": ack.seq_first,
        "events": ack.events,
        "next_seq": ack.seq_first + ack.events,
        "duplicate": ack.duplicate,
    }))
    .into_response())
}

/// `POST /v1/sessions/{id}/close`: the session's open block sealed (durable), and the session no
/// longer counted against its token.
async fn close_session(
    State(state): State<Shared>,
    ConnectInfo(ClientAddr(addr)): ConnectInfo<ClientAddr>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let caller = Caller::of(&state, &headers, addr)?;
    let st = state.clone();
    let access = caller.access("close a session", None);
    let token = caller.token.id.clone();
    let (id, events) = blocking(move || -> Result<_, Problem> {
        st.log.check_access(&access, Operation::Append)?;
        let info = st
            .log
            .session_info(&id)
            .ok_or_else(|| Problem::new(StatusCode::NOT_FOUND, format!("session {id:?} does not exist")))?;
        caller.owns(&info.meta)?;
        st.log.seal_session(&id)?;
        Ok((id, info.events))
    })
    .await??;
    if let Some(mine) = state.open.lock().unwrap_or_else(|e| e.into_inner()).get_mut(&token) {
        mine.remove(&id);
    }
    Ok(Json(json!({"session": id, "events": events, "closed": true})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    user: Option<String>,
    device: Option<String>,
    /// Sessions that started at or after this RFC 3339 time.
    from: Option<String>,
    /// Sessions that started before this RFC 3339 time.
    to: Option<String>,
}

fn timestamp(field: &str, text: &Option<String>) -> Result<Option<jiff::Timestamp>, Problem> {
    text.as_deref()
        .map(|t| {
            t.parse::<jiff::Timestamp>().map_err(|e| {
                Problem::bad_request(format!(
                    "{field}: expected an RFC 3339 time such as 2026-11-27T09:00:00Z, found {t:?} ({e})"
                ))
                .field(field)
            })
        })
        .transpose()
}

pub(crate) fn session_json(s: &SessionInfo) -> Value {
    json!({
        "session": s.meta.session,
        "user": s.meta.user,
        "device": s.meta.device,
        "started_at": s.meta.started_at,
        "duration_us": s.t_max_us.unwrap_or(0).saturating_sub(s.t_min_us.unwrap_or(0)),
        "events": s.events,
        "bytes": s.sealed_bytes,
        "labels": s.meta.labels,
        "erased": s.erased,
    })
}

/// `GET /v1/sessions`: the list (no events), filtered.
async fn list_sessions(
    State(state): State<Shared>,
    ConnectInfo(ClientAddr(addr)): ConnectInfo<ClientAddr>,
    q: Result<Query<ListQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let caller = Caller::of(&state, &headers, addr)?;
    let q = query(q)?;
    let (from, to) = (timestamp("from", &q.from)?, timestamp("to", &q.to)?);
    let st = state.clone();
    let access = caller.access("list sessions", None);
    let sessions = blocking(move || st.log.list_sessions(&access)).await??;
    let started =
        |s: &SessionInfo| s.meta.started_at.as_deref().and_then(|t| t.parse::<jiff::Timestamp>().ok());
    let rows: Vec<Value> = sessions
        .iter()
        .filter(|s| q.user.as_ref().is_none_or(|u| *u == s.meta.user))
        .filter(|s| q.device.as_ref().is_none_or(|d| s.meta.device.as_ref() == Some(d)))
        .filter(|s| from.is_none_or(|f| started(s).is_some_and(|t| t >= f)))
        .filter(|s| to.is_none_or(|b| started(s).is_some_and(|t| t < b)))
        .map(session_json)
        .collect();
    Ok(Json(Value::Array(rows)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayQuery {
    purpose: Option<String>,
    ticket: Option<String>,
    raw: Option<bool>,
    /// The steps as `json` (default), `jsonl` (one step per line) or `text` (the auditor's
    /// timeline, as `tracevault replay` prints it).
    format: Option<String>,
    /// From this time in the session, µs.
    from: Option<u64>,
    /// Up to this time in the session, µs.
    to: Option<u64>,
}

/// `GET /v1/sessions/{id}/replay`: the session proven against the newest signed head, the read
/// recorded, then its steps (JSON) or, with `raw=true`, its events as interchange JSONL.
async fn replay(
    State(state): State<Shared>,
    ConnectInfo(ClientAddr(addr)): ConnectInfo<ClientAddr>,
    Path(id): Path<String>,
    q: Result<Query<ReplayQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let caller = Caller::of(&state, &headers, addr)?;
    let q = query(q)?;
    let purpose = q.purpose.as_deref().map(str::trim).unwrap_or("");
    if purpose.is_empty() {
        return Err(Problem::bad_request("query parameter purpose: required: say why this session is read (it is recorded in the access audit log)").field("purpose"));
    }
    let raw = q.raw.unwrap_or(false);
    let format = q.format.as_deref().unwrap_or("json");
    if !matches!(format, "json" | "jsonl" | "text") {
        return Err(Problem::bad_request(format!("format: expected json, jsonl or text, found {format:?}"))
            .field("format"));
    }
    let format = format.to_owned();
    let access = caller.access(purpose, q.ticket.as_deref());
    let range = q.from.unwrap_or(0)..=q.to.unwrap_or(u64::MAX);
    let st = state.clone();
    let replayed = blocking(move || -> Result<AuditedReplay, Problem> {
        // The role first (a refusal recorded), so nothing is proven for a caller who may not read.
        st.log.check_access(&access, if raw { Operation::ReadRaw } else { Operation::ReadSteps })?;
        Ok(st.engine.audited_replay(&st.log, &access, &id, range, raw)?)
    })
    .await??;
    if format == "text" && !raw {
        let text = tracevault_replay::timeline::render(&replayed);
        return Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response());
    }
    let AuditedReplay { proof, session, raw: events } = replayed;
    if format == "jsonl" && !raw {
        let mut out = String::new();
        for step in &session.steps {
            out.push_str(&step.to_json(&session.meta.session).to_string());
            out.push('\n');
        }
        return Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], out).into_response());
    }
    if raw {
        let mut out = Vec::new();
        let _ = jsonl::write_record(&mut out, &Record::Session(session.meta.clone()));
        for event in events {
            let _ = jsonl::write_record(
                &mut out,
                &Record::Event { session: session.meta.session.clone(), event },
            );
        }
        return Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], out).into_response());
    }
    let steps: Vec<Value> = session.steps.iter().map(|s| s.to_json(&session.meta.session)).collect();
    Ok(Json(json!({
        "session": session.meta.session,
        "user": session.meta.user,
        "device": session.meta.device,
        "started_at": session.meta.started_at,
        "events": session.events,
        "proof": {
            "sealed_blocks": proof.frames.len(),
            "tree_size": proof.head.tree_size,
            "unsealed_events": proof.unsealed_events,
        },
        "steps": steps,
    }))
    .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportRequest {
    format: Option<String>,
    redaction: Option<String>,
    #[serde(default)]
    sessions: Vec<String>,
    user: Option<String>,
    started_from: Option<String>,
    started_before: Option<String>,
    purpose: Option<String>,
    ticket: Option<String>,
}

/// `POST /v1/exports`: trajectories as one Parquet or JSONL file. Redacted unless an auditor asks
/// for `none` with a purpose; whatever an ML token asks, the core's policy gives it redacted
/// steps only.
async fn export(
    State(state): State<Shared>,
    ConnectInfo(ClientAddr(addr)): ConnectInfo<ClientAddr>,
    headers: HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let caller = Caller::of(&state, &headers, addr)?;
    let bytes = body(bytes, &state.limits)?;
    let request: ExportRequest = if bytes.is_empty() {
        serde_json::from_str("{}").expect("an empty request")
    } else {
        serde_json::from_slice(&bytes).map_err(|e| Problem::bad_request(format!("export request: {e}")))?
    };
    let format: Format = request
        .format
        .as_deref()
        .unwrap_or("parquet")
        .parse()
        .map_err(|e: String| Problem::bad_request(format!("format: {e}")).field("format"))?;
    let policy: Policy = request
        .redaction
        .as_deref()
        .unwrap_or("default")
        .parse()
        .map_err(|e: String| Problem::bad_request(format!("redaction: {e}")).field("redaction"))?;
    let purpose = match (policy, request.purpose.as_deref().map(str::trim)) {
        (_, Some(p)) if !p.is_empty() => p.to_owned(),
        (Policy::Default, _) => "export trajectories for model training".to_owned(),
        (Policy::None, _) => {
            return Err(Problem::bad_request(
                "an export without redaction is an auditor's and says why: give purpose (it is recorded in the access audit log)",
            )
            .field("purpose"));
        }
    };
    let Ok(permit) = state.exports.clone().try_acquire_owned() else {
        return Err(Problem::new(StatusCode::SERVICE_UNAVAILABLE, "exports are running: try again shortly")
            .retry_after(5));
    };
    let access = caller.access(&purpose, request.ticket.as_deref());
    let selection = Selection {
        sessions: request.sessions,
        user: request.user,
        started_from: request.started_from,
        started_before: request.started_before,
        labels: Vec::new(),
    };
    let st = state.clone();
    let (bytes, pass) = blocking(move || -> Result<_, Problem> {
        let _permit = permit;
        let op = match policy {
            Policy::Default => Operation::ExportRedacted,
            Policy::None => Operation::ExportUnredacted,
        };
        // Refused before a file is made (the refusal is recorded).
        st.log.check_access(&access, op)?;
        let mut random = [0u8; 8];
        getrandom::fill(&mut random)
            .map_err(|e| Problem::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
        let dir = st.export_dir.join(format!("export-{}", hex::encode(random)));
        let _cleanup = RemoveOnDrop(dir.clone());
        tracevault_core::storage::create_private_dir(&dir).map_err(|e| {
            Problem::new(StatusCode::INTERNAL_SERVER_ERROR, format!("{}: {e}", dir.display()))
        })?;
        let options = ExportOptions {
            out: dir.clone(),
            format,
            policy,
            sensitive_apps: st.sensitive_apps.clone(),
            user_key: None,
        };
        let report =
            tracevault_replay::export(&st.log, &st.engine, &access, &selection, &options, &mut |_, _| {})?;
        let file = &report.files[0];
        let bytes = std::fs::read(file).map_err(|e| {
            Problem::new(StatusCode::INTERNAL_SERVER_ERROR, format!("{}: {e}", file.display()))
        })?;
        Ok((bytes, report.pass))
    })
    .await??;
    let content_type = match format {
        Format::Parquet => "application/vnd.apache.parquet",
        Format::Jsonl => "application/x-ndjson",
    };
    let mut response = ([(header::CONTENT_TYPE, content_type)], bytes).into_response();
    let h = response.headers_mut();
    let disposition = format!("attachment; filename=\"{}\"", format.file_name());
    h.insert(header::CONTENT_DISPOSITION, HeaderValue::from_str(&disposition).expect("ASCII"));
    h.insert("tracevault-redaction", HeaderValue::from_static(policy.name()));
    for (name, value) in [
        ("tracevault-sessions", pass.sessions),
        ("tracevault-events", pass.events),
        ("tracevault-steps", pass.steps),
        ("tracevault-episodes", pass.episodes),
        ("tracevault-skipped-sessions", pass.skipped.len() as u64),
    ] {
        h.insert(name, HeaderValue::from(value));
    }
    Ok(response)
}

/// Removes an export's scratch directory however the export ends.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct WhyBody {
    purpose: Option<String>,
    ticket: Option<String>,
}

fn why(bytes: &[u8]) -> Result<WhyBody, Problem> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(WhyBody::default());
    }
    serde_json::from_slice(bytes).map_err(|e| Problem::bad_request(format!("body: {e}")))
}

/// `POST /v1/users/{user}/shred`: crypto-erases the person (admins).
async fn shred(
    State(state): State<Shared>,
    ConnectInfo(ClientAddr(addr)): ConnectInfo<ClientAddr>,
    Path(user): Path<String>,
    headers: HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let caller = Caller::of(&state, &headers, addr)?;
    let why = why(&body(bytes, &state.limits)?)?;
    let access = caller.access(why.purpose.as_deref().unwrap_or("erasure request"), why.ticket.as_deref());
    let st = state.clone();
    let u = user.clone();
    let shredded = blocking(move || st.log.shred(&access, &u)).await??;
    let master = match &shredded.master_key {
        MasterKeyAfterShred::Replaced(f) => json!({"replaced": true, "fingerprint": f}),
        MasterKeyAfterShred::Unchanged => json!({"replaced": false}),
        MasterKeyAfterShred::Kept(why) => json!({"replaced": false, "reason": why}),
    };
    Ok(Json(json!({
        "user": user,
        "keys_erased": shredded.keys,
        "sessions": shredded.sessions,
        "audit_seq": shredded.audit_seq,
        "master_key": master,
    }))
    .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    /// Entries from this sequence number on.
    from_seq: Option<u64>,
}

/// `GET /v1/audit`: the access audit log's entries (the query recorded too).
async fn audit(
    State(state): State<Shared>,
    ConnectInfo(ClientAddr(addr)): ConnectInfo<ClientAddr>,
    q: Result<Query<AuditQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let caller = Caller::of(&state, &headers, addr)?;
    let q = query(q)?;
    let access = caller.access("read the audit log", None);
    let st = state.clone();
    let scan = blocking(move || st.log.audit_entries(&access)).await??;
    let from = q.from_seq.unwrap_or(0);
    let entries: Vec<&tracevault_core::AuditEntry> = scan.entries.iter().filter(|e| e.seq >= from).collect();
    Ok(Json(json!({
        "entries": entries,
        "problem": scan.problem.map(|(offset, reason)| json!({"offset": offset, "reason": reason})),
    }))
    .into_response())
}

/// `GET /v1/audit/verify`: the audit log checked against the signed heads.
async fn audit_verify(
    State(state): State<Shared>,
    ConnectInfo(ClientAddr(addr)): ConnectInfo<ClientAddr>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let caller = Caller::of(&state, &headers, addr)?;
    let access = caller.access("verify the audit log", None);
    let st = state.clone();
    let report = blocking(move || st.log.verify_audit(&access)).await??;
    Ok(Json(json!({
        "ok": report.ok(),
        "heads": report.heads,
        "audit_entries": report.audit_entries,
        "public_key": report.public_key,
        "first_problem": report.first_problem.as_ref().map(|p| p.to_string()),
    }))
    .into_response())
}

#[cfg(test)]
mod tests {
    #[test]
    fn frame_size_probe() {
        let data = vec![7u8; 100_000];
        let c = zstd::bulk::compress(&data, 1).unwrap();
        eprintln!(
            "size {:?} compressed {:?} len {}",
            zstd::zstd_safe::get_frame_content_size(&c),
            zstd::zstd_safe::find_frame_compressed_size(&c),
            c.len()
        );
    }
}
