//! Deterministic test data without a random-number crate.
//!
//! One xorshift64 generator for every crate's tests, so "random" data sets
//! are the same on every run and in every test that names the same seed.

/// A xorshift64 stream of incompressible, non-repeating bytes.
#[derive(Clone, Debug)]
pub struct RandomBytes {
    state: u64,
}

impl RandomBytes {
    /// The stream for `seed`; every seed (zero too) gives a distinct,
    /// non-degenerate stream.
    pub fn new(seed: u64) -> RandomBytes {
        RandomBytes {
            state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
        }
    }

    /// Fills `buf` with the next bytes of the stream.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.state ^= self.state << 13;
            self.state ^= self.state >> 7;
            self.state ^= self.state << 17;
            chunk.copy_from_slice(&self.state.to_le_bytes()[..chunk.len()]);
        }
    }
}

/// `len` bytes of the stream for `seed`.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut out = vec![0; len];
    RandomBytes::new(seed).fill(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_deterministic_and_seeds_differ() {
        assert_eq!(random_bytes(7, 1000), random_bytes(7, 1000));
        assert_ne!(random_bytes(7, 64), random_bytes(8, 64));
        assert_ne!(random_bytes(0, 64), vec![0; 64]);
    }

    #[test]
    fn filling_in_pieces_gives_the_same_stream_on_word_boundaries() {
        let whole = random_bytes(3, 64);
        let mut stream = RandomBytes::new(3);
        let mut pieces = vec![0; 64];
        stream.fill(&mut pieces[..24]);
        stream.fill(&mut pieces[24..]);
        assert_eq!(pieces, whole);
    }
}
