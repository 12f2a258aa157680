//! The error type of repository operations, classified so callers (the CLI's
//! exit codes, the operator's conditions) can tell what went wrong without
//! parsing messages. Messages say what failed; the program's name is the
//! caller's to add, since only the caller knows its commands. Where a message
//! says which repository operation helps, it names it as restic and
//! `sluice-mover` both spell it (`check`, `repair index`).

use std::path::PathBuf;

/// Everything that can go wrong in a repository operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No repository at this location (no `config` file).
    #[error("no repository at {location}")]
    RepositoryNotFound { location: String },

    /// A repository already exists where `init` was asked to create one.
    #[error("a repository already exists at {location}: refusing to overwrite it")]
    RepositoryExists { location: String },

    /// `config` is missing, but the location holds a repository's other files.
    #[error(
        "the repository at {location} has no config file, but it holds {found}: it lost its config (deleted, or not copied). Restore the config file from a copy of the repository; `init` will not create a new repository on top, because the data there would become unreadable behind a new master key"
    )]
    ConfigMissing { location: String, found: String },

    /// No key file opens with the given password.
    #[error("wrong password for repository {location}: no key file could be opened with it")]
    WrongPassword { location: String },

    /// Another process holds a conflicting lock.
    #[error("repository is locked by {holder}")]
    Locked { holder: String },

    /// No snapshot has an id starting with these digits.
    #[error("no snapshot with id {spec:?}")]
    SnapshotNotFound { spec: String },

    /// A snapshot asked to be written onto a device does not hold exactly one regular file.
    #[error("snapshot {snapshot} is not a volume image: {reason}")]
    NotAnImage { snapshot: String, reason: String },

    /// Stored data failed authentication, decoding or hashing.
    #[error("corrupt data in {what}: {reason}")]
    Corrupt { what: String, reason: String },

    /// A blob the index or a tree refers to is not in the index.
    #[error("blob {id} is missing from the repository index")]
    BlobMissing { id: crate::Id },

    /// The storage backend failed.
    #[error("{0}")]
    Backend(#[from] crate::backend::BackendError),

    /// A local file system operation failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The request itself is invalid (bad argument, bad snapshot id...).
    #[error("{0}")]
    Invalid(String),
}

/// Result alias for repository operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps an I/O error with the action and path it happened on.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }

    /// A corruption found in `what`.
    pub fn corrupt(what: impl Into<String>, reason: impl Into<String>) -> Error {
        Error::Corrupt {
            what: what.into(),
            reason: reason.into(),
        }
    }
}
