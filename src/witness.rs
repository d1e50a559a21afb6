//! Witnesses over HTTP: `tracevault witness serve` (axum) and the client the log pushes its heads
//! with (ureq). The protocol's checks and state are `tracevault_core::witness`; this is only the
//! transport. Bodies are JSON, bytes in hex:
//!
//! - `GET /v1/key` -> `{"key": hex}`: the witness's public key.
//! - `GET /v1/logs/{log}/head` -> `{"head": hex}` (the newest head of that log it cosigned), or
//!   404.
//! - `POST /v1/logs/{log}/cosign` with `{"old_tree_size", "old_audit_size", "head",
//!   "tree_proof": [hex], "audit_proof": [hex]}` -> 200 `{"cosignature": hex}`; 409
//!   `{"error", "head": hex}` when the request was built from another head than the witness's
//!   latest (build it again from that one); 422 `{"error"}` when the head is not consistent with
//!   what it cosigned before; 403 for a log it does not serve; 400 for a malformed request.
//! - `GET /healthz` -> `ok`.
//!
//! Plain HTTP: what a witness returns is signed, so a network in between can refuse service but
//! cannot forge evidence.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tracevault_core::SignedHead;
use tracevault_core::integrity::{PublicKey, parse_public_key};
use tracevault_core::keys::hex;
use tracevault_core::merkle::Hash;
use tracevault_core::witness::{CosignRequest, Cosignature, Keeper, Witness, WitnessError};

#[derive(Serialize, Deserialize)]
struct CosignBody {
    old_tree_size: u64,
    old_audit_size: u64,
    head: String,
    tree_proof: Vec<String>,
    audit_proof: Vec<String>,
}

fn unhex(text: &str, what: &str) -> Result<Vec<u8>, String> {
    ::hex::decode(text).map_err(|e| format!("{what}: {e}"))
}

fn hash(text: &str, what: &str) -> Result<Hash, String> {
    let bytes = unhex(text, what)?;
    bytes.try_into().map_err(|b: Vec<u8>| format!("{what}: {} bytes, expected 32", b.len()))
}

fn head_from_hex(text: &str) -> Result<SignedHead, String> {
    SignedHead::from_bytes(&unhex(text, "head")?).map_err(|c| format!("head: {c}"))
}

impl CosignBody {
    fn of(request: &CosignRequest) -> CosignBody {
        CosignBody {
            old_tree_size: request.old_tree_size,
            old_audit_size: request.old_audit_size,
            head: hex(&request.head.to_bytes()),
            tree_proof: request.tree_proof.iter().map(|h| hex(h)).collect(),
            audit_proof: request.audit_proof.iter().map(|h| hex(h)).collect(),
        }
    }

    fn request(&self) -> Result<CosignRequest, String> {
        Ok(CosignRequest {
            old_tree_size: self.old_tree_size,
            old_audit_size: self.old_audit_size,
            head: head_from_hex(&self.head)?,
            tree_proof: self.tree_proof.iter().map(|h| hash(h, "tree proof")).collect::<Result<_, _>>()?,
            audit_proof: self.audit_proof.iter().map(|h| hash(h, "audit proof")).collect::<Result<_, _>>()?,
        })
    }
}

fn error(status: StatusCode, reason: impl Into<String>) -> Response {
    (status, Json(json!({"error": reason.into()}))).into_response()
}

/// The log's key in a URL, or why it is not one.
fn log_key(text: &str) -> Result<PublicKey, String> {
    parse_public_key(text).map_err(|e| format!("log key: {e}"))
}

async fn key(State(keeper): State<Arc<Keeper>>) -> Response {
    Json(json!({"key": hex(keeper.public_key().as_bytes())})).into_response()
}

async fn latest(State(keeper): State<Arc<Keeper>>, UrlPath(log): UrlPath<String>) -> Response {
    let log = match log_key(&log) {
        Ok(k) => k,
        Err(reason) => return error(StatusCode::BAD_REQUEST, reason),
    };
    let found = tokio::task::spawn_blocking(move || keeper.latest(&log)).await;
    let found = match found {
        Ok(found) => found,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    match found {
        Ok(Some(head)) => Json(json!({"head": hex(&head.to_bytes())})).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, "this witness has cosigned no head of that log"),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn cosign(
    State(keeper): State<Arc<Keeper>>,
    UrlPath(log): UrlPath<String>,
    body: axum::body::Bytes,
) -> Response {
    let log = match log_key(&log) {
        Ok(k) => k,
        Err(reason) => return error(StatusCode::BAD_REQUEST, reason),
    };
    // Parsed here, so that a malformed body gets a JSON 400 saying where, like every other error.
    let body: CosignBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("the request body: {e}")),
    };
    let request = match body.request() {
        Ok(r) => r,
        Err(reason) => return error(StatusCode::BAD_REQUEST, reason),
    };
    // The check and the durable write are blocking file work.
    let result = tokio::task::spawn_blocking(move || keeper.cosign(&log, &request)).await;
    match result {
        Ok(Ok(c)) => Json(json!({"cosignature": hex(&c.to_bytes())})).into_response(),
        Ok(Err(WitnessError::Conflict(head))) => (
            StatusCode::CONFLICT,
            Json(json!({"error": "built from another head than this witness's latest", "head": hex(&head.to_bytes())})),
        )
            .into_response(),
        Ok(Err(WitnessError::Refused(reason))) => {
            tracing::warn!(%reason, "refused to cosign");
            error(StatusCode::UNPROCESSABLE_ENTITY, reason)
        }
        Ok(Err(WitnessError::NotServed(reason))) => error(StatusCode::FORBIDDEN, reason),
        Ok(Err(WitnessError::Unreachable(reason))) => error(StatusCode::INTERNAL_SERVER_ERROR, reason),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// `tracevault witness serve`: serves until interrupted (SIGINT or SIGTERM). Prints one line,
/// `witness <public key> listening on http://<address>`, once it accepts connections.
pub fn serve(listen: &str, state: PathBuf, logs: &[String]) -> Result<()> {
    let allowed = logs
        .iter()
        .map(|k| parse_public_key(k).map_err(|e| anyhow::anyhow!("--log-key {k}: {e}")))
        .collect::<Result<Vec<_>>>()?;
    let keeper = Arc::new(
        Keeper::open(&state, allowed).with_context(|| format!("witness state {}", state.display()))?,
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async move {
        let listener =
            tokio::net::TcpListener::bind(listen).await.with_context(|| format!("listening on {listen}"))?;
        let addr: SocketAddr = listener.local_addr()?;
        let app = Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .route("/v1/key", get(key))
            .route("/v1/logs/{log}/head", get(latest))
            .route("/v1/logs/{log}/cosign", post(cosign))
            .with_state(keeper.clone());
        println!("witness {} listening on http://{addr}", hex(keeper.public_key().as_bytes()));
        use std::io::Write;
        std::io::stdout().flush()?;
        axum::serve(listener, app).with_graceful_shutdown(shutdown()).await.context("serving")
    })
}

async fn shutdown() {
    let interrupt = tokio::signal::ctrl_c();
    let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return interrupt.await.unwrap_or(()),
    };
    tokio::select! {
        _ = interrupt => {}
        _ = terminate.recv() => {}
    }
}

/// A witness reached over HTTP.
pub struct HttpWitness {
    url: String,
    agent: ureq::Agent,
}

impl HttpWitness {
    pub fn new(url: &str) -> HttpWitness {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(10)))
            .http_status_as_error(false)
            .build()
            .into();
        HttpWitness { url: url.trim_end_matches('/').to_owned(), agent }
    }

    fn unreachable(&self, e: impl std::fmt::Display) -> WitnessError {
        WitnessError::Unreachable(format!("{}: {e}", self.url))
    }

    fn answer(
        &self,
        mut response: ureq::http::Response<ureq::Body>,
    ) -> Result<(u16, serde_json::Value), WitnessError> {
        let status = response.status().as_u16();
        let body: serde_json::Value = response.body_mut().read_json().map_err(|e| self.unreachable(e))?;
        Ok((status, body))
    }

    fn field<'a>(&self, body: &'a serde_json::Value, name: &str) -> Result<&'a str, WitnessError> {
        body[name].as_str().ok_or_else(|| self.unreachable(format!("the answer has no {name:?}: {body}")))
    }
}

impl Witness for HttpWitness {
    fn name(&self) -> String {
        self.url.clone()
    }

    fn latest(&self, log: &PublicKey) -> Result<Option<SignedHead>, WitnessError> {
        let url = format!("{}/v1/logs/{}/head", self.url, hex(log.as_bytes()));
        let response = self.agent.get(&url).call().map_err(|e| self.unreachable(e))?;
        match self.answer(response)? {
            (404, _) => Ok(None),
            (200, body) => {
                head_from_hex(self.field(&body, "head")?).map(Some).map_err(|e| self.unreachable(e))
            }
            (status, body) => Err(self.unreachable(format!("HTTP {status}: {body}"))),
        }
    }

    fn add(&self, log: &PublicKey, request: &CosignRequest) -> Result<Cosignature, WitnessError> {
        let url = format!("{}/v1/logs/{}/cosign", self.url, hex(log.as_bytes()));
        let response =
            self.agent.post(&url).send_json(CosignBody::of(request)).map_err(|e| self.unreachable(e))?;
        match self.answer(response)? {
            (200, body) => {
                let bytes = unhex(self.field(&body, "cosignature")?, "cosignature")
                    .map_err(|e| self.unreachable(e))?;
                Cosignature::from_bytes(&bytes).map_err(|c| self.unreachable(c))
            }
            (409, body) => {
                let head = head_from_hex(self.field(&body, "head")?).map_err(|e| self.unreachable(e))?;
                Err(WitnessError::Conflict(Box::new(head)))
            }
            (422, body) => Err(WitnessError::Refused(format!(
                "{}: {}",
                self.url,
                self.field(&body, "error").unwrap_or("?")
            ))),
            (403, body) => Err(WitnessError::NotServed(format!(
                "{}: {}",
                self.url,
                self.field(&body, "error").unwrap_or("?")
            ))),
            (status, body) => Err(self.unreachable(format!("HTTP {status}: {body}"))),
        }
    }
}
