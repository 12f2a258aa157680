//! Repairs, as restic's `repair index` and `repair snapshots` make them.
//!
//! `repair index` rebuilds the index from the packs themselves: when an index file is lost
//! or damaged, the packs it listed still hold their blobs, and each pack's header says
//! which. Packs an index lists at the size it implies keep their entries; every other pack
//! has its header read. New index files are written before the old ones are deleted.
//!
//! `repair snapshots` rewrites snapshots whose trees or data are gone, so that they can be
//! restored and checked again: a file loses the blobs that no index lists (its size follows),
//! an unreadable directory becomes an empty one, entries that must never be restored
//! (unsafe or duplicated names, irregular files) are dropped, and a snapshot whose root
//! cannot be read is removed. Trees that need no change keep their ids, so a repaired
//! snapshot shares everything intact with the others. Both walk trees with explicit
//! stacks, so no depth of trees can overflow the thread's stack.

use std::collections::{BTreeMap, HashSet};

use crate::backend::FileKind;
use crate::check::read_header;
use crate::id::IdMap;
use crate::index::{IndexBlob, IndexPack};
use crate::pack::{BlobType, PackedBlob};
use crate::packer::PackSink;
use crate::prune::expected_pack_size;
use crate::snapshot::SnapshotEntry;
use crate::tree::{NodeType, Tree, name_problems};
use crate::{Error, Id, Repository, Result};

/// What `repair index` did.
#[derive(Debug, Default)]
pub struct IndexRepair {
    /// Packs in the new index.
    pub packs: usize,
    /// Of those, packs whose header was read (not listed, or listed at a wrong size).
    pub headers_read: usize,
    /// Packs left out because their header cannot be read, with why.
    pub unreadable: Vec<(Id, String)>,
    /// Old index files deleted.
    pub index_files_removed: usize,
}

/// Rebuilds the index from the packs; `progress` receives one line per phase.
pub fn repair_index(repo: &mut Repository, progress: &dyn Fn(&str)) -> Result<IndexRepair> {
    let mut report = IndexRepair::default();
    progress("loading indexes");
    let old_files = repo.backend().list(FileKind::Index)?;
    let mut listed: BTreeMap<Id, Vec<PackedBlob>> = BTreeMap::new();
    for f in &old_files {
        let read = repo
            .load_unpacked(FileKind::Index, &f.name)
            .and_then(|plain| {
                crate::index::IndexFile::parse(&plain)
                    .map_err(|e| Error::corrupt(format!("index/{}", f.name), e.to_string()))
            });
        match read {
            Ok(file) => {
                for p in file.packs {
                    listed
                        .entry(p.id)
                        .or_insert_with(|| p.blobs.iter().map(IndexBlob::to_packed).collect());
                }
            }
            Err(e) => progress(&format!(
                "index/{} cannot be read, it will be replaced: {e}",
                f.name
            )),
        }
    }
    progress("reading pack headers");
    let mut packs = Vec::new();
    for f in repo.backend().list(FileKind::Pack)? {
        let Ok(id) = f.name.parse::<Id>() else {
            continue;
        };
        let blobs = match listed.get(&id) {
            Some(blobs) if expected_pack_size(blobs) == f.size => blobs.clone(),
            _ => {
                report.headers_read += 1;
                match read_header(repo, &id, f.size) {
                    Ok(blobs) => blobs,
                    Err(e) => {
                        report.unreadable.push((id, e.to_string()));
                        continue;
                    }
                }
            }
        };
        packs.push(IndexPack {
            id,
            blobs: blobs.iter().map(IndexBlob::from_packed).collect(),
        });
    }
    report.packs = packs.len();
    progress(&format!("writing a new index of {} packs", packs.len()));
    let new_files: HashSet<Id> = repo.save_index(packs)?.into_iter().collect();
    progress(&format!("deleting {} old index files", old_files.len()));
    for f in old_files {
        if f.name.parse::<Id>().is_ok_and(|id| new_files.contains(&id)) {
            continue; // the same content written again
        }
        repo.backend().remove(FileKind::Index, &f.name)?;
        report.index_files_removed += 1;
    }
    Ok(report)
}

/// Options of `repair snapshots`.
#[derive(Clone, Debug, Default)]
pub struct SnapshotRepairOptions {
    /// Remove the original snapshots (and unreadable snapshot files named in `ids`).
    pub forget: bool,
    /// Only say what would be done.
    pub dry_run: bool,
    /// Snapshot ids or unique prefixes; empty means every snapshot.
    pub ids: Vec<String>,
}

/// What `repair snapshots` did.
#[derive(Debug, Default)]
pub struct SnapshotRepair {
    /// Snapshots written anew, or removed.
    pub modified: usize,
    /// Unreadable snapshot files that were not removed (not named, or no `forget`).
    pub unreadable_left: Vec<Id>,
}

/// Rewrites damaged snapshots; `say` receives what is done, line by line. Needs the index
/// loaded, and it must be complete: run [`repair_index`] first when blobs are missing from
/// it.
pub fn repair_snapshots(
    repo: &mut Repository,
    options: &SnapshotRepairOptions,
    say: &mut dyn FnMut(String),
) -> Result<SnapshotRepair> {
    let mut report = SnapshotRepair::default();
    let (snapshots, unreadable) = repo.read_snapshots()?;
    let named = |id: &Id| {
        options.ids.is_empty()
            || options
                .ids
                .iter()
                .any(|p| id.to_hex().starts_with(p.as_str()))
    };
    for u in unreadable {
        let explicitly = options
            .ids
            .iter()
            .any(|p| u.id.to_hex().starts_with(p.as_str()));
        if options.forget && explicitly {
            if options.dry_run {
                say(format!("would remove unreadable snapshot {}", u.id.short()));
            } else {
                repo.backend().remove(FileKind::Snapshot, &u.id.to_hex())?;
                say(format!("removed unreadable snapshot {}", u.id.short()));
            }
            report.modified += 1;
        } else if named(&u.id) {
            say(format!(
                "snapshot {} is unreadable ({}): `repair snapshots --forget {}` removes it",
                u.id.short(),
                u.error,
                u.id.short()
            ));
            report.unreadable_left.push(u.id);
        }
    }
    let selected: Vec<SnapshotEntry> = snapshots.into_iter().filter(|e| named(&e.id)).collect();
    let mut rewriter = Rewriter {
        repo,
        memo: IdMap::default(),
        new_trees: Vec::new(),
        stored: Default::default(),
    };
    let mut planned: Vec<(SnapshotEntry, Option<Id>)> = Vec::new();
    for entry in selected {
        say(format!(
            "snapshot {} of {:?} at {}",
            entry.id.short(),
            entry.snapshot.paths,
            entry.snapshot.time
        ));
        let new_root = rewriter.rewrite(entry.snapshot.tree, say);
        if new_root != Some(entry.snapshot.tree) {
            planned.push((entry, new_root));
        }
    }
    let new_trees = std::mem::take(&mut rewriter.new_trees);
    if options.dry_run {
        for (entry, root) in &planned {
            say(match root {
                Some(_) => format!(
                    "would save a repaired copy of snapshot {}",
                    entry.id.short()
                ),
                None => format!(
                    "would remove snapshot {}: its root tree cannot be read",
                    entry.id.short()
                ),
            });
        }
        report.modified += planned.len();
        return Ok(report);
    }
    if !new_trees.is_empty() {
        let sink = PackSink::new(
            repo.backend().clone(),
            repo.key(),
            repo.options().pack_size,
            1,
        );
        for (id, blob) in &new_trees {
            if repo.index().contains(id) {
                continue;
            }
            let (sealed, uncompressed) = repo.seal_blob(BlobType::Tree, blob);
            sink.add(BlobType::Tree, *id, &sealed, uncompressed)?;
        }
        let (packs, _) = sink.finish()?;
        repo.save_index(packs)?;
    }
    for (entry, root) in planned {
        match root {
            Some(tree) => {
                let mut snapshot = entry.snapshot.clone();
                snapshot.original = Some(entry.id);
                snapshot.tree = tree;
                if !options.forget && !snapshot.tags.iter().any(|t| t == "repaired") {
                    snapshot.tags.push("repaired".into());
                }
                let id = repo.save_snapshot(&snapshot)?;
                say(format!(
                    "saved repaired snapshot {} for {}",
                    id.short(),
                    entry.id.short()
                ));
            }
            None => say(format!(
                "snapshot {}: its root tree cannot be read",
                entry.id.short()
            )),
        }
        if options.forget || root.is_none() {
            repo.backend()
                .remove(FileKind::Snapshot, &entry.id.to_hex())?;
            say(format!("removed snapshot {}", entry.id.short()));
        }
        report.modified += 1;
    }
    Ok(report)
}

/// A tree being rewritten: its nodes (already filtered), the directories among them whose
/// subtrees are still to be rewritten, and whether anything changed.
struct Frame {
    old: Id,
    path: String,
    tree: Tree,
    /// Positions in `tree.nodes` of directories not visited yet.
    dirs: Vec<usize>,
    changed: bool,
}

struct Rewriter<'a> {
    repo: &'a Repository,
    /// Old tree id -> its replacement (itself when intact).
    memo: IdMap<Id>,
    /// Tree blobs to store: id and content.
    new_trees: Vec<(Id, Vec<u8>)>,
    stored: crate::id::IdSet,
}

impl Rewriter<'_> {
    /// The repaired id of the tree `root`, or `None` when the root itself cannot be read.
    fn rewrite(&mut self, root: Id, say: &mut dyn FnMut(String)) -> Option<Id> {
        if let Some(done) = self.memo.get(&root) {
            return Some(*done);
        }
        let mut stack = vec![self.enter(root, "/".into(), say)?];
        loop {
            let top = stack.last_mut().expect("a frame");
            if let Some(at) = top.dirs.pop() {
                let node = &top.tree.nodes[at];
                let path = format!("{}{}/", top.path, node.quoted_name);
                let Some(sub) = node.subtree else {
                    say(format!(
                        "  dir {path:?}: no subtree, replaced with an empty directory"
                    ));
                    let empty = self.store(Tree::default());
                    let top = stack.last_mut().expect("a frame");
                    top.tree.nodes[at].subtree = Some(empty);
                    top.changed = true;
                    continue;
                };
                if let Some(done) = self.memo.get(&sub).copied() {
                    let top = stack.last_mut().expect("a frame");
                    if done != sub {
                        top.tree.nodes[at].subtree = Some(done);
                        top.changed = true;
                    }
                    continue;
                }
                match self.enter(sub, path.clone(), say) {
                    Some(frame) => stack.push(frame),
                    None => {
                        say(format!(
                            "  dir {path:?}: cannot be read, replaced with an empty directory"
                        ));
                        let empty = self.store(Tree::default());
                        self.memo.insert(sub, empty);
                        let top = stack.last_mut().expect("a frame");
                        top.tree.nodes[at].subtree = Some(empty);
                        top.changed = true;
                    }
                }
                continue;
            }
            let done = stack.pop().expect("a frame");
            let new_id = if done.changed {
                self.store(done.tree)
            } else {
                done.old
            };
            self.memo.insert(done.old, new_id);
            let Some(parent) = stack.last_mut() else {
                return Some(new_id);
            };
            if new_id != done.old {
                parent.changed = true;
                for n in &mut parent.tree.nodes {
                    if n.subtree == Some(done.old) {
                        n.subtree = Some(new_id);
                    }
                }
            }
        }
    }

    /// Loads a tree and repairs its own nodes; `None` when it cannot be read.
    fn enter(&mut self, id: Id, path: String, say: &mut dyn FnMut(String)) -> Option<Frame> {
        let mut tree = self.repo.load_tree(&id).ok()?;
        let mut changed = false;
        let bad: HashSet<usize> = name_problems(&tree.nodes)
            .into_iter()
            .map(|(i, problem)| {
                say(format!(
                    "  {path}{}: removed, {problem}",
                    tree.nodes[i].quoted_name
                ));
                i
            })
            .collect();
        let mut nodes = Vec::with_capacity(tree.nodes.len());
        for (i, mut node) in tree.nodes.drain(..).enumerate() {
            if bad.contains(&i) {
                changed = true;
                continue;
            }
            match node.node_type {
                NodeType::Irregular => {
                    say(format!(
                        "  {path}{}: removed irregular file",
                        node.quoted_name
                    ));
                    changed = true;
                    continue;
                }
                NodeType::File => {
                    let index = self.repo.index();
                    let content = node.content.clone().unwrap_or_default();
                    let kept: Vec<Id> = content
                        .iter()
                        .copied()
                        .filter(|b| index.contains(b))
                        .collect();
                    let size: u64 = kept
                        .iter()
                        .map(|b| u64::from(index.get(b).expect("kept").blob.plain_length()))
                        .sum();
                    if kept.len() != content.len() {
                        say(format!(
                            "  file {path}{}: removed missing content",
                            node.quoted_name
                        ));
                    } else if size != node.size {
                        say(format!(
                            "  file {path}{}: fixed incorrect size",
                            node.quoted_name
                        ));
                    }
                    if kept.len() != content.len() || size != node.size || node.content.is_none() {
                        node.content = Some(kept);
                        node.size = size;
                        changed = true;
                    }
                }
                _ => {}
            }
            nodes.push(node);
        }
        tree.nodes = nodes;
        let dirs = tree
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.node_type == NodeType::Dir)
            .map(|(i, _)| i)
            .rev()
            .collect();
        Some(Frame {
            old: id,
            path,
            tree,
            dirs,
            changed,
        })
    }

    /// Queues a tree blob for storing and returns its id.
    fn store(&mut self, tree: Tree) -> Id {
        let blob = tree.to_blob();
        let id = Id::hash(&blob);
        if self.stored.insert(id) {
            self.new_trees.push((id, blob));
        }
        id
    }
}
