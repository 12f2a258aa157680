//! Which data blobs are worth compressing.
//!
//! restic's `auto` compresses every blob. Already compressed content (media, archives,
//! encrypted volumes) does not shrink, so that pass is wasted CPU, and the zstd frame of
//! raw blocks it produces is even a few bytes larger than the blob. A cheap probe decides
//! instead: a few small samples spread over the blob are compressed at zstd's fastest
//! level, and a blob whose samples shrink by less than about 3% is stored as it is
//! (uncompressed blobs are part of the v2 format; restic reads them).

use std::cell::RefCell;

/// Blobs smaller than this are compressed without a probe: the probe would cost as much.
const MIN_PROBED: usize = 64 << 10;
/// Samples taken from a probed blob, evenly spaced from its start to its end.
const SAMPLES: usize = 8;
/// Bytes in each sample.
const SAMPLE_LEN: usize = 4 << 10;
/// zstd's fastest positive level: the probe asks whether anything compresses at all.
const PROBE_LEVEL: i32 = 1;

/// A probe's zstd context with its sample and output buffers.
type Probe = (zstd::bulk::Compressor<'static>, Vec<u8>, Vec<u8>);

thread_local! {
    /// One probe per thread: creating a context costs more than a probe.
    static PROBE: RefCell<Option<Probe>> = const { RefCell::new(None) };
}

/// True when `blob` is not worth compressing: its probe samples barely shrink.
pub(crate) fn incompressible(blob: &[u8]) -> bool {
    if blob.len() < MIN_PROBED {
        return false;
    }
    PROBE.with(|cell| {
        let mut cell = cell.borrow_mut();
        if cell.is_none() {
            let Ok(c) = zstd::bulk::Compressor::new(PROBE_LEVEL) else {
                return false; // no probe: compress, as restic does
            };
            *cell = Some((c, Vec::new(), Vec::new()));
        }
        let (compressor, sample, out) = cell.as_mut().expect("set above");
        sample.clear();
        for start in sample_starts(blob.len()) {
            sample.extend_from_slice(&blob[start..start + SAMPLE_LEN]);
        }
        out.clear();
        out.reserve(zstd::zstd_safe::compress_bound(sample.len()));
        match compressor.compress_to_buffer(&sample[..], out) {
            Ok(compressed) => saves_too_little(sample.len(), compressed),
            Err(_) => false,
        }
    })
}

/// Where each sample of a blob of `len` bytes (at least [`SAMPLE_LEN`]) starts: the first
/// at 0, the last ending at `len`, the rest evenly between.
fn sample_starts(len: usize) -> impl Iterator<Item = usize> {
    let last = len - SAMPLE_LEN;
    (0..SAMPLES).map(move |i| last * i / (SAMPLES - 1))
}

/// The decision: compressing `sample` bytes to `compressed` saved less than 1/32 of them.
fn saves_too_little(sample: usize, compressed: usize) -> bool {
    compressed + sample / 32 > sample
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decision_by_what_the_sample_saved() {
        for (sample, compressed, skip) in [
            (32768, 32800, true), // raw blocks: larger than the input
            (32768, 32768, true),
            (32768, 31745, true),  // saved 1023 bytes, under 1/32
            (32768, 31744, false), // saved exactly 1/32
            (32768, 12000, false), // text
            (32768, 40, false),    // zeros
        ] {
            assert_eq!(
                saves_too_little(sample, compressed),
                skip,
                "{compressed} of {sample}"
            );
        }
    }

    #[test]
    fn samples_cover_the_blob_from_start_to_end() {
        let starts: Vec<usize> = sample_starts(1 << 20).collect();
        assert_eq!(starts.len(), SAMPLES);
        assert_eq!(starts[0], 0);
        assert_eq!(*starts.last().unwrap() + SAMPLE_LEN, 1 << 20);
        assert!(starts.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(
            sample_starts(SAMPLE_LEN).collect::<Vec<_>>(),
            vec![0; SAMPLES]
        );
    }

    #[test]
    fn probe_tells_random_from_text_and_small_blobs_are_compressed() {
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        let random: Vec<u8> = (0..1 << 20)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let text: Vec<u8> = b"2024-05-06 level=I request served in 12ms path=/api/v1/items\n"
            .iter()
            .copied()
            .cycle()
            .take(1 << 20)
            .collect();
        assert!(incompressible(&random));
        assert!(!incompressible(&text));
        assert!(!incompressible(&random[..MIN_PROBED - 1]));
        // Compressible only in its second half: a sample there says compress.
        let mut half = random.clone();
        half[1 << 19..].copy_from_slice(&text[1 << 19..]);
        assert!(!incompressible(&half));
    }
}
