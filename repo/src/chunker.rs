//! restic's content-defined chunker: a Rabin fingerprint over a 64-byte
//! window, with the repository's random irreducible polynomial.
//!
//! Cut points must be identical to restic's, or a repository that restic
//! filled stops deduplicating against what Sluice writes. The rules, as
//! restic's `chunker` package applies them:
//!
//! - a chunk is cut after the byte at which the low 20 bits of the window's
//!   fingerprint are zero, provided the chunk then holds at least
//!   [`MIN_SIZE`] bytes; a chunk that reaches [`MAX_SIZE`] is cut there;
//! - after a cut the window is cleared and a single byte `1` is slid in, and
//!   the first `MIN_SIZE - 64` bytes of the next chunk are not hashed at all.
//!
//! A consequence the parallel search relies on: whether a chunk ends at
//! position `p` depends only on the chunk's start and the 64 bytes before `p`
//! (the byte `1` has left the window exactly when the chunk reaches
//! `MIN_SIZE`). So a chunker restarted at any cut point behaves like one that
//! arrived there from the start of the file.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Smallest chunk restic cuts (except for the last chunk of a file).
pub const MIN_SIZE: usize = 512 * 1024;
/// Largest chunk restic cuts; a chunk that reaches it is cut regardless of
/// its fingerprint.
pub const MAX_SIZE: usize = 8 * 1024 * 1024;
/// Bytes covered by the rolling fingerprint.
const WINDOW_SIZE: usize = 64;
/// A cut needs these fingerprint bits to be zero: about one cut per MiB.
const SPLIT_MASK: u64 = (1 << 20) - 1;

/// A polynomial over GF(2), one bit per coefficient: the secret that makes a
/// repository's chunk boundaries unpredictable to outsiders.
///
/// Its text form is the lowercase hex restic stores as `chunker_polynomial`
/// in the repository config.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Polynomial(u64);

/// Why a `chunker_polynomial` value cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PolynomialError {
    /// The text is not a hexadecimal `u64`.
    #[error(
        "chunker polynomial {0:?} is not a hexadecimal number; the repository config is damaged"
    )]
    NotHex(String),
    /// The polynomial would not give restic's chunk boundaries.
    #[error(
        "chunker polynomial {0} is not irreducible of degree 16 to 53, which restic requires; the repository config is damaged"
    )]
    Unusable(Polynomial),
}

impl Polynomial {
    /// The polynomial whose coefficients are the bits of `bits`, unchecked:
    /// use [`Polynomial::is_usable`] before chunking with it.
    pub const fn from_bits(bits: u64) -> Self {
        Polynomial(bits)
    }

    /// The coefficients as bits.
    pub const fn bits(self) -> u64 {
        self.0
    }

    /// A fresh random irreducible polynomial of degree 53, drawn as restic's
    /// `RandomPolynomial` draws one, for a new repository's config.
    pub fn random_irreducible() -> Self {
        use rand::Rng;
        let mut rng = rand::rng();
        // About one candidate in 53 is irreducible, so this ends after a few
        // dozen draws; restic gives up after a million, which never happens.
        loop {
            // Keep bits 0..=53, then force degree 53 and a constant term (a
            // polynomial without one is divisible by x).
            let candidate = Polynomial((rng.random::<u64>() & ((1 << 54) - 1)) | (1 << 53) | 1);
            if candidate.is_irreducible() {
                return candidate;
            }
        }
    }

    /// The degree, or -1 for the zero polynomial.
    pub const fn degree(self) -> i32 {
        63 - self.0.leading_zeros() as i32
    }

    /// Whether the polynomial has no non-trivial factor, by Ben-Or's test as
    /// restic applies it: `gcd(f, x^(2^i) - x mod f) = 1` for every
    /// `i <= deg(f) / 2`.
    pub fn is_irreducible(self) -> bool {
        (1..=self.degree() / 2).all(|i| gcd(self.0, frobenius_minus_x(i as u32, self.0)) == 1)
    }

    /// Whether restic's chunker can run with this polynomial: irreducible,
    /// and of degree 16 to 53 (restic draws degree 53; its chunker refuses
    /// more than 53, and the two-byte tables here need at least 16).
    pub fn is_usable(self) -> bool {
        (16..=53).contains(&self.degree()) && self.is_irreducible()
    }
}

impl fmt::Display for Polynomial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}", self.0)
    }
}

impl FromStr for Polynomial {
    type Err = PolynomialError;

    /// Parses restic's hex form and rejects polynomials restic would refuse.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bits = u64::from_str_radix(s, 16).map_err(|_| PolynomialError::NotHex(s.to_owned()))?;
        let pol = Polynomial(bits);
        if pol.is_usable() {
            Ok(pol)
        } else {
            Err(PolynomialError::Unusable(pol))
        }
    }
}

impl Serialize for Polynomial {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Polynomial {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// `x mod m` over GF(2).
fn poly_mod(mut x: u64, m: u64) -> u64 {
    let dm = Polynomial(m).degree();
    loop {
        let dx = Polynomial(x).degree();
        if dx < dm {
            return x;
        }
        x ^= m << (dx - dm);
    }
}

/// `a * b mod m` over GF(2), for `a` and `b` already reduced modulo `m`.
fn mul_mod(a: u64, mut b: u64, m: u64) -> u64 {
    let top = 1u64 << Polynomial(m).degree();
    let mut a = a;
    let mut product = 0;
    while b != 0 {
        if b & 1 == 1 {
            product ^= a;
        }
        b >>= 1;
        // `a` stays below `top`, so doubling it never loses a coefficient.
        a <<= 1;
        if a & top != 0 {
            a ^= m;
        }
    }
    product
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, poly_mod(a, b));
    }
    a
}

/// `x^(2^p) - x mod g`, the term of Ben-Or's irreducibility test.
fn frobenius_minus_x(p: u32, g: u64) -> u64 {
    let mut power = poly_mod(2, g);
    for _ in 0..p {
        power = mul_mod(power, power, g);
    }
    poly_mod(power ^ 2, g)
}

/// Lookup tables for the rolling fingerprint, computed once per polynomial
/// and shared by every chunker of a repository.
///
/// The fingerprint `D` of a window is a polynomial of degree below `d`, the
/// polynomial's degree. Sliding byte `b` in while byte `o` leaves is
/// `D' = L(D) ^ L(out(o)) ^ b`, where `L(X) = X * x^8 mod P` and `out(o)` is
/// the fingerprint of `o` followed by 63 zero bytes. Every step is linear,
/// so two steps fold into
/// `D'' = L(L(D)) ^ L(L(out(o1))) ^ (b1 << 8) ^ L(out(o2)) ^ b2`:
/// the only part that depends on the previous fingerprint is `L(L(D))`, one
/// table lookup per byte pair. That halves the dependency chain that bounds
/// a byte-at-a-time loop.
struct Tables {
    /// `reduce[t]` turns `X << 8` into `L(X)` for `t = X >> (d - 8)`: it
    /// reduces the 8 bits pushed above the degree and clears them.
    reduce: [u64; 256],
    /// `out_rolled[o] = L(out(o))`.
    out_rolled: [u64; 256],
    /// `out_rolled_twice[o] = L(L(out(o)))`.
    out_rolled_twice: [u64; 256],
    /// `high[t] = t * x^(d + 8) mod P`, for the top 8 bits of `D` in `L(L(D))`.
    high: [u64; 256],
    /// `low[t] = t * x^d mod P`, for the next 8 bits of `D` in `L(L(D))`.
    low: [u64; 256],
    /// `d - 8`.
    shift: u32,
    /// The bits of `D` below the top 16, which `L(L(D))` merely shifts.
    keep_mask: u64,
}

impl Tables {
    fn new(pol: Polynomial) -> Self {
        assert!(
            pol.is_usable(),
            "chunker polynomial {pol} is not usable: validate it with Polynomial::is_usable first"
        );
        let p = pol.0;
        let degree = pol.degree() as u32;
        let table = |f: &dyn Fn(u64) -> u64| {
            let mut t = [0; 256];
            for (i, slot) in t.iter_mut().enumerate() {
                *slot = f(i as u64);
            }
            t
        };
        let reduce = table(&|t| poly_mod(t << degree, p) | (t << degree));
        let out = table(&|b| (1..WINDOW_SIZE).fold(poly_mod(b, p), |h, _| poly_mod(h << 8, p)));
        let shift = degree - 8;
        let roll = |x: u64| (x << 8) ^ reduce[(x >> shift) as usize];
        Tables {
            reduce,
            out_rolled: out.map(roll),
            out_rolled_twice: out.map(|o| roll(roll(o))),
            // t << (degree + 8) may not fit in 64 bits; reduce in two steps.
            high: table(&|t| poly_mod(poly_mod(t << degree, p) << 8, p)),
            low: table(&|t| poly_mod(t << degree, p)),
            shift,
            keep_mask: (1 << (degree - 16)) - 1,
        }
    }

    /// `L(D)`.
    #[inline(always)]
    fn shift_byte(&self, digest: u64) -> u64 {
        // SAFETY: a fingerprint is reduced below the degree `shift + 8`, so
        // its top byte index is below 256.
        (digest << 8) ^ unsafe { *self.reduce.get_unchecked((digest >> self.shift) as usize) }
    }

    /// `L(L(D))`.
    #[inline(always)]
    fn shift_two_bytes(&self, digest: u64) -> u64 {
        // SAFETY: as in `shift_byte`.
        let high = unsafe { *self.high.get_unchecked((digest >> self.shift) as usize) };
        let low = self.low[(digest >> (self.shift - 8)) as u8 as usize];
        ((digest & self.keep_mask) << 16) ^ high ^ low
    }

    /// Slides `incoming` into the fingerprint as `outgoing` leaves.
    #[inline(always)]
    fn roll(&self, digest: u64, outgoing: u8, incoming: u8) -> u64 {
        self.shift_byte(digest) ^ self.out_rolled[outgoing as usize] ^ incoming as u64
    }

    /// Two [`Tables::roll`] steps at once; returns both fingerprints.
    #[inline(always)]
    fn roll_two(&self, digest: u64, outgoing: [u8; 2], incoming: [u8; 2]) -> (u64, u64) {
        let first = self.roll(digest, outgoing[0], incoming[0]);
        let second = self.shift_two_bytes(digest)
            ^ self.out_rolled_twice[outgoing[0] as usize]
            ^ ((incoming[0] as u64) << 8)
            ^ self.out_rolled[outgoing[1] as usize]
            ^ incoming[1] as u64;
        (first, second)
    }
}

/// Finds restic's chunk boundaries in a stream fed to it slice by slice.
///
/// The backup pipeline reads a file in large buffers and hands each buffer to
/// [`Chunker::next_boundary`] until it reports no further cut; the chunker
/// keeps the state of the unfinished chunk between buffers. Cloning is cheap
/// (the tables are shared), so concurrent files each get their own clone.
#[derive(Clone)]
pub struct Chunker {
    tables: Arc<Tables>,
    window: [u8; WINDOW_SIZE],
    /// Where the oldest byte of `window` sits.
    window_pos: usize,
    digest: u64,
    /// Bytes of the current chunk consumed so far.
    len: usize,
}

impl fmt::Debug for Chunker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chunker")
            .field("chunk_len", &self.len)
            .finish_non_exhaustive()
    }
}

impl Chunker {
    /// A chunker at the start of a chunk.
    ///
    /// # Panics
    /// If `pol` is not [usable](Polynomial::is_usable); polynomials from
    /// [`Polynomial::random_irreducible`] or parsed from a config always are.
    pub fn new(pol: Polynomial) -> Self {
        let mut chunker = Chunker {
            tables: Arc::new(Tables::new(pol)),
            window: [0; WINDOW_SIZE],
            window_pos: 0,
            digest: 0,
            len: 0,
        };
        chunker.reset();
        chunker
    }

    /// Starts a new chunk, dropping the unfinished one: call it at the start
    /// of each file (the bytes left at the end of a file form its last chunk).
    pub fn reset(&mut self) {
        self.window = [0; WINDOW_SIZE];
        // restic slides in a single byte 1 after clearing the window. Its
        // fingerprint is 1, and it never influences a cut: it leaves the
        // window exactly when the chunk reaches MIN_SIZE.
        self.window[0] = 1;
        self.window_pos = 1;
        self.digest = 1;
        self.len = 0;
    }

    /// How many bytes of the unfinished chunk have been consumed.
    pub fn chunk_len(&self) -> usize {
        self.len
    }

    /// Consumes `data` as the continuation of the current chunk. Returns
    /// `Some(n)` when the chunk ends after `data[..n]`; the chunker then
    /// stands at the start of the next chunk and expects `data[n..]` next.
    /// Returns `None` when all of `data` belongs to the current chunk.
    pub fn next_boundary(&mut self, data: &[u8]) -> Option<usize> {
        // restic does not hash the first MIN_SIZE - WINDOW_SIZE bytes of a
        // chunk: none of them can end it, and none is in the window by the
        // time the chunk may end.
        let skip_until = MIN_SIZE - WINDOW_SIZE;
        let mut start = 0;
        if self.len < skip_until {
            let skip = skip_until - self.len;
            if skip >= data.len() {
                self.len += data.len();
                return None;
            }
            start = skip;
            self.len = skip_until;
        }
        // From here every byte is hashed. Bytes that may not end the chunk
        // because it is still below MIN_SIZE are at most the first 63 hashed
        // ones, all of which slide out of the stored window; the bulk loop
        // below takes outgoing bytes from `data` itself and needs no checks
        // but the fingerprint and the size cap.
        let end = data.len().min(start + (MAX_SIZE - self.len));
        let head_end = end.min(start + WINDOW_SIZE);
        let tables = &*self.tables;
        let mut digest = self.digest;
        for (k, &incoming) in data[start..head_end].iter().enumerate() {
            let slot = (self.window_pos + k) % WINDOW_SIZE;
            let outgoing = std::mem::replace(&mut self.window[slot], incoming);
            digest = tables.roll(digest, outgoing, incoming);
            if digest & SPLIT_MASK == 0 && self.len + k + 1 >= MIN_SIZE {
                return Some(self.cut(start + k + 1));
            }
        }
        if end > head_end {
            // Every window in this range lies entirely inside `data`.
            let incoming = &data[head_end..end];
            let outgoing = &data[head_end - WINDOW_SIZE..end - WINDOW_SIZE];
            let pairs = incoming.chunks_exact(2).zip(outgoing.chunks_exact(2));
            for (k, (inc, out)) in pairs.enumerate() {
                let (first, second) = tables.roll_two(digest, [out[0], out[1]], [inc[0], inc[1]]);
                if first & SPLIT_MASK == 0 {
                    return Some(self.cut(head_end + 2 * k + 1));
                }
                if second & SPLIT_MASK == 0 {
                    return Some(self.cut(head_end + 2 * k + 2));
                }
                digest = second;
            }
            if incoming.len() % 2 == 1 {
                let last = incoming.len() - 1;
                digest = tables.roll(digest, outgoing[last], incoming[last]);
                if digest & SPLIT_MASK == 0 {
                    return Some(self.cut(end));
                }
            }
            self.window.copy_from_slice(&data[end - WINDOW_SIZE..end]);
            self.window_pos = 0;
        } else {
            self.window_pos = (self.window_pos + (head_end - start)) % WINDOW_SIZE;
        }
        self.len += end - start;
        self.digest = digest;
        if self.len == MAX_SIZE {
            return Some(self.cut(end));
        }
        None
    }

    fn cut(&mut self, n: usize) -> usize {
        self.reset();
        n
    }

    /// The end offset of every chunk of `data` taken as a whole file: the
    /// last entry is `data.len()` (none for empty data). Ignores and keeps
    /// this chunker's own state.
    pub fn boundaries(&self, data: &[u8]) -> Vec<usize> {
        let mut chunker = self.fresh();
        let mut ends = chunker.feed(data, 0);
        if ends.last().copied().unwrap_or(0) < data.len() {
            ends.push(data.len());
        }
        ends
    }

    /// [`Chunker::boundaries`] searched with up to `threads` threads; the
    /// result is identical.
    pub fn parallel_boundaries(&self, data: &[u8], threads: usize) -> Vec<usize> {
        let mut ends = self.fresh().parallel_next_boundaries(data, threads);
        if ends.last().copied().unwrap_or(0) < data.len() {
            ends.push(data.len());
        }
        ends
    }

    /// Like calling [`Chunker::next_boundary`] over `data` until it returns
    /// `None` and collecting the cut offsets, but searching with up to
    /// `threads` threads, so that one large file does not leave the other
    /// cores idle. The cuts, and the state left for the next slice, are
    /// exactly those of the sequential search.
    ///
    /// `data` is split into regions; each region but the first is chunked by
    /// its own thread as if a chunk started there, which is a guess. The true
    /// chunking then continues from the region before; as soon as it cuts
    /// where the guess also cut, both have reset at the same position and
    /// agree from there on, so the rest of the guess is taken as is. On
    /// random data that happens after a chunk or two; data on which the two
    /// never meet (a short repeating pattern) costs one extra sequential pass
    /// over the region, never a wrong cut. Regions start at multiples of
    /// [`MIN_SIZE`] so that runs of zero bytes, where every position is a cut
    /// candidate and chunks are exactly `MIN_SIZE`, agree at once.
    pub fn parallel_next_boundaries(&mut self, data: &[u8], threads: usize) -> Vec<usize> {
        // The guess and the true chunking usually meet within a chunk or
        // two (about 1.5 MiB on random data); smaller regions would spend
        // too much of their work before that.
        const MIN_REGION: usize = MAX_SIZE;
        let regions = threads.min(data.len() / MIN_REGION).max(1);
        if regions == 1 {
            return self.feed(data, 0);
        }
        let region_len = (data.len() / regions).div_ceil(MIN_SIZE) * MIN_SIZE;
        let mut bounds: Vec<usize> = (0..regions)
            .map(|r| (r * region_len).min(data.len()))
            .collect();
        bounds.push(data.len());

        let (mut cuts, guesses) = std::thread::scope(|scope| {
            let handles: Vec<_> = bounds
                .windows(2)
                .skip(1)
                .map(|w| {
                    let (start, end) = (w[0], w[1]);
                    let mut guess = self.fresh();
                    scope.spawn(move || (guess.feed(&data[start..end], start), guess))
                })
                .collect();
            let cuts = self.feed(&data[..bounds[1]], 0);
            let guesses: Vec<_> = handles
                .into_iter()
                .map(|h| h.join().expect("chunker thread panicked"))
                .collect();
            (cuts, guesses)
        });

        for (w, (guess_cuts, guess_end_state)) in bounds.windows(2).skip(1).zip(guesses) {
            let (start, end) = (w[0], w[1]);
            // `self` holds the true state at `start`. A chunk starting right
            // there is exactly the guess's assumption.
            if self.len == 0 {
                cuts.extend_from_slice(&guess_cuts);
                *self = guess_end_state;
                continue;
            }
            let mut pos = start;
            while let Some(n) = self.next_boundary(&data[pos..end]) {
                pos += n;
                cuts.push(pos);
                if let Ok(i) = guess_cuts.binary_search(&pos) {
                    cuts.extend_from_slice(&guess_cuts[i + 1..]);
                    *self = guess_end_state;
                    break;
                }
            }
        }
        cuts
    }

    /// A chunker at the start of a chunk sharing this one's tables.
    fn fresh(&self) -> Chunker {
        let mut chunker = self.clone();
        chunker.reset();
        chunker
    }

    /// Feeds all of `data`, returning the cut offsets shifted by `base`.
    fn feed(&mut self, data: &[u8], base: usize) -> Vec<usize> {
        let mut cuts = Vec::new();
        let mut pos = 0;
        while let Some(n) = self.next_boundary(&data[pos..]) {
            pos += n;
            cuts.push(base + pos);
        }
        cuts
    }
}
