//! The routes: each authenticates its caller by token, says who is asking to the core (an
//! [`Access`] naming the token and the client address), and maps the core's typed errors to
//! problem details. The core's policy decides what a role may do and records every read; the
//! only rule decided here is a recorder's ownership (its token writes for one device).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, FailedToBufferBody, QueryRejection};
use axum::extract::{MatchedPath, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio::sync::Semaphore;
use tracevault_codecs::SessionMeta;
use tracevault_core::{Access, Log, Role};
use tracevault_replay::Engine;

use crate::metrics::Metrics;
use crate::problem::Problem;
use crate::tokens::{TokenRecord, Tokens};

mod admin;
mod ingest;
mod read;
mod view;

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
    pub open: Mutex<HashMap<String, HashSet<String>>>,
    busy: Arc<Semaphore>,
    pub exports: Arc<Semaphore>,
    pub export_dir: PathBuf,
    /// Opens the bodies recorders seal to this server.
    pub recorder_key: tracevault_codecs::sealed::PrivateKey,
    /// The viewer's open sessions.
    pub views: view::Views,
}

impl AppState {
    pub fn new(
        log: Arc<Log>,
        engine: Engine,
        tokens: Tokens,
        limits: Limits,
        sensitive_apps: Vec<String>,
        export_dir: PathBuf,
        recorder_key: tracevault_codecs::sealed::PrivateKey,
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
            recorder_key,
            views: view::Views::default(),
        }
    }

    fn open_sessions(&self) -> usize {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).values().map(HashSet::len).sum()
    }
}

pub(crate) type Shared = Arc<AppState>;

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
        .route("/v1/sessions", post(ingest::create_session).get(read::list_sessions))
        .route("/v1/sessions/{id}/events", post(ingest::append_events))
        .route("/v1/sessions/{id}/close", post(ingest::close_session))
        .route("/v1/sessions/{id}/replay", get(read::replay))
        .route("/v1/exports", post(read::export))
        .route("/v1/users/{user}/shred", post(admin::shred))
        .route("/v1/audit", get(admin::audit))
        .route("/v1/audit/verify", get(admin::audit_verify))
        .route("/v1/recorder-key", get(ingest::recorder_key))
        .route("/v1/views", post(view::open))
        .route("/v1/views/{view}", axum::routing::delete(view::close))
        .route("/v1/views/{view}/blocks", get(view::blocks))
        .route("/v1/views/{view}/timeline", get(view::timeline))
        .route("/v1/whoami", get(view::whoami))
        .route("/v1/me/access", get(view::history))
        .route_layer(middleware::from_fn_with_state(state.clone(), bounded));
    Router::new()
        .merge(api)
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .route("/v1/openapi.json", get(|| async { Json(crate::openapi::document()) }))
        .route("/viewer", get(view::page))
        .route("/viewer/", get(view::page))
        .route("/viewer/app.js", get(view::script))
        .route("/viewer/app.css", get(view::style))
        .route_layer(middleware::from_fn_with_state(state.clone(), counted))
        .fallback(|| async { Problem::new(StatusCode::NOT_FOUND, "no such route: see /v1/openapi.json") })
        .layer(axum::extract::DefaultBodyLimit::max(state.limits.body_bytes_max))
        .layer(middleware::from_fn_with_state(state.clone(), lingering))
        .with_state(state)
}

/// Bytes of an oversized body read and thrown away so that its sender sees the 413 (see
/// [`lingering`]); a body declared larger than this is refused without reading it.
const LINGER_BYTES_MAX: u64 = 64 << 20;
/// How long the server reads an oversized body before answering anyway.
const LINGER_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// Refuses a body whose declared length is over the limit, after reading it (up to
/// [`LINGER_BYTES_MAX`] bytes or [`LINGER_TIME`]) and throwing it away. A server that answers
/// 413 and closes while the client is still sending resets the connection, and the client sees
/// "broken pipe" instead of the answer that tells it to split the batch; nginx's lingering close
/// is the same remedy.
async fn lingering(State(state): State<Shared>, request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let limit = state.limits.body_bytes_max;
    let Some(declared) = declared.filter(|&n| n > limit as u64) else {
        return next.run(request).await;
    };
    let route = request.extensions().get::<MatchedPath>().map(|p| route_name(p.as_str())).unwrap_or("other");
    if declared <= LINGER_BYTES_MAX {
        use http_body_util::BodyExt;
        let mut body = request.into_body();
        let drain = async { while let Some(Ok(_)) = body.frame().await {} };
        let _ = tokio::time::timeout(LINGER_TIME, drain).await;
    }
    state.metrics.request(route, StatusCode::PAYLOAD_TOO_LARGE.as_u16());
    let mut response =
        Problem::new(StatusCode::PAYLOAD_TOO_LARGE, format!("the request body is over {limit} bytes"))
            .into_response();
    response.headers_mut().insert(header::CONNECTION, header::HeaderValue::from_static("close"));
    response
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
    const ROUTES: [&str; 22] = [
        "/v1/sessions",
        "/v1/recorder-key",
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
        "/v1/views",
        "/v1/views/{view}",
        "/v1/views/{view}/blocks",
        "/v1/views/{view}/timeline",
        "/v1/whoami",
        "/v1/me/access",
        "/viewer",
        "/viewer/",
        "/viewer/app.js",
        "/viewer/app.css",
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
pub(crate) struct Caller {
    pub token: Arc<TokenRecord>,
    pub addr: SocketAddr,
}

impl Caller {
    pub fn of(state: &AppState, headers: &HeaderMap, addr: SocketAddr) -> Result<Caller, Problem> {
        let header = headers.get(header::AUTHORIZATION).map(|v| v.to_str().unwrap_or(""));
        let token = state
            .tokens
            .authenticate(header)
            .map_err(|e| Problem::new(StatusCode::UNAUTHORIZED, e.to_string()))?;
        Ok(Caller { token, addr })
    }

    /// The access the core decides on and records: the actor names the token and the client.
    pub fn access(&self, purpose: &str, ticket: Option<&str>) -> Access {
        let actor = format!("{} (token {}, {})", self.token.name, self.token.id, self.addr.ip());
        let access = Access::new(actor, self.token.role, purpose);
        match ticket {
            Some(t) => access.with_ticket(t),
            None => access,
        }
    }

    /// A recorder writes only its own device's sessions; other roles the policy decides alone.
    pub fn owns(&self, meta: &SessionMeta) -> Result<(), Problem> {
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
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Problem> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        Problem::new(StatusCode::INTERNAL_SERVER_ERROR, format!("the request's task failed: {e}"))
    })
}

pub(crate) fn body(bytes: Result<Bytes, BytesRejection>, limits: &Limits) -> Result<Bytes, Problem> {
    bytes.map_err(|e| match e {
        BytesRejection::FailedToBufferBody(FailedToBufferBody::LengthLimitError(_)) => Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is over {} bytes", limits.body_bytes_max),
        ),
        other => Problem::bad_request(format!("reading the request body: {other}")),
    })
}

pub(crate) fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, Problem> {
    q.map(|Query(q)| q).map_err(|e| Problem::bad_request(e.body_text()))
}
