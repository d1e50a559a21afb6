//! The optional config file: TOML, every key optional, unknown keys an error naming the line.
//! Found at `--config FILE`, else `$TRACEVAULT_CONFIG`, else `~/.config/tracevault/config.toml`
//! when it exists. Command-line flags and environment variables win over it.
//!
//! ```toml
//! data = "/var/lib/tracevault"          # the data directory (default ./tracevault-data)
//! key_dir = "/etc/tracevault/keys"      # where the master and signing keys are
//!
//! [log]
//! block_events = 4096                   # events per sealed block
//! zstd_level = 1                        # block compression
//!
//! [replay]
//! threads = 0                           # 0: one per core
//! wait_min_ms = 1000                    # an idle gap this long is a wait step
//! episode_gap_ms = 60000                # an idle gap this long starts a new episode
//! split_on_focus = false                # whether a focus change starts a new episode
//!
//! [export]
//! sensitive_apps = ["1password", "signal"]   # replaces the default list
//! ```

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub data: Option<PathBuf>,
    pub key_dir: Option<PathBuf>,
    #[serde(default)]
    pub log: LogSection,
    #[serde(default)]
    pub replay: ReplaySection,
    #[serde(default)]
    pub export: ExportSection,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    pub block_events: Option<usize>,
    pub zstd_level: Option<i32>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ReplaySection {
    pub threads: Option<usize>,
    pub wait_min_ms: Option<u64>,
    pub episode_gap_ms: Option<u64>,
    pub split_on_focus: Option<bool>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExportSection {
    pub sensitive_apps: Option<Vec<String>>,
}

impl Config {
    /// Parses a config file's text; errors name the file, line and key.
    pub fn parse(text: &str, path: &Path) -> Result<Config> {
        toml::from_str(text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }

    /// The config file in effect: `explicit`, else `$TRACEVAULT_CONFIG`, else the user's
    /// `~/.config/tracevault/config.toml` if it exists; no file is the default config.
    pub fn load(explicit: Option<&Path>) -> Result<Config> {
        let from_env = std::env::var_os("TRACEVAULT_CONFIG").filter(|v| !v.is_empty()).map(PathBuf::from);
        let path = match explicit.map(Path::to_owned).or(from_env) {
            Some(p) => p,
            None => {
                let base = std::env::var_os("XDG_CONFIG_HOME")
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from)
                    .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")));
                match base.map(|b| b.join("tracevault").join("config.toml")) {
                    Some(p) if p.is_file() => p,
                    _ => return Ok(Config::default()),
                }
            }
        };
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading the config file {}", path.display()))?;
        Config::parse(&text, &path)
    }

    /// The reduction thresholds, the defaults overridden by `[replay]`.
    pub fn reduce(&self) -> tracevault_replay::ReduceConfig {
        let mut c = tracevault_replay::ReduceConfig::default();
        if let Some(v) = self.replay.wait_min_ms {
            c.wait_min_ms = v;
        }
        if let Some(v) = self.replay.episode_gap_ms {
            c.episode_gap_ms = v;
        }
        if let Some(v) = self.replay.split_on_focus {
            c.split_on_focus = v;
        }
        c
    }

    /// The sensitive apps of the default redaction.
    pub fn sensitive_apps(&self) -> Vec<String> {
        self.export.sensitive_apps.clone().unwrap_or_else(|| {
            tracevault_replay::redact::SENSITIVE_APPS.iter().map(|s| (*s).to_owned()).collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_example_parses_and_unknown_keys_are_named() {
        let example: String = include_str!("config.rs")
            .lines()
            .skip_while(|l| !l.starts_with("//! ```toml"))
            .skip(1)
            .take_while(|l| !l.starts_with("//! ```"))
            .map(|l| l.trim_start_matches("//!").trim_start().to_owned() + "\n")
            .collect();
        let c = Config::parse(&example, Path::new("example.toml")).unwrap();
        assert_eq!(c.log.block_events, Some(4096));
        assert_eq!(c.reduce().episode_gap_ms, 60_000);
        assert_eq!(c.sensitive_apps(), ["1password", "signal"]);
        let err = Config::parse("[log]\nblock_event = 5\n", Path::new("c.toml")).unwrap_err().to_string();
        assert!(err.contains("c.toml") && err.contains("block_event") && err.contains("line 2"), "{err}");
    }
}
