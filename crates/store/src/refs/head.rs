//! Branch heads: reading where a branch points and moving it with a compare-and-swap, as the
//! store's one committer identity.

use crate::{BranchName, CommitId, Error};

/// Reads the commit the branch points at (`None` if the branch does not exist).
pub(crate) fn read_head(
    repo: &gix::Repository,
    name: &BranchName,
) -> Result<Option<CommitId>, Error> {
    let reference = repo
        .try_find_reference(name.full_ref().as_str())
        .map_err(Error::git("read branch reference"))?;
    match reference {
        None => Ok(None),
        // Our branches point straight at commits; only peel (which reads objects) other kinds.
        Some(reference) if reference.target().try_id().is_some() => {
            let id = reference
                .target()
                .try_id()
                .expect("checked just above")
                .to_owned();
            Ok(Some(CommitId::from_object_id(id)))
        }
        Some(mut reference) => {
            let id = reference
                .peel_to_id()
                .map_err(Error::git("resolve branch reference"))?;
            Ok(Some(CommitId::from_object_id(id.detach())))
        }
    }
}

/// Name and e-mail of the author and committer of every commit.
const IDENTITY: (&str, &str) = ("datakit-ci", "datakit-ci@localhost");

/// The author and committer of every commit, now.
pub(crate) fn signature() -> gix::actor::Signature {
    gix::actor::Signature {
        name: IDENTITY.0.into(),
        email: IDENTITY.1.into(),
        time: gix::date::Time::now_utc(),
    }
}

/// Moves `refs/heads/<branch>` to `new` if it still is `expected` (compare-and-swap).
pub(crate) fn update_head(
    repo: &gix::Repository,
    branch: &BranchName,
    new: gix::ObjectId,
    expected: Option<CommitId>,
) -> Result<(), Error> {
    use gix::refs::transaction::{Change, LogChange, PreviousValue, RefEdit, RefLog};

    let name = branch
        .full_ref()
        .try_into()
        .map_err(Error::git_other("make reference name"))?;
    let expected = match expected {
        Some(id) => PreviousValue::MustExistAndMatch(gix::refs::Target::Object(id.object_id())),
        None => PreviousValue::MustNotExist,
    };
    let edit = RefEdit {
        change: Change::Update {
            log: LogChange {
                mode: RefLog::AndReference,
                force_create_reflog: false,
                message: "datakit-ci commit".into(),
            },
            expected,
            new: gix::refs::Target::Object(new),
        },
        name,
        deref: false,
    };
    let signature = signature();
    let mut time = gix::date::parse::TimeBuf::default();
    repo.edit_references_as(Some(edit), Some(signature.to_ref(&mut time)))
        .map_err(Error::git("update branch reference"))?;
    Ok(())
}
