//! The machine's own limits, measured by the bench on the disk it writes to: sequential write
//! bandwidth, fdatasync latency, memcpy bandwidth, and the cores. The other figures are shown as
//! fractions of them.

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Instant;

use super::report::{Better, Figure, Machine};
use super::{Ctx, Result};

/// What the other sections divide by.
#[derive(Clone, Copy, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    pub cores: usize,
    /// Sequential write, fdatasync'd at the end, MiB/s.
    pub seq_write_mib_s: f64,
    /// One 4 KiB write and its fdatasync, median and 99th percentile, ms.
    pub fdatasync_p50_ms: f64,
    pub fdatasync_p99_ms: f64,
    /// One thread copying a buffer far larger than the caches, MiB/s.
    pub memcpy_mib_s: f64,
}

pub fn describe(work: &Path) -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or_else(|| std::env::consts::ARCH.to_owned(), |m| m.trim().to_owned());
    let memory_gib = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / (1024.0 * 1024.0));
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|k| format!("Linux {}", k.trim()))
        .unwrap_or_else(|_| std::env::consts::OS.to_owned());
    Machine { cores: cores(), cpu, memory_gib, kernel, work_dir: work.display().to_string() }
}

pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Measures the limits, pushing their figures onto `figures`.
pub fn measure(ctx: &Ctx, figures: &mut Vec<Figure>) -> Result<Limits> {
    let dir = ctx.work.join("machine");
    std::fs::create_dir_all(&dir)?;
    let mut limits = Limits { cores: cores(), ..Limits::default() };
    figures.push(Figure::new("machine.cores", "cores", "cores", Better::Neither, vec![limits.cores as f64]));

    // Sequential write: 1 MiB writes of incompressible bytes, then one fdatasync, all timed.
    let total_mib: usize = if ctx.full() {
        1024
    } else if ctx.smoke() {
        32
    } else {
        256
    };
    let mut chunk = vec![0u8; 1 << 20];
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for b in chunk.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        b.copy_from_slice(&x.to_le_bytes());
    }
    let mut samples = Vec::new();
    for _ in 0..ctx.repeats {
        let path = dir.join("seq");
        let mut f = std::fs::File::create(&path)?;
        let started = Instant::now();
        for _ in 0..total_mib {
            f.write_all(&chunk)?;
        }
        f.sync_data()?;
        samples.push(total_mib as f64 / started.elapsed().as_secs_f64());
        drop(f);
        std::fs::remove_file(&path)?;
    }
    let seq = Figure::new(
        "machine.seq_write",
        format!("sequential write, {total_mib} MiB then fdatasync"),
        "MiB/s",
        Better::Higher,
        samples,
    );
    limits.seq_write_mib_s = seq.value;
    figures.push(seq);

    // fdatasync latency: append 4 KiB, fdatasync, as a journal does.
    let rounds = if ctx.full() {
        1000
    } else if ctx.smoke() {
        20
    } else {
        200
    };
    let f = std::fs::File::create(dir.join("sync"))?;
    let page = &chunk[..4096];
    let mut latencies = Vec::with_capacity(rounds);
    for i in 0..rounds {
        let started = Instant::now();
        f.write_all_at(page, (i * 4096) as u64)?;
        f.sync_data()?;
        latencies.push(started.elapsed().as_secs_f64() * 1e3);
    }
    latencies.sort_by(f64::total_cmp);
    let p = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    limits.fdatasync_p50_ms = p(0.5);
    limits.fdatasync_p99_ms = p(0.99);
    figures.push(Figure::new(
        "machine.fdatasync_p50",
        "fdatasync of a 4 KiB append, p50",
        "ms",
        Better::Lower,
        vec![limits.fdatasync_p50_ms],
    ));
    figures.push(Figure::new(
        "machine.fdatasync_p99",
        "fdatasync of a 4 KiB append, p99",
        "ms",
        Better::Lower,
        vec![limits.fdatasync_p99_ms],
    ));
    drop(f);

    // memcpy: 256 MiB, far past any cache, copied on one thread.
    let len = if ctx.smoke() { 16 << 20 } else { 256 << 20 };
    let src = vec![7u8; len];
    let mut dst = vec![0u8; len];
    dst.copy_from_slice(&src); // fault the pages in first
    let mut samples = Vec::new();
    for _ in 0..ctx.repeats.max(3) {
        let started = Instant::now();
        dst.copy_from_slice(std::hint::black_box(&src));
        std::hint::black_box(&dst);
        samples.push((len >> 20) as f64 / started.elapsed().as_secs_f64());
    }
    let memcpy = Figure::new(
        "machine.memcpy",
        format!("memcpy, one thread, {} MiB", len >> 20),
        "MiB/s",
        Better::Higher,
        samples,
    );
    limits.memcpy_mib_s = memcpy.value;
    figures.push(memcpy);
    std::fs::remove_dir_all(&dir)?;
    Ok(limits)
}
