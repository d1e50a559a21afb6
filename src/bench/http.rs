//! Ingest over HTTP: `tracevault serve` started on loopback, recorders played against it by
//! [`crate::load`] (the code of `tracevault load`), each sending MessagePack + zstd batches of real
//! SapiMouse input with an idempotency key and one request in flight; an event counts once its
//! batch is acknowledged (durable). Then the same at half that rate, offered evenly (the latency
//! target's condition), and the same batches appended in process by as many threads: what the
//! HTTP layer costs. `tracevault bench` and `cargo bench --bench service` both run it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tracevault_codecs::SessionMeta;
use tracevault_core::{Batch, KeySource, Log, LogOptions};

use crate::load::{self, LoadOptions, LoadReport, Pool};

use super::Result;

/// The server, stopped (SIGTERM, then waited for) when dropped.
pub struct Server {
    child: Child,
    pub url: String,
}

impl Server {
    /// Starts `exe serve` on a free loopback port over `data` (keys in `keys`).
    pub fn start(exe: &Path, data: &Path, keys: &Path) -> Result<Server> {
        let mut child = Command::new(exe)
            .env("TRACEVAULT_KEY_DIR", keys)
            .env_remove("TRACEVAULT_MASTER_KEY")
            .env_remove("TRACEVAULT_SIGNING_KEY")
            .env_remove("TRACEVAULT_CONFIG")
            .arg("--data")
            .arg(data)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {} serve", exe.display()))?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("the server's stdout")?).read_line(&mut line)?;
        let Some(url) = line.strip_prefix("tracevault serving ").and_then(|r| r.split_whitespace().next())
        else {
            let _ = child.kill();
            bail!("{} serve did not say where it listens (it printed {line:?})", exe.display());
        };
        Ok(Server { url: url.to_owned(), child })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
    }
}

/// A recorder token for `data`, made with `exe token create`.
pub fn recorder_token(exe: &Path, data: &Path, keys: &Path) -> Result<String> {
    let out = Command::new(exe)
        .env("TRACEVAULT_KEY_DIR", keys)
        .env_remove("TRACEVAULT_MASTER_KEY")
        .env_remove("TRACEVAULT_SIGNING_KEY")
        .env_remove("TRACEVAULT_CONFIG")
        .arg("--data")
        .arg(data)
        .args(["token", "create", "--role", "recorder", "--device", "load", "--json"])
        .output()
        .with_context(|| format!("running {} token create", exe.display()))?;
    if !out.status.success() {
        bail!("token create failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).context("token create --json")?;
    Ok(value["token"].as_str().context("token create --json: no `token`")?.to_owned())
}

/// The peak resident set of a process, MiB (VmHWM).
pub fn peak_rss_mib(pid: u32) -> f64 {
    super::status_kib(&format!("/proc/{pid}/status"), "VmHWM:") / 1024.0
}

/// `recorders` threads appending the same batches in process, for `seconds`.
pub fn in_process(
    root: &Path,
    pool: &Arc<Pool>,
    recorders: usize,
    batch: usize,
    seconds: f64,
) -> Result<LoadReport> {
    let dir = root.join("in-process");
    let _ = std::fs::remove_dir_all(&dir);
    let options =
        LogOptions { keys: Some(KeySource::dir(root.join("keys-in-process"))), ..LogOptions::default() };
    let log = Log::open(&dir, options)?;
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let reports: Vec<Result<LoadReport>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..recorders)
            .map(|r| {
                let (log, pool) = (&log, pool.clone());
                scope.spawn(move || -> Result<LoadReport> {
                    let session = format!("s-{r}");
                    log.create_session(SessionMeta {
                        session: session.clone(),
                        user: format!("load-user-{r}"),
                        device: Some("load".into()),
                        screen: None,
                        started_at: None,
                        layout: None,
                        labels: Default::default(),
                    })?;
                    let mut report = LoadReport::default();
                    let mut b = 0;
                    while Instant::now() < deadline {
                        let events = pool.batch(r as u64 * 7919, b, batch);
                        let at = Instant::now();
                        let id = Some(((r as u128) << 64) | (b as u128 + 1));
                        let ack = log.append_batch(Batch {
                            session: &session,
                            events: &events,
                            batch_id: id,
                            expected_seq: None,
                        })?;
                        report.latencies_us.push(at.elapsed().as_micros() as u64);
                        report.events += ack.events;
                        report.batches += 1;
                        b += 1;
                    }
                    Ok(report)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("an appender does not panic")).collect()
    });
    let mut total = LoadReport { seconds: started.elapsed().as_secs_f64(), ..LoadReport::default() };
    for r in reports {
        let r = r?;
        total.events += r.events;
        total.batches += r.batches;
        total.latencies_us.extend(r.latencies_us);
    }
    total.latencies_us.sort_unstable();
    log.close()?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(total)
}

/// What one run measured: as fast as acked, half that offered, and in process.
pub struct Measured {
    pub full: LoadReport,
    pub half: LoadReport,
    pub in_process: LoadReport,
    pub server_peak_rss_mib: f64,
}

/// The three rows, each `seconds` long, with `recorders` recorders of `batch`-event batches.
pub fn measure(
    exe: &Path,
    root: &Path,
    pool: &Arc<Pool>,
    recorders: usize,
    batch: usize,
    seconds: f64,
) -> Result<Measured> {
    let _ = std::fs::remove_dir_all(root);
    std::fs::create_dir_all(root)?;
    let (data, keys) = (root.join("data"), root.join("keys"));
    let token = recorder_token(exe, &data, &keys)?;
    let server = Server::start(exe, &data, &keys)?;
    let options = |rate: f64, prefix: &str| LoadOptions {
        url: server.url.clone(),
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
    let half = load::run(options(full.events_per_s() / 2.0, "half-"), &|_| {});
    let server_peak_rss_mib = peak_rss_mib(server.pid());
    drop(server);
    let in_process = in_process(root, pool, recorders, batch, seconds)?;
    for e in full.errors.iter().chain(&half.errors).take(3) {
        eprintln!("bench http: a recorder's error: {e}");
    }
    Ok(Measured { full, half, in_process, server_peak_rss_mib })
}

pub fn section(ctx: &super::Ctx) -> Result<super::report::Section> {
    use super::report::{Better, Figure, Section};
    let (recorders, batch) = if ctx.smoke() { (4, 100) } else { (64, 1000) };
    let seconds = ctx.row_time().as_secs_f64() * 2.0;
    let data = ctx.real()?;
    let pool = Arc::new(Pool::new(data.recordings.iter().map(|r| r.events.clone())));
    let root = ctx.work.join("http");
    let mut full = Vec::new();
    let mut half = Vec::new();
    let mut inproc = Vec::new();
    let mut p99_half = Vec::new();
    let mut p50_full = Vec::new();
    let mut rss: f64 = 0.0;
    let mut errors = 0;
    for _ in 0..ctx.repeats {
        let m = measure(&ctx.exe, &root, &pool, recorders, batch, seconds)?;
        full.push(m.full.events_per_s());
        p50_full.push(m.full.latency_ms(0.5));
        half.push(m.half.events_per_s());
        p99_half.push(m.half.latency_ms(0.99));
        inproc.push(m.in_process.events_per_s());
        rss = rss.max(m.server_peak_rss_mib);
        errors += m.full.errors.len() + m.half.errors.len();
    }
    let _ = std::fs::remove_dir_all(&root);
    let mut section = Section {
        name: "http".into(),
        title: "ingest over HTTP, beside the same batches in process".into(),
        about: format!(
            "`tracevault serve` on loopback, {recorders} recorders (`tracevault load`'s code, in this \
             process, on the same cores as the server) sending {batch}-event MessagePack + zstd \
             batches of real SapiMouse input, encoded before the clock starts, one request in flight \
             each; {seconds:.0} s per row, {} runs. Then half the measured rate, offered evenly; then \
             the same batches appended in process by {recorders} threads.",
            ctx.repeats
        ),
        ..Section::default()
    };
    let in_process_rate = super::report::median(&inproc);
    let fig = Figure::new(
        "http.events_per_s",
        format!("acked events/s over HTTP, {recorders} recorders"),
        "events/s",
        Better::Higher,
        full,
    )
    .limit("the same batches in process", in_process_rate);
    let fig = if ctx.smoke() { fig } else { fig.target(2e6) };
    ctx.show(&fig);
    section.figures.push(fig);
    let fig =
        Figure::new("http.ack_p50_ms", "ack latency p50, as fast as acked", "ms", Better::Lower, p50_full);
    ctx.show(&fig);
    section.figures.push(fig);
    let fig = Figure::new(
        "http.ack_p99_ms.half_load",
        "ack latency p99 at half that load",
        "ms",
        Better::Lower,
        p99_half,
    )
    .target(25.0);
    ctx.show(&fig);
    section.figures.push(fig);
    let fig = Figure::new(
        "http.half_load_events_per_s",
        "acked events/s at half load",
        "events/s",
        Better::Neither,
        half,
    );
    section.figures.push(fig);
    let fig = Figure::new(
        "http.in_process_events_per_s",
        format!("the same batches in process, {recorders} threads"),
        "events/s",
        Better::Higher,
        inproc,
    );
    ctx.show(&fig);
    section.figures.push(fig);
    let fig =
        Figure::new("http.server_peak_rss_mib", "the server's peak RSS", "MiB", Better::Lower, vec![rss]);
    ctx.show(&fig);
    section.figures.push(fig);
    if errors > 0 {
        section.notes.push(format!("{errors} recorder requests failed (printed on stderr)"));
    }
    Ok(section)
}
