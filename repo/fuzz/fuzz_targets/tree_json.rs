//! Tree blobs: names (Go-quoted, possibly hostile), link targets, modes and content lists.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_repo::tree::{Tree, name_problems};

fuzz_target!(|data: &[u8]| {
    let Ok(tree) = Tree::from_blob(data) else {
        return;
    };
    let problems = name_problems(&tree.nodes);
    for (i, node) in tree.nodes.iter().enumerate() {
        let name = node.name_bytes();
        let refused = problems.iter().any(|(at, _)| *at == i);
        if !refused {
            assert!(!name.is_empty() && name != b"." && name != b"..");
            assert!(!name.contains(&b'/') && !name.contains(&0));
        }
        let _ = node.link_target_bytes();
        let _ = node.content();
        let _ = sluice_repo::tree::mode::to_unix_perm(node.mode);
    }
    let again = tree.to_blob();
    Tree::from_blob(&again).expect("what was written parses again");
});
