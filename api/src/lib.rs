//! Sluice's Kubernetes API.
//!
//! Two namespaced kinds in `sluice.dev/v1alpha1`: [`ReplicationSource`] backs a PVC up into a
//! restic repository, [`ReplicationDestination`] restores one into a PVC. Field names follow
//! VolSync's restic mover wherever the meaning is the same, so its users feel at home; the schema
//! is stricter (enums, minimums, patterns and CEL rules), so the API server rejects bad specs.
//!
//! Besides the types, the crate holds the names the operator, the mover and users share:
//! condition types and reasons ([`conditions`]), labels ([`labels`]), the environment a mover Job
//! is configured by ([`mover_env`]) and the JSON result a mover Pod leaves in its termination
//! message ([`mover_result`]). Those modules need no
//! Kubernetes crates: with `default-features = false` (no `crd` feature) the crate is cheap enough
//! for `sluice-mover` to depend on.

pub mod conditions;
pub mod labels;
pub mod mover_env;
pub mod mover_result;

#[cfg(feature = "crd")]
pub mod crd_yaml;
#[cfg(feature = "crd")]
mod destination;
#[cfg(feature = "crd")]
mod mover;
#[cfg(feature = "crd")]
mod source;
#[cfg(feature = "crd")]
mod sync;
#[cfg(feature = "crd")]
mod trigger;
#[cfg(feature = "crd")]
mod volume;

#[cfg(feature = "crd")]
pub use destination::{
    OnMissingSnapshot, ReplicationDestination, ReplicationDestinationSpec,
    ReplicationDestinationStatus, ResticDestinationSpec,
};
#[cfg(feature = "crd")]
pub use mover::{CustomCa, MoverConfig, MoverOutcome, MoverStatus};
#[cfg(feature = "crd")]
pub use source::{
    ReplicationSource, ReplicationSourceSpec, ReplicationSourceStatus, ResticSourceSpec,
    ResticSourceStatus, RetainPolicy, Verification, VerifySpec,
};
#[cfg(feature = "crd")]
pub use sync::{LastSync, RestoredSnapshot, SyncAction, SyncPlan, SyncSpec, SyncStatus};
#[cfg(feature = "crd")]
pub use trigger::{JITTER_PATTERN, SCHEDULE_PATTERN, Trigger};
#[cfg(feature = "crd")]
pub use volume::{AccessMode, CopyMethod, DestinationCopyMethod, VolumeMode};
