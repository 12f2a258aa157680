//! How the paths given to a backup become the snapshot's `paths` and the
//! layout of its tree (`backup .` stores the contents at the root).

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use crate::{Error, Result};

/// Where each target goes in the snapshot tree.
pub(super) enum Layout {
    /// `backup .` (or one directory given as `.`): its contents are the root.
    Contents(PathBuf),
    /// Targets placed at their path components (below `/`, or below the
    /// working directory when all are relative) under a virtual root:
    /// (components, real path).
    Nested(PathBuf, Vec<(Vec<Vec<u8>>, PathBuf)>),
    /// A block device (or image file) read as the one regular file `name`
    /// at the root.
    Device { path: PathBuf, name: Vec<u8> },
}

/// The snapshot's `paths` (`/NAME`, as restic's `--stdin-filename`) and
/// layout for a device read as the file `file_name`, which must be one
/// plain name, so every backup of the device has the same path and finds
/// the last one as its parent.
pub(super) fn plan_device(path: &Path, file_name: &str) -> Result<(Vec<String>, Layout)> {
    if file_name.is_empty() || file_name.contains('/') || file_name == "." || file_name == ".." {
        return Err(Error::Invalid(format!(
            "{file_name:?} cannot name a device's file in a snapshot: give a plain file name such as volume.img"
        )));
    }
    let meta = fs::metadata(path).map_err(|e| Error::io("cannot back up", path, e))?;
    let ft = meta.file_type();
    use std::os::unix::fs::FileTypeExt;
    if !ft.is_block_device() && !ft.is_file() {
        return Err(Error::Invalid(format!(
            "{} is neither a block device nor a regular file, so it cannot be backed up as an image",
            path.display()
        )));
    }
    Ok((
        vec![format!("/{file_name}")],
        Layout::Device {
            path: path.to_path_buf(),
            name: file_name.as_bytes().to_vec(),
        },
    ))
}

/// Absolute, cleaned form of the targets (the snapshot's `paths`) and
/// their layout in the tree. Relative targets start from `working_dir`, and
/// every path walked is absolute, so excludes match absolute paths as
/// restic's do.
pub(super) fn plan_targets(
    targets: &[PathBuf],
    working_dir: &Path,
) -> Result<(Vec<String>, Layout)> {
    if targets.is_empty() {
        return Err(Error::Invalid(
            "nothing to back up: give at least one path".into(),
        ));
    }
    if !working_dir.is_absolute() {
        return Err(Error::Invalid(format!(
            "the backup's working directory {} is not absolute",
            working_dir.display()
        )));
    }
    let mut abs = Vec::new();
    let mut nested = Vec::new();
    let mut contents = None;
    let any_absolute = targets.iter().any(|t| t.is_absolute());
    for t in targets {
        let a = clean(&working_dir.join(t));
        fs::symlink_metadata(&a).map_err(|e| Error::io("cannot back up", t, e))?;
        abs.push(a.to_string_lossy().into_owned());
        let base = if any_absolute { a.clone() } else { clean(t) };
        let comps: Vec<Vec<u8>> = base
            .components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n.as_bytes().to_vec()),
                _ => None,
            })
            .collect();
        if comps.is_empty() {
            contents = Some(a);
        } else {
            nested.push((comps, a));
        }
    }
    abs.sort();
    abs.dedup();
    match contents {
        Some(dir) if nested.is_empty() => Ok((abs, Layout::Contents(dir))),
        Some(_) => Err(Error::Invalid(
            "`.` (or /) cannot be combined with other paths in one backup".into(),
        )),
        None => {
            let prefix = if any_absolute {
                PathBuf::from("/")
            } else {
                clean(working_dir)
            };
            Ok((abs, Layout::Nested(prefix, nested)))
        }
    }
}

/// Lexically cleans a path (`a/./b/../c` → `a/c`), as Go's filepath.Clean.
fn clean(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() && !p.is_absolute() {
                    out.push("..");
                }
            }
            c => out.push(c.as_os_str()),
        }
    }
    out
}
