//! The service end to end with the built binary: `tracevault serve` killed with -9 under load
//! from `tracevault load` and restarted (every acknowledged batch present exactly once, retries
//! with the same Idempotency-Key not stored twice); the CLI through `--server` while the server
//! holds the store; SIGTERM drains and signs; TLS with a real certificate; plain HTTP off
//! loopback refused.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use tracevault::load::{event, seed_of};
use tracevault_codecs::{Record, jsonl};

use super::cli::{temp, tracevault};

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

pub(super) fn token(data: &Path, args: &[&str]) -> String {
    let mut all = vec!["token", "create", "--json"];
    all.extend_from_slice(args);
    let out = tracevault(data, &all, None);
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["token"].as_str().unwrap().to_owned()
}

/// A `tracevault serve` process; killed when dropped.
pub(super) struct Server {
    child: Child,
    pub(super) url: String,
}

fn command(data: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tracevault"));
    cmd.env("TRACEVAULT_KEY_DIR", data.parent().unwrap().join("keys"))
        .env_remove("TRACEVAULT_MASTER_KEY")
        .env_remove("TRACEVAULT_SIGNING_KEY")
        .env_remove("TRACEVAULT_SERVER")
        .env_remove("TRACEVAULT_TOKEN")
        .env_remove("TRACEVAULT_CA_CERT")
        .arg("--data")
        .arg(data);
    cmd
}

impl Server {
    /// Starts a server on `listen`; retries while the port is still held by a killed one.
    pub(super) fn start(data: &Path, listen: &str, extra: &[&str]) -> Server {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mut child = command(data)
                .args(["serve", "--listen", listen])
                .args(extra)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let mut line = String::new();
            BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
            if let Some(rest) = line.strip_prefix("tracevault serving ") {
                let url = rest.split_whitespace().next().unwrap().to_owned();
                return Server { child, url };
            }
            let out = child.wait_with_output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr).into_owned();
            assert!(
                Instant::now() < deadline && (err.contains("in use") || err.contains("another process")),
                "the server did not start: {line}{err}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub(super) fn port(&self) -> &str {
        self.url.rsplit(':').next().unwrap()
    }

    pub(super) fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, then the exit status and what it said on stderr.
    fn terminate(mut self) -> (std::process::ExitStatus, String) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let mut err = String::new();
        use std::io::Read;
        self.child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        let status = self.child.wait().unwrap();
        (status, err)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The events a session holds, read back through the local CLI.
pub(super) fn stored_events(data: &Path, session: &str) -> Vec<tracevault_codecs::Event> {
    let out = tracevault(data, &["replay", session, "--purpose", "check the kill test", "--raw"], None);
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| match jsonl::parse_line(l).unwrap() {
            Record::Event { event, .. } => Some(event),
            Record::Session(_) => None,
        })
        .collect()
}

#[test]
fn a_server_killed_under_load_keeps_every_acknowledged_batch_exactly_once() {
    let dir = temp("service-kill");
    let data = dir.join("data");
    let recorder = token(&data, &["--role", "recorder", "--device", "load"]);
    let auditor = token(&data, &["--role", "auditor", "--name", "ada"]);
    let admin = token(&data, &["--role", "admin", "--name", "root"]);
    let server = Server::start(&data, "127.0.0.1:0", &["--checkpoint-every", "1"]);
    let (url, port) = (server.url.clone(), server.port().to_owned());
    let acks = dir.join("acks.txt");
    let load = Command::new(env!("CARGO_BIN_EXE_tracevault"))
        .args(["load", "--url", &url, "--token", &recorder, "--recorders", "8", "--batch", "200"])
        .args([
            "--seconds",
            "6",
            "--device",
            "load",
            "--prefix",
            "kill-",
            "--session-batches",
            "40",
            "--grace",
            "60",
            "--json",
            "--acks",
        ])
        .arg(&acks)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Killed twice mid-load, restarted on the same port each time.
    let mut server = Some(server);
    for _ in 0..2 {
        std::thread::sleep(Duration::from_millis(1500));
        server.take().unwrap().kill();
        std::thread::sleep(Duration::from_millis(200));
        server = Some(Server::start(&data, &format!("127.0.0.1:{port}"), &["--checkpoint-every", "1"]));
    }
    let out = load.wait_with_output().unwrap();
    assert!(out.status.success(), "the load had errors: {}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["events"].as_u64().unwrap() > 0, "{report}");
    let server = server.unwrap();

    // While the server holds the store, the local CLI is refused, and works through --server.
    let local = tracevault(&data, &["sessions"], None);
    assert!(!local.status.success() && text(&local).contains("another process"), "{}", text(&local));
    let remote = |token: &str, args: &[&str]| {
        let mut all = vec!["--server", &url, "--token", token];
        all.extend_from_slice(args);
        tracevault(&data, &all, None)
    };
    let listed = remote(&auditor, &["sessions", "--json"]);
    assert!(listed.status.success(), "{}", text(&listed));
    let sessions: Vec<serde_json::Value> = serde_json::from_slice(&listed.stdout).unwrap();
    assert!(!sessions.is_empty());
    let first = sessions[0]["session"].as_str().unwrap().to_owned();
    let replayed = remote(&auditor, &["replay", &first, "--purpose", "check under load"]);
    assert!(replayed.status.success() && text(&replayed).contains("integrity:"), "{}", text(&replayed));
    let denied = remote(&recorder, &["replay", &first, "--purpose", "curious", "--raw"]);
    assert!(!denied.status.success() && text(&denied).contains("403"), "{}", text(&denied));
    let audit = remote(&admin, &["audit", "--json"]);
    assert!(audit.status.success() && text(&audit).contains("ada (token "), "{}", text(&audit));
    let verified = remote(&admin, &["audit", "verify"]);
    assert!(verified.status.success(), "{}", text(&verified));

    let (status, err) = server.terminate();
    assert!(status.success() && err.contains("drained"), "{err}");

    // Every acknowledged batch, exactly once, in order: each session holds exactly the events
    // its acknowledged batches carried (a batch stored before a kill and retried after it was
    // acknowledged as a duplicate, not stored again).
    let mut acked: std::collections::BTreeMap<String, Vec<(u64, u64)>> = Default::default();
    for line in std::fs::read_to_string(&acks).unwrap().lines() {
        let f: Vec<&str> = line.split(' ').collect();
        acked.entry(f[0].to_owned()).or_default().push((f[1].parse().unwrap(), f[2].parse().unwrap()));
    }
    assert!(acked.len() >= 8);
    let mut total = 0;
    for (session, mut batches) in acked {
        batches.sort_unstable();
        let mut next = 0;
        for (seq, n) in &batches {
            assert_eq!(*seq, next, "{session}: batches acknowledged out of order or twice: {batches:?}");
            next += n;
        }
        let stored = stored_events(&data, &session);
        assert_eq!(
            stored.len() as u64,
            next,
            "{session}: stored {} events, acknowledged {next}",
            stored.len()
        );
        let seed = seed_of(&session);
        for (i, e) in stored.iter().enumerate() {
            assert_eq!(*e, event(seed, i as u64), "{session}: event {i} is not the one sent");
        }
        total += next;
    }
    assert_eq!(total, report["events"].as_u64().unwrap());
    let verify = tracevault(&data, &["verify"], None);
    assert!(verify.status.success(), "{}", text(&verify));
}

#[test]
fn sigterm_drains_and_signs_a_checkpoint_over_everything_acknowledged() {
    let dir = temp("service-term");
    let data = dir.join("data");
    let recorder = token(&data, &["--role", "recorder", "--device", "d-1"]);
    let server = Server::start(&data, "127.0.0.1:0", &["--checkpoint-every", "3600"]);
    let out = Command::new(env!("CARGO_BIN_EXE_tracevault"))
        .args([
            "load",
            "--url",
            &server.url,
            "--token",
            &recorder,
            "--recorders",
            "2",
            "--batch",
            "100",
            "--seconds",
            "1",
            "--device",
            "d-1",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let (status, err) = server.terminate();
    assert!(status.success(), "{err}");
    assert!(err.contains("drained; the last signed checkpoint covers"), "{err}");
    let report = tracevault(&data, &["verify", "--json"], None);
    assert!(report.status.success(), "{}", text(&report));
    let report: serde_json::Value = serde_json::from_slice(&report.stdout).unwrap();
    assert_eq!(report["unsigned_frames"], 0, "{report}");
}

/// A test CA and a server certificate it signed (for localhost and 127.0.0.1), made by openssl:
/// (CA certificate, server certificate, server key).
fn openssl_cert(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let (ca, ca_key) = (dir.join("ca.pem"), dir.join("ca.key"));
    let (cert, key, csr, ext) =
        (dir.join("cert.pem"), dir.join("key.pem"), dir.join("leaf.csr"), dir.join("ext.cnf"));
    std::fs::write(&ext, "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n").unwrap();
    let p = |s: &Path| s.to_str().unwrap().to_owned();
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let steps: Vec<Vec<String>> = vec![
        [
            &["req", "-x509"][..],
            &ec,
            &["-days", "1", "-subj", "/CN=tracevault test CA", "-keyout", &p(&ca_key), "-out", &p(&ca)],
        ]
        .concat()
        .iter()
        .map(|s| s.to_string())
        .collect(),
        [&["req"][..], &ec, &["-subj", "/CN=localhost", "-keyout", &p(&key), "-out", &p(&csr)]]
            .concat()
            .iter()
            .map(|s| s.to_string())
            .collect(),
        [
            "x509",
            "-req",
            "-in",
            &p(&csr),
            "-CA",
            &p(&ca),
            "-CAkey",
            &p(&ca_key),
            "-CAcreateserial",
            "-days",
            "1",
            "-out",
            &p(&cert),
            "-extfile",
            &p(&ext),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    ];
    for args in steps {
        let out = Command::new("openssl")
            .args(&args)
            .output()
            .expect("openssl is needed for the TLS test (.ci/run installs it)");
        assert!(out.status.success(), "openssl {args:?}: {}", text(&out));
    }
    (ca, cert, key)
}

#[test]
fn tls_with_a_real_certificate_and_no_plain_http_off_loopback() {
    let dir = temp("service-tls");
    let data = dir.join("data");
    let refused = command(&data).args(["serve", "--listen", "0.0.0.0:0"]).output().unwrap();
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(
        text(&refused).contains("--tls-cert") && text(&refused).contains("--insecure-http"),
        "{}",
        text(&refused)
    );
    let (ca, cert, key) = openssl_cert(&dir);
    let server = Server::start(
        &data,
        "127.0.0.1:0",
        &["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()],
    );
    assert!(server.url.starts_with("https://"), "{}", server.url);
    let curl = |url: &str, extra: &[&str]| {
        Command::new("curl")
            .args(["-sS", "--max-time", "10"])
            .args(extra)
            .arg(url)
            .output()
            .expect("curl is needed (.ci/run installs it)")
    };
    let ok = curl(&format!("{}/healthz", server.url), &["--cacert", ca.to_str().unwrap()]);
    assert!(ok.status.success() && String::from_utf8_lossy(&ok.stdout).trim() == "ok", "{}", text(&ok));
    let unauthorized = curl(
        &format!("{}/v1/sessions", server.url),
        &["--cacert", ca.to_str().unwrap(), "-o", "/dev/null", "-w", "%{http_code}"],
    );
    assert_eq!(String::from_utf8_lossy(&unauthorized.stdout), "401");
    // Plain HTTP to the TLS port gets no answer, and an unknown certificate is refused.
    let plain = curl(&format!("http://127.0.0.1:{}/healthz", server.port()), &[]);
    assert!(
        !plain.status.success() || !String::from_utf8_lossy(&plain.stdout).contains("ok"),
        "{}",
        text(&plain)
    );
    let untrusted = curl(&format!("{}/healthz", server.url), &[]);
    assert!(!untrusted.status.success(), "{}", text(&untrusted));
    // The CLI as a client over HTTPS: with the CA certificate, and refused without it.
    let auditor = token(&data, &["--role", "auditor", "--name", "ada"]);
    let with_ca = tracevault(
        &data,
        &[
            "--server",
            &server.url,
            "--token",
            &auditor,
            "--ca-cert",
            ca.to_str().unwrap(),
            "sessions",
            "--json",
        ],
        None,
    );
    assert!(
        with_ca.status.success() && String::from_utf8_lossy(&with_ca.stdout).trim() == "[]",
        "{}",
        text(&with_ca)
    );
    let without = tracevault(&data, &["--server", &server.url, "--token", &auditor, "sessions"], None);
    assert!(!without.status.success(), "{}", text(&without));
    // A key that does not parse is an error naming the file.
    std::fs::write(dir.join("bad.pem"), "not a key").unwrap();
    let bad = command(&data)
        .args(["serve", "--listen", "127.0.0.1:0", "--tls-cert", cert.to_str().unwrap(), "--tls-key"])
        .arg(dir.join("bad.pem"))
        .output()
        .unwrap();
    assert!(!bad.status.success() && text(&bad).contains("bad.pem"), "{}", text(&bad));
}
