//! The in-process event bus: the default [`EventPublisher`] of a single
//! server node. Real-time transports subscribe to it.

use async_trait::async_trait;
use chat_app::{ChatEvent, EventPublisher};
use tokio::sync::broadcast;

/// Fans events out to in-process subscribers over a bounded broadcast
/// channel. A subscriber that falls more than `capacity` events behind sees
/// `Lagged` and must resynchronise from the database.
#[derive(Debug, Clone)]
pub struct InProcessBus {
    sender: broadcast::Sender<ChatEvent>,
}

impl InProcessBus {
    /// A bus keeping up to `capacity` events per subscriber.
    pub fn new(capacity: usize) -> Self {
        let (sender, _) = broadcast::channel(capacity.max(1));
        Self { sender }
    }

    /// A new subscription, starting with the next event.
    pub fn subscribe(&self) -> broadcast::Receiver<ChatEvent> {
        self.sender.subscribe()
    }
}

impl Default for InProcessBus {
    fn default() -> Self {
        Self::new(4096)
    }
}

#[async_trait]
impl EventPublisher for InProcessBus {
    async fn publish(&self, event: ChatEvent) {
        // No subscriber is not an error: nobody is connected.
        let _ = self.sender.send(event);
    }
}
