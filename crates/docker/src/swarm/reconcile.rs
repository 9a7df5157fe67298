//! What a previous run of this instance left on the cluster (e.g. after `kill -9`): services
//! whose task ended are kept for the job that asks for the same key, which collects the result
//! once; services still running or waiting are removed (their jobs run again); services that
//! no job claims within [`UNCLAIMED`] are removed too.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use bollard::Docker;
use bollard::query_parameters::{ListServicesOptions, ListTasksOptions};

use super::service::{TaskView, task_view};
use crate::host::is_not_found;
use crate::{Error, labels};

/// How long a finished service left by a previous run waits for its job to claim it.
const UNCLAIMED: Duration = Duration::from_secs(600);

/// The finished services left by a previous run, by key.
#[derive(Default)]
pub(crate) struct Leftovers {
    done: tokio::sync::OnceCell<()>,
    finished: Mutex<HashMap<String, String>>,
}

impl Leftovers {
    /// Reconciles once (later calls wait for the first, or try again if it failed).
    pub(crate) async fn reconcile(
        &self,
        docker: &Docker,
        host: &str,
        instance: &str,
    ) -> Result<(), Error> {
        self.done
            .get_or_try_init(|| async {
                let (finished, removed) = reconcile(docker, host, instance).await?;
                if removed > 0 || !finished.is_empty() {
                    tracing::warn!(
                        removed,
                        finished = finished.len(),
                        "reconciled the Swarm services left by a previous run"
                    );
                }
                let keys: Vec<(String, String)> = finished
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                *self
                    .finished
                    .lock()
                    .expect("no code panics while holding it") = finished;
                if !keys.is_empty() {
                    let docker = docker.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(UNCLAIMED).await;
                        for (_, id) in keys {
                            // Removed already if claimed.
                            let _ = docker.delete_service(&id).await;
                        }
                    });
                }
                Ok::<(), Error>(())
            })
            .await
            .map(|_| ())
    }

    /// The finished service left for `key`, taken (a second ask gets none).
    pub(crate) fn claim(&self, key: &str) -> Option<String> {
        self.finished
            .lock()
            .expect("no code panics while holding it")
            .remove(key)
    }
}

/// Lists this instance's services: returns the finished ones by key, and removes the others.
async fn reconcile(
    docker: &Docker,
    host: &str,
    instance: &str,
) -> Result<(HashMap<String, String>, usize), Error> {
    let api = |action: String| {
        let host = host.to_owned();
        move |source| Error::Api {
            host,
            action,
            source,
        }
    };
    let filters = HashMap::from([(
        "label".to_owned(),
        vec![format!("{}={instance}", labels::INSTANCE)],
    )]);
    let services = docker
        .list_services(Some(ListServicesOptions {
            filters: Some(filters),
            status: None,
        }))
        .await
        .map_err(api("list the services".to_owned()))?;
    let mut finished = HashMap::new();
    let mut removed = 0;
    for service in services {
        let Some(id) = service.id else { continue };
        let key = service
            .spec
            .and_then(|s| s.labels)
            .and_then(|l| l.get(labels::KEY).cloned());
        let tasks = docker
            .list_tasks(Some(ListTasksOptions {
                filters: Some(HashMap::from([("service".to_owned(), vec![id.clone()])])),
            }))
            .await
            .map_err(api(format!("read the tasks of service {id}")))?;
        let ended = matches!(task_view(&tasks), TaskView::Ended { .. });
        match key {
            // Two finished services of one key (the same step run twice before the CI died):
            // one is collected, the other removed.
            Some(key) if ended => {
                if let Some(older) = finished.insert(key, id) {
                    remove(docker, &older)
                        .await
                        .map_err(api(format!("remove service {older}")))?;
                    removed += 1;
                }
            }
            _ => {
                remove(docker, &id)
                    .await
                    .map_err(api(format!("remove service {id}")))?;
                removed += 1;
            }
        }
    }
    Ok((finished, removed))
}

async fn remove(docker: &Docker, id: &str) -> Result<(), bollard::errors::Error> {
    match docker.delete_service(id).await {
        Err(e) if is_not_found(&e) => Ok(()),
        other => other,
    }
}
