//! The dashboard `/` (spec §1.5.3): per project, its dashboard branches with their jobs' states
//! and counts of PRs, branches and tags; then the monitored pools with holders and queues. A
//! live page ([`super::live`]).

use axum::extract::{Extension, OriginalUri, State};
use axum::response::Response;
use maud::{Markup, html};

use datakit_ci_engine::TargetView;
use datakit_ci_pool::MonitoredPool;
use datakit_ci_term::{RepoId, TargetId};

use super::live::{self, Live};
use super::model::{self, Job, JobState, Kind};
use super::widgets::{Actions, status_flag};
use super::{Ci, actions, title};
use crate::acl::Role;
use crate::cluster::{ClusterSnapshot, JobPlace, NodeState};
use crate::pages::{Chrome, Tab, page, post_form};
use crate::{AppState, Error, Viewer, access, urls};

/// `GET /` (role `Reader`).
pub(crate) async fn get_dashboard(
    State(state): State<AppState>,
    Extension(ci): Extension<Ci>,
    viewer: Viewer,
    OriginalUri(uri): OriginalUri,
) -> Result<Response, Error> {
    access::require(&state, &viewer, &[Role::Reader], &uri)?;
    let actions = actions(&state, &viewer).await?;
    // Counts come from a visit of the engine's targets in place; only the few dashboard
    // targets are copied.
    let repos: Vec<&RepoId> = ci.engine.projects().map(|project| project.id()).collect();
    let mut counts = vec![[0_usize; 3]; repos.len()];
    ci.engine.visit_targets(|id, _, _| {
        if let Some(index) = repos.iter().position(|repo| *repo == id.repo()) {
            counts[index][kind_index(model::kind(id))] += 1;
        }
    });
    let projects: Vec<Markup> = ci
        .engine
        .projects()
        .zip(&counts)
        .map(|(project, counts)| {
            let repo = project.id();
            let count = |kind: Kind| counts[kind_index(kind)];
            let widgets: Vec<Markup> = project
                .dashboard_targets()
                .iter()
                .filter_map(|id| {
                    let view = ci.engine.target(id)?;
                    Some(widget(id, &view))
                })
                .collect();
            html! {
                section.project id=(format!("project-{repo}")) {
                    h2 { (repo) }
                    div.dashboards { @for w in widgets { (w) } }
                    p.counts {
                        a href="/pr" { (count(Kind::Pr)) " PRs" } " · "
                        a href="/branch" { (count(Kind::Branch)) " branches" } " · "
                        a href="/tag" { (count(Kind::Tag)) " tags" }
                    }
                }
            }
        })
        .collect();
    let unreadable = ci.engine.unreadable_targets();
    let store_size = ci.store_size.get(state.store()).await;
    let troubles = ci.engine.health().troubles();
    let forges = state.forge_health_lines();
    let cluster = match state.cluster() {
        Some(cluster) => Some(cluster.snapshot().await),
        None => None,
    };
    let content = html! {
        @for line in &forges { p.forge-health { (line) } }
        @if !troubles.is_empty() {
            div.alert.alert-danger.troubles {
                h2 { "Trouble" }
                p { "These keep the CI from doing part of its work; each stays here until resolved." }
                table.table.troubles {
                    @for trouble in &troubles {
                        tr {
                            th { (trouble.key) }
                            td.error { (trouble.message) }
                            td.since { (trouble_age(trouble)) }
                        }
                    }
                }
            }
        }
        @for project in projects { (project) }
        @if !unreadable.is_empty() {
            h2 { "Targets with invalid metadata" }
            p { "These targets are not tested until the forge's metadata for them is corrected." }
            table.table.table-bordered.unreadable-targets {
                @for target in &unreadable {
                    tr {
                        th { a href=(urls::target(&target.id)) { (target.id) } }
                        td.error { (target.reason) }
                    }
                }
            }
        }
        h2 { "State store" }
        p.store-size {
            code { (state.store().path().display()) } ": "
            @match store_size {
                Some(size) => { (bytesize::ByteSize::b(size).to_string()) " on disk" }
                None => "size unknown (see the CI's log)",
            }
            " · back it up with " code { "git clone --mirror" }
        }
        h2 { "Resource pools" }
        table.table.table-bordered.table-hover.pools {
            tr { th { "Name" } th { "Utilisation" } }
            @for pool in ci.pools.list() {
                (pool_row(&state, &pool, &actions))
            }
        }
        @if let Some(cluster) = &cluster { (cluster_section(cluster)) }
    };
    // Any target's change may change the dashboard; at 10,000 targets a render takes tens of
    // milliseconds, so an open dashboard asks at most once a second.
    let live = Live {
        gap_ms: 1000,
        ..Live::default()
    };
    Ok(live::response(
        page(
            &Chrome::new(&state, &viewer),
            &title(&ci.engine),
            Tab::Home,
            live.region(content),
        )
        .into_string(),
    ))
}

/// How long `trouble` has lasted, and how many times it was seen, e.g. `since 2 min ago (3 times)`.
fn trouble_age(trouble: &datakit_ci_health::Trouble) -> String {
    let seconds = trouble
        .since
        .elapsed()
        .map(|age| age.as_secs())
        .unwrap_or(0);
    let age = match seconds {
        0..60 => format!("{seconds} s"),
        60..3600 => format!("{} min", seconds / 60),
        _ => format!("{} h", seconds / 3600),
    };
    match trouble.count {
        1 => format!("since {age} ago"),
        count => format!("since {age} ago ({count} times)"),
    }
}

/// The position of `kind` in a project's counts.
fn kind_index(kind: Kind) -> usize {
    match kind {
        Kind::Pr => 0,
        Kind::Branch => 1,
        Kind::Tag => 2,
    }
}

/// A dashboard branch: its summary as a coloured box, linking to the target, and its jobs.
fn widget(id: &TargetId, view: &TargetView) -> Markup {
    let jobs = model::live_jobs(view);
    let (state, _) = model::summary(&jobs);
    let (class, icon, status, comment) = match state {
        JobState::Success => (
            "dashboard-success",
            "glyphicon-ok",
            "Succeeding",
            "YAY! The build is fine... Nothing to see here...",
        ),
        JobState::Pending => (
            "dashboard-pending",
            "glyphicon-hourglass",
            "Pending",
            "... WAITING ...",
        ),
        JobState::Failure => (
            "dashboard-failure",
            "glyphicon-remove",
            "Failing",
            "SOUND THE ALARM!!! The build has been broken!",
        ),
    };
    let name = match id {
        TargetId::Ref(_, name) => {
            let components = name.components();
            match components.first().map(String::as_str) {
                Some("heads" | "tags") => components[1..].join("/"),
                _ => components.join("/"),
            }
        }
        TargetId::Pr(_, number) => format!("PR {number}"),
    };
    html! {
        div class={ "dashboard text-center " (class) } {
            h3.title { a href=(urls::target(id)) { (name) } }
            p.status { span class={ "glyphicon " (icon) } {} " " (status) }
            small { (comment) }
            ul.jobs {
                @for job in &jobs {
                    li { (job_line(job)) }
                }
            }
        }
    }
}

fn job_line(job: &Job) -> Markup {
    html! { (status_flag(job.state(), Some(&job.name))) " " (job.name) ": " (job.description()) }
}

/// A pool: `<active> / <capacity>` (and the queue when full), then each holder with its log and
/// a cancel button for builders.
fn pool_row(state: &AppState, pool: &MonitoredPool, actions: &Actions) -> Markup {
    let (active, capacity, queued) = (pool.active(), pool.capacity(), pool.qlen());
    html! {
        tr {
            th { (pool.name()) }
            td {
                (active) " / " (capacity)
                @if active >= capacity { " [" (queued) " queued]" }
                @for holder in pool.holders() {
                    br;
                    @if let Some(branch) = &holder.log_branch {
                        @let can_cancel = state.logs().get(branch).is_some_and(|log| log.can_cancel());
                        @if let (Some(csrf), true) = (&actions.csrf, can_cancel) {
                            (post_form(
                                "cancel",
                                &format!("/cancel/{}", urls::encode_segment(branch)),
                                csrf,
                                html! {
                                    input type="hidden" name="redirect" value="/";
                                    button.btn.btn-default.btn-xs type="submit" { "Cancel" }
                                },
                            )) " "
                        }
                        "[ " a href=(urls::live_log(branch)) { "log" } " ] "
                    }
                    (holder.job)
                    @if !holder.label.is_empty() { ": " (holder.label) }
                }
                @let queue = pool.queue();
                @if !queue.is_empty() {
                    ol.queue {
                        @for waiter in queue.iter().take(QUEUE_SHOWN) {
                            li {
                                @if let Some(branch) = &waiter.log_branch {
                                    "[ " a href=(urls::live_log(branch)) { "log" } " ] "
                                }
                                (waiter.job)
                                @if !waiter.label.is_empty() { ": " (waiter.label) }
                            }
                        }
                    }
                    @if queue.len() > QUEUE_SHOWN {
                        p.queue-more { "… and " (queue.len() - QUEUE_SHOWN) " more queued" }
                    }
                }
            }
        }
    }
}

/// The cluster's nodes (state, labels, jobs running) and its jobs, each running on a node or
/// waiting with the reason.
fn cluster_section(cluster: &ClusterSnapshot) -> Markup {
    let short = |id: &str| id[..id.len().min(12)].to_owned();
    html! {
        section.cluster {
            h2 { "Cluster (" (cluster.name) ")" }
            @if let Some(error) = &cluster.nodes_error {
                p.error { "Cannot read the nodes now (" (error) "); showing the last reading." }
            }
            h3 { "Nodes" }
            @if cluster.nodes.is_empty() {
                p.cluster-nodes-none { "No nodes known yet." }
            } @else {
                table.table.table-bordered.cluster-nodes {
                    tr { th { "Node" } th { "Address" } th { "State" } th { "Labels" } th { "Jobs running" } }
                    @for node in &cluster.nodes {
                        @let (class, state) = match &node.state {
                            NodeState::Ready => ("node-ready", "ready".to_owned()),
                            NodeState::Drained(how) => ("node-drained", how.clone()),
                            NodeState::Down(how) => ("node-down", how.clone()),
                        };
                        tr class=(class) {
                            th { code title=(node.id) { (short(&node.id)) } }
                            td { (node.address) }
                            td.node-state { (state) }
                            td { (node.labels.join(", ")) }
                            td.node-jobs { (cluster.running_on(&node.id)) }
                        }
                    }
                }
            }
            h3 { "Jobs" }
            @if cluster.jobs.is_empty() {
                p.cluster-jobs-none { "No jobs on the cluster." }
            } @else {
                table.table.table-bordered.cluster-jobs {
                    tr { th { "Job" } th { "Runs" } th { "Priority" } th { "Where" } }
                    @for job in cluster.jobs.iter().take(CLUSTER_JOBS_SHOWN) {
                        tr {
                            th { a href=(urls::target(job.job.target())) { (job.job) } }
                            td { (job.label) }
                            td { (job.priority) }
                            @match &job.place {
                                JobPlace::Running(node) => td.job-running { "running on " code title=(node) { (short(node)) } },
                                JobPlace::Waiting(reason) => td.job-waiting { "waiting: " (reason) },
                            }
                        }
                    }
                }
                @if cluster.jobs.len() > CLUSTER_JOBS_SHOWN {
                    p.cluster-jobs-more { "… and " (cluster.jobs.len() - CLUSTER_JOBS_SHOWN) " more" }
                }
            }
        }
    }
}

/// How many of a cluster's jobs the dashboard lists (the rest are counted).
const CLUSTER_JOBS_SHOWN: usize = 50;

/// How many queued users a pool's row lists, in order (the rest are counted).
const QUEUE_SHOWN: usize = 20;
