//! Figure 3, live logs: append throughput of one writer while 100 readers stream the log, with
//! every reader's bytes checked, and the memory a 200 MB log costs (its own `memory_bytes()` and
//! the growth of the process's resident set).

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail, ensure};

use datakit_ci_log::{LiveLogSpec, LogManager, LogStream};

use crate::Scale;
use crate::report::{Figure, Report, Target};

/// Bytes per append.
const CHUNK: usize = 64 * 1024;
/// Concurrent readers.
const READERS: usize = 100;
/// Largest acceptable growth of the resident set while the log is written and read, in MiB.
const RSS_TARGET_MIB: f64 = 8.0;
/// Appends between two samples of the memory figures (and two yields to the readers).
const SAMPLE_EVERY: usize = 16;
/// Period of the written byte pattern: a prime, so no two 64 KiB chunks are alike.
const PERIOD: usize = 1_000_003;

const MIB: f64 = 1024.0 * 1024.0;

/// Measures the live-log figures.
pub(super) async fn run(scale: Scale, report: &mut Report) -> anyhow::Result<()> {
    let megabytes: usize = match scale {
        Scale::Full => 200,
        Scale::Quick => 32,
    };
    let chunks = megabytes * 1_000_000 / CHUNK;
    let total = (chunks * CHUNK) as u64;
    let pattern = Arc::new(Pattern::new());

    let rss_before = rss_bytes()?;
    let mut rss_max = rss_before;
    let manager = LogManager::new();
    let log = manager.create(LiveLogSpec {
        branch: "bench-live-log".to_owned(),
        title: "Benchmark".to_owned(),
        pending: "Writing".to_owned(),
        cancel: None,
    })?;
    let readers: Vec<_> = (0..READERS)
        .map(|_| tokio::spawn(read_all(log.stream(), Arc::clone(&pattern))))
        .collect();

    let mut memory_max = 0;
    let started = Instant::now();
    for index in 0..chunks {
        log.write(pattern.at((index * CHUNK) as u64, CHUNK));
        if index.is_multiple_of(SAMPLE_EVERY) {
            memory_max = memory_max.max(log.memory_bytes());
            rss_max = rss_max.max(rss_bytes()?);
            tokio::task::yield_now().await;
        }
    }
    log.finish();
    let write_time = started.elapsed();
    memory_max = memory_max.max(log.memory_bytes());
    ensure!(
        log.len() == total,
        "the log holds {} bytes, {total} were written",
        log.len()
    );
    for (index, reader) in readers.into_iter().enumerate() {
        let received = reader
            .await
            .context("a reader task panicked")?
            .with_context(|| format!("reader {index}"))?;
        ensure!(
            received == total,
            "reader {index} received {received} of {total} bytes"
        );
    }
    let all_read_time = started.elapsed();
    rss_max = rss_max.max(rss_bytes()?);
    drop(log);

    let size = format!("{megabytes} MB in 64 KiB appends, {READERS} readers");
    report.add(Figure::new(
        format!("live log: append throughput, {size}"),
        total as f64 / 1e6 / write_time.as_secs_f64(),
        "MB/s",
    ));
    report.add(Figure::seconds(
        format!("live log: time until all {READERS} readers had every byte, {size}"),
        all_read_time,
    ));
    report.add(Figure::new(
        format!("live log: largest memory_bytes() of the {megabytes} MB log"),
        memory_max as f64 / MIB,
        "MiB",
    ));
    report.add(
        Figure::new(
            format!("live log: process RSS growth while writing and reading, {size}"),
            rss_max.saturating_sub(rss_before) as f64 / MIB,
            "MiB",
        )
        .target(Target::AtMost(RSS_TARGET_MIB)),
    );
    Ok(())
}

/// Follows the log to its end, checking every byte against the pattern; returns the byte count.
async fn read_all(mut stream: LogStream, pattern: Arc<Pattern>) -> anyhow::Result<u64> {
    let mut offset = 0_u64;
    while let Some(chunk) = stream.next_chunk().await? {
        for piece in chunk.chunks(CHUNK) {
            if piece != pattern.at(offset, piece.len()) {
                bail!(
                    "wrong bytes in the {}-byte piece at offset {offset}",
                    piece.len()
                );
            }
            offset += piece.len() as u64;
        }
    }
    Ok(offset)
}

/// The text written: a pseudo-random byte pattern repeating every [`PERIOD`] bytes, so that a
/// reader can check any piece of up to [`CHUNK`] bytes against its offset with one comparison.
struct Pattern {
    bytes: Vec<u8>,
}

impl Pattern {
    fn new() -> Self {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let bytes = (0..PERIOD + CHUNK)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect();
        let mut pattern = Pattern { bytes };
        // The tail repeats the start, so a piece may straddle the period.
        let (period, tail) = pattern.bytes.split_at_mut(PERIOD);
        tail.copy_from_slice(&period[..CHUNK]);
        pattern
    }

    /// The `len` bytes (at most [`CHUNK`]) of the text at `offset`.
    fn at(&self, offset: u64, len: usize) -> &[u8] {
        let start = (offset % PERIOD as u64) as usize;
        &self.bytes[start..start + len]
    }
}

/// The resident set size of this process (`VmRSS` of `/proc/self/status`).
fn rss_bytes() -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status").context("read /proc/self/status")?;
    let line = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .context("no VmRSS line in /proc/self/status")?;
    let kilobytes: u64 = line
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .with_context(|| format!("bad VmRSS value {line:?}"))?;
    Ok(kilobytes * 1024)
}
