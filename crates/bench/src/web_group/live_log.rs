//! Figure 3, live-log fan-out: one live log (made with the `LogManager` the web server follows)
//! written at a paced ~50 MB/s in 64 KiB chunks while many HTTP viewers stream
//! `GET /log/live/<branch>?raw`.
//!
//! Each chunk starts with a 16-byte header: the time it was handed to `LiveLog::write` (ns since
//! a common origin, little-endian) and its sequence number; the rest is a pseudo-random filler.
//! `?raw` passes the bytes through untouched, so each viewer finds every header again at its
//! offset; the delay of a chunk is from that write until the viewer has read the chunk's last
//! byte. Every viewer's byte count and Fletcher checksum must equal the writer's, and every
//! header's sequence number its position: otherwise the run fails.
//!
//! The viewers connect (and receive the response head) before the first chunk is written; the
//! writer is a blocking thread outside the runtime that serves and reads the HTTP traffic.
//!
//! Two baselines come first, in the same run: the same writes followed by as many in-process
//! `LogStream` readers (the log without HTTP), and plain TCP over 127.0.0.1 with as many
//! connections, each read and checksummed the same way (HTTP's ceiling on this machine, without
//! the log).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use tokio::sync::mpsc;

use datakit_ci::log::{LiveLog, LiveLogSpec, LogStream};

use crate::Scale;
use crate::report::{Figure, Report, Target};
use crate::stats::quantile;

use super::cpu::server_cpu;
use super::pages::client;
use super::site::Site;

/// Bytes per write.
const CHUNK: usize = 64 * 1024;
/// Bytes of each chunk's header: send time, sequence number.
const HEADER: usize = 16;
/// The paced write rate, in bytes per second.
const RATE: f64 = 50e6;
/// Written before the viewers connect, so that their response heads are sent at once.
const PREAMBLE: &[u8] = b"datakit-ci-bench: live-log fan-out\n";
/// The live log's branch.
const BRANCH: &str = "bench-web-fan-out";
/// Largest acceptable p99 delay from a write to its receipt by a viewer, in ms.
const DELAY_TARGET_MS: f64 = 100.0;
/// Period of the filler: a prime, so chunks differ.
const PERIOD: usize = 1_000_003;
/// The longest viewers may take to connect.
const CONNECT_PATIENCE: Duration = Duration::from_secs(60);
/// The longest viewers may take to receive everything after the last write.
const DRAIN_PATIENCE: Duration = Duration::from_secs(300);

/// Measures figure 3, after its two baselines: the same writes followed by in-process
/// `LogStream` readers (the log without HTTP), and the capacity of plain TCP over 127.0.0.1
/// (HTTP without the log).
pub(super) async fn run(scale: Scale, site: &mut Site, report: &mut Report) -> anyhow::Result<()> {
    let (seconds, viewers, capacity_megabytes) = match scale {
        Scale::Full => (4.0, 100, 40),
        Scale::Quick => (1.0, 20, 20),
    };
    let chunks = (RATE * seconds / CHUNK as f64).round() as usize;
    let total = (PREAMBLE.len() + chunks * CHUNK) as u64;
    let size = format!(
        "{:.0} MB in {} KiB chunks over {seconds} s",
        total as f64 / 1e6,
        CHUNK / 1024
    );

    let local = fan_out(site, Viewers::InProcess, viewers, chunks, RATE)
        .await
        .context("in-process readers")?;
    report.add(Figure::millis(
        format!(
            "web: live log baseline: write → receipt delay, p99, {size}, {viewers} in-process LogStream readers (no HTTP)"
        ),
        quantile(&local.delays, 0.99),
    ));

    let capacity = loopback_capacity(viewers, capacity_megabytes * 1_000_000)
        .await
        .context("loopback TCP capacity")?;
    report.add(Figure::new(
        format!(
            "web: live log baseline: plain TCP over 127.0.0.1, {viewers} connections × {capacity_megabytes} MB \
             read and checksummed (no HTTP, no log; the fan-out needs {:.0} MB/s)",
            RATE / 1e6 * viewers as f64
        ),
        capacity,
        "MB/s",
    ));
    site.check_running()?;

    let http = fan_out(site, Viewers::Http, viewers, chunks, RATE)
        .await
        .context("HTTP viewers")?;
    site.check_running()?;
    let size = format!("{size}, {viewers} HTTP viewers of ?raw");
    report.add(Figure::new(
        format!(
            "web: live log: achieved write rate (paced at {:.0} MB/s), {size}",
            RATE / 1e6
        ),
        total as f64 / 1e6 / http.written.elapsed.as_secs_f64(),
        "MB/s",
    ));
    let samples = http.delays.len();
    report.add(
        Figure::millis(
            format!(
                "web: live log: write → viewer receipt delay, p99 of {samples} (chunk × viewer), {size}"
            ),
            quantile(&http.delays, 0.99),
        )
        .target(Target::AtMost(DELAY_TARGET_MS)),
    );
    report.add(Figure::millis(
        "web: live log: write → viewer receipt delay, median",
        quantile(&http.delays, 0.5),
    ));
    report.add(Figure::millis(
        "web: live log: write → viewer receipt delay, max",
        quantile(&http.delays, 1.0),
    ));
    report.add(Figure::seconds(
        "web: live log: time from the last write until every viewer had every byte",
        http.drain_time,
    ));
    report.add(Figure::new(
        "web: live log: bytes delivered to all viewers per second, first write → last viewer done",
        http.delivered_rate(),
        "MB/s",
    ));
    report.add(Figure::new(
        "web: live log: capacity used: bytes delivered per second / plain-TCP loopback ceiling \
         of this run",
        100.0 * http.delivered_rate() / capacity,
        "%",
    ));
    report.add(Figure::new(
        format!(
            "web: live log: web server CPU (its runtime's threads) per MB delivered, {:.0} MB/s × {viewers} viewers",
            RATE / 1e6
        ),
        http.server_cpu_per_megabyte(),
        "ms/MB",
    ));

    let trial_seconds = match scale {
        Scale::Full => 2.0,
        Scale::Quick => 1.0,
    };
    let search = highest_rate(site, viewers, trial_seconds, capacity, &http).await?;
    site.check_running()?;
    let (rate, cpu) = search.best.unwrap_or((0.0, 0.0));
    let delivered = rate / 1e6 * viewers as f64;
    report.add(Figure::new(
        format!(
            "web: live log: highest write rate with p99 ≤ {DELAY_TARGET_MS:.0} ms for {viewers} HTTP \
             viewers ({} runs of {trial_seconds} s, every viewer checked)",
            search.runs
        ),
        rate / 1e6,
        "MB/s",
    ));
    report.add(Figure::new(
        "web: live log: at that rate, bytes delivered per second (rate × viewers)",
        delivered,
        "MB/s",
    ));
    report.add(Figure::new(
        "web: live log: at that rate, delivered / plain-TCP loopback ceiling of this run",
        100.0 * delivered / capacity,
        "%",
    ));
    report.add(Figure::new(
        "web: live log: at that rate, web server CPU per MB delivered",
        cpu,
        "ms/MB",
    ));
    Ok(())
}

/// Runs of the search for the highest write rate that meets the delay target, at most.
const SEARCH_RUNS: usize = 6;

/// The result of [`highest_rate`].
struct Search {
    /// The highest rate (bytes/s) that met the target, with the web server's CPU milliseconds
    /// per MB delivered in that run.
    best: Option<(f64, f64)>,
    /// Fan-outs run by the search.
    runs: usize,
}

/// Searches the highest write rate at which `viewers` HTTP viewers see a p99 delay within the
/// target, given the run at [`RATE`] (`at_full_rate`) and the loopback `capacity` (MB/s):
/// starts at the rate the ceiling allows (capacity / viewers), then bisects geometrically
/// between the highest rate met and the lowest missed. Each run is a complete fan-out whose
/// viewers are checked byte for byte; each prints a `note:` line.
async fn highest_rate(
    site: &Site,
    viewers: usize,
    seconds: f64,
    capacity: f64,
    at_full_rate: &FanOut,
) -> anyhow::Result<Search> {
    let target = Duration::from_secs_f64(DELAY_TARGET_MS / 1e3);
    if at_full_rate.p99() <= target {
        return Ok(Search {
            best: Some((RATE, at_full_rate.server_cpu_per_megabyte())),
            runs: 0,
        });
    }
    let mut missed = RATE;
    let mut best: Option<(f64, f64)> = None;
    let mut rate = (capacity * 1e6 / viewers as f64).min(RATE / 2.0);
    let mut runs = 0;
    while runs < SEARCH_RUNS {
        let chunks = ((rate * seconds / CHUNK as f64).round() as usize).max(1);
        let fan = fan_out(site, Viewers::Http, viewers, chunks, rate)
            .await
            .with_context(|| format!("HTTP viewers at {:.1} MB/s", rate / 1e6))?;
        runs += 1;
        let met = fan.p99() <= target;
        println!(
            "note: fan-out run {runs}: {:.2} MB/s × {viewers} HTTP viewers for {seconds} s: p99 {:.1} ms ({}), \
             server CPU {:.2} ms per MB delivered",
            rate / 1e6,
            fan.p99().as_secs_f64() * 1e3,
            if met { "met" } else { "missed" },
            fan.server_cpu_per_megabyte(),
        );
        if met {
            best = Some((rate, fan.server_cpu_per_megabyte()));
        } else {
            missed = rate;
        }
        // Geometric steps: the rates span orders of magnitude.
        rate = match best.map(|(rate, _)| rate) {
            Some(met) if missed / met < 1.1 => break,
            Some(met) => (met * missed).sqrt(),
            None => missed / 3.0,
        };
    }
    Ok(Search { best, runs })
}

/// Who follows the log.
#[derive(Clone, Copy, Debug)]
enum Viewers {
    /// `LiveLog::stream` in this process.
    InProcess,
    /// `GET /log/live/<branch>?raw` over HTTP.
    Http,
}

/// One fan-out: what was written and what the viewers saw.
struct FanOut {
    written: Written,
    /// Every chunk's delay for every viewer.
    delays: Vec<Duration>,
    /// From the last write until every viewer had everything.
    drain_time: Duration,
    /// From the first write until every viewer had everything.
    all_read_time: Duration,
    /// CPU time of the web server's threads during the fan-out (zero for in-process readers).
    server_cpu: Duration,
    /// Bytes received by all viewers together.
    delivered: u64,
}

impl FanOut {
    fn p99(&self) -> Duration {
        quantile(&self.delays, 0.99)
    }

    /// The web server's CPU milliseconds per MB it delivered.
    fn server_cpu_per_megabyte(&self) -> f64 {
        self.server_cpu.as_secs_f64() * 1e3 / (self.delivered as f64 / 1e6)
    }

    /// Bytes delivered to all viewers per second, from the first write until the last viewer
    /// had everything, in MB/s.
    fn delivered_rate(&self) -> f64 {
        self.delivered as f64 / 1e6 / self.all_read_time.as_secs_f64()
    }
}

/// Creates a live log, connects `viewers` followers of kind `kind`, writes `chunks` paced
/// chunks, and checks that every follower received every byte.
async fn fan_out(
    site: &Site,
    kind: Viewers,
    viewers: usize,
    chunks: usize,
    rate: f64,
) -> anyhow::Result<FanOut> {
    let total = (PREAMBLE.len() + chunks * CHUNK) as u64;
    let branch = match kind {
        Viewers::InProcess => format!("{BRANCH}-in-process-{rate:.0}"),
        Viewers::Http => format!("{BRANCH}-http-{rate:.0}"),
    };
    let server_cpu_before = server_cpu()?;
    let log = site.logs.create(LiveLogSpec {
        branch: branch.clone(),
        title: "Fan-out benchmark".to_owned(),
        pending: "Writing".to_owned(),
        cancel: None,
    })?;
    log.write(PREAMBLE);
    let origin = Instant::now();
    let client = client()?;
    let url = site.url(&format!("/log/live/{branch}?raw"));

    let (ready, mut connected) = mpsc::channel(viewers);
    let tasks: Vec<_> = (0..viewers)
        .map(|_| match kind {
            Viewers::Http => tokio::spawn(view(
                client.clone(),
                url.clone(),
                origin,
                ready.clone(),
                chunks,
            )),
            Viewers::InProcess => {
                let (stream, ready) = (log.stream(), ready.clone());
                tokio::spawn(async move {
                    let _ = ready.send(()).await;
                    drop(ready);
                    read_stream(stream, origin, chunks).await
                })
            }
        })
        .collect();
    drop(ready);
    let waited = tokio::time::timeout(CONNECT_PATIENCE, async {
        for _ in 0..viewers {
            connected.recv().await.context("a viewer failed")?;
        }
        anyhow::Ok(())
    })
    .await;
    if !matches!(waited, Ok(Ok(()))) {
        // End the viewers that did connect, and report the first failure.
        log.finish();
        for (index, task) in tasks.into_iter().enumerate() {
            task.await
                .context("a viewer panicked")?
                .with_context(|| format!("viewer {index}"))?;
        }
        waited.with_context(|| {
            format!("not all {viewers} viewers connected within {CONNECT_PATIENCE:?}")
        })??;
        bail!("a viewer failed to connect");
    }

    let writer = {
        let log = log.clone();
        tokio::task::spawn_blocking(move || write_paced(&log, chunks, origin, rate))
    };
    let written = writer.await.context("the writer panicked")?;
    let last_write = Instant::now();
    ensure!(
        log.len() == total,
        "the log holds {} bytes, {total} were written",
        log.len()
    );
    let mut delays = Vec::with_capacity(chunks * viewers);
    let drained = tokio::time::timeout(DRAIN_PATIENCE, async {
        for (index, task) in tasks.into_iter().enumerate() {
            let viewed = task
                .await
                .context("a viewer panicked")?
                .with_context(|| format!("viewer {index}"))?;
            ensure!(
                viewed.bytes == total,
                "viewer {index} received {} of {total} bytes",
                viewed.bytes
            );
            ensure!(
                viewed.checksum == written.checksum,
                "viewer {index} received {total} bytes with checksum {:#018x}, {:#018x} were written",
                viewed.checksum,
                written.checksum
            );
            ensure!(
                viewed.delays.len() == chunks,
                "viewer {index} timed {} of {chunks} chunks",
                viewed.delays.len()
            );
            delays.extend(viewed.delays);
        }
        anyhow::Ok(())
    })
    .await;
    let drain_time = last_write.elapsed();
    let all_read_time = written.started.elapsed();
    let server_cpu = server_cpu()?.saturating_sub(server_cpu_before);
    drained.with_context(|| {
        format!(
            "the viewers did not receive everything within {DRAIN_PATIENCE:?} of the last write"
        )
    })??;
    Ok(FanOut {
        written,
        delays,
        drain_time,
        all_read_time,
        server_cpu,
        delivered: total * viewers as u64,
    })
}

/// `connections` TCP connections over 127.0.0.1, each sent `bytes` (whole 64 KiB writes) by a
/// task as fast as it goes and read by another with the viewers' checksum; the bytes received
/// per second over all connections, in MB/s. The ceiling of any HTTP fan-out on this machine.
async fn loopback_capacity(connections: usize, bytes: usize) -> anyhow::Result<f64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let writes = bytes.div_ceil(CHUNK);
    let data: Arc<[u8]> = filler()[..CHUNK].into();
    let mut expected = Fletcher::default();
    for _ in 0..writes {
        expected.update(&data);
    }
    let (expected, total) = (expected.value(), (writes * CHUNK) as u64);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let started = Instant::now();
    let senders = tokio::spawn(async move {
        let mut tasks = Vec::with_capacity(connections);
        for _ in 0..connections {
            let (mut socket, _) = listener.accept().await?;
            let data = Arc::clone(&data);
            tasks.push(tokio::spawn(async move {
                for _ in 0..writes {
                    socket.write_all(&data).await?;
                }
                socket.shutdown().await
            }));
        }
        for task in tasks {
            task.await??;
        }
        anyhow::Ok(())
    });
    let receivers: Vec<_> = (0..connections)
        .map(|_| {
            tokio::spawn(async move {
                let mut socket = tokio::net::TcpStream::connect(addr).await?;
                let mut buffer = vec![0_u8; CHUNK];
                let (mut received, mut sum) = (0_u64, Fletcher::default());
                loop {
                    let n = socket.read(&mut buffer).await?;
                    if n == 0 {
                        break;
                    }
                    sum.update(&buffer[..n]);
                    received += n as u64;
                }
                anyhow::Ok((received, sum.value()))
            })
        })
        .collect();
    for (index, receiver) in receivers.into_iter().enumerate() {
        let (received, checksum) = receiver.await.context("a receiver panicked")??;
        ensure!(
            received == total && checksum == expected,
            "connection {index} received {received} of {total} bytes, checksum {checksum:#018x} \
             instead of {expected:#018x}"
        );
    }
    let elapsed = started.elapsed();
    senders.await.context("the senders panicked")??;
    Ok((total * connections as u64) as f64 / 1e6 / elapsed.as_secs_f64())
}

/// What the writer did.
struct Written {
    /// When the first chunk was due.
    started: Instant,
    /// From the first chunk being due until the last was written.
    elapsed: Duration,
    /// Fletcher checksum of every byte of the log, the preamble included.
    checksum: u64,
}

/// Writes `chunks` chunks to `log` at `rate` bytes per second (each due at a fixed time from the
/// start; a late one is written at once), then finishes the log.
fn write_paced(log: &LiveLog, chunks: usize, origin: Instant, rate: f64) -> Written {
    let filler = filler();
    let mut sum = Fletcher::default();
    sum.update(PREAMBLE);
    let interval = Duration::from_secs_f64(CHUNK as f64 / rate);
    let mut buffer = vec![0_u8; CHUNK];
    let started = Instant::now();
    for index in 0..chunks {
        let due = started + interval * index as u32;
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        let start = index * 7_919 % PERIOD;
        buffer[HEADER..].copy_from_slice(&filler[start..start + CHUNK - HEADER]);
        buffer[8..HEADER].copy_from_slice(&(index as u64).to_le_bytes());
        let stamp = origin.elapsed().as_nanos() as u64;
        buffer[..8].copy_from_slice(&stamp.to_le_bytes());
        log.write(&buffer);
        sum.update(&buffer);
    }
    let elapsed = started.elapsed();
    log.finish();
    Written {
        started,
        elapsed,
        checksum: sum.value(),
    }
}

/// A pseudo-random filler of `PERIOD + CHUNK` bytes.
fn filler() -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    (0..PERIOD + CHUNK)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// What a viewer received.
struct Viewed {
    bytes: u64,
    checksum: u64,
    /// Per chunk, from its write to the receipt of its last byte.
    delays: Vec<Duration>,
}

/// Streams `url` to its end, signalling `ready` once the response head arrived.
async fn view(
    client: reqwest::Client,
    url: String,
    origin: Instant,
    ready: mpsc::Sender<()>,
    chunks: usize,
) -> anyhow::Result<Viewed> {
    let mut response = client
        .get(&url)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    ensure!(
        response.status() == reqwest::StatusCode::OK,
        "GET {url} answered {}",
        response.status()
    );
    // The run waits for every viewer before writing; a send error only means it gave up.
    let _ = ready.send(()).await;
    drop(ready);
    let mut parser = Parser::new(chunks);
    while let Some(piece) = response
        .chunk()
        .await
        .with_context(|| format!("read GET {url} after {} bytes", parser.offset))?
    {
        parser.feed(&piece, origin.elapsed())?;
    }
    Ok(Viewed {
        bytes: parser.offset,
        checksum: parser.sum.value(),
        delays: parser.delays,
    })
}

/// Follows `stream` to its end, in this process.
async fn read_stream(
    mut stream: LogStream,
    origin: Instant,
    chunks: usize,
) -> anyhow::Result<Viewed> {
    let mut parser = Parser::new(chunks);
    while let Some(piece) = stream.next_bytes().await? {
        parser.feed(&piece, origin.elapsed())?;
    }
    Ok(Viewed {
        bytes: parser.offset,
        checksum: parser.sum.value(),
        delays: parser.delays,
    })
}

/// Follows the chunk structure of the received bytes.
struct Parser {
    offset: u64,
    header: [u8; HEADER],
    /// Send time of the current chunk, ns since the origin.
    stamp: u64,
    sum: Fletcher,
    delays: Vec<Duration>,
}

impl Parser {
    fn new(chunks: usize) -> Self {
        Parser {
            offset: 0,
            header: [0; HEADER],
            stamp: 0,
            sum: Fletcher::default(),
            delays: Vec::with_capacity(chunks),
        }
    }

    /// Takes the next `piece`, received `now` (since the origin).
    fn feed(&mut self, piece: &[u8], now: Duration) -> anyhow::Result<()> {
        self.sum.update(piece);
        let mut rest = piece;
        while !rest.is_empty() {
            let preamble = PREAMBLE.len() as u64;
            if self.offset < preamble {
                let at = self.offset as usize;
                let take = (PREAMBLE.len() - at).min(rest.len());
                ensure!(
                    rest[..take] == PREAMBLE[at..at + take],
                    "wrong preamble bytes at offset {at}"
                );
                self.offset += take as u64;
                rest = &rest[take..];
                continue;
            }
            let body = self.offset - preamble;
            let index = body / CHUNK as u64;
            let at = (body % CHUNK as u64) as usize;
            let take = if at < HEADER {
                let take = (HEADER - at).min(rest.len());
                self.header[at..at + take].copy_from_slice(&rest[..take]);
                if at + take == HEADER {
                    let (stamp, sequence) = self.header.split_at(8);
                    self.stamp = u64::from_le_bytes(stamp.try_into()?);
                    let sequence = u64::from_le_bytes(sequence.try_into()?);
                    ensure!(
                        sequence == index,
                        "chunk {index} (at offset {}) carries sequence number {sequence}",
                        self.offset - at as u64
                    );
                }
                take
            } else {
                let take = (CHUNK - at).min(rest.len());
                if at + take == CHUNK {
                    self.delays
                        .push(now.saturating_sub(Duration::from_nanos(self.stamp)));
                }
                take
            };
            self.offset += take as u64;
            rest = &rest[take..];
        }
        Ok(())
    }
}

/// Fletcher-style checksum (wrapping, no modulus): order-sensitive, and cheap, as it is computed
/// over blocks with 32-bit inner sums the compiler vectorises.
#[derive(Default)]
struct Fletcher {
    /// Sum of the bytes.
    a: u64,
    /// Sum of the running sums.
    b: u64,
}

impl Fletcher {
    /// Bytes per block: small enough for every lane's running sums to fit in 32 bits.
    const BLOCK: usize = 2048;
    /// Bytes summed side by side (one SIMD register of bytes).
    const LANES: usize = 16;

    fn update(&mut self, data: &[u8]) {
        for block in data.chunks(Self::BLOCK) {
            let n = block.len() as u64;
            let (plain, weighted) = Self::block_sums(block);
            // For each byte j: a += byte; b += a. Over the block: b gains n·a₀ + Σ (n − j)·byte.
            self.b = self
                .b
                .wrapping_add(n.wrapping_mul(self.a))
                .wrapping_add(n * plain - weighted);
            self.a = self.a.wrapping_add(plain);
        }
    }

    /// `Σ byte` and `Σ j·byte` (j from 0) over `block`. The inner loop only adds, lane by lane,
    /// so it vectorises on any x86-64 (32-bit multiplies need SSE4.1): with `j = 16·i + k`,
    /// `Σ j·byte = Σ_k 16·(m·S_k − U_k) + k·S_k`, where `S_k` sums lane k's bytes and `U_k` sums
    /// `S_k` after each of the `m` vectors.
    fn block_sums(block: &[u8]) -> (u64, u64) {
        let mut sums = [0_u32; Self::LANES];
        let mut running = [0_u32; Self::LANES];
        let vectors = block.chunks_exact(Self::LANES);
        let rest = vectors.remainder();
        let m = vectors.len() as u64;
        for vector in vectors {
            for ((sum, run), &byte) in sums.iter_mut().zip(&mut running).zip(vector) {
                *sum += u32::from(byte);
                *run += *sum;
            }
        }
        let (mut plain, mut weighted) = (0_u64, 0_u64);
        for (k, (&sum, &run)) in sums.iter().zip(&running).enumerate() {
            let (sum, run) = (u64::from(sum), u64::from(run));
            plain += sum;
            weighted += Self::LANES as u64 * (m * sum - run) + k as u64 * sum;
        }
        let start = block.len() - rest.len();
        for (j, &byte) in rest.iter().enumerate() {
            plain += u64::from(byte);
            weighted += (start + j) as u64 * u64::from(byte);
        }
        (plain, weighted)
    }

    fn value(&self) -> u64 {
        self.b.rotate_left(32) ^ self.a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fletcher_matches_bytewise_and_any_split() {
        let data = filler();
        let data = &data[..10_000];
        let (mut a, mut b) = (0_u64, 0_u64);
        for &byte in data {
            a = a.wrapping_add(u64::from(byte));
            b = b.wrapping_add(a);
        }
        let mut whole = Fletcher::default();
        whole.update(data);
        assert_eq!((whole.a, whole.b), (a, b));
        let mut split = Fletcher::default();
        for piece in data.chunks(777) {
            split.update(piece);
        }
        assert_eq!(split.value(), whole.value());
    }

    #[test]
    fn parser_finds_headers_across_pieces() {
        let mut bytes = PREAMBLE.to_vec();
        for index in 0..3_u64 {
            let mut chunk = vec![7_u8; CHUNK];
            chunk[..8].copy_from_slice(&(1_000 * index).to_le_bytes());
            chunk[8..HEADER].copy_from_slice(&index.to_le_bytes());
            bytes.extend(chunk);
        }
        let mut parser = Parser::new(3);
        for piece in bytes.chunks(5) {
            parser.feed(piece, Duration::from_nanos(5_000)).unwrap();
        }
        assert_eq!(parser.offset, bytes.len() as u64);
        assert_eq!(
            parser.delays,
            [5_000, 4_000, 3_000].map(Duration::from_nanos)
        );
        let mut wrong = Parser::new(3);
        let mut shifted = bytes.clone();
        shifted.remove(PREAMBLE.len() + 100);
        assert!(wrong.feed(&shifted, Duration::ZERO).is_err());
    }
}
