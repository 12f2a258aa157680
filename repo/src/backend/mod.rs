//! Where repository files live. A backend stores named, write-once files of
//! a few kinds; everything above it (encryption, packs, index) is the same
//! for every backend.
//!
//! The trait is synchronous on purpose: the engine is a pipeline of threads
//! with bounded channels (CPU-bound hashing, compression, encryption), and a
//! backend that needs async I/O (object storage) owns its runtime and blocks.
//! Concurrency comes from several pipeline threads calling one backend.

pub mod local;
pub mod retry;
pub mod s3;

use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};

/// The kinds of files in a repository, each with its own directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileKind {
    /// The single `config` file.
    Config,
    /// `keys/`: password-protected copies of the master key.
    Key,
    /// `snapshots/`.
    Snapshot,
    /// `index/`.
    Index,
    /// `locks/`.
    Lock,
    /// `data/xx/`: pack files.
    Pack,
}

impl FileKind {
    /// The directory of this kind, relative to the repository root.
    pub fn dir(self) -> &'static str {
        match self {
            FileKind::Config => "",
            FileKind::Key => "keys",
            FileKind::Snapshot => "snapshots",
            FileKind::Index => "index",
            FileKind::Lock => "locks",
            FileKind::Pack => "data",
        }
    }

    /// The path of file `name` of this kind relative to the repository root,
    /// in restic's default layout (packs fan out by their first two digits).
    pub fn path(self, name: &str) -> String {
        match self {
            FileKind::Config => "config".to_string(),
            FileKind::Pack => format!("data/{}/{}", &name[..2.min(name.len())], name),
            k => format!("{}/{}", k.dir(), name),
        }
    }
}

/// What to store: small files come as bytes, packs as a temporary file, so
/// no backend ever needs a whole pack in memory.
pub enum Payload<'a> {
    /// The file's content.
    Bytes(&'a [u8]),
    /// A file holding the content from offset 0 to `len`.
    File { file: &'a File, len: u64 },
    /// A file written in the backend's [`Backend::staging_dir`] under a temporary `path`,
    /// holding exactly the content: a backend on that file system renames it into place
    /// instead of copying it; any other reads it as [`Payload::File`].
    Staged {
        file: &'a File,
        path: &'a Path,
        len: u64,
    },
}

impl Payload<'_> {
    /// The payload's length in bytes.
    pub fn len(&self) -> u64 {
        match self {
            Payload::Bytes(b) => b.len() as u64,
            Payload::File { len, .. } | Payload::Staged { len, .. } => *len,
        }
    }

    /// True when the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A file as listed: its name and size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedFile {
    pub name: String,
    pub size: u64,
}

/// Why a backend operation failed, classified for retries and exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendErrorKind {
    /// The file does not exist.
    NotFound,
    /// Credentials were rejected or access is denied.
    PermissionDenied,
    /// The bucket or base directory does not exist.
    NoSuchContainer,
    /// A network error or server-side failure that may pass.
    Transient,
    /// No space left, or a quota is exhausted.
    NoSpace,
    /// A create-if-absent write found the file there already.
    AlreadyExists,
    /// Anything else.
    Other,
}

/// A backend failure: what was done, on which location, and why.
#[derive(Debug, Clone)]
pub struct BackendError {
    pub kind: BackendErrorKind,
    /// What failed, e.g. `read data/ab/ab12...` on `s3:http://host/bucket`.
    pub context: String,
    /// The underlying cause, never containing secrets.
    pub cause: String,
    /// What to do about it, in the terms of the storage that failed (a bucket policy
    /// means nothing to someone whose repository is a directory).
    pub hint: Option<&'static str>,
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.context, self.cause)?;
        match self.hint {
            Some(hint) => write!(f, " ({hint})"),
            None => Ok(()),
        }
    }
}

impl std::error::Error for BackendError {}

impl BackendError {
    /// Builds an error from an I/O error on a local file system, classifying it by its
    /// kind.
    pub fn from_io(context: String, e: &std::io::Error) -> BackendError {
        use std::io::ErrorKind as K;
        let kind = match e.kind() {
            K::NotFound => BackendErrorKind::NotFound,
            K::PermissionDenied | K::ReadOnlyFilesystem => BackendErrorKind::PermissionDenied,
            K::StorageFull | K::QuotaExceeded => BackendErrorKind::NoSpace,
            K::Interrupted | K::TimedOut => BackendErrorKind::Transient,
            K::AlreadyExists => BackendErrorKind::AlreadyExists,
            _ => BackendErrorKind::Other,
        };
        let hint = match kind {
            BackendErrorKind::PermissionDenied => Some(
                "check the owner and permissions of the repository directory, and that its file system is writable",
            ),
            BackendErrorKind::NoSpace => Some("free space on the repository's file system"),
            _ => None,
        };
        BackendError {
            kind,
            context,
            cause: e.to_string(),
            hint,
        }
    }

    /// Builds an error of an object store, with advice in its terms.
    pub fn object_storage(kind: BackendErrorKind, context: String, cause: String) -> BackendError {
        let hint = match kind {
            BackendErrorKind::PermissionDenied => {
                Some("check the credentials and the bucket's access policy")
            }
            BackendErrorKind::NoSuchContainer => Some("check the repository URL"),
            BackendErrorKind::NoSpace => Some("free space or raise the quota of the bucket"),
            _ => None,
        };
        BackendError {
            kind,
            context,
            cause,
            hint,
        }
    }

    /// True when the file simply does not exist.
    pub fn is_not_found(&self) -> bool {
        self.kind == BackendErrorKind::NotFound
    }
}

/// Result of a backend operation.
pub type BackendResult<T> = Result<T, BackendError>;

/// Storage for repository files. Implementations must be safe to call from
/// many threads at once, and must make a saved file visible only once it is
/// complete (temporary name and rename, or a single object PUT).
pub trait Backend: Send + Sync {
    /// The location as the user wrote it, for messages (never with secrets).
    fn location(&self) -> String;

    /// Prepares an empty repository location (directories, bucket).
    fn create(&self) -> BackendResult<()>;

    /// A directory where packs can be written under a temporary name and then handed to
    /// [`Backend::save`] as [`Payload::Staged`], so each pack is written once. `None` (the
    /// default) for backends that are not a local file system.
    fn staging_dir(&self) -> Option<PathBuf> {
        None
    }

    /// Stores a complete file.
    fn save(&self, kind: FileKind, name: &str, payload: Payload<'_>) -> BackendResult<()>;

    /// Stores a complete file only if none of that name exists, atomically: of two
    /// writers racing, one succeeds and the other gets an `AlreadyExists` error. This is
    /// what makes creating a repository safe when two `init`s (or two first Jobs of
    /// sources sharing a new repository) run at once.
    fn save_new(&self, kind: FileKind, name: &str, bytes: &[u8]) -> BackendResult<()>;

    /// Reads a whole file.
    fn load(&self, kind: FileKind, name: &str) -> BackendResult<Vec<u8>>;

    /// Reads `length` bytes at `offset` of a file.
    fn load_range(
        &self,
        kind: FileKind,
        name: &str,
        offset: u64,
        length: u64,
    ) -> BackendResult<Vec<u8>>;

    /// [`Backend::load_range`] into `buf` (replacing what it held), so a caller that
    /// reads many ranges reuses one buffer. Backends that can read into it do so.
    fn load_range_into(
        &self,
        kind: FileKind,
        name: &str,
        offset: u64,
        length: u64,
        buf: &mut Vec<u8>,
    ) -> BackendResult<()> {
        *buf = self.load_range(kind, name, offset, length)?;
        Ok(())
    }

    /// The size of a file, or a `NotFound` error.
    fn stat(&self, kind: FileKind, name: &str) -> BackendResult<u64>;

    /// Deletes a file; deleting a missing file is not an error.
    fn remove(&self, kind: FileKind, name: &str) -> BackendResult<()>;

    /// Lists all files of a kind.
    fn list(&self, kind: FileKind) -> BackendResult<Vec<ListedFile>>;
}

/// Opens the backend a repository location string names: an `s3:` URL
/// (reached with `s3`, and retried by [`retry::RetryPolicy::default`]), or a
/// local path, optionally written `local:PATH`. The options are a value the
/// caller builds once (the CLI from restic's environment), never read here.
pub fn open(location: &str, s3: s3::S3Options) -> BackendResult<Box<dyn Backend>> {
    open_with_retry(location, s3, retry::RetryPolicy::default())
}

/// [`open`], with an `s3:` backend retried by `policy`.
pub fn open_with_retry(
    location: &str,
    s3: s3::S3Options,
    policy: retry::RetryPolicy,
) -> BackendResult<Box<dyn Backend>> {
    if location.starts_with("s3:") {
        let s3 = s3::S3Backend::new(location, s3)?;
        return Ok(Box::new(retry::RetryBackend::new(s3, policy)));
    }
    let path = location.strip_prefix("local:").unwrap_or(location);
    Ok(Box::new(local::LocalBackend::new(path)))
}
