//! The parallel boundary search must give exactly the sequential cuts, on
//! any data and from any starting state.

use sluice_repo::chunker::{Chunker, MIN_SIZE, Polynomial};
use sluice_testkit::data::random_bytes;

const MIB: usize = 1024 * 1024;

fn chunker() -> Chunker {
    Chunker::new(Polynomial::from_bits(0x3DA3358B4DC173))
}

fn assert_same(data: &[u8], threads: usize, what: &str) {
    let c = chunker();
    let sequential = c.boundaries(data);
    let parallel = c.parallel_boundaries(data, threads);
    assert_eq!(
        parallel,
        sequential,
        "{what}, {} bytes, {threads} threads",
        data.len()
    );
}

#[test]
fn random_data_many_seeds_and_sizes() {
    let sizes = [33 * MIB + 1, 40 * MIB - 7, 48 * MIB, 70 * MIB + 12345];
    for (seed, &size) in sizes.iter().enumerate() {
        let data = random_bytes(seed as u64 + 100, size);
        for threads in [2, 3, 4] {
            assert_same(&data, threads, &format!("seed {seed}"));
        }
    }
}

#[test]
fn small_data_and_one_thread_fall_back_to_sequential() {
    let data = random_bytes(1, 5 * MIB);
    assert_same(&data, 4, "small");
    assert_same(&random_bytes(2, 40 * MIB), 1, "one thread");
    assert_same(&[], 2, "empty");
}

#[test]
fn zeros_patterns_and_mixtures() {
    assert_same(&vec![0u8; 40 * MIB + 3], 2, "zeros");
    // A 64-byte period gives no cut candidate: only MAX_SIZE cuts, which a
    // guess from a region start never meets. The fallback must still be exact.
    let pattern: Vec<u8> = (0..64u8).cycle().take(50 * MIB).collect();
    assert_same(&pattern, 3, "pattern");
    // Random data with long zero runs at awkward places.
    let mut mixed = random_bytes(9, 60 * MIB);
    for (start, len) in [
        (3 * MIB + 17, 5 * MIB),
        (29 * MIB + 1, 2 * MIB),
        (44 * MIB, MIB + 5),
    ] {
        mixed[start..start + len].fill(0);
    }
    for threads in [2, 3] {
        assert_same(&mixed, threads, "mixed");
    }
}

#[test]
fn continues_from_the_middle_of_a_chunk_like_the_sequential_search() {
    let data = random_bytes(5, 90 * MIB);
    let expected = chunker().boundaries(&data);
    for first in [1000, MIN_SIZE - 3, 3 * MIB + 1] {
        let mut c = chunker();
        let mut ends = Vec::new();
        let mut pos = 0;
        while let Some(n) = c.next_boundary(&data[pos..first]) {
            pos += n;
            ends.push(pos);
        }
        // Two large buffers in a row, as the backup pipeline feeds a big file.
        let middle = first + 37 * MIB;
        ends.extend(
            c.parallel_next_boundaries(&data[first..middle], 2)
                .iter()
                .map(|e| e + first),
        );
        ends.extend(
            c.parallel_next_boundaries(&data[middle..], 3)
                .iter()
                .map(|e| e + middle),
        );
        if ends.last() != Some(&data.len()) {
            ends.push(data.len());
        }
        assert_eq!(ends, expected, "first slice {first} bytes");
        // The state left behind is the sequential one too.
        let mut sequential = chunker();
        let mut p = 0;
        while let Some(n) = sequential.next_boundary(&data[p..]) {
            p += n;
        }
        assert_eq!(c.chunk_len(), sequential.chunk_len());
    }
}
