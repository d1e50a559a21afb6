//! Admins' and auditors' routes: crypto-erasure and the access audit log.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use tracevault_core::log::MasterKeyAfterShred;

use crate::problem::Problem;

use super::{Caller, ClientAddr, Shared, blocking, body, query};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct WhyBody {
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
pub(super) async fn shred(
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
pub(super) struct AuditQuery {
    /// Entries from this sequence number on.
    from_seq: Option<u64>,
}

/// `GET /v1/audit`: the access audit log's entries (the query recorded too).
pub(super) async fn audit(
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
pub(super) async fn audit_verify(
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
