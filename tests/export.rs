//! Replay and export over a real log: SapiMouse recordings plus typed sessions with canaries.
//! The output does not depend on the thread count; an independent reader (pyarrow) reads the
//! Parquet file; no canary survives the default redaction and all survive `none`; one export is
//! one audit entry.

use std::path::{Path, PathBuf};
use std::process::Command;

use tracevault::sapimouse;
use tracevault_codecs::{Event, EventKind, Key, Screen, SessionMeta};
use tracevault_core::audit::{self, Action as AuditAction};
use tracevault_core::storage::FsStorage;
use tracevault_core::{Access, KeySource, Log, LogOptions, Role, Secret};
use tracevault_replay::export::{ExportOptions, Format};
use tracevault_replay::{Engine, Policy, ReduceConfig, Selection};

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tracevault-export-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn options() -> LogOptions {
    LogOptions {
        keys: Some(KeySource::given(Secret::from_bytes([7; 32]), Secret::from_bytes([8; 32]))),
        // Small blocks, so sessions span many blocks and replay decodes them in parallel.
        block_events_max: 512,
        ..LogOptions::default()
    }
}

/// PII someone might type, one of each kind the detectors know.
const CANARIES: [&str; 7] = [
    "ada.lovelace@example.com",
    "+44 20 7946 0958",
    "4111 1111 1111 1111",
    "GB82 WEST 1234 5698 7654 32",
    "192.168.10.42",
    "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
];

/// Key events typing `text`, one key per character, 90 ms apart.
fn typing(t0: u64, text: &str) -> Vec<Event> {
    let mut out = Vec::new();
    let mut t = t0;
    for c in text.chars() {
        let key = Key { code: "KeyX".into(), text: Some(c.to_string()), secure: false };
        t += 90_000;
        out.push(Event { t_us: t, kind: EventKind::KeyDown(key.clone()) });
        out.push(Event { t_us: t + 40_000, kind: EventKind::KeyUp(Key { text: None, ..key }) });
    }
    out
}

/// A chat session in which every canary is typed, then a password manager with a secret typed.
fn chat_session() -> Vec<Event> {
    let mut events = vec![Event {
        t_us: 0,
        kind: EventKind::Focus { app: "chat".into(), title: Some("DM with ada.lovelace@example.com".into()) },
    }];
    let mut t = 10_000;
    for canary in CANARIES {
        events.extend(typing(t, &format!("my details: {canary}")));
        t = events.last().unwrap().t_us + 2_000_000;
        events.push(Event {
            t_us: t,
            kind: EventKind::Down { button: tracevault_codecs::Button::Left, x: 5, y: 5 },
        });
        events.push(Event {
            t_us: t + 50_000,
            kind: EventKind::Up { button: tracevault_codecs::Button::Left, x: 5, y: 5 },
        });
        t += 100_000;
    }
    // A name after a form label, and a street address.
    for line in ["Name: Grace Hopper", "ship to 221B Baker Street"] {
        events.extend(typing(t, line));
        t = events.last().unwrap().t_us + 2_000_000;
        events.push(Event {
            t_us: t,
            kind: EventKind::KeyDown(Key { code: "Tab".into(), text: None, secure: false }),
        });
        t += 100_000;
    }
    // A password manager's web vault in a browser: known by its window title.
    events.push(Event {
        t_us: t,
        kind: EventKind::Focus {
            app: "firefox".into(),
            title: Some("Bitwarden Web Vault - Mozilla Firefox".into()),
        },
    });
    events.extend(typing(t + 10_000, "web-vault-CANARY"));
    t = events.last().unwrap().t_us + 100_000;
    events.push(Event {
        t_us: t + 10_000,
        kind: EventKind::Focus { app: "1Password".into(), title: Some("Vault".into()) },
    });
    events.extend(typing(t + 20_000, "vault-note-CANARY-in-sensitive-app"));
    events
}

/// A session from a recorder that gives key codes only, on a German keyboard: typing, hotkeys,
/// keys PyAutoGUI has and keys it has not, buttons it has not, partial wheel notches, Ctrl+wheel,
/// a drag, and a button held while another clicks.
fn mixed_session() -> Vec<Event> {
    use tracevault_codecs::Button;
    let mut events = Vec::new();
    let mut t = 0;
    let mut at = |dt: u64, kind: EventKind| {
        t += dt;
        events.push(Event { t_us: t, kind });
    };
    let key = |code: &str| Key { code: code.into(), text: None, secure: false };
    let press = |at: &mut dyn FnMut(u64, EventKind), code: &str| {
        at(90_000, EventKind::KeyDown(key(code)));
        at(40_000, EventKind::KeyUp(key(code)));
    };
    at(0, EventKind::Focus { app: "editor".into(), title: Some("notes.txt".into()) });
    at(10_000, EventKind::KeyDown(key("ShiftLeft")));
    press(&mut at, "KeyH");
    at(10_000, EventKind::KeyUp(key("ShiftLeft")));
    for code in ["KeyA", "KeyL", "KeyL", "Semicolon", "Space", "KeyY", "Digit1", "IntlBackslash", "Enter"] {
        press(&mut at, code);
    }
    at(200_000, EventKind::KeyDown(key("ControlLeft")));
    for code in ["KeyY", "KeyS", "Numpad5", "Minus"] {
        press(&mut at, code);
    }
    at(10_000, EventKind::KeyUp(key("ControlLeft")));
    for code in ["MediaPlayPause", "F13", "NumpadAdd", "Lang3", "ArrowDown"] {
        press(&mut at, code);
    }
    // PageDown held until it repeats.
    for dt in [200_000, 500_000, 33_000, 33_000] {
        at(dt, EventKind::KeyDown(key("PageDown")));
    }
    at(20_000, EventKind::KeyUp(key("PageDown")));
    for (dx, dy) in [(0, 50), (0, 180), (0, -120), (30, 0)] {
        at(400_000, EventKind::Wheel { dx, dy, x: 300, y: 300 });
    }
    at(400_000, EventKind::KeyDown(key("ControlLeft")));
    at(50_000, EventKind::Wheel { dx: 0, dy: -120, x: 300, y: 300 });
    at(50_000, EventKind::KeyUp(key("ControlLeft")));
    for button in [Button::Back, Button::Forward, Button::Middle] {
        at(600_000, EventKind::Down { button, x: 310, y: 300 });
        at(80_000, EventKind::Up { button, x: 310, y: 300 });
    }
    at(600_000, EventKind::Down { button: Button::Left, x: 100, y: 100 });
    for i in 1..=20 {
        at(16_000, EventKind::Move { x: 100 + 10 * i, y: 100 + 3 * i });
    }
    at(16_000, EventKind::Up { button: Button::Left, x: 300, y: 160 });
    at(600_000, EventKind::Down { button: Button::Right, x: 500, y: 500 });
    at(50_000, EventKind::Move { x: 520, y: 500 });
    at(100_000, EventKind::Down { button: Button::Left, x: 520, y: 500 });
    at(80_000, EventKind::Up { button: Button::Left, x: 520, y: 500 });
    at(100_000, EventKind::Up { button: Button::Right, x: 520, y: 500 });
    at(600_000, EventKind::Down { button: Button::Other, x: 10, y: 10 });
    at(50_000, EventKind::Move { x: 300, y: 10 });
    at(50_000, EventKind::Up { button: Button::Other, x: 300, y: 10 });
    at(2_000_000, EventKind::Text { text: "naïve café".into() });
    events
}

fn build(data: &Path) -> (Log, u64) {
    let log = Log::open(data, options()).unwrap();
    let recordings = sapimouse::load_dir(&sapimouse::fixtures_dir()).unwrap();
    let mut events = 0;
    for r in &recordings {
        log.create_session(r.meta.clone()).unwrap();
        for batch in r.events.chunks(1000) {
            log.append(&r.meta.session, batch).unwrap();
        }
        events += r.events.len() as u64;
    }
    let chat = chat_session();
    log.create_session(SessionMeta {
        session: "chat-1".into(),
        user: "typist".into(),
        device: Some("laptop".into()),
        screen: Some(Screen { w: 1920, h: 1080 }),
        started_at: Some("2026-11-27T09:00:00Z".into()),
        layout: None,
        labels: Default::default(),
    })
    .unwrap();
    log.append("chat-1", &chat).unwrap();
    events += chat.len() as u64;
    let mixed = mixed_session();
    log.create_session(SessionMeta {
        session: "mixed-1".into(),
        user: "typist".into(),
        device: Some("laptop".into()),
        screen: Some(Screen { w: 1280, h: 800 }),
        started_at: Some("2026-11-28T14:30:00.250Z".into()),
        layout: Some("de".into()),
        labels: [("task".to_owned(), "write notes for ada.lovelace@example.com".to_owned())].into(),
    })
    .unwrap();
    log.append("mixed-1", &mixed).unwrap();
    log.seal_session("mixed-1").unwrap();
    events += mixed.len() as u64;
    // Seal most sessions; one keeps an open block, read from memory.
    for r in recordings.iter().skip(1) {
        log.seal_session(&r.meta.session).unwrap();
    }
    log.seal_session("chat-1").unwrap();
    log.checkpoint().unwrap();
    (log, events)
}

fn run_export(
    log: &Log,
    threads: usize,
    out: &Path,
    format: Format,
    policy: Policy,
) -> tracevault_replay::ExportReport {
    let engine = Engine::new(ReduceConfig::default(), threads).unwrap();
    let role = if policy == Policy::None { Role::Auditor } else { Role::Ml };
    let access = Access::new("test", role, "export test");
    let options = ExportOptions {
        out: out.to_owned(),
        format,
        policy,
        sensitive_apps: vec!["1password".into()],
        user_key: Some([3; 32]),
    };
    tracevault_replay::export(log, &engine, &access, &Selection::default(), &options, &mut |_, _| {}).unwrap()
}

fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push((path.strip_prefix(dir).unwrap_or(&path).to_owned(), std::fs::read(&path).unwrap()));
        }
    }
    out.sort();
    out
}

#[test]
fn exports_are_byte_identical_whatever_the_thread_count_and_account_for_every_event() {
    let dir = temp("determinism");
    let (log, events) = build(&dir.join("data"));
    for format in [Format::Parquet, Format::Jsonl] {
        let one = dir.join(format!("one-{}", format.name()));
        let two = dir.join(format!("two-{}", format.name()));
        let a = run_export(&log, 1, &one, format, Policy::Default);
        let b = run_export(&log, 2, &two, format, Policy::Default);
        assert_eq!(a.pass, b.pass);
        assert_eq!(a.pass.events, events, "every event read");
        assert_eq!(a.pass.sessions, 6);
        let (fa, fb) = (files(&one), files(&two));
        assert_eq!(fa.len(), 2);
        for ((pa, ba), (pb, bb)) in fa.iter().zip(&fb) {
            assert_eq!(pa, pb);
            assert!(ba == bb, "{} differs between 1 and 2 threads", pa.display());
        }
    }
    // Lineage: the JSONL steps of each session account for every one of its events.
    let text = std::fs::read_to_string(dir.join("one-jsonl").join(Format::Jsonl.file_name())).unwrap();
    let mut per_session: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let entry = per_session.entry(v["session"].as_str().unwrap().to_owned()).or_default();
        let l = &v;
        if l["events"].as_u64().unwrap() > 0 {
            assert_eq!(l["first_event"].as_u64().unwrap(), entry.0, "{line}");
            entry.0 = l["last_event"].as_u64().unwrap() + 1;
        }
        entry.1 += l["events"].as_u64().unwrap();
    }
    // Session ids are keyed hashes in a redacted export: the same key finds them.
    let redactor = tracevault_replay::Redactor::new(Policy::Default, &[], Some([3; 32])).unwrap();
    for s in log.sessions() {
        assert_eq!(per_session[&redactor.session(&s.meta.session)].1, s.events, "session {}", s.meta.session);
    }
    drop(log);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The Python that has the export's readers (`.ci/run` makes a virtualenv with them).
fn python() -> String {
    std::env::var("TRACEVAULT_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Whether the Python has pyarrow, DuckDB, datasets and PyAutoGUI; fails when CI said it must.
fn have_readers() -> bool {
    let probe = "import importlib.util as u, sys; \
                 sys.exit(any(u.find_spec(m) is None for m in ['pyarrow', 'duckdb', 'datasets', 'pyautogui']))";
    let have = Command::new(python()).args(["-c", probe]).status().is_ok_and(|s| s.success());
    if !have {
        assert!(
            std::env::var_os("TRACEVAULT_REQUIRE_PYARROW").is_none(),
            "pyarrow, duckdb, datasets and pyautogui are required here (TRACEVAULT_REQUIRE_PYARROW is set)"
        );
        eprintln!(
            "SKIPPED: {} lacks pyarrow, duckdb, datasets or pyautogui (.ci/run installs them)",
            python()
        );
    }
    have
}

/// Both formats have one shape: every JSONL line has the schema's fields, in its order.
#[test]
fn jsonl_lines_have_the_parquet_columns_in_their_order() {
    let dir = temp("shape");
    let (log, _) = build(&dir.join("data"));
    let report = run_export(&log, 2, &dir.join("js"), Format::Jsonl, Policy::Default);
    let expected: Vec<String> =
        tracevault_replay::export::schema().fields().iter().map(|f| f.name().clone()).collect();
    let text = std::fs::read_to_string(dir.join("js").join(Format::Jsonl.file_name())).unwrap();
    let mut episodes = std::collections::BTreeSet::new();
    for line in text.lines() {
        let v: serde_json::Map<String, serde_json::Value> = serde_json::from_str(line).unwrap();
        let mut keys: Vec<String> = v.keys().cloned().collect();
        let mut want = expected.clone();
        keys.sort();
        want.sort();
        assert_eq!(keys, want, "{line}");
        // In the schema's order: each field after the one before.
        let mut from = 0;
        for name in &expected {
            let at = line[from..]
                .find(&format!("\"{name}\":"))
                .unwrap_or_else(|| panic!("{name} out of order: {line}"));
            from += at + name.len() + 3;
        }
        episodes.insert(v["episode_index"].as_u64().unwrap());
    }
    assert_eq!(text.lines().count() as u64, report.pass.steps);
    // The export-wide episode index counts every episode once, from 0, without gaps.
    assert_eq!(episodes.len() as u64, report.pass.episodes);
    assert_eq!(episodes.last().copied(), Some(report.pass.episodes - 1));
    let info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("js/meta/info.json")).unwrap()).unwrap();
    assert_eq!(info["columns"], serde_json::json!(expected));
    assert_eq!(info["file"], Format::Jsonl.file_name());
    drop(log);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// pyarrow, DuckDB and Hugging Face `datasets` load both exports (scripts/check-export), every
/// PyAutoGUI call runs against PyAutoGUI's own functions and key list, and the Parquet file holds
/// row for row what the JSONL file says.
#[test]
fn readers_load_the_export_and_every_pyautogui_call_is_valid() {
    if !have_readers() {
        return;
    }
    let dir = temp("readers");
    let (log, _) = build(&dir.join("data"));
    run_export(&log, 2, &dir.join("pq"), Format::Parquet, Policy::Default);
    run_export(&log, 2, &dir.join("js"), Format::Jsonl, Policy::Default);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/check-export");
    for out in ["pq", "js"] {
        let run = Command::new(python()).arg(&script).arg(dir.join(out)).arg("--pyautogui").output().unwrap();
        let said =
            format!("{}{}", String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
        assert!(run.status.success(), "check-export {out}:\n{said}");
        eprintln!("{said}");
    }
    let compare = r#"
import json, sys
import pyarrow.parquet as pq
rows = pq.read_table(sys.argv[1]).to_pylist()
lines = [json.loads(l) for l in open(sys.argv[2])]
assert len(rows) == len(lines), (len(rows), len(lines))
for i, (r, l) in enumerate(zip(rows, lines)):
    assert r == l, (i, {k: (r[k], l[k]) for k in r if r[k] != l.get(k)})
print(len(rows), "rows the same")
"#;
    let run = Command::new(python())
        .args(["-c", compare])
        .arg(dir.join("pq").join(Format::Parquet.file_name()))
        .arg(dir.join("js").join(Format::Jsonl.file_name()))
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    drop(log);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn no_canary_survives_the_default_redaction_and_every_one_survives_none() {
    let dir = temp("redaction");
    let (log, _) = build(&dir.join("data"));
    for format in [Format::Jsonl, Format::Parquet] {
        let redacted = dir.join(format!("default-{}", format.name()));
        run_export(&log, 2, &redacted, format, Policy::Default);
        let raw = dir.join(format!("none-{}", format.name()));
        run_export(&log, 2, &raw, format, Policy::None);
        let all = |d: &Path| files(d).into_iter().flat_map(|(_, b)| b).collect::<Vec<u8>>();
        let (a, b) = (all(&redacted), all(&raw));
        let has = |hay: &[u8], needle: &str| hay.windows(needle.len()).any(|w| w == needle.as_bytes());
        let more = [
            "vault-note-CANARY-in-sensitive-app",
            "typist",
            "chat-1",
            "Grace Hopper",
            "Baker Street",
            "web-vault-CANARY",
        ];
        for canary in CANARIES.iter().chain(more.iter()) {
            assert!(!has(&a, canary), "{canary} survived the default redaction in {}", format.name());
            // zstd compresses Parquet pages: look for the canaries in the JSONL export only.
            if format == Format::Jsonl {
                assert!(has(&b, canary), "{canary} is missing from the unredacted export");
            }
        }
        if format == Format::Jsonl {
            let text = String::from_utf8(a).unwrap();
            for placeholder in [
                "<EMAIL>",
                "<PHONE>",
                "<CARD>",
                "<IBAN>",
                "<IPV4>",
                "<API_KEY>",
                "<JWT>",
                "<NAME>",
                "<ADDRESS>",
            ] {
                assert!(text.contains(placeholder), "{placeholder} missing");
            }
            assert!(text.contains("in a sensitive app: arguments redacted"));
        }
    }
    // An ML engineer cannot export without redaction.
    let engine = Engine::new(ReduceConfig::default(), 1).unwrap();
    let options = ExportOptions {
        out: dir.join("refused"),
        format: Format::Jsonl,
        policy: Policy::None,
        sensitive_apps: vec![],
        user_key: None,
    };
    let ml = Access::new("trainer", Role::Ml, "train");
    let refused =
        tracevault_replay::export(&log, &engine, &ml, &Selection::default(), &options, &mut |_, _| {});
    assert!(refused.is_err());
    drop(engine);
    drop(log);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_export_is_one_audit_entry_naming_every_session_before_anything_is_read() {
    let dir = temp("audit");
    let data = dir.join("data");
    let (log, _) = build(&data);
    let before = audit::scan(&FsStorage::new(&data)).unwrap().entries.len();
    run_export(&log, 2, &dir.join("out"), Format::Jsonl, Policy::Default);
    let entries = audit::scan(&FsStorage::new(&data)).unwrap().entries;
    assert_eq!(entries.len(), before + 1);
    let e = entries.last().unwrap();
    assert_eq!(e.action, AuditAction::Export);
    assert_eq!(e.role, Role::Ml);
    assert_eq!(e.sessions.len(), 6);
    drop(log);
    std::fs::remove_dir_all(&dir).unwrap();
}
