//! A server on a temporary store, with a token per role, and a small HTTP client.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tracevault_core::storage::{FaultStorage, Storage};
use tracevault_core::{KeySource, Log, LogOptions, Role, Secret};
use tracevault_service::tokens::{self, NewToken};
use tracevault_service::{Limits, Options, Running, Service};

pub struct Harness {
    pub dir: PathBuf,
    pub running: Option<Running>,
    pub base: String,
    /// Token text by name: recorder-d1, recorder-d2, ml, auditor, admin, expired, revoked.
    pub tokens: HashMap<&'static str, String>,
    /// Token ids by name.
    pub ids: HashMap<&'static str, String>,
    pub agent: ureq::Agent,
    pub storage: Option<FaultStorage>,
}

pub fn keys() -> KeySource {
    KeySource::given(Secret::from_bytes([0x11; 32]), Secret::from_bytes([0x22; 32]))
}

pub struct Answer {
    pub status: u16,
    pub body: String,
    pub headers: ureq::http::HeaderMap,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

impl Harness {
    /// A server over a store on disk (`fault`: on fault-injecting storage, kept in `storage`).
    pub fn start(name: &str, limits: Limits, fault: bool) -> Harness {
        let dir = std::env::temp_dir().join(format!("tv-service-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut tokens = HashMap::new();
        let mut ids = HashMap::new();
        for (name, role, device, user) in [
            ("recorder-d1", Role::Recorder, Some("d-1"), None),
            ("recorder-d2", Role::Recorder, Some("d-2"), None),
            ("ml", Role::Ml, None, None),
            ("auditor", Role::Auditor, None, None),
            ("auditor-2", Role::Auditor, None, None),
            ("admin", Role::Admin, None, None),
            ("subject-u1", Role::Subject, None, Some("u-1")),
            ("expired", Role::Auditor, None, None),
            ("revoked", Role::Auditor, None, None),
        ] {
            let new = NewToken {
                role,
                name: name.into(),
                device: device.map(str::to_owned),
                user: user.map(str::to_owned),
                expires_in_s: None,
            };
            let (text, record) = tokens::create(&dir, new).unwrap();
            tokens.insert(name, text);
            ids.insert(name, record.id);
        }
        tokens::revoke(&dir, "revoked").unwrap();
        // An expired token: its expiry moved into the past in the file.
        let path = dir.join(tokens::TOKENS_FILE);
        let mut file: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for t in file["tokens"].as_array_mut().unwrap() {
            if t["name"] == "expired" {
                t["expires_unix_s"] = serde_json::json!(1);
            }
        }
        std::fs::write(&path, serde_json::to_vec(&file).unwrap()).unwrap();

        let (log, storage) = if fault {
            let storage = FaultStorage::new();
            let db = redb::Database::builder()
                .create_with_backend(redb::backends::InMemoryBackend::new())
                .unwrap();
            let options = LogOptions { keys: Some(keys()), ..LogOptions::default() };
            (
                Log::open_with(Arc::new(storage.clone()) as Arc<dyn Storage>, db, options).unwrap(),
                Some(storage),
            )
        } else {
            let options = LogOptions { keys: Some(keys()), ..LogOptions::default() };
            (Log::open(&dir.join("data"), options).unwrap(), None)
        };
        let options = Options { limits, threads: 2, export_dir: Some(dir.clone()), ..Options::default() };
        let service = Service::new(log, &dir, options).unwrap();
        let running = tracevault_service::start(service, "127.0.0.1:0", None, 2).unwrap();
        let base = format!("http://{}", running.addr);
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        Harness { dir, running: Some(running), base, tokens, ids, agent, storage }
    }

    pub fn token(&self, who: &str) -> Option<String> {
        match who {
            "none" => None,
            "garbled" => Some("tvk_0123456789abcdef_not-a-secret".into()),
            "unknown" => Some(format!("tvk_{}_{}", "ab".repeat(8), "cd".repeat(32))),
            name => Some(self.tokens[name].clone()),
        }
    }

    /// Sends a request as `who` (a token name, or none, garbled, unknown).
    pub fn call(
        &self,
        who: &str,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Answer {
        let url = format!("{}{path}", self.base);
        let token = self.token(who);
        let response = match method {
            "DELETE" => {
                let mut r = self.agent.delete(&url);
                if let Some(t) = &token {
                    r = r.header("authorization", &format!("Bearer {t}"));
                }
                r.call()
            }
            "GET" => {
                let mut r = self.agent.get(&url);
                if let Some(t) = &token {
                    r = r.header("authorization", &format!("Bearer {t}"));
                }
                for (k, v) in headers {
                    r = r.header(*k, *v);
                }
                r.call()
            }
            _ => {
                let mut r = self.agent.post(&url);
                if let Some(t) = &token {
                    r = r.header("authorization", &format!("Bearer {t}"));
                }
                for (k, v) in headers {
                    r = r.header(*k, *v);
                }
                match body {
                    Some(b) => r.send(b),
                    None => r.send_empty(),
                }
            }
        };
        let mut response = response.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.body_mut().with_config().limit(1 << 30).read_to_vec().unwrap();
        Answer { status, body: String::from_utf8_lossy(&body).into_owned(), headers }
    }

    pub fn post_json(&self, who: &str, path: &str, body: &serde_json::Value) -> Answer {
        self.call(
            who,
            "POST",
            path,
            &[("content-type", "application/json")],
            Some(body.to_string().as_bytes()),
        )
    }

    /// Stops the server gracefully and hands back the log.
    pub fn stop(&mut self) -> Log {
        self.running.take().expect("running").stop().unwrap()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        drop(self.running.take());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
