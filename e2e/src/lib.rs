//! The local cluster Sluice's end-to-end tests and demo run on.
//!
//! Nothing here is a mock: [`cluster::Cluster`] runs etcd, kube-apiserver and
//! kube-controller-manager, [`node::NodeEmulator`] (the one stand-in) plays
//! scheduler, kubelet and CSI driver, and [`stack::Stack`] installs Sluice on
//! them. The pieces every crate's tests share (tools, MinIO, certificates,
//! processes) are in `sluice-testkit`.
//!
//! Every process started here dies with its owner: on drop, during a panic,
//! and when the test process itself is killed.

pub mod cluster;
pub mod node;
pub mod stack;

pub use cluster::Cluster;
pub use node::NodeEmulator;
pub use stack::Stack;
