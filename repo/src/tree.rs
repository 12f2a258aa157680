//! Trees: the JSON listing of one directory, stored as a tree blob.
//!
//! Field names, omitted-when-empty rules and the mode encoding (Go's
//! `os.FileMode`, not Unix mode bits) follow restic's `Node`. Names are
//! escaped as Go's `strconv.Quote` without the outer quotes, so names that
//! are not UTF-8 survive the trip through JSON; `name()` undoes that.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use crate::Id;

/// Go `os.FileMode` type bits that restic stores in `mode`.
pub mod mode {
    pub const DIR: u32 = 1 << 31;
    pub const SYMLINK: u32 = 1 << 27;
    pub const DEVICE: u32 = 1 << 26;
    pub const NAMED_PIPE: u32 = 1 << 25;
    pub const SOCKET: u32 = 1 << 24;
    pub const SETUID: u32 = 1 << 23;
    pub const SETGID: u32 = 1 << 22;
    pub const CHAR_DEVICE: u32 = 1 << 21;
    pub const STICKY: u32 = 1 << 20;
    pub const PERM: u32 = 0o777;

    /// Converts Unix `st_mode` to Go's `FileMode`.
    pub fn from_unix(m: u32) -> u32 {
        let mut out = m & PERM;
        match m & libc::S_IFMT {
            libc::S_IFDIR => out |= DIR,
            libc::S_IFLNK => out |= SYMLINK,
            libc::S_IFBLK => out |= DEVICE,
            libc::S_IFCHR => out |= DEVICE | CHAR_DEVICE,
            libc::S_IFIFO => out |= NAMED_PIPE,
            libc::S_IFSOCK => out |= SOCKET,
            _ => {}
        }
        if m & libc::S_ISUID != 0 {
            out |= SETUID;
        }
        if m & libc::S_ISGID != 0 {
            out |= SETGID;
        }
        if m & libc::S_ISVTX != 0 {
            out |= STICKY;
        }
        out
    }

    /// The Unix permission bits (with setuid/setgid/sticky) of a Go mode.
    pub fn to_unix_perm(m: u32) -> u32 {
        let mut out = m & PERM;
        if m & SETUID != 0 {
            out |= libc::S_ISUID;
        }
        if m & SETGID != 0 {
            out |= libc::S_ISGID;
        }
        if m & STICKY != 0 {
            out |= libc::S_ISVTX;
        }
        out
    }
}

/// What a node is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeType {
    File,
    Dir,
    Symlink,
    Dev,
    Chardev,
    Fifo,
    Socket,
    Irregular,
}

/// An extended attribute; the value is base64 in JSON as Go's `[]byte`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtendedAttribute {
    pub name: String,
    #[serde(with = "base64_bytes")]
    pub value: Vec<u8>,
}

mod base64_bytes {
    use super::*;
    pub fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(v))
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = Option::<String>::deserialize(d)?.unwrap_or_default();
        B64.decode(s).map_err(serde::de::Error::custom)
    }
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}
fn is_zero32(v: &u32) -> bool {
    *v == 0
}

/// One entry of a directory, in restic's JSON shape. Field order matches
/// restic's so trees look familiar to anyone reading them with `restic cat`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// The name, Go-quoted (see [`Node::name_bytes`]).
    #[serde(rename = "name")]
    pub quoted_name: String,
    #[serde(rename = "type")]
    pub node_type: NodeType,
    #[serde(default, skip_serializing_if = "is_zero32")]
    pub mode: u32,
    #[serde(default)]
    pub mtime: String,
    #[serde(default)]
    pub atime: String,
    #[serde(default)]
    pub ctime: String,
    #[serde(default)]
    pub uid: u32,
    #[serde(default)]
    pub gid: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub group: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub inode: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub device_id: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub size: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub links: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub linktarget: String,
    /// The link target's raw bytes when they are not UTF-8.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "opt_base64_bytes"
    )]
    pub linktarget_raw: Option<Vec<u8>>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_empty"
    )]
    pub extended_attributes: Vec<ExtendedAttribute>,
    /// Attributes of other platforms, kept verbatim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generic_attributes: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub device: u64,
    /// Data blobs, in order. `Some(vec![])` for an empty file: restic wants
    /// `[]`, never `null`, on files.
    #[serde(default)]
    pub content: Option<Vec<Id>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtree: Option<Id>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
}

mod opt_base64_bytes {
    use super::*;
    pub fn serialize<S: serde::Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_str(&B64.encode(b)),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Vec<u8>>, D::Error> {
        match Option::<String>::deserialize(d)? {
            Some(s) => B64.decode(s).map(Some).map_err(serde::de::Error::custom),
            None => Ok(None),
        }
    }
}

fn null_as_empty<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

impl Node {
    /// A node of the given type and raw name with everything else empty.
    pub fn new(name: &[u8], node_type: NodeType) -> Node {
        Node {
            quoted_name: go_quote(name),
            node_type,
            mode: 0,
            mtime: String::new(),
            atime: String::new(),
            ctime: String::new(),
            uid: 0,
            gid: 0,
            user: String::new(),
            group: String::new(),
            inode: 0,
            device_id: 0,
            size: 0,
            links: 0,
            linktarget: String::new(),
            linktarget_raw: None,
            extended_attributes: Vec::new(),
            generic_attributes: None,
            device: 0,
            content: if node_type == NodeType::File {
                Some(Vec::new())
            } else {
                None
            },
            subtree: None,
            error: String::new(),
        }
    }

    /// The name as raw bytes (a Unix file name).
    pub fn name_bytes(&self) -> Vec<u8> {
        go_unquote(&self.quoted_name).unwrap_or_else(|| self.quoted_name.as_bytes().to_vec())
    }

    /// The symlink target as raw bytes.
    pub fn link_target_bytes(&self) -> Vec<u8> {
        match &self.linktarget_raw {
            Some(raw) => raw.clone(),
            None => self.linktarget.as_bytes().to_vec(),
        }
    }

    /// Sets the symlink target, using `linktarget_raw` when it is not UTF-8.
    pub fn set_link_target(&mut self, target: &[u8]) {
        match std::str::from_utf8(target) {
            Ok(s) => self.linktarget = s.to_string(),
            Err(_) => {
                self.linktarget = String::from_utf8_lossy(target).into_owned();
                self.linktarget_raw = Some(target.to_vec());
            }
        }
    }

    /// The file's content list (empty for non-files).
    pub fn content(&self) -> &[Id] {
        self.content.as_deref().unwrap_or(&[])
    }
}

/// A directory listing: nodes sorted by name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tree {
    #[serde(deserialize_with = "null_as_empty")]
    pub nodes: Vec<Node>,
}

impl Tree {
    /// The blob form: JSON plus a newline, as restic writes it.
    pub fn to_blob(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec(self).expect("tree JSON");
        v.push(b'\n');
        v
    }

    /// Parses a tree blob.
    pub fn from_blob(data: &[u8]) -> serde_json::Result<Tree> {
        serde_json::from_slice(data)
    }

    /// Sorts nodes by their raw name bytes, the order restic requires.
    pub fn sort(&mut self) {
        self.nodes.sort_by_cached_key(|n| n.name_bytes());
    }
}

/// Why a tree entry cannot be restored under its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameProblem {
    /// Empty, `.`, `..`, or holding `/` or a NUL byte: a name that would leave its directory
    /// or cannot exist.
    Unsafe,
    /// The tree lists the name more than once. Which entry is real cannot be known (a
    /// directory `a` followed by a symlink `a` is how a hostile tree escapes a restore
    /// target), so every entry of that name is refused.
    Duplicate,
}

impl std::fmt::Display for NameProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NameProblem::Unsafe => "unsafe name (empty, ., .., or holding / or NUL)",
            NameProblem::Duplicate => "name listed more than once in its directory",
        })
    }
}

/// The entries of `nodes` that must not be restored, by position, each with its problem.
/// Restore skips them and check reports them.
pub fn name_problems(nodes: &[Node]) -> Vec<(usize, NameProblem)> {
    let names: Vec<Vec<u8>> = nodes.iter().map(Node::name_bytes).collect();
    let mut count: std::collections::HashMap<&[u8], usize> = std::collections::HashMap::new();
    for n in &names {
        *count.entry(n.as_slice()).or_default() += 1;
    }
    names
        .iter()
        .enumerate()
        .filter_map(|(i, n)| {
            if n.is_empty() || n == b"." || n == b".." || n.contains(&b'/') || n.contains(&0) {
                Some((i, NameProblem::Unsafe))
            } else if count[n.as_slice()] > 1 {
                Some((i, NameProblem::Duplicate))
            } else {
                None
            }
        })
        .collect()
}

/// Escapes raw name bytes like Go's `strconv.Quote`, without the quotes.
pub fn go_quote(name: &[u8]) -> String {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while !rest.is_empty() {
        let (valid, invalid) = match std::str::from_utf8(rest) {
            Ok(s) => (s, &[][..]),
            Err(e) => {
                let (ok, bad) = rest.split_at(e.valid_up_to());
                (std::str::from_utf8(ok).expect("valid prefix"), bad)
            }
        };
        for c in valid.chars() {
            quote_char(c, &mut out);
        }
        rest = &rest[valid.len()..];
        if !invalid.is_empty() {
            // Go escapes each byte of an invalid sequence on its own.
            out.push_str(&format!("\\x{:02x}", invalid[0]));
            rest = &invalid[1..];
        }
    }
    out
}

fn quote_char(c: char, out: &mut String) {
    match c {
        '"' => out.push_str("\\\""),
        '\\' => out.push_str("\\\\"),
        '\x07' => out.push_str("\\a"),
        '\x08' => out.push_str("\\b"),
        '\x0c' => out.push_str("\\f"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\x0b' => out.push_str("\\v"),
        c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
        c if go_printable(c) => out.push(c),
        c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
        c => out.push_str(&format!("\\U{:08x}", c as u32)),
    }
}

/// Go's `unicode.IsPrint` for the characters file names meet: everything but
/// controls, non-ASCII spaces, format characters, separators and
/// non-characters. Any difference only changes how a name is escaped, never
/// what it unescapes to.
fn go_printable(c: char) -> bool {
    let u = c as u32;
    !matches!(u,
        0x80..=0xa0 | 0xad | 0x600..=0x605 | 0x61c | 0x6dd | 0x70f | 0x1680 | 0x180e
        | 0x2000..=0x200f | 0x2028..=0x202f | 0x205f..=0x206f | 0x3000
        | 0xd800..=0xdfff | 0xe000..=0xf8ff | 0xfeff | 0xfff9..=0xfffb
        | 0xfffe | 0xffff | 0xf0000..=0x10ffff)
        && (u & 0xfffe) != 0xfffe
}

/// Undoes [`go_quote`] (and any escaping Go's `strconv.Unquote` accepts).
pub fn go_unquote(s: &str) -> Option<Vec<u8>> {
    if !s.contains('\\') {
        return Some(s.as_bytes().to_vec());
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    let hex =
        |s: &[u8]| -> Option<u32> { u32::from_str_radix(std::str::from_utf8(s).ok()?, 16).ok() };
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        let e = *b.get(i + 1)?;
        i += 2;
        match e {
            b'a' => out.push(7),
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(11),
            b'\\' => out.push(b'\\'),
            b'"' => out.push(b'"'),
            b'\'' => out.push(b'\''),
            b'x' => {
                out.push(hex(b.get(i..i + 2)?)? as u8);
                i += 2;
            }
            b'0'..=b'7' => {
                let v =
                    u32::from_str_radix(std::str::from_utf8(b.get(i - 1..i + 2)?).ok()?, 8).ok()?;
                out.push(u8::try_from(v).ok()?);
                i += 1 + 1;
            }
            b'u' | b'U' => {
                let n = if e == b'u' { 4 } else { 8 };
                let c = char::from_u32(hex(b.get(i..i + n)?)?)?;
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                i += n;
            }
            _ => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_matches_go() {
        assert_eq!(go_quote(b"plain.txt"), "plain.txt");
        assert_eq!(go_quote(b"a\nb\"c\\"), "a\\nb\\\"c\\\\");
        assert_eq!(go_quote(b"\xff\xfeok"), "\\xff\\xfeok");
        assert_eq!(go_quote("é日本".as_bytes()), "é日本");
        assert_eq!(go_quote("\u{a0}".as_bytes()), "\\u00a0");
        assert_eq!(go_quote(b"\x01"), "\\x01");
        for name in [
            &b"a\nb\"c\\"[..],
            b"\xff\xfeok",
            "é\u{a0}\u{feff}".as_bytes(),
            b"\x01\x7f",
        ] {
            assert_eq!(go_unquote(&go_quote(name)).unwrap(), name);
        }
        assert_eq!(go_unquote("\\101\\u00e9").unwrap(), "Aé".as_bytes());
    }

    #[test]
    fn names_that_must_not_be_restored() {
        use NameProblem::{Duplicate, Unsafe};
        let node = |quoted: &str| Node {
            quoted_name: quoted.to_string(),
            ..Node::new(b"", NodeType::File)
        };
        // Names as stored, and the problems expected at their positions.
        type Case<'a> = (&'a [&'a str], &'a [(usize, NameProblem)]);
        let cases: &[Case] = &[
            (&["a", "b"], &[]),
            (&["...", ".hidden", "a b", "back\\slash"], &[]),
            (&["a", "a"], &[(0, Duplicate), (1, Duplicate)]),
            (
                &["a", "b", "a", "a"],
                &[(0, Duplicate), (2, Duplicate), (3, Duplicate)],
            ),
            // The same name spelt two ways is still one name.
            (&["a", "\\x61"], &[(0, Duplicate), (1, Duplicate)]),
            (
                &["", ".", "..", "x/y", "/abs"],
                &[
                    (0, Unsafe),
                    (1, Unsafe),
                    (2, Unsafe),
                    (3, Unsafe),
                    (4, Unsafe),
                ],
            ),
            // A NUL byte arrives escaped and is unsafe once unquoted.
            (&["nul\\x00byte", "ok"], &[(0, Unsafe)]),
            // Unsafe wins over duplicate.
            (&["..", ".."], &[(0, Unsafe), (1, Unsafe)]),
        ];
        for (names, want) in cases {
            let nodes: Vec<Node> = names.iter().map(|n| node(n)).collect();
            assert_eq!(&name_problems(&nodes), want, "{names:?}");
        }
    }

    #[test]
    fn empty_file_content_is_empty_list() {
        let n = Node::new(b"f", NodeType::File);
        let j = serde_json::to_string(&n).unwrap();
        assert!(j.contains("\"content\":[]"), "{j}");
        let d = Node::new(b"d", NodeType::Dir);
        assert!(
            serde_json::to_string(&d)
                .unwrap()
                .contains("\"content\":null")
        );
    }
}
