//! Measures this machine's single-core rates of the primitives a backup and a restore are
//! made of, with the code Sluice runs: SHA-256, AES-256-CTR, the seal of a blob (both
//! with Poly1305-AES, whose share is derived from the two), zstd at each level of interest (compress and decompress, with the ratio) and
//! restic's chunker. `make bench` runs it on a sample of each dataset and computes the
//! 2-core floor from these rates; one JSON object per line goes to stdout.
//!
//! Usage: `rates SAMPLE_FILE [REPEATS]`. Each rate is the best of REPEATS (default 3) runs,
//! so a moment of load from elsewhere on a shared machine does not lower it.

use std::hint::black_box;
use std::time::Instant;

use aes::cipher::{KeyIvInit, StreamCipher};
use sluice_repo::chunker::{Chunker, Polynomial};
use sluice_repo::crypto::Key;

/// Best-of-`repeats` bytes per second of `f` over `n` bytes.
fn rate(n: usize, repeats: usize, mut f: impl FnMut()) -> f64 {
    let best = (0..repeats.max(1))
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min);
    n as f64 / best.max(1e-9)
}

fn print(stage: &str, bytes_per_s: f64, extra: &str) {
    println!("{{\"stage\":\"{stage}\",\"bytes_per_s\":{bytes_per_s:.0}{extra}}}");
}

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: rates SAMPLE_FILE [REPEATS]");
    let repeats: usize = args.next().map_or(3, |s| s.parse().expect("REPEATS"));
    let data = std::fs::read(&path).expect("read the sample file");
    let n = data.len();
    // Blobs as the pipeline sees them: chunks of about restic's mean size (1 MiB).
    let blobs: Vec<&[u8]> = data.chunks(1 << 20).collect();

    print(
        "sha256",
        rate(n, repeats, || {
            for b in &blobs {
                black_box(sluice_repo::Id::hash(b));
            }
        }),
        "",
    );

    let mut buf = data.clone();
    let aes = rate(n, repeats, || {
        for piece in buf.chunks_mut(1 << 20) {
            let mut c = ctr::Ctr128BE::<aes::Aes256>::new(&[7u8; 32].into(), &[9u8; 16].into());
            c.apply_keystream(piece);
        }
        black_box(&buf);
    });
    print("aes256ctr", aes, "");
    drop(buf);

    let key = Key::random();
    let mut out = Vec::with_capacity((1 << 20) + 64);
    let seal = rate(n, repeats, || {
        for b in &blobs {
            out.clear();
            key.seal_into(b, &mut out);
            black_box(&out);
        }
    });
    print(
        "seal",
        seal,
        ",\"note\":\"AES-256-CTR and Poly1305-AES of one blob, as stored\"",
    );
    // The MAC's share of a seal: what sealing costs beyond the cipher.
    let poly = 1.0 / (1.0 / seal - 1.0 / aes).max(1e-12);
    print("poly1305", poly, ",\"note\":\"seal minus AES-256-CTR\"");

    for level in [1, 2, 3] {
        let mut c = zstd::bulk::Compressor::new(level).expect("zstd context");
        let mut stored = 0usize;
        let compress = rate(n, repeats, || {
            stored = blobs
                .iter()
                .map(|b| c.compress(b).expect("zstd").len())
                .sum();
        });
        let frames: Vec<Vec<u8>> = blobs.iter().map(|b| c.compress(b).expect("zstd")).collect();
        let mut d = zstd::bulk::Decompressor::new().expect("zstd context");
        let decompress = rate(n, repeats, || {
            for f in &frames {
                black_box(d.decompress(f, 8 << 20).expect("unzstd"));
            }
        });
        let ratio = n as f64 / stored.max(1) as f64;
        print(
            &format!("zstd{level}"),
            compress,
            &format!(",\"ratio\":{ratio:.4},\"decompress_bytes_per_s\":{decompress:.0}"),
        );
    }

    let pol: Polynomial = "3DA3358B4DC173".parse().expect("polynomial");
    let mut chunker = Chunker::new(pol);
    let mut cuts = 0usize;
    print(
        "chunker",
        rate(n, repeats, || {
            chunker.reset();
            let mut rest = &data[..];
            cuts = 0;
            while let Some(at) = chunker.next_boundary(rest) {
                rest = &rest[at..];
                cuts += 1;
            }
        }),
        &format!(",\"chunks\":{}", cuts + 1),
    );
}
