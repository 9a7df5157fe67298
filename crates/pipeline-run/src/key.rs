//! A job's input digest: what decides whether a recorded run can stand for this commit's.
//!
//! It covers the job's definition after matrix expansion ([`Job::definition_digest`]), where it
//! runs, the Git object ids of its `inputs` in the commit (the whole tree by default) and the
//! digests of the jobs it needs. Git object ids are content hashes, so two commits with the same
//! ids for a job's inputs have exactly the same files there: reusing the run is exact, not a
//! guess from changed-file patterns.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use datakit_ci_git::TreeEntry;
use datakit_ci_pipeline::{Job, Runner};
use sha2::{Digest as _, Sha256};

/// Bumped when the digest's text changes meaning, so that old runs are not reused wrongly.
const VERSION: &str = "datakit-ci pipeline step v1";

/// A job's input digest and the lines it is the SHA-256 of (which say what changed between two
/// digests).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Digest {
    pub(crate) hex: String,
    pub(crate) lines: Vec<String>,
}

/// The input digests of `jobs` (which must be closed under `needs` after dropping needs outside
/// `jobs`), given the object ids of every input path (`""` is the whole tree).
///
/// Jobs are digested after the jobs they need; the pipeline file has no cycles (the parser
/// refuses them), and a need on a job not in `jobs` is dropped.
pub(crate) fn digests(
    jobs: &[&Job],
    objects: &HashMap<String, Option<TreeEntry>>,
    schedule_tick: &dyn Fn(&Job) -> Option<u64>,
) -> BTreeMap<String, Digest> {
    let by_name: HashMap<&str, &Job> = jobs.iter().map(|j| (j.name.as_str(), *j)).collect();
    let mut done: BTreeMap<String, Digest> = BTreeMap::new();
    fn visit(
        job: &Job,
        by_name: &HashMap<&str, &Job>,
        objects: &HashMap<String, Option<TreeEntry>>,
        schedule_tick: &dyn Fn(&Job) -> Option<u64>,
        done: &mut BTreeMap<String, Digest>,
    ) -> String {
        if let Some(digest) = done.get(&job.name) {
            return digest.hex.clone();
        }
        let mut text = format!("{VERSION}\ndefinition {}\n", job.definition_digest());
        match &job.runner {
            Runner::Host => text.push_str("runner host\n"),
            Runner::Image(image) => writeln!(text, "runner image {image:?}").expect("a String"),
            Runner::Dockerfile {
                file,
                context,
                args,
            } => {
                writeln!(text, "runner dockerfile {file:?} context {context:?}").expect("a String");
                for (name, value) in args {
                    writeln!(text, "arg {name:?} {value:?}").expect("a String");
                }
            }
        }
        for path in input_paths(job) {
            match objects.get(path).and_then(Option::as_ref) {
                Some(entry) => writeln!(text, "input {path:?} {} {}", entry.kind, entry.id),
                None => writeln!(text, "input {path:?} absent"),
            }
            .expect("a String");
        }
        if let Some(tick) = schedule_tick(job) {
            writeln!(text, "schedule tick {tick}").expect("a String");
        }
        for need in &job.needs {
            if let Some(needed) = by_name.get(need.as_str()) {
                let digest = visit(needed, by_name, objects, schedule_tick, done);
                writeln!(text, "need {need:?} {digest}").expect("a String");
            }
        }
        let digest = hex(&Sha256::digest(text.as_bytes()));
        let lines = text.lines().skip(1).map(str::to_owned).collect();
        done.insert(
            job.name.clone(),
            Digest {
                hex: digest.clone(),
                lines,
            },
        );
        digest
    }
    for job in jobs {
        visit(job, &by_name, objects, schedule_tick, &mut done);
    }
    done
}

/// The paths whose object ids a job's digest covers: its `inputs`, or the whole tree (`""`);
/// with a `dockerfile`, also the Dockerfile and the build context.
pub(crate) fn input_paths(job: &Job) -> Vec<&str> {
    if job.inputs.is_empty() {
        return vec![""];
    }
    let mut paths: Vec<&str> = job.inputs.iter().map(|p| p.trim_end_matches('/')).collect();
    if let Runner::Dockerfile { file, context, .. } = &job.runner {
        for path in [file.as_str(), context.as_str()] {
            let path = path.trim_start_matches("./").trim_end_matches('/');
            paths.push(if path == "." { "" } else { path });
        }
    }
    paths
}

/// The digest of a step in a built image: `digest` (the job's inputs) and the image's id.
pub(crate) fn with_image(digest: &str, image_id: &str) -> String {
    let text = format!("{VERSION}\nsteps {digest}\nimage {image_id}\n");
    hex(&Sha256::digest(text.as_bytes()))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        write!(s, "{b:02x}").expect("a String");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipeline(text: &str) -> datakit_ci_pipeline::Pipeline {
        datakit_ci_pipeline::parse(text).expect("a valid file")
    }

    fn entry(id: &str) -> Option<TreeEntry> {
        Some(TreeEntry {
            kind: "tree".into(),
            id: id.into(),
        })
    }

    #[test]
    fn a_digest_changes_with_its_inputs_and_its_needs_only() {
        let file = pipeline(
            "steps:\n  build:\n    run: make\n    inputs: [src]\n  test:\n    run: make test\n    needs: [build]\n    inputs: [tests]\n  docs:\n    run: make docs\n    inputs: [docs]\n",
        );
        let jobs: Vec<&Job> = file.jobs().iter().collect();
        let objects = |src: &str, tests: &str, docs: &str| {
            HashMap::from([
                ("src".to_owned(), entry(src)),
                ("tests".to_owned(), entry(tests)),
                ("docs".to_owned(), entry(docs)),
            ])
        };
        let none = |_: &Job| None;
        let before = digests(&jobs, &objects("1", "2", "3"), &none);
        let docs_changed = digests(&jobs, &objects("1", "2", "4"), &none);
        assert_eq!(before["build"], docs_changed["build"]);
        assert_eq!(before["test"], docs_changed["test"]);
        assert_ne!(before["docs"], docs_changed["docs"]);
        // A need's input changes its dependants.
        let src_changed = digests(&jobs, &objects("9", "2", "3"), &none);
        assert_ne!(before["build"], src_changed["build"]);
        assert_ne!(before["test"], src_changed["test"]);
        assert_eq!(before["docs"], src_changed["docs"]);
        // A missing input is not the same as a present one.
        let mut gone = objects("1", "2", "3");
        gone.insert("docs".into(), None);
        assert_ne!(before["docs"], digests(&jobs, &gone, &none)["docs"]);
        // A schedule tick is part of the digest.
        let ticked = digests(&jobs, &objects("1", "2", "3"), &|_: &Job| Some(5));
        assert_ne!(before["docs"], ticked["docs"]);
    }

    #[test]
    fn a_changed_definition_changes_the_digest() {
        let one = pipeline("steps:\n  a:\n    run: make\n");
        let two = pipeline("steps:\n  a:\n    run: make all\n");
        let objects = HashMap::from([("".to_owned(), entry("1"))]);
        let none = |_: &Job| None;
        let a = digests(&one.jobs().iter().collect::<Vec<_>>(), &objects, &none);
        let b = digests(&two.jobs().iter().collect::<Vec<_>>(), &objects, &none);
        assert_ne!(a["a"], b["a"]);
        assert_eq!(a["a"].hex.len(), 64);
    }
}
