//! What the engine figures read from the operating system and run as processes: the process's
//! resident size and CPU times (`/proc/self/…`). (`git` commands: `crate::git`.)

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};

/// The resident set size of this process (`VmRSS` of `/proc/self/status`).
pub(super) fn rss_bytes() -> anyhow::Result<u64> {
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

/// The bytes of the files under `dir`, recursively (a store's size on disk, without block rounding).
pub(super) fn dir_bytes(dir: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).with_context(|| format!("list {}", dir.display()))? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            total += dir_bytes(&entry.path())?;
        } else if kind.is_file() {
            total += entry.metadata()?.len();
        }
    }
    Ok(total)
}

/// CPU time used so far, from `/proc/self/stat`.
#[derive(Clone, Copy, Debug)]
pub(super) struct CpuTimes {
    /// User + system time of this process's own threads (`utime` + `stime`).
    pub(super) own: Duration,
    /// User + system time of its waited-for children (`cutime` + `cstime`): `git`, `sh`.
    pub(super) children: Duration,
}

impl CpuTimes {
    /// The times now.
    pub(super) fn now() -> anyhow::Result<CpuTimes> {
        let stat = std::fs::read_to_string("/proc/self/stat").context("read /proc/self/stat")?;
        // The command name (field 2) may contain spaces; the fields after it are plain numbers.
        let after_name = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest)
            .context("no ')' in /proc/self/stat")?;
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        // `fields[0]` is field 3 (state): utime, stime, cutime, cstime are fields 14 to 17.
        let tick = |index: usize| -> anyhow::Result<u64> {
            fields
                .get(index)
                .context("short /proc/self/stat")?
                .parse()
                .with_context(|| format!("bad field {} of /proc/self/stat", index + 3))
        };
        let per_second = clock_ticks_per_second();
        let time = |ticks: u64| Duration::from_secs_f64(ticks as f64 / per_second);
        Ok(CpuTimes {
            own: time(tick(11)? + tick(12)?),
            children: time(tick(13)? + tick(14)?),
        })
    }

    /// No time.
    pub(super) fn zero() -> CpuTimes {
        CpuTimes {
            own: Duration::ZERO,
            children: Duration::ZERO,
        }
    }

    /// The sum of both times.
    pub(super) fn plus(self, other: CpuTimes) -> CpuTimes {
        CpuTimes {
            own: self.own + other.own,
            children: self.children + other.children,
        }
    }

    /// The time used since `earlier`.
    pub(super) fn since(self, earlier: CpuTimes) -> CpuTimes {
        CpuTimes {
            own: self.own.saturating_sub(earlier.own),
            children: self.children.saturating_sub(earlier.children),
        }
    }
}

/// `getconf CLK_TCK` (the unit of `/proc/<pid>/stat` times), 100 if it cannot be run.
pub(crate) fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .and_then(|text| text.trim().parse().ok())
            .filter(|ticks: &f64| *ticks > 0.0)
            .unwrap_or(100.0)
    })
}

/// A background task (the engine, the local CI) that should run until cancelled: waits on
/// anything else fail, with the task's own error, if it stops first.
pub(super) struct Background<E> {
    cancel: tokio_util::sync::CancellationToken,
    stopped: tokio_util::sync::CancellationToken,
    task: Option<tokio::task::JoinHandle<Result<(), E>>>,
}

impl<E: std::error::Error + Send + Sync + 'static> Background<E> {
    /// Spawns `run(cancel)`.
    pub(super) fn spawn<F, Fut>(run: F) -> Self
    where
        F: FnOnce(tokio_util::sync::CancellationToken) -> Fut,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
    {
        let cancel = tokio_util::sync::CancellationToken::new();
        let stopped = tokio_util::sync::CancellationToken::new();
        let future = run(cancel.clone());
        let task = tokio::spawn({
            let stopped = stopped.clone();
            async move {
                let result = future.await;
                stopped.cancel();
                result
            }
        });
        Background {
            cancel,
            stopped,
            task: Some(task),
        }
    }

    /// Runs `work`, or fails with the task's outcome if the task stops first.
    pub(super) async fn guard<T>(
        &mut self,
        work: impl Future<Output = anyhow::Result<T>>,
    ) -> anyhow::Result<T> {
        tokio::select! {
            result = work => result,
            () = self.stopped.cancelled() => match self.join().await {
                Ok(()) => bail!("it stopped by itself"),
                Err(error) => Err(error),
            }
        }
    }

    /// Whether the task has ended.
    pub(super) fn has_stopped(&self) -> bool {
        self.stopped.is_cancelled()
    }

    /// Cancels the task and waits for it; its error, if any.
    pub(super) async fn stop(mut self) -> anyhow::Result<()> {
        self.cancel.cancel();
        self.join().await
    }

    async fn join(&mut self) -> anyhow::Result<()> {
        let task = self.task.take().context("the task was already joined")?;
        task.await.context("the task panicked")??;
        Ok(())
    }
}
