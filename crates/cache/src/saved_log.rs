//! Saving a build's log (DESIGN §6.1: the cache entry's `log` file) with, for a big log, its
//! index and tail beside it (`log-index`, `log-tail`; see [`datakit_ci_log::index`]), so that a
//! viewer's first view does not inflate the whole log. The `log` file is unchanged, so plain
//! `git show` still reads it.

use std::io::Read;

use datakit_ci_log::index::{INDEX_FILE, IndexingReader, TAIL_FILE};
use datakit_ci_store::{StorePath, Transaction};

use crate::cache::{LOG_FILE, path};

/// Writes `log` as the `log` file of `transaction`, and its index and tail when it is bigger
/// than [`WHOLE_LIMIT`](datakit_ci_log::index::WHOLE_LIMIT). `failed`: the build failed, so
/// the index records its first error-looking line.
pub fn save_log(
    transaction: &mut Transaction,
    log: impl Read,
    failed: bool,
) -> Result<(), datakit_ci_store::Error> {
    let mut reader = IndexingReader::new(log, failed);
    transaction.create_file_from_reader(&path(LOG_FILE), &mut reader)?;
    let indexed = reader.finish();
    if indexed.needs_index() {
        transaction.create_file(&path(INDEX_FILE), indexed.index.to_text())?;
        transaction.create_file(&path(TAIL_FILE), indexed.tail)?;
    } else {
        // A rebuild's smaller log must not keep the index of the log it replaces.
        remove_if_present(transaction, &path(INDEX_FILE))?;
        remove_if_present(transaction, &path(TAIL_FILE))?;
    }
    Ok(())
}

/// Removes the index and tail of a log being replaced (by retention's note).
pub(crate) fn remove_index(transaction: &mut Transaction) -> Result<(), datakit_ci_store::Error> {
    remove_if_present(transaction, &path(INDEX_FILE))?;
    remove_if_present(transaction, &path(TAIL_FILE))
}

fn remove_if_present(
    transaction: &mut Transaction,
    file: &StorePath,
) -> Result<(), datakit_ci_store::Error> {
    if transaction.exists(file)? {
        transaction.remove(file)?;
    }
    Ok(())
}
