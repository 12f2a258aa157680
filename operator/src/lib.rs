//! Sluice's controllers and the pure logic they are built from.
//!
//! Both controllers run one state machine: [`reconcile`] observes an object and what it owns,
//! [`decide`] (pure) says what to do next, and [`reconcile`] applies it. The pure modules
//! ([`decide`], [`schedule`], [`spread`], [`plan`], [`job`], [`status`], [`backoff`], [`volume`],
//! [`queue`], [`repository`]) decide what should exist; the controllers ([`source`], [`destination`]) supply what differs between a
//! backup and a restore, so most behaviour is tested without an API server.

pub mod backoff;
pub mod breaker;
pub mod cache;
pub mod context;
pub mod controller;
pub mod decide;
pub mod destination;
pub mod http;
pub mod job;
pub mod leader;
pub mod metrics;
pub mod mover;
pub mod mover_image;
pub mod plan;
pub mod populator;
pub mod queue;
pub mod reconcile;
pub mod repository;
pub mod schedule;
pub mod secret;
pub mod source;
pub mod spread;
pub mod status;
pub mod traffic;
pub mod unseen;
pub mod volume;

#[cfg(test)]
mod testing;
