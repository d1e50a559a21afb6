//! `tracevault bench`, its smoke size (seconds, on the fixtures): every section runs and writes a
//! report whose figures carry their baselines and limits, the charts are SVG, `bench compare`
//! finds a regression planted in a copy and nothing in the report against itself, `bench render`
//! writes the page docs/BENCHMARKS.md is made of, and bad input is refused by name.

use std::path::Path;
use std::process::{Command, Output};

use crate::cli::temp;

fn bench(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tracevault"))
        .current_dir(cwd)
        .env_remove("TRACEVAULT_CONFIG")
        .arg("bench")
        .args(args)
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

fn figure<'a>(report: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    report["sections"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["figures"].as_array().unwrap())
        .find(|f| f["id"] == id)
        .unwrap_or_else(|| panic!("no figure {id} in the report"))
}

#[test]
fn the_smoke_run_writes_a_report_that_compare_and_render_read() {
    let dir = temp("bench");
    let stdout = ok(&bench(&["--smoke", "--out", "out"], &dir));
    let out = dir.join("out");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["format"], 1);
    assert_eq!(report["size"], "smoke");
    let names: Vec<&str> =
        report["sections"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["machine", "codec", "store", "ingest", "jsonl", "http", "replay", "events", "sessions"]
    );
    for s in report["sections"].as_array().unwrap() {
        assert!(!s["figures"].as_array().unwrap().is_empty(), "section {} has no figures", s["name"]);
        assert!(s["peak_rss_mib"].as_f64().unwrap() > 0.0, "section {} has no peak RSS", s["name"]);
        for t in s["tables"].as_array().into_iter().flatten() {
            let columns = t["columns"].as_array().unwrap().len();
            for row in t["rows"].as_array().unwrap() {
                assert_eq!(row.as_array().unwrap().len(), columns, "table {}: {row}", t["id"]);
            }
        }
    }
    // Each figure with what it is compared against, measured in the same run.
    let size = figure(&report, "codec.bytes_per_event.sapimouse");
    let baselines: Vec<&str> =
        size["baselines"].as_array().unwrap().iter().map(|b| b["name"].as_str().unwrap()).collect();
    assert!(
        baselines.contains(&"(a) rmp-serde + zstd") && baselines.contains(&"xz -9 of (c)'s stream"),
        "{baselines:?}"
    );
    // The store measured whole, by part: the parts add up to the figure.
    let store = figure(&report, "store.bytes_per_event.sapimouse")["value"].as_f64().unwrap();
    let parts = report["sections"].as_array().unwrap().iter().find(|s| s["name"] == "store").unwrap()["tables"][0]
        ["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row[2].as_str().unwrap().parse::<f64>().unwrap())
        .sum::<f64>();
    assert!((store - parts).abs() < 0.01, "the parts ({parts}) add up to the whole ({store})");
    let ingest = figure(&report, "ingest.events_per_s.16x1000");
    let stores: Vec<&str> =
        ingest["baselines"].as_array().unwrap().iter().map(|b| b["name"].as_str().unwrap()).collect();
    assert_eq!(stores, ["sled 0.34", "redb", "SQLite"]);
    assert!(ingest["limit"]["fraction"].as_f64().unwrap() > 0.0);
    for b in ingest["baselines"].as_array().unwrap() {
        assert!(b["value"].as_f64().unwrap() > 0.0 && b["ratio"].as_f64().unwrap() > 0.0, "{b}");
    }
    assert!(figure(&report, "machine.fdatasync_p50")["value"].as_f64().unwrap() > 0.0);
    assert!(figure(&report, "replay.decode_reduce.threads_1")["value"].as_f64().unwrap() > 0.0);
    assert!(figure(&report, "auditor.first_action_ms.1e3")["target"]["value"] == 5.0);
    // Every figure printed as measured, with its ratios.
    assert!(stdout.contains("durable events/s, 16 sessions") && stdout.contains("sled 0.34"), "{stdout}");
    for chart in ["replay-threads.svg", "events-cost.svg", "sessions-cost.svg", "auditor-first-action.svg"] {
        let svg = std::fs::read_to_string(out.join("charts").join(chart)).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("<polyline"), "{chart} is not a line chart");
    }
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("`ingest.events_per_s.16x1000`") && md.contains("(charts/replay-threads.svg)"));

    // Against itself: nothing beyond the noise.
    let same = bench(&["compare", "out/report.json", "out/report.json"], &dir);
    assert!(ok(&same).contains("0 regressions"));
    // A copy with one figure halved and one size doubled: both flagged, and the exit code says so.
    let mut worse = report.clone();
    for s in worse["sections"].as_array_mut().unwrap() {
        for f in s["figures"].as_array_mut().unwrap() {
            let factor = match f["id"].as_str().unwrap() {
                "ingest.events_per_s.1x1000" => 0.5,
                "codec.bytes_per_event.sapimouse" => 2.0,
                _ => continue,
            };
            f["value"] = (f["value"].as_f64().unwrap() * factor).into();
            let samples: Vec<f64> =
                f["samples"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() * factor).collect();
            f["samples"] = samples.into();
        }
    }
    std::fs::write(dir.join("worse.json"), serde_json::to_vec(&worse).unwrap()).unwrap();
    let compared = bench(&["compare", "out/report.json", "worse.json"], &dir);
    assert_eq!(compared.status.code(), Some(1));
    let table = String::from_utf8_lossy(&compared.stdout);
    for id in ["ingest.events_per_s.1x1000", "codec.bytes_per_event.sapimouse"] {
        let line = table.lines().find(|l| l.starts_with(id)).unwrap_or_else(|| panic!("{table}"));
        assert!(line.contains("REGRESSION"), "{line}");
    }
    assert!(table.contains("2 regressions"), "{table}");

    // The page docs/BENCHMARKS.md is made of, with its charts beside it.
    ok(&bench(&["render", "out/report.json", "--out", "docs/BENCHMARKS.md"], &dir));
    let page = std::fs::read_to_string(dir.join("docs/BENCHMARKS.md")).unwrap();
    assert!(page.contains("(bench/events-cost.svg)"), "{page}");
    assert!(dir.join("docs/bench/events-cost.svg").exists());
}

#[test]
fn bad_input_is_refused_by_name() {
    let dir = temp("bench-bad");
    let out = bench(&["--smoke", "--only", "nope", "--out", "out"], &dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("\"nope\"") && stderr.contains("codec, store, ingest"), "{stderr}");
    std::fs::write(dir.join("old.json"), r#"{"format": 9, "sections": []}"#).unwrap();
    std::fs::write(dir.join("bad.json"), r#"{"format": 1, "version": 3}"#).unwrap();
    let out = bench(&["compare", "old.json", "bad.json"], &dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("old.json") && stderr.contains("expected 1") && stderr.contains("found 9"),
        "{stderr}"
    );
    std::fs::write(dir.join("old.json"), r#"{"format": 1, "version": 3}"#).unwrap();
    let out = bench(&["compare", "old.json", "old.json"], &dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("old.json") && stderr.contains("version"), "{stderr}");
}
