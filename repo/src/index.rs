//! The index: which pack holds each blob, and where.
//!
//! On disk, index files are JSON lists of packs with their blobs. In memory
//! the whole repository's index is one [`IdTable`] from blob id to a compact
//! location (a pack number instead of a 32-byte pack id), 48 bytes a blob:
//! 2 million blobs in 96 MiB.

use serde::{Deserialize, Serialize};

use crate::Id;
use crate::id::{IdMap, IdSet};
use crate::id_table::IdTable;
use crate::pack::{BlobType, PackedBlob};

/// One index file as stored (after decryption and decompression).
#[derive(Serialize, Deserialize, Default, Debug)]
pub struct IndexFile {
    /// Index files this one replaces (restic ≤0.7 wrote it; tolerated).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub supersedes: Vec<Id>,
    pub packs: Vec<IndexPack>,
}

/// A pack and its blobs, as listed in an index file.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct IndexPack {
    pub id: Id,
    pub blobs: Vec<IndexBlob>,
}

/// One blob of a pack, as listed in an index file.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct IndexBlob {
    pub id: Id,
    #[serde(rename = "type")]
    pub blob_type: BlobType,
    pub offset: u32,
    pub length: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub uncompressed_length: u32,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

impl IndexFile {
    /// Parses an index file, accepting restic's legacy form (a bare list of
    /// packs) as well as the current object form.
    ///
    /// The form is told by the first byte rather than by trying both: serde's untagged
    /// enums buffer the whole document as a generic tree first, several times the size of
    /// the parsed index (about 600 bytes a blob), and a mover loads many index files at once.
    pub fn parse(plain: &[u8]) -> serde_json::Result<IndexFile> {
        let legacy = plain
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|&b| b == b'[');
        if legacy {
            Ok(IndexFile {
                supersedes: Vec::new(),
                packs: serde_json::from_slice(plain)?,
            })
        } else {
            serde_json::from_slice(plain)
        }
    }
}

impl IndexBlob {
    /// The blob's location in pack `pack`.
    pub fn to_packed(&self) -> PackedBlob {
        PackedBlob {
            id: self.id,
            blob_type: self.blob_type,
            offset: self.offset,
            length: self.length,
            uncompressed_length: self.uncompressed_length,
        }
    }

    /// The index form of a packed blob.
    pub fn from_packed(b: &PackedBlob) -> IndexBlob {
        IndexBlob {
            id: b.id,
            blob_type: b.blob_type,
            offset: b.offset,
            length: b.length,
            uncompressed_length: b.uncompressed_length,
        }
    }
}

/// A blob's location with its pack as a number into [`Index::packs`] and its type in that
/// number's top bit: 16 bytes, so an indexed blob costs 48 with its id.
#[derive(Clone, Copy, Debug)]
struct Entry {
    pack_and_type: u32,
    offset: u32,
    length: u32,
    uncompressed_length: u32,
}

const TREE_BIT: u32 = 1 << 31;

/// Where a blob can be read: pack id and position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlobLocation {
    pub pack: Id,
    pub blob: PackedBlob,
}

/// The in-memory index of the whole repository.
#[derive(Default)]
pub struct Index {
    packs: Vec<Id>,
    pack_numbers: IdMap<u32>,
    blobs: IdTable<Entry>,
}

impl Index {
    /// An empty index.
    pub fn new() -> Index {
        Index::default()
    }

    /// Adds every pack and blob of an index file. A blob already known keeps
    /// its first location.
    pub fn add_file(&mut self, file: &IndexFile) {
        for p in &file.packs {
            self.add_pack(&p.id, p.blobs.iter().map(IndexBlob::to_packed));
        }
    }

    /// Adds a pack with its blobs.
    pub fn add_pack(&mut self, pack: &Id, blobs: impl IntoIterator<Item = PackedBlob>) {
        let n = match self.pack_numbers.get(pack) {
            Some(&n) => n,
            None => {
                let n = self.packs.len() as u32;
                assert!(n < TREE_BIT, "more than 2^31 packs in one index");
                self.packs.push(*pack);
                self.pack_numbers.insert(*pack, n);
                n
            }
        };
        for b in blobs {
            let tree = match b.blob_type {
                BlobType::Tree => TREE_BIT,
                BlobType::Data => 0,
            };
            self.blobs.insert(
                b.id,
                Entry {
                    pack_and_type: n | tree,
                    offset: b.offset,
                    length: b.length,
                    uncompressed_length: b.uncompressed_length,
                },
            );
        }
    }

    /// The location of a blob, if any pack holds it.
    pub fn get(&self, id: &Id) -> Option<BlobLocation> {
        self.blobs.get(id).map(|e| self.location(id, e))
    }

    fn location(&self, id: &Id, e: &Entry) -> BlobLocation {
        BlobLocation {
            pack: self.packs[(e.pack_and_type & !TREE_BIT) as usize],
            blob: PackedBlob {
                id: *id,
                blob_type: if e.pack_and_type & TREE_BIT != 0 {
                    BlobType::Tree
                } else {
                    BlobType::Data
                },
                offset: e.offset,
                length: e.length,
                uncompressed_length: e.uncompressed_length,
            },
        }
    }

    /// True when some pack holds the blob.
    pub fn contains(&self, id: &Id) -> bool {
        self.blobs.contains(id)
    }

    /// Number of distinct blobs.
    pub fn len(&self) -> usize {
        self.blobs.len()
    }

    /// True when the index knows no blob.
    pub fn is_empty(&self) -> bool {
        self.blobs.is_empty()
    }

    /// Every pack the index lists.
    pub fn pack_ids(&self) -> IdSet {
        self.packs.iter().copied().collect()
    }

    /// Every blob, with its location.
    pub fn iter(&self) -> impl Iterator<Item = BlobLocation> + '_ {
        self.blobs.iter().map(|(id, e)| self.location(id, e))
    }
}

/// The most blobs one written index file lists, as restic's limit.
pub const MAX_BLOBS_PER_FILE: usize = 50_000;

#[cfg(test)]
mod tests {
    use super::*;

    const PACK: &str = "73d04e6125cf3c28a299cc2f3cca3b78ceac396e4fcf9575e34536b26782413c";
    const BLOB: &str = "3ec79977ef0cf5de7b08cd12b874cd0f62bbaf7f07f3497a5b1bbcc8cb39b1ce";

    fn pack_json() -> String {
        format!(
            r#"{{"id":"{PACK}","blobs":[{{"id":"{BLOB}","type":"data","offset":0,"length":38,"uncompressed_length":20}}]}}"#
        )
    }

    #[test]
    fn parses_current_and_legacy_forms() {
        let current = format!(r#"{{"packs":[{}]}}"#, pack_json());
        let legacy = format!("[{}]", pack_json());
        let cases = [
            ("current", current.clone()),
            ("current after whitespace", format!("\n  {current}")),
            ("legacy", legacy.clone()),
            ("legacy after whitespace", format!(" \t{legacy}")),
        ];
        for (name, text) in cases {
            let file = IndexFile::parse(text.as_bytes()).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(file.packs.len(), 1, "{name}");
            let blob = &file.packs[0].blobs[0];
            assert_eq!(blob.id.to_hex(), BLOB, "{name}");
            assert_eq!(
                (blob.offset, blob.length, blob.uncompressed_length),
                (0, 38, 20),
                "{name}"
            );
        }
    }

    #[test]
    fn refuses_what_is_neither_form() {
        for text in [
            "",
            "   ",
            "null",
            "42",
            r#"{"packs": 3}"#,
            "[{\"id\": 1}]",
            "{",
        ] {
            assert!(IndexFile::parse(text.as_bytes()).is_err(), "{text:?}");
        }
    }
}
