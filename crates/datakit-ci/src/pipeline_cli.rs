//! The pipeline file's subcommands: `datakit-ci check [FILE]` validates a file,
//! `datakit-ci plan --repo PATH [--ref REF]` says what a commit's file would run and what is
//! already recorded, and `datakit-ci schema` prints the file's JSON Schema for editors.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use clap::{Parser, Subcommand};

use datakit_ci_pipeline::{FILE_NAME, TargetKind};
use datakit_ci_pipeline_run::{FileState, InspectedJob, inspect};
use datakit_ci_term::CommitHash;

/// The subcommands' names: the binary dispatches on its first argument.
pub const SUBCOMMANDS: [&str; 3] = ["check", "plan", "schema"];

// A `//` comment: clap would show a doc comment as the program's description.
#[derive(Debug, Parser)]
#[command(
    name = "datakit-ci",
    version,
    about = "The pipeline file, .datakit-ci.yml"
)]
struct PipelineCli {
    #[command(subcommand)]
    command: PipelineCommand,
}

#[derive(Debug, Subcommand)]
enum PipelineCommand {
    /// Validates a pipeline file: exit status 0, or 1 with each problem as FILE:LINE:COL: message.
    Check {
        /// The file (default `.datakit-ci.yml` in the current directory).
        file: Option<PathBuf>,
    },
    /// Prints the jobs a commit's pipeline file makes, and for each whether a run with the same
    /// inputs is already recorded in the state or it would run, and why. Runs nothing.
    Plan {
        /// The repository.
        #[arg(long, value_name = "PATH")]
        repo: PathBuf,
        /// The commit, branch or tag (default `HEAD`).
        #[arg(long = "ref", value_name = "REF", default_value = "HEAD")]
        git_ref: String,
        /// The CI's state directory, whose recorded runs are looked up.
        #[arg(long, value_name = "DIR", default_value = "./var")]
        state_dir: PathBuf,
    },
    /// Prints the JSON Schema of the pipeline file (for editors' YAML support).
    Schema,
}

/// Runs a pipeline subcommand; `args` are the program's arguments, name included.
pub fn main(args: Vec<std::ffi::OsString>) -> ExitCode {
    let cli = match PipelineCli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let outcome = match cli.command {
        PipelineCommand::Check { file } => check(&file.unwrap_or_else(|| FILE_NAME.into())),
        PipelineCommand::Plan {
            repo,
            git_ref,
            state_dir,
        } => plan(&repo, &git_ref, &state_dir),
        PipelineCommand::Schema => {
            let schema = datakit_ci_pipeline::json_schema();
            println!(
                "{}",
                serde_json::to_string_pretty(&schema).expect("a JSON value prints")
            );
            Ok(ExitCode::SUCCESS)
        }
    };
    outcome.unwrap_or_else(|message| {
        eprintln!("datakit-ci: {message}");
        ExitCode::from(2)
    })
}

fn check(file: &Path) -> Result<ExitCode, String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let shown = file.display().to_string();
    match datakit_ci_pipeline::parse(&text) {
        Ok(pipeline) => {
            println!("{shown}: valid, {} jobs", pipeline.jobs().len());
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            for problem in &error.problems {
                eprintln!("{}", problem.display_in(&shown));
            }
            Ok(ExitCode::FAILURE)
        }
    }
}

fn plan(repo: &Path, git_ref: &str, state_dir: &Path) -> Result<ExitCode, String> {
    let commit: CommitHash = git(
        repo,
        &["rev-parse", "--verify", &format!("{git_ref}^{{commit}}")],
    )
    .ok_or_else(|| format!("{git_ref:?} is not a commit of {}", repo.display()))?
    .parse()
    .map_err(|e| format!("unexpected output of git rev-parse: {e}"))?;
    let kind = target_kind(repo, git_ref);
    let parent = git(
        repo,
        &["rev-parse", "--verify", "--quiet", &format!("{commit}^1")],
    )
    .and_then(|hash| hash.parse::<CommitHash>().ok());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start: {e}"))?;
    let (state, parent_state) = runtime.block_on(async {
        let state = inspect(repo, &commit, &kind, None).await;
        let parent_state = match &parent {
            Some(parent) => inspect(repo, parent, &kind, None).await.ok(),
            None => None,
        };
        (state, parent_state)
    });
    let state = state.map_err(|e| format!("cannot read {FILE_NAME}: {e}"))?;
    let jobs = match state {
        FileState::Missing => {
            println!("No {FILE_NAME} in commit {}", commit.short(7));
            return Ok(ExitCode::FAILURE);
        }
        FileState::Invalid(error) => {
            for problem in &error.problems {
                eprintln!("{}", problem.display_in(FILE_NAME));
            }
            return Ok(ExitCode::FAILURE);
        }
        FileState::Valid(jobs) => jobs,
    };
    let earlier = match (parent_state, &parent) {
        (Some(FileState::Valid(jobs)), Some(parent)) => Some((jobs, parent)),
        _ => None,
    };
    let store = state_dir.join("state.git");
    println!(
        "{} jobs of {FILE_NAME} for commit {} ({}):",
        jobs.len(),
        commit.short(7),
        describe_kind(&kind)
    );
    let width = jobs.iter().map(|j| j.name.len()).max().unwrap_or(0);
    for job in &jobs {
        let (verdict, why) = verdict(&store, job, earlier.as_ref());
        println!("  {:width$}  {verdict:8} {why}", job.name);
    }
    Ok(ExitCode::SUCCESS)
}

/// Whether `job` would run (`run`) or a run with its inputs is recorded (`recorded`), and why.
fn verdict(
    store: &Path,
    job: &InspectedJob,
    earlier: Option<&(Vec<InspectedJob>, &CommitHash)>,
) -> (&'static str, String) {
    let branch = job.branch.to_string();
    let show = |file: &str| {
        store
            .exists()
            .then(|| git_dir(store, &["show", &format!("refs/heads/{branch}:{file}")]))
            .flatten()
    };
    if store.exists()
        && git_dir(
            store,
            &[
                "rev-parse",
                "--verify",
                "--quiet",
                &format!("refs/heads/{branch}"),
            ],
        )
        .is_some()
    {
        if show("rebuild-requested").is_some() {
            return (
                "run",
                "a rebuild of its recorded run was requested".to_owned(),
            );
        }
        if let Some(failure) = show("failure") {
            return ("recorded", format!("failed: {} ({branch})", failure.trim()));
        }
        let on = show("value/commit")
            .map(|c| format!(" on {}", c.get(..7).unwrap_or(&c)))
            .unwrap_or_default();
        return ("recorded", format!("passed{on} ({branch})"));
    }
    let Some((jobs, parent)) = earlier else {
        return ("run", "no run with these inputs is recorded".to_owned());
    };
    let Some(before) = jobs.iter().find(|j| j.name == job.name) else {
        return ("run", format!("new since {}", parent.short(7)));
    };
    let changed: Vec<String> = job
        .inputs
        .iter()
        .filter(|line| !before.inputs.contains(line))
        .map(|line| describe_line(line))
        .collect();
    if changed.is_empty() {
        return ("run", "no run with these inputs is recorded".to_owned());
    }
    let mut why = String::new();
    for (i, change) in changed.iter().enumerate() {
        if i > 0 {
            why.push_str(", ");
        }
        why.push_str(change);
    }
    write!(why, " since {}", parent.short(7)).expect("a String");
    ("run", why)
}

/// What a changed line of a digest means, in words.
fn describe_line(line: &str) -> String {
    let (kind, rest) = line.split_once(' ').unwrap_or((line, ""));
    match kind {
        "definition" => "its definition changed".to_owned(),
        "runner" | "arg" => "where it runs changed".to_owned(),
        "input" => {
            let path = rest.split('"').nth(1).unwrap_or(rest);
            if path.is_empty() {
                "the tree changed".to_owned()
            } else {
                format!("{path} changed")
            }
        }
        "need" => {
            let need = rest.split('"').nth(1).unwrap_or(rest);
            format!("its need {need} changed")
        }
        other => format!("its {other} changed"),
    }
}

fn describe_kind(kind: &TargetKind) -> String {
    match kind {
        TargetKind::Branch(name) => format!("branch {name}"),
        TargetKind::Tag(name) => format!("tag {name}"),
        TargetKind::PullRequest { number, .. } => format!("PR {number}"),
    }
}

/// A branch or tag `git_ref` names, else the branch `HEAD` is on, else a branch named as given.
fn target_kind(repo: &Path, git_ref: &str) -> TargetKind {
    let full = git(repo, &["rev-parse", "--symbolic-full-name", git_ref]).unwrap_or_default();
    if let Some(tag) = full.strip_prefix("refs/tags/") {
        TargetKind::Tag(tag.to_owned())
    } else if let Some(branch) = full.strip_prefix("refs/heads/") {
        TargetKind::Branch(branch.to_owned())
    } else {
        TargetKind::Branch(git_ref.to_owned())
    }
}

/// `git -C repo <args>`'s trimmed output, if it succeeded.
fn git(repo: &Path, args: &[&str]) -> Option<String> {
    run(Command::new("git").arg("-C").arg(repo).args(args))
}

/// `git --git-dir store <args>`'s output, if it succeeded.
fn git_dir(store: &Path, args: &[&str]) -> Option<String> {
    run(Command::new("git").arg("--git-dir").arg(store).args(args))
}

fn run(command: &mut Command) -> Option<String> {
    let output = command.stderr(std::process::Stdio::null()).output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}
