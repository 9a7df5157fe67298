//! A commit's tree as Docker wants it: tar archives made by `git archive` (streamed, for a
//! container's `/src`, or in memory, for a build context), files and tree ids read with `git`,
//! and the Dockerfile edits of a build (its base images, the `FROM` rewrite).
//!
//! Knows nothing of the Docker API or caches: it reads the repository and edits bytes.

use std::path::Path;
use std::process::Stdio;

use bytes::Bytes;
use futures::Stream;
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

use crate::Error;

/// Runs `git args…` in `dir` and returns its standard output, or an error with its standard
/// error.
pub(crate) async fn git_output(dir: &Path, args: &[&str]) -> Result<Vec<u8>, Error> {
    let output = Command::new("git")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| git_error(dir, args, e.to_string()))?;
    if !output.status.success() {
        let message = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        return Err(git_error(dir, args, message));
    }
    Ok(output.stdout)
}

fn git_error(dir: &Path, args: &[&str], message: String) -> Error {
    Error::Git {
        args: args.join(" "),
        dir: dir.to_owned(),
        message,
    }
}

/// The id of the tree at `path` (relative, `""` for the root) in `commit`.
pub(crate) async fn tree_id(dir: &Path, commit: &str, path: &str) -> Result<String, Error> {
    let spec = if path.is_empty() {
        format!("{commit}^{{tree}}")
    } else {
        format!("{commit}:{path}")
    };
    let out = git_output(dir, &["rev-parse", "--verify", "--quiet", &spec]).await?;
    Ok(String::from_utf8_lossy(&out).trim().to_owned())
}

/// The contents of the file at `path` in `commit`, `None` if there is none.
pub(crate) async fn read_file(
    dir: &Path,
    commit: &str,
    path: &str,
) -> Result<Option<Vec<u8>>, Error> {
    let spec = format!("{commit}:{path}");
    let kind = git_output(dir, &["cat-file", "-t", &spec]).await;
    match kind {
        Ok(kind) if kind.trim_ascii() == b"blob" => git_output(dir, &["cat-file", "blob", &spec])
            .await
            .map(Some),
        Ok(_) | Err(_) => Ok(None),
    }
}

/// A tar archive of `treeish` (e.g. `<hash>` or `<hash>:<dir>`), each path under `prefix`,
/// streamed from `git archive` as it writes it. The child is killed if dropped; wait for it to
/// learn whether the archive was complete.
pub(crate) fn archive_stream(
    dir: &Path,
    treeish: &str,
    prefix: &str,
) -> Result<
    (
        Child,
        impl Stream<Item = std::io::Result<Bytes>> + Send + 'static,
    ),
    Error,
> {
    let args = [
        "archive",
        "--format=tar",
        &format!("--prefix={prefix}"),
        treeish,
    ];
    let mut child = Command::new("git")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| git_error(dir, &args, e.to_string()))?;
    let stdout = child
        .stdout
        .take()
        .expect("the child's standard output is piped");
    let stream = futures::stream::unfold(Some(stdout), |stdout| async move {
        let mut stdout = stdout?;
        let mut buffer = vec![0; 64 * 1024];
        match stdout.read(&mut buffer).await {
            Ok(0) => None,
            Ok(n) => {
                buffer.truncate(n);
                Some((Ok(Bytes::from(buffer)), Some(stdout)))
            }
            Err(e) => Some((Err(e), None)),
        }
    });
    Ok((child, stream))
}

/// A path inside the repository, checked: relative, no `..`, no empty component. `.` and `""`
/// are the root, returned as `""`.
pub(crate) fn check_path(what: &'static str, path: &str) -> Result<String, Error> {
    let invalid = |reason: &str| Error::InvalidPath {
        what,
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    if path.starts_with('/') {
        return Err(invalid("it must be relative to the repository's root"));
    }
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() || trimmed == "." {
        return Ok(String::new());
    }
    let mut components = Vec::new();
    for component in trimmed.split('/') {
        match component {
            "" => return Err(invalid("empty path component")),
            ".." => return Err(invalid("'..' in the path")),
            "." => {}
            c => components.push(c),
        }
    }
    Ok(components.join("/"))
}

/// The images the Dockerfile's `FROM` lines name, in order: without `scratch`, names of
/// earlier stages, and names with a build argument in them (`$`), which cannot be known here.
pub(crate) fn base_images(dockerfile: &str) -> Vec<String> {
    let mut stages: Vec<String> = Vec::new();
    let mut bases = Vec::new();
    for line in dockerfile.lines() {
        let mut words = line.split_whitespace();
        if !words.next().is_some_and(|w| w.eq_ignore_ascii_case("FROM")) {
            continue;
        }
        let mut words = words.skip_while(|w| w.starts_with("--"));
        let Some(image) = words.next() else { continue };
        let image = image.to_owned();
        let earlier_stage = stages.contains(&image.to_ascii_lowercase());
        if words.next().is_some_and(|w| w.eq_ignore_ascii_case("AS"))
            && let Some(stage) = words.next()
        {
            stages.push(stage.to_ascii_lowercase());
        }
        if image == "scratch" || image.contains('$') || earlier_stage || bases.contains(&image) {
            continue;
        }
        bases.push(image);
    }
    bases
}

/// The Dockerfile with its first line, `FROM <base> <rest…>`, made `FROM <image> <rest…>`.
pub(crate) fn rewrite_from(path: &str, dockerfile: &str, image: &str) -> Result<String, Error> {
    let rewrite = |reason: String| Error::Rewrite {
        path: path.to_owned(),
        reason,
    };
    let Some((first, rest)) = dockerfile.split_once('\n') else {
        return Err(rewrite("it has no newline".to_owned()));
    };
    let words: Vec<&str> = first.split(' ').collect();
    if words.len() < 2 || !words[0].eq_ignore_ascii_case("FROM") || words[1].starts_with("--") {
        return Err(rewrite(format!(
            "its first line is {first:?}, not 'FROM <image> …'"
        )));
    }
    let mut line = vec!["FROM", image];
    line.extend_from_slice(&words[2..]);
    Ok(format!("{}\n{rest}", line.join(" ")))
}

/// The tar archive `tar` with the file at `path` given `contents` (added if absent).
pub(crate) fn replace_file(tar: &[u8], path: &str, contents: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut archive = tar::Archive::new(tar);
    let mut builder = tar::Builder::new(Vec::new());
    for entry in archive.entries()? {
        let mut entry = entry?;
        if entry.path()?.as_ref() == Path::new(path) {
            continue;
        }
        let header = entry.header().clone();
        builder.append(&header, &mut entry)?;
    }
    let mut header = tar::Header::new_gnu();
    header.set_size(contents.len() as u64);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    builder.append_data(&mut header, path, contents)?;
    builder.into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_in_the_repository() {
        assert_eq!(check_path("p", ".").expect("root"), "");
        assert_eq!(check_path("p", "").expect("root"), "");
        assert_eq!(check_path("p", "a/./b/").expect("a/b"), "a/b");
        for (bad, reason) in [
            ("/etc", "relative"),
            ("a//b", "empty path component"),
            ("a/../../b", "'..'"),
        ] {
            let error = check_path("Dockerfile path", bad)
                .expect_err(bad)
                .to_string();
            assert!(error.contains(reason), "{bad}: {error}");
        }
    }

    #[test]
    fn base_images_skip_stages_scratch_and_arguments() {
        let dockerfile = "FROM --platform=linux/amd64 builder:1 AS build\nRUN x\n\
                          from build AS test\nFROM scratch\nFROM $BASE\nFROM debian:12\n\
                          FROM builder:1\n";
        assert_eq!(base_images(dockerfile), ["builder:1", "debian:12"]);
    }

    #[test]
    fn the_first_from_is_rewritten() {
        let rewritten = rewrite_from(
            "Dockerfile",
            "FROM debian:12 AS base\nRUN true\n",
            "sha256:ab",
        )
        .expect("rewritten");
        assert_eq!(rewritten, "FROM sha256:ab AS base\nRUN true\n");
        let error = rewrite_from("d/Dockerfile", "# hi\nFROM x\n", "i").expect_err("no FROM");
        assert_eq!(
            error.to_string(),
            r##"cannot rewrite "d/Dockerfile" to start from another image: its first line is "# hi", not 'FROM <image> …'"##
        );
        assert!(rewrite_from("D", "FROM x", "i").is_err());
    }

    #[test]
    fn a_file_of_an_archive_is_replaced() {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, data) in [("Dockerfile", &b"FROM a\n"[..]), ("src/x", b"x")] {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            builder
                .append_data(&mut header, path, data)
                .expect("appended");
        }
        let tar = builder.into_inner().expect("written");
        let replaced = replace_file(&tar, "Dockerfile", b"FROM b\n").expect("replaced");
        let mut files = Vec::new();
        for entry in tar::Archive::new(&replaced[..]).entries().expect("entries") {
            let mut entry = entry.expect("entry");
            let mut data = String::new();
            std::io::Read::read_to_string(&mut entry, &mut data).expect("read");
            files.push((entry.path().expect("path").display().to_string(), data));
        }
        files.sort();
        assert_eq!(
            files,
            [
                ("Dockerfile".to_owned(), "FROM b\n".to_owned()),
                ("src/x".to_owned(), "x".to_owned())
            ]
        );
    }
}
