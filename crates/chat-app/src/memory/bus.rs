//! [`InProcessBus`]: the event bus of a single node, and
//! [`broadcast_stream`], the building block of buses over a broadcast
//! channel.

use async_trait::async_trait;
use futures::StreamExt;
use tokio::sync::broadcast;

use crate::ports::{BusError, BusEvent, ChatEvent, EventBus, EventStream};

/// The single-node bus: a bounded in-memory broadcast channel.
#[derive(Debug, Clone)]
pub struct InProcessBus {
    sender: broadcast::Sender<ChatEvent>,
}

impl InProcessBus {
    /// A bus that keeps up to `capacity` undelivered events per subscriber;
    /// a subscriber further behind sees [`BusEvent::Lagged`].
    pub fn new(capacity: usize) -> Self {
        let (sender, _) = broadcast::channel(capacity.max(1));
        Self { sender }
    }
}

impl Default for InProcessBus {
    fn default() -> Self {
        Self::new(65_536)
    }
}

/// Turns a broadcast receiver into an [`EventStream`], surfacing lag.
pub fn broadcast_stream(receiver: broadcast::Receiver<ChatEvent>) -> EventStream {
    futures::stream::unfold(receiver, |mut receiver| async move {
        match receiver.recv().await {
            Ok(event) => Some((BusEvent::Event(event), receiver)),
            Err(broadcast::error::RecvError::Lagged(n)) => Some((BusEvent::Lagged(n), receiver)),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    })
    .boxed()
}

#[async_trait]
impl EventBus for InProcessBus {
    async fn publish(&self, event: &ChatEvent) -> Result<(), BusError> {
        // No subscriber only means nobody is connected.
        let _ = self.sender.send(event.clone());
        Ok(())
    }

    fn subscribe(&self) -> EventStream {
        broadcast_stream(self.sender.subscribe())
    }
}

#[cfg(test)]
mod tests {
    use chat_domain::{Presence, PresenceStatus, Sender, TenantId};

    use super::*;

    #[tokio::test]
    async fn the_in_process_bus_reaches_every_subscriber_and_reports_lag() {
        let bus = InProcessBus::new(2);
        let mut first = bus.subscribe();
        let mut second = bus.subscribe();
        let event = ChatEvent::PresenceChanged {
            tenant: TenantId::new_v4(),
            presence: Presence {
                user: Sender::System,
                status: PresenceStatus::Online,
                last_seen_at: None,
            },
        };
        for _ in 0..3 {
            bus.publish(&event).await.expect("published");
        }
        assert_eq!(first.next().await, Some(BusEvent::Lagged(1)));
        assert_eq!(first.next().await, Some(BusEvent::Event(event.clone())));
        assert_eq!(second.next().await, Some(BusEvent::Lagged(1)));
    }
}
