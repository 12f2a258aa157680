//! Local, real components for Sluice's end-to-end tests and demo.
//!
//! Nothing here is a mock: [`minio::MinIo`] runs the MinIO server,
//! [`cluster::Cluster`] runs etcd, kube-apiserver and
//! kube-controller-manager, and restic is the real CLI. The one stand-in is
//! [`node::NodeEmulator`], which plays scheduler, kubelet and CSI driver. `e2e/tools.sh` builds
//! them from their Go modules at pinned versions into `~/.cache/sluice/bin`;
//! [`tools::Tool`] finds them there (or where `SLUICE_*` variables point).
//!
//! Every process started here dies with its owner: on drop, during a panic,
//! and when the test process itself is killed.

pub mod cluster;
pub mod minio;
pub mod node;
pub mod pki;
pub mod probe;
pub mod process;
pub mod stack;
pub mod tools;

pub use cluster::Cluster;
pub use minio::MinIo;
pub use node::NodeEmulator;
pub use stack::Stack;
pub use tools::Tool;
