//! `tracevault bench`: the macro benchmarks a performance engineer runs, in one process, with every
//! baseline measured in the same run on the same data and the machine's own limits beside them.
//! Writes `report.json` ([`report::Report`]), `report.md` and SVG charts; `bench compare` reads
//! two reports and flags what moved beyond the noise. docs/BENCHMARKS.md says what each section
//! measures and how to read it.
//!
//! # Layout
//! - [`report`]: the report's types, Markdown rendering; [`compare`]: two reports side by side.
//! - [`machine`]: the limits (disk write bandwidth, fdatasync latency, memcpy, cores).
//! - [`codec`], [`store`], [`ingest`], [`http`], [`replay`], [`scale`]: one module per section; the criterion
//!   benches in `benches/` measure through the same modules and carry the same figure names.
//! - [`chart`]: SVG charts (plotters).

pub mod chart;
pub mod codec;
pub mod compare;
pub mod http;
pub mod ingest;
pub mod machine;
pub mod replay;
pub mod report;
pub mod scale;
pub mod store;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tracevault_codecs::Event;

use crate::sapimouse::{self, Recording};
use report::{Figure, Report, Section};

pub type Result<T, E = anyhow::Error> = std::result::Result<T, E>;

/// How much of everything to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Size {
    /// Seconds: the CI smoke run, on the fixtures. Proves the bench works, measures nothing.
    Smoke,
    /// Under three minutes on a 2-core machine: every figure, smaller.
    Quick,
    /// The full run: 10^8 events, 10^6 sessions, longer rows, more repetitions.
    Full,
}

/// The sections, in the order they run, and what `--only` calls them.
pub const SECTIONS: [(&str, &str); 9] = [
    ("machine", "the machine's limits"),
    ("codec", "bytes per event and codec speed"),
    ("store", "the whole store on disk, by part"),
    ("ingest", "durable ingest in process, with sled, redb and SQLite"),
    ("jsonl", "ingest from a JSON Lines file"),
    ("http", "ingest over HTTP"),
    ("replay", "replay at 1..N threads"),
    ("events", "scaling in events"),
    ("sessions", "scaling in sessions, and the auditor's first action"),
];

pub struct Options {
    pub size: Size,
    /// Where report.json, report.md and charts/ go.
    pub out: PathBuf,
    /// Section names; empty: all.
    pub only: Vec<String>,
    /// The tracevault binary, for the server and the probes.
    pub exe: PathBuf,
    /// Where the stores are written (the disk measured); default `OUT/work`, removed at the end.
    pub work: Option<PathBuf>,
}

/// Key events (downs and ups) in one session of the typing data set.
pub const TYPING_KEYS: usize = 100;

/// What every section is given.
pub struct Ctx {
    pub size: Size,
    pub repeats: usize,
    pub work: PathBuf,
    pub exe: PathBuf,
    pub limits: machine::Limits,
    real: OnceLock<Real>,
    generated: OnceLock<Vec<Vec<Event>>>,
    typing: OnceLock<Vec<Vec<Event>>>,
}

/// The real recordings, by session and as one stream.
pub struct Real {
    pub source: PathBuf,
    pub recordings: Vec<Recording>,
    pub sessions: Vec<Vec<Event>>,
    pub events: Vec<Event>,
}

impl Ctx {
    pub fn new(size: Size, work: PathBuf, exe: PathBuf) -> Ctx {
        let repeats = match size {
            Size::Smoke => 1,
            Size::Quick => 2,
            Size::Full => 3,
        };
        Ctx {
            size,
            repeats,
            work,
            exe,
            limits: machine::Limits::default(),
            real: OnceLock::new(),
            generated: OnceLock::new(),
            typing: OnceLock::new(),
        }
    }

    pub fn smoke(&self) -> bool {
        self.size == Size::Smoke
    }

    pub fn full(&self) -> bool {
        self.size == Size::Full
    }

    /// The length of one timed row (ingest, HTTP).
    pub fn row_time(&self) -> Duration {
        match self.size {
            Size::Smoke => Duration::from_millis(100),
            Size::Quick => Duration::from_millis(1000),
            Size::Full => Duration::from_secs(3),
        }
    }

    /// The least time one repetition of a codec measurement takes.
    pub fn min_time(&self) -> Duration {
        match self.size {
            Size::Smoke => Duration::ZERO,
            Size::Quick => Duration::from_millis(200),
            Size::Full => Duration::from_millis(500),
        }
    }

    /// SapiMouse: all of it from ../shared/data/sapimouse (or $TRACEVAULT_SAPIMOUSE), else the
    /// fixtures; the smoke run always uses the fixtures.
    pub fn real(&self) -> Result<&Real> {
        if let Some(r) = self.real.get() {
            return Ok(r);
        }
        let source = match sapimouse::shared_dir() {
            Some(dir) if !self.smoke() => dir,
            _ => sapimouse::fixtures_dir(),
        };
        let recordings = sapimouse::load_dir(&source)
            .with_context(|| format!("reading SapiMouse from {}", source.display()))?;
        if recordings.is_empty() {
            bail!("no SapiMouse recordings in {}", source.display());
        }
        let sessions: Vec<Vec<Event>> = recordings.iter().map(|r| r.events.clone()).collect();
        let events = sessions.iter().flatten().cloned().collect();
        Ok(self.real.get_or_init(|| Real { source, recordings, sessions, events }))
    }

    /// The generator's sessions (docs/GENERATOR.md): pointer paths, clicks, drags, scrolls,
    /// typing, hotkeys, app switches.
    pub fn generated(&self) -> &[Vec<Event>] {
        self.generated.get_or_init(|| {
            let w = crate::generate::Workload {
                sessions: if self.smoke() { 2 } else { 16 },
                minutes: if self.smoke() { 1.0 } else { 6.0 },
                seed: 16,
            };
            crate::generate::sessions(&w).into_iter().map(|(_, events)| events).collect()
        })
    }

    /// Keystroke-heavy sessions: many short typing sessions of about 100 key events each
    /// (`generate::typing_session`), where per-session and per-block costs dominate.
    pub fn typing(&self) -> &[Vec<Event>] {
        self.typing.get_or_init(|| {
            let count = if self.smoke() { 20 } else { 2000 };
            (0..count).map(|i| crate::generate::typing_session(16, i, TYPING_KEYS).1).collect()
        })
    }

    /// Prints a figure as it is measured.
    pub fn show(&self, f: &Figure) {
        println!("  {}", f.summary());
    }
}

/// Reads a `kB` field of a /proc status file, in KiB (0 when absent).
pub fn status_kib(path: &str, field: &str) -> f64 {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// This process's peak RSS since the last [`reset_peak_rss`], MiB.
pub fn peak_rss_mib() -> f64 {
    status_kib("/proc/self/status", "VmHWM:") / 1024.0
}

/// Starts a new peak RSS measurement (Linux: `5` to /proc/self/clear_refs resets VmHWM to the
/// current RSS). Returns false where that is not possible; the peak is then since the start.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn git_commit() -> Option<String> {
    let out = std::process::Command::new("git").args(["rev-parse", "--short", "HEAD"]).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .filter(|c| !c.is_empty())
}

/// Runs the benchmarks and writes the report. Progress and each figure go to stdout as they are
/// measured.
pub fn run(options: &Options) -> Result<Report> {
    for name in &options.only {
        if !SECTIONS.iter().any(|(s, _)| s == name) {
            bail!(
                "--only {name:?}: no such section; expected one of {}",
                SECTIONS.iter().map(|(s, _)| *s).collect::<Vec<_>>().join(", ")
            );
        }
    }
    std::fs::create_dir_all(&options.out).with_context(|| format!("creating {}", options.out.display()))?;
    let out = options.out.canonicalize()?;
    let work = options.work.clone().unwrap_or_else(|| out.join("work"));
    if work.exists() {
        std::fs::remove_dir_all(&work).with_context(|| format!("clearing {}", work.display()))?;
    }
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let started = Instant::now();
    let started_at =
        jiff::Timestamp::now().round(jiff::Unit::Second).map_or_else(|_| String::new(), |t| t.to_string());
    let mut ctx = Ctx::new(options.size, work.clone(), options.exe.clone());
    let machine = machine::describe(&work);
    println!(
        "tracevault bench ({:?}): {} cores, {}, {:.1} GiB; stores under {}",
        options.size,
        machine.cores,
        machine.cpu,
        machine.memory_gib,
        work.display()
    );
    let wanted = |name: &str| options.only.is_empty() || options.only.iter().any(|o| o == name);
    let mut sections = Vec::new();
    for (name, what) in SECTIONS {
        // The limits are always measured: the other figures are fractions of them.
        if name != "machine" && !wanted(name) {
            continue;
        }
        println!("\n== {name}: {what}");
        let section = if name == "machine" {
            reset_peak_rss();
            let t = Instant::now();
            let mut section = machine_section(&mut ctx)?;
            section.seconds = t.elapsed().as_secs_f64();
            section.peak_rss_mib = peak_rss_mib();
            section
        } else {
            // Each section in its own process: its peak RSS is its own, not what an earlier
            // section's allocations left behind.
            section_process(&ctx, name)?
        };
        println!("   ({:.1} s, peak RSS {:.0} MiB)", section.seconds, section.peak_rss_mib);
        sections.push(section);
    }
    let report = Report {
        format: report::REPORT_FORMAT,
        version: env!("CARGO_PKG_VERSION").to_owned(),
        commit: git_commit(),
        started_at,
        size: match options.size {
            Size::Smoke => "smoke",
            Size::Quick => "quick",
            Size::Full => "full",
        }
        .to_owned(),
        seconds: started.elapsed().as_secs_f64(),
        machine,
        sections,
    };
    write(&report, &out)?;
    let _ = std::fs::remove_dir_all(&work);
    Ok(report)
}

fn machine_section(ctx: &mut Ctx) -> Result<Section> {
    let mut figures = Vec::new();
    ctx.limits = machine::measure(ctx, &mut figures)?;
    for f in &figures {
        ctx.show(f);
    }
    Ok(Section {
        name: "machine".into(),
        title: "the machine's own limits".into(),
        about: "Measured by the bench on the disk the stores are written to: 1 MiB writes of \
                incompressible bytes then one fdatasync (sequential write); a 4 KiB append and its \
                fdatasync, repeated (what a durable ack waits for); one thread copying a buffer far \
                larger than the caches (what materialising decoded events costs at best). Other \
                figures show their fraction of these."
            .into(),
        figures,
        ..Section::default()
    })
}

/// Runs section `name` in a fresh process of `ctx.exe` (`tracevault bench section`), which writes
/// it as JSON under the work directory.
fn section_process(ctx: &Ctx, name: &str) -> Result<Section> {
    let file = ctx.work.join(format!("{name}.section.json"));
    let size = match ctx.size {
        Size::Smoke => "smoke",
        Size::Quick => "quick",
        Size::Full => "full",
    };
    let status = std::process::Command::new(&ctx.exe)
        .args(["bench", "section", name, "--size", size, "--work"])
        .arg(&ctx.work)
        .args(["--limits", &serde_json::to_string(&ctx.limits)?, "--to"])
        .arg(&file)
        .status()
        .with_context(|| format!("running {} bench section {name}", ctx.exe.display()))?;
    if !status.success() {
        bail!("the {name} section failed ({status}); its error is above");
    }
    let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    serde_json::from_str(&text).with_context(|| format!("reading {}", file.display()))
}

/// One section in this process (`tracevault bench section NAME`): measured and written to `to`.
pub fn run_section(
    name: &str,
    size: Size,
    work: &Path,
    limits: machine::Limits,
    exe: PathBuf,
    to: &Path,
) -> Result<()> {
    let mut ctx = Ctx::new(size, work.to_owned(), exe);
    ctx.limits = limits;
    reset_peak_rss();
    let t = Instant::now();
    let mut section = match name {
        "machine" => machine_section(&mut ctx)?,
        "codec" => codec::section(&ctx)?,
        "store" => store::section(&ctx)?,
        "ingest" => ingest::section(&ctx)?,
        "jsonl" => ingest::jsonl_section(&ctx)?,
        "http" => http::section(&ctx)?,
        "replay" => replay::section(&ctx)?,
        "events" => scale::events_section(&ctx)?,
        "sessions" => scale::sessions_section(&ctx)?,
        other => bail!(
            "no section {other:?}; expected one of {}",
            SECTIONS.iter().map(|(s, _)| *s).collect::<Vec<_>>().join(", ")
        ),
    };
    section.seconds = t.elapsed().as_secs_f64();
    section.peak_rss_mib = peak_rss_mib();
    std::fs::write(to, serde_json::to_vec(&section)?).with_context(|| format!("writing {}", to.display()))?;
    Ok(())
}

/// Writes `report.json`, `report.md` and `charts/*.svg` into `out`.
pub fn write(report: &Report, out: &Path) -> Result<()> {
    let charts = out.join("charts");
    std::fs::create_dir_all(&charts)?;
    for chart in report.sections.iter().flat_map(|s| &s.charts) {
        chart::draw(chart, &charts).map_err(anyhow::Error::msg)?;
    }
    std::fs::write(out.join("report.json"), serde_json::to_vec_pretty(report)?)?;
    std::fs::write(out.join("report.md"), report.markdown("charts"))?;
    Ok(())
}

/// `tracevault bench render REPORT.json --out FILE.md`: the Markdown (and charts, beside it under
/// `CHARTS`) of a saved report.
pub fn render(report_path: &Path, md: &Path, charts_dir: &Path) -> Result<()> {
    let text =
        std::fs::read_to_string(report_path).with_context(|| format!("reading {}", report_path.display()))?;
    let report = Report::from_json(&text, &report_path.display().to_string()).map_err(anyhow::Error::msg)?;
    std::fs::create_dir_all(charts_dir)?;
    for chart in report.sections.iter().flat_map(|s| &s.charts) {
        chart::draw(chart, charts_dir).map_err(anyhow::Error::msg)?;
    }
    let base = md.parent().unwrap_or(Path::new("."));
    let rel = pathdiff(charts_dir, base);
    std::fs::write(md, report.markdown(&rel)).with_context(|| format!("writing {}", md.display()))?;
    Ok(())
}

/// `target` relative to `base` when it lies under it, else `target` as given.
fn pathdiff(target: &Path, base: &Path) -> String {
    let (t, b) =
        (target.canonicalize().unwrap_or(target.to_owned()), base.canonicalize().unwrap_or(base.to_owned()));
    t.strip_prefix(&b).map_or_else(|_| target.display().to_string(), |r| r.display().to_string())
}

/// Reads two reports and compares them.
pub fn compare_files(old: &Path, new: &Path) -> Result<(compare::Comparison, Report, Report)> {
    let read = |p: &Path| -> Result<Report> {
        let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        Report::from_json(&text, &p.display().to_string()).map_err(anyhow::Error::msg)
    };
    let (old, new) = (read(old)?, read(new)?);
    Ok((compare::compare(&old, &new), old, new))
}
