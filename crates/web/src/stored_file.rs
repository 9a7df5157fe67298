//! A file of the store sent to a client (a saved log, an artifact): read by a blocking task in
//! pieces of a fixed size, with a little read-ahead, so that a file of gigabytes is never held
//! whole and a client that goes away stops the reading.

use std::io;

use axum::body::Bytes;
use tokio::sync::mpsc;

/// How many pieces are read ahead of the client.
const READ_AHEAD: usize = 4;

/// The bytes of `reader`, in pieces of `piece` bytes (the last one shorter). Pieces are whole
/// whatever the reader returns at a time, so what converts them sees the same pieces however
/// the store holds the file. An error ends the pieces.
pub(crate) fn read_in_pieces(
    mut reader: datakit_ci_store::FileReader,
    piece: usize,
) -> mpsc::Receiver<io::Result<Bytes>> {
    let (sender, pieces) = mpsc::channel(READ_AHEAD);
    tokio::task::spawn_blocking(move || {
        loop {
            let mut buffer = Vec::with_capacity(piece);
            let next = match io::Read::read_to_end(
                &mut io::Read::take(&mut reader, piece as u64),
                &mut buffer,
            ) {
                Ok(0) => return,
                Ok(_) => Ok(Bytes::from(buffer)),
                Err(error) => Err(error),
            };
            let failed = next.is_err();
            // A closed channel means the client went away: stop reading.
            if sender.blocking_send(next).is_err() || failed {
                return;
            }
        }
    });
    pieces
}
