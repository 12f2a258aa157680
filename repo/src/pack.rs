//! Pack files: blobs stored back to back, then an encrypted header that
//! lists them, then the header's length.
//!
//! ```text
//! blob_1 || ... || blob_n || seal(header) || u32le(len(seal(header)))
//! header entry: type u8 || length u32le || [uncompressed length u32le] || id [32]
//! ```
//! Types 0/1 are uncompressed data/tree blobs; 2/3 compressed ones, which
//! carry the uncompressed length.

use crate::crypto::{Key, OVERHEAD};
use crate::{Error, Id, Result};

/// What a blob holds: file contents or a directory listing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlobType {
    Data,
    Tree,
}

impl std::fmt::Display for BlobType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BlobType::Data => "data",
            BlobType::Tree => "tree",
        })
    }
}

/// Where a blob sits in its pack and how to read it back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackedBlob {
    pub id: Id,
    pub blob_type: BlobType,
    pub offset: u32,
    /// Length as stored: encrypted, possibly compressed.
    pub length: u32,
    /// Plaintext length when the blob is compressed, else 0.
    pub uncompressed_length: u32,
}

impl PackedBlob {
    /// The plaintext length, compressed or not.
    pub fn plain_length(&self) -> u32 {
        if self.uncompressed_length != 0 {
            self.uncompressed_length
        } else {
            // An index entry shorter than IV and MAC is damaged; opening it fails later.
            self.length.saturating_sub(OVERHEAD as u32)
        }
    }
}

const ENTRY_PLAIN: usize = 1 + 4 + 32;
const ENTRY_COMPRESSED: usize = 1 + 4 + 4 + 32;

/// Serializes the header entries of a pack (before encryption).
pub fn encode_header(blobs: &[PackedBlob]) -> Vec<u8> {
    let mut out = Vec::with_capacity(blobs.len() * ENTRY_COMPRESSED);
    for b in blobs {
        let compressed = b.uncompressed_length != 0;
        let t: u8 = match (b.blob_type, compressed) {
            (BlobType::Data, false) => 0,
            (BlobType::Tree, false) => 1,
            (BlobType::Data, true) => 2,
            (BlobType::Tree, true) => 3,
        };
        out.push(t);
        out.extend_from_slice(&b.length.to_le_bytes());
        if compressed {
            out.extend_from_slice(&b.uncompressed_length.to_le_bytes());
        }
        out.extend_from_slice(&b.id.0);
    }
    out
}

/// Parses decrypted header entries; offsets follow from the lengths, as
/// blobs are contiguous from the start of the pack.
pub fn decode_header(plain: &[u8], pack: &Id) -> Result<Vec<PackedBlob>> {
    let bad = |why: &str| Error::corrupt(format!("pack {pack} header"), why.to_string());
    let mut blobs = Vec::new();
    let mut pos = 0usize;
    let mut offset = 0u64;
    while pos < plain.len() {
        let t = plain[pos];
        let need = if t >= 2 {
            ENTRY_COMPRESSED
        } else {
            ENTRY_PLAIN
        };
        if pos + need > plain.len() {
            return Err(bad("truncated entry"));
        }
        let length = u32::from_le_bytes(plain[pos + 1..pos + 5].try_into().expect("4"));
        let (uncompressed_length, id_at) = if t >= 2 {
            let u = u32::from_le_bytes(plain[pos + 5..pos + 9].try_into().expect("4"));
            (u, pos + 9)
        } else {
            (0, pos + 5)
        };
        let blob_type = match t {
            0 | 2 => BlobType::Data,
            1 | 3 => BlobType::Tree,
            _ => return Err(bad(&format!("unknown blob type {t}"))),
        };
        let id = Id(plain[id_at..id_at + 32].try_into().expect("32"));
        blobs.push(PackedBlob {
            id,
            blob_type,
            offset: u32::try_from(offset).map_err(|_| bad("offset beyond 4 GiB"))?,
            length,
            uncompressed_length,
        });
        offset += length as u64;
        pos += need;
    }
    Ok(blobs)
}

/// The most a header can take for a pack of `size` bytes, to read the tail
/// of a pack in one request: restic's packs hold few enough blobs that
/// reading the last 16 KiB usually catches the whole header.
pub const HEADER_TAIL_GUESS: u64 = 16 * 1024;

/// Reads a pack's header given the pack's final bytes (`tail`, which ends at
/// the end of the pack) and the pack's total size. Returns `Ok(None)` when
/// `tail` is too short and the caller must fetch `needed` bytes instead.
pub fn parse_tail(
    key: &Key,
    pack: &Id,
    tail: &[u8],
    pack_size: u64,
) -> Result<std::result::Result<Vec<PackedBlob>, u64>> {
    let bad = |why: String| Error::corrupt(format!("pack {pack}"), why);
    if tail.len() < 4 {
        return Err(bad("shorter than its header length field".into()));
    }
    let hlen = u32::from_le_bytes(tail[tail.len() - 4..].try_into().expect("4")) as u64;
    if hlen + 4 > pack_size || hlen < OVERHEAD as u64 {
        return Err(bad(format!(
            "header length {hlen} does not fit pack size {pack_size}"
        )));
    }
    if (tail.len() as u64) < hlen + 4 {
        return Ok(Err(hlen + 4));
    }
    let start = tail.len() - 4 - hlen as usize;
    let mut sealed = tail[start..tail.len() - 4].to_vec();
    let plain = key
        .open_in_place(&mut sealed)
        .map_err(|e| bad(format!("header: {e}")))?;
    let blobs = decode_header(plain, pack)?;
    let end = blobs
        .last()
        .map(|b| b.offset as u64 + b.length as u64)
        .unwrap_or(0);
    if end + hlen + 4 != pack_size {
        return Err(bad(format!(
            "blobs end at {end} but the header starts at {}",
            pack_size - hlen - 4
        )));
    }
    Ok(Ok(blobs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        let blobs = vec![
            PackedBlob {
                id: Id::hash(b"a"),
                blob_type: BlobType::Data,
                offset: 0,
                length: 100,
                uncompressed_length: 0,
            },
            PackedBlob {
                id: Id::hash(b"b"),
                blob_type: BlobType::Tree,
                offset: 100,
                length: 50,
                uncompressed_length: 300,
            },
        ];
        let enc = encode_header(&blobs);
        assert_eq!(enc.len(), ENTRY_PLAIN + ENTRY_COMPRESSED);
        assert_eq!(decode_header(&enc, &Id::default()).unwrap(), blobs);
    }
}
