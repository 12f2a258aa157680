//! Tree nodes from what `lstat`, `readlink` and the extended attributes of
//! a file tell, with user and group names looked up once per id.

use std::fs::{self, Metadata};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use super::Archiver;
use crate::tree::{Node, NodeType, mode};

impl Archiver<'_> {
    fn user_name(&self, uid: u32) -> String {
        self.users
            .lock()
            .expect("users")
            .entry(uid)
            .or_insert_with(|| crate::host::user_name(uid).unwrap_or_default())
            .clone()
    }

    fn group_name(&self, gid: u32) -> String {
        self.groups
            .lock()
            .expect("groups")
            .entry(gid)
            .or_insert_with(|| crate::host::group_name(gid).unwrap_or_default())
            .clone()
    }

    /// A node with everything `lstat` and the file system tell.
    pub(super) fn node_from(&self, name: &[u8], path: &Path, meta: &Metadata) -> Node {
        let ft = meta.file_type();
        let node_type = if ft.is_file() {
            NodeType::File
        } else if ft.is_dir() {
            NodeType::Dir
        } else if ft.is_symlink() {
            NodeType::Symlink
        } else if ft.is_block_device() {
            NodeType::Dev
        } else if ft.is_char_device() {
            NodeType::Chardev
        } else if ft.is_fifo() {
            NodeType::Fifo
        } else if ft.is_socket() {
            NodeType::Socket
        } else {
            NodeType::Irregular
        };
        let mut node = Node::new(name, node_type);
        node.mode = mode::from_unix(meta.mode());
        node.mtime = crate::time::from_unix(meta.mtime(), meta.mtime_nsec());
        node.atime = crate::time::from_unix(meta.atime(), meta.atime_nsec());
        node.ctime = crate::time::from_unix(meta.ctime(), meta.ctime_nsec());
        node.uid = meta.uid();
        node.gid = meta.gid();
        node.user = self.user_name(meta.uid());
        node.group = self.group_name(meta.gid());
        node.inode = meta.ino();
        node.device_id = meta.dev();
        node.links = meta.nlink();
        match node_type {
            NodeType::File => node.size = meta.len(),
            NodeType::Dev | NodeType::Chardev => node.device = meta.rdev(),
            NodeType::Symlink => match fs::read_link(path) {
                Ok(t) => node.set_link_target(t.as_os_str().as_bytes()),
                Err(e) => self.warn(format!("cannot read symlink {}: {e}", path.display())),
            },
            _ => {}
        }
        if let Ok(names) = xattr::list(path) {
            for n in names {
                if let Ok(Some(value)) = xattr::get(path, &n) {
                    node.extended_attributes
                        .push(crate::tree::ExtendedAttribute {
                            name: n.to_string_lossy().into_owned(),
                            value,
                        });
                }
            }
        }
        node
    }
}
