//! restic's authenticated encryption: AES-256-CTR with a Poly1305-AES MAC.
//!
//! An encrypted object is `IV (16) || ciphertext || MAC (16)`. The MAC covers
//! the ciphertext only; its one-time key is `r || AES-128_k(IV)`. The MAC is
//! checked before anything is decrypted.

use aes::cipher::{BlockEncrypt, KeyInit, KeyIvInit, StreamCipher};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use poly1305::Poly1305;
use rand::RngCore;
use serde::{Deserialize, Serialize};

type Aes256Ctr = ctr::Ctr128BE<aes::Aes256>;

/// Bytes an encrypted object adds to its plaintext: IV and MAC.
pub const OVERHEAD: usize = 32;
const IV_LEN: usize = 16;
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
        Poly1305::new((&key).into())
            .compute_unpadded(ciphertext)
            .into()
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
