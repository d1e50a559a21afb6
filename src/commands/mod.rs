//! One function per command. Each returns the exit code, or an error for `main` to print. The
//! commands hold no policy and no pipeline of their own: they call the libraries (the ingest
//! pipeline and the access policy in core, the engine and settings in replay) and print.

mod demo;
mod log;
mod privacy;
pub mod progress;
mod replay;

use anyhow::Result;
use tracevault_core::Log;
use tracevault_replay::config::Settings;

pub use demo::{DemoArgs, demo};
pub use log::{ingest, sessions, stats};
pub use privacy::{audit_list, audit_verify, keys_list, keys_rotate, shred, verify};
pub use replay::{ExportArgs, ReplayArgs, ReplayFormat, export, parse_time, replay};

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

    fn open(&self, create: bool) -> Result<Log> {
        let data = self.data();
        tracing::debug!(data = %data.display(), create, "opening the log");
        Log::open(data, self.settings.log_options(create)).map_err(|e| {
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
