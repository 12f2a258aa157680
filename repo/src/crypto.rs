//! restic's authenticated encryption: AES-256-CTR with a Poly1305-AES MAC.
//!
//! An encrypted object is `IV (16) || ciphertext || MAC (16)`. The MAC covers
//! the ciphertext only; its one-time key is `r || AES-128_k(IV)`. The MAC is
//! checked before anything is decrypted.

use aes::cipher::{BlockEncrypt, KeyInit, KeyIvInit, StreamCipher};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use poly1305::Poly1305;
use poly1305::universal_hash::UniversalHash;
use rand::RngCore;
use serde::{Deserialize, Serialize};

type Aes256Ctr = ctr::Ctr128BE<aes::Aes256>;

/// Bytes an encrypted object adds to its plaintext: IV and MAC.
pub const OVERHEAD: usize = 32;
/// Bytes of the IV in front of the ciphertext.
pub(crate) const IV_LEN: usize = 16;
const MAC_LEN: usize = 16;

/// The repository's master key: one AES-256 key and one Poly1305-AES MAC key.
#[derive(Clone)]
pub struct Key {
    encrypt: [u8; 32],
    mac_k: [u8; 16],
    mac_r: [u8; 16],
}

/// A MAC check failed: the data was changed, or the key is wrong.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("ciphertext shorter than IV and MAC")]
    TooShort,
    #[error("MAC mismatch: data corrupted or wrong key")]
    MacMismatch,
}

impl Key {
    /// A fresh random key, for `init`.
    pub fn random() -> Key {
        let mut rng = rand::rng();
        let mut k = Key {
            encrypt: [0; 32],
            mac_k: [0; 16],
            mac_r: [0; 16],
        };
        rng.fill_bytes(&mut k.encrypt);
        rng.fill_bytes(&mut k.mac_k);
        rng.fill_bytes(&mut k.mac_r);
        k
    }

    /// The key scrypt derives from a password: AES key (32), MAC k (16), MAC r (16).
    pub fn from_kdf_output(bytes: &[u8; 64]) -> Key {
        Key {
            encrypt: bytes[..32].try_into().expect("32"),
            mac_k: bytes[32..48].try_into().expect("16"),
            mac_r: bytes[48..].try_into().expect("16"),
        }
    }

    fn mac(&self, iv: &[u8], ciphertext: &[u8]) -> [u8; 16] {
        let aes = aes::Aes128::new((&self.mac_k).into());
        let mut s = aes::Block::clone_from_slice(iv);
        aes.encrypt_block(&mut s);
        let mut key = [0u8; 32];
        key[..16].copy_from_slice(&self.mac_r);
        key[16..].copy_from_slice(&s);
        // Poly1305 clamps r itself, which is what restic's key mask does.
        poly1305_unpadded(&key, ciphertext)
    }

    /// Encrypts `plaintext` and appends `IV || ciphertext || MAC` to `out`.
    pub fn seal_into(&self, plaintext: &[u8], out: &mut Vec<u8>) {
        let mut iv = [0u8; IV_LEN];
        while iv == [0u8; IV_LEN] {
            rand::rng().fill_bytes(&mut iv);
        }
        let start = out.len();
        out.reserve(plaintext.len() + OVERHEAD);
        out.extend_from_slice(&iv);
        out.extend_from_slice(plaintext);
        let ct = &mut out[start + IV_LEN..];
        Aes256Ctr::new((&self.encrypt).into(), (&iv).into()).apply_keystream(ct);
        let tag = self.mac(&iv, ct);
        out.extend_from_slice(&tag);
    }

    /// Encrypts `plaintext` into a new buffer.
    pub fn seal(&self, plaintext: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(plaintext.len() + OVERHEAD);
        self.seal_into(plaintext, &mut out);
        out
    }

    /// Checks the MAC of `sealed` and decrypts it in place, returning the
    /// plaintext slice (inside `sealed`).
    pub fn open_in_place<'a>(&self, sealed: &'a mut [u8]) -> Result<&'a mut [u8], CryptoError> {
        if sealed.len() < OVERHEAD {
            return Err(CryptoError::TooShort);
        }
        let (iv, rest) = sealed.split_at_mut(IV_LEN);
        let ct_len = rest.len() - MAC_LEN;
        let (ct, tag) = rest.split_at_mut(ct_len);
        let expected = self.mac(iv, ct);
        // Constant-time comparison: no early exit on the first differing byte.
        let diff = expected
            .iter()
            .zip(tag.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if diff != 0 {
            return Err(CryptoError::MacMismatch);
        }
        Aes256Ctr::new((&self.encrypt).into(), (&*iv).into()).apply_keystream(ct);
        Ok(ct)
    }

    /// Checks and decrypts `sealed` into a new buffer.
    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut buf = sealed.to_vec();
        let len = self.open_in_place(&mut buf)?.len();
        buf.copy_within(IV_LEN..IV_LEN + len, 0);
        buf.truncate(len);
        Ok(buf)
    }
}

/// Poly1305 of `data` without padding of the last block (the MAC restic stores).
///
/// The whole blocks go through `UniversalHash::update`, which hands them to the crate's
/// AVX2 backend four at a time; `Poly1305::compute_unpadded` alone feeds every block
/// singly through a copy, at about a third of the speed. Only the tail (under 16 bytes)
/// takes that path.
fn poly1305_unpadded(key: &[u8; 32], data: &[u8]) -> [u8; 16] {
    let whole = data.len() / 16;
    let (blocks, tail) = data.split_at(whole * 16);
    // SAFETY: `poly1305::Block` is a `GenericArray<u8, U16>`: 16 bytes, alignment 1, so
    // `whole` consecutive 16-byte groups of `blocks` are `whole` blocks.
    let blocks: &[poly1305::Block] =
        unsafe { std::slice::from_raw_parts(blocks.as_ptr().cast(), whole) };
    let mut poly = Poly1305::new(key.into());
    poly.update(blocks);
    poly.compute_unpadded(tail).into()
}

/// The master key as stored (encrypted) inside a key file.
#[derive(Serialize, Deserialize)]
struct KeyJson {
    mac: MacJson,
    encrypt: String,
}

#[derive(Serialize, Deserialize)]
struct MacJson {
    k: String,
    r: String,
}

impl Key {
    /// restic's JSON form of a master key.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(&KeyJson {
            mac: MacJson {
                k: B64.encode(self.mac_k),
                r: B64.encode(self.mac_r),
            },
            encrypt: B64.encode(self.encrypt),
        })
        .expect("key JSON")
    }

    /// Parses restic's JSON form of a master key.
    pub fn from_json(data: &[u8]) -> Option<Key> {
        let j: KeyJson = serde_json::from_slice(data).ok()?;
        let dec = |s: &str| B64.decode(s).ok();
        Some(Key {
            encrypt: dec(&j.encrypt)?.try_into().ok()?,
            mac_k: dec(&j.mac.k)?.try_into().ok()?,
            mac_r: dec(&j.mac.r)?.try_into().ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    fn arr<const N: usize>(s: &str) -> [u8; N] {
        unhex(s).try_into().unwrap()
    }

    /// restic's `poly1305Tests` (the vectors of the Poly1305-AES paper) and its `testValues`
    /// ciphertext: the MAC restic computes, byte for byte.
    #[test]
    fn restic_test_vectors() {
        for (msg, r, k, nonce, mac) in [
            (
                "f3f6",
                "851fc40c3467ac0be05cc20404f3f700",
                "ec074c835580741701425b623235add6",
                "fb447350c4e868c52ac3275cf9d4327e",
                "f4c633c3044fc145f84f335cb81953de",
            ),
            (
                "",
                "a0f3080000f46400d0c7e9076c834403",
                "75deaa25c09f208e1dc4ce6b5cad3fbf",
                "61ee09218d29b0aaed7e154a2c5509cc",
                "dd3fab2251f11ac759f0887129cc2ee7",
            ),
            (
                "663cea190ffb83d89593f3f476b6bc24d7e679107ea26adb8caf6652d0656136",
                "48443d0bb0d21109c89a100b5ce2c208",
                "6acb5f61a7176dd320c5c1eb2edcdc74",
                "ae212a5539972959 5dea458bc621ff0e",
                "0ee1c16bb73f0f4fd19881753c01cdbe",
            ),
            (
                "ab0812724a7f1e342742cbed374d94d136c6b8795d45b3819830f2c04491faf0990c62e48b8018b2c3e4a0fa3134cb67fa83e158c994d961c4cb21095c1bf9",
                "12976a08c4426d0ce8a82407c4f48207",
                "e1a5668a4d5b66a5f68cc5424ed5982d",
                "9ae831e743978d3a23527c7128149e3a",
                "5154ad0d2cb26e01274fc51148491f1b",
            ),
        ] {
            let key = Key {
                encrypt: [0; 32],
                mac_k: arr(k),
                mac_r: arr(r),
            };
            let nonce = unhex(&nonce.replace(' ', ""));
            assert_eq!(
                key.mac(&nonce, &unhex(msg)).to_vec(),
                unhex(mac),
                "msg {msg}"
            );
        }
        let key = Key {
            encrypt: arr("303e8687b1d7db18421bdc6bb8588ccadac4d59ee87b8ff70c44e635790cafef"),
            mac_k: arr("ef4d8824cb80b2bcc5fbff8a9b12a42c"),
            mac_r: arr("cc8d4b948ee0ebfe1d415de921d10353"),
        };
        let sealed = unhex(
            "69fb41c62d12def4593bd71757138606338f621aeaeb39da0fe4f99233f8037a54ea63338a813bcf3f75d8c3cc75dddf8750",
        );
        assert_eq!(key.open(&sealed).unwrap(), b"Dies ist ein Test!");
    }

    /// The four-block path agrees with the crate's block-at-a-time one at every length
    /// around the block and four-block boundaries, and on a large message.
    #[test]
    fn fast_poly1305_matches_the_reference_path() {
        let data: Vec<u8> = (0..(1u32 << 20) + 77)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let key: [u8; 32] = std::array::from_fn(|i| (i * 37 + 11) as u8);
        let lengths = (0..200).chain([1 << 20, (1 << 20) + 77, 65_535, 65_536, 65_537]);
        for n in lengths {
            let reference: [u8; 16] = Poly1305::new((&key).into())
                .compute_unpadded(&data[..n])
                .into();
            assert_eq!(poly1305_unpadded(&key, &data[..n]), reference, "length {n}");
        }
    }

    #[test]
    fn seal_open_round_trip_and_tamper() {
        let k = Key::random();
        let data = b"hello sluice".repeat(100);
        let sealed = k.seal(&data);
        assert_eq!(sealed.len(), data.len() + OVERHEAD);
        assert_eq!(k.open(&sealed).unwrap(), data);
        let mut bad = sealed.clone();
        bad[20] ^= 1;
        assert!(matches!(k.open(&bad), Err(CryptoError::MacMismatch)));
        assert!(Key::random().open(&sealed).is_err());
        let k2 = Key::from_json(&k.to_json()).unwrap();
        assert_eq!(k2.open(&sealed).unwrap(), data);
    }
}
