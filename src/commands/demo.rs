//! `tracevault demo`: the whole product on an embedded store. Generates realistic sessions, adds
//! the real SapiMouse recordings, ingests everything as recorders would (encrypted per person,
//! every batch durable), replays it into trajectories exported as Parquet and JSON Lines, verifies
//! the log, and prints what happened and what to try next.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::json;
use tracevault::generate::{self, Workload};
use tracevault::sapimouse;
use tracevault_codecs::{Event, SessionMeta};
use tracevault_core::{KeySource, Log, LogOptions, Role};
use tracevault_replay::export::{ExportOptions, Format};
use tracevault_replay::{Engine, Policy, ReduceConfig, Selection};

use super::privacy::cli_access;
use super::progress;

/// Events per append: a recorder sends a couple of seconds of input at a time.
const DEMO_BATCH_EVENTS: usize = 200;
/// The file that marks a folder as the demo's own, so it may be replaced.
const MARKER: &str = ".tracevault-demo";

/// `tracevault demo`'s arguments.
#[derive(clap::Args)]
pub struct DemoArgs {
    /// Sessions to generate.
    #[arg(long, default_value_t = 24)]
    pub sessions: usize,
    /// Minutes of input per generated session.
    #[arg(long, default_value_t = 6.0)]
    pub minutes: f64,
    /// The generator's seed (the same seed, the same sessions).
    #[arg(long, default_value_t = 2026)]
    pub seed: u64,
    /// Where the store, its keys and the exports go (replaced if a previous demo's).
    #[arg(long, default_value = "tracevault-out")]
    pub out: PathBuf,
    /// SapiMouse recordings to add (a folder of user*/*.csv). Default: ../shared/data/sapimouse
    /// if present, else the fixtures subset in this repository.
    #[arg(long)]
    pub sapimouse: Option<PathBuf>,
    /// Generated sessions only.
    #[arg(long)]
    pub no_real: bool,
    /// Print the summary as JSON (and no progress bars).
    #[arg(long)]
    pub json: bool,
    /// Afterwards, leave the service running over the demo's store (until Ctrl-C) and print the
    /// viewer's address with an auditor's token, and a subject's token for one recorded person.
    #[arg(long)]
    pub serve: bool,
    /// Where --serve listens: a loopback address (the demo serves plain HTTP).
    #[arg(long, default_value = "127.0.0.1:8440", requires = "serve")]
    pub listen: String,
}

/// Empties `out` for a new run, if it is absent, empty, or a previous demo's.
fn prepare(out: &Path) -> Result<()> {
    if out.exists() {
        let empty = std::fs::read_dir(out).map(|mut d| d.next().is_none()).unwrap_or(false);
        if !empty && !out.join(MARKER).is_file() {
            bail!(
                "{} exists and is not a previous demo's output (no {MARKER} in it): choose another --out",
                out.display()
            );
        }
        std::fs::remove_dir_all(out)
            .with_context(|| format!("removing the previous demo in {}", out.display()))?;
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    std::fs::write(out.join(MARKER), "tracevault demo output; `tracevault demo` replaces this folder\n")?;
    Ok(())
}

/// Appends sessions as recorders would: one thread per session, small batches, each durable.
fn ingest(log: &Log, sessions: &[(SessionMeta, Vec<Event>)], quiet: bool) -> Result<f64> {
    let bar = progress::bar(sessions.len() as u64, "ingest", quiet);
    let started = Instant::now();
    std::thread::scope(|scope| -> Result<()> {
        let handles: Vec<_> = sessions
            .iter()
            .map(|(meta, events)| {
                let bar = &bar;
                scope.spawn(move || -> Result<()> {
                    log.create_session(meta.clone())?;
                    for batch in events.chunks(DEMO_BATCH_EVENTS) {
                        log.append(&meta.session, batch)?;
                    }
                    log.seal_session(&meta.session)?;
                    bar.inc(1);
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join().map_err(|_| anyhow::anyhow!("a demo recorder thread panicked"))??;
        }
        Ok(())
    })?;
    log.checkpoint()?;
    bar.finish_and_clear();
    Ok(started.elapsed().as_secs_f64())
}

pub fn demo(args: DemoArgs) -> Result<ExitCode> {
    if args.sessions == 0 && args.no_real {
        bail!("nothing to do: --sessions 0 with --no-real");
    }
    if !(args.minutes > 0.0 && args.minutes <= 600.0) {
        bail!("--minutes must be more than 0 and at most 600, found {}", args.minutes);
    }
    if args.serve {
        check_loopback(&args.listen)?;
    }
    let out = &args.out;
    prepare(out)?;
    let (data, keys) = (out.join("data"), out.join("keys"));

    // 1. Sessions: generated for scale, SapiMouse for truth.
    let workload = Workload { sessions: args.sessions, minutes: args.minutes, seed: args.seed };
    let started = Instant::now();
    let generated = generate::sessions(&workload);
    let generate_s = started.elapsed().as_secs_f64();
    let real_dir = if args.no_real {
        None
    } else {
        Some(args.sapimouse.clone().or_else(sapimouse::shared_dir).unwrap_or_else(sapimouse::fixtures_dir))
    };
    let real: Vec<(SessionMeta, Vec<Event>)> = match &real_dir {
        Some(dir) => sapimouse::load_dir(dir)?.into_iter().map(|r| (r.meta, r.events)).collect(),
        None => Vec::new(),
    };
    let generated_events: u64 = generated.iter().map(|(_, e)| e.len() as u64).sum();
    let real_events: u64 = real.iter().map(|(_, e)| e.len() as u64).sum();
    let events = generated_events + real_events;
    let all: Vec<(SessionMeta, Vec<Event>)> = generated.into_iter().chain(real).collect();
    tracing::info!(sessions = all.len(), events, "demo sessions ready");

    // 2. Ingest: encrypted per person, acknowledged once durable.
    let options = LogOptions { keys: Some(KeySource::dir(&keys)), ..LogOptions::default() };
    let log =
        Log::open(&data, options).with_context(|| format!("opening the demo log in {}", data.display()))?;
    let ingest_s = ingest(&log, &all, args.json)?;
    let bytes_per_event = |ids: &mut dyn Iterator<Item = &str>| -> f64 {
        let (mut bytes, mut n) = (0u64, 0u64);
        for id in ids {
            if let Some(info) = log.session_info(id) {
                bytes += info.sealed_bytes;
                n += info.events;
            }
        }
        if n == 0 { 0.0 } else { bytes as f64 / n as f64 }
    };
    let generated_bpe = bytes_per_event(&mut all.iter().take(args.sessions).map(|(m, _)| m.session.as_str()));
    let real_bpe = bytes_per_event(&mut all.iter().skip(args.sessions).map(|(m, _)| m.session.as_str()));

    // 3. Replay into trajectories: Parquet and JSON Lines, redacted.
    let engine = Engine::new(ReduceConfig::default(), 0)?;
    let ml = cli_access(Role::Ml, "demo: export trajectories", None);
    let mut exports = Vec::new();
    let mut replay_s = 0.0;
    let mut steps = 0;
    let mut episodes = 0;
    for format in [Format::Parquet, Format::Jsonl] {
        let target = out.join(format.name());
        let options = ExportOptions {
            out: target.clone(),
            format,
            policy: Policy::Default,
            sensitive_apps: tracevault_replay::redact::SENSITIVE_APPS
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            user_key: None,
        };
        let bar = progress::bar(all.len() as u64, &format!("export {}", format.name()), args.json);
        let started = Instant::now();
        let report = tracevault_replay::export(
            &log,
            &engine,
            &ml,
            &Selection::default(),
            &options,
            &mut |done, _| bar.set_position(done),
        )?;
        bar.finish_and_clear();
        if format == Format::Parquet {
            replay_s = started.elapsed().as_secs_f64();
            steps = report.pass.steps;
            episodes = report.pass.episodes;
        }
        exports.push(report.files[0].clone());
    }
    drop(engine);

    // 4. Verify: every frame, the Merkle tree under the signed heads, the audit log.
    log.close().context("closing the demo log")?;
    let public = KeySource::dir(&keys).public_key()?;
    let report =
        tracevault_core::integrity::verify(&tracevault_core::storage::FsStorage::new(&data), &public)?;
    if let Some(problem) = &report.first_problem {
        bail!("verify failed: {problem}");
    }
    let example = all.first().map(|(m, _)| m.session.clone()).unwrap_or_default();
    let auditor = format!(
        "cargo run --release -- --data {} --key-dir {} replay {example} --purpose \"spot check\" --ticket DEMO-1",
        data.display(),
        keys.display()
    );
    let summary = json!({
        "out": out.display().to_string(),
        "sessions": all.len(),
        "generated_sessions": args.sessions,
        "real_sessions": all.len() - args.sessions,
        "events": events,
        "generated_events": generated_events,
        "real_events": real_events,
        "generate_s": generate_s,
        "ingest_events_per_s": events as f64 / ingest_s,
        "bytes_per_event": {"generated": generated_bpe, "sapimouse": real_bpe},
        "replay_export_events_per_s": events as f64 / replay_s,
        "steps": steps,
        "episodes": episodes,
        "exports": exports.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        "verify": "ok",
        "signed_heads": report.heads,
        "audit_entries": report.audit_entries,
        "example": auditor,
    });
    let mut stdout = std::io::stdout().lock();
    if args.json {
        writeln!(stdout, "{summary}")?;
        drop(stdout);
        return serve_if_asked(&args, &data, &keys, &all);
    }
    writeln!(stdout, "tracevault demo, in {}", out.display())?;
    writeln!(
        stdout,
        "  sessions   {} generated ({:.1} min each, seed {}) and {} real SapiMouse recordings{}: {events} events",
        args.sessions,
        args.minutes,
        args.seed,
        all.len() - args.sessions,
        real_dir.map(|d| format!(" ({})", d.display())).unwrap_or_default()
    )?;
    writeln!(
        stdout,
        "  ingest     {:.2} M events/s durable, {DEMO_BATCH_EVENTS}-event batches from {} concurrent sessions, each encrypted with its person's key",
        events as f64 / ingest_s / 1e6,
        all.len()
    )?;
    writeln!(
        stdout,
        "  stored     {generated_bpe:.2} bytes/event generated, {real_bpe:.2} bytes/event real mouse input (sealed blocks, compressed, encrypted)"
    )?;
    writeln!(
        stdout,
        "  replay     {:.2} M events/s into {steps} steps in {episodes} episodes, redacted, exported:",
        events as f64 / replay_s / 1e6
    )?;
    for path in &exports {
        writeln!(stdout, "               {}", path.display())?;
    }
    writeln!(
        stdout,
        "  verify     ok: every frame, the Merkle tree under {} signed heads, {} access audit entries",
        report.heads, report.audit_entries
    )?;
    writeln!(stdout)?;
    writeln!(stdout, "next, as an auditor (the read is recorded first):")?;
    writeln!(stdout, "  {auditor}")?;
    writeln!(
        stdout,
        "  cargo run --release -- --data {} --key-dir {} audit",
        data.display(),
        keys.display()
    )?;
    if !args.serve {
        writeln!(
            stdout,
            "  cargo run --release -- demo --serve    (the same, then the viewer in a browser)"
        )?;
    }
    drop(stdout);
    serve_if_asked(&args, &data, &keys, &all)
}

/// `--listen` must be a loopback address: the demo's service has no TLS.
fn check_loopback(listen: &str) -> Result<()> {
    use std::net::ToSocketAddrs;
    let addrs: Vec<_> =
        listen.to_socket_addrs().with_context(|| format!("--listen {listen}: expected HOST:PORT"))?.collect();
    if addrs.is_empty() || addrs.iter().any(|a| !a.ip().is_loopback()) {
        bail!(
            "--listen {listen}: the demo serves plain HTTP, on a loopback address only (such as 127.0.0.1:8440)"
        );
    }
    Ok(())
}

/// With `--serve`: the service over the demo's store until Ctrl-C, with an auditor's token for the
/// viewer and a subject's token for the person recorded in the first session.
fn serve_if_asked(
    args: &DemoArgs,
    data: &Path,
    keys: &Path,
    all: &[(SessionMeta, Vec<Event>)],
) -> Result<ExitCode> {
    use tracevault_service::tokens::{self, NewToken};
    if !args.serve {
        return Ok(ExitCode::SUCCESS);
    }
    let options = LogOptions { keys: Some(KeySource::dir(keys)), ..LogOptions::default() };
    let log =
        Log::open(data, options).with_context(|| format!("reopening the demo log in {}", data.display()))?;
    let mint = |role: Role, name: &str, user: Option<String>| {
        tokens::create(
            data,
            NewToken { role, name: name.into(), device: None, user, expires_in_s: Some(86_400) },
        )
        .map(|(text, _)| text)
        .context("minting the demo's tokens")
    };
    let auditor = mint(Role::Auditor, "demo-auditor", None)?;
    let person = all.first().map(|(m, _)| m.user.clone()).unwrap_or_else(|| "u-1".into());
    let subject = mint(Role::Subject, &format!("demo-subject-{person}"), Some(person.clone()))?;
    let options = tracevault_service::Options {
        sensitive_apps: tracevault_replay::redact::SENSITIVE_APPS.iter().map(|s| (*s).to_owned()).collect(),
        ..tracevault_service::Options::default()
    };
    let service = tracevault_service::Service::new(log, data, options)?;
    let json = args.json;
    let log = super::service::run(service, &args.listen, None, |addr| {
        let url = format!("http://{addr}/viewer");
        if json {
            println!(
                "{}",
                json!({"viewer": url, "auditor_token": auditor, "subject_token": subject, "subject": person})
            );
        } else {
            println!();
            println!("the viewer, serving the demo's store until Ctrl-C:");
            println!("  open     {url}");
            println!("  auditor  {auditor}");
            println!("           paste it with a purpose: every session opened is an audit entry");
            println!("  subject  {subject}");
            println!("           {person}'s own view: who read their sessions, when and why");
            println!(
                "  (both tokens expire in 24 h; `tracevault --data {} token list` shows them)",
                data.display()
            );
        }
        Ok(())
    })?;
    super::service::close(log, &[])?;
    Ok(ExitCode::SUCCESS)
}
