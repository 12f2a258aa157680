//! Reading a snapshot without restoring it: a listing of a subtree (`ls`) and one file's
//! content (`dump`), as restic's commands of those names do.
//!
//! Both walk from the snapshot's root tree by name, so a path never means anything outside
//! the snapshot, and both hold at most one tree per directory level and one blob of content:
//! memory follows the depth of the path, never the size of the snapshot or the file.

use std::io::Write;

use serde::Serialize;

use crate::{
    Id, Repository,
    error::{Error, Result},
    tree::{Node, NodeType},
};

/// One entry of a listing: what `ls` prints, and its JSON object.
#[derive(Serialize, serde::Deserialize, Clone, Debug, PartialEq)]
pub struct Entry {
    /// Absolute inside the snapshot: `/etc/app.conf`.
    pub path: String,
    /// `file`, `dir`, `symlink`, `dev`, `chardev`, `fifo`, `socket` or `irregular`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Bytes of a file's content; 0 for the others.
    pub size: u64,
    /// Permission bits in octal: `644`.
    pub mode: String,
    /// As stored (RFC 3339).
    pub mtime: String,
}

impl Entry {
    fn of(path: &str, node: &Node) -> Entry {
        Entry {
            path: path.to_string(),
            kind: match node.node_type {
                NodeType::File => "file",
                NodeType::Dir => "dir",
                NodeType::Symlink => "symlink",
                NodeType::Dev => "dev",
                NodeType::Chardev => "chardev",
                NodeType::Fifo => "fifo",
                NodeType::Socket => "socket",
                NodeType::Irregular => "irregular",
            }
            .to_string(),
            size: node.size,
            mode: format!("{:o}", node.mode & 0o7777),
            mtime: node.mtime.clone(),
        }
    }
}

/// The components of `path` inside a snapshot: `/a/b/` is `["a", "b"]`. `..` is refused, so
/// a path never climbs out of the tree.
pub fn components(path: &str) -> Result<Vec<&str>> {
    let parts: Vec<&str> = path
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if parts.contains(&"..") {
        return Err(Error::Invalid(format!(
            "{path:?}: '..' is not allowed in a snapshot path; give the path from the snapshot's root"
        )));
    }
    Ok(parts)
}

/// The node at `path` under the tree `root`; `None` for the root itself.
fn find(repo: &Repository, root: &Id, path: &str) -> Result<Option<Node>> {
    let parts = components(path)?;
    let mut tree = repo.load_tree(root)?;
    let mut found = None;
    for (i, part) in parts.iter().enumerate() {
        let node = tree
            .nodes
            .into_iter()
            .find(|n| n.name_bytes() == part.as_bytes())
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "{path:?} is not in the snapshot (no {part:?} in /{})",
                    parts[..i].join("/")
                ))
            })?;
        if i + 1 < parts.len() {
            tree = repo.load_tree(&subtree(&node, &parts[..=i])?)?;
        } else {
            tree = Default::default();
        }
        found = Some(node);
    }
    Ok(found)
}

/// The tree of directory `node`, found at `parts`.
fn subtree(node: &Node, parts: &[&str]) -> Result<Id> {
    if node.node_type != NodeType::Dir {
        return Err(Error::Invalid(format!(
            "/{} is not a directory",
            parts.join("/")
        )));
    }
    node.subtree.ok_or_else(|| Error::Corrupt {
        what: format!("directory /{}", parts.join("/")),
        reason: "it has no tree".into(),
    })
}

/// Every entry under `path` of the snapshot whose root tree is `root`, as `restic ls` lists
/// them: each directory before its contents, depth first, in the trees' (sorted) order; a
/// file's path lists the file alone. `repo` needs its index loaded.
///
/// The walk keeps a stack of the directories it is in, never recursion, so a deep tree cannot
/// exhaust the thread's stack.
pub fn list(
    repo: &Repository,
    root: &Id,
    path: &str,
    out: &mut dyn FnMut(Entry) -> std::io::Result<()>,
) -> Result<()> {
    let parts = components(path)?;
    let mut shown = format!("/{}", parts.join("/"));
    let io = |e: std::io::Error| Error::Io {
        action: "writing the listing to",
        path: "standard output".into(),
        source: e,
    };
    let tree = match find(repo, root, path)? {
        None => repo.load_tree(root)?,
        Some(node) if node.node_type != NodeType::Dir => {
            return out(Entry::of(&shown, &node)).map_err(io);
        }
        Some(node) => repo.load_tree(&subtree(&node, &parts)?)?,
    };
    if shown == "/" {
        shown.clear();
    }
    // One frame per directory the walk is in: the length `shown` had before the directory's
    // name was appended, and the entries of its tree still to list.
    let mut stack = vec![(shown.len(), tree.nodes.into_iter())];
    while let Some((_, nodes)) = stack.last_mut() {
        let Some(node) = nodes.next() else {
            let (before, _) = stack.pop().expect("a frame");
            shown.truncate(before);
            continue;
        };
        let before = shown.len();
        shown.push('/');
        shown.push_str(&String::from_utf8_lossy(&node.name_bytes()));
        out(Entry::of(&shown, &node)).map_err(io)?;
        match (&node.node_type, node.subtree) {
            (NodeType::Dir, Some(id)) => {
                stack.push((before, repo.load_tree(&id)?.nodes.into_iter()))
            }
            _ => shown.truncate(before),
        }
    }
    Ok(())
}

/// Writes the regular file at `path` of the snapshot whose root tree is `root` to `out`, one
/// blob at a time, and returns the bytes written. `repo` needs its index loaded.
pub fn dump(repo: &Repository, root: &Id, path: &str, out: &mut dyn Write) -> Result<u64> {
    let io = |e: std::io::Error| Error::Io {
        action: "writing the file to",
        path: "standard output".into(),
        source: e,
    };
    let node = find(repo, root, path)?.ok_or_else(|| {
        Error::Invalid(format!(
            "{path:?} is the snapshot's root, a directory; dump takes a regular file"
        ))
    })?;
    if node.node_type != NodeType::File {
        return Err(Error::Invalid(format!(
            "{path:?} is not a regular file; dump writes regular files only"
        )));
    }
    let mut written = 0u64;
    for blob in node.content() {
        let data = repo.load_blob(blob)?;
        out.write_all(&data).map_err(io)?;
        written += data.len() as u64;
    }
    out.flush().map_err(io)?;
    if written != node.size {
        return Err(Error::Corrupt {
            what: format!("file {path:?}"),
            reason: format!(
                "its content is {written} bytes, its tree entry says {}",
                node.size
            ),
        });
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_components_from_the_root() {
        for (path, parts) in [
            ("/", vec![]),
            ("", vec![]),
            ("/etc//app/./x.conf", vec!["etc", "app", "x.conf"]),
            ("etc/", vec!["etc"]),
        ] {
            assert_eq!(components(path).unwrap(), parts, "{path:?}");
        }
        let refused = components("/etc/../root").unwrap_err().to_string();
        assert!(refused.contains("'..'"), "{refused}");
    }
}
