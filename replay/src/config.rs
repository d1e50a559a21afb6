//! Settings, resolved once by a front end and passed down (no process globals): the optional
//! config file (TOML, every key optional, unknown keys an error naming the line), environment
//! variables and flags, in that order of precedence, lowest first. The file is `--config FILE`,
//! else `$TRACEVAULT_CONFIG`, else `~/.config/tracevault/config.toml` when it exists.
//!
//! ```toml
//! data = "/var/lib/tracevault"          # the data directory (default ./tracevault-data)
//! key_dir = "/etc/tracevault/keys"      # where the master and signing keys are
//! witnesses = ["http://witness-a:7000"] # where each new signed head is sent to be cosigned
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

use std::ffi::OsString;

use serde::Deserialize;
use tracevault_core::keys::{ENV_KEY_DIR, KeyError};
use tracevault_core::{KeySource, LogOptions};

/// Why settings could not be resolved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("{path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error(transparent)]
    Keys(#[from] KeyError),
}

type Result<T> = std::result::Result<T, ConfigError>;

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub data: Option<PathBuf>,
    pub key_dir: Option<PathBuf>,
    pub witnesses: Option<Vec<String>>,
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
        toml::from_str(text).map_err(|e| ConfigError::File { path: path.to_owned(), reason: e.to_string() })
    }

    /// The config file in effect: `explicit`, else `$TRACEVAULT_CONFIG`, else the user's
    /// `~/.config/tracevault/config.toml` if it exists; no file is the default config.
    pub fn load(explicit: Option<&Path>, vars: &dyn Fn(&str) -> Option<OsString>) -> Result<Config> {
        let var = |name: &str| vars(name).filter(|v| !v.is_empty());
        let from_env = var("TRACEVAULT_CONFIG").map(PathBuf::from);
        let path = match explicit.map(Path::to_owned).or(from_env) {
            Some(p) => p,
            None => {
                let base = var("XDG_CONFIG_HOME")
                    .map(PathBuf::from)
                    .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".config")));
                match base.map(|b| b.join("tracevault").join("config.toml")) {
                    Some(p) if p.is_file() => p,
                    _ => return Ok(Config::default()),
                }
            }
        };
        let text = std::fs::read_to_string(&path).map_err(|e| ConfigError::File {
            path: path.clone(),
            reason: format!("reading the config file: {e}"),
        })?;
        Config::parse(&text, &path)
    }

    /// The reduction thresholds, the defaults overridden by `[replay]`.
    pub fn reduce(&self) -> crate::ReduceConfig {
        let mut c = crate::ReduceConfig::default();
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
        self.export
            .sensitive_apps
            .clone()
            .unwrap_or_else(|| crate::redact::SENSITIVE_APPS.iter().map(|s| (*s).to_owned()).collect())
    }
}

/// What a front end is told on its command line (each wins over the environment and the file).
#[derive(Clone, Debug, Default)]
pub struct Flags {
    pub data: Option<PathBuf>,
    pub key_dir: Option<PathBuf>,
    pub config: Option<PathBuf>,
    /// `--witness URL`, repeatable.
    pub witnesses: Vec<String>,
}

/// Everything a front end needs to open the log and replay it, resolved once.
#[derive(Clone, Debug)]
pub struct Settings {
    /// `--data`, else `$TRACEVAULT_DATA`, else the file's `data`, else `./tracevault-data`.
    pub data: PathBuf,
    /// `--key-dir`, else `$TRACEVAULT_KEY_DIR`, else the file's `key_dir`, else the user's config
    /// directory; keys given in `$TRACEVAULT_MASTER_KEY` / `$TRACEVAULT_SIGNING_KEY` win.
    pub keys: KeySource,
    /// The witnesses each new signed head is pushed to: `--witness`, else `$TRACEVAULT_WITNESSES`
    /// (comma-separated), else the file's `witnesses`.
    pub witnesses: Vec<String>,
    pub config: Config,
}

impl Settings {
    /// Resolves the settings from `flags`, the variables `vars` gives (the process's environment,
    /// or a test's) and the config file they name.
    pub fn resolve(flags: &Flags, vars: &dyn Fn(&str) -> Option<OsString>) -> Result<Settings> {
        let config = Config::load(flags.config.as_deref(), vars)?;
        let var = |name: &str| vars(name).filter(|v| !v.is_empty());
        let data = flags
            .data
            .clone()
            .or_else(|| var("TRACEVAULT_DATA").map(PathBuf::from))
            .or_else(|| config.data.clone())
            .unwrap_or_else(|| PathBuf::from("tracevault-data"));
        // `--key-dir`, else $TRACEVAULT_KEY_DIR, else the file's `key_dir`: given to the key source
        // as its directory variable, so a flag or the file is enough even without $HOME.
        let key_dir: Option<OsString> = flags
            .key_dir
            .clone()
            .map(OsString::from)
            .or_else(|| var(ENV_KEY_DIR))
            .or_else(|| config.key_dir.clone().map(OsString::from));
        let keys =
            KeySource::from_vars(&|name| if name == ENV_KEY_DIR { key_dir.clone() } else { vars(name) })?;
        let witnesses = if !flags.witnesses.is_empty() {
            flags.witnesses.clone()
        } else if let Some(list) = var("TRACEVAULT_WITNESSES") {
            list.to_string_lossy()
                .split(',')
                .map(str::trim)
                .filter(|w| !w.is_empty())
                .map(str::to_owned)
                .collect()
        } else {
            config.witnesses.clone().unwrap_or_default()
        };
        Ok(Settings { data, keys, witnesses, config })
    }

    /// The log's options: the defaults, the file's `[log]`, the keys; `create` for commands that
    /// write (a command that only reads never creates a data directory or a key).
    pub fn log_options(&self, create: bool) -> LogOptions {
        let mut options = LogOptions { keys: Some(self.keys.clone()), create, ..LogOptions::default() };
        if let Some(n) = self.config.log.block_events {
            options.block_events_max = n;
        }
        if let Some(level) = self.config.log.zstd_level {
            options.zstd_level = level;
        }
        options
    }

    /// Replay threads (0: one per core).
    pub fn threads(&self) -> usize {
        self.config.replay.threads.unwrap_or(0)
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

#[cfg(test)]
mod resolution_tests {
    use super::*;

    #[test]
    fn flags_win_over_the_environment_which_wins_over_the_file() {
        let dir = std::env::temp_dir().join(format!("tracevault-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(&file, "data = \"/from/file\"\nkey_dir = \"/keys/file\"\n").unwrap();
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| OsString::from(v))
        };
        let flags = Flags { config: Some(file.clone()), ..Flags::default() };
        let s = Settings::resolve(&flags, &env(&[("HOME", "/home/x")])).unwrap();
        assert_eq!(s.data, Path::new("/from/file"));
        assert_eq!(s.keys.dir, Path::new("/keys/file"));
        let vars = env(&[
            ("HOME", "/home/x"),
            ("TRACEVAULT_DATA", "/from/env"),
            ("TRACEVAULT_KEY_DIR", "/keys/env"),
        ]);
        let s = Settings::resolve(&flags, &vars).unwrap();
        assert_eq!(
            (s.data.as_path(), s.keys.dir.as_path()),
            (Path::new("/from/env"), Path::new("/keys/env"))
        );
        let flags = Flags { data: Some("/flag".into()), key_dir: Some("/keys/flag".into()), ..flags };
        let s = Settings::resolve(&flags, &vars).unwrap();
        assert_eq!((s.data.as_path(), s.keys.dir.as_path()), (Path::new("/flag"), Path::new("/keys/flag")));
        assert!(!s.log_options(false).create);
        // Without $HOME, a key directory from the flag (or the file) is enough.
        let s = Settings::resolve(&flags, &env(&[])).unwrap();
        assert_eq!(s.keys.dir, Path::new("/keys/flag"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
