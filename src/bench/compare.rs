//! `tracevault bench compare OLD.json NEW.json`: every figure both reports have, its change, and
//! whether the change is beyond the noise.
//!
//! The noise band of a figure is the larger of its half-range in either report's repeated samples
//! and a floor ([`NOISE_FLOOR`]: a single run says nothing about its own noise, and this shared
//! machine moves by about that much between runs of unchanged code). A change past the band in
//! the bad direction is a regression; past it in the good direction, an improvement.

use super::report::{Better, Figure, Report, number};

/// The smallest band: changes under 5% are never flagged.
pub const NOISE_FLOOR: f64 = 0.05;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Regression,
    Improvement,
    Noise,
    /// A fact that changed (cores), or a figure with no direction.
    Changed,
}

#[derive(Debug)]
pub struct Change {
    pub id: String,
    pub label: String,
    pub unit: String,
    pub old: f64,
    pub new: f64,
    /// new / old - 1.
    pub change: f64,
    pub band: f64,
    pub verdict: Verdict,
}

pub struct Comparison {
    pub changes: Vec<Change>,
    /// Figures only one report has.
    pub only_old: Vec<String>,
    pub only_new: Vec<String>,
}

fn band(a: &Figure, b: &Figure) -> f64 {
    a.spread().max(b.spread()).max(NOISE_FLOOR)
}

pub fn compare(old: &Report, new: &Report) -> Comparison {
    let mut changes = Vec::new();
    let mut only_old = Vec::new();
    for o in old.figures() {
        let Some(n) = new.figures().find(|n| n.id == o.id) else {
            only_old.push(o.id.clone());
            continue;
        };
        let change = if o.value == 0.0 { 0.0 } else { n.value / o.value - 1.0 };
        let band = band(o, n);
        let worse = match o.better {
            Better::Higher => -change,
            Better::Lower => change,
            Better::Neither => 0.0,
        };
        let verdict = if o.better == Better::Neither {
            if change == 0.0 { Verdict::Noise } else { Verdict::Changed }
        } else if worse > band {
            Verdict::Regression
        } else if -worse > band {
            Verdict::Improvement
        } else {
            Verdict::Noise
        };
        changes.push(Change {
            id: o.id.clone(),
            label: o.label.clone(),
            unit: o.unit.clone(),
            old: o.value,
            new: n.value,
            change,
            band,
            verdict,
        });
    }
    let only_new =
        new.figures().filter(|n| !old.figures().any(|o| o.id == n.id)).map(|n| n.id.clone()).collect();
    Comparison { changes, only_old, only_new }
}

impl Comparison {
    pub fn regressions(&self) -> usize {
        self.changes.iter().filter(|c| c.verdict == Verdict::Regression).count()
    }

    /// The table for the terminal, one line per figure, flagged ones marked.
    pub fn render(&self, old: &Report, new: &Report) -> String {
        let mut out = format!(
            "old: {} ({}{}, {})\nnew: {} ({}{}, {})\n",
            old.started_at,
            old.version,
            old.commit.as_deref().map(|c| format!(" {c}")).unwrap_or_default(),
            old.size,
            new.started_at,
            new.version,
            new.commit.as_deref().map(|c| format!(" {c}")).unwrap_or_default(),
            new.size,
        );
        if old.machine.cores != new.machine.cores || old.machine.cpu != new.machine.cpu {
            out.push_str("note: the reports come from different machines; compare their limits first\n");
        }
        out.push_str(&format!(
            "\n{:<44} {:>14} {:>14} {:>9} {:>7}  {}\n",
            "figure", "old", "new", "change", "noise", "verdict"
        ));
        for c in &self.changes {
            let verdict = match c.verdict {
                Verdict::Regression => "REGRESSION",
                Verdict::Improvement => "improvement",
                Verdict::Noise => "~",
                Verdict::Changed => "changed",
            };
            out.push_str(&format!(
                "{:<44} {:>14} {:>14} {:>+8.1}% {:>6.1}%  {verdict}\n",
                c.id,
                number(c.old),
                number(c.new),
                c.change * 100.0,
                c.band * 100.0,
            ));
        }
        if !self.only_old.is_empty() {
            out.push_str(&format!("\nonly in old: {}\n", self.only_old.join(", ")));
        }
        if !self.only_new.is_empty() {
            out.push_str(&format!("only in new: {}\n", self.only_new.join(", ")));
        }
        out.push_str(&format!(
            "\n{} figures compared: {} regressions, {} improvements beyond the noise band (at least {:.0}%)\n",
            self.changes.len(),
            self.regressions(),
            self.changes.iter().filter(|c| c.verdict == Verdict::Improvement).count(),
            NOISE_FLOOR * 100.0
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::report::{Machine, REPORT_FORMAT, Section};

    fn report(figures: Vec<Figure>) -> Report {
        Report {
            format: REPORT_FORMAT,
            version: "t".into(),
            commit: None,
            started_at: "now".into(),
            size: "quick".into(),
            seconds: 1.0,
            machine: Machine::default(),
            sections: vec![Section { name: "s".into(), figures, ..Section::default() }],
        }
    }

    #[test]
    fn a_drop_beyond_the_noise_is_a_regression_and_within_it_is_not() {
        let old = report(vec![
            Figure::new("rate", "rate", "ev/s", Better::Higher, vec![100.0, 102.0, 98.0]),
            Figure::new("noisy", "noisy", "ev/s", Better::Higher, vec![60.0, 100.0, 140.0]),
            Figure::new("size", "size", "b", Better::Lower, vec![2.0]),
            Figure::new("gone", "gone", "b", Better::Lower, vec![2.0]),
        ]);
        let new = report(vec![
            Figure::new("rate", "rate", "ev/s", Better::Higher, vec![80.0, 81.0, 79.0]),
            Figure::new("noisy", "noisy", "ev/s", Better::Higher, vec![75.0]),
            Figure::new("size", "size", "b", Better::Lower, vec![1.5]),
            Figure::new("fresh", "fresh", "b", Better::Lower, vec![1.0]),
        ]);
        let c = compare(&old, &new);
        let by = |id: &str| c.changes.iter().find(|x| x.id == id).unwrap().verdict;
        assert_eq!(by("rate"), Verdict::Regression);
        // A 25% drop inside a ±40% band is noise.
        assert_eq!(by("noisy"), Verdict::Noise);
        assert_eq!(by("size"), Verdict::Improvement);
        assert_eq!(c.only_old, ["gone"]);
        assert_eq!(c.only_new, ["fresh"]);
        assert_eq!(c.regressions(), 1);
        assert!(c.render(&old, &new).contains("REGRESSION"));
    }
}
