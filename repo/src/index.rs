//! The index: which pack holds each blob, and where.
//!
//! On disk, index files are JSON lists of packs with their blobs. In memory
//! the whole repository's index is one hash map from blob id to a compact
//! location (a pack number instead of a 32-byte pack id), about 60 bytes a
//! blob, so even a repository of millions of blobs fits comfortably.

use serde::{Deserialize, Serialize};

use crate::Id;
use crate::id::{IdMap, IdSet};
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
    pub fn parse(plain: &[u8]) -> serde_json::Result<IndexFile> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Any {
            Current(IndexFile),
            Legacy(Vec<IndexPack>),
        }
        Ok(match serde_json::from_slice::<Any>(plain)? {
            Any::Current(f) => f,
            Any::Legacy(packs) => IndexFile {
                supersedes: Vec::new(),
                packs,
            },
        })
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

#[derive(Clone, Copy, Debug)]
struct Entry {
    pack: u32,
    offset: u32,
    length: u32,
    uncompressed_length: u32,
    blob_type: BlobType,
}

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
    blobs: IdMap<Entry>,
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
                self.packs.push(*pack);
                self.pack_numbers.insert(*pack, n);
                n
            }
        };
        for b in blobs {
            self.blobs.entry(b.id).or_insert(Entry {
                pack: n,
                offset: b.offset,
                length: b.length,
                uncompressed_length: b.uncompressed_length,
                blob_type: b.blob_type,
            });
        }
    }

    /// The location of a blob, if any pack holds it.
    pub fn get(&self, id: &Id) -> Option<BlobLocation> {
        let e = self.blobs.get(id)?;
        Some(BlobLocation {
            pack: self.packs[e.pack as usize],
            blob: PackedBlob {
                id: *id,
                blob_type: e.blob_type,
                offset: e.offset,
                length: e.length,
                uncompressed_length: e.uncompressed_length,
            },
        })
    }

    /// True when some pack holds the blob.
    pub fn contains(&self, id: &Id) -> bool {
        self.blobs.contains_key(id)
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
        self.blobs
            .keys()
            .map(|id| self.get(id).expect("listed blob"))
    }
}

/// The most blobs one written index file lists, as restic's limit.
pub const MAX_BLOBS_PER_FILE: usize = 50_000;
