//! The command line as a client of a server (`--server URL --token T`): `sessions`, `replay`,
//! `export`, `audit` and `shred` through the HTTP API, printing what the local commands print.
//! The server holds the store and decides; a refusal comes back as its problem details.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use tracevault_replay::Policy;

use super::{ExportArgs, ReplayArgs, ReplayFormat};

pub struct Remote {
    url: String,
    auth: String,
    agent: ureq::Agent,
}

/// A query string value, percent-encoded.
fn enc(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Remote {
    pub fn new(url: &str, token: &str, ca_cert: Option<&std::path::Path>) -> Result<Remote> {
        let agent =
            tracevault::load::agent(Duration::from_secs(3600), ca_cert).map_err(anyhow::Error::msg)?;
        Ok(Remote { url: url.trim_end_matches('/').to_owned(), auth: format!("Bearer {token}"), agent })
    }

    /// The body of a successful answer; a problem's detail as the error otherwise.
    fn answer(
        &self,
        what: &str,
        result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Vec<u8>> {
        let mut response = result.with_context(|| format!("{what}: reaching {}", self.url))?;
        let status = response.status();
        let body = response
            .body_mut()
            .with_config()
            .limit(u64::MAX)
            .read_to_vec()
            .with_context(|| format!("{what}: reading the answer"))?;
        if status.is_success() {
            return Ok(body);
        }
        let detail = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v["detail"].as_str().map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        bail!("{what}: the server answered {status}: {detail}")
    }

    fn get(&self, what: &str, path: &str) -> Result<Vec<u8>> {
        let url = format!("{}{path}", self.url);
        self.answer(what, self.agent.get(&url).header("authorization", &self.auth).call())
    }

    fn post(&self, what: &str, path: &str, body: &Value) -> Result<(Vec<u8>, ureq::http::HeaderMap)> {
        let url = format!("{}{path}", self.url);
        let mut response = self
            .agent
            .post(&url)
            .header("authorization", &self.auth)
            .send_json(body)
            .with_context(|| format!("{what}: reaching {}", self.url))?;
        let headers = response.headers().clone();
        let status = response.status();
        let bytes = response.body_mut().with_config().limit(u64::MAX).read_to_vec()?;
        if !status.is_success() {
            let detail = serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|v| v["detail"].as_str().map(str::to_owned))
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
            bail!("{what}: the server answered {status}: {detail}");
        }
        Ok((bytes, headers))
    }

    pub fn sessions(&self, user: Option<&str>, json: bool) -> Result<ExitCode> {
        let path = match user {
            Some(u) => format!("/v1/sessions?user={}", enc(u)),
            None => "/v1/sessions".to_owned(),
        };
        let rows: Vec<Value> = serde_json::from_slice(&self.get("listing sessions", &path)?)?;
        let mut out = std::io::stdout().lock();
        if json {
            writeln!(out, "{}", Value::Array(rows))?;
            return Ok(ExitCode::SUCCESS);
        }
        if rows.is_empty() {
            writeln!(out, "(no sessions{})", user.map(|u| format!(" for user {u:?}")).unwrap_or_default())?;
            return Ok(ExitCode::SUCCESS);
        }
        let mut table = super::table(
            &["SESSION", "USER", "DEVICE", "STARTED", "DURATION", "EVENTS", "BYTES"],
            &[4, 5, 6],
        );
        let text = |v: &Value| v.as_str().map_or_else(|| "-".to_owned(), str::to_owned);
        for r in &rows {
            table.add_row(vec![
                text(&r["session"]),
                text(&r["user"]),
                text(&r["device"]),
                text(&r["started_at"]),
                format!("{:.1}s", r["duration_us"].as_u64().unwrap_or(0) as f64 / 1e6),
                r["events"].to_string(),
                r["bytes"].to_string(),
            ]);
        }
        writeln!(out, "{}", table.trim_fmt())?;
        Ok(ExitCode::SUCCESS)
    }

    pub fn replay(&self, args: ReplayArgs<'_>) -> Result<ExitCode> {
        if args.purpose.trim().is_empty() {
            bail!("--purpose must say why this session is read (it is recorded in the access audit log)");
        }
        let mut path = format!("/v1/sessions/{}/replay?purpose={}", enc(args.session), enc(args.purpose));
        if let Some(t) = args.ticket {
            path.push_str(&format!("&ticket={}", enc(t)));
        }
        if let Some(f) = args.from {
            path.push_str(&format!("&from={f}"));
        }
        if let Some(t) = args.to {
            path.push_str(&format!("&to={t}"));
        }
        if args.raw {
            path.push_str("&raw=true");
        } else {
            path.push_str(if args.format == ReplayFormat::Jsonl { "&format=jsonl" } else { "&format=text" });
        }
        let body = self.get(&format!("replaying session {}", args.session), &path)?;
        std::io::stdout().lock().write_all(&body)?;
        Ok(ExitCode::SUCCESS)
    }

    pub fn export(&self, args: ExportArgs) -> Result<ExitCode> {
        if args.user_key.is_some() {
            bail!(
                "--user-key is for local exports: through a server, every export hashes ids with a key of its own"
            );
        }
        let request = json!({
            "format": args.format.name(),
            "redaction": args.policy.name(),
            "sessions": args.sessions,
            "user": args.user,
            "purpose": args.purpose,
            "ticket": args.ticket,
        });
        if args.policy == Policy::None && args.purpose.as_deref().is_none_or(|p| p.trim().is_empty()) {
            bail!("an export without redaction (--redaction none) is an auditor's: say why with --purpose");
        }
        let started = std::time::Instant::now();
        let (bytes, headers) = self.post("exporting", "/v1/exports", &request)?;
        let file = args.out.join(args.format.file_name());
        let dir = file.parent().unwrap_or(&args.out);
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::write(&file, &bytes).with_context(|| format!("writing {}", file.display()))?;
        let number = |name: &str| {
            headers.get(name).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        };
        let mut out = std::io::stdout().lock();
        if args.json {
            writeln!(
                out,
                "{}",
                json!({
                    "out": args.out.display().to_string(), "format": args.format.name(), "redaction": args.policy.name(),
                    "sessions": number("tracevault-sessions"), "events": number("tracevault-events"),
                    "episodes": number("tracevault-episodes"), "steps": number("tracevault-steps"),
                    "skipped_sessions": number("tracevault-skipped-sessions"), "files": [file.display().to_string()],
                })
            )?;
        } else {
            writeln!(
                out,
                "exported {} sessions ({} events) as {} steps in {} episodes to {} ({}, redaction {}) in {:.2} s",
                number("tracevault-sessions"),
                number("tracevault-events"),
                number("tracevault-steps"),
                number("tracevault-episodes"),
                file.display(),
                args.format.name(),
                args.policy.name(),
                started.elapsed().as_secs_f64()
            )?;
        }
        Ok(ExitCode::SUCCESS)
    }

    pub fn audit(&self, json: bool) -> Result<ExitCode> {
        let body: Value = serde_json::from_slice(&self.get("reading the audit log", "/v1/audit")?)?;
        let mut out = std::io::stdout().lock();
        let entries = body["entries"].as_array().cloned().unwrap_or_default();
        if json {
            for e in &entries {
                writeln!(out, "{e}")?;
            }
        } else {
            let mut table = super::table(
                &["SEQ", "ACTOR", "ROLE", "ACTION", "SESSIONS / KEYS", "PURPOSE", "DECISION"],
                &[0],
            );
            for e in &entries {
                let sessions: Vec<String> = e["sessions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect();
                let what =
                    if sessions.is_empty() { format!("keys {}", e["keys"]) } else { sessions.join(",") };
                let decision = match e["decision"]["decision"].as_str() {
                    Some("allowed") => "allowed".to_owned(),
                    _ => format!("denied: {}", e["decision"]["reason"].as_str().unwrap_or("?")),
                };
                table.add_row(vec![
                    e["seq"].to_string(),
                    e["actor"].as_str().unwrap_or("?").to_owned(),
                    e["role"].as_str().unwrap_or("?").to_owned(),
                    e["action"].as_str().unwrap_or("?").to_owned(),
                    what,
                    e["purpose"].as_str().unwrap_or("").to_owned(),
                    decision,
                ]);
            }
            writeln!(out, "{}", table.trim_fmt())?;
        }
        if !body["problem"].is_null() {
            eprintln!("warning: the audit log stops early: {}", body["problem"]);
            return Ok(ExitCode::from(1));
        }
        Ok(ExitCode::SUCCESS)
    }

    pub fn audit_verify(&self, json: bool) -> Result<ExitCode> {
        let body: Value = serde_json::from_slice(&self.get("verifying the audit log", "/v1/audit/verify")?)?;
        let ok = body["ok"].as_bool().unwrap_or(false);
        let mut out = std::io::stdout().lock();
        if json {
            writeln!(out, "{body}")?;
        } else if ok {
            writeln!(
                out,
                "audit log OK: {} entries, {} signed heads (key {})",
                body["audit_entries"],
                body["heads"],
                body["public_key"].as_str().unwrap_or("?")
            )?;
        } else {
            writeln!(out, "audit log FAILED: {}", body["first_problem"].as_str().unwrap_or("?"))?;
        }
        Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
    }

    pub fn shred(&self, user: &str, purpose: &str, ticket: Option<&str>, json: bool) -> Result<ExitCode> {
        let (bytes, _) = self.post(
            &format!("erasing {user}"),
            &format!("/v1/users/{}/shred", enc(user)),
            &json!({"purpose": purpose, "ticket": ticket}),
        )?;
        let body: Value = serde_json::from_slice(&bytes)?;
        let mut out = std::io::stdout().lock();
        if json {
            writeln!(out, "{body}")?;
        } else {
            writeln!(
                out,
                "erased {user}: keys {} destroyed; sessions that can never be read again: {} (audit entry {})",
                body["keys_erased"], body["sessions"], body["audit_seq"]
            )?;
        }
        Ok(ExitCode::SUCCESS)
    }
}
