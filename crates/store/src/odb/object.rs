//! Objects on their way into the database: an object's id, kind and encoded data ([`Object`]), and
//! the one thing the database asks of data it shares with the layers above ([`ObjectBytes`]).
//!
//! A tree keeps sharing its bytes with its decoded form in the tree cache: the metadata's flat
//! trees are hundreds of KB, and copying each (into freshly faulted-in pages) was a visible part
//! of a head change at 10,000 targets. The database only needs those bytes, so it takes them
//! behind [`ObjectBytes`], which the tree layer implements; it never knows what a decoded tree is.

use std::sync::Arc;

use gix::ObjectId;

use crate::Error;

/// Encoded object data (without header) owned by a layer above and shared with the database.
pub(crate) trait ObjectBytes: Send + Sync {
    /// The object's data, as stored.
    fn bytes(&self) -> &[u8];
}

/// Shared encoded object data: cheap to clone, the bytes are not copied.
pub(crate) type SharedBytes = Arc<dyn ObjectBytes>;

/// The encoded data of an object (without header): owned, or shared with the layer that made it.
pub(crate) enum ObjectData {
    Bytes(Vec<u8>),
    Shared(SharedBytes),
}

impl AsRef<[u8]> for ObjectData {
    fn as_ref(&self) -> &[u8] {
        match self {
            ObjectData::Bytes(bytes) => bytes,
            ObjectData::Shared(shared) => shared.bytes(),
        }
    }
}

/// An object ready to be stored: its id, kind and encoded data (without header).
pub(crate) type Object = (ObjectId, gix::objs::Kind, ObjectData);

/// Encodes an object as stored in Git (without the header).
pub(crate) fn encode(object: &impl gix::objs::WriteTo) -> Result<Vec<u8>, Error> {
    let mut buf = Vec::new();
    object
        .write_to(&mut buf)
        .map_err(Error::git_other("encode object"))?;
    Ok(buf)
}
