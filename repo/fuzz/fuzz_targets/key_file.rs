//! Key files: plain JSON whose scrypt parameters decide how much work opening costs.
//! Whatever they ask, opening must neither abort nor take unbounded memory.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_repo::Id;
use sluice_repo::backend::FileKind;
use sluice_repo_fuzz::{MemBackend, PASSWORD};

fuzz_target!(|data: &[u8]| {
    let backend = MemBackend::default();
    backend.put(FileKind::Key, &Id::hash(data).to_hex(), data.to_vec());
    for password in [PASSWORD, "geheim"] {
        let _ = sluice_repo::key::open(&backend, password, &|_| true);
    }
});
