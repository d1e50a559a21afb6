//! One function per command. Each returns the exit code, or an error for `main` to print. The
//! commands hold no policy and no pipeline of their own: they call the libraries (the ingest
//! pipeline and the access policy in core, the engine and settings in replay) and print.

mod bench;
mod demo;
mod log;
mod privacy;
pub mod progress;
mod record;
mod remote;
mod replay;
mod service;

use anyhow::{Context, Result};
use tracevault_core::{Log, LogOptions};
use tracevault_replay::config::Settings;

pub use bench::{BenchArgs, bench};
pub use demo::{DemoArgs, demo};
pub use log::{ingest, sessions, stats};
pub use privacy::{VerifyArgs, audit_list, audit_verify, keys_list, keys_rotate, repair, shred, verify};
pub use record::{RecordArgs, record};
pub use remote::Remote;
pub use replay::{ExportArgs, ReplayArgs, ReplayFormat, export, parse_time, replay};
pub use service::{LoadArgs, ServeArgs, TokenCommand, load, serve, token};

/// What every command is given: the settings resolved once in `main`.
pub struct Ctx {
    pub settings: Settings,
}

impl Ctx {
    pub fn data(&self) -> &std::path::Path {
        &self.settings.data
    }

    /// Opens the log to write to it (creating the data directory and keys on first use).
    pub fn open_to_write(&self) -> Result<Log> {
        self.open(true)
    }

    /// Opens the log to read it: a missing data directory is an error naming it, and nothing is
    /// created.
    pub fn open_to_read(&self) -> Result<Log> {
        self.open(false)
    }

    /// Closes the log: a last checkpoint (a head signed over what this command did), that head
    /// pushed to every configured witness (a refusal said loudly: it is evidence), then closed.
    pub fn close(&self, log: Log) -> Result<()> {
        if self.settings.witnesses.is_empty() {
            return log.close().context("closing the log");
        }
        log.checkpoint().context("closing the log")?;
        for url in &self.settings.witnesses {
            match log.cosign(&tracevault::witness::HttpWitness::new(url)) {
                Ok(c) => tracing::info!(witness = %url, head = c.counter, "cosigned"),
                Err(e) => eprintln!("error: witness {url} did not cosign the newest signed head: {e}"),
            }
        }
        log.close().context("closing the log")
    }

    fn open(&self, create: bool) -> Result<Log> {
        self.open_with(self.settings.log_options(create))
    }

    /// Opens the log to repair it, as `access`.
    pub fn open_to_repair(&self, access: tracevault_core::Access) -> Result<Log> {
        self.open_with(LogOptions { repair: Some(access), ..self.settings.log_options(false) })
    }

    fn open_with(&self, options: LogOptions) -> Result<Log> {
        let data = self.data();
        tracing::debug!(data = %data.display(), create = options.create, "opening the log");
        Log::open(data, options).map_err(|e| {
            // Name the data directory once: most open errors already do.
            let named = e.to_string().contains(&data.display().to_string());
            let e = anyhow::Error::new(e);
            if named { e } else { e.context(format!("opening the log in {}", data.display())) }
        })
    }
}

/// A plain table for the terminal (no borders, like `ls -l`), numbers in `right` columns aligned
/// right.
pub fn table(header: &[&str], right: &[usize]) -> comfy_table::Table {
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::NOTHING).set_header(header.to_vec());
    for &i in right {
        if let Some(column) = table.column_mut(i) {
            column.set_cell_alignment(comfy_table::CellAlignment::Right);
        }
    }
    table
}
