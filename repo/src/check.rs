//! Check: is every snapshot fully restorable from what is stored?
//!
//! The structure check compares the index with the packs in `data/`
//! (present, right size, header listing what the index says), loads every
//! snapshot and tree, and makes sure every blob a tree names is indexed.
//! Reading data goes further: every selected pack is read whole, its name
//! checked against its hash, and each blob authenticated, decompressed and
//! hashed. One pack is in memory at a time.
//!
//! A damaged blob is only useful to report together with what it breaks,
//! so every error names its pack and blob, and the snapshots that reach it.

use std::collections::BTreeMap;

use crate::backend::FileKind;
use crate::id::{IdMap, IdSet};
use crate::index::IndexBlob;
use crate::pack::{HEADER_TAIL_GUESS, PackedBlob, parse_tail};
use crate::prune::expected_pack_size;
use crate::{Error, Id, Repository, Result};

/// Which packs to read whole.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum ReadData {
    /// Structure only.
    #[default]
    None,
    /// Every pack.
    All,
    /// A random share of the packs, in percent.
    Percent(f64),
    /// Part `n` of `t` (1-based): packs whose first id byte modulo `t` is
    /// `n - 1`, so `1/t` to `t/t` together cover everything.
    Part { n: u32, t: u32 },
}

impl std::str::FromStr for ReadData {
    type Err = String;

    /// Parses `--read-data-subset`: `N%` or `n/t`.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let bad = || {
            format!(
                "invalid --read-data-subset {s:?}: use a percentage like 10% or a part like 2/5"
            )
        };
        if let Some(p) = s.strip_suffix('%') {
            let v: f64 = p.parse().map_err(|_| bad())?;
            if !(v > 0.0 && v <= 100.0) {
                return Err(format!(
                    "invalid --read-data-subset {s:?}: the percentage must be above 0% and at most 100%"
                ));
            }
            return Ok(ReadData::Percent(v));
        }
        let (n, t) = s.split_once('/').ok_or_else(bad)?;
        let (n, t): (u32, u32) = (n.parse().map_err(|_| bad())?, t.parse().map_err(|_| bad())?);
        if n == 0 || t == 0 || n > t || t > 256 {
            return Err(format!(
                "invalid --read-data-subset {s:?}: need 1 <= n <= t <= 256"
            ));
        }
        Ok(ReadData::Part { n, t })
    }
}

/// One problem found, with what it affects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The pack concerned, when there is one.
    pub pack: Option<Id>,
    /// The blob concerned, when there is one.
    pub blob: Option<Id>,
    /// What is wrong.
    pub message: String,
    /// Snapshots that cannot be fully restored because of it.
    pub snapshots: Vec<Id>,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(p) = &self.pack {
            write!(f, "pack {p}: ")?;
        }
        if let Some(b) = &self.blob {
            write!(f, "blob {b}: ")?;
        }
        f.write_str(&self.message)?;
        if !self.snapshots.is_empty() {
            let ids: Vec<String> = self.snapshots.iter().map(Id::short).collect();
            write!(f, " (affects snapshot {})", ids.join(", "))?;
        }
        Ok(())
    }
}

/// The outcome of a check.
#[derive(Debug, Default)]
pub struct CheckReport {
    /// Errors: the repository is damaged.
    pub errors: Vec<Problem>,
    /// Observations that need no repair, such as packs no index lists.
    pub notes: Vec<String>,
    /// Packs read whole.
    pub packs_read: u64,
}

/// Runs the check; `progress` receives one line per phase.
pub fn check(
    repo: &mut Repository,
    read_data: ReadData,
    progress: &dyn Fn(&str),
) -> Result<CheckReport> {
    let mut report = CheckReport::default();
    progress("load indexes");
    repo.load_index()?;
    let mut packs: BTreeMap<Id, Vec<PackedBlob>> = BTreeMap::new();
    for (_, file) in repo.read_index_files()? {
        for p in file.packs {
            packs
                .entry(p.id)
                .or_insert_with(|| p.blobs.iter().map(IndexBlob::to_packed).collect());
        }
    }
    // Blobs made unreadable by a problem, each with the problem's number.
    let mut bad: IdMap<Vec<usize>> = IdMap::default();
    let mut add = |report: &mut CheckReport, pack: Option<Id>, blobs: &[Id], message: String| {
        let at = report.errors.len();
        report.errors.push(Problem {
            pack,
            blob: (blobs.len() == 1).then(|| blobs[0]),
            message,
            snapshots: Vec::new(),
        });
        for b in blobs {
            bad.entry(*b).or_default().push(at);
        }
    };

    progress("check all packs");
    let mut present: BTreeMap<Id, u64> = BTreeMap::new();
    for f in repo.backend().list(FileKind::Pack)? {
        if let Ok(id) = f.name.parse::<Id>() {
            present.insert(id, f.size);
        }
    }
    let unindexed = present.keys().filter(|id| !packs.contains_key(id)).count();
    if unindexed > 0 {
        report.notes.push(format!(
            "{unindexed} packs are not referenced by any index (left by interrupted backups); `sluice-mover prune` removes them"
        ));
    }
    for (id, blobs) in &packs {
        let ids: Vec<Id> = blobs.iter().map(|b| b.id).collect();
        let Some(&size) = present.get(id) else {
            add(
                &mut report,
                Some(*id),
                &ids,
                format!(
                    "listed in the index but missing from data/ ({} blobs lost)",
                    ids.len()
                ),
            );
            continue;
        };
        let expected = expected_pack_size(blobs);
        if size != expected {
            add(
                &mut report,
                Some(*id),
                &ids,
                format!("size {size} does not match the {expected} the index implies"),
            );
            continue;
        }
        match read_header(repo, id, size) {
            Ok(header) => {
                if let Some(why) = header_mismatch(blobs, &header) {
                    add(
                        &mut report,
                        Some(*id),
                        &ids,
                        format!("header does not match the index: {why}"),
                    );
                }
            }
            Err(e) => add(
                &mut report,
                Some(*id),
                &ids,
                format!("cannot read header: {e}"),
            ),
        }
    }

    if read_data != ReadData::None {
        let selected = select(&packs, read_data);
        progress(&format!(
            "read all data ({} of {} packs)",
            selected.len(),
            packs.len()
        ));
        for id in selected {
            if !present.contains_key(&id) {
                continue;
            }
            report.packs_read += 1;
            match repo.backend().load(FileKind::Pack, &id.to_hex()) {
                Err(e) => {
                    let ids: Vec<Id> = packs[&id].iter().map(|b| b.id).collect();
                    add(&mut report, Some(id), &ids, format!("cannot read: {e}"));
                }
                Ok(data) => {
                    if Id::hash(&data) != id {
                        report.errors.push(Problem {
                            pack: Some(id),
                            blob: None,
                            message: "content does not match its name (hash mismatch)".into(),
                            snapshots: Vec::new(),
                        });
                    }
                    for b in &packs[&id] {
                        let range = b.offset as usize..b.offset as usize + b.length as usize;
                        let outcome = match data.get(range) {
                            Some(sealed) => {
                                repo.open_blob(&id, b, &mut sealed.to_vec()).map(|_| ())
                            }
                            None => Err(Error::corrupt("blob", "beyond the end of the pack")),
                        };
                        if let Err(e) = outcome {
                            let why = match e {
                                Error::Corrupt { reason, .. } => reason,
                                e => e.to_string(),
                            };
                            add(
                                &mut report,
                                Some(id),
                                &[b.id],
                                format!("{} blob damaged: {why}", b.blob_type),
                            );
                        }
                    }
                }
            }
        }
    }

    progress("load snapshots and check trees");
    let mut walker = Walker {
        repo,
        memo: IdMap::default(),
        bad: &bad,
        missing: IdSet::default(),
        problems: Vec::new(),
    };
    let mut affected: Vec<(Found, Id)> = Vec::new();
    let snapshot_files = repo.backend().list(FileKind::Snapshot)?;
    for f in snapshot_files {
        let Ok(sid) = f.name.parse::<Id>() else {
            continue;
        };
        let snapshot: crate::snapshot::Snapshot = match repo
            .load_unpacked(FileKind::Snapshot, &f.name)
            .and_then(|p| {
                serde_json::from_slice(&p)
                    .map_err(|e| Error::corrupt(format!("snapshots/{}", f.name), e.to_string()))
            }) {
            Ok(s) => s,
            Err(e) => {
                report.errors.push(Problem {
                    pack: None,
                    blob: None,
                    message: format!("snapshot {}: {e}", sid.short()),
                    snapshots: vec![sid],
                });
                continue;
            }
        };
        for problem in walker.tree(&snapshot.tree) {
            affected.push((problem, sid));
        }
    }
    // Problems the walk itself found (missing or unreadable trees, blobs
    // not in the index) are numbered after the pack problems.
    let base = report.errors.len();
    report.errors.extend(walker.problems);
    for (at, sid) in affected {
        let at = match at {
            Found::Pack(i) => i,
            Found::Walk(i) => base + i,
        };
        let snaps = &mut report.errors[at].snapshots;
        if !snaps.contains(&sid) {
            snaps.push(sid);
        }
    }
    Ok(report)
}

/// Which problem a tree reaches: one from the pack checks, or one the walk
/// found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Found {
    Pack(usize),
    Walk(usize),
}

/// Walks trees once each, remembering for every tree the problems beneath
/// it, so many snapshots sharing trees cost one walk.
struct Walker<'a> {
    repo: &'a Repository,
    memo: IdMap<Vec<Found>>,
    bad: &'a IdMap<Vec<usize>>,
    missing: IdSet,
    problems: Vec<Problem>,
}

impl Walker<'_> {
    fn tree(&mut self, id: &Id) -> Vec<Found> {
        if let Some(found) = self.memo.get(id) {
            return found.clone();
        }
        let mut found: Vec<Found> = self.blob(id);
        if found.is_empty() {
            match self.repo.load_tree(id) {
                Ok(tree) => {
                    for node in &tree.nodes {
                        for blob in node.content() {
                            found.extend(self.blob(blob));
                        }
                        if let Some(sub) = &node.subtree {
                            found.extend(self.tree(sub));
                        }
                    }
                }
                Err(e) => {
                    self.problems.push(Problem {
                        pack: None,
                        blob: Some(*id),
                        message: format!("tree cannot be loaded: {e}"),
                        snapshots: Vec::new(),
                    });
                    found.push(Found::Walk(self.problems.len() - 1));
                }
            }
        }
        found.sort_by_key(|f| match f {
            Found::Pack(i) => (0, *i),
            Found::Walk(i) => (1, *i),
        });
        found.dedup();
        self.memo.insert(*id, found.clone());
        found
    }

    /// Problems of one blob: damaged in its pack, or in no index at all.
    fn blob(&mut self, id: &Id) -> Vec<Found> {
        if let Some(list) = self.bad.get(id) {
            return list.iter().map(|&i| Found::Pack(i)).collect();
        }
        if !self.repo.index().contains(id) {
            if self.missing.insert(*id) {
                self.problems.push(Problem {
                    pack: None,
                    blob: Some(*id),
                    message: "referenced by a tree but missing from the index".into(),
                    snapshots: Vec::new(),
                });
            }
            let at = self
                .problems
                .iter()
                .position(|p| p.blob == Some(*id))
                .expect("recorded");
            return vec![Found::Walk(at)];
        }
        Vec::new()
    }
}

/// The packs `read_data` selects.
fn select(packs: &BTreeMap<Id, Vec<PackedBlob>>, read_data: ReadData) -> Vec<Id> {
    let ids = packs.keys().copied();
    match read_data {
        ReadData::None => Vec::new(),
        ReadData::All => ids.collect(),
        ReadData::Part { n, t } => ids.filter(|id| u32::from(id.0[0]) % t == n - 1).collect(),
        ReadData::Percent(p) => {
            use rand::seq::SliceRandom;
            let mut all: Vec<Id> = ids.collect();
            all.shuffle(&mut rand::rng());
            let count = ((all.len() as f64 * p / 100.0).ceil() as usize).min(all.len());
            all.truncate(count);
            all
        }
    }
}

/// Reads and decrypts a pack's header from its tail.
pub fn read_header(repo: &Repository, id: &Id, size: u64) -> Result<Vec<PackedBlob>> {
    let mut want = HEADER_TAIL_GUESS.min(size);
    loop {
        let tail = repo
            .backend()
            .load_range(FileKind::Pack, &id.to_hex(), size - want, want)?;
        match parse_tail(repo.key(), id, &tail, size)? {
            Ok(blobs) => return Ok(blobs),
            Err(needed) if needed > want && needed <= size => want = needed,
            Err(_) => {
                return Err(Error::corrupt(
                    format!("pack {id}"),
                    "header length out of range",
                ));
            }
        }
    }
}

/// Why a pack's header and its index entry disagree, if they do.
fn header_mismatch(index: &[PackedBlob], header: &[PackedBlob]) -> Option<String> {
    let mut a = index.to_vec();
    let mut b = header.to_vec();
    a.sort_by_key(|x| x.offset);
    b.sort_by_key(|x| x.offset);
    if a.len() != b.len() {
        return Some(format!("index lists {} blobs, header {}", a.len(), b.len()));
    }
    a.iter()
        .zip(&b)
        .find(|(x, y)| x != y)
        .map(|(x, _)| format!("blob {} at offset {} differs", x.id, x.offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subset_forms() {
        assert_eq!("10%".parse(), Ok(ReadData::Percent(10.0)));
        assert_eq!("2/5".parse(), Ok(ReadData::Part { n: 2, t: 5 }));
        for bad in ["0%", "101%", "0/5", "6/5", "x", "1/", "/2", "1/0"] {
            assert!(bad.parse::<ReadData>().is_err(), "{bad:?} accepted");
        }
    }
}
