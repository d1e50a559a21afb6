//! Reads: the session list, an auditor's replay (proven first, recorded once), and exports
//! (redacted unless an auditor asks otherwise with a purpose).

use std::path::PathBuf;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use tracevault_codecs::{Record, jsonl};
use tracevault_core::{Operation, SessionInfo};
use tracevault_replay::export::{ExportOptions, Format};
use tracevault_replay::{AuditedReplay, Policy, Selection};

use crate::problem::Problem;

use super::{Caller, ClientAddr, Shared, blocking, body, query};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
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
pub(super) async fn list_sessions(
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
pub(super) struct ReplayQuery {
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
pub(super) async fn replay(
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
pub(super) struct ExportRequest {
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
pub(super) async fn export(
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
    let name = format.file_name().rsplit('/').next().unwrap_or("steps");
    let disposition = format!("attachment; filename=\"{name}\"");
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
