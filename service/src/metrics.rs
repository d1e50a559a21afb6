//! `/metrics` in the Prometheus text format: requests by route and status, events acknowledged,
//! the ack latency histogram, requests in flight (the queue depth), and the journal's fsync
//! latency (from the core).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use tracevault_core::Log;
use tracevault_core::log::SYNC_BOUNDS_S;

/// Upper bounds of the ack latency histogram, seconds.
const ACK_BOUNDS_S: [f64; 14] =
    [0.0005, 0.001, 0.002, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    events_acked: AtomicU64,
    batches_acked: AtomicU64,
    ack_buckets: [AtomicU64; ACK_BOUNDS_S.len() + 1],
    ack_sum_ns: AtomicU64,
    pub in_flight: AtomicI64,
    pub rejected_busy: AtomicU64,
    /// The viewer: sessions opened, block requests, blocks decoded for them, timelines built.
    pub views_opened: AtomicU64,
    pub view_block_requests: AtomicU64,
    pub view_blocks_decoded: AtomicU64,
    pub view_timelines: AtomicU64,
}

impl Metrics {
    pub fn request(&self, route: &'static str, status: u16) {
        *self.requests.lock().unwrap_or_else(|e| e.into_inner()).entry((route, status)).or_default() += 1;
    }

    pub fn acked(&self, events: u64, took: Duration) {
        self.events_acked.fetch_add(events, Ordering::Relaxed);
        self.batches_acked.fetch_add(1, Ordering::Relaxed);
        let s = took.as_secs_f64();
        let i = ACK_BOUNDS_S.iter().position(|&b| s <= b).unwrap_or(ACK_BOUNDS_S.len());
        self.ack_buckets[i].fetch_add(1, Ordering::Relaxed);
        self.ack_sum_ns.fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
    }

    pub fn render(&self, log: &Log, open_sessions: usize) -> String {
        let mut out = String::new();
        out.push_str("# HELP tracevault_http_requests_total HTTP requests answered, by route and status.\n");
        out.push_str("# TYPE tracevault_http_requests_total counter\n");
        for ((route, status), n) in self.requests.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ =
                writeln!(out, "tracevault_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}");
        }
        counter(
            &mut out,
            "tracevault_events_acked_total",
            "Events acknowledged durable.",
            self.events_acked.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "tracevault_batches_acked_total",
            "Batches acknowledged durable.",
            self.batches_acked.load(Ordering::Relaxed),
        );
        let counts: Vec<u64> = self.ack_buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect();
        histogram(
            &mut out,
            "tracevault_ack_latency_seconds",
            "From a batch's request to its acknowledgement.",
            &ACK_BOUNDS_S,
            &counts,
            self.ack_sum_ns.load(Ordering::Relaxed) as f64 / 1e9,
        );
        gauge(
            &mut out,
            "tracevault_requests_in_flight",
            "Requests being served (the queue depth).",
            self.in_flight.load(Ordering::Relaxed) as f64,
        );
        counter(
            &mut out,
            "tracevault_requests_rejected_busy_total",
            "Requests refused with 503 at the concurrency limit.",
            self.rejected_busy.load(Ordering::Relaxed),
        );
        gauge(
            &mut out,
            "tracevault_open_sessions",
            "Sessions created and not closed, over every recorder token.",
            open_sessions as f64,
        );
        for (name, help, value) in [
            (
                "tracevault_viewer_views_opened_total",
                "Sessions opened in the viewer (each one audited read).",
                &self.views_opened,
            ),
            (
                "tracevault_viewer_block_requests_total",
                "Block requests from the viewer.",
                &self.view_block_requests,
            ),
            (
                "tracevault_viewer_blocks_decoded_total",
                "Blocks decoded for the viewer's block requests.",
                &self.view_blocks_decoded,
            ),
            (
                "tracevault_viewer_timelines_total",
                "Action timelines reduced for the viewer (one per view).",
                &self.view_timelines,
            ),
        ] {
            counter(&mut out, name, help, value.load(Ordering::Relaxed));
        }
        let syncs = log.journal_syncs();
        histogram(
            &mut out,
            "tracevault_fsync_seconds",
            "The journal's fdatasync per group commit.",
            &SYNC_BOUNDS_S,
            &syncs.counts,
            syncs.sum_seconds,
        );
        let stats = log.stats();
        gauge(&mut out, "tracevault_sessions", "Sessions in the store.", stats.sessions as f64);
        gauge(&mut out, "tracevault_events", "Events in the store.", stats.events as f64);
        gauge(
            &mut out,
            "tracevault_bytes_on_disk",
            "Bytes of every file of the store.",
            stats.bytes_on_disk as f64,
        );
        out
    }
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}\n");
}

fn gauge(out: &mut String, name: &str, help: &str, value: f64) {
    let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n");
}

fn histogram(out: &mut String, name: &str, help: &str, bounds: &[f64], counts: &[u64], sum: f64) {
    let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} histogram\n");
    let mut cumulative = 0;
    for (bound, n) in bounds.iter().zip(counts) {
        cumulative += n;
        let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
    }
    cumulative += counts.last().copied().unwrap_or(0);
    let _ = write!(
        out,
        "{name}_bucket{{le=\"+Inf\"}} {cumulative}\n{name}_sum {sum}\n{name}_count {cumulative}\n"
    );
}
