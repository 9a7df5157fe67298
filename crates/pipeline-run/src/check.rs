//! The check of a pipeline file, as a cached step keyed by the file's blob id: its log lists
//! every problem (`.datakit-ci.yml:LINE:COL: message`), and its failure says how many there are
//! and what the first is, so that the plan job's status and log both show them.

use std::sync::Arc;

use datakit_ci_cache::{Build, Builder};
use datakit_ci_pipeline::FILE_NAME;
use datakit_ci_store::{BranchName, Snapshot};
use datakit_ci_term::JobId;

/// A file to check: its blob id and its text.
#[derive(Clone, Debug)]
pub(crate) struct FileKey {
    pub(crate) blob: String,
    pub(crate) text: Arc<String>,
}

/// The builder of the check cache.
pub(crate) struct FileCheck {
    pub(crate) label: String,
}

impl Builder for FileCheck {
    type Key = FileKey;
    type Context = JobId;
    type Value = ();

    fn name(&self) -> String {
        format!("pipeline-file:{}", self.label)
    }

    fn title(&self, key: &FileKey) -> String {
        format!("Check {FILE_NAME} (blob {})", short(&key.blob))
    }

    fn branch(&self, key: &FileKey) -> BranchName {
        BranchName::new(format!("pipeline-file-{}", key.blob))
            .expect("a blob id makes a valid branch name")
    }

    async fn generate(&self, build: Build<'_>, _job: &JobId, key: &FileKey) -> Result<(), String> {
        match datakit_ci_pipeline::parse(&key.text) {
            Ok(pipeline) => {
                build.log.log(&format!(
                    "{FILE_NAME} is valid: {} jobs before `when` filters",
                    pipeline.jobs().len()
                ));
                Ok(())
            }
            Err(error) => {
                for problem in &error.problems {
                    build.log.log(&problem.display_in(FILE_NAME));
                }
                Err(summary(&error))
            }
        }
    }

    fn load(&self, _tree: &Snapshot, _key: &FileKey) -> Result<(), String> {
        Ok(())
    }
}

/// `Invalid .datakit-ci.yml: 3:5: message`, plus how many more problems the log lists.
fn summary(error: &datakit_ci_pipeline::ParseError) -> String {
    let Some(first) = error.problems.first() else {
        return format!("Invalid {FILE_NAME}");
    };
    let more = match error.problems.len() - 1 {
        0 => String::new(),
        1 => " (and 1 more problem: see the log)".to_owned(),
        n => format!(" (and {n} more problems: see the log)"),
    };
    format!("Invalid {}{more}", first.display_in(FILE_NAME))
}

fn short(id: &str) -> &str {
    id.get(..7).unwrap_or(id)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_summary_names_the_first_problem_and_counts_the_rest() {
        let error = datakit_ci_pipeline::parse("steps:\n  a:\n    run: x\n    rn: x\n")
            .expect_err("invalid");
        assert_eq!(
            super::summary(&error),
            "Invalid .datakit-ci.yml:4:5: unknown key \"rn\", did you mean \"run\"?"
        );
        let error = datakit_ci_pipeline::parse(
            "steps:\n  a:\n    run: x\n    rn: x\n  b:\n    run: y\n    needs: [c]\n",
        )
        .expect_err("invalid");
        let summary = super::summary(&error);
        assert!(
            summary.starts_with("Invalid .datakit-ci.yml:4:5: unknown key \"rn\"")
                && summary.ends_with(" (and 1 more problem: see the log)"),
            "{summary}"
        );
    }
}
