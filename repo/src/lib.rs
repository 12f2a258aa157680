//! sluice-repo: a repository engine that reads and writes restic's repository
//! format, version 2, byte for byte.
//!
//! The crate knows nothing of Kubernetes. Its modules follow restic's
//! `internal/` packages, one idea each, so "how is a pack laid out" is found
//! by file name alone.

pub mod archiver;
pub mod backend;
pub mod browse;
pub mod check;
pub mod chunker;
mod compression;
pub mod config;
pub mod crypto;
pub mod error;
pub mod exclude;
pub mod forget;
mod handoff;
pub mod host;
pub mod id;
mod id_table;
pub mod index;
pub mod key;
pub mod lock;
pub mod pack;
pub mod packer;
pub mod prune;
pub mod repair;
pub mod repository;
pub mod restore_mark;
pub mod restorer;
pub mod safe_dir;
pub mod snapshot;
pub mod time;
pub mod tree;

pub use error::{Error, Result};
pub use id::Id;
pub use repository::Repository;
