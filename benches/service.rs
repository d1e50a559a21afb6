//! The HTTP service: acked events/s with 64 recorders sending 1000-event MessagePack + zstd
//! batches of real SapiMouse input over loopback to a `tracevault serve` process, the ack latency
//! percentiles, then the same at half that load (the latency target's condition), and the
//! server's peak RSS; beside them, from the same run, the in-process append of the same batches
//! by 64 threads (what the HTTP layer costs). It measures through `tracevault::bench::http`, as
//! `tracevault bench`'s http section does (figures `http.*`).
//!
//! `cargo bench --bench service` (`TRACEVAULT_BENCH_SECONDS`, default 10 per row); `cargo test`
//! runs a tiny version on the fixtures.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracevault::bench::http::measure;
use tracevault::load::{LoadReport, Pool};
use tracevault::sapimouse;

fn row(name: &str, r: &LoadReport, rss: Option<f64>) {
    println!(
        "{name:<44} {:>12.0} {:>9.2} {:>9.2} {:>9.2} {:>8} {:>10}",
        r.events_per_s(),
        r.latency_ms(0.5),
        r.latency_ms(0.99),
        r.latency_ms(0.999),
        r.errors.len(),
        rss.map_or_else(|| "-".to_owned(), |m| format!("{m:.0} MiB"))
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let smoke = !std::env::args().any(|a| a == "--bench");
    let seconds: f64 = if smoke {
        1.0
    } else {
        std::env::var("TRACEVAULT_BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(10.0)
    };
    let (recorders, batch) = if smoke { (4, 100) } else { (64, 1000) };
    let dir = if smoke {
        sapimouse::fixtures_dir()
    } else {
        sapimouse::shared_dir().unwrap_or_else(sapimouse::fixtures_dir)
    };
    let recordings = sapimouse::load_dir(&dir).unwrap();
    let pool = Arc::new(Pool::new(recordings.into_iter().map(|r| r.events)));
    let root: PathBuf = std::env::var_os("TRACEVAULT_BENCH_DIR")
        .map_or_else(|| std::env::temp_dir().join("tracevault-bench-service"), PathBuf::from);
    println!(
        "service: {recorders} recorders, {batch}-event MessagePack + zstd batches of SapiMouse ({} events in the pool, {}), \
         encoded before the clock starts; loopback, {seconds:.0} s per row",
        pool.len(),
        dir.display()
    );
    println!();
    println!(
        "{:<44} {:>12} {:>9} {:>9} {:>9} {:>8} {:>10}",
        "", "events/s", "p50 ms", "p99 ms", "p999 ms", "errors", "peak RSS"
    );
    let exe = Path::new(env!("CARGO_BIN_EXE_tracevault"));
    let m = measure(exe, &root, &pool, recorders, batch, seconds).unwrap();
    row("HTTP, as fast as acked", &m.full, Some(m.server_peak_rss_mib));
    row(
        &format!("HTTP, half that offered ({:.0} events/s)", m.full.events_per_s() / 2.0),
        &m.half,
        Some(m.server_peak_rss_mib),
    );
    row("in-process Log::append_batch, same batches", &m.in_process, None);
    println!();
    println!(
        "HTTP / in-process: {:.2}x the events/s; server peak RSS {:.0} MiB; targets: >= 2,000,000 events/s, p99 < 25 ms at half load",
        m.full.events_per_s() / m.in_process.events_per_s().max(1.0),
        m.server_peak_rss_mib
    );
    let _ = std::fs::remove_dir_all(&root);
}
