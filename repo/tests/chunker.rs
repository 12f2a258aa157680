//! The chunker against restic's own test vectors, and its invariants.
//!
//! restic's chunker tests cut 32 MiB drawn from Go's `math/rand` seeded with
//! 23; the stream is Go's, so this test asks the Go toolchain for it.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use sha2::{Digest, Sha256};
use sluice_repo::chunker::{Chunker, MAX_SIZE, MIN_SIZE, Polynomial};
use sluice_testkit::data::random_bytes;

/// The polynomial restic's chunker tests use.
const TEST_POL: Polynomial = Polynomial::from_bits(0x3DA3358B4DC173);

/// Chunk lengths and SHA-256 digests restic expects for [`go_random`]`(23, 32 MiB)`.
const RESTIC_VECTORS: &[(usize, &str)] = &[
    (
        2163460,
        "4b94cb2cf293855ea43bf766731c74969b91aa6bf3c078719aabdd19860d590d",
    ),
    (
        643703,
        "5727a63c0964f365ab8ed2ccf604912f2ea7be29759a2b53ede4d6841e397407",
    ),
    (
        1528956,
        "a73759636a1e7a2758767791c69e81b69fb49236c6929e5d1b654e06e37674ba",
    ),
    (
        1955808,
        "c955fb059409b25f07e5ae09defbbc2aadf117c97a3724e06ad4abd2787e6824",
    ),
    (
        2222372,
        "6ba5e9f7e1b310722be3627716cf469be941f7f3e39a4c3bcefea492ec31ee56",
    ),
    (
        2538687,
        "8687937412f654b5cfe4a82b08f28393a0c040f77c6f95e26742c2fc4254bfde",
    ),
    (
        609606,
        "5da820742ff5feb3369112938d3095785487456f65a8efc4b96dac4be7ebb259",
    ),
    (
        1205738,
        "cc70d8fad5472beb031b1aca356bcab86c7368f40faa24fe5f8922c6c268c299",
    ),
    (
        959742,
        "4065bdd778f95676c92b38ac265d361f81bff17d76e5d9452cf985a2ea5a4e39",
    ),
    (
        4036109,
        "b9cf166e75200eb4993fc9b6e22300a6790c75e6b0fc8f3f29b68a752d42f275",
    ),
    (
        1525894,
        "2f238180e4ca1f7520a05f3d6059233926341090f9236ce677690c1823eccab3",
    ),
    (
        1352720,
        "afd12f13286a3901430de816e62b85cc62468c059295ce5888b76b3af9028d84",
    ),
    (
        811884,
        "42d0cdb1ee7c48e552705d18e061abb70ae7957027db8ae8db37ec756472a70a",
    ),
    (
        1282314,
        "819721c2457426eb4f4c7565050c44c32076a56fa9b4515a1c7796441730eb58",
    ),
    (
        1318021,
        "842eb53543db55bacac5e25cb91e43cc2e310fe5f9acc1aee86bdf5e91389374",
    ),
    (
        948640,
        "b8e36bf7019bb96ac3fb7867659d2167d9d3b3148c09fe0de45850b8fe577185",
    ),
    (
        645464,
        "5584bd27982191c3329f01ed846bfd266e96548dfa87018f745c33cfc240211d",
    ),
    (
        533758,
        "4da778a25b72a9a0d53529eccfe2e5865a789116cb1800f470d8df685a8ab05d",
    ),
    (
        1128303,
        "08c6b0b38095b348d80300f0be4c5184d2744a17147c2cba5cc4315abf4c048f",
    ),
    (
        800374,
        "820284d2c8fd243429674c996d8eb8d3450cbc32421f43113e980f516282c7bf",
    ),
    (
        2453512,
        "5fa870ed107c67704258e5e50abe67509fb73562caf77caa843b5f243425d853",
    ),
    (
        2651975,
        "181347d2bbec32bef77ad5e9001e6af80f6abcf3576549384d334ee00c1988d8",
    ),
    (
        237392,
        "fcd567f5d866357a8e299fd5b2359bb2c8157c30395229c4e9b0a353944a7978",
    ),
];

/// SHA-256 of MIN_SIZE zero bytes: restic cuts zeros into MIN_SIZE chunks.
const ZERO_CHUNK_DIGEST: &str = "07854d2fef297a06ba81685e660c332de36d5d18d546927d30daad6d7fda1541";

/// Polynomials restic's tests classify, with the expected verdict.
const IRREDUCIBILITY: &[(u64, bool)] = &[
    (0x38f1e565e288df, false),
    (0x3DA3358B4DC173, true),
    (0x30a8295b9d5c91, false),
    (0x255f4350b962cb, false),
    (0x267f776110a235, false),
    (0x2f4dae10d41227, false),
    (0x2482734cacca49, true),
    (0x312daf4b284899, false),
    (0x29dfb6553d01d1, false),
    (0x3548245eb26257, false),
    (0x3199e7ef4211b3, false),
    (0x362f39017dae8b, false),
    (0x200d57aa6fdacb, false),
    (0x35e0a4efa1d275, false),
    (0x2ced55b026577f, false),
    (0x260b012010893d, false),
    (0x2df29cbcd59e9d, false),
    (0x3f2ac7488bd429, false),
    (0x3e5cb1711669fb, false),
    (0x226d8de57a9959, false),
    (0x3c8de80aaf5835, false),
    (0x2026a59efb219b, false),
    (0x39dfa4d13fb231, false),
    (0x3143d0464b3299, false),
];

/// A Go program printing `n` bytes of `math/rand.New(rand.NewSource(seed))`,
/// four little-endian bytes per `Uint32()`, as restic's `getRandom` does.
const GO_RANDOM: &str = r#"package main

import (
	"bufio"
	"math/rand"
	"os"
	"strconv"
)

func main() {
	seed, _ := strconv.ParseInt(os.Args[1], 10, 64)
	n, _ := strconv.Atoi(os.Args[2])
	src := rand.New(rand.NewSource(seed))
	out := bufio.NewWriter(os.Stdout)
	for i := 0; i < n; i += 4 {
		v := src.Uint32()
		out.Write([]byte{byte(v), byte(v >> 8), byte(v >> 16), byte(v >> 24)})
	}
	out.Flush()
}
"#;

fn go_binary() -> PathBuf {
    let candidates = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("go"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    candidates
        .into_iter()
        .chain([PathBuf::from("/usr/local/go/bin/go")])
        .find(|p| p.is_file())
        .expect(
            "go not found: restic's chunker test data is Go's math/rand stream; install Go (apt-get install golang-go) or put it on PATH",
        )
}

/// restic's `getRandom(23, 32 MiB)`, generated once per test binary.
fn restic_test_data() -> &'static [u8] {
    static DATA: OnceLock<Vec<u8>> = OnceLock::new();
    DATA.get_or_init(|| {
        let dir = tempfile::tempdir().expect("create temp dir");
        let src = dir.path().join("random.go");
        std::fs::write(&src, GO_RANDOM).expect("write Go program");
        let size = 32 * 1024 * 1024;
        let output = Command::new(go_binary())
            .arg("run")
            .arg(&src)
            .args(["23", &size.to_string()])
            .env("GO111MODULE", "off")
            .output()
            .expect("run go");
        assert!(
            output.status.success(),
            "go run failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(
            output.stdout.len(),
            size,
            "Go program printed the wrong amount"
        );
        output.stdout
    })
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Feeds `data` in pieces of the given sizes (cycled) and returns chunk ends.
fn chunk_in_pieces(chunker: &mut Chunker, data: &[u8], pieces: &[usize]) -> Vec<usize> {
    let mut ends = Vec::new();
    let mut pos = 0;
    let mut sizes = pieces.iter().cycle();
    while pos < data.len() {
        let piece_end = (pos + sizes.next().unwrap()).min(data.len());
        while let Some(n) = chunker.next_boundary(&data[pos..piece_end]) {
            pos += n;
            ends.push(pos);
        }
        pos = piece_end;
    }
    if ends.last().copied().unwrap_or(0) < data.len() {
        ends.push(data.len());
    }
    ends
}

#[test]
fn cuts_restic_test_vectors() {
    let data = restic_test_data();
    let ends = Chunker::new(TEST_POL).boundaries(data);
    assert_eq!(
        ends.len(),
        RESTIC_VECTORS.len(),
        "chunk count differs from restic"
    );
    let mut start = 0;
    for (i, (&end, &(len, digest))) in ends.iter().zip(RESTIC_VECTORS).enumerate() {
        assert_eq!(end - start, len, "chunk {i} length differs from restic");
        assert_eq!(
            sha256_hex(&data[start..end]),
            digest,
            "chunk {i} digest differs from restic"
        );
        start = end;
    }
}

#[test]
fn cuts_the_same_whatever_the_slice_sizes() {
    let data = restic_test_data();
    let expected: Vec<usize> = RESTIC_VECTORS
        .iter()
        .scan(0, |end, &(len, _)| {
            *end += len;
            Some(*end)
        })
        .collect();
    for pieces in [
        &[1usize << 20][..],
        &[1, 63, 64, 65, 4096, 999_999],
        &[7 * 1024 * 1024 + 3],
        &[MAX_SIZE],
    ] {
        let mut chunker = Chunker::new(TEST_POL);
        assert_eq!(
            chunk_in_pieces(&mut chunker, data, pieces),
            expected,
            "pieces {pieces:?}"
        );
    }
}

#[test]
fn cuts_zeros_at_min_size() {
    let data = vec![0u8; 4 * MIN_SIZE];
    let ends = Chunker::new(TEST_POL).boundaries(&data);
    assert_eq!(
        ends,
        vec![MIN_SIZE, 2 * MIN_SIZE, 3 * MIN_SIZE, 4 * MIN_SIZE]
    );
    assert_eq!(sha256_hex(&data[..MIN_SIZE]), ZERO_CHUNK_DIGEST);
}

#[test]
fn caps_chunks_at_max_size() {
    // A period of 64 bytes gives one fingerprint everywhere; this one is not
    // a cut candidate, so only the size cap ends chunks.
    let chunker = Chunker::new(TEST_POL);
    let pattern: Vec<u8> = (0..64u8).collect();
    let data: Vec<u8> = pattern
        .iter()
        .copied()
        .cycle()
        .take(2 * MAX_SIZE + 100)
        .collect();
    assert_eq!(
        chunker.boundaries(&data),
        vec![MAX_SIZE, 2 * MAX_SIZE, 2 * MAX_SIZE + 100]
    );
}

#[test]
fn reset_starts_a_new_chunk() {
    let data = random_bytes(7, 3 * MAX_SIZE);
    let mut chunker = Chunker::new(TEST_POL);
    assert_eq!(chunker.next_boundary(&data[..1000]), None);
    assert_eq!(chunker.chunk_len(), 1000);
    chunker.reset();
    assert_eq!(chunker.chunk_len(), 0);
    let fresh = Chunker::new(TEST_POL).boundaries(&data);
    assert_eq!(chunk_in_pieces(&mut chunker, &data, &[1 << 20]), fresh);
}

#[test]
fn no_chunk_outside_size_limits_on_random_data() {
    for seed in 0..4 {
        let data = random_bytes(seed, 40 * 1024 * 1024);
        let ends = Chunker::new(TEST_POL).boundaries(&data);
        let mut start = 0;
        for (i, &end) in ends.iter().enumerate() {
            let len = end - start;
            assert!(len <= MAX_SIZE, "seed {seed} chunk {i}: {len} bytes");
            assert!(
                len >= MIN_SIZE || end == data.len(),
                "seed {seed} chunk {i}: {len} bytes"
            );
            start = end;
        }
    }
}

#[test]
fn classifies_restic_irreducibility_vectors() {
    for &(bits, irreducible) in IRREDUCIBILITY {
        assert_eq!(
            Polynomial::from_bits(bits).is_irreducible(),
            irreducible,
            "{bits:#x}"
        );
    }
}

#[test]
fn random_polynomials_are_irreducible_of_degree_53() {
    for _ in 0..20 {
        let pol = Polynomial::random_irreducible();
        assert_eq!(pol.degree(), 53, "{pol}");
        assert!(pol.is_irreducible(), "{pol}");
        assert_eq!(pol.bits() & 1, 1, "{pol}");
    }
}

#[test]
fn a_random_polynomial_cuts_differently() {
    let data = restic_test_data();
    let first = Chunker::new(Polynomial::random_irreducible()).boundaries(data)[0];
    assert_ne!(first, RESTIC_VECTORS[0].0);
}

#[test]
fn polynomial_json_is_restics_hex() {
    let json = serde_json::to_string(&TEST_POL).unwrap();
    assert_eq!(json, "\"3da3358b4dc173\"");
    let back: Polynomial = serde_json::from_str(&json).unwrap();
    assert_eq!(back, TEST_POL);
    let random = Polynomial::random_irreducible();
    let round: Polynomial = serde_json::from_str(&serde_json::to_string(&random).unwrap()).unwrap();
    assert_eq!(round, random);
}

#[test]
fn polynomial_parsing_rejects_what_restic_refuses() {
    let reducible = serde_json::from_str::<Polynomial>("\"38f1e565e288df\"").unwrap_err();
    assert!(
        reducible.to_string().contains("not irreducible"),
        "{reducible}"
    );
    let not_hex = serde_json::from_str::<Polynomial>("\"xyz\"").unwrap_err();
    assert!(
        not_hex.to_string().contains("not a hexadecimal"),
        "{not_hex}"
    );
    // Irreducible, but of a degree restic's chunker cannot use.
    assert!("3".parse::<Polynomial>().is_err());
    assert!("2482734cacca49".parse::<Polynomial>().is_ok());
}
