//! `tracevault serve` (the HTTP service), `tracevault token` (its API tokens) and `tracevault
//! load` (many recorders against a server).

use std::io::Write;
use std::net::ToSocketAddrs;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::json;
use tracevault::load::{self, LoadOptions};
use tracevault_core::Role;
use tracevault_core::witness::Witness;
use tracevault_service::tokens::{self, NewToken};
use tracevault_service::{Limits, Options, Service, tls};

use super::Ctx;

/// `tracevault serve`'s arguments.
#[derive(clap::Args)]
pub struct ServeArgs {
    /// The address to listen on (port 0: any free port, printed).
    #[arg(long, default_value = "127.0.0.1:8440")]
    pub listen: String,
    /// The TLS certificate chain (PEM); with --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The TLS private key (PEM); with --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve plain HTTP on a non-loopback address (tokens and events then cross the network in
    /// the clear): refused without this flag.
    #[arg(long)]
    pub insecure_http: bool,
    /// Seconds between signed checkpoints while serving (each pushed to the witnesses).
    #[arg(long, default_value_t = 60)]
    pub checkpoint_every: u64,
    /// Largest request body, bytes (as sent).
    #[arg(long, default_value_t = Limits::default().body_bytes_max)]
    pub max_body_bytes: usize,
    /// Most events in one batch.
    #[arg(long, default_value_t = Limits::default().batch_events_max)]
    pub max_batch_events: usize,
    /// Most sessions one token holds open.
    #[arg(long, default_value_t = Limits::default().open_sessions_per_token)]
    pub max_open_sessions: usize,
    /// Most API requests served at once (more get 503 with Retry-After).
    #[arg(long, default_value_t = Limits::default().concurrent_requests)]
    pub max_concurrent: usize,
}

/// Serves the log over HTTP until SIGTERM or Ctrl-C, then drains and signs a checkpoint.
pub fn serve(ctx: &Ctx, args: ServeArgs) -> Result<ExitCode> {
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(tls::Acceptor::from_pem_files(cert, key)?),
        _ => None,
    };
    let addrs: Vec<_> = args
        .listen
        .to_socket_addrs()
        .with_context(|| format!("--listen {}: expected HOST:PORT", args.listen))?
        .collect();
    if tls.is_none() && !args.insecure_http && addrs.iter().any(|a| !a.ip().is_loopback()) {
        bail!(
            "--listen {}: not a loopback address, and no TLS: tokens and keystrokes would cross the network in the \
             clear. Give --tls-cert and --tls-key (or, behind a TLS proxy on the same host, --insecure-http)",
            args.listen
        );
    }
    let log = ctx.open_to_write()?;
    let config = &ctx.settings.config;
    let options = Options {
        limits: Limits {
            body_bytes_max: args.max_body_bytes,
            batch_events_max: args.max_batch_events,
            open_sessions_per_token: args.max_open_sessions,
            concurrent_requests: args.max_concurrent.max(1),
            ..Limits::default()
        },
        reduce: config.reduce(),
        threads: ctx.settings.threads(),
        sensitive_apps: config.sensitive_apps(),
        checkpoint_every: Duration::from_secs(args.checkpoint_every.max(1)),
        witnesses: witnesses(ctx),
        export_dir: None,
    };
    let data = ctx.data().to_owned();
    let service = Service::new(log, &data, options)?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let log = run(service, &args.listen, tls, |addr| {
        println!("tracevault serving {scheme}://{addr} (data {})", data.display());
        Ok(())
    })?;
    close(log, &witnesses(ctx))?;
    Ok(ExitCode::SUCCESS)
}

/// The configured witnesses, each pushed every new signed head.
fn witnesses(ctx: &Ctx) -> Vec<Box<dyn Witness + Send + Sync>> {
    ctx.settings
        .witnesses
        .iter()
        .map(|u| Box::new(tracevault::witness::HttpWitness::new(u)) as Box<dyn Witness + Send + Sync>)
        .collect()
}

/// Serves `service` on `listen` until SIGTERM or Ctrl-C (`ready` told the address once it
/// listens), then drains: requests in flight are answered, and the log is handed back.
pub(super) fn run(
    service: Service,
    listen: &str,
    tls: Option<tls::Acceptor>,
    ready: impl FnOnce(std::net::SocketAddr) -> Result<()>,
) -> Result<tracevault_core::Log> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(std::thread::available_parallelism().map_or(2, |n| n.get()))
        .enable_all()
        .thread_name("tracevault-http")
        .build()
        .context("starting the server's runtime")?;
    runtime.block_on(async {
        let listener =
            tokio::net::TcpListener::bind(listen).await.with_context(|| format!("listening on {listen}"))?;
        ready(listener.local_addr()?)?;
        std::io::stdout().flush()?;
        let log = service.serve(listener, tls, shutdown()).await?;
        anyhow::Ok(log)
    })
}

/// After serving: a signed checkpoint over what this run took in, pushed to the witnesses, and
/// the log closed.
pub(super) fn close(log: tracevault_core::Log, witnesses: &[Box<dyn Witness + Send + Sync>]) -> Result<()> {
    log.checkpoint().context("the closing checkpoint")?;
    tracevault_service::push_to_witnesses(&log, witnesses);
    let frames = log.signed_heads().ok().and_then(|h| h.last().map(|h| h.tree_size)).unwrap_or(0);
    log.close().context("closing the log")?;
    eprintln!("tracevault: drained; the last signed checkpoint covers {frames} frames");
    Ok(())
}

async fn shutdown() {
    let interrupt = tokio::signal::ctrl_c();
    let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return interrupt.await.unwrap_or(()),
    };
    tokio::select! {
        _ = interrupt => {}
        _ = terminate.recv() => {}
    }
    eprintln!("tracevault: stopping; answering the requests in flight");
}

/// `tracevault token` commands.
#[derive(clap::Subcommand)]
pub enum TokenCommand {
    /// Mints a token and prints it (once: only its hash is stored).
    Create {
        /// recorder, ml, auditor, admin or subject.
        #[arg(long)]
        role: Role,
        /// For a recorder: the device whose sessions it writes.
        #[arg(long)]
        device: Option<String>,
        /// For a subject: the person (user id) whose access history it shows, and no one else's.
        #[arg(long)]
        user: Option<String>,
        /// Who holds it (the audit log's actor). Default: the role and the device or OS user.
        #[arg(long)]
        name: Option<String>,
        /// Lifetime: 30d, 12h, 90m (default: never expires).
        #[arg(long, value_parser = tokens::parse_lifetime)]
        expires: Option<u64>,
        #[arg(long)]
        json: bool,
    },
    /// Lists the tokens (never their secrets).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revokes a token by id or name (effective at its next request).
    Revoke {
        id_or_name: String,
        #[arg(long)]
        json: bool,
    },
}

fn when(s: u64) -> String {
    jiff::Timestamp::from_second(s as i64).map_or_else(|_| s.to_string(), |t| t.to_string())
}

pub fn token(ctx: &Ctx, command: TokenCommand) -> Result<ExitCode> {
    let data = ctx.data();
    let mut out = std::io::stdout().lock();
    match command {
        TokenCommand::Create { role, device, user, name, expires, json } => {
            let name = name.unwrap_or_else(|| match (&device, &user) {
                (Some(d), _) => format!("{}-{d}", role.as_str()),
                (None, Some(u)) => format!("{}-{u}", role.as_str()),
                (None, None) => format!(
                    "{}-{}",
                    role.as_str(),
                    super::privacy::os_user().split(' ').next().unwrap_or("cli")
                ),
            });
            let (text, record) =
                tokens::create(data, NewToken { role, name, device, user, expires_in_s: expires })
                    .context("minting a token")?;
            if json {
                writeln!(
                    out,
                    "{}",
                    json!({"token": text, "id": record.id, "name": record.name, "role": role.as_str(),
                    "device": record.device, "user": record.user, "expires_unix_s": record.expires_unix_s})
                )?;
            } else {
                writeln!(out, "{text}")?;
                eprintln!(
                    "token {} ({}, {}{}) minted: shown once, only its hash is kept in {}",
                    record.id,
                    record.name,
                    role.as_str(),
                    record.expires_unix_s.map(|e| format!(", expires {}", when(e))).unwrap_or_default(),
                    data.join(tokens::TOKENS_FILE).display()
                );
            }
        }
        TokenCommand::List { json } => {
            let all = tokens::list(data).context("reading the tokens")?;
            let now = tokens::now_unix_s();
            if json {
                for t in &all {
                    writeln!(
                        out,
                        "{}",
                        json!({"id": t.id, "name": t.name, "role": t.role.as_str(), "device": t.device,
                        "user": t.user, "created_unix_s": t.created_unix_s, "expires_unix_s": t.expires_unix_s,
                        "revoked_unix_s": t.revoked_unix_s, "state": t.state(now).as_str()})
                    )?;
                }
            } else if all.is_empty() {
                writeln!(out, "(no tokens: `tracevault token create --role R` mints one)")?;
            } else {
                let mut table =
                    super::table(&["ID", "NAME", "ROLE", "DEVICE/USER", "CREATED", "EXPIRES", "STATE"], &[]);
                for t in &all {
                    table.add_row(vec![
                        t.id.clone(),
                        t.name.clone(),
                        t.role.as_str().to_owned(),
                        t.device.clone().or_else(|| t.user.clone()).unwrap_or_else(|| "-".into()),
                        when(t.created_unix_s),
                        t.expires_unix_s.map_or_else(|| "never".into(), when),
                        t.state(now).as_str().to_owned(),
                    ]);
                }
                writeln!(out, "{}", table.trim_fmt())?;
            }
        }
        TokenCommand::Revoke { id_or_name, json } => {
            let revoked = tokens::revoke(data, &id_or_name)?;
            for t in revoked {
                if json {
                    writeln!(out, "{}", json!({"revoked": t.id, "name": t.name}))?;
                } else {
                    writeln!(out, "revoked token {} ({})", t.id, t.name)?;
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `tracevault load`'s arguments.
#[derive(clap::Args)]
pub struct LoadArgs {
    /// The server, such as http://127.0.0.1:8440.
    #[arg(long)]
    pub url: String,
    /// A recorder token (its device is the sessions' device) or an admin token. Default:
    /// $TRACEVAULT_TOKEN.
    #[arg(long, env = "TRACEVAULT_TOKEN", hide_env_values = true)]
    pub token: String,
    #[arg(long, default_value_t = 64)]
    pub recorders: usize,
    /// Events per batch.
    #[arg(long, default_value_t = 1000)]
    pub batch: usize,
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// The sessions' device (the recorder token's).
    #[arg(long, default_value = "load")]
    pub device: String,
    /// Session ids start with this (default: load-<unix time>-). The same prefix resumes a run.
    #[arg(long)]
    pub prefix: Option<String>,
    /// Batches per session before a recorder closes it and opens another (0: one session each).
    #[arg(long, default_value_t = 0)]
    pub session_batches: u64,
    /// Events per second to offer, over all recorders (0: as fast as the server acknowledges).
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Send JSON instead of MessagePack.
    #[arg(long)]
    pub json_batches: bool,
    /// Send bodies uncompressed.
    #[arg(long)]
    pub no_zstd: bool,
    /// Seconds a batch is retried after --seconds (a server restarting).
    #[arg(long, default_value_t = 30)]
    pub grace: u64,
    /// Write every acknowledged batch here (`session seq_first events` per line).
    #[arg(long, value_name = "FILE")]
    pub acks: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

pub fn load(args: LoadArgs, ca_cert: Option<&std::path::Path>) -> Result<ExitCode> {
    if args.recorders == 0 || args.batch == 0 || args.seconds <= 0.0 {
        bail!("--recorders, --batch and --seconds must be above zero");
    }
    let prefix = args.prefix.clone().unwrap_or_else(|| format!("load-{}-", tokens::now_unix_s()));
    let options = LoadOptions {
        url: args.url.clone(),
        token: args.token.clone(),
        recorders: args.recorders,
        batch: args.batch,
        seconds: args.seconds,
        device: args.device.clone(),
        prefix,
        session_batches: args.session_batches,
        rate: args.rate,
        msgpack: !args.json_batches,
        zstd: !args.no_zstd,
        grace: Duration::from_secs(args.grace),
        pool: None,
        ca_cert: ca_cert.map(std::path::Path::to_owned),
        prebuilt_batches: 0,
    };
    let bar = super::progress::spinner("load", args.json);
    let report = load::run(options, &|events| bar.set_message(format!("{events} events acknowledged")));
    bar.finish_and_clear();
    if let Some(path) = &args.acks {
        load::write_acks(path, &report).with_context(|| format!("writing {}", path.display()))?;
    }
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(
            out,
            "{}",
            json!({
                "recorders": args.recorders, "batch": args.batch, "seconds": report.seconds,
                "batches": report.batches, "events": report.events, "events_per_s": report.events_per_s(),
                "p50_ms": report.latency_ms(0.5), "p99_ms": report.latency_ms(0.99), "p999_ms": report.latency_ms(0.999),
                "retries": report.retries, "duplicates": report.duplicates, "errors": report.errors,
            })
        )?;
    } else {
        writeln!(
            out,
            "{} recorders, {}-event batches, {:.1} s: {} batches, {} events acknowledged: {:.0} events/s; ack latency p50 {:.2} ms, p99 {:.2} ms, p999 {:.2} ms; {} retries, {} errors",
            args.recorders,
            args.batch,
            report.seconds,
            report.batches,
            report.events,
            report.events_per_s(),
            report.latency_ms(0.5),
            report.latency_ms(0.99),
            report.latency_ms(0.999),
            report.retries,
            report.errors.len()
        )?;
        for e in report.errors.iter().take(10) {
            writeln!(out, "error: {e}")?;
        }
    }
    Ok(if report.errors.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
