//! Why a pending job waits (issue 21 item 5), in words, from what the engine, the live logs and
//! the pools say now: for which of its needs (and what each is doing), for a slot of which pool
//! and how many are ahead of it, for a Builder's approval, for another CI's status, for another
//! build of the same thing.
//!
//! Knows nothing of HTML or JSON.

use datakit_ci_term::{JobResult, LogLeaf};

use super::model::{Job, Phase};
use super::queue::QueuePlaces;

/// Why `job` (one of `jobs`, the target's live jobs) is not running yet, or `None` if it is
/// running or has finished.
pub(crate) fn why_pending(job: &Job, jobs: &[Job], queues: &QueuePlaces) -> Option<String> {
    let phase = job.phase();
    if phase.is_final() || phase == Phase::Running {
        return None;
    }
    let Some(output) = &job.output else {
        return Some("Not evaluated yet: the engine has not reached this job".to_owned());
    };
    if phase == Phase::WaitingForApproval {
        return Some(
            "Waits for approval by a Builder (anyone with the Builder role may press Approve)"
                .to_owned(),
        );
    }
    if let Some(place) = queues.of_output(Some(output)) {
        let ahead = place.place - 1;
        return Some(format!(
            "Waits for a slot of pool {:?}: {} ahead of it in the queue ({} of {})",
            place.pool,
            match ahead {
                0 => "none".to_owned(),
                n => n.to_string(),
            },
            place.place,
            place.of
        ));
    }
    let waiting: Vec<String> = job
        .needs
        .iter()
        .filter_map(|need| {
            let needed = jobs.iter().find(|other| other.name == *need)?;
            let phase = needed.phase();
            (!phase.is_final()).then(|| format!("{need} ({})", phase.word()))
        })
        .collect();
    if !waiting.is_empty() {
        return Some(format!(
            "Waits for the jobs it needs: {}",
            waiting.join(", ")
        ));
    }
    let reason = match &output.result {
        JobResult::Pending(reason) => reason.as_str(),
        _ => "",
    };
    // Another CI's status (`Term::ci_status`): `Waiting for <context> to complete` or
    // `… status to appear`.
    if reason.starts_with("Waiting for ")
        && (reason.contains(" to complete") || reason.ends_with(" status to appear"))
    {
        return Some(format!("Waits for another CI's status: {reason}"));
    }
    // A live log's own reason (e.g. another build of the same key, a resource).
    let log_reason = output
        .logs
        .leaves()
        .into_iter()
        .find_map(|leaf| match leaf {
            LogLeaf::Live(log) if !log.is_finished() => log.pending_reason(),
            _ => None,
        });
    match log_reason {
        Some(log_reason) if log_reason != reason => Some(format!("{reason}: {log_reason}")),
        _ if reason.is_empty() => None,
        _ => Some(reason.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use datakit_ci_pool::{Holder, MonitoredPool, Pools};
    use datakit_ci_term::{JobOutput, Logs};

    use super::*;

    fn job(name: &str, result: Option<JobResult>, needs: &[&str]) -> Job {
        Job {
            name: name.to_owned(),
            output: result.map(|result| JobOutput {
                result,
                logs: Logs::Empty,
            }),
            needs: needs.iter().map(|need| (*need).to_owned()).collect(),
        }
    }

    fn pending(reason: &str) -> Option<JobResult> {
        Some(JobResult::Pending(reason.to_owned()))
    }

    fn check(job: &Job, jobs: &[Job], expected: Option<&str>) {
        let queues = QueuePlaces::default();
        assert_eq!(why_pending(job, jobs, &queues).as_deref(), expected);
    }

    #[test]
    fn pending_jobs_say_why() {
        let build = job(
            "build",
            pending("Waiting for approval by a Builder in the web UI"),
            &[],
        );
        let lint = job("lint", Some(JobResult::Success("ok".into())), &[]);
        let test = job("test", pending("Waiting for build"), &["build", "lint"]);
        let jobs = [build.clone(), lint.clone(), test.clone()];
        check(
            &build,
            &jobs,
            Some(
                "Waits for approval by a Builder (anyone with the Builder role may press Approve)",
            ),
        );
        check(&lint, &jobs, None);
        check(
            &test,
            &jobs,
            Some("Waits for the jobs it needs: build (waiting for approval)"),
        );
        check(
            &job("new", None, &[]),
            &[],
            Some("Not evaluated yet: the engine has not reached this job"),
        );
        check(
            &job(
                "other",
                pending("Waiting for ci/travis to complete (running)"),
                &[],
            ),
            &[],
            Some("Waits for another CI's status: Waiting for ci/travis to complete (running)"),
        );
        check(
            &job(
                "other",
                pending("Waiting for ci/travis status to appear"),
                &[],
            ),
            &[],
            Some("Waits for another CI's status: Waiting for ci/travis status to appear"),
        );
        check(
            &job("x", Some(JobResult::Failure("boom".into())), &[]),
            &[],
            None,
        );
    }

    #[tokio::test]
    async fn queued_jobs_say_how_many_are_ahead() -> anyhow::Result<()> {
        let logs = datakit_ci_log::LogManager::new();
        let mut registry = prometheus_client::registry::Registry::default();
        let pools = Pools::new();
        let pool = MonitoredPool::new(
            "jobs",
            1,
            &datakit_ci_pool::PoolMetrics::new(&mut registry),
            &pools,
        )?;
        let log = |branch: &str| {
            logs.create(datakit_ci_log::LiveLogSpec {
                branch: branch.to_owned(),
                title: branch.to_owned(),
                pending: "Building".to_owned(),
                cancel: None,
            })
        };
        let (first, second, third) = (log("b-1")?, log("b-2")?, log("b-3")?);
        let (release, hold) = tokio::sync::oneshot::channel::<()>();
        let holder = |job: &str| Holder {
            job: job.to_owned(),
            label: String::new(),
            log_branch: None,
        };
        let running = tokio::spawn({
            let pool = pool.clone();
            let first = first.clone();
            async move { pool.use_(holder("one"), Some(&first), hold).await }
        });
        let waiting: Vec<_> = [second.clone(), third.clone()]
            .into_iter()
            .map(|log| {
                let pool = pool.clone();
                tokio::spawn(async move { pool.use_(holder("next"), Some(&log), async {}).await })
            })
            .collect();
        while pool.qlen() < 2 {
            tokio::task::yield_now().await;
        }
        let queues = QueuePlaces::of_pools(&pools);
        let queued = Job {
            name: "t".to_owned(),
            output: Some(JobOutput {
                result: JobResult::Pending("Building".to_owned()),
                logs: Logs::Live(third.clone()),
            }),
            needs: Vec::new(),
        };
        assert_eq!(
            why_pending(&queued, &[], &queues).as_deref(),
            Some("Waits for a slot of pool \"jobs\": 1 ahead of it in the queue (2 of 2)")
        );
        release
            .send(())
            .map_err(|()| anyhow::anyhow!("the holder went away"))?;
        running.await??;
        for task in waiting {
            task.await?;
        }
        Ok(())
    }
}
