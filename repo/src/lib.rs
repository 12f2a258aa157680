//! sluice-repo: a repository engine that reads and writes restic's repository
//! format, version 2, byte for byte.
//!
//! The crate knows nothing of Kubernetes. Its modules follow restic's
//! `internal/` packages, one idea each, so "how is a pack laid out" is found
//! by file name alone.

pub mod backend;
pub mod chunker;
pub mod crypto;
pub mod error;
pub mod forget;
pub mod id;

pub use error::{Error, Result};
pub use id::Id;
