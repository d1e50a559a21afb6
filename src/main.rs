//! The `tracevault` command line. Thin: it parses arguments, calls the libraries, and maps errors
//! to exit codes (0 success, 1 failure, 2 usage; a closed pipe is success).

mod commands;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracevault_replay::config::{Flags, Settings};

#[derive(Parser)]
#[command(name = "tracevault", version, about = "Event-sourced session replay engine for human input")]
struct Cli {
    /// The data directory. Default: $TRACEVAULT_DATA, else the config file's `data`, else
    /// ./tracevault-data (created on first use).
    #[arg(long, global = true, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Where the master and signing keys are (created on first use). Default: $TRACEVAULT_KEY_DIR,
    /// else the config file's `key_dir`, else $XDG_CONFIG_HOME/tracevault, else
    /// ~/.config/tracevault. Must be outside the data
    /// directory. $TRACEVAULT_MASTER_KEY / $TRACEVAULT_SIGNING_KEY (hex) take precedence.
    #[arg(long, global = true, value_name = "DIR")]
    key_dir: Option<PathBuf>,
    /// The config file (TOML). Default: $TRACEVAULT_CONFIG, else ~/.config/tracevault/config.toml
    /// if it exists. Flags and environment variables win over it.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// A witness to push each new signed head to, to be cosigned (repeatable). Default:
    /// $TRACEVAULT_WITNESSES (comma-separated), else the config file's `witnesses`.
    #[arg(long = "witness", global = true, value_name = "URL")]
    witnesses: Vec<String>,
    /// Go through this tracevault server instead of opening the data directory: `sessions`,
    /// `replay`, `export`, `audit` and `shred` (with --token). Default: $TRACEVAULT_SERVER.
    #[arg(long, global = true, value_name = "URL", env = "TRACEVAULT_SERVER")]
    server: Option<String>,
    /// The CA certificate (PEM) a --server's TLS certificate must chain to, for a private CA or a
    /// self-signed server. Default: $TRACEVAULT_CA_CERT, else Mozilla's roots.
    #[arg(long, global = true, value_name = "FILE", env = "TRACEVAULT_CA_CERT")]
    ca_cert: Option<PathBuf>,
    /// The API token for --server. Default: $TRACEVAULT_TOKEN.
    #[arg(long, global = true, value_name = "TOKEN", env = "TRACEVAULT_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// No progress bars (they are also off when stderr is not a terminal). Logs: RUST_LOG.
    #[arg(long, short, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The whole product on an embedded store: generates realistic sessions and adds the real
    /// SapiMouse recordings, ingests them (encrypted, durable), replays them into trajectories
    /// exported as Parquet and JSON Lines, verifies the log, and prints a summary.
    Demo(commands::DemoArgs),
    /// Records this desktop's keyboard and mouse (X11) into a session on --server, with a
    /// recorder --token: masked on the device (password fields, sensitive apps, a pause hotkey),
    /// sealed to the server's key and spooled before anything is sent. Ends on Ctrl+C or SIGTERM.
    Record(commands::RecordArgs),
    /// Appends JSON Lines (or, for `.msgpack` files, MessagePack batches) to the log. `-` reads
    /// JSON Lines from stdin.
    ///
    /// Every record is checked before anything is stored (a bad one is named with FILE:LINE, and
    /// nothing of its file is stored); running the same ingest again after any failure stores
    /// each event once.
    Ingest {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Lists sessions: id, user, device, start, duration, events, bytes.
    Sessions {
        /// Only this person's sessions.
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Totals: sessions, events, bytes on disk, bytes per event.
    Stats {
        #[arg(long)]
        json: bool,
    },
    /// Checks the whole log: every frame's checksum, every sealed segment's footer, every frame
    /// against its position in the Merkle tree, every signed head, and the access audit log.
    /// Names the first bad frame. Needs no secret key with --public-key.
    Verify {
        /// The Ed25519 public key the heads must be signed with (64 hex digits, or a file such as
        /// the key directory's signing.pub). Default: the log's own.
        #[arg(long, value_name = "HEX|FILE")]
        public_key: Option<String>,
        /// Prove one session instead: each of its sealed blocks is in the log a signed head
        /// commits to (an audit path per block, checked against the frames on disk).
        #[arg(long, value_name = "SESSION")]
        session: Option<String>,
        /// A witness's public key (64 hex digits, as `witness serve` prints it): the newest signed
        /// head must carry its cosignature (repeatable).
        #[arg(long = "witness-key", value_name = "HEX")]
        witness_keys: Vec<String>,
        /// Accept a history with repair heads (each is still listed). Without it, a repaired
        /// history fails: the heads cannot vouch for what came before a repair.
        #[arg(long)]
        allow_repaired: bool,
        #[arg(long)]
        json: bool,
    },
    /// Re-anchors a log whose integrity state was lost or does not verify (signed heads missing,
    /// damaged or cut short, frames that no longer match the newest head, an audit log cut short):
    /// records what was found in the audit log, moves the evidence aside (never deleting it), and
    /// signs a repair head that records the discontinuity. Every later `verify` reports it.
    Repair {
        /// Why (recorded in the audit log).
        #[arg(long)]
        purpose: String,
        #[arg(long)]
        ticket: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// A witness: a separate process, with its own key, that cosigns a log's new signed heads only
    /// when they are consistent with the last one it cosigned.
    Witness {
        #[command(subcommand)]
        command: WitnessCommand,
    },
    /// An auditor's replay of one session, with its integrity proven first and the read recorded
    /// in the access audit log: the reduced actions as a timeline (or JSONL steps), or with
    /// --raw the stored events as interchange JSONL.
    Replay {
        session: String,
        /// Why the session is read (recorded in the access audit log).
        #[arg(long)]
        purpose: String,
        /// The request this read answers (recorded).
        #[arg(long)]
        ticket: Option<String>,
        /// From this time in the session: seconds, or with a unit (1500ms, 2m).
        #[arg(long, value_parser = commands::parse_time)]
        from: Option<u64>,
        /// Up to this time in the session.
        #[arg(long, value_parser = commands::parse_time)]
        to: Option<u64>,
        /// The stored events themselves, as the interchange JSON Lines.
        #[arg(long)]
        raw: bool,
        /// Steps as a readable timeline or as JSON Lines.
        #[arg(long, default_value = "text", value_parser = ["text", "jsonl"])]
        format: String,
    },
    /// Exports ML trajectories (steps grouped in episodes) to Parquet or JSON Lines, redacted by
    /// default, with meta/info.json describing the export.
    Export(commands::ExportArgs),
    /// Crypto-erases one person: destroys their data key, so their events can never be decrypted
    /// again, by anyone. Recorded in the access audit log.
    Shred {
        #[arg(long, value_name = "USER")]
        user: String,
        /// Why (recorded in the audit log).
        #[arg(long, default_value = "erasure request")]
        purpose: String,
        /// The request's ticket (recorded in the audit log).
        #[arg(long)]
        ticket: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Serves the store over HTTP: recorders ingest, auditors replay, ML exports, admins erase;
    /// each with a token of its role. Holds the data directory's lock until SIGTERM or Ctrl-C,
    /// then answers the requests in flight and signs a checkpoint.
    Serve(commands::ServeArgs),
    /// API tokens for the server (stored as hashes in the data directory).
    Token {
        #[command(subcommand)]
        command: commands::TokenCommand,
    },
    /// Plays many recorders against a server, bounded in time, and prints acked events/s and
    /// the ack latency percentiles.
    Load(commands::LoadArgs),
    /// Runs the benchmarks (the alternatives and the machine's limits measured in the same run)
    /// and writes report.json, report.md and charts; `bench compare OLD NEW` flags regressions.
    Bench(commands::BenchArgs),
    /// The key store.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// The access audit log: who read what, when, why.
    Audit {
        #[command(subcommand)]
        command: Option<AuditCommand>,
        /// One JSON object per entry.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum WitnessCommand {
    /// Serves the witness over HTTP until interrupted; prints its public key and address.
    Serve {
        /// The address to listen on (port 0: any free port, printed).
        #[arg(long, default_value = "127.0.0.1:7000")]
        listen: String,
        /// The witness's own state directory (its key, the heads it cosigned): never a log's.
        #[arg(long, value_name = "DIR")]
        state: PathBuf,
        /// Serve only the log with this public key (repeatable). Default: any log, its first head
        /// trusted on first use.
        #[arg(long = "log-key", value_name = "HEX")]
        log_keys: Vec<String>,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Re-wraps every person's data key under a new master key (crash-safe; no data rewritten).
    Rotate {
        #[arg(long)]
        json: bool,
    },
    /// Lists the data keys (ids, person hashes, live or erased; never key material).
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Checks every audit entry against the roots the signed heads commit to.
    Verify {
        /// The Ed25519 public key (hex or a file); default: the log's own.
        #[arg(long, value_name = "HEX|FILE")]
        public_key: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Logs go to stderr, filtered by RUST_LOG (warnings by default).
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    commands::progress::QUIET.store(cli.quiet, std::sync::atomic::Ordering::Relaxed);
    if let Command::Demo(args) = cli.command {
        return finish(commands::demo(args));
    }
    if let Command::Witness { command: WitnessCommand::Serve { listen, state, log_keys } } = cli.command {
        return finish(tracevault::witness::serve(&listen, state, &log_keys).map(|()| ExitCode::SUCCESS));
    }
    if let Command::Record(args) = cli.command {
        return finish(commands::record(cli.server.as_deref(), cli.token.as_deref(), args));
    }
    if let Command::Bench(args) = cli.command {
        return finish(commands::bench(args));
    }
    if let Command::Load(args) = cli.command {
        return finish(commands::load(args, cli.ca_cert.as_deref()));
    }
    if let Some(url) = &cli.server {
        return finish(remote(url, cli.token.as_deref(), cli.ca_cert.as_deref(), cli.command));
    }
    let flags = Flags { data: cli.data, key_dir: cli.key_dir, config: cli.config, witnesses: cli.witnesses };
    let settings = match Settings::resolve(&flags, &|name| std::env::var_os(name)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {}", message(&anyhow::Error::new(e)));
            return ExitCode::from(2);
        }
    };
    let ctx = commands::Ctx { settings };
    let ctx = &ctx;
    let result = match cli.command {
        Command::Demo(_)
        | Command::Witness { .. }
        | Command::Load(_)
        | Command::Record(_)
        | Command::Bench(_) => {
            unreachable!("run above")
        }
        Command::Serve(args) => commands::serve(ctx, args),
        Command::Token { command } => commands::token(ctx, command),
        Command::Ingest { files, json } => commands::ingest(ctx, &files, json),
        Command::Sessions { user, json } => commands::sessions(ctx, user.as_deref(), json),
        Command::Stats { json } => commands::stats(ctx, json),
        Command::Verify { public_key, session, witness_keys, allow_repaired, json } => commands::verify(
            ctx,
            commands::VerifyArgs {
                public_key: public_key.as_deref(),
                session: session.as_deref(),
                witness_keys: &witness_keys,
                allow_repaired,
                json,
            },
        ),
        Command::Repair { purpose, ticket, json } => commands::repair(ctx, &purpose, ticket.as_deref(), json),
        Command::Replay { session, purpose, ticket, from, to, raw, format } => commands::replay(
            ctx,
            commands::ReplayArgs {
                session: &session,
                purpose: &purpose,
                ticket: ticket.as_deref(),
                from,
                to,
                raw,
                format: if format == "jsonl" {
                    commands::ReplayFormat::Jsonl
                } else {
                    commands::ReplayFormat::Text
                },
            },
        ),
        Command::Export(args) => commands::export(ctx, args),
        Command::Shred { user, purpose, ticket, json } => {
            commands::shred(ctx, &user, &purpose, ticket.as_deref(), json)
        }
        Command::Keys { command: KeysCommand::Rotate { json } } => commands::keys_rotate(ctx, json),
        Command::Keys { command: KeysCommand::List { json } } => commands::keys_list(ctx, json),
        Command::Audit { command: None, json } => commands::audit_list(ctx, json),
        Command::Audit { command: Some(AuditCommand::Verify { public_key, json }), .. } => {
            commands::audit_verify(ctx, public_key.as_deref(), json)
        }
    };
    finish(result)
}

/// A command through a server (`--server`): the server holds the store, its keys and its lock.
fn remote(
    url: &str,
    token: Option<&str>,
    ca_cert: Option<&std::path::Path>,
    command: Command,
) -> anyhow::Result<ExitCode> {
    let Some(token) = token else {
        anyhow::bail!(
            "--server {url} needs a token: --token, or $TRACEVAULT_TOKEN (`tracevault token create` on the server mints one)"
        );
    };
    let server = commands::Remote::new(url, token, ca_cert)?;
    match command {
        Command::Sessions { user, json } => server.sessions(user.as_deref(), json),
        Command::Replay { session, purpose, ticket, from, to, raw, format } => {
            server.replay(commands::ReplayArgs {
                session: &session,
                purpose: &purpose,
                ticket: ticket.as_deref(),
                from,
                to,
                raw,
                format: if format == "jsonl" {
                    commands::ReplayFormat::Jsonl
                } else {
                    commands::ReplayFormat::Text
                },
            })
        }
        Command::Export(args) => server.export(args),
        Command::Audit { command: None, json } => server.audit(json),
        Command::Audit { command: Some(AuditCommand::Verify { public_key: None, json }), .. } => {
            server.audit_verify(json)
        }
        Command::Shred { user, purpose, ticket, json } => {
            server.shred(&user, &purpose, ticket.as_deref(), json)
        }
        _ => anyhow::bail!(
            "--server: only sessions, replay, export, audit, audit verify (without --public-key) and shred go through a \
             server; this command works on the data directory (run it on the server's host, or without --server)"
        ),
    }
}

fn finish(result: anyhow::Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", message(&e));
            ExitCode::from(1)
        }
    }
}

/// The error and its causes, each said once: a cause whose text its parent already carries
/// (an I/O error quoted in its context) is not repeated.
fn message(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
    }
    out
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<std::io::Error>())
        .any(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_already_quoted_by_its_context_is_said_once() {
        // The shape of "Permission denied (os error 13): Permission denied (os error 13)": an
        // error whose message quotes its source, printed with its causes.
        let io = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let quoted = format!("/data/index.redb: {io}");
        let e = anyhow::Error::new(io).context(quoted);
        let text = message(&e);
        assert_eq!(text.matches("permission denied").count(), 1, "{text}");
        // A cause the context does not quote is kept.
        let e =
            anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::NotFound)).context("reading a.jsonl");
        assert_eq!(message(&e), "reading a.jsonl: entity not found");
    }
}
