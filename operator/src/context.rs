//! What every reconcile needs: the client, the event recorder, metrics, the mover defaults, the
//! stores of what Sluice owns, its status writes not yet watched, the repositories' queues and
//! circuit breakers.

use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::{
    Client, Resource,
    runtime::events::{Event, EventType, Recorder},
};

use sluice_api::{ReplicationDestination, ReplicationSource};

use crate::{
    breaker::Breakers,
    cache::Owned,
    controller::Wake,
    job::MoverDefaults,
    metrics::Metrics,
    queue::{Queues, Syncer},
    unseen::Unseen,
};

/// Shared state of both controllers.
pub struct Context {
    /// API client.
    pub client: Client,
    /// Publishes events on the objects being reconciled.
    pub recorder: Recorder,
    /// Exported metrics.
    pub metrics: Arc<Metrics>,
    /// Image and operator-wide defaults of the mover Jobs.
    pub mover: MoverDefaults,
    /// The Jobs, Pods, PVCs and VolumeSnapshots Sluice made, as watched.
    pub owned: Owned,
    /// Each kind's objects as Sluice's status writes left them, until the controller's watch
    /// delivers them.
    pub written: Written,
    /// Every repository's running and waiting syncs; held only while deciding, never across an
    /// await.
    pub queues: Mutex<Queues>,
    /// The circuit breakers of repositories found unreachable; held only while deciding.
    pub breakers: Mutex<Breakers>,
    /// Wakes the reconcile of a sync its repository's queue lets start.
    pub wake: Wake,
}

/// The status writes of each kind that its controller's watch has not delivered yet.
#[derive(Default)]
pub struct Written {
    /// ReplicationSources.
    pub sources: Unseen<ReplicationSource>,
    /// ReplicationDestinations.
    pub destinations: Unseen<ReplicationDestination>,
    /// Users' PVCs as the volume populator's condition and annotation writes left them.
    pub claims: Unseen<PersistentVolumeClaim>,
}

/// The result every reconcile step returns; errors are API failures worth a retry.
pub type Result<T, E = kube::Error> = std::result::Result<T, E>;

impl Context {
    /// The repositories' queues; a reconcile that panicked while holding them left them
    /// consistent (every change is one call), so a poisoned lock is taken as is.
    pub fn queues(&self) -> std::sync::MutexGuard<'_, Queues> {
        self.queues
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The repositories' circuit breakers, taken like [`Context::queues`].
    pub fn breakers(&self) -> std::sync::MutexGuard<'_, Breakers> {
        self.breakers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sets the gauge of open circuit breakers after one opened or closed.
    pub fn publish_breakers(&self) {
        let open = self.breakers().open_repositories();
        self.metrics.repositories_unavailable(&open);
    }

    /// `syncer` neither runs nor waits any more: its place goes to the next in line, whose
    /// reconciles are woken, and the repositories' gauges are updated.
    pub fn release(&self, syncer: &Syncer) {
        let released = {
            let mut queues = self.queues();
            queues.release(syncer).map(|woken| (woken, queues.loads()))
        };
        if let Some((woken, loads)) = released {
            self.metrics.repository_loads(&loads);
            self.wake.wake(&woken);
        }
    }

    /// Publishes an event on `object`; a failure to record an event is logged, never fatal.
    pub async fn event<K>(
        &self,
        object: &K,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) where
        K: Resource<DynamicType = ()>,
    {
        let event = Event {
            type_,
            reason: reason.to_string(),
            note: Some(note),
            action: action.to_string(),
            secondary: None,
        };
        if let Err(error) = self.recorder.publish(&event, &object.object_ref(&())).await {
            tracing::warn!(%error, reason, "cannot record event");
        }
    }
}
