//! Prune: free the space of blobs no snapshot needs any more.
//!
//! Every blob reachable from a snapshot is marked used. Each pack the index
//! lists is then judged by its used and unused bytes: packs with nothing
//! used are deleted, packs with only used blobs stay, and partly used packs
//! are repacked (their used blobs copied, still sealed, into new packs)
//! until the unused space left is under `--max-unused`. Blobs stored more
//! than once keep a single copy. Packs no index lists (left by interrupted
//! backups) are deleted.
//!
//! Order is what makes a kill at any point harmless: new packs, then a new
//! index listing every remaining pack, then old index files are deleted, and
//! only then old packs. Until the old index files are gone every pack they
//! list still exists; after, nothing refers to the packs being deleted.

use std::collections::BTreeMap;

use crate::backend::FileKind;
use crate::crypto::OVERHEAD;
use crate::id::{IdMap, IdSet};
use crate::index::{IndexBlob, IndexPack};
use crate::pack::{BlobType, PackedBlob, encode_header};
use crate::packer::PackSink;
use crate::{Error, Id, Repository, Result};

/// How much unused space may stay in the repository after a prune.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum MaxUnused {
    /// A percentage of the used size (restic's `5%`).
    Percent(f64),
    /// An absolute number of bytes.
    Bytes(u64),
    /// Never repack; only delete packs with nothing used.
    Unlimited,
}

impl Default for MaxUnused {
    fn default() -> Self {
        MaxUnused::Percent(5.0)
    }
}

impl std::str::FromStr for MaxUnused {
    type Err = String;

    /// Parses restic's forms: `unlimited`, `N%` (0 to 100) or a size such as
    /// `500M` or `2G` (binary units, as restic's).
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let bad = || {
            format!(
                "invalid --max-unused {s:?}: use a percentage like 5%, a size like 500M, or unlimited"
            )
        };
        let t = s.trim();
        if t == "unlimited" {
            return Ok(MaxUnused::Unlimited);
        }
        if let Some(p) = t.strip_suffix('%') {
            let v: f64 = p.parse().map_err(|_| bad())?;
            if !(0.0..=100.0).contains(&v) {
                return Err(format!(
                    "invalid --max-unused {s:?}: a percentage must be between 0% and 100%"
                ));
            }
            return Ok(if v >= 100.0 {
                MaxUnused::Unlimited
            } else {
                MaxUnused::Percent(v)
            });
        }
        let (digits, shift) = match t.char_indices().last() {
            Some((i, c)) if c.is_ascii_alphabetic() => {
                let shift = match c.to_ascii_lowercase() {
                    'b' => 0,
                    'k' => 10,
                    'm' => 20,
                    'g' => 30,
                    't' => 40,
                    _ => return Err(bad()),
                };
                (&t[..i], shift)
            }
            _ => (t, 0),
        };
        let n: u64 = digits.parse().map_err(|_| bad())?;
        n.checked_shl(shift)
            .filter(|v| v >> shift == n)
            .map(MaxUnused::Bytes)
            .ok_or_else(bad)
    }
}

impl MaxUnused {
    /// The unused bytes allowed next to `used` bytes of used blobs.
    fn limit(self, used: u64) -> u64 {
        match self {
            MaxUnused::Percent(p) => (used as f64 * p / (100.0 - p)) as u64,
            MaxUnused::Bytes(b) => b,
            MaxUnused::Unlimited => u64::MAX,
        }
    }
}

/// Options of a prune.
#[derive(Clone, Copy, Debug, Default)]
pub struct PruneOptions {
    pub max_unused: MaxUnused,
}

/// A blob count and its stored size.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Amount {
    pub blobs: u64,
    pub bytes: u64,
}

impl Amount {
    fn add(&mut self, b: &PackedBlob) {
        self.blobs += 1;
        self.bytes += u64::from(b.length);
    }
}

/// What a prune found and what it does, for the report.
#[derive(Clone, Debug, Default)]
pub struct PruneStats {
    /// Blobs some snapshot needs (one copy each).
    pub used: Amount,
    /// Blobs nothing needs, and extra copies of used ones.
    pub unused: Amount,
    /// Used blobs copied out of partly used packs.
    pub repack: Amount,
    /// Unused blobs that go with the repacked packs.
    pub repack_removes: Amount,
    /// Unused blobs in packs deleted whole.
    pub delete: Amount,
    /// Packs deleted whole, packs repacked, packs kept.
    pub packs_delete: u64,
    pub packs_repack: u64,
    pub packs_keep: u64,
    /// Packs in `data/` that no index lists, and their bytes.
    pub packs_unindexed: u64,
    pub unindexed_bytes: u64,
    /// Unused bytes left in kept packs after the prune.
    pub unused_after: u64,
    /// Bytes of blobs left after the prune.
    pub remaining: Amount,
}

/// A prune decided but not yet carried out.
pub struct PrunePlan {
    index_files: Vec<Id>,
    keep: Vec<IndexPack>,
    /// Packs to repack, with the blobs to copy out of each.
    repack: Vec<(Id, Vec<PackedBlob>)>,
    /// Indexed packs to delete once the new index is written.
    remove: Vec<Id>,
    unindexed: Vec<Id>,
    /// The numbers behind the plan.
    pub stats: PruneStats,
}

/// A pack as the index files list it (duplicate listings merged).
struct PackInfo {
    blobs: Vec<PackedBlob>,
    listed_size: Option<u64>,
}

/// The size a pack holding exactly `blobs` has on disk.
pub fn expected_pack_size(blobs: &[PackedBlob]) -> u64 {
    let data: u64 = blobs.iter().map(|b| u64::from(b.length)).sum();
    data + encode_header(blobs).len() as u64 + OVERHEAD as u64 + 4
}

/// Every blob reachable from every snapshot: trees and the data blobs they
/// name. Needs the index loaded. Fails when a snapshot or a tree cannot be
/// read, because then what is used is unknown and nothing may be deleted
/// (restic's prune refuses too).
pub fn used_blobs(repo: &Repository) -> Result<IdSet> {
    let mut used = IdSet::default();
    let mut stack: Vec<Id> = Vec::new();
    let (snapshots, unreadable) = repo.read_snapshots()?;
    if let Some(u) = unreadable.first() {
        return Err(Error::Invalid(format!(
            "snapshots/{} cannot be read ({}), so which data it needs is unknown; nothing was deleted. Run `repair snapshots --forget {}` to remove it ({} unreadable snapshots in all), then prune again",
            u.id,
            u.error,
            u.id.short(),
            unreadable.len()
        )));
    }
    for entry in snapshots {
        if used.insert(entry.snapshot.tree) {
            stack.push(entry.snapshot.tree);
        }
        while let Some(tree_id) = stack.pop() {
            let tree = repo.load_tree(&tree_id).map_err(|e| {
                Error::Invalid(format!(
                    "cannot read tree {tree_id} of snapshot {}: {e}; nothing was deleted, run `check`",
                    entry.id.short()
                ))
            })?;
            for node in &tree.nodes {
                for blob in node.content() {
                    if !repo.index().contains(blob) {
                        return Err(Error::Invalid(format!(
                            "data blob {blob} of snapshot {} is missing from the index; nothing was deleted, run `check`",
                            entry.id.short()
                        )));
                    }
                    used.insert(*blob);
                }
                if let Some(sub) = node.subtree
                    && used.insert(sub)
                {
                    stack.push(sub);
                }
            }
        }
    }
    Ok(used)
}

/// Decides what to delete and repack. Loads the index into `repo`.
pub fn plan(repo: &mut Repository, options: &PruneOptions) -> Result<PrunePlan> {
    repo.load_index()?;
    let index_files = repo.read_index_files()?;
    let mut packs: BTreeMap<Id, PackInfo> = BTreeMap::new();
    for (_, file) in &index_files {
        for p in &file.packs {
            packs.entry(p.id).or_insert_with(|| PackInfo {
                blobs: p.blobs.iter().map(IndexBlob::to_packed).collect(),
                listed_size: None,
            });
        }
    }
    let mut unindexed = Vec::new();
    let mut stats = PruneStats::default();
    for f in repo.backend().list(FileKind::Pack)? {
        let Ok(id) = f.name.parse::<Id>() else {
            continue;
        };
        match packs.get_mut(&id) {
            Some(info) => info.listed_size = Some(f.size),
            None => {
                unindexed.push(id);
                stats.packs_unindexed += 1;
                stats.unindexed_bytes += f.size;
            }
        }
    }
    let used = used_blobs(repo)?;

    // One home per used blob: a copy in a pack whose blobs are all used if
    // there is one (so that pack can stay as it is), else the first copy.
    let fully_used = |info: &PackInfo| info.blobs.iter().all(|b| used.contains(&b.id));
    let mut home: IdMap<(Id, u32)> = IdMap::default();
    for pass in [true, false] {
        for (pack, info) in &packs {
            if info.listed_size.is_none() || (pass && !fully_used(info)) {
                continue;
            }
            for b in &info.blobs {
                if used.contains(&b.id) {
                    home.entry(b.id).or_insert((*pack, b.offset));
                }
            }
        }
    }
    if let Some(id) = used.iter().find(|id| !home.contains_key(*id)) {
        let pack = repo
            .index()
            .get(id)
            .map(|l| l.pack.to_hex())
            .unwrap_or_default();
        return Err(Error::Invalid(format!(
            "pack {pack} holding used blob {id} is missing from the repository; nothing was deleted, run `check`"
        )));
    }

    struct Candidate {
        id: Id,
        used: Vec<PackedBlob>,
        used_bytes: u64,
        unused: Amount,
        has_tree: bool,
        blobs: Vec<PackedBlob>,
    }
    let mut keep = Vec::new();
    let mut remove = Vec::new();
    let mut candidates = Vec::new();
    for (id, info) in packs {
        let Some(size) = info.listed_size else {
            // Listed but absent, and nothing in it is used: leave it out of
            // the new index.
            continue;
        };
        let expected = expected_pack_size(&info.blobs);
        if size != expected {
            return Err(Error::Invalid(format!(
                "pack {id} is {size} bytes but the index implies {expected}; nothing was deleted, run `check`"
            )));
        }
        let mut c = Candidate {
            id,
            used: Vec::new(),
            used_bytes: 0,
            unused: Amount::default(),
            has_tree: false,
            blobs: Vec::new(),
        };
        for b in &info.blobs {
            if home.get(&b.id) == Some(&(id, b.offset)) {
                stats.used.add(b);
                c.used_bytes += u64::from(b.length);
                c.has_tree |= b.blob_type == BlobType::Tree;
                c.used.push(*b);
            } else {
                stats.unused.add(b);
                c.unused.add(b);
            }
        }
        if c.used.is_empty() {
            stats.delete.blobs += c.unused.blobs;
            stats.delete.bytes += c.unused.bytes;
            stats.packs_delete += 1;
            remove.push(id);
        } else if c.unused.blobs == 0 {
            stats.packs_keep += 1;
            keep.push(IndexPack {
                id,
                blobs: info.blobs.iter().map(IndexBlob::from_packed).collect(),
            });
        } else {
            c.blobs = info.blobs;
            candidates.push(c);
        }
    }

    // Repack the packs that free the most per byte copied first; tree packs
    // always, as restic does, because they are small and read often.
    candidates.sort_by(|a, b| {
        b.has_tree.cmp(&a.has_tree).then_with(|| {
            let ra = a.unused.bytes as f64 / (a.used_bytes + a.unused.bytes) as f64;
            let rb = b.unused.bytes as f64 / (b.used_bytes + b.unused.bytes) as f64;
            rb.total_cmp(&ra)
        })
    });
    let limit = options.max_unused.limit(stats.used.bytes);
    let mut unused_left: u64 = candidates.iter().map(|c| c.unused.bytes).sum();
    let mut repack = Vec::new();
    for c in candidates {
        let wanted =
            options.max_unused != MaxUnused::Unlimited && (c.has_tree || unused_left > limit);
        if wanted {
            unused_left -= c.unused.bytes;
            stats.packs_repack += 1;
            stats.repack.blobs += c.used.len() as u64;
            stats.repack.bytes += c.used_bytes;
            stats.repack_removes.blobs += c.unused.blobs;
            stats.repack_removes.bytes += c.unused.bytes;
            remove.push(c.id);
            repack.push((c.id, c.used));
        } else {
            stats.packs_keep += 1;
            keep.push(IndexPack {
                id: c.id,
                blobs: c.blobs.iter().map(IndexBlob::from_packed).collect(),
            });
        }
    }
    stats.unused_after = unused_left;
    stats.remaining = Amount {
        blobs: stats.used.blobs + stats.unused.blobs
            - stats.delete.blobs
            - stats.repack_removes.blobs,
        bytes: stats.used.bytes + stats.unused.bytes
            - stats.delete.bytes
            - stats.repack_removes.bytes,
    };
    Ok(PrunePlan {
        index_files: index_files.into_iter().map(|(id, _)| id).collect(),
        keep,
        repack,
        remove,
        unindexed,
        stats,
    })
}

impl PrunePlan {
    /// True when carrying the plan out would change nothing.
    pub fn is_noop(&self) -> bool {
        self.repack.is_empty() && self.remove.is_empty() && self.unindexed.is_empty()
    }
}

/// Carries a plan out: repack, write the new index, delete the old index
/// files, then the old packs. `progress` receives one line per phase.
pub fn execute(repo: &mut Repository, plan: PrunePlan, progress: &dyn Fn(&str)) -> Result<()> {
    if plan.is_noop() {
        return Ok(());
    }
    let mut packs = plan.keep;
    if !plan.repack.is_empty() {
        progress(&format!("repacking {} packs", plan.repack.len()));
        packs.extend(repack(repo, &plan.repack)?);
    }
    progress("rebuilding index");
    repo.save_index(packs)?;
    progress(&format!(
        "deleting {} obsolete index files",
        plan.index_files.len()
    ));
    for id in &plan.index_files {
        repo.backend().remove(FileKind::Index, &id.to_hex())?;
    }
    let doomed: Vec<&Id> = plan.remove.iter().chain(&plan.unindexed).collect();
    progress(&format!("removing {} old packs", doomed.len()));
    for id in doomed {
        repo.backend().remove(FileKind::Pack, &id.to_hex())?;
    }
    Ok(())
}

/// Copies the listed blobs, checked but still sealed, into new packs; one
/// old pack is in memory at a time.
fn repack(repo: &Repository, work: &[(Id, Vec<PackedBlob>)]) -> Result<Vec<IndexPack>> {
    let sink = PackSink::new(
        repo.backend().clone(),
        repo.key(),
        repo.options().pack_size,
        2,
    );
    for (pack, blobs) in work {
        let start = blobs.iter().map(|b| u64::from(b.offset)).min().unwrap_or(0);
        let end = blobs
            .iter()
            .map(|b| u64::from(b.offset) + u64::from(b.length))
            .max()
            .unwrap_or(0);
        let data = repo
            .backend()
            .load_range(FileKind::Pack, &pack.to_hex(), start, end - start)?;
        for b in blobs {
            let at = (u64::from(b.offset) - start) as usize;
            let sealed = data.get(at..at + b.length as usize).ok_or_else(|| {
                Error::corrupt(format!("pack {pack}"), "shorter than its index says")
            })?;
            // Never carry a damaged blob into a new pack as if it were fine.
            repo.open_blob(pack, b, &mut sealed.to_vec())?;
            sink.add(b.blob_type, b.id, sealed, b.uncompressed_length)?;
        }
    }
    Ok(sink.finish()?.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_unused_forms() {
        assert_eq!("5%".parse(), Ok(MaxUnused::Percent(5.0)));
        assert_eq!("0%".parse(), Ok(MaxUnused::Percent(0.0)));
        assert_eq!("100%".parse(), Ok(MaxUnused::Unlimited));
        assert_eq!("unlimited".parse(), Ok(MaxUnused::Unlimited));
        assert_eq!("2G".parse(), Ok(MaxUnused::Bytes(2 << 30)));
        assert_eq!("123".parse(), Ok(MaxUnused::Bytes(123)));
        for bad in [
            "",
            "5%%",
            "-1%",
            "101%",
            "x",
            "5q",
            "abc%",
            "99999999999999999999T",
        ] {
            assert!(bad.parse::<MaxUnused>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn percent_limit_is_relative_to_used() {
        assert_eq!(MaxUnused::Percent(50.0).limit(100), 100);
        assert_eq!(MaxUnused::Percent(0.0).limit(100), 0);
    }
}
