//! What `tracevault bench` writes: `report.json` (this module's types, versioned by
//! [`REPORT_FORMAT`]) and `report.md` rendered from it. docs/BENCHMARKS.md is `report.md` of a full
//! run (`tracevault bench render`), never edited by hand.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// The layout of `report.json`. A reader refuses a report of another format.
pub const REPORT_FORMAT: u32 = 1;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    pub format: u32,
    /// The tracevault version that ran, and the git commit if the checkout had one.
    pub version: String,
    pub commit: Option<String>,
    /// When the run started (RFC 3339, UTC).
    pub started_at: String,
    /// "full", "quick" or "smoke" (a smoke run's figures mean nothing).
    pub size: String,
    pub seconds: f64,
    pub machine: Machine,
    pub sections: Vec<Section>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Machine {
    pub cores: usize,
    pub cpu: String,
    pub memory_gib: f64,
    pub kernel: String,
    /// Where the bench's stores were written (the disk the limits were measured on).
    pub work_dir: String,
}

/// One part of the run (`--only NAME` picks sections by name).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Section {
    pub name: String,
    pub title: String,
    /// What was measured and how, for the reader of the report.
    pub about: String,
    pub figures: Vec<Figure>,
    pub tables: Vec<Table>,
    pub charts: Vec<Chart>,
    pub notes: Vec<String>,
    /// Wall time of the section and the process's peak RSS during it (VmHWM, reset at its start).
    pub seconds: f64,
    pub peak_rss_mib: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    Higher,
    Lower,
    /// A fact, not a score (cores, counts).
    Neither,
}

/// One measured number: its repeated samples, what it is compared with, and the machine's limit.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Figure {
    /// Stable across versions: `bench compare` matches figures by it, and the criterion benches
    /// carry the same names.
    pub id: String,
    pub label: String,
    pub unit: String,
    /// The median of the samples.
    pub value: f64,
    /// Every repetition, for the noise band.
    pub samples: Vec<f64>,
    pub better: Better,
    pub baselines: Vec<Baseline>,
    pub limit: Option<Limit>,
    pub target: Option<Target>,
}

/// Another way of doing the same job, measured in the same run on the same data.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Baseline {
    pub name: String,
    pub value: f64,
    /// How many times better tracevault is (above 1: better; below 1: worse), whichever way
    /// better points.
    pub ratio: f64,
}

/// What the machine allows for this figure, measured by the bench.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Limit {
    pub name: String,
    pub value: f64,
    /// The figure over the limit (for a lower-is-better figure: the limit over the figure).
    pub fraction: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Target {
    pub value: f64,
    pub met: bool,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Table {
    pub id: String,
    pub title: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// A chart's data; the SVG is drawn from it (so `render` can redraw it).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Chart {
    /// The SVG's file name under `charts/`.
    pub file: String,
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub log_x: bool,
    pub lines: Vec<Line>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Line {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// The median of some samples (0 for none).
pub fn median(samples: &[f64]) -> f64 {
    let mut s: Vec<f64> = samples.iter().copied().filter(|v| v.is_finite()).collect();
    if s.is_empty() {
        return 0.0;
    }
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 { s[n / 2] } else { (s[n / 2 - 1] + s[n / 2]) / 2.0 }
}

impl Figure {
    pub fn new(
        id: impl Into<String>,
        label: impl Into<String>,
        unit: &str,
        better: Better,
        samples: Vec<f64>,
    ) -> Figure {
        Figure {
            id: id.into(),
            label: label.into(),
            unit: unit.to_owned(),
            value: median(&samples),
            samples,
            better,
            baselines: Vec::new(),
            limit: None,
            target: None,
        }
    }

    /// `theirs`, measured the same way, beside this figure.
    pub fn baseline(mut self, name: impl Into<String>, theirs: f64) -> Figure {
        let ratio = self.ratio_to(theirs);
        self.baselines.push(Baseline { name: name.into(), value: theirs, ratio });
        self
    }

    pub fn limit(mut self, name: impl Into<String>, limit: f64) -> Figure {
        let fraction = match self.better {
            Better::Lower => limit / self.value,
            _ => self.value / limit,
        };
        let fraction = if fraction.is_finite() { fraction } else { 0.0 };
        self.limit = Some(Limit { name: name.into(), value: limit, fraction });
        self
    }

    pub fn target(mut self, target: f64) -> Figure {
        let met = match self.better {
            Better::Lower => self.value <= target,
            _ => self.value >= target,
        };
        self.target = Some(Target { value: target, met });
        self
    }

    fn ratio_to(&self, theirs: f64) -> f64 {
        let r = match self.better {
            Better::Lower => theirs / self.value,
            _ => self.value / theirs,
        };
        if r.is_finite() { r } else { 0.0 }
    }

    /// The samples' spread around the median, as a fraction of it (0 for a single sample).
    pub fn spread(&self) -> f64 {
        if self.samples.len() < 2 || self.value == 0.0 {
            return 0.0;
        }
        let lo = self.samples.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = self.samples.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (hi - lo) / self.value.abs() / 2.0
    }

    /// One line for the terminal: the value, its spread, its baselines' ratios, limit and target.
    pub fn summary(&self) -> String {
        let mut s = format!("{:<52} {:>14} {}", self.label, number(self.value), self.unit);
        if self.samples.len() > 1 {
            let _ = write!(s, " ±{:.1}%", self.spread() * 100.0);
        }
        for b in &self.baselines {
            let _ = write!(s, "; {} {}x", b.name, ratio(b.ratio));
        }
        if let Some(l) = &self.limit {
            let _ = write!(s, "; {:.0}% of {}", l.fraction * 100.0, l.name);
        }
        if let Some(t) = &self.target {
            let _ = write!(s, "; target {} {}", number(t.value), if t.met { "met" } else { "NOT met" });
        }
        s
    }
}

/// A number as a person reads it: thousands separated, three significant decimals when small.
pub fn number(v: f64) -> String {
    if !v.is_finite() {
        return "-".into();
    }
    let a = v.abs();
    if a >= 1000.0 {
        let digits = format!("{:.0}", a);
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        if v < 0.0 { format!("-{out}") } else { out }
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

pub fn ratio(r: f64) -> String {
    if r >= 100.0 {
        format!("{r:.0}")
    } else if r >= 10.0 {
        format!("{r:.1}")
    } else {
        format!("{r:.2}")
    }
}

impl Report {
    pub fn from_json(text: &str, name: &str) -> Result<Report, String> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("{name}: not JSON: {e}"))?;
        let format = value.get("format").and_then(|f| f.as_u64());
        if format != Some(u64::from(REPORT_FORMAT)) {
            return Err(format!(
                "{name}: field `format`: expected {REPORT_FORMAT} (a tracevault bench report), found {}",
                format.map_or_else(|| "none".to_owned(), |f| f.to_string())
            ));
        }
        serde_path_to_error::deserialize(value)
            .map_err(|e| format!("{name}: field `{}`: {}", e.path(), e.inner()))
    }

    pub fn figures(&self) -> impl Iterator<Item = &Figure> {
        self.sections.iter().flat_map(|s| &s.figures)
    }

    /// The report as Markdown: the machine, then every section's figures, tables and charts
    /// (`charts/NAME.svg`, relative to where the Markdown is written, unless `charts` says
    /// otherwise).
    pub fn markdown(&self, charts: &str) -> String {
        let mut md = String::new();
        let _ = writeln!(md, "# Benchmarks\n");
        let _ = writeln!(
            md,
            "Generated by `tracevault bench{}` from `report.json`; do not edit by hand \
             (`tracevault bench render REPORT.json` writes this page again). Every figure is the \
             median of its samples (± half their range), each baseline measured in the same run on \
             the same data, each limit measured on this machine by the bench itself. How the \
             figures are made and what they mean: the section texts and docs/BENCHMARKS-HISTORY.md \
             for the analyses of earlier changes.\n",
            match self.size.as_str() {
                "full" => "",
                "quick" => " --quick",
                _ => " --smoke",
            }
        );
        let m = &self.machine;
        let _ = writeln!(
            md,
            "Run {} · tracevault {}{} · {:.0} s{} · {} cores ({}) · {:.1} GiB · {} · stores under `{}`\n",
            self.started_at,
            self.version,
            self.commit.as_deref().map(|c| format!(" ({c})")).unwrap_or_default(),
            self.seconds,
            if self.size == "full" { String::new() } else { format!(" · {}", self.size) },
            m.cores,
            m.cpu,
            m.memory_gib,
            m.kernel,
            m.work_dir
        );
        md.push_str(RUNNING);
        let _ = writeln!(md, "| section | seconds | peak RSS |\n|---|---:|---:|");
        for s in &self.sections {
            let _ = writeln!(md, "| {} | {:.1} | {:.0} MiB |", s.name, s.seconds, s.peak_rss_mib);
        }
        md.push('\n');
        for s in &self.sections {
            let _ = writeln!(md, "## {}: {}\n", s.name, s.title);
            if !s.about.is_empty() {
                let _ = writeln!(md, "{}\n", s.about);
            }
            if !s.figures.is_empty() {
                let _ = writeln!(
                    md,
                    "| figure | value | ± | baselines (tracevault x better) | of the machine's limit | target |"
                );
                let _ = writeln!(md, "|---|---:|---:|---|---|---|");
                for f in &s.figures {
                    let baselines = f
                        .baselines
                        .iter()
                        .map(|b| format!("{} {} ({}x)", b.name, number(b.value), ratio(b.ratio)))
                        .collect::<Vec<_>>()
                        .join("; ");
                    let limit = f.limit.as_ref().map_or_else(String::new, |l| {
                        format!("{:.0}% of {} ({})", l.fraction * 100.0, l.name, number(l.value))
                    });
                    let target = f.target.as_ref().map_or_else(String::new, |t| {
                        format!("{} {}", number(t.value), if t.met { "met" } else { "**not met**" })
                    });
                    let spread = if f.samples.len() > 1 {
                        format!("{:.1}%", f.spread() * 100.0)
                    } else {
                        "1 run".into()
                    };
                    let _ = writeln!(
                        md,
                        "| {} `{}` | {} {} | {} | {} | {} | {} |",
                        f.label,
                        f.id,
                        number(f.value),
                        f.unit,
                        spread,
                        baselines,
                        limit,
                        target
                    );
                }
                md.push('\n');
            }
            for t in &s.tables {
                let _ = writeln!(md, "{}:\n", t.title);
                let _ = writeln!(md, "| {} |", t.columns.join(" | "));
                let _ = writeln!(md, "|{}", t.columns.iter().map(|_| "---:|").collect::<String>());
                for r in &t.rows {
                    let _ = writeln!(md, "| {} |", r.join(" | "));
                }
                md.push('\n');
            }
            for c in &s.charts {
                let _ = writeln!(md, "![{}]({charts}/{})\n", c.title, c.file);
            }
            for n in &s.notes {
                let _ = writeln!(md, "- {n}");
            }
            if !s.notes.is_empty() {
                md.push('\n');
            }
        }
        md
    }
}

/// How to run and read the bench: the same text in every rendered report.
const RUNNING: &str = "## Running it

```sh
cargo run --release -- bench --quick            # every figure on less data: under 3 minutes on 2 cores
cargo run --release -- bench                    # the full run: 10^8 events, 10^6 sessions (about 20 minutes here)
cargo run --release -- bench --only ingest,http # some sections (the machine's limits are always measured)
tracevault bench compare OLD/report.json NEW/report.json   # changes beyond the noise; exit 1 on a regression
tracevault bench render report.json --out docs/BENCHMARKS.md  # this page, from a saved report
```

Each section runs in its own process, so its peak RSS (VmHWM) is its own; the stores go under
`--work` (default `OUT/work`), on the disk whose limits the machine section measures. Figures
are the median of their repetitions; `bench compare` flags a change larger than the wider of the
two runs' spreads and 5%. A baseline's ratio says how many times better tracevault is (above 1)
or worse (below 1), whichever way better points; a limit's percentage is how close the figure
comes to what the machine allows. `cargo test` runs `bench --smoke` (seconds, on the fixtures)
so the bench keeps working; its figures mean nothing.

The criterion benches measure through the same code (`tracevault::bench`) and carry the figures'
names: `cargo bench --bench codecs` (`codec.encode.sapimouse/...`, `codec.decode.sapimouse/...`,
with a table at three block sizes and five zstd levels), `--bench append`
(`ingest.events_per_s.64x100/tracevault`, with a table of every store), `--bench replay`
(`replay.decode_reduce/threads_2`), `--bench service` (the `http` rows).

";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_point_the_way_better_points() {
        let fast = Figure::new("x", "x", "events/s", Better::Higher, vec![200.0]).baseline("slow", 50.0);
        assert_eq!(fast.baselines[0].ratio, 4.0);
        let small = Figure::new("y", "y", "bytes/event", Better::Lower, vec![2.0]).baseline("big", 8.0);
        assert_eq!(small.baselines[0].ratio, 4.0);
        let t = Figure::new("z", "z", "ms", Better::Lower, vec![6.0]).target(5.0);
        assert!(!t.target.unwrap().met);
    }

    #[test]
    fn median_and_spread() {
        let f = Figure::new("x", "x", "u", Better::Higher, vec![90.0, 110.0, 100.0]);
        assert_eq!(f.value, 100.0);
        assert!((f.spread() - 0.1).abs() < 1e-9);
        assert_eq!(median(&[1.0, 3.0]), 2.0);
        assert_eq!(number(1234567.0), "1,234,567");
    }

    #[test]
    fn a_report_of_another_format_is_refused_by_name() {
        let e = Report::from_json(r#"{"format": 7}"#, "old.json").unwrap_err();
        assert!(e.contains("old.json") && e.contains("format") && e.contains("found 7"), "{e}");
        let e = Report::from_json("{", "x.json").unwrap_err();
        assert!(e.contains("x.json: not JSON"), "{e}");
    }
}
