//! The file format as serde types: what `parse` reads and what `json_schema` describes, so the
//! two cannot drift apart. Values stay as written (with positions); `validate` checks them.
//! The doc comments here become the schema's descriptions.

use std::fmt;

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};

use crate::de::{At, Lenient, ScalarText};

/// A datakit-ci pipeline file (`.datakit-ci.yml`).
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, expecting = "a mapping with the key \"steps\"")]
#[schemars(title = "datakit-ci pipeline", rename = "Pipeline")]
pub(crate) struct FileDoc {
    /// The steps, by name, in the order they are shown.
    pub(crate) steps: At<IndexMap<At<String>, Lenient<StepDoc>>>,
}

// Each key is `Lenient` so that a wrong type in one key does not hide the problems of the
// others; a key left out, or unreadable, is `None`.
/// One step: a script to run, where, after what, and when.
#[derive(Deserialize, JsonSchema)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping of step keys (run, image, needs, ...)"
)]
#[schemars(rename = "Step")]
pub(crate) struct StepDoc {
    /// The shell script to run.
    pub(crate) run: Lenient<At<String>>,
    /// The Docker image to run the script in.
    #[serde(default)]
    pub(crate) image: Lenient<At<String>>,
    /// A Dockerfile to build the image from: its path (the context is the repository root) or
    /// a mapping.
    #[serde(default)]
    pub(crate) dockerfile: Lenient<At<DockerfileDoc>>,
    /// Steps that must succeed first.
    #[serde(default)]
    pub(crate) needs: Lenient<Vec<At<String>>>,
    /// One job per combination of these values, also set in the environment.
    #[serde(default)]
    pub(crate) matrix: Lenient<Matrix>,
    /// Environment variables.
    #[serde(default)]
    pub(crate) env: Lenient<IndexMap<At<String>, ScalarText>>,
    /// Names of secrets given to the job.
    #[serde(default)]
    pub(crate) secrets: Lenient<Vec<At<String>>>,
    /// How long the job may run, e.g. `90s`, `30m`, `1h` (default 1h, at most 24h).
    #[serde(default)]
    pub(crate) timeout: Lenient<At<String>>,
    /// Running the job again after some failures.
    #[serde(default)]
    pub(crate) retry: Lenient<RetryDoc>,
    /// Which targets the step applies to.
    #[serde(default)]
    pub(crate) when: Lenient<At<WhenDoc>>,
    /// A failure of this job does not fail the target.
    #[serde(default)]
    pub(crate) allow_failure: Lenient<bool>,
    /// The job runs only when started by hand.
    #[serde(default)]
    pub(crate) manual: Lenient<bool>,
    /// A cron pattern (5 fields, UTC) for running the job on a schedule.
    #[serde(default)]
    pub(crate) schedule: Lenient<At<String>>,
    /// Paths or globs of files to keep after the job.
    #[serde(default)]
    pub(crate) artifacts: Lenient<Vec<At<String>>>,
    /// Repository paths (files or directories) the job reads; none means the whole tree.
    #[serde(default)]
    pub(crate) inputs: Lenient<Vec<At<String>>>,
    /// The machines the job may run on: on a Swarm cluster, the nodes labelled `pool=<name>`.
    #[serde(default)]
    pub(crate) pool: Lenient<At<String>>,
    /// How long the job may give no output (on Swarm, nor change state) before it is taken as
    /// stuck, removed and run again, e.g. `10m` (default: never; at most 24h).
    #[serde(default)]
    pub(crate) stall_timeout: Lenient<At<String>>,
}

/// Matrix keys, each with its values.
pub(crate) type Matrix = IndexMap<At<String>, At<Vec<At<ScalarText>>>>;

/// A Dockerfile: its path, or a mapping with `file`, `context` and `args`.
#[derive(JsonSchema)]
#[serde(untagged)]
#[schemars(rename = "Dockerfile")]
pub(crate) enum DockerfileDoc {
    /// The Dockerfile's path; the build context is the repository root.
    Path(String),
    /// The Dockerfile with its context and build arguments.
    Spec(DockerfileSpec),
}

/// A Dockerfile with its context and build arguments.
#[derive(Deserialize, JsonSchema)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with file, context and args"
)]
#[schemars(rename = "DockerfileSpec")]
pub(crate) struct DockerfileSpec {
    /// The Dockerfile's path in the repository.
    pub(crate) file: At<String>,
    /// The build context, a directory of the repository (default `.`).
    #[serde(default)]
    pub(crate) context: Option<At<String>>,
    /// Build arguments.
    #[serde(default)]
    pub(crate) args: IndexMap<At<String>, ScalarText>,
}

impl<'de> Deserialize<'de> for DockerfileDoc {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DockerfileVisitor;
        impl<'de> Visitor<'de> for DockerfileVisitor {
            type Value = DockerfileDoc;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a path or a mapping with file, context and args")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<DockerfileDoc, E> {
                Ok(DockerfileDoc::Path(v.to_owned()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<DockerfileDoc, A::Error> {
                DockerfileSpec::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(DockerfileDoc::Spec)
            }
        }
        // As a struct, so that our deserializer reports every unknown key of the mapping; a
        // string still comes to `visit_str`.
        deserializer.deserialize_struct(
            "Dockerfile",
            &["file", "context", "args"],
            DockerfileVisitor,
        )
    }
}

/// Running a job again after some failures.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, expecting = "a mapping with attempts and on")]
#[schemars(rename = "Retry")]
pub(crate) struct RetryDoc {
    /// How many times the job may run in all, 1 to 10 (default 1).
    #[serde(default)]
    #[schemars(range(min = 1, max = 10))]
    pub(crate) attempts: Option<At<i64>>,
    /// The failures that are retried: `timeout`, `infrastructure` or an exit code (1 to 255).
    #[serde(default)]
    pub(crate) on: Vec<At<RetryOnDoc>>,
}

/// One kind of failure to retry on, as written.
#[derive(Debug)]
pub(crate) enum RetryOnDoc {
    /// `timeout`, `infrastructure`, or a mistake.
    Word(String),
    /// An exit code, maybe out of range.
    Code(i64),
}

impl<'de> Deserialize<'de> for RetryOnDoc {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RetryOnVisitor;
        impl<'de> Visitor<'de> for RetryOnVisitor {
            type Value = RetryOnDoc;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("timeout, infrastructure or an exit code")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RetryOnDoc, E> {
                Ok(RetryOnDoc::Word(v.to_owned()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RetryOnDoc, E> {
                Ok(RetryOnDoc::Code(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RetryOnDoc, E> {
                Ok(RetryOnDoc::Code(i64::try_from(v).unwrap_or(i64::MAX)))
            }
        }
        deserializer.deserialize_any(RetryOnVisitor)
    }
}

impl JsonSchema for RetryOnDoc {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "RetryOn".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A failure to retry on: `timeout`, `infrastructure` or an exit code",
            "anyOf": [
                { "type": "string", "enum": ["timeout", "infrastructure"] },
                { "type": "integer", "minimum": 1, "maximum": 255 }
            ]
        })
    }
}

/// Which targets a step applies to; a key left out restricts nothing.
#[derive(Deserialize, JsonSchema)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with branches, tags, pull_requests and paths"
)]
#[schemars(rename = "When")]
pub(crate) struct WhenDoc {
    /// Globs of the branch names the step applies to (left out: every branch).
    #[serde(default)]
    pub(crate) branches: Option<Vec<At<String>>>,
    /// Globs of the tag names the step applies to (left out: every tag).
    #[serde(default)]
    pub(crate) tags: Option<Vec<At<String>>>,
    /// Whether the step applies to pull requests (default true).
    #[serde(default)]
    pub(crate) pull_requests: Option<bool>,
    /// Globs of changed files, one of which must match (left out: any change).
    #[serde(default)]
    pub(crate) paths: Option<Vec<At<String>>>,
}
