//! `tracevault record`: the recorder on this desktop, delivering to a server.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tracevault_recorder::BatchPolicy;
use tracevault_recorder::capture::x11::X11Capture;
use tracevault_recorder::mask::Policy;
use tracevault_recorder::session::{self, Options};

/// `tracevault record`'s arguments (the server and the recorder token are the global
/// `--server` and `--token`).
#[derive(clap::Args)]
pub struct RecordArgs {
    /// The pseudonymous id of the person recorded.
    #[arg(long)]
    pub user: String,
    /// This device's id (the recorder token's device).
    #[arg(long)]
    pub device: String,
    /// The version of the consent the person gave (recorded in the session as
    /// `recorder.consent`). Recording without one is refused.
    #[arg(long, value_name = "VERSION")]
    pub consent: String,
    /// The masking policy (TOML: secure windows, sensitive apps, the pause hotkey; see
    /// docs/RECORDER.md). Default: the built-in policy.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Where sealed batches wait for the server. Default: $XDG_STATE_HOME/tracevault/spool, else
    /// ~/.local/state/tracevault/spool.
    #[arg(long, value_name = "DIR")]
    pub spool: Option<PathBuf>,
    /// The spool's bound; when full, the oldest batches are dropped and the session records the gap.
    #[arg(long, default_value_t = 256, value_name = "MIB")]
    pub spool_mib: u64,
    /// The session id. Default: the device, the start time and a random suffix.
    #[arg(long)]
    pub session: Option<String>,
    /// The X display. Default: $DISPLAY.
    #[arg(long)]
    pub display: Option<String>,
    /// A batch is cut at this many events...
    #[arg(long, default_value_t = 2000)]
    pub batch_events: usize,
    /// ...or when its first event is this old.
    #[arg(long, default_value_t = 2.0, value_name = "SECONDS")]
    pub batch_seconds: f64,
    /// After the stop, how long to keep delivering what is spooled (the rest waits for the next run).
    #[arg(long, default_value_t = 10.0, value_name = "SECONDS")]
    pub drain_seconds: f64,
    /// A label for the session, KEY=VALUE (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
}

fn default_spool() -> Result<PathBuf> {
    let state = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .context("neither $XDG_STATE_HOME nor $HOME is set: pass --spool")?;
    Ok(state.join("tracevault/spool"))
}

fn seconds(name: &str, s: f64) -> Result<Duration> {
    Duration::try_from_secs_f64(s).map_err(|_| anyhow::anyhow!("--{name}: expected seconds ≥ 0, found {s}"))
}

pub fn record(server: Option<&str>, token: Option<&str>, args: RecordArgs) -> Result<ExitCode> {
    let Some(server) = server else { bail!("record needs --server URL (or $TRACEVAULT_SERVER)") };
    let Some(token) = token else { bail!("record needs a recorder token: --token (or $TRACEVAULT_TOKEN)") };
    if args.consent.trim().is_empty() {
        bail!("--consent: expected the version of the consent the person gave, found an empty string");
    }
    let policy = match &args.policy {
        Some(path) => Policy::load(path)?,
        None => Policy::default_policy(),
    };
    let labels = args
        .labels
        .iter()
        .map(|l| {
            let (k, v) = l.split_once('=').with_context(|| format!("--label {l:?}: expected KEY=VALUE"))?;
            if k.starts_with("recorder.") {
                bail!("--label {l:?}: recorder.* labels are the recorder's own");
            }
            Ok((k.to_owned(), v.to_owned()))
        })
        .collect::<Result<Vec<_>>>()?;
    let batch = BatchPolicy {
        max_events: args.batch_events.max(1),
        max_age: seconds("batch-seconds", args.batch_seconds)?,
    };
    let options = Options {
        server: server.to_owned(),
        token: token.to_owned(),
        user: args.user,
        device: args.device,
        session: args.session,
        consent: args.consent,
        policy,
        spool: match args.spool {
            Some(s) => s,
            None => default_spool()?,
        },
        spool_bytes: args
            .spool_mib
            .max(1)
            .checked_mul(1 << 20)
            .with_context(|| format!("--spool-mib {}: too large", args.spool_mib))?,
        batch,
        drain: seconds("drain-seconds", args.drain_seconds)?,
        labels,
    };

    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone()).context("installing the signal handlers")?;
    }
    let capture = X11Capture::connect(args.display.as_deref())?;
    eprintln!(
        "recording: Ctrl+C (or SIGTERM) ends the session; {} pauses and resumes",
        options.policy.pause_hotkey
    );
    let summary = session::record(Box::new(capture), options, stop)?;
    eprintln!(
        "session {}: {} events recorded, {} keys masked, {} requests left in the spool{}",
        summary.session,
        summary.events,
        summary.masked,
        summary.undelivered,
        if summary.undelivered > 0 { " (delivered by the next run)" } else { "" }
    );
    println!("{}", summary.session);
    Ok(ExitCode::SUCCESS)
}
