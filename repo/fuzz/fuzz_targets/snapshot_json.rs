//! Snapshot files: times, paths, tags and ids of any shape.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_repo::snapshot::{Snapshot, SnapshotFilter};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = serde_json::from_slice::<Snapshot>(data) else {
        return;
    };
    let _ = s.timestamp();
    let _ = s.zoned_time();
    let _ = s.has_paths(&["/data".to_string()]);
    let filter = SnapshotFilter {
        hosts: vec!["h".into()],
        tags: vec!["t".into()],
        paths: vec!["/data".into()],
    };
    let _ = filter.matches(&s);
    let again = serde_json::to_vec(&s).expect("a snapshot serializes");
    serde_json::from_slice::<Snapshot>(&again).expect("what was written parses again");
});
