//! `tracevault bench`: the macro benchmarks and their report; `bench compare`, `bench render`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use tracevault::bench::{self, Options, Size};

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub command: Option<BenchCommand>,
    /// The quick run (under 3 minutes on 2 cores): every figure, on less data. Default: the full
    /// run (10^8 events, 10^6 sessions; about an hour).
    #[arg(long)]
    pub quick: bool,
    /// A run of seconds on the fixtures, to prove the bench works (CI); its figures mean nothing.
    #[arg(long, hide = true, conflicts_with = "quick")]
    pub smoke: bool,
    /// Where report.json, report.md and charts/ go.
    #[arg(long, value_name = "DIR", default_value = "tracevault-bench")]
    pub out: PathBuf,
    /// Only these sections (comma-separated or repeated): machine, codec, ingest, jsonl, http,
    /// replay, events, sessions. The machine's limits are always measured.
    #[arg(long, value_name = "NAME", value_delimiter = ',')]
    pub only: Vec<String>,
    /// Where the stores are written (the disk whose limits are measured). Default: OUT/work,
    /// removed at the end.
    #[arg(long, value_name = "DIR")]
    pub work: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Compares two reports: every figure's change, flagged when beyond its noise band (the
    /// samples' spread in either run, at least 5%). Exits 1 when anything regressed.
    Compare { old: PathBuf, new: PathBuf },
    /// Writes a saved report as Markdown, with its charts (docs/BENCHMARKS.md is made this way).
    Render {
        report: PathBuf,
        /// The Markdown file to write.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Where the charts go. Default: `bench/` beside the Markdown.
        #[arg(long, value_name = "DIR")]
        charts: Option<PathBuf>,
    },
    /// (Internal) one section, in its own process, written as JSON to --to.
    #[command(hide = true)]
    Section {
        name: String,
        #[arg(long, value_parser = ["smoke", "quick", "full"])]
        size: String,
        #[arg(long, value_name = "DIR")]
        work: PathBuf,
        /// The machine's limits (JSON), measured by the parent.
        #[arg(long)]
        limits: String,
        #[arg(long, value_name = "FILE")]
        to: PathBuf,
    },
    /// (Internal) the open, stats, first-action and replay probe, run by the bench in a fresh
    /// process; prints JSON.
    #[command(hide = true)]
    Probe {
        #[arg(long, value_name = "DIR")]
        store: PathBuf,
        #[arg(long, default_value_t = 0)]
        first_actions: usize,
        #[arg(long)]
        replay: bool,
    },
}

pub fn bench(args: BenchArgs) -> Result<ExitCode> {
    match args.command {
        Some(BenchCommand::Compare { old, new }) => {
            let (comparison, old, new) = bench::compare_files(&old, &new)?;
            print!("{}", comparison.render(&old, &new));
            Ok(if comparison.regressions() > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS })
        }
        Some(BenchCommand::Render { report, out, charts }) => {
            let charts =
                charts.unwrap_or_else(|| out.parent().unwrap_or(std::path::Path::new(".")).join("bench"));
            bench::render(&report, &out, &charts)?;
            println!("wrote {} (charts in {})", out.display(), charts.display());
            Ok(ExitCode::SUCCESS)
        }
        Some(BenchCommand::Section { name, size, work, limits, to }) => {
            let size = match size.as_str() {
                "smoke" => Size::Smoke,
                "quick" => Size::Quick,
                _ => Size::Full,
            };
            let limits =
                serde_json::from_str(&limits).context("--limits: expected the machine's limits as JSON")?;
            let exe = std::env::current_exe().context("finding this program")?;
            bench::run_section(&name, size, &work, limits, exe, &to)?;
            Ok(ExitCode::SUCCESS)
        }
        Some(BenchCommand::Probe { store, first_actions, replay }) => {
            let probe = bench::scale::probe(&store, first_actions, replay)
                .with_context(|| format!("probing the store in {}", store.display()))?;
            println!("{}", serde_json::to_string(&probe)?);
            Ok(ExitCode::SUCCESS)
        }
        None => {
            let size = if args.smoke {
                Size::Smoke
            } else if args.quick {
                Size::Quick
            } else {
                Size::Full
            };
            let exe =
                std::env::current_exe().context("finding this program, to start its server and probes")?;
            let options = Options { size, out: args.out.clone(), only: args.only, exe, work: args.work };
            let report = bench::run(&options)?;
            let figures = report.figures().count();
            let missed: Vec<&str> = report
                .figures()
                .filter(|f| f.target.as_ref().is_some_and(|t| !t.met))
                .map(|f| f.id.as_str())
                .collect();
            println!(
                "\n{figures} figures from {} sections in {:.0} s; report in {}/report.json, report.md and charts/",
                report.sections.len(),
                report.seconds,
                args.out.display()
            );
            if !missed.is_empty() {
                println!("targets not met: {}", missed.join(", "));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
