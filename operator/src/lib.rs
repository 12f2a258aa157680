//! Sluice's controllers and the pure logic they are built from.
//!
//! The pure modules ([`schedule`], [`plan`], [`job`], [`status`], [`backoff`], [`volume`]) decide
//! what should exist; the controllers only compare that with the cluster and apply the
//! difference, so most behaviour is tested without an API server.

pub mod backoff;
pub mod context;
pub mod controller;
pub mod destination;
pub mod http;
pub mod job;
pub mod leader;
pub mod metrics;
pub mod mover;
pub mod plan;
pub mod schedule;
pub mod secret;
pub mod source;
pub mod status;
pub mod volume;
