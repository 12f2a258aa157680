//! What every crate's tests share, without a Kubernetes client: the pinned
//! component binaries ([`tools::Tool`]), a real MinIO ([`minio::MinIo`]), a real
//! Prometheus ([`prometheus::Prometheus`]),
//! certificates ([`pki::Pki`]), an OpenID issuer ([`oidc::OidcIssuer`]), child processes that die with their owner
//! ([`process::Daemon`]), deterministic data ([`data`]) and exact tree
//! comparison ([`tree`]).
//!
//! The cluster harness (control plane, real node, Sluice installed) lives in
//! `sluice-e2e`, which builds on this crate; `cargo test -p sluice-repo`
//! compiles only this one.

pub mod data;
pub mod minio;
pub mod oidc;
pub mod pki;
pub mod probe;
pub mod process;
pub mod prometheus;
pub mod tools;
pub mod tree;

pub use minio::MinIo;
pub use prometheus::Prometheus;
pub use tools::Tool;
