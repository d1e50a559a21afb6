//! The real recorder on a real X server: Xvfb with openbox, a private D-Bus session with AT-SPI,
//! `tracevault serve`, and `tracevault record`; input driven by xdotool into zenity windows.
//! The auditor's replay must show exactly the actions made, in order; the password typed into
//! `zenity --password` must be nowhere (store, spool, recorder log, exports); the server is
//! stopped for a while during capture and every event still arrives once, in order.
//!
//! The policy file used has no secure windows at all, so the password is masked by AT-SPI
//! alone (the policy path is covered by recorder/src/mask.rs's tests).
//!
//! Needs Xvfb, xdotool, openbox, zenity, dbus-daemon and at-spi2-core (`.ci/run` installs them
//! and sets TRACEVAULT_REQUIRE_X11=1, which turns a missing tool into a failure; elsewhere the
//! test says SKIPPED).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::cli::{temp, tracevault};
use super::service_cli::{Server, token};

const TOOLS: [&str; 5] = ["Xvfb", "xdotool", "openbox", "zenity", "dbus-daemon"];
const PASSWORD: &str = "Zq7#Vx9!";

fn have(tool: &str) -> bool {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()).any(|d| d.join(tool).is_file())
}

/// A private desktop: Xvfb, a D-Bus session (AT-SPI is activated from it), openbox.
pub(super) struct Desktop {
    env: Vec<(String, String)>,
    children: Vec<Child>,
}

impl Desktop {
    /// `None` (after saying SKIPPED) when the tools are missing and not required.
    pub(super) fn start(dir: &Path) -> Option<Desktop> {
        let missing: Vec<&str> = TOOLS.iter().copied().filter(|t| !have(t)).collect();
        let atspi = Path::new("/usr/libexec/at-spi-bus-launcher").exists()
            || Path::new("/usr/lib/at-spi2-core/at-spi-bus-launcher").exists();
        if !missing.is_empty() || !atspi {
            let what = format!("missing {missing:?}{}", if atspi { "" } else { " and at-spi2-core" });
            if std::env::var_os("TRACEVAULT_REQUIRE_X11").is_some() {
                panic!("the X11 recorder test cannot run: {what} (install: see .ci/run)");
            }
            eprintln!("SKIPPED: the X11 recorder test: {what} (.ci/run installs them)");
            return None;
        }
        let run = dir.join("run");
        std::fs::create_dir_all(&run).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o700)).unwrap();
        }
        let mut desktop = Desktop {
            env: vec![
                ("XDG_RUNTIME_DIR".into(), run.display().to_string()),
                ("HOME".into(), dir.display().to_string()),
            ],
            children: Vec::new(),
        };
        // Xvfb picks a free display and writes its number to fd 1.
        let mut xvfb = Command::new("Xvfb")
            .args(["-displayfd", "1", "-screen", "0", "1280x800x24", "-nolisten", "tcp"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut number = String::new();
        BufReader::new(xvfb.stdout.take().unwrap()).read_line(&mut number).unwrap();
        desktop.children.push(xvfb);
        let display = format!(":{}", number.trim());
        assert!(number.trim().parse::<u32>().is_ok(), "Xvfb did not say its display: {number:?}");
        desktop.env.push(("DISPLAY".into(), display));

        let bus = format!("unix:path={}", run.join("bus").display());
        let dbus = desktop
            .command("dbus-daemon")
            .args(["--session", "--nofork", "--nopidfile", &format!("--address={bus}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        desktop.children.push(dbus);
        desktop.env.push(("DBUS_SESSION_BUS_ADDRESS".into(), bus));
        wait_for("the D-Bus session", Duration::from_secs(10), || run.join("bus").exists());

        let openbox = desktop
            .command("openbox")
            .arg("--sm-disable")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        desktop.children.push(openbox);
        wait_for("openbox", Duration::from_secs(10), || desktop.try_xdotool(&["get_desktop"]).is_some());
        Some(desktop)
    }

    pub(super) fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        // GTK must load its accessibility bridge.
        cmd.env_remove("NO_AT_BRIDGE");
        cmd
    }

    fn try_xdotool(&self, args: &[&str]) -> Option<String> {
        let out = self.command("xdotool").args(args).stderr(Stdio::null()).output().unwrap();
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    pub(super) fn xdotool(&self, args: &[&str]) -> String {
        let out = self.command("xdotool").args(args).output().unwrap();
        assert!(out.status.success(), "xdotool {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Opens a zenity dialog and waits until it is the active window; returns its window id.
    fn zenity(&mut self, title: &str, args: &[&str]) -> String {
        let child = self
            .command("zenity")
            .args(args)
            .args(["--title", title])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.children.push(child);
        let pattern = format!("^{title}$");
        let mut window = String::new();
        wait_for(&format!("the window {title:?}"), Duration::from_secs(20), || {
            window = self.try_xdotool(&["search", "--name", &pattern]).unwrap_or_default();
            !window.is_empty()
        });
        let window = window.lines().next().unwrap().to_owned();
        self.wait_active(&window);
        window
    }

    fn wait_active(&self, window: &str) {
        wait_for(&format!("window {window} to be active"), Duration::from_secs(10), || {
            self.try_xdotool(&["getactivewindow"]).as_deref() == Some(window)
        });
    }

    /// The centre of a window, in screen coordinates.
    fn centre(&self, window: &str) -> (i32, i32) {
        let shell = self.xdotool(&["getwindowgeometry", "--shell", window]);
        let get = |k: &str| -> i32 {
            shell.lines().find_map(|l| l.strip_prefix(&format!("{k}="))).unwrap().parse().unwrap()
        };
        (get("X") + get("WIDTH") / 2, get("Y") + get("HEIGHT") / 2)
    }
}

impl Drop for Desktop {
    fn drop(&mut self) {
        for child in self.children.iter_mut().rev() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn pause(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return out };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p))
        } else if p.is_file() {
            out.push(p)
        }
    }
    out
}

/// The steps of the auditor's replay, as `action args` lines, without waits and moves.
fn steps(jsonl: &str) -> Vec<String> {
    jsonl
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|s| !matches!(s["action"].as_str(), Some("wait" | "move")))
        .map(|s| {
            let a = &s["args"];
            match s["action"].as_str().unwrap() {
                "focus" => format!("focus {}", a["title"].as_str().unwrap_or("-")),
                "type" if a["secure"] == true => "type (secure)".to_owned(),
                "type" => format!("type {}", a["text"].as_str().unwrap()),
                "hotkey" => format!(
                    "hotkey {}",
                    a["keys"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|k| k.as_str().unwrap())
                        .collect::<Vec<_>>()
                        .join("+")
                ),
                "scroll" => format!("scroll {}", a["dy"]),
                other => other.to_owned(),
            }
        })
        .collect()
}

/// Every string under a `text` key, anywhere in a JSON value.
fn texts(v: &serde_json::Value, out: &mut String) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("text", serde_json::Value::String(s)) => out.push_str(s),
                    _ => texts(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| texts(v, out)),
        _ => {}
    }
}

#[test]
fn the_recorder_captures_an_x11_desktop_masks_the_password_and_survives_an_outage() {
    let dir = temp("recorder-x11");
    let Some(mut desktop) = Desktop::start(&dir) else { return };
    let data = dir.join("data");
    let recorder_token = token(&data, &["--role", "recorder", "--device", "desk-1"]);
    let auditor = token(&data, &["--role", "auditor", "--name", "ada"]);
    let server = Server::start(&data, "127.0.0.1:0", &[]);
    let (url, port) = (server.url.clone(), server.port().to_owned());

    // Two windows before the recording starts: Search, opened last, has the focus.
    let notes = desktop.zenity("Notes", &["--entry", "--text", "Notes"]);
    let search = desktop.zenity("Search", &["--entry", "--text", "Search"]);
    // Side by side, so a click on one does not land on the other.
    desktop.xdotool(&["windowmove", "--sync", &notes, "100", "100"]);
    desktop.xdotool(&["windowmove", "--sync", &search, "700", "400"]);
    desktop.wait_active(&search);

    // No secure windows in this policy: the password field is found by AT-SPI or not at all.
    let policy = dir.join("policy.toml");
    std::fs::write(&policy, "version = \"e2e-1\"\n[secure]\nclasses = []\ntitles = []\n").unwrap();
    let spool = dir.join("spool");
    let log = dir.join("recorder.log");
    let mut recorder = desktop
        .command(env!("CARGO_BIN_EXE_tracevault"))
        .args(["--server", &url, "--token", &recorder_token, "record"])
        .args(["--user", "u-x11", "--device", "desk-1", "--consent", "consent-v3", "--session", "x11-e2e"])
        .args(["--batch-seconds", "0.3", "--drain-seconds", "30"])
        .arg("--policy")
        .arg(&policy)
        .arg("--spool")
        .arg(&spool)
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let logged = |s: &str| std::fs::read_to_string(&log).unwrap_or_default().contains(s);
    wait_for("the recorder to watch AT-SPI", Duration::from_secs(20), || {
        assert!(
            recorder.try_wait().unwrap().is_none(),
            "the recorder exited: {}",
            std::fs::read_to_string(&log).unwrap()
        );
        logged("recording session x11-e2e") && logged("AT-SPI: watching focus changes")
    });

    let x = |args: &[&str]| {
        desktop.xdotool(args);
    };
    x(&["mousemove", "40", "40"]);
    pause(300);
    let (cx, cy) = desktop.centre(&notes);
    let (cxs, cys) = (cx.to_string(), cy.to_string());
    x(&["mousemove", &cxs, &cys]);
    pause(200);
    x(&["click", "1"]);
    desktop.wait_active(&notes);
    pause(300);
    x(&["type", "--delay", "40", "Meeting at nono"]);
    x(&["key", "--delay", "40", "BackSpace", "BackSpace", "o", "n"]);
    pause(400);
    x(&["key", "ctrl+c"]);
    pause(400);
    x(&["click", "--repeat", "2", "--delay", "80", "1"]);
    pause(700);
    x(&["mousemove", &(cx - 60).to_string(), &cys]);
    pause(300);
    x(&["mousedown", "1"]);
    // Relative moves go through XTest like a real mouse's (raw motion); `mousemove` warps the
    // pointer, which the recorder sees only at the next raw event.
    for _ in 0..5 {
        x(&["mousemove_relative", "--", "22", "0"]);
        pause(30);
    }
    x(&["mouseup", "1"]);
    pause(400);
    x(&["click", "5", "click", "5", "click", "5"]);
    pause(400);

    // The outage: alt+tab to Search, a word, alt+tab back, with the server gone.
    server.kill();
    x(&["key", "alt+Tab"]);
    desktop.wait_active(&search);
    pause(300);
    x(&["type", "--delay", "40", "owl"]);
    pause(300);
    x(&["key", "alt+Tab"]);
    desktop.wait_active(&notes);
    let spooled = || files(&spool).iter().filter(|p| p.extension().is_some_and(|e| e == "req")).count();
    wait_for("batches to wait in the spool", Duration::from_secs(10), || spooled() > 0);
    pause(2000);
    let server = Server::start(&data, &format!("127.0.0.1:{port}"), &[]);
    wait_for("the spool to drain", Duration::from_secs(40), || spooled() == 0);

    // The password, into a GTK password entry.
    desktop.zenity("Sign in", &["--password"]);
    pause(1500);
    desktop.xdotool(&["type", "--delay", "50", PASSWORD]);
    pause(500);

    let pid = recorder.id().to_string();
    assert!(Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(40);
    let status = loop {
        if let Some(status) = recorder.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the recorder did not stop: {}",
            std::fs::read_to_string(&log).unwrap()
        );
        pause(100);
    };
    let mut said = String::new();
    BufReader::new(recorder.stdout.take().unwrap()).read_line(&mut said).unwrap();
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{log_text}");
    assert_eq!(said.trim(), "x11-e2e");
    assert_eq!(spooled(), 0, "everything was delivered: {log_text}");

    // The auditor's replay, through the server.
    let replay = Command::new(env!("CARGO_BIN_EXE_tracevault"))
        .args(["--server", &url, "--token", &auditor, "replay", "x11-e2e", "--purpose", "recorder e2e check"])
        .args(["--format", "jsonl"])
        .env_remove("TRACEVAULT_SERVER")
        .env_remove("TRACEVAULT_TOKEN")
        .output()
        .unwrap();
    assert!(replay.status.success(), "{}", String::from_utf8_lossy(&replay.stderr));
    let replayed = String::from_utf8(replay.stdout).unwrap();
    assert_eq!(
        steps(&replayed),
        [
            "focus Search",
            "click",
            "focus Notes",
            "type Meeting at noon",
            "hotkey ctrl+c",
            "double_click",
            "drag",
            "scroll -360",
            "hotkey alt+tab",
            "focus Search",
            "type owl",
            "hotkey alt+tab",
            "focus Notes",
            "focus Sign in",
            "type (secure)",
        ],
        "the replay:\n{replayed}"
    );
    server.kill();

    // Every event once, in order: the events' times never go back and no event repeats.
    let raw = tracevault(&data, &["replay", "x11-e2e", "--purpose", "recorder e2e check", "--raw"], None);
    assert!(raw.status.success(), "{}", String::from_utf8_lossy(&raw.stderr));
    let raw = String::from_utf8(raw.stdout).unwrap();
    let events: Vec<serde_json::Value> =
        raw.lines().skip(1).map(|l| serde_json::from_str(l).unwrap()).collect();
    let times: Vec<u64> = events.iter().map(|e| e["t"].as_u64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "in order");
    let mut unique = events.iter().map(|e| e.to_string()).collect::<Vec<_>>();
    unique.dedup();
    assert_eq!(unique.len(), events.len(), "no event twice");
    let session: serde_json::Value = serde_json::from_str(raw.lines().next().unwrap()).unwrap();
    assert_eq!(session["layout"], "us");
    assert_eq!(session["screen"], serde_json::json!({"w": 1280, "h": 800}));
    assert_eq!(session["labels"]["recorder.consent"], "consent-v3");
    assert_eq!(session["labels"]["recorder.policy"], "e2e-1");

    // The password: no key of it kept its code or its text, in the decrypted session...
    let password_codes = ["KeyZ", "KeyQ", "Digit7", "Digit3", "KeyV", "KeyX", "Digit9", "Digit1"];
    for e in &events {
        let code = e["code"].as_str().unwrap_or("");
        assert!(!password_codes.contains(&code), "a password key's code was kept: {e}");
        let text = e["text"].as_str().unwrap_or("");
        assert!(!text.chars().any(|c| PASSWORD.contains(c)), "a password character was kept: {e}");
    }
    let secure = events.iter().filter(|e| e["secure"] == true).count();
    assert!(secure >= 2 * PASSWORD.len(), "the password's keys are recorded as secure: {secure}");
    // ...nor anywhere on disk: the store, the spool, the recorder's log, the exports.
    for (redaction, out) in [("default", "export-default"), ("none", "export-none")] {
        let out = dir.join(out);
        let run = tracevault(
            &data,
            &["export", "--format", "jsonl", "--redaction", redaction, "--purpose", "recorder e2e check"]
                .into_iter()
                .chain(["--out", out.to_str().unwrap()])
                .collect::<Vec<_>>(),
            None,
        );
        assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
        let mut typed = String::new();
        for file in files(&out).iter().filter(|f| f.extension().is_some_and(|e| e == "jsonl")) {
            for line in std::fs::read_to_string(file).unwrap().lines() {
                texts(&serde_json::from_str(line).unwrap(), &mut typed);
            }
        }
        assert!(typed.contains("Meeting at noon"), "the {redaction} export has the session: {typed}");
        assert!(
            !typed.chars().any(|c| PASSWORD.contains(c)),
            "a password character in the {redaction} export: {typed}"
        );
    }
    let mut everywhere = files(&dir);
    everywhere.push(log.clone());
    for file in everywhere {
        let bytes = std::fs::read(&file).unwrap();
        assert!(
            !bytes.windows(PASSWORD.len()).any(|w| w == PASSWORD.as_bytes()),
            "the password is in {}",
            file.display()
        );
    }
    assert!(!log_text.contains(PASSWORD));
    drop(desktop);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A process's CPU time so far (user + system) and its resident memory (now, peak), from /proc.
fn usage(pid: u32) -> (Duration, u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The fields after the command name (which is in parentheses and may hold spaces).
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let hz = String::from_utf8(Command::new("getconf").arg("CLK_TCK").output().unwrap().stdout).unwrap();
    let hz: u64 = hz.trim().parse().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib = |key: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap()
            .trim()
            .trim_end_matches(" kB")
            .trim()
            .parse()
            .unwrap()
    };
    (Duration::from_millis(ticks * 1000 / hz), kib("VmRSS:"), kib("VmHWM:"))
}

/// The recorder's costs (issue 14's targets: under 1% of a core and 20 MB RSS) at 125 Hz pointer
/// motion with fast typing, against the same recorder idle in the same run. Prints, asserts
/// nothing about speed. `scripts/recorder-cost` runs it on the release binary:
/// TRACEVAULT_RECORDER_BIN names the binary (default: this build's), TRACEVAULT_COST_S the
/// seconds per phase (default 20).
#[test]
#[ignore = "a measurement: scripts/recorder-cost"]
fn recorder_cost_at_125_hz_motion_and_fast_typing() {
    let dir = temp("recorder-cost");
    let Some(mut desktop) = Desktop::start(&dir) else { panic!("the cost measurement needs the X11 tools") };
    let seconds: u64 = std::env::var("TRACEVAULT_COST_S").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let bin =
        std::env::var("TRACEVAULT_RECORDER_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_tracevault").into());
    let data = dir.join("data");
    let recorder_token = token(&data, &["--role", "recorder", "--device", "desk-1"]);
    let server = Server::start(&data, "127.0.0.1:0", &[]);
    // The typing goes to a focused entry.
    desktop.zenity("Notes", &["--entry", "--text", "Notes"]);
    let log = dir.join("recorder.log");
    let mut recorder = desktop
        .command(&bin)
        .args(["--server", &server.url, "--token", &recorder_token, "record"])
        .args(["--user", "u-cost", "--device", "desk-1", "--consent", "c-1", "--session", "cost-1"])
        .arg("--spool")
        .arg(dir.join("spool"))
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let pid = recorder.id();
    wait_for("the recorder", Duration::from_secs(20), || {
        std::fs::read_to_string(&log).unwrap_or_default().contains("recording session cost-1")
    });
    std::thread::sleep(Duration::from_secs(1));

    let phase = |busy: bool| -> (f64, u64) {
        let (cpu0, _, _) = usage(pid);
        let start = Instant::now();
        if busy {
            // 125 Hz motion: one xdotool running a chain of relative moves (through XTest, as
            // a mouse's) 8 ms apart, back and forth...
            let mut chain = Vec::new();
            for i in 0..seconds * 125 {
                let dx = if (i / 40) % 2 == 0 { "6" } else { "-6" };
                let dy = if (i / 25) % 2 == 0 { "3" } else { "-3" };
                chain.extend(["mousemove_relative", "--", dx, dy, "sleep", "0.008"].map(str::to_owned));
            }
            let mut motion = desktop.command("xdotool").args(&chain).spawn().unwrap();
            // ...while someone types fast (about 12 keys a second, 140 words a minute).
            let text = "the quick brown fox jumps over the lazy dog ".repeat(seconds as usize / 3 + 1);
            let mut typing = desktop
                .command("xdotool")
                .args(["type", "--delay", "80", &text[..(seconds as usize * 12).min(text.len())]])
                .spawn()
                .unwrap();
            motion.wait().unwrap();
            typing.wait().unwrap();
        } else {
            std::thread::sleep(Duration::from_secs(seconds));
        }
        let wall = start.elapsed();
        let (cpu1, rss, _) = usage(pid);
        ((cpu1 - cpu0).as_secs_f64() / wall.as_secs_f64() * 100.0, rss)
    };
    let (idle, idle_rss) = phase(false);
    let (busy, busy_rss) = phase(true);
    let (_, _, peak) = usage(pid);
    assert!(Command::new("kill").args(["-INT", &pid.to_string()]).status().unwrap().success());
    assert!(recorder.wait().unwrap().success(), "{}", std::fs::read_to_string(&log).unwrap());
    server.kill();
    let events = super::service_cli::stored_events(&data, "cost-1");
    let moves = events.iter().filter(|e| matches!(e.kind, tracevault_codecs::EventKind::Move { .. })).count();
    let keys = events.iter().filter(|e| matches!(e.kind, tracevault_codecs::EventKind::KeyDown(_))).count();
    assert!(
        moves as u64 > seconds * 50 && keys > 0,
        "the input was not recorded ({} events, {moves} moves, {keys} keys): {}",
        events.len(),
        std::fs::read_to_string(&log).unwrap()
    );
    println!("recorder cost ({bin}), {seconds} s per phase:");
    println!(
        "  baseline, idle:                 {idle:6.2}% of a core, RSS {:.1} MB",
        idle_rss as f64 / 1024.0
    );
    println!(
        "  125 Hz motion + fast typing:    {busy:6.2}% of a core, RSS {:.1} MB  ({:.1}x idle; {:.0} moves/s, {:.1} keys/s recorded)",
        busy_rss as f64 / 1024.0,
        busy / idle.max(0.01),
        moves as f64 / seconds as f64,
        keys as f64 / seconds as f64
    );
    println!("  peak RSS (VmHWM):               {:.1} MB", peak as f64 / 1024.0);
    println!("  targets: under 1% of a core, under 20 MB");
    drop(desktop);
    std::fs::remove_dir_all(&dir).unwrap();
}
