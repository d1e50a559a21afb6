//! Recorders' routes: a session created, batches appended (acknowledged once durable), the
//! session closed. The only rule decided here is a recorder's ownership of its device's sessions.

use std::collections::HashSet;
use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tracevault_codecs::batch::{self, Encoding};
use tracevault_codecs::msgpack::BatchError;
use tracevault_codecs::{Record, jsonl, sealed};
use tracevault_core::{Batch, Operation};

use crate::problem::Problem;

use super::{AppState, Caller, ClientAddr, Shared, blocking, body, query};

/// The body as the client meant it: its content codings (`Content-Encoding`, in the order they
/// were applied) removed last first: `tracevault-hpke` opened with the server's recorder key
/// (bound to the request's method, its path as received and its idempotency key), `zstd`
/// decompressed within the limit.
fn decoded(state: &AppState, headers: &HeaderMap, path: &str, bytes: Bytes) -> Result<Bytes, Problem> {
    let Some(value) = headers.get(header::CONTENT_ENCODING) else { return Ok(bytes) };
    let value = value.to_str().unwrap_or("?").to_ascii_lowercase();
    let codings: Vec<&str> = value.split(',').map(str::trim).filter(|c| !c.is_empty()).collect();
    if codings.len() > 2 {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Content-Encoding {value:?}: expected at most zstd and {}", sealed::CONTENT_CODING),
        ));
    }
    let mut bytes = bytes;
    for coding in codings.into_iter().rev() {
        bytes = match coding {
            "identity" => bytes,
            "zstd" => unzstd(&bytes, state.limits.decoded_bytes_max).map(Bytes::from)?,
            c if c == sealed::CONTENT_CODING => {
                let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or("");
                let aad = sealed::request_aad("POST", path, key);
                state.recorder_key.open(&aad, &bytes).map(Bytes::from).map_err(|e| {
                    Problem::bad_request(format!("body: sealed ({}): {e}", sealed::CONTENT_CODING))
                        .field("Content-Encoding")
                })?
            }
            other => {
                return Err(Problem::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    format!("Content-Encoding {other:?}: expected zstd, {} or none", sealed::CONTENT_CODING),
                ));
            }
        };
    }
    Ok(bytes)
}

/// `GET /v1/recorder-key`: the public key recorders seal their bodies to (any valid token).
pub(super) async fn recorder_key(
    State(state): State<Shared>,
    ConnectInfo(ClientAddr(addr)): ConnectInfo<ClientAddr>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    Caller::of(&state, &headers, addr)?;
    Ok(Json(json!({
        "kem": "DHKEM(X25519, HKDF-SHA256)",
        "kdf": "HKDF-SHA256",
        "aead": "ChaCha20Poly1305",
        "public_key": state.recorder_key.public().to_hex(),
    }))
    .into_response())
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
pub(super) async fn create_session(
    State(state): State<Shared>,
    ConnectInfo(ClientAddr(addr)): ConnectInfo<ClientAddr>,
    uri: Uri,
    headers: HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let caller = Caller::of(&state, &headers, addr)?;
    let bytes = decoded(&state, &headers, uri.path(), body(bytes, &state.limits)?)?;
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
pub(super) struct EventsQuery {
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
pub(super) async fn append_events(
    State(state): State<Shared>,
    ConnectInfo(ClientAddr(addr)): ConnectInfo<ClientAddr>,
    Path(id): Path<String>,
    q: Result<Query<EventsQuery>, QueryRejection>,
    uri: Uri,
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
    let bytes = decoded(&st, &headers, uri.path(), bytes)?;
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
pub(super) async fn close_session(
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
