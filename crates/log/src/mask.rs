//! Masking secret values in a log's bytes: [`Masker`] replaces every occurrence of each value
//! by `***`, also when one write ends in the middle of a value and the next finishes it — it
//! holds back a tail that is the start of a value (so shorter than the longest value) until the
//! next write or the end says what it is.
//!
//! Knows nothing of where the values come from or where the bytes go.

/// What a masked value is replaced by.
pub(crate) const MASK: &[u8] = b"***";

/// Replaces secret values in a stream of bytes.
#[derive(Debug, Default)]
pub(crate) struct Masker {
    /// The values, longest first (so that of two values starting at the same byte, the longer
    /// is masked whole); never empty ones.
    secrets: Vec<Vec<u8>>,
    /// Bytes held back: the start of a value, maybe.
    pending: Vec<u8>,
}

impl Masker {
    /// Masks `secrets` too from now on (empty values are ignored).
    pub(crate) fn add(&mut self, secrets: impl IntoIterator<Item = Vec<u8>>) {
        self.secrets
            .extend(secrets.into_iter().filter(|s| !s.is_empty()));
        self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        self.secrets.dedup();
    }

    /// Whether values are masked.
    pub(crate) fn is_active(&self) -> bool {
        !self.secrets.is_empty()
    }

    /// The bytes of `data` that can be written now, masked; a tail that may be the start of a
    /// value is held back.
    pub(crate) fn push(&mut self, data: &[u8]) -> Vec<u8> {
        self.pending.extend_from_slice(data);
        self.masked(true)
    }

    /// Everything held back, masked, and stops masking.
    pub(crate) fn finish(&mut self) -> Vec<u8> {
        let rest = self.masked(false);
        self.secrets.clear();
        rest
    }

    fn masked(&mut self, hold: bool) -> Vec<u8> {
        let buf = &self.pending;
        let mut out = Vec::with_capacity(buf.len());
        let mut i = 0;
        while i < buf.len() {
            let rest = &buf[i..];
            if let Some(secret) = self.secrets.iter().find(|s| rest.starts_with(s)) {
                out.extend_from_slice(MASK);
                i += secret.len();
                continue;
            }
            if hold
                && self
                    .secrets
                    .iter()
                    .any(|s| s.len() > rest.len() && s.starts_with(rest))
            {
                break;
            }
            out.push(buf[i]);
            i += 1;
        }
        self.pending.drain(..i);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masker(secrets: &[&str]) -> Masker {
        let mut masker = Masker::default();
        masker.add(secrets.iter().map(|s| s.as_bytes().to_vec()));
        masker
    }

    /// `chunks` written one by one, then the end.
    fn check(secrets: &[&str], chunks: &[&str], expected: &str) {
        let mut masker = masker(secrets);
        let mut out = Vec::new();
        for chunk in chunks {
            out.extend(masker.push(chunk.as_bytes()));
        }
        out.extend(masker.finish());
        assert_eq!(String::from_utf8_lossy(&out), expected, "{chunks:?}");
    }

    #[test]
    fn every_occurrence_is_masked() {
        check(
            &["hunter2"],
            &["pw=hunter2, again hunter2\n"],
            "pw=***, again ***\n",
        );
        check(&["s3cr3t", "tok"], &["tok s3cr3t tok"], "*** *** ***");
        // Of two values starting at the same byte, the longer is masked whole.
        check(&["ab", "abcd"], &["xabcdx"], "x***x");
    }

    #[test]
    fn a_value_split_across_writes_is_masked() {
        check(&["hunter2"], &["pw=hun", "ter2\n"], "pw=***\n");
        check(
            &["hunter2"],
            &["h", "u", "n", "t", "e", "r", "2", "!"],
            "***!",
        );
        // A held tail that turns out not to be a value is written as it was.
        check(&["hunter2"], &["hunt", "ing\n"], "hunting\n");
        // At the end, a held tail is written, masking the shorter values inside it.
        check(&["abcd", "bc"], &["xabc"], "xa***");
        check(&["hunter2"], &["pw=hunter"], "pw=hunter");
    }

    #[test]
    fn only_the_start_of_a_value_is_held_back() {
        let mut masker = masker(&["hunter2"]);
        assert_eq!(masker.push(b"abc hu"), b"abc ".to_vec());
        assert_eq!(masker.push(b"h"), b"hu".to_vec(), "hh is no value's start");
        assert_eq!(masker.push(b"unter2 ok"), b"*** ok".to_vec());
    }
}
