//! What every reconcile needs: the client, the event recorder, metrics, the mover image and the
//! stores of what Sluice owns.

use std::sync::Arc;

use kube::{
    Client, Resource,
    runtime::events::{Event, EventType, Recorder},
};

use crate::{cache::Owned, metrics::Metrics};

/// Shared state of both controllers.
pub struct Context {
    /// API client.
    pub client: Client,
    /// Publishes events on the objects being reconciled.
    pub recorder: Recorder,
    /// Exported metrics.
    pub metrics: Arc<Metrics>,
    /// Image of the mover Jobs.
    pub mover_image: String,
    /// The Jobs, Pods, PVCs and VolumeSnapshots Sluice made, as watched.
    pub owned: Owned,
}

/// The result every reconcile step returns; errors are API failures worth a retry.
pub type Result<T, E = kube::Error> = std::result::Result<T, E>;

impl Context {
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
