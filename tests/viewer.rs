//! The auditor's viewer in a real browser: Debian's headless Chromium driven through
//! chromium-driver (W3C WebDriver, spoken over HTTP here), against `tracevault serve` on a store
//! holding a real SapiMouse recording, a generated one-hour session and a session whose frame
//! is altered on disk while the server runs. It plays a session and checks the cursor moved
//! between two screenshots, seeks to the last minute of the hour and checks that only the blocks
//! of that minute were decoded (the server's metrics), shows the failed badge for the altered
//! session, refuses an ml token, shows a subject their own access history only, and runs
//! axe-core in the page. The figures (first frame, seek) are printed, never asserted.
//!
//! Needs chromium, chromium-driver and axe-core (`.ci/run` installs them). Without them the test
//! says SKIPPED loudly, and fails instead when $TRACEVAULT_REQUIRE_BROWSER is set. With
//! $TRACEVAULT_SCREENSHOTS=DIR it writes viewer.png and viewer-subject.png there (docs/).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tracevault::generate::{self, Workload};
use tracevault_codecs::{Event, EventKind, Record, SessionMeta, jsonl};

use super::cli::{temp, tracevault};
use super::service_cli::{Server, token};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// What the browser test needs, or why it cannot run.
struct Tools {
    chromium: PathBuf,
    chromedriver: PathBuf,
    axe: PathBuf,
}

fn tools() -> Result<Tools, String> {
    let path = |var: &str, default: PathBuf| std::env::var_os(var).map(PathBuf::from).unwrap_or(default);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let t = Tools {
        chromium: path("TRACEVAULT_CHROMIUM", CHROMIUM.into()),
        chromedriver: path("TRACEVAULT_CHROMEDRIVER", CHROMEDRIVER.into()),
        axe: path("TRACEVAULT_AXE", root.join("target/axe/node_modules/axe-core/axe.min.js")),
    };
    for (what, p) in [("chromium", &t.chromium), ("chromium-driver", &t.chromedriver), ("axe-core", &t.axe)] {
        if !p.exists() {
            return Err(format!("{what} not found at {}", p.display()));
        }
    }
    Ok(t)
}

/// A chromedriver process and one browser session in it.
struct Browser {
    driver: Child,
    base: String,
    agent: ureq::Agent,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Browser {
    fn start(tools: &Tools) -> Browser {
        let port = free_port();
        let driver = Command::new(&tools.chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)))
            .build()
            .into();
        let root = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = agent
                .get(format!("{root}/status"))
                .call()
                .ok()
                .and_then(|mut r| r.body_mut().read_json::<Value>().ok())
                .is_some_and(|v| v["value"]["ready"] == true);
            if ready {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not become ready on port {port}");
            std::thread::sleep(Duration::from_millis(100));
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": tools.chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1366,1250", "--hide-scrollbars"],
            },
        }}});
        let mut b = Browser { driver, base: root, agent };
        let session = b.call("POST", "/session", Some(caps));
        let id = session["sessionId"].as_str().unwrap_or_else(|| panic!("no browser session: {session}"));
        b.base = format!("{}/session/{id}", b.base);
        b
    }

    /// One WebDriver command; its `value`. A WebDriver error fails the test, with its message.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let response = match (method, body) {
            ("GET", _) => self.agent.get(&url).call(),
            ("DELETE", _) => self.agent.delete(&url).call(),
            (_, b) => self.agent.post(&url).send_json(b.unwrap_or(json!({}))),
        };
        let mut response = response.unwrap_or_else(|e| panic!("webdriver {method} {path}: {e}"));
        let status = response.status();
        let v: Value = response.body_mut().with_config().limit(u64::MAX).read_json().unwrap();
        assert!(status.is_success(), "webdriver {method} {path}: {status}: {v}");
        v["value"].clone()
    }

    fn go(&self, url: &str) {
        self.call("POST", "/url", Some(json!({"url": url})));
    }

    fn js(&self, script: &str, args: Value) -> Value {
        self.call("POST", "/execute/sync", Some(json!({"script": script, "args": args})))
    }

    /// Runs `script` with a `done` callback as its last argument; its value.
    fn js_async(&self, script: &str, args: Value) -> Value {
        self.call("POST", "/execute/async", Some(json!({"script": script, "args": args})))
    }

    fn element(&self, css: &str) -> String {
        let v = self.call("POST", "/element", Some(json!({"using": "css selector", "value": css})));
        v.as_object().and_then(|o| o.values().next()).and_then(Value::as_str).unwrap().to_owned()
    }

    fn type_into(&self, css: &str, text: &str) {
        let e = self.element(css);
        self.call("POST", &format!("/element/{e}/clear"), Some(json!({})));
        self.call("POST", &format!("/element/{e}/value"), Some(json!({"text": text})));
    }

    fn click(&self, css: &str) {
        let e = self.element(css);
        self.call("POST", &format!("/element/{e}/click"), Some(json!({})));
    }

    fn screenshot(&self) -> Vec<u8> {
        base64_decode(self.call("GET", "/screenshot", None).as_str().unwrap())
    }

    fn state(&self) -> Value {
        self.js("return window.tracevault.state();", json!([]))
    }

    fn wait_for(&self, what: &str, mut ok: impl FnMut(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let s = self.state();
            if ok(&s) {
                return s;
            }
            assert!(Instant::now() < deadline, "waited 60 s for {what}; the page's state: {s}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Connects the page with a token, a purpose and a ticket, as a person types them.
    fn connect(&self, url: &str, token: &str, purpose: &str, ticket: &str) {
        self.go(&format!("{url}/viewer"));
        self.type_into("#token", token);
        self.type_into("#purpose", purpose);
        self.type_into("#ticket", ticket);
        self.click("#connect");
    }

    /// axe-core's serious and critical violations on the page as it is.
    fn axe(&self, axe_source: &str) -> Vec<Value> {
        self.js(&format!("{axe_source}\n;return true;"), json!([]));
        let found = self.js_async(
            "const done = arguments[arguments.length - 1];
             axe.run(document, {resultTypes: ['violations']})
               .then(r => done(r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                   nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 5)}))))
               .catch(e => done([{id: 'axe-error', impact: 'critical', help: String(e)}]));",
            json!([]),
        );
        found
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| matches!(v["impact"].as_str(), Some("serious" | "critical")))
            .cloned()
            .collect()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.agent.delete(&self.base).call();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Standard base64 (WebDriver's screenshots), without a crate for one test.
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let bytes: Vec<u8> = text.bytes().filter(|c| !c.is_ascii_whitespace() && *c != b'=').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let v: Vec<u32> = chunk.iter().map(|&c| u32::from(value(c))).collect();
        let n = v.iter().enumerate().fold(0u32, |n, (i, d)| n | d << (18 - 6 * i));
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

/// The pointer position at `t` in `events`: the last pointer event at or before it.
fn pointer_at(events: &[Event], t: u64) -> Option<(i32, i32)> {
    events
        .iter()
        .take_while(|e| e.t_us <= t)
        .filter_map(|e| match e.kind {
            EventKind::Move { x, y } | EventKind::Down { x, y, .. } | EventKind::Up { x, y, .. } => {
                Some((x, y))
            }
            EventKind::Wheel { x, y, .. } => Some((x, y)),
            _ => None,
        })
        .last()
}

/// An hour of real, dense pointer input: the SapiMouse recordings one after another, again and
/// again, each copy shifted in time (a second apart).
fn real_hour(recordings: &[tracevault::sapimouse::Recording]) -> Vec<Event> {
    const HOUR_US: u64 = 3_600_000_000;
    let mut out: Vec<Event> = Vec::new();
    let mut offset = 0;
    'fill: loop {
        for r in recordings {
            let first = r.events.first().map_or(0, |e| e.t_us);
            for e in &r.events {
                let t_us = offset + e.t_us - first;
                if t_us > HOUR_US {
                    break 'fill;
                }
                out.push(Event { t_us, kind: e.kind.clone() });
            }
            offset = out.last().map_or(0, |e| e.t_us) + 1_000_000;
        }
    }
    out
}

fn write_jsonl(path: &Path, sessions: &[(SessionMeta, Vec<Event>)]) {
    let mut out = Vec::new();
    for (meta, events) in sessions {
        jsonl::write_record(&mut out, &Record::Session(meta.clone())).unwrap();
        for e in events {
            jsonl::write_record(&mut out, &Record::Event { session: meta.session.clone(), event: e.clone() })
                .unwrap();
        }
    }
    std::fs::write(path, out).unwrap();
}

fn ingest(data: &Path, file: &Path) {
    let out = tracevault(data, &["ingest", file.to_str().unwrap()], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Flips a byte inside the payload of the first block frame of segment 0 (the session ingested
/// first), in place, as an insider editing the file under a running server would.
fn alter_first_block(data: &Path) {
    use std::io::{Seek, SeekFrom, Write};
    use tracevault_core::frame::{self, FrameKind, Parsed};
    let path = data.join("segments").join(format!("{:020}.seg", 0));
    let bytes = std::fs::read(&path).unwrap();
    let mut at = tracevault_core::files::FILE_HEADER_BYTES;
    let target = loop {
        match frame::parse(&bytes[at..]) {
            Parsed::Frame(f) if f.header.kind == FrameKind::Block => {
                let payload_at = f.payload.as_ptr() as usize - bytes.as_ptr() as usize;
                break payload_at + f.payload.len() / 2;
            }
            Parsed::Frame(f) => at += f.bytes.len(),
            other => panic!("no block frame in {}: {other:?}", path.display()),
        }
    };
    let mut file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.seek(SeekFrom::Start(target as u64)).unwrap();
    file.write_all(&[bytes[target] ^ 0x5a]).unwrap();
    file.sync_all().unwrap();
}

/// An HTTP call to the server with a token: (status, body).
fn api(method: &str, url: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let auth = format!("Bearer {token}");
    let response = match (method, body) {
        ("GET", _) => agent.get(url).header("authorization", &auth).call(),
        (_, b) => agent.post(url).header("authorization", &auth).send_json(b.unwrap_or(json!({}))),
    };
    let mut response = response.unwrap();
    let status = response.status().as_u16();
    let text = response.body_mut().with_config().limit(u64::MAX).read_to_string().unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn metric(url: &str, name: &str) -> u64 {
    let text = ureq::get(format!("{url}/metrics")).call().unwrap().body_mut().read_to_string().unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no metric {name}"))
}

#[test]
fn an_auditor_replays_sessions_in_a_browser_and_a_subject_sees_who_read_theirs() {
    let tools = match tools() {
        Ok(t) => t,
        Err(why) if std::env::var_os("TRACEVAULT_REQUIRE_BROWSER").is_none() => {
            eprintln!("SKIPPED: the viewer's browser test: {why} (.ci/run installs it)");
            return;
        }
        Err(why) => panic!("the viewer's browser test cannot run: {why}"),
    };
    let axe_source = std::fs::read_to_string(&tools.axe).unwrap();
    let dir = temp("viewer");
    let data = dir.join("data");

    // The store: the session to be altered first (so its block opens segment 0), then a real
    // SapiMouse recording and a generated hour of one person's input.
    let mut generated = generate::sessions(&Workload { sessions: 2, minutes: 10.0, seed: 15 });
    let (mut desk, desk_events) = generated.remove(0);
    desk.session = "s-desk".into();
    desk.user = "u-desk".into();
    let (mut altered, mut altered_events) = generated.remove(0);
    altered.session = "s-altered".into();
    altered.user = "u-altered".into();
    altered_events.truncate(5_000);
    let mut recordings = tracevault::sapimouse::load_dir(&tracevault::sapimouse::fixtures_dir()).unwrap();
    let (mut hour, hour_events) = (recordings[0].meta.clone(), real_hour(&recordings));
    hour.session = "s-hour".into();
    hour.user = "u-hour".into();
    let real = recordings.remove(0);
    let (mut real_meta, real_events) = (real.meta, real.events);
    real_meta.user = "u-real".into();
    let real_id = real_meta.session.clone();
    write_jsonl(&dir.join("altered.jsonl"), &[(altered, altered_events)]);
    write_jsonl(
        &dir.join("rest.jsonl"),
        &[(real_meta, real_events.clone()), (hour, hour_events.clone()), (desk, desk_events.clone())],
    );
    ingest(&data, &dir.join("altered.jsonl"));
    ingest(&data, &dir.join("rest.jsonl"));

    let auditor = token(&data, &["--role", "auditor", "--name", "alice"]);
    let admin = token(&data, &["--role", "admin", "--name", "root"]);
    let ml = token(&data, &["--role", "ml", "--name", "trainer"]);
    let subject = token(&data, &["--role", "subject", "--user", "u-real"]);
    let server = Server::start(&data, "127.0.0.1:0", &[]);
    let url = server.url.clone();
    alter_first_block(&data);
    let browser = Browser::start(&tools);

    // An ml token: refused by the page and by the server.
    browser.connect(&url, &ml, "training data", "");
    browser.wait_for("the ml token refused", |s| s["phase"] == "refused");
    let alert = browser.js("return document.querySelector('[role=alert]').innerText;", json!([]));
    assert!(alert.as_str().unwrap().contains("ml"), "the refusal names the role: {alert}");
    assert_eq!(api("GET", &format!("{url}/v1/sessions"), &ml, None).0, 403);
    let (status, body) =
        api("POST", &format!("{url}/v1/views"), &ml, Some(json!({"session": real_id, "purpose": "x"})));
    assert_eq!(status, 403, "{body}");

    // The auditor plays the real recording: two screenshots, the cursor where the events put it.
    browser.connect(&url, &auditor, "viewer test", "AUD-7");
    browser.wait_for("the session list", |s| s["phase"] == "sessions");
    let opened = browser.js_async(
        "const done = arguments[arguments.length - 1];
         window.tracevault.open(arguments[0]).then(() => done('ok'), e => done(String(e)));",
        json!([real_id]),
    );
    assert_eq!(opened, "ok", "opening {real_id}");
    let s = browser.state();
    assert_eq!(s["integrity"], "verified", "{s}");
    let badge = browser.js("return document.getElementById('integrity').innerText;", json!([]));
    assert!(badge.as_str().unwrap().contains("verified"), "{badge}");
    // Played until the clock has moved a second and a half (however slowly the machine draws).
    let played = |from: u64| {
        browser.js("window.tracevault.play();", json!([]));
        browser.wait_for("playing on", |s| {
            s["t_us"].as_u64().is_some_and(|t| t >= from + 1_500_000) && !s["cursor"].is_null()
        });
        browser.js("window.tracevault.pause();", json!([]));
        browser.state()
    };
    let first = played(browser.state()["t_us"].as_u64().unwrap());
    let shot1 = browser.screenshot();
    let second = played(first["t_us"].as_u64().unwrap());
    let shot2 = browser.screenshot();
    let cursor =
        |s: &Value| (s["cursor"]["x"].as_i64().unwrap() as i32, s["cursor"]["y"].as_i64().unwrap() as i32);
    assert!(second["t_us"].as_u64() > first["t_us"].as_u64(), "playing moves time on: {first} {second}");
    assert_ne!(cursor(&first), cursor(&second), "the cursor moved between {first} and {second}");
    for s in [&first, &second] {
        let t = s["t_us"].as_u64().unwrap();
        assert_eq!(
            Some(cursor(s)),
            pointer_at(&real_events, t),
            "the cursor at {t} µs is where the events put it"
        );
    }
    assert_ne!(shot1, shot2, "the two screenshots differ");
    assert!(shot1.starts_with(b"\x89PNG"), "a PNG screenshot");
    let violations = browser.axe(&axe_source);
    assert!(violations.is_empty(), "axe-core, the player: {violations:#?}");

    // Desk work: typing, a password typed into a secure field, app changes. At a secure key the
    // key track shows it masked, as stored.
    let opened = browser.js_async(
        "const done = arguments[arguments.length - 1];
         window.tracevault.open('s-desk').then(() => done('ok'), e => done(String(e)));",
        json!([]),
    );
    assert_eq!(opened, "ok");
    let secure_at = desk_events
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::KeyDown(k) if k.secure && k.text.is_some() => Some(e.t_us),
            _ => None,
        })
        .expect("the generator types a password now and then");
    let sought = browser.js_async(
        "const done = arguments[arguments.length - 1];
         window.tracevault.seek(arguments[0]).then(() => done('ok'), e => done(String(e)));",
        json!([secure_at + 200_000]),
    );
    assert_eq!(sought, "ok");
    browser.wait_for("the desk session's timeline", |s| s["steps"].as_u64() > Some(0));
    let keys = browser.js("return document.getElementById('keys').innerText;", json!([]));
    assert!(keys.as_str().unwrap().contains('•'), "a secure key shows masked: {keys}");
    if let Some(out) = std::env::var_os("TRACEVAULT_SCREENSHOTS") {
        // Tall enough for the controls, the timeline and the first actions too.
        browser.call("POST", "/window/rect", Some(json!({"width": 1366, "height": 1900})));
        browser.js("window.scrollTo(0, 0);", json!([]));
        std::thread::sleep(Duration::from_millis(300));
        std::fs::write(Path::new(&out).join("viewer.png"), browser.screenshot()).unwrap();
        browser.call("POST", "/window/rect", Some(json!({"width": 1366, "height": 1250})));
    }

    // Keyboard: Space on the play button starts playing.
    let play = browser.element("#play");
    browser.call("POST", &format!("/element/{play}/value"), Some(json!({"text": " "})));
    browser.wait_for("Space to play", |s| s["playing"] == true);
    browser.js("window.tracevault.pause();", json!([]));

    // One audit entry for the opening, with the purpose, the ticket and the token, however many
    // blocks the page fetched since.
    let (_, entries) = api("GET", &format!("{url}/v1/audit"), &admin, None);
    let reads: Vec<&Value> = entries["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "read" && e["sessions"] == json!([real_id]))
        .collect();
    assert_eq!(reads.len(), 1, "one entry per session opened: {reads:#?}");
    assert_eq!(reads[0]["purpose"], "viewer test");
    assert_eq!(reads[0]["ticket"], "AUD-7");
    assert!(reads[0]["actor"].as_str().unwrap().contains("alice"), "{}", reads[0]);

    // The hour: the first frame, then a seek to the last minute decodes that minute's blocks only.
    let opened = browser.js_async(
        "const done = arguments[arguments.length - 1];
         window.tracevault.open('s-hour').then(() => done('ok'), e => done(String(e)));",
        json!([]),
    );
    assert_eq!(opened, "ok");
    let s = browser.wait_for("the hour's timeline", |s| s["steps"].as_u64() > Some(0));
    let blocks = s["blocks"].as_array().unwrap().clone();
    let first_frame_ms = s["firstFrameMs"].as_f64().unwrap();
    let end = blocks.iter().map(|b| b["t_max_us"].as_u64().unwrap()).max().unwrap();
    let target = end - 60_000_000;
    let decoded_before = metric(&url, "tracevault_viewer_blocks_decoded_total");
    let loaded_before: Vec<u64> =
        s["loadedBlocks"].as_array().unwrap().iter().map(|b| b.as_u64().unwrap()).collect();
    let started = Instant::now();
    let sought = browser.js_async(
        "const done = arguments[arguments.length - 1];
         window.tracevault.seek(arguments[0]).then(() => done('ok'), e => done(String(e)));",
        json!([target]),
    );
    let seek_wall_ms = started.elapsed().as_secs_f64() * 1e3;
    assert_eq!(sought, "ok");
    let s = browser.state();
    let decoded = metric(&url, "tracevault_viewer_blocks_decoded_total") - decoded_before;
    let new: Vec<u64> = s["loadedBlocks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_u64().unwrap())
        .filter(|b| !loaded_before.contains(b))
        .collect();
    assert_eq!(decoded, new.len() as u64, "the server decoded the blocks the page loaded: {new:?}");
    for b in &new {
        let span = &blocks[*b as usize];
        let (lo, hi) = (span["t_min_us"].as_u64().unwrap(), span["t_max_us"].as_u64().unwrap());
        assert!(
            hi + 3_000_000 >= target && lo <= target + 60_000_000,
            "block {b} ({lo}..{hi} µs) is not near the seek target {target} µs"
        );
    }
    // The block under the target, the one before it if the pointer's trail reaches back into it,
    // and the next one as prefetch: never the earlier ones.
    assert!(
        decoded <= 3 && (decoded as usize) < blocks.len(),
        "{decoded} of {} blocks decoded",
        blocks.len()
    );
    let t = s["t_us"].as_u64().unwrap();
    assert!(t.abs_diff(target) < 1_000_000, "the playhead is at the target: {t} vs {target}");
    assert_eq!(
        Some(cursor(&s)),
        pointer_at(&hour_events, t),
        "after the seek, the cursor is where the events put it"
    );
    eprintln!(
        "viewer figures: a one-hour session ({} events, {} blocks): first frame in {first_frame_ms:.0} ms; seek to the \
         last minute in {:.0} ms in the page ({seek_wall_ms:.0} ms through WebDriver), {decoded} blocks decoded",
        hour_events.len(),
        blocks.len(),
        s["lastSeekMs"].as_f64().unwrap_or(f64::NAN),
    );

    // The altered session: the failed badge, and nothing plays.
    let (views_before, decoded_before) = (
        metric(&url, "tracevault_viewer_views_opened_total"),
        metric(&url, "tracevault_viewer_blocks_decoded_total"),
    );
    let opened = browser.js_async(
        "const done = arguments[arguments.length - 1];
         window.tracevault.open('s-altered').then(() => done('ok'), e => done(String(e)));",
        json!([]),
    );
    assert_ne!(opened, "ok", "an altered session does not open");
    let s = browser.state();
    assert_eq!(s["integrity"], "failed", "{s}");
    assert_eq!(s["blockRequests"], 0, "no block of it was fetched: {s}");
    assert_eq!(metric(&url, "tracevault_viewer_views_opened_total"), views_before, "no view was opened");
    assert_eq!(metric(&url, "tracevault_viewer_blocks_decoded_total"), decoded_before, "nothing was decoded");
    let badge = browser.js("return document.getElementById('integrity').innerText;", json!([]));
    assert!(badge.as_str().unwrap().contains("FAILED"), "{badge}");
    let disabled = browser.js("return document.getElementById('play').disabled;", json!([]));
    assert_eq!(disabled, true, "play is disabled for a session that did not prove");

    // The subject: who read their session, and nothing of anyone else.
    browser.connect(&url, &subject, "my history", "");
    browser.wait_for("the access history", |s| s["phase"] == "history");
    let text = browser.js("return document.body.innerText;", json!([])).as_str().unwrap().to_owned();
    assert!(text.contains("viewer test") && text.contains("AUD-7") && text.contains("alice"), "{text}");
    for other in ["s-hour", "s-altered", "s-desk", "u-hour", "u-altered", "u-desk"] {
        assert!(!text.contains(other), "the subject's page shows {other}: {text}");
    }
    let violations = browser.axe(&axe_source);
    assert!(violations.is_empty(), "axe-core, the subject's view: {violations:#?}");
    if let Some(out) = std::env::var_os("TRACEVAULT_SCREENSHOTS") {
        std::fs::write(Path::new(&out).join("viewer-subject.png"), browser.screenshot()).unwrap();
    }
    let (status, history) = api("GET", &format!("{url}/v1/me/access"), &subject, None);
    assert_eq!(status, 200, "{history}");
    assert_eq!(history["sessions"], json!([real_id]));
    assert!(
        history["entries"].as_array().unwrap().iter().all(|e| e["sessions"] == json!([real_id])),
        "{history}"
    );
    assert_eq!(api("GET", &format!("{url}/v1/me/access?user=u-hour"), &subject, None).0, 403);
    assert_eq!(api("GET", &format!("{url}/v1/sessions"), &subject, None).0, 403);
    let (status, _) =
        api("POST", &format!("{url}/v1/views"), &subject, Some(json!({"session": real_id, "purpose": "x"})));
    assert_eq!(status, 403);

    drop(browser);
    server.kill();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn demo_serve_leaves_the_viewer_running_with_an_auditor_and_a_subject_token() {
    use std::io::{BufRead, BufReader};
    let dir = temp("demo-serve");
    let out = dir.join("out");
    let mut child = Command::new(env!("CARGO_BIN_EXE_tracevault"))
        .args([
            "demo",
            "--serve",
            "--listen",
            "127.0.0.1:0",
            "--sessions",
            "2",
            "--minutes",
            "0.5",
            "--no-real",
            "--json",
        ])
        .arg("--out")
        .arg(&out)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let summary: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(summary["verify"], "ok", "{summary}");
    let serving: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    let viewer = serving["viewer"].as_str().unwrap();
    assert!(viewer.starts_with("http://127.0.0.1:") && viewer.ends_with("/viewer"), "{serving}");
    let base = viewer.trim_end_matches("/viewer");
    let page = ureq::get(viewer).call().unwrap().body_mut().read_to_string().unwrap();
    assert!(page.contains("/viewer/app.js"));
    let (status, me) =
        api("GET", &format!("{base}/v1/whoami"), serving["auditor_token"].as_str().unwrap(), None);
    assert_eq!((status, me["role"].clone()), (200, json!("auditor")));
    let (status, sessions) =
        api("GET", &format!("{base}/v1/sessions"), serving["auditor_token"].as_str().unwrap(), None);
    assert_eq!((status, sessions.as_array().map(Vec::len)), (200, Some(2)), "{sessions}");
    let (status, history) =
        api("GET", &format!("{base}/v1/me/access"), serving["subject_token"].as_str().unwrap(), None);
    assert_eq!((status, history["user"].clone()), (200, serving["subject"].clone()), "{history}");
    // Ctrl-C drains and closes the store.
    assert!(Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap().success());
    assert!(child.wait().unwrap().success());
    std::fs::remove_dir_all(&dir).unwrap();
}
