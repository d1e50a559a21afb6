//! The `tracevault` command line. Thin: it parses arguments, calls the libraries, and maps errors
//! to exit codes (0 success, 1 failure, 2 usage; a closed pipe is success).

mod commands;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracevault_codecs::block::DEFAULT_ZSTD_LEVEL;

#[derive(Parser)]
#[command(name = "tracevault", version, about = "Event-sourced session replay engine for human input")]
struct Cli {
    /// The data directory. Default: $TRACEVAULT_DATA, else ./tracevault-data (created on first use).
    #[arg(long, global = true, value_name = "DIR")]
    data: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the block codec over real human mouse input (SapiMouse) and prints what it stores:
    /// bytes per event against JSONL, encode and decode rates, and a checked round trip.
    Demo {
        /// SapiMouse recordings to use (a folder of user*/*.csv). Default: ../shared/data/sapimouse
        /// if present, else the fixtures subset in this repository.
        #[arg(long)]
        sapimouse: Option<PathBuf>,
        /// Events per block.
        #[arg(long, default_value_t = 4096)]
        block_events: usize,
        /// zstd level for the blocks.
        #[arg(long, default_value_t = DEFAULT_ZSTD_LEVEL)]
        level: i32,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Appends JSON Lines (or, for `.msgpack` files, MessagePack batches) to the log. `-` reads
    /// JSON Lines from stdin. A malformed record rejects its whole batch: nothing of it is stored.
    Ingest {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Lines validated and stored together.
        #[arg(long, default_value_t = tracevault::ingest::BATCH_LINES_MAX)]
        batch_lines: usize,
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
    /// Checks every frame's checksum and every sealed segment's footer; names the first bad frame.
    Verify {
        #[arg(long)]
        json: bool,
    },
}

fn data_dir(flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| std::env::var_os("TRACEVAULT_DATA").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("tracevault-data"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let data = data_dir(cli.data);
    let result = match cli.command {
        Command::Demo { sapimouse, block_events, level, json } => {
            commands::demo(sapimouse, block_events, level, json)
        }
        Command::Ingest { files, batch_lines, json } => commands::ingest(&data, &files, batch_lines, json),
        Command::Sessions { user, json } => commands::sessions(&data, user.as_deref(), json),
        Command::Stats { json } => commands::stats(&data, json),
        Command::Verify { json } => commands::verify(&data, json),
    };
    match result {
        Ok(code) => code,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<std::io::Error>())
        .any(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
}
