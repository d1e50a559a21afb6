//! The HTTP service: acked events/s with 64 recorders sending 1000-event MessagePack + zstd
//! batches of real SapiMouse input over loopback to a `tracevault serve` process, the ack latency
//! percentiles, then the same at half that load (the latency target's condition), and the
//! server's peak RSS; beside them, from the same run, the in-process append of the same batches
//! by 64 threads (what the HTTP layer costs).
//!
//! `cargo bench --bench service` (`TRACEVAULT_BENCH_SECONDS`, default 10 per row); `cargo test`
//! runs a tiny version on the fixtures.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracevault::load::{self, LoadOptions, LoadReport, Pool};
use tracevault::sapimouse;
use tracevault_codecs::SessionMeta;
use tracevault_core::{Batch, KeySource, Log, LogOptions};

fn tracevault(data: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tracevault"))
        .env("TRACEVAULT_KEY_DIR", data.parent().unwrap().join("keys"))
        .env_remove("TRACEVAULT_MASTER_KEY")
        .env_remove("TRACEVAULT_SIGNING_KEY")
        .arg("--data")
        .arg(data)
        .args(args)
        .output()
        .unwrap()
}

/// The peak resident set of a process, MiB (VmHWM).
fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// 64 threads appending the same batches in process, for `seconds`: events/s and latencies.
fn in_process(root: &Path, pool: &Arc<Pool>, recorders: usize, batch: usize, seconds: f64) -> LoadReport {
    let dir = root.join("in-process");
    let _ = std::fs::remove_dir_all(&dir);
    let options =
        LogOptions { keys: Some(KeySource::dir(root.join("keys-in-process"))), ..LogOptions::default() };
    let log = Log::open(&dir, options).unwrap();
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let reports: Vec<LoadReport> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..recorders)
            .map(|r| {
                let (log, pool) = (&log, pool.clone());
                scope.spawn(move || {
                    let session = format!("s-{r}");
                    let meta = SessionMeta {
                        session: session.clone(),
                        user: format!("load-user-{r}"),
                        device: Some("load".into()),
                        screen: None,
                        started_at: None,
                        layout: None,
                        labels: Default::default(),
                    };
                    log.create_session(meta).unwrap();
                    let mut report = LoadReport::default();
                    let mut b = 0;
                    while Instant::now() < deadline {
                        let events = pool.batch(r as u64 * 7919, b, batch);
                        let at = Instant::now();
                        let id = Some(((r as u128) << 64) | (b as u128 + 1));
                        let ack = log
                            .append_batch(Batch {
                                session: &session,
                                events: &events,
                                batch_id: id,
                                expected_seq: None,
                            })
                            .unwrap();
                        report.latencies_us.push(at.elapsed().as_micros() as u64);
                        report.events += ack.events;
                        report.batches += 1;
                        b += 1;
                    }
                    report
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut total = LoadReport { seconds: started.elapsed().as_secs_f64(), ..LoadReport::default() };
    for r in reports {
        total.events += r.events;
        total.batches += r.batches;
        total.latencies_us.extend(r.latencies_us);
    }
    total.latencies_us.sort_unstable();
    log.close().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    total
}

fn row(name: &str, r: &LoadReport, rss: Option<f64>) {
    println!(
        "{name:<44} {:>12.0} {:>9.2} {:>9.2} {:>9.2} {:>8} {:>10}",
        r.events_per_s(),
        r.latency_ms(0.5),
        r.latency_ms(0.99),
        r.latency_ms(0.999),
        r.errors.len(),
        rss.map_or_else(|| "-".to_owned(), |m| format!("{m:.0} MiB"))
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let smoke = !std::env::args().any(|a| a == "--bench");
    let seconds: f64 = if smoke {
        1.0
    } else {
        std::env::var("TRACEVAULT_BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(10.0)
    };
    let (recorders, batch) = if smoke { (4, 100) } else { (64, 1000) };
    let dir = if smoke {
        sapimouse::fixtures_dir()
    } else {
        sapimouse::shared_dir().unwrap_or_else(sapimouse::fixtures_dir)
    };
    let recordings = sapimouse::load_dir(&dir).unwrap();
    let pool = Arc::new(Pool::new(recordings.into_iter().map(|r| r.events)));
    let root: PathBuf = std::env::var_os("TRACEVAULT_BENCH_DIR")
        .map_or_else(|| std::env::temp_dir().join("tracevault-bench-service"), PathBuf::from);
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let data = root.join("data");
    let out = tracevault(&data, &["token", "create", "--role", "recorder", "--device", "load", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut server = Command::new(env!("CARGO_BIN_EXE_tracevault"))
        .env("TRACEVAULT_KEY_DIR", root.join("keys"))
        .arg("--data")
        .arg(&data)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line
        .strip_prefix("tracevault serving ")
        .and_then(|r| r.split_whitespace().next())
        .expect("the server's address")
        .to_owned();
    println!(
        "service: {recorders} recorders, {batch}-event MessagePack + zstd batches of SapiMouse ({} events in the pool, {}), \
         encoded before the clock starts; loopback {url}, {seconds:.0} s per row",
        pool.len(),
        dir.display()
    );
    println!();
    println!(
        "{:<44} {:>12} {:>9} {:>9} {:>9} {:>8} {:>10}",
        "", "events/s", "p50 ms", "p99 ms", "p999 ms", "errors", "peak RSS"
    );
    let options = |rate: f64, prefix: &str| LoadOptions {
        url: url.clone(),
        token: token.clone(),
        recorders,
        batch,
        seconds,
        device: "load".into(),
        prefix: prefix.into(),
        session_batches: 0,
        rate,
        msgpack: true,
        zstd: true,
        grace: Duration::from_secs(30),
        pool: Some(pool.clone()),
        ca_cert: None,
        // Enough for 3 M events/s: the recorders' encoding is on their machines, not the server's.
        prebuilt_batches: (3e6 * seconds / (recorders * batch) as f64).ceil() as u64,
    };
    let full = load::run(options(0.0, "full-"), &|_| {});
    row("HTTP, as fast as acked", &full, Some(peak_rss_mib(server.id())));
    let half = load::run(options(full.events_per_s() / 2.0, "half-"), &|_| {});
    row(
        &format!("HTTP, half that offered ({:.0} events/s)", full.events_per_s() / 2.0),
        &half,
        Some(peak_rss_mib(server.id())),
    );
    let rss = peak_rss_mib(server.id());
    let _ = Command::new("kill").args(["-TERM", &server.id().to_string()]).status();
    let _ = server.wait();
    let baseline = in_process(&root, &pool, recorders, batch, seconds);
    row("in-process Log::append_batch, same batches", &baseline, None);
    println!();
    println!(
        "HTTP / in-process: {:.2}x the events/s; server peak RSS {rss:.0} MiB; targets: >= 2,000,000 events/s, p99 < 25 ms at half load",
        full.events_per_s() / baseline.events_per_s().max(1.0)
    );
    for e in full.errors.iter().chain(&half.errors).take(5) {
        println!("error: {e}");
    }
    let _ = std::fs::remove_dir_all(&root);
}
