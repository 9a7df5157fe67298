//! The intermediate images of a build, read from its output, and their removal when the build
//! fails. The engine's classic builder commits an image after each step and names it in its
//! output (` ---> <id>`); a finished build's final image holds them as parents (they go when it
//! goes), but a failed build leaves them dangling, and without the build's labels (the classic
//! builder puts those on the final image only), so the label-driven pruner could never find
//! them. `forcerm` already removes the build's intermediate containers, even on failure.
//!
//! Knows nothing of caches or hosts' pools; `build.rs` feeds it the output and calls
//! [`Intermediates::remove`] on failure.

use bollard::Docker;
use bollard::query_parameters::RemoveImageOptions;

use crate::host::is_not_found;

/// The images a build committed, as its output names them.
#[derive(Debug, Default)]
pub(crate) struct Intermediates {
    /// The images committed by the build's steps, oldest first.
    ids: Vec<String>,
    /// Output not yet ended by a newline.
    partial: String,
    /// Whether the step being read is a `FROM`, whose ` ---> <id>` is the base image (not the
    /// build's to remove).
    in_from: bool,
}

impl Intermediates {
    /// Reads more of the build's output (the `stream` text of its messages).
    pub(crate) fn read(&mut self, text: &str) {
        self.partial.push_str(text);
        while let Some(end) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=end).collect();
            self.read_line(line.trim_end());
        }
    }

    fn read_line(&mut self, line: &str) {
        if let Some(step) = line.strip_prefix("Step ") {
            // `Step 1/3 : FROM image AS name`.
            let instruction = step.split_once(" : ").map_or("", |(_, rest)| rest);
            self.in_from = instruction
                .split_whitespace()
                .next()
                .is_some_and(|word| word.eq_ignore_ascii_case("FROM"));
            return;
        }
        let Some(id) = line.strip_prefix(" ---> ") else {
            return;
        };
        let id = id.trim();
        let is_id = !id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit());
        if !is_id {
            // `Running in <container>`, `Using cache`, …
            return;
        }
        if std::mem::take(&mut self.in_from) {
            return;
        }
        if !self.ids.iter().any(|known| known == id) {
            self.ids.push(id.to_owned());
        }
    }

    /// The images read so far, oldest first.
    #[cfg(test)]
    fn ids(&self) -> &[String] {
        &self.ids
    }

    /// Removes the images the build committed, newest first, each only if it has no tag and no
    /// child image and no container uses it (an image a cache hit took from another build is a
    /// parent of that build's image, and stays). Returns how many were removed.
    pub(crate) async fn remove(self, docker: &Docker, host: &str) -> usize {
        let mut removed = 0;
        for id in self.ids.iter().rev() {
            match docker.inspect_image(id).await {
                Ok(image)
                    if image
                        .repo_tags
                        .as_ref()
                        .is_some_and(|tags| !tags.is_empty()) =>
                {
                    continue;
                }
                Ok(_) => {}
                Err(e) if is_not_found(&e) => continue,
                Err(e) => {
                    tracing::warn!(host, image = %id, error = %e, "cannot inspect an intermediate image");
                    continue;
                }
            }
            let options = RemoveImageOptions {
                force: false,
                // Its parents are in the list (or are not the build's): never cascade into them.
                noprune: true,
                ..Default::default()
            };
            match docker.remove_image(id, Some(options), None).await {
                Ok(_) => removed += 1,
                Err(e) if is_not_found(&e) => {}
                // A child image or a container uses it (409): not ours to remove.
                Err(e) => tracing::debug!(host, image = %id, error = %e, "intermediate image kept"),
            }
        }
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_images_of_the_steps_are_read_but_not_the_base() {
        let mut layers = Intermediates::default();
        for chunk in [
            "Step 1/4 : FROM datakit-ci-test/busybox:1\n",
            " ---> 0123456789ab\n",
            "Step 2/4 : RUN echo one > /one\n",
            " ---> Running in fedcba987654\n",
            "Removing intermediate container fedcba987654\n",
            " ---> aaaa",
            "bbbb1111\n",
            "Step 3/4 : COPY . /app\n ---> Using cache\n ---> cccccccc2222\n",
            "Step 4/4 : from other AS second\n ---> dddddddd3333\n",
            "Step 5/5 : RUN false\n ---> Running in 999999999999\n",
        ] {
            layers.read(chunk);
        }
        assert_eq!(layers.ids(), ["aaaabbbb1111", "cccccccc2222"]);
    }
}
