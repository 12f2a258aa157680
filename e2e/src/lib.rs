//! The local cluster Sluice's end-to-end tests, `make demo` and
//! `make cluster` run on: a real control plane ([`cluster`]), a real node
//! with containerd, the kubelet, kube-proxy and kube-scheduler ([`node`]) on
//! a bridge of the test's own ([`host`]), real CSI snapshots with the CSI
//! test driver, the one stand-in ([`storage`]), images built here
//! ([`images`]), and Sluice installed as users install it ([`stack`]);
//! [`kstatus`] reads objects as kstatus-based tools do, [`argocd`] as Argo CD's
//! health checks do, and
//! [`operator_bench`] is the arithmetic of `make bench-operator`. The
//! pieces every crate's tests share (tools, MinIO, certificates,
//! processes) are in `sluice-testkit`.
//!
//! Every process started here dies with its owner: on drop, during a panic,
//! and when the test process itself is killed; what a killed run leaves on
//! the machine is removed by the next one.

pub mod argocd;
pub mod cluster;
pub mod host;
pub mod images;
pub mod job_bench;
pub mod kstatus;
pub mod node;
pub mod operator_bench;
pub mod signals;
pub mod stack;
pub mod storage;

pub use cluster::Cluster;
pub use stack::Stack;
