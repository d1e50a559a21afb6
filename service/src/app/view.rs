//! The auditor's viewer: `/viewer` (static files embedded in the binary) and the routes it plays a
//! session through, and a recorded person's view of who read their sessions.
//!
//! Opening a view (`POST /v1/views`) proves the session's frames against the newest signed head
//! and records one read in the access audit log; a session that does not prove is not read, and
//! the answer says why. The view then holds the session's blocks as opened and hands out the ones
//! the page asks for (`GET /v1/views/{view}/blocks?from=&to=`), by the index's time ranges: a
//! seek to the last minute of an hour decodes the blocks of that minute, never every earlier one.
//! The action timeline (`/timeline`) is the whole session reduced, fetched once, beside the
//! blocks. Views belong to the token that opened them, expire when idle, and are bounded per
//! token, so a page cannot make the server hold sessions without limit.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use tracevault_codecs::block::BlockDecoder;
use tracevault_codecs::{Event, EventKind, SessionMeta};
use tracevault_core::{ErrorKind, Operation, ReadError, Role, SessionBlocks, SessionProof};

use crate::problem::Problem;

use super::{Caller, ClientAddr, Shared, blocking, body, query};

const INDEX_HTML: &str = include_str!("../viewer/index.html");
const APP_JS: &str = include_str!("../viewer/app.js");
const APP_CSS: &str = include_str!("../viewer/app.css");

/// Views one token holds at once; opening another closes its least recently used.
const VIEWS_PER_TOKEN: usize = 8;
/// Views the server holds at once, over every token; past it the least recently used closes.
const VIEWS_MAX: usize = 256;
/// A view unused this long is closed.
const VIEW_IDLE: Duration = Duration::from_secs(30 * 60);
/// Blocks one request may ask for.
const BLOCKS_PER_REQUEST: usize = 16;

/// What the page may load: itself, and nothing from anywhere else; no inline script or style.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn asset(content_type: &'static str, text: &'static str) -> Response {
    let mut response = ([(header::CONTENT_TYPE, content_type)], text).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// `GET /viewer`: the page.
pub(super) async fn page() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

/// `GET /viewer/app.js`.
pub(super) async fn script() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

/// `GET /viewer/app.css`.
pub(super) async fn style() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

/// One block of a view, as the page sees it. The sealed blocks come first, each bound to the
/// proof; the open block, if any, is the last and is under no signed head yet.
struct Span {
    t_min_us: u64,
    t_max_us: u64,
    events: u64,
}

/// A session opened for viewing: its read recorded, its blocks held.
pub(crate) struct View {
    token: String,
    meta: SessionMeta,
    blocks: SessionBlocks,
    spans: Vec<Span>,
    /// The open block's events (not yet sealed), decoded once at opening; the last span.
    open: Option<Vec<Event>>,
    last_used: Mutex<Instant>,
    /// The steps as JSON, built at the first request.
    timeline: tokio::sync::OnceCell<Bytes>,
}

/// The open views, by id.
#[derive(Default)]
pub(crate) struct Views {
    map: Mutex<HashMap<String, Arc<View>>>,
}

impl Views {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<View>>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps `view` under `id`, closing idle views and, past the token's bound, its least
    /// recently used.
    fn insert(&self, id: String, view: View) {
        let mut map = self.lock();
        let now = Instant::now();
        map.retain(|_, v| {
            now.duration_since(*v.last_used.lock().unwrap_or_else(|e| e.into_inner())) < VIEW_IDLE
        });
        let mut mine: Vec<(Instant, String)> = map
            .iter()
            .filter(|(_, v)| v.token == view.token)
            .map(|(k, v)| (*v.last_used.lock().unwrap_or_else(|e| e.into_inner()), k.clone()))
            .collect();
        mine.sort();
        let excess = (mine.len() + 1).saturating_sub(VIEWS_PER_TOKEN);
        for (_, k) in mine.into_iter().take(excess) {
            map.remove(&k);
        }
        if map.len() >= VIEWS_MAX {
            let oldest = map
                .iter()
                .min_by_key(|(_, v)| *v.last_used.lock().unwrap_or_else(|e| e.into_inner()))
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                map.remove(&k);
            }
        }
        map.insert(id, Arc::new(view));
    }

    /// The view `id`, if `token` opened it and it has not expired. Another token's view is "not
    /// found", as an unknown one is: a view id is no capability.
    fn get(&self, id: &str, token: &str) -> Result<Arc<View>, Problem> {
        let mut map = self.lock();
        let gone = || {
            Problem::new(
                StatusCode::NOT_FOUND,
                format!("no open view {id:?} for this token: open the session again"),
            )
        };
        let view = map.get(id).filter(|v| v.token == token).cloned().ok_or_else(gone)?;
        let mut used = view.last_used.lock().unwrap_or_else(|e| e.into_inner());
        if used.elapsed() >= VIEW_IDLE {
            drop(used);
            map.remove(id);
            return Err(gone());
        }
        *used = Instant::now();
        drop(used);
        Ok(view)
    }

    /// As [`Views::get`], and closed if the session's person was erased since it was opened:
    /// what the view holds decoded (the open block, the timeline) goes with it.
    fn get_live(&self, state: &super::AppState, id: &str, token: &str) -> Result<Arc<View>, Problem> {
        let view = self.get(id, token)?;
        if state.log.session_info(&view.meta.session).is_none_or(|i| i.erased) {
            self.lock().remove(id);
            return Err(Problem::new(
                StatusCode::GONE,
                format!("session {:?}: its person was erased; the view is closed", view.meta.session),
            ));
        }
        Ok(view)
    }

    fn remove(&self, id: &str, token: &str) -> bool {
        let mut map = self.lock();
        if map.get(id).is_some_and(|v| v.token == token) {
            map.remove(id);
            return true;
        }
        false
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct OpenRequest {
    session: String,
    purpose: Option<String>,
    ticket: Option<String>,
}

/// Why a session's proof failed, as the page shows it.
fn integrity_failed(reason: &str) -> Response {
    let body = json!({
        "type": "https://tracevault.dev/problems/integrity",
        "title": "integrity check failed",
        "status": 409,
        "detail": format!("the session's frames do not prove against the signed head, so it is not shown: {reason}"),
        "integrity": {"verified": false, "reason": reason},
    });
    let mut response = (StatusCode::CONFLICT, body.to_string()).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
    response
}

/// `POST /v1/views`: proves the session, records the read (one entry, with the purpose and the
/// token), and opens a view of it.
pub(super) async fn open(
    State(state): State<Shared>,
    ConnectInfo(ClientAddr(addr)): ConnectInfo<ClientAddr>,
    headers: HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let caller = Caller::of(&state, &headers, addr)?;
    let bytes = body(bytes, &state.limits)?;
    let request: OpenRequest = serde_json::from_slice(&bytes).map_err(|e| {
        Problem::bad_request(format!("view request: expected {{\"session\", \"purpose\", \"ticket\"}}: {e}"))
    })?;
    let purpose = request.purpose.as_deref().map(str::trim).unwrap_or("");
    if purpose.is_empty() {
        return Err(Problem::bad_request(
            "purpose: required: say why this session is viewed (it is recorded in the access audit log)",
        )
        .field("purpose"));
    }
    let access = caller.access(purpose, request.ticket.as_deref().map(str::trim).filter(|t| !t.is_empty()));
    let token = caller.token.id.clone();
    let id = request.session;
    let st = state.clone();
    let opened = blocking(move || -> Result<Result<(String, Value), String>, Problem> {
        // The role first (a refusal recorded), so nothing is proven for a caller who may not read.
        st.log.check_access(&access, Operation::ReadRaw)?;
        let prove = || -> Result<Result<SessionProof, String>, Problem> {
            match st.log.verify_session(&id) {
                Ok(p) => Ok(Ok(p)),
                Err(e @ ReadError::UnknownSession(_)) => Err(e.into()),
                Err(e) if e.kind() == ErrorKind::Corrupt => Ok(Err(e.to_string())),
                Err(e) => Err(e.into()),
            }
        };
        let mut proof = match prove()? {
            Ok(p) => p,
            Err(reason) => return Ok(Err(reason)),
        };
        // The read, recorded; then the blocks held are bound to the proof, so every later read
        // checks its frame against the leaf proven. A block sealed between the two is covered by
        // proving once more.
        let mut blocks = st.log.session_blocks(&access, &id, 0..=u64::MAX)?;
        if blocks.bind_to_proof(&proof).is_err() {
            proof = match prove()? {
                Ok(p) => p,
                Err(reason) => return Ok(Err(reason)),
            };
            if let Err(e) = blocks.bind_to_proof(&proof) {
                return Ok(Err(e.to_string()));
            }
        }
        let meta = st
            .log
            .session_info(&id)
            .map(|i| i.meta)
            .ok_or_else(|| Problem::new(StatusCode::NOT_FOUND, format!("no session {id:?}")))?;
        let mut spans: Vec<Span> = blocks
            .sealed_spans()
            .map(|(_, t_min_us, t_max_us, events)| Span { t_min_us, t_max_us, events: u64::from(events) })
            .collect();
        let open = blocks.read_open(&mut BlockDecoder::new())?.map(|b| b.events);
        if let Some(events) = &open {
            let (first, last) = (events.first().map_or(0, |e| e.t_us), events.last().map_or(0, |e| e.t_us));
            spans.push(Span { t_min_us: first, t_max_us: last, events: events.len() as u64 });
        }
        let last_frame = proof.frames.iter().map(|f| f.frame + 1).max().unwrap_or(0);
        let witnessed = st.log.witnessed(last_frame)?;
        let view_id = random_id()?;
        let body = json!({
            "view": view_id,
            "session": {
                "session": meta.session,
                "user": meta.user,
                "device": meta.device,
                "started_at": meta.started_at,
                "screen": meta.screen,
                "layout": meta.layout,
            },
            "integrity": {
                "verified": true,
                "head": {
                    "counter": proof.head.counter,
                    "tree_size": proof.head.tree_size,
                    "time_unix_us": proof.head.time_unix_us,
                    "root": hex::encode(proof.head.root),
                },
                "frames": proof.frames.len(),
                "events_proven": proof.events,
                "unsealed_events": proof.unsealed_events,
                "witnesses": witnessed.as_ref().map_or(0, |w| w.witnesses.len()),
                "witnessed_head": witnessed.as_ref().map(|w| json!({
                    "counter": w.counter,
                    "tree_size": w.tree_size,
                    "time_unix_us": w.time_unix_us,
                    "witnesses": w.witnesses,
                })),
            },
            "t_min_us": spans.first().map_or(0, |s| s.t_min_us),
            "t_max_us": spans.iter().map(|s| s.t_max_us).max().unwrap_or(0),
            "blocks": spans.iter().enumerate().map(|(i, s)| json!({
                "index": i,
                "t_min_us": s.t_min_us,
                "t_max_us": s.t_max_us,
                "events": s.events,
                "sealed": i < blocks.sealed_count(),
            })).collect::<Vec<_>>(),
        });
        st.views.insert(
            view_id.clone(),
            View {
                token,
                meta,
                blocks,
                spans,
                open,
                last_used: Mutex::new(Instant::now()),
                timeline: tokio::sync::OnceCell::new(),
            },
        );
        Ok(Ok((view_id, body)))
    })
    .await??;
    match opened {
        Ok((view_id, body)) => {
            state.metrics.views_opened.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::info!(view = %view_id, token = %caller.token.id, "view opened");
            Ok((StatusCode::CREATED, Json(body)).into_response())
        }
        Err(reason) => {
            tracing::error!(token = %caller.token.id, "a session did not prove: {reason}");
            Ok(integrity_failed(&reason))
        }
    }
}

fn random_id() -> Result<String, Problem> {
    let mut random = [0u8; 16];
    getrandom::fill(&mut random).map_err(|e| Problem::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    Ok(hex::encode(random))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BlocksQuery {
    from: usize,
    to: usize,
}

/// `GET /v1/views/{view}/blocks?from=I&to=J`: the events of blocks I..=J of the view, decoded
/// now; no other block is read.
pub(super) async fn blocks(
    State(state): State<Shared>,
    ConnectInfo(ClientAddr(addr)): ConnectInfo<ClientAddr>,
    Path(view_id): Path<String>,
    q: Result<Query<BlocksQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let caller = Caller::of(&state, &headers, addr)?;
    let q = query(q)?;
    let view = state.views.get_live(&state, &view_id, &caller.token.id)?;
    let n = view.spans.len();
    if q.from > q.to || q.to >= n {
        return Err(Problem::bad_request(format!(
            "from={}, to={}: expected 0 <= from <= to < {n} (the view's blocks)",
            q.from, q.to
        ))
        .field("to"));
    }
    if q.to - q.from + 1 > BLOCKS_PER_REQUEST {
        return Err(Problem::bad_request(format!(
            "from={}, to={}: at most {BLOCKS_PER_REQUEST} blocks per request",
            q.from, q.to
        ))
        .field("to"));
    }
    let (from, to) = (q.from, q.to);
    let v = view.clone();
    let out = blocking(move || -> Result<Result<Vec<Value>, String>, Problem> {
        let mut decoder = BlockDecoder::new();
        let mut out = Vec::with_capacity(to - from + 1);
        for i in from..=to {
            let read;
            let events: &[Event] = if i < v.blocks.sealed_count() {
                read = match v.blocks.read_sealed(i, &mut decoder) {
                    Ok(b) => b.events,
                    // Altered since it was proven (or damaged): the page shows the proof failed.
                    Err(e) if e.kind() == ErrorKind::Corrupt => return Ok(Err(e.to_string())),
                    Err(e) => return Err(e.into()),
                };
                &read
            } else {
                v.open.as_deref().unwrap_or_default()
            };
            out.push(json!({"index": i, "events": events.iter().map(event_json).collect::<Vec<_>>()}));
        }
        Ok(Ok(out))
    })
    .await??;
    let out = match out {
        Ok(out) => out,
        Err(reason) => {
            tracing::error!(view = %view_id, "a block of an open view no longer proves: {reason}");
            state.views.remove(&view_id, &caller.token.id);
            return Ok(integrity_failed(&reason));
        }
    };
    let decoded = (to - from + 1) as u64;
    state.metrics.view_block_requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    state.metrics.view_blocks_decoded.fetch_add(decoded, std::sync::atomic::Ordering::Relaxed);
    tracing::info!(view = %view_id, from, to, t_min_us = view.spans[from].t_min_us, t_max_us = view.spans[to].t_max_us, "view blocks decoded");
    Ok(Json(json!({"blocks": out})).into_response())
}

/// An event as the page draws it: `[t_us, kind, ...fields]`, the fields in the order of
/// docs/SERVICE.md's viewer section.
fn event_json(e: &Event) -> Value {
    let t = e.t_us;
    match &e.kind {
        EventKind::Move { x, y } => json!([t, "move", x, y]),
        EventKind::Down { button, x, y } => json!([t, "down", button, x, y]),
        EventKind::Up { button, x, y } => json!([t, "up", button, x, y]),
        EventKind::Wheel { dx, dy, x, y } => json!([t, "wheel", dx, dy, x, y]),
        EventKind::KeyDown(k) => json!([t, "keydown", k.code, k.text, k.secure]),
        EventKind::KeyUp(k) => json!([t, "keyup", k.code, k.text, k.secure]),
        EventKind::Text { text } => json!([t, "text", text]),
        EventKind::Focus { app, title } => json!([t, "focus", app, title]),
        EventKind::Screen { w, h } => json!([t, "screen", w, h]),
        EventKind::Marker { label } => json!([t, "marker", label]),
    }
}

/// `GET /v1/views/{view}/timeline`: the view's steps (the whole session reduced, as `replay`
/// gives them), computed once per view.
pub(super) async fn timeline(
    State(state): State<Shared>,
    ConnectInfo(ClientAddr(addr)): ConnectInfo<ClientAddr>,
    Path(view_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let caller = Caller::of(&state, &headers, addr)?;
    let view = state.views.get_live(&state, &view_id, &caller.token.id)?;
    let st = state.clone();
    let v = view.clone();
    // Built once per view: concurrent first requests wait for the one building it.
    let built = view
        .timeline
        .get_or_try_init(|| async move { blocking(move || build_timeline(&st, &v)).await? })
        .await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], built.clone()).into_response())
}

/// The view's steps, as JSON bytes.
fn build_timeline(st: &super::AppState, v: &View) -> Result<Bytes, Problem> {
    let session = st
        .engine
        .steps_of(&v.meta, &v.blocks)
        .map_err(|e| Problem::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let steps: Vec<Value> = session
        .steps
        .iter()
        .map(|s| {
            let mut j = s.to_json(&v.meta.session);
            if let Some(o) = j.as_object_mut() {
                for k in ["session", "pyautogui", "pyautogui_skipped", "lineage"] {
                    o.remove(k);
                }
            }
            j
        })
        .collect();
    let episodes = session.steps.last().map_or(0, |s| s.episode + 1);
    st.metrics.view_timelines.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let body = json!({"steps": steps, "episodes": episodes, "events": session.events});
    Ok(Bytes::from(body.to_string()))
}

/// `DELETE /v1/views/{view}`: closes a view.
pub(super) async fn close(
    State(state): State<Shared>,
    ConnectInfo(ClientAddr(addr)): ConnectInfo<ClientAddr>,
    Path(view_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let caller = Caller::of(&state, &headers, addr)?;
    if !state.views.remove(&view_id, &caller.token.id) {
        return Err(Problem::new(StatusCode::NOT_FOUND, format!("no open view {view_id:?} for this token")));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /v1/whoami`: the token's name, role and binding, for the page to know what to show.
pub(super) async fn whoami(
    State(state): State<Shared>,
    ConnectInfo(ClientAddr(addr)): ConnectInfo<ClientAddr>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let caller = Caller::of(&state, &headers, addr)?;
    let t = &caller.token;
    Ok(Json(json!({
        "id": t.id,
        "name": t.name,
        "role": t.role.as_str(),
        "user": t.user,
        "device": t.device,
    }))
    .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HistoryQuery {
    /// For an auditor or an admin: whose history. A subject's token names its person itself.
    user: Option<String>,
}

/// `GET /v1/me/access`: who read the person's sessions, when, why, under which ticket; for a
/// subject token its own person only.
pub(super) async fn history(
    State(state): State<Shared>,
    ConnectInfo(ClientAddr(addr)): ConnectInfo<ClientAddr>,
    q: Result<Query<HistoryQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let caller = Caller::of(&state, &headers, addr)?;
    let q = query(q)?;
    let user = match (caller.token.role, &caller.token.user, q.user) {
        (Role::Subject, Some(mine), None) => mine.clone(),
        (Role::Subject, Some(mine), Some(asked)) if asked == *mine => asked,
        (Role::Subject, _, Some(asked)) => {
            return Err(Problem::new(
                StatusCode::FORBIDDEN,
                format!(
                    "token {} shows its own person's access history only, not {asked:?}'s",
                    caller.token.id
                ),
            ));
        }
        (Role::Subject, None, None) => {
            return Err(Problem::new(StatusCode::FORBIDDEN, "this subject token names no person"));
        }
        (_, _, Some(asked)) => asked,
        (_, _, None) => {
            return Err(
                Problem::bad_request("user: required for a token that is not a subject's").field("user")
            );
        }
    };
    let access = caller.access(&format!("access history of {user}"), None);
    let st = state.clone();
    let history = blocking(move || st.log.access_history(&access, &user)).await??;
    let entries: Vec<Value> = history
        .entries
        .iter()
        .map(|e| {
            let (decision, reason) = match &e.decision {
                tracevault_core::Decision::Allowed => ("allowed", None),
                tracevault_core::Decision::Denied(r) => ("denied", Some(r.as_str())),
            };
            json!({
                "time_unix_us": e.time_unix_us,
                "actor": e.actor,
                "role": e.role.as_str(),
                "action": e.action,
                "sessions": e.sessions,
                "purpose": e.purpose,
                "ticket": e.ticket,
                "decision": decision,
                "reason": reason,
            })
        })
        .collect();
    Ok(Json(json!({"user": history.user, "sessions": history.sessions, "entries": entries})).into_response())
}
