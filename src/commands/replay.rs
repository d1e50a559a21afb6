//! `tracevault replay` (an auditor's view of one session) and `tracevault export` (ML
//! trajectories, redacted by default).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use serde_json::json;
use tracevault_codecs::{Record, jsonl};
use tracevault_core::Role;
use tracevault_replay::export::{ExportOptions, Format};
use tracevault_replay::timeline;
use tracevault_replay::{AuditedReplay, Engine, Policy, Selection};

use super::Ctx;
use super::privacy::cli_access;

/// A time since the session started: plain numbers are seconds; `us`, `ms`, `s`, `m`, `h`
/// suffixes say otherwise (`1500ms`, `2m`, `1.5s`).
pub fn parse_time(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 =
        number.parse().map_err(|_| format!("{text:?}: expected a time such as 90, 1500ms or 2m"))?;
    let scale = match unit {
        "" | "s" => 1e6,
        "us" => 1.0,
        "ms" => 1e3,
        "m" | "min" => 60e6,
        "h" => 3600e6,
        other => return Err(format!("{text:?}: unknown unit {other:?}, expected us, ms, s, m or h")),
    };
    Ok((value * scale).round() as u64)
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum ReplayFormat {
    Text,
    Jsonl,
}

pub struct ReplayArgs<'a> {
    pub session: &'a str,
    pub purpose: &'a str,
    pub ticket: Option<&'a str>,
    pub from: Option<u64>,
    pub to: Option<u64>,
    pub raw: bool,
    pub format: ReplayFormat,
}

/// An auditor replays one session: its integrity proven first, the access recorded, then the raw
/// events (interchange JSONL) or the steps (JSONL or a timeline).
pub fn replay(ctx: &Ctx, args: ReplayArgs<'_>) -> Result<ExitCode> {
    if args.purpose.trim().is_empty() {
        bail!("--purpose must say why this session is read (it is recorded in the access audit log)");
    }
    let log = ctx.open_to_read()?;
    let access = cli_access(Role::Auditor, args.purpose, args.ticket);
    let engine = Engine::new(ctx.settings.config.reduce(), ctx.settings.threads())?;
    let range = args.from.unwrap_or(0)..=args.to.unwrap_or(u64::MAX);
    let replayed = engine
        .audited_replay(&log, &access, args.session, range, args.raw)
        .with_context(|| format!("replaying session {}", args.session))?;
    ctx.close(log)?;
    let AuditedReplay { session, raw, .. } = &replayed;
    let mut out = std::io::stdout().lock();
    if args.raw {
        // Exactly what was stored, as the recorder would have sent it: re-ingestable.
        let mut line = Vec::new();
        jsonl::write_record(&mut line, &Record::Session(session.meta.clone()))?;
        out.write_all(&line)?;
        for event in raw {
            line.clear();
            jsonl::write_record(
                &mut line,
                &Record::Event { session: session.meta.session.clone(), event: event.clone() },
            )?;
            out.write_all(&line)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    match args.format {
        ReplayFormat::Jsonl => {
            for step in &session.steps {
                writeln!(out, "{}", step.to_json(&session.meta.session))?;
            }
        }
        ReplayFormat::Text => out.write_all(timeline::render(&replayed).as_bytes())?,
    }
    Ok(ExitCode::SUCCESS)
}

/// `tracevault export`'s arguments.
#[derive(clap::Args)]
pub struct ExportArgs {
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    #[arg(long, default_value = "parquet", value_parser = parse_format)]
    pub format: Format,
    /// default: PII in typed text replaced, sensitive apps timing-only, user and session ids
    /// hashed; none: as recorded (an auditor's export).
    #[arg(long = "redaction", default_value = "default", value_parser = parse_policy)]
    pub policy: Policy,
    /// These sessions only.
    #[arg(long, num_args = 1.., value_name = "SESSION")]
    pub sessions: Vec<String>,
    /// This person's sessions only.
    #[arg(long)]
    pub user: Option<String>,
    /// Why (recorded in the access audit log); required with --redaction none.
    #[arg(long)]
    pub purpose: Option<String>,
    #[arg(long)]
    pub ticket: Option<String>,
    /// Replay threads (0: the config file's, else one per core). The output is the same for any number.
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// The key user and session ids are hashed with (64 hex digits); default: a random key per
    /// export, so two exports cannot be joined on the person.
    #[arg(long, value_name = "HEX")]
    pub user_key: Option<String>,
    #[arg(long)]
    pub json: bool,
}

fn parse_format(s: &str) -> Result<Format, String> {
    s.parse()
}

fn parse_policy(s: &str) -> Result<Policy, String> {
    s.parse()
}

/// Exports trajectories for ML: redacted by default; without redaction only for an auditor's
/// stated purpose.
pub fn export(ctx: &Ctx, args: ExportArgs) -> Result<ExitCode> {
    // An unredacted export is an auditor's act, and says why; a redacted one is the ML export.
    let (role, purpose) = match (args.policy, &args.purpose) {
        (Policy::Default, p) => {
            (Role::Ml, p.clone().unwrap_or_else(|| "export trajectories for model training".into()))
        }
        (Policy::None, Some(p)) if !p.trim().is_empty() => (Role::Auditor, p.clone()),
        (Policy::None, _) => bail!(
            "an export without redaction (--redaction none) is an auditor's: say why with --purpose (it is \
             recorded in the access audit log with your user and --ticket)"
        ),
    };
    let access = cli_access(role, &purpose, args.ticket.as_deref());
    let user_key = match &args.user_key {
        None => None,
        Some(hex) => {
            Some(tracevault_core::keys::parse_hex32(hex).map_err(|e| anyhow::anyhow!("--user-key: {e}"))?)
        }
    };
    let log = ctx.open_to_read()?;
    let config = &ctx.settings.config;
    let threads = if args.threads > 0 { args.threads } else { ctx.settings.threads() };
    let engine = Engine::new(config.reduce(), threads)?;
    let selection =
        Selection { sessions: args.sessions.clone(), user: args.user.clone(), ..Selection::default() };
    let options = ExportOptions {
        out: args.out.clone(),
        format: args.format,
        policy: args.policy,
        sensitive_apps: config.sensitive_apps(),
        user_key,
    };
    let started = std::time::Instant::now();
    let total = engine.select(&log, &selection)?.len() as u64;
    let bar = super::progress::bar(total, "export", args.json);
    let mut progress = |done: u64, _: u64| bar.set_position(done);
    let report = tracevault_replay::export(&log, &engine, &access, &selection, &options, &mut progress)
        .with_context(|| format!("exporting to {}", args.out.display()))?;
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    drop(engine);
    ctx.close(log)?;
    let pass = &report.pass;
    let mut out = std::io::stdout().lock();
    if args.json {
        let value = json!({
            "out": args.out.display().to_string(),
            "format": args.format.name(),
            "redaction": args.policy.name(),
            "sessions": pass.sessions,
            "events": pass.events,
            "episodes": pass.episodes,
            "steps": pass.steps,
            "skipped_sessions": pass.skipped.len(),
            "files": report.files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>(),
        });
        writeln!(out, "{value}")?;
    } else {
        writeln!(
            out,
            "exported {} sessions ({} events) as {} steps in {} episodes to {} ({}, redaction {}) in {:.2} s",
            pass.sessions,
            pass.events,
            pass.steps,
            pass.episodes,
            report.files[0].display(),
            args.format.name(),
            args.policy.name(),
            secs
        )?;
        for (session, reason) in &pass.skipped {
            writeln!(out, "skipped {session}: {reason}")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_take_units_and_default_to_seconds() {
        assert_eq!(parse_time("90"), Ok(90_000_000));
        assert_eq!(parse_time("1500ms"), Ok(1_500_000));
        assert_eq!(parse_time("1.5s"), Ok(1_500_000));
        assert_eq!(parse_time("2m"), Ok(120_000_000));
        assert_eq!(parse_time("250us"), Ok(250));
        assert!(parse_time("soon").is_err() && parse_time("3d").is_err());
    }
}
