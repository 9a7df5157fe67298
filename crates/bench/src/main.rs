//! `datakit-ci-bench`: measures datakit-ci against baselines run in the same process and prints a
//! report, one line per figure.
//!
//! ```text
//! cargo run --release -p datakit-ci-bench -- core            # the full run (under ~2 minutes)
//! cargo run --release -p datakit-ci-bench -- core --quick    # smaller sizes, a few seconds
//! cargo run --release -p datakit-ci-bench -- engine          # the engine group (a few minutes)
//! cargo run --release -p datakit-ci-bench -- engine --quick  # smaller sizes, under a minute
//! cargo run --release -p datakit-ci-bench -- engine --only local  # one part: `scale` or `local`
//! cargo run --release -p datakit-ci-bench -- web             # the web group (a few minutes)
//! cargo run --release -p datakit-ci-bench -- web --quick     # smaller sizes
//! cargo run --release -p datakit-ci-bench -- github          # the GitHub bridge (seconds)
//! cargo run --release -p datakit-ci-bench -- docker          # the Docker plugin (a minute)
//! cargo run --release -p datakit-ci-bench -- pipeline        # the pipeline file (a minute)
//! ```
//!
//! Each line reads `name: value unit (target: …)`: `(target: none)` figures are reported only,
//! the others say `met` or `MISSED`; the last line is `N of M targets met`. The exit status is 0
//! even when targets are missed (this is a report) and non-zero when something fails, e.g. a
//! reader of a live log did not receive every byte. Ratios are always taken against a baseline
//! measured in the same run, never against numbers written down here.
//!
//! # Group `core`
//!
//! - **store** — 10,000 small status updates (`u/r/commit/<hash>/status/ci/datakit/test<i>/state`)
//!   committed as 100 transactions of 100 files through `datakit_ci_store`, versus the same commits
//!   made by `git` plumbing processes in a separate bare repository: `hash-object -w --stdin-paths`
//!   for the blobs, `mktree --batch` for the 100 leaf trees and one `mktree` per upper tree level,
//!   `commit-tree`, `update-ref`. The plumbing baseline makes all 100 commits (with `--quick`,
//!   the first 10, extrapolated linearly to 100); its last tree is checked to be identical to the
//!   store's tree for the same commit, so both sides do the same work. Target: the store is at least 20× faster. Also the latency of one-file commits
//!   on the same branch (median and p99; target: median ≤ 1 ms).
//! - **terms** — time per node to evaluate a 1,000-node term (`pair`/`map` and `zip`/`and_then`
//!   over `Term::ok` leaves and `Cache::find` of already-built keys), median over repeats; the
//!   value is checked. Reported only.
//! - **live log** — one writer appends 200 MB (32 MB with `--quick`) in 64 KiB chunks while 100
//!   readers follow the log with `LiveLog::stream`; every reader's bytes are compared with what
//!   was written. Reports append throughput, the time until every reader had everything, the
//!   log's largest `memory_bytes()` and the growth of the process's resident memory (`VmRSS`).
//!   Target: RSS growth ≤ 8 MiB.
//! - **cache** — `Cache::lookup` calls per second for a key that is already built. Target:
//!   ≥ 100,000 lookups/s. If the cache leaves a finished build pending (a lost wake-up seen in
//!   `datakit_ci_cache`), a `warning:` goes to stderr and a fresh `Cache` loading the committed
//!   results is measured instead of hanging.
//!
//! # Group `engine`
//!
//! - **scale** — 100 and then 10,000 branches (1,000 with `--quick`) written straight into
//!   `github-metadata` in one store transaction, each with 3 cheap jobs
//!   (`Term::head(target).map(..)`); once all statuses are announced (`Engine::subscribe`), 20
//!   head changes (10 with `--quick`) are timed one at a time, from the metadata commit until the
//!   3 statuses of the new hash, with that hash's results, are announced. Target: the median with
//!   10,000 targets is at most 2× the median with 100. Also reported: the time to write the refs
//!   and to load the targets (engine start → every status written), statuses announced for a new
//!   head with the previous head's result, engine failures (the engine is then restarted and the
//!   change repeated), and the process's `VmRSS` with the 10,000 targets idle.
//! - **local CI** — `datakit_ci::local::LocalCi` (bridge, engine, Git plugin) watching a real
//!   repository with the one test `true`: 20 (10) `git commit`s on `main`, each timed from the
//!   moment `git commit` returned (the branch has moved) until its `success` status is announced
//!   (target: median ≤ 100 ms; also p90, and the median counting the `git commit` command). Then
//!   500 (50) new branches on as many distinct commits, made by one `git update-ref --stdin`,
//!   timed until every status is final, against the floor measured after the CI stopped: for each
//!   commit, what `Repo::with_clone` runs (`SharedClone::checkout` of the CI's clone: an
//!   in-process `.git` borrowing its objects, then `git read-tree --reset -u HEAD`), `sh -c true`
//!   and the removal of the clone, with the same parallelism (all concurrent). Target: at most 2×
//!   the floor. Also
//!   the CPU time per build of this process's own threads (`/proc/self/stat` utime + stime) and
//!   of its child processes (cutime + cstime), for the CI and for the floor.
//!
//! # Group `web`
//!
//! One site for every figure: 10,000 branches (1,000 with `--quick`) written straight into
//! `github-metadata`, each with the engine group's 3 cheap jobs, all statuses written, then the web
//! UI with the CI pages (`ci_pages`, readable by everyone) on an ephemeral port of 127.0.0.1. The
//! clients (`reqwest`, no proxy, kept-alive connections) run in the same process and runtime.
//!
//! - **render** — `GET /` (dashboard) and `GET /branch` (its first page of 100 rows), each
//!   checked (target count, one success flag per job shown; the last page shows the last branch), 3 warm-up requests then 20 sequential ones timed from sending to
//!   the end of the body. Target: median ≤ 50 ms each. Also p90 and page sizes; baselines: a
//!   static file (`/css/style.css`) timed the same way, and `Engine::targets()` in-process.
//! - **target page** — `GET /bench/repo/ref/heads/b00042` from 16 concurrent clients for 3 s
//!   (1 s): requests per second and p99 latency; the static file under the same load as a
//!   baseline. Reported only.
//! - **live-log fan-out** — a live log of the web server's `LogManager` written by a blocking
//!   thread at a paced 50 MB/s in 64 KiB chunks for 4 s (1 s), each chunk starting with its
//!   write time and sequence number, while 100 (20) viewers stream `GET /log/live/<branch>?raw`;
//!   every viewer must receive every byte (length, sequence numbers, Fletcher checksum). Target:
//!   p99 delay from a chunk's write to a viewer's receipt of its last byte ≤ 100 ms. Also the
//!   achieved write rate, median and max delay, drain time and delivered bytes per second.
//!   Baselines: the same writes followed by in-process `LogStream` readers, and plain TCP over
//!   127.0.0.1 with as many connections (the fan-out needs write rate × viewers). The web server
//!   runs on a runtime of its own (threads `bench-web-srv`) so that its CPU per MB delivered is
//!   reported apart from the viewers'. Then, to say what this machine can do: the capacity used
//!   (delivered bytes per second / the loopback ceiling of the run), and the highest write rate
//!   at which the viewers still see p99 ≤ 100 ms, found by up to 6 geometric bisection runs of
//!   2 s (1 s), every viewer still checking every byte.
//! - **issue 21** (`web_group/viewer.rs`) — a target page with 50 recorded states (branch
//!   `b00007`'s head moved 49 times; target: median ≤ 10 ms of 20); an update reaching an open
//!   page (from the engine's announcement of a written status, through `/api/v1/events` over
//!   HTTP, to the page fetched again, as `static/live.js` does; target: median ≤ 200 ms of 20);
//!   the first screenful of a 100 MB saved log (its tail), saved as the cache saves logs, with
//!   its index and tail: the first view, which reads the stored tail (first byte and end of the
//!   page, which holds ≥ 1,000 lines; target ≤ 100 ms), then views that find the tail kept
//!   (target: median ≤ 100 ms of 5); the baseline is the same log saved as older stores did,
//!   without an index, whose first view reads the whole log (reported, with the ratio), and the
//!   time to save the log either way.
//!
//! # Group `github`
//!
//! The GitHub bridge against the fake GitHub of `datakit-ci-testkit` (feature `github`); see
//! `github_group.rs`: an unchanged conditional sync of 500 PRs + 2,000 branches (target: 0
//! requests costing rate limit), a burst of 1,000 signed webhooks over 500 PRs (every head
//! checked), and API requests per job state change as an App (target ≤ 2; 0 for unchanged
//! states).
//! # Group `docker`
//!
//! Needs the Docker engine at the default socket and Debian's `busybox-static` (the image the
//! steps run in is made from it); see `docker_group` for the figures: one cache-missing
//! containerised step against `docker run --rm IMAGE true` (target ≤ 1.15×), 50 branches × a
//! containerised step with 4 slots against 50 such `docker run`s 4 at a time (target ≤ 1.3×),
//! and the containers left after the run (target: 0).
//!
//! # Group `pipeline`
//!
//! See `pipeline_group`: the whole local CI on 100 branches of a 20-step pipeline file (28 jobs);
//! a docs-only head change against a full run of the same file (target ≤ 5%, with 0 steps
//! started), and the parse + plan of a 500-job file (target ≤ 10 ms).
//!
//! Everything runs in temporary directories (`TMPDIR`); the store figures depend on that file
//! system, since every Git object is a file.

mod core_group;
mod docker_group;
mod engine_group;
mod git;
mod github_group;
mod pipeline_group;
mod report;
mod stats;
mod swarm_group;
mod targets;
mod web_group;

use std::process::ExitCode;

use clap::{Parser, ValueEnum};

use crate::report::Report;

/// glibc's allocator kept hundreds of MiB of freed memory in its per-thread arenas (commits on a
/// 10,000-target metadata branch make short-lived buffers of about a megabyte on many blocking
/// threads): the resident size with 10,000 idle targets was 0.55–1 GiB with glibc against about
/// 0.49 GiB with mimalloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Measures datakit-ci and prints a report with targets.
#[derive(Debug, Parser)]
#[command(name = "datakit-ci-bench", about)]
struct Args {
    /// The group of figures to measure.
    #[arg(value_enum)]
    group: Group,
    /// Use smaller sizes: a quick check that everything runs, not figures to quote.
    #[arg(long)]
    quick: bool,
    /// Measure only the figures whose part of the group has this name (e.g. `scale` or `local`
    /// in the engine group), to profile one part.
    #[arg(long)]
    only: Option<String>,
}

/// A group of figures.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum Group {
    /// Store, terms, live logs and the cache.
    Core,
    /// The engine at scale and the whole local CI: latency, throughput, memory.
    Engine,
    /// The web UI over HTTP: page render times, requests per second, live-log fan-out.
    Web,
    /// The GitHub bridge against a fake GitHub: conditional syncs, webhook bursts, requests per
    /// status change.
    Github,
    /// The Docker plugin against the `docker` command.
    Docker,
    /// The pipeline file: a docs-only change against a full run, parse + plan of a big file.
    Pipeline,
    /// The Swarm executor on a real three-worker swarm: dispatch, makespan, node loss.
    Swarm,
}

/// How big the measured workloads are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scale {
    /// The sizes the targets are stated for.
    Full,
    /// Smaller sizes, for a quick check.
    Quick,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> anyhow::Result<()> {
    let scale = if args.quick {
        Scale::Quick
    } else {
        Scale::Full
    };
    if args.only.is_some() && !matches!(args.group, Group::Engine) {
        anyhow::bail!("--only picks a part of the engine group; the other groups have no parts");
    }
    // As the `datakit-ci` binary does (`datakit_ci::run`), for every group: the figures are the
    // product's. The floors run in this process too.
    datakit_ci::disable_transparent_huge_pages();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut report = Report::default();
    runtime.block_on(async {
        match args.group {
            Group::Core => core_group::run(scale, &mut report).await,
            Group::Engine => engine_group::run(scale, args.only.as_deref(), &mut report).await,
            Group::Web => web_group::run(scale, &mut report).await,
            Group::Github => github_group::run(scale, &mut report).await,
            Group::Docker => docker_group::run(scale, &mut report).await,
            Group::Pipeline => pipeline_group::run(scale, &mut report).await,
            Group::Swarm => swarm_group::run(scale, &mut report).await,
        }
    })?;
    println!("{}", report.summary());
    Ok(())
}
