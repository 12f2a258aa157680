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

use sha2::{Digest, Sha256};

use crate::backend::FileKind;
use crate::id::IdMap;
use crate::index::IndexBlob;
use crate::pack::{HEADER_TAIL_GUESS, PackedBlob, parse_tail};
use crate::prune::expected_pack_size;
use crate::tree::name_problems;
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
            let blobs = &packs[&id];
            let mut damaged: Vec<(Id, String)> = Vec::new();
            match read_pack(repo, &id, present[&id], blobs, &mut |b, why| {
                damaged.push((b.id, format!("{} blob damaged: {why}", b.blob_type)));
            }) {
                Err(e) => {
                    let ids: Vec<Id> = blobs.iter().map(|b| b.id).collect();
                    add(&mut report, Some(id), &ids, format!("cannot read: {e}"));
                }
                Ok(hash_matches) => {
                    if !hash_matches {
                        report.errors.push(Problem {
                            pack: Some(id),
                            blob: None,
                            message: "content does not match its name (hash mismatch)".into(),
                            snapshots: Vec::new(),
                        });
                    }
                    for (blob, message) in damaged {
                        add(&mut report, Some(id), &[blob], message);
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
        missing: IdMap::default(),
        problems: Vec::new(),
    };
    let mut affected: Vec<(Found, Id)> = Vec::new();
    let snapshot_files = repo.backend().list(FileKind::Snapshot)?;
    for f in snapshot_files {
        let Ok(sid) = f.name.parse::<Id>() else {
            continue;
        };
        let snapshot = match repo.load_snapshot(&f.name) {
            Ok(s) => s,
            Err(e) => {
                report.errors.push(Problem {
                    pack: None,
                    blob: None,
                    message: format!(
                        "snapshot {} cannot be read: {e}; other commands skip it, `repair snapshots --forget {}` removes it",
                        sid.short(),
                        sid.short()
                    ),
                    snapshots: vec![sid],
                });
                continue;
            }
        };
        for problem in walker.tree(&snapshot.tree) {
            affected.push((problem, sid));
        }
    }
    let missing_from_index = walker.missing.len();
    if unindexed > 0 {
        report.notes.push(if missing_from_index > 0 {
            format!(
                "{unindexed} packs are not referenced by any index while {missing_from_index} blobs that snapshots need are missing from it: an index file is probably lost and those packs may hold the only copy. Run `repair index` to rebuild the index from the packs, then check again; do not prune before that"
            )
        } else {
            format!(
                "{unindexed} packs are not referenced by any index (left by interrupted backups); `prune` removes them"
            )
        });
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
    /// Blobs no index lists, each with its problem's number.
    missing: IdMap<usize>,
    problems: Vec<Problem>,
}

/// A tree being walked: the problems found so far at and below it, and the subtrees still
/// to visit.
struct Frame {
    id: Id,
    found: Vec<Found>,
    subtrees: Vec<Id>,
}

impl Walker<'_> {
    /// The problems at and below tree `root`. The walk uses an explicit stack, so a chain of
    /// trees of any depth cannot overflow the thread's stack.
    fn tree(&mut self, root: &Id) -> Vec<Found> {
        if let Some(found) = self.memo.get(root) {
            return found.clone();
        }
        let mut stack = vec![self.enter(root)];
        loop {
            let top = stack.last_mut().expect("a frame");
            if let Some(sub) = top.subtrees.pop() {
                match self.memo.get(&sub) {
                    Some(found) => top.found.extend(found.iter().copied()),
                    None => {
                        let frame = self.enter(&sub);
                        stack.push(frame);
                    }
                }
                continue;
            }
            let mut done = stack.pop().expect("a frame");
            done.found.sort_by_key(|f| match f {
                Found::Pack(i) => (0, *i),
                Found::Walk(i) => (1, *i),
            });
            done.found.dedup();
            self.memo.insert(done.id, done.found.clone());
            match stack.last_mut() {
                Some(parent) => parent.found.extend(done.found),
                None => return done.found,
            }
        }
    }

    /// Loads one tree and checks what it holds itself: its own blob, its names and the data
    /// blobs of its files. Its subtrees are left to the caller.
    fn enter(&mut self, id: &Id) -> Frame {
        let mut frame = Frame {
            id: *id,
            found: self.blob(id),
            subtrees: Vec::new(),
        };
        // Marked before its subtrees are visited: a tree can never contain itself (ids are
        // content hashes), but a hostile index must not be able to make the walk loop.
        self.memo.insert(*id, Vec::new());
        if !frame.found.is_empty() {
            return frame;
        }
        let tree = match self.repo.load_tree(id) {
            Ok(tree) => tree,
            Err(e) => {
                self.problems.push(Problem {
                    pack: None,
                    blob: Some(*id),
                    message: format!("tree cannot be loaded: {e}"),
                    snapshots: Vec::new(),
                });
                frame.found.push(Found::Walk(self.problems.len() - 1));
                return frame;
            }
        };
        let mut reported = std::collections::HashSet::new();
        for (i, problem) in name_problems(&tree.nodes) {
            let quoted = &tree.nodes[i].quoted_name;
            if reported.insert(quoted.clone()) {
                self.problems.push(Problem {
                    pack: None,
                    blob: Some(*id),
                    message: format!(
                        "tree entry {quoted:?}: {problem}; restore refuses it (a damaged or hostile tree)"
                    ),
                    snapshots: Vec::new(),
                });
                frame.found.push(Found::Walk(self.problems.len() - 1));
            }
        }
        for node in &tree.nodes {
            for blob in node.content() {
                let found = self.blob(blob);
                frame.found.extend(found);
            }
            if let Some(sub) = node.subtree {
                frame.subtrees.push(sub);
            }
        }
        frame
    }

    /// Problems of one blob: damaged in its pack, or in no index at all.
    fn blob(&mut self, id: &Id) -> Vec<Found> {
        if let Some(list) = self.bad.get(id) {
            return list.iter().map(|&i| Found::Pack(i)).collect();
        }
        if !self.repo.index().contains(id) {
            let problems = &mut self.problems;
            let at = *self.missing.entry(*id).or_insert_with(|| {
                problems.push(Problem {
                    pack: None,
                    blob: Some(*id),
                    message: "referenced by a tree but missing from the index".into(),
                    snapshots: Vec::new(),
                });
                problems.len() - 1
            });
            return vec![Found::Walk(at)];
        }
        Vec::new()
    }
}

/// The most read from a pack at once by [`read_pack`] (more only for one larger blob).
const READ_PIECE: u64 = 8 << 20;

/// Reads a whole pack in pieces, hashing it on the way and opening every blob the index
/// lists for it; memory holds a piece, or one blob when a blob is larger. Calls `damaged`
/// for each blob that fails; returns whether the pack's content matches its name.
fn read_pack(
    repo: &Repository,
    id: &Id,
    size: u64,
    blobs: &[PackedBlob],
    damaged: &mut dyn FnMut(&PackedBlob, String),
) -> Result<bool> {
    let name = id.to_hex();
    let mut order: Vec<&PackedBlob> = blobs.iter().collect();
    order.sort_by_key(|b| b.offset);
    let mut hash = Sha256::new();
    // `buf` holds the pack's bytes from `buf_start` up to `pos`.
    let (mut buf, mut buf_start, mut pos) = (Vec::new(), 0u64, 0u64);
    let mut next = 0;
    let check_blob = |b: &PackedBlob, sealed: &[u8]| -> Option<String> {
        repo.open_blob(id, b, &mut sealed.to_vec())
            .err()
            .map(|e| match e {
                Error::Corrupt { reason, .. } => reason,
                e => e.to_string(),
            })
    };
    while pos < size {
        let n = (size - pos).min(READ_PIECE);
        let piece = repo.backend().load_range(FileKind::Pack, &name, pos, n)?;
        hash.update(&piece);
        buf.extend_from_slice(&piece);
        pos += n;
        while let Some(b) = order.get(next) {
            let (start, end) = (
                u64::from(b.offset),
                u64::from(b.offset) + u64::from(b.length),
            );
            if end > pos {
                break;
            }
            let problem = if start >= buf_start {
                check_blob(
                    b,
                    &buf[(start - buf_start) as usize..(end - buf_start) as usize],
                )
            } else {
                // Overlapping index entries: only a damaged or hostile index has them.
                match repo
                    .backend()
                    .load_range(FileKind::Pack, &name, start, end - start)
                {
                    Ok(sealed) => check_blob(b, &sealed),
                    Err(e) => Some(e.to_string()),
                }
            };
            if let Some(why) = problem {
                damaged(b, why);
            }
            next += 1;
        }
        let keep_from = order
            .get(next)
            .map_or(pos, |b| u64::from(b.offset))
            .clamp(buf_start, pos);
        buf.drain(..(keep_from - buf_start) as usize);
        buf_start = keep_from;
    }
    for b in &order[next..] {
        damaged(b, "beyond the end of the pack".into());
    }
    Ok(Id(hash.finalize().into()) == *id)
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
