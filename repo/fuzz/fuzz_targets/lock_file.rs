//! Lock files: their JSON sealed with the repository's key, listed, described and judged
//! stale or not, as every locking command does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_repo::Id;
use sluice_repo::backend::{FileKind, Payload};
use sluice_repo::lock::{self, LockOptions};
use sluice_repo::repository::seal_unpacked;
use sluice_repo_fuzz::{open, template};

fuzz_target!(|data: &[u8]| {
    let backend = template().fork();
    let Some(repo) = open(&backend) else {
        panic!("the template opens");
    };
    let sealed = seal_unpacked(repo.key(), repo.config().version, data);
    backend.put(FileKind::Lock, &Id::hash(&sealed).to_hex(), sealed);
    // The input raw, too: not sealed, not named by its hash.
    let _ = repo
        .backend()
        .save(FileKind::Lock, &"0".repeat(64), Payload::Bytes(data));
    if let Ok(locks) = lock::list(&repo) {
        for (_, l) in &locks {
            let _ = l.describe();
            let _ = l.is_stale(&LockOptions::shared());
        }
    }
    let _ = lock::remove_stale(&repo, &LockOptions::exclusive(), false);
});
