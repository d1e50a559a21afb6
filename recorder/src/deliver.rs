//! Sending spooled requests to `tracevault serve`, oldest first, one at a time: a request is
//! removed from the spool only once the server has acknowledged it (after the batch is durable
//! there), and it is sent again with the same idempotency key until it is, so the server stores
//! it once however often it was sent.

use std::sync::Mutex;
use std::time::Duration;

use crate::spool::{Request, Spool, SpoolError};

/// What became of one attempt.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The server has it (an events batch: durably; a repeat: as before).
    Acked,
    /// Not now: the server is unreachable, busy (429, 503) or failing (5xx). Send it again later.
    Retry(String),
    /// The server refused the request itself (4xx other than 408 and 429): sending it again
    /// cannot help.
    Refused { status: u16, detail: String },
}

/// The client side of the recorder's routes.
pub struct Delivery {
    agent: ureq::Agent,
    base: String,
    auth: String,
}

impl Delivery {
    /// A client of the server at `base` (`http://127.0.0.1:7700`) with a recorder token.
    pub fn new(base: &str, token: &str) -> Delivery {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(3)))
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .new_agent();
        Delivery { agent, base: base.trim_end_matches('/').to_owned(), auth: format!("Bearer {token}") }
    }

    /// The server's public key for sealed bodies (`GET /v1/recorder-key`).
    pub fn server_key(&self) -> Result<tracevault_codecs::sealed::PublicKey, String> {
        let url = format!("{}/v1/recorder-key", self.base);
        let mut response = self
            .agent
            .get(&url)
            .header("authorization", &self.auth)
            .call()
            .map_err(|e| format!("{url}: {e}"))?;
        let status = response.status();
        let body =
            response.body_mut().read_to_string().map_err(|e| format!("{url}: reading the answer: {e}"))?;
        if !status.is_success() {
            return Err(format!("{url}: the server answered {status}: {}", detail(&body)));
        }
        let value: serde_json::Value =
            serde_json::from_str(&body).map_err(|e| format!("{url}: not JSON: {e}"))?;
        let hex = value["public_key"].as_str().ok_or_else(|| format!("{url}: no public_key in {body}"))?;
        tracevault_codecs::sealed::PublicKey::from_hex(hex).map_err(|e| format!("{url}: public_key: {e}"))
    }

    /// One attempt at one request.
    pub fn send(&self, request: &Request) -> Outcome {
        let h = &request.header;
        let url = format!("{}{}", self.base, h.path);
        let mut req = self
            .agent
            .post(&url)
            .header("authorization", &self.auth)
            .header("idempotency-key", &h.idempotency_key);
        if let Some(ct) = &h.content_type {
            req = req.header("content-type", ct);
        }
        if let Some(ce) = &h.content_encoding {
            req = req.header("content-encoding", ce);
        }
        let result = if request.body.is_empty() { req.send_empty() } else { req.send(&request.body[..]) };
        let mut response = match result {
            Ok(r) => r,
            Err(e) => return Outcome::Retry(format!("{url}: {e}")),
        };
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_string().unwrap_or_default();
        match status {
            200..=299 => Outcome::Acked,
            408 | 429 | 500..=599 => {
                Outcome::Retry(format!("{url}: the server answered {status}: {}", detail(&body)))
            }
            _ => Outcome::Refused { status, detail: detail(&body) },
        }
    }

    /// Sends what the spool holds, in order, until it is empty or the server cannot take more
    /// now (then the reason). The spool is locked only to take and remove a request, never while
    /// one is sent, so capture never waits for the network. Refused requests are set aside (see
    /// [`Spool::reject`]) and logged.
    pub fn drain(&self, spool: &Mutex<Spool>) -> Result<Result<usize, String>, SpoolError> {
        let lock = || spool.lock().unwrap_or_else(|e| e.into_inner());
        let mut sent = 0;
        loop {
            let Some(entry) = lock().oldest()? else { return Ok(Ok(sent)) };
            match self.send(&entry.request) {
                Outcome::Acked => {
                    lock().remove(&entry)?;
                    sent += 1;
                }
                Outcome::Retry(why) => return Ok(Err(why)),
                Outcome::Refused { status, detail } => {
                    let to = lock().reject(&entry)?;
                    tracing::error!(
                        "{} {}: the server refused it ({status}: {detail}); kept, sealed, as {}",
                        entry.request.header.method,
                        entry.request.header.path,
                        to.display()
                    );
                }
            }
        }
    }
}

fn detail(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["detail"].as_str().map(str::to_owned))
        .unwrap_or_else(|| body.chars().take(300).collect())
}
