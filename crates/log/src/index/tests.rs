use std::io::Read as _;

use super::*;

/// A log of `lines` lines of 13 bytes, `line 0000042\n`.
fn log(lines: u64) -> Vec<u8> {
    let mut text = Vec::new();
    for n in 1..=lines {
        text.extend_from_slice(format!("line {n:07}\n").as_bytes());
    }
    text
}

/// Indexes `text` fed in pieces of `piece` bytes.
fn indexed(text: &[u8], piece: usize, seek_errors: bool) -> IndexedLog {
    let mut indexer = Indexer::new(seek_errors);
    for chunk in text.chunks(piece) {
        indexer.feed(chunk);
    }
    indexer.finish()
}

#[test]
fn a_small_log_is_its_own_tail() {
    let text = log(100);
    let indexed = indexed(&text, 1000, false);
    assert_eq!(
        indexed.index,
        LogIndex {
            bytes: 1300,
            lines: 100,
            tail_first_line: 1,
            first_error: FirstError::NotSought,
        }
    );
    assert_eq!(indexed.tail, text);
    assert!(!indexed.needs_index());
    let partial_last = b"one\ntwo".to_vec();
    assert_eq!(
        super::tests::indexed(&partial_last, 3, false).index.lines,
        2
    );
    assert_eq!(super::tests::indexed(b"", 3, false).index.lines, 0);
}

#[test]
fn a_big_logs_tail_starts_at_a_whole_line_whatever_the_chunks() {
    // 400,000 lines of 13 bytes: 5.2 MB.
    let text = log(400_000);
    let whole = indexed(&text, text.len(), false);
    assert!(whole.needs_index());
    assert_eq!(whole.index.lines, 400_000);
    assert_eq!(whole.index.bytes, text.len() as u64);
    let first = format!("line {:07}\n", whole.index.tail_first_line);
    assert!(whole.tail.starts_with(first.as_bytes()), "{first}");
    assert!(whole.tail.ends_with(b"line 0400000\n"));
    assert!(whole.tail.len() <= TAIL_BYTES);
    let tail_lines = count_newlines(&whole.tail);
    assert_eq!(whole.index.tail_first_line + tail_lines - 1, 400_000);
    for piece in [7_777, 256 * 1024, 1024 * 1024 + 3] {
        let pieces = indexed(&text, piece, false);
        assert_eq!(pieces.index, whole.index, "pieces of {piece}");
        assert_eq!(pieces.tail, whole.tail, "pieces of {piece}");
    }
}

#[test]
fn the_first_error_line_is_found_over_the_whole_log() {
    // An error early in a big log, split across chunks; a heading that mentions errors first.
    let mut text = log(10);
    text.extend_from_slice(b"=== error: not a heading's business\n");
    text.extend_from_slice(b"[2026-12-07 18:12.29] Running \"sh\" \"-c\" \"echo error: x\"\n");
    text.extend_from_slice(b"src/main.rs:3: error[E0308]: mismatched types\n");
    text.extend_from_slice(&log(400_000));
    text.extend_from_slice(b"error: a later one\n");
    for piece in [5, 4096, text.len()] {
        let indexed = indexed(&text, piece, true);
        assert_eq!(
            indexed.index.first_error,
            FirstError::Line(13),
            "pieces of {piece}"
        );
        assert!(indexed.needs_index());
    }
    // Not sought for a passed build.
    assert_eq!(
        indexed(&text, 4096, false).index.first_error,
        FirstError::NotSought
    );
    // None found; an error on a last line without newline.
    assert_eq!(
        indexed(&log(5), 4, true).index.first_error,
        FirstError::None
    );
    let mut last = log(5);
    last.extend_from_slice(b"fatal: no newline");
    assert_eq!(
        indexed(&last, 4, true).index.first_error,
        FirstError::Line(6)
    );
}

#[test]
fn the_index_text_round_trips_and_bad_text_is_refused() -> Result<(), IndexError> {
    for first_error in [
        FirstError::NotSought,
        FirstError::None,
        FirstError::Line(42),
    ] {
        let index = LogIndex {
            bytes: 104_857_600,
            lines: 1_300_000,
            tail_first_line: 1_293_000,
            first_error,
        };
        assert_eq!(LogIndex::parse(index.to_text().as_bytes())?, index);
    }
    assert_eq!(
        LogIndex {
            bytes: 5,
            lines: 1,
            tail_first_line: 1,
            first_error: FirstError::Line(1)
        }
        .to_text(),
        "datakit-ci log index 1\nbytes 5\nlines 1\ntail-first-line 1\nfirst-error 1\n"
    );
    // A newer writer's extra keys are ignored.
    let newer = "datakit-ci log index 1\nbytes 5\nlines 1\ntail-first-line 1\nsections 3\n";
    assert_eq!(LogIndex::parse(newer.as_bytes())?.lines, 1);
    for bad in [
        "",
        "datakit-ci log index 2\nbytes 5\nlines 1\ntail-first-line 1\n",
        "datakit-ci log index 1\nbytes 5\nlines 1\n",
        "datakit-ci log index 1\nbytes five\nlines 1\ntail-first-line 1\n",
    ] {
        let error = LogIndex::parse(bad.as_bytes()).expect_err(bad);
        assert!(
            error.to_string().starts_with("unreadable log index: "),
            "{error}"
        );
    }
    assert!(LogIndex::parse(b"\xff\xfe").is_err());
    Ok(())
}

#[test]
fn an_indexing_reader_indexes_what_is_read_through_it() -> io::Result<()> {
    let text = log(500_000);
    let mut reader = IndexingReader::new(text.as_slice(), true);
    let mut copy = Vec::new();
    reader.read_to_end(&mut copy)?;
    assert_eq!(copy, text);
    assert_eq!(reader.finish(), indexed(&text, 8192, true));
    Ok(())
}
