//! A whole repository with one file replaced by the input: opened, checked with every pack
//! read, listed, restored and repaired. The first byte picks the file; the rest is its new
//! content, sealed with the repository's key where the format seals it, so the input reaches
//! the parsers behind the MAC. Restores go into a fresh directory beside a sentinel one,
//! which must stay empty: nothing in a repository may make a restore write outside its
//! target.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_repo::Id;
use sluice_repo::backend::FileKind;
use sluice_repo::check::{self, ReadData};
use sluice_repo::pack::BlobType;
use sluice_repo::repair::{self, SnapshotRepairOptions};
use sluice_repo::repository::seal_unpacked;
use sluice_repo::restorer::{self, RestoreOptions, RestoreProgress};
use sluice_repo_fuzz::{open, snapshot, store_blobs, template};

fuzz_target!(|data: &[u8]| {
    let Some((&choice, content)) = data.split_first() else {
        return;
    };
    let backend = template().fork();
    let Some(mut repo) = open(&backend) else {
        panic!("the template opens");
    };
    let first = |kind| backend.names(kind).into_iter().next().expect("a file");
    match choice % 8 {
        // A tree: the root of a new snapshot.
        0 => {
            let id = Id::hash(content);
            store_blobs(&mut repo, &[(BlobType::Tree, id, content.to_vec())]);
            repo.save_snapshot(&snapshot(id)).expect("snapshot");
        }
        // An index file, sealed.
        1 => {
            let sealed = seal_unpacked(repo.key(), 2, content);
            backend.put(FileKind::Index, &Id::hash(&sealed).to_hex(), sealed);
        }
        // A snapshot file, sealed.
        2 => {
            let sealed = seal_unpacked(repo.key(), 2, content);
            backend.put(FileKind::Snapshot, &Id::hash(&sealed).to_hex(), sealed);
        }
        // The header of the first pack, sealed, in place of its own.
        3 => {
            let name = first(FileKind::Pack);
            let pack = backend.get(FileKind::Pack, &name).expect("pack");
            let hlen = u32::from_le_bytes(pack[pack.len() - 4..].try_into().unwrap()) as usize;
            let mut bytes = pack[..pack.len() - 4 - hlen].to_vec();
            let header = repo.key().seal(content);
            bytes.extend_from_slice(&header);
            bytes.extend_from_slice(&(header.len() as u32).to_le_bytes());
            backend.put(FileKind::Pack, &name, bytes);
        }
        // A lock file, sealed.
        4 => {
            let sealed = seal_unpacked(repo.key(), 2, content);
            backend.put(FileKind::Lock, &Id::hash(&sealed).to_hex(), sealed);
        }
        // Another key file.
        5 => backend.put(FileKind::Key, &Id::hash(content).to_hex(), content.to_vec()),
        // The config, sealed.
        6 => backend.put(FileKind::Config, "config", repo.key().seal(content)),
        // A pack's raw bytes, under a pack's name.
        _ => {
            let name = first(FileKind::Pack);
            backend.put(FileKind::Pack, &name, content.to_vec());
        }
    }
    let Some(mut repo) = open(&backend) else {
        return;
    };
    let _ = sluice_repo::lock::list(&repo);
    let _ = check::check(&mut repo, ReadData::All, &|_| {});
    if let Ok((snapshots, _)) = repo.read_snapshots() {
        let dir = tempfile::tempdir().expect("temp dir");
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        for (i, s) in snapshots.iter().enumerate() {
            let mut options = RestoreOptions::new(dir.path().join(format!("target{i}")));
            options.verify = true;
            options.delete = true;
            let _ = restorer::restore(&repo, s, &options, &RestoreProgress::default());
        }
        assert_eq!(
            std::fs::read_dir(&outside).unwrap().count(),
            0,
            "a restore wrote outside its target"
        );
    }
    let _ = repair::repair_index(&mut repo, &|_| {});
    let mut fresh = match open(&backend) {
        Some(r) => r,
        None => return,
    };
    if fresh.load_index().is_ok() {
        let _ = repair::repair_snapshots(
            &mut fresh,
            &SnapshotRepairOptions {
                forget: true,
                ..Default::default()
            },
            &mut |_| {},
        );
    }
});
