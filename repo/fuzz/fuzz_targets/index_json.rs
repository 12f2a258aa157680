//! Index files: JSON with any shape, lengths and offsets, merged into the in-memory index.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_repo::index::{Index, IndexBlob, IndexFile};
use sluice_repo::pack::PackedBlob;
use sluice_repo::prune::expected_pack_size;

fuzz_target!(|data: &[u8]| {
    let Ok(file) = IndexFile::parse(data) else {
        return;
    };
    let mut index = Index::new();
    index.add_file(&file);
    for loc in index.iter() {
        let _ = loc.blob.plain_length();
    }
    for pack in &file.packs {
        let blobs: Vec<PackedBlob> = pack.blobs.iter().map(IndexBlob::to_packed).collect();
        let _ = expected_pack_size(&blobs);
    }
    let again = serde_json::to_vec(&file).expect("an index serializes");
    IndexFile::parse(&again).expect("what was written parses again");
});
