//! The packs a backup relies on without uploading them: blobs it found in the index and
//! used as they are (unchanged files, data and trees it did not store again). Before the
//! snapshot is written they are checked against what the repository still lists, so a
//! pack deleted meanwhile (by a concurrent prune, or lost) fails the backup instead of
//! leaving a snapshot that cannot be restored.

use std::sync::Mutex;

use crate::backend::ListedFile;
use crate::id::IdSet;
use crate::{Error, Id, Repository, Result};

/// Packs relied on so far; shared by the walker and the blob workers.
#[derive(Default)]
pub(super) struct Reused {
    packs: Mutex<IdSet>,
}

impl Reused {
    /// Records that the blob `id` is used from the index; false when the index lacks it.
    pub(super) fn rely_on(&self, repo: &Repository, id: &Id) -> bool {
        match repo.index().get(id) {
            Some(loc) => {
                self.packs.lock().expect("reused packs").insert(loc.pack);
                true
            }
            None => false,
        }
    }

    /// Fails when a pack relied on is no longer listed.
    pub(super) fn verify(self, repo: &Repository) -> Result<()> {
        let listed = repo.backend().list(crate::backend::FileKind::Pack)?;
        let packs = self.packs.into_inner().expect("reused packs");
        match missing_packs(&packs, &listed).as_slice() {
            [] => Ok(()),
            missing => Err(Error::Invalid(format!(
                "{} packs this backup reuses are gone from the repository (pack {} among them), so the snapshot was not saved: they were deleted meanwhile (a prune without a lock?) or lost. Run `check`, then `repair index`; the next backup stores that data again",
                missing.len(),
                missing[0]
            ))),
        }
    }
}

/// The packs of `relied` that `listed` does not have, in id order.
fn missing_packs(relied: &IdSet, listed: &[ListedFile]) -> Vec<Id> {
    let present: IdSet = listed.iter().filter_map(|f| f.name.parse().ok()).collect();
    let mut missing: Vec<Id> = relied
        .iter()
        .filter(|p| !present.contains(p))
        .copied()
        .collect();
    missing.sort();
    missing
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_relied_on_but_not_listed_are_missing() {
        let id = |b: u8| Id([b; 32]);
        let listed = |ids: &[u8]| -> Vec<ListedFile> {
            ids.iter()
                .map(|&b| ListedFile {
                    name: id(b).to_hex(),
                    size: 1,
                })
                .chain([ListedFile {
                    name: "not-a-pack".into(),
                    size: 1,
                }])
                .collect()
        };
        let relied = |ids: &[u8]| -> IdSet { ids.iter().map(|&b| id(b)).collect() };
        for (have, want, missing) in [
            (&[1u8, 2, 3][..], &[1u8, 3][..], &[][..]),
            (&[1, 2], &[1, 2, 3], &[3u8][..]),
            (&[], &[2, 1], &[1, 2]),
            (&[5], &[], &[]),
        ] {
            assert_eq!(
                missing_packs(&relied(want), &listed(have)),
                missing.iter().map(|&b| id(b)).collect::<Vec<_>>(),
                "have {have:?}, want {want:?}"
            );
        }
    }
}
