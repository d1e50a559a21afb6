//! How long the journal's syncs take: a fixed-bucket histogram the writer fills and a front end
//! (the HTTP service's `/metrics`) reads, without locks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The histogram's upper bounds, in seconds (Prometheus `le`); the last bucket is +Inf.
pub const SYNC_BOUNDS_S: [f64; 12] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0];

#[derive(Default)]
pub(crate) struct SyncTimes {
    buckets: [AtomicU64; SYNC_BOUNDS_S.len() + 1],
    sum_ns: AtomicU64,
}

impl SyncTimes {
    pub fn record(&self, took: Duration) {
        let s = took.as_secs_f64();
        let i = SYNC_BOUNDS_S.iter().position(|&b| s <= b).unwrap_or(SYNC_BOUNDS_S.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> SyncHistogram {
        SyncHistogram {
            counts: std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed)),
            sum_seconds: self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }
}

/// The journal syncs so far: `counts[i]` syncs took at most `SYNC_BOUNDS_S[i]` (and more than the
/// bound before); the last count is the rest.
#[derive(Clone, Debug, PartialEq)]
pub struct SyncHistogram {
    pub counts: [u64; SYNC_BOUNDS_S.len() + 1],
    pub sum_seconds: f64,
}

impl SyncHistogram {
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}
