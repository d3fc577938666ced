//! The queueing half of a group commit, shared by the adapters: senders
//! submit appends and wait for their own outcome; a collector gathers
//! whatever is waiting into batches of at most one send per conversation
//! (a conversation's later sends wait for a later batch, so they keep their
//! order). How a batch is stored is the adapter's business.

use std::collections::{HashSet, VecDeque};

use chat_domain::{ConversationId, NewMessage};
use tokio::sync::{mpsc, oneshot};

use crate::ports::{AppendError, AppendOutcome};

/// The outcome of one append.
pub type Outcome = Result<AppendOutcome, AppendError>;

/// One submitted append, waiting for its batch.
#[derive(Debug)]
pub struct Pending {
    /// The message to store.
    pub message: NewMessage,
    /// Reopen the conversation with it.
    pub reopen: bool,
    /// Where its outcome goes.
    pub done: oneshot::Sender<Outcome>,
}

/// The submitting side: cheap to share, one per store.
#[derive(Debug)]
pub struct Submitter {
    queue: mpsc::Sender<Pending>,
}

/// A submitter and the collector fed by it; `capacity` sends may wait
/// before submitters wait too.
pub fn channel(capacity: usize, max_batch: usize) -> (Submitter, Collector) {
    let (queue, waiting) = mpsc::channel(capacity);
    (
        Submitter { queue },
        Collector {
            waiting,
            carried: VecDeque::new(),
            max_batch: max_batch.max(1),
        },
    )
}

impl Submitter {
    /// Submits `message` and waits for its outcome; `None` when the
    /// collector is gone and nothing was submitted.
    pub async fn append(&self, message: &NewMessage, reopen: bool) -> Option<Outcome> {
        let (done, answer) = oneshot::channel();
        self.queue
            .send(Pending {
                message: message.clone(),
                reopen,
                done,
            })
            .await
            .ok()?;
        Some(answer.await.unwrap_or_else(|_| {
            Err(AppendError::Unexpected(anyhow::anyhow!(
                "the group commit stopped before answering; the send may or may not be stored"
            )))
        }))
    }
}

/// The collecting side, owned by the adapter's collector task.
#[derive(Debug)]
pub struct Collector {
    waiting: mpsc::Receiver<Pending>,
    /// Sends not taken into a batch yet, in arrival order.
    carried: VecDeque<Pending>,
    max_batch: usize,
}

impl Collector {
    /// Waits until at least one send is ready; `false` once every
    /// [`Submitter`] is gone and nothing is left.
    pub async fn ready(&mut self) -> bool {
        if !self.carried.is_empty() {
            return true;
        }
        match self.waiting.recv().await {
            Some(first) => {
                self.carried.push_back(first);
                true
            }
            None => false,
        }
    }

    /// The next batch: everything waiting now, up to the maximum, at most
    /// one send per conversation. The rest stays, in order, for later
    /// batches.
    pub fn take_batch(&mut self) -> Vec<Pending> {
        while self.carried.len() < self.max_batch {
            match self.waiting.try_recv() {
                Ok(pending) => self.carried.push_back(pending),
                Err(_) => break,
            }
        }
        let mut batch = Vec::with_capacity(self.carried.len().min(self.max_batch));
        let mut taken: HashSet<ConversationId> = HashSet::new();
        let mut later = VecDeque::new();
        for pending in self.carried.drain(..) {
            let conversation = pending.message.conversation_id;
            // Once a conversation is deferred, its later sends are too.
            if batch.len() < self.max_batch && taken.insert(conversation) {
                batch.push(pending);
            } else {
                taken.insert(conversation);
                later.push_back(pending);
            }
        }
        self.carried = later;
        batch
    }
}

#[cfg(test)]
mod tests {
    use chat_domain::{MessageBody, MessageId, Sender, TenantId};
    use chrono::DateTime;

    use super::*;

    fn message(conversation: ConversationId) -> NewMessage {
        NewMessage {
            id: MessageId::new_v7(),
            tenant: TenantId::new_v4(),
            conversation_id: conversation,
            sender: Sender::System,
            body: Some(MessageBody::parse("x").unwrap()),
            attachments: Vec::new(),
            reply_to: None,
            client_msg_id: None,
            created_at: DateTime::from_timestamp(0, 0).unwrap(),
        }
    }

    #[tokio::test]
    async fn batches_hold_one_send_per_conversation_and_keep_order() {
        let (submitter, mut collector) = channel(16, 3);
        let (a, b, c, d) = (
            ConversationId::new_v7(),
            ConversationId::new_v7(),
            ConversationId::new_v7(),
            ConversationId::new_v7(),
        );
        let order = [a, a, b, c, d];
        let mut answers = Vec::new();
        for conversation in order {
            let (done, answer) = oneshot::channel();
            submitter
                .queue
                .send(Pending {
                    message: message(conversation),
                    reopen: false,
                    done,
                })
                .await
                .unwrap();
            answers.push(answer);
        }
        assert!(collector.ready().await);
        let first: Vec<_> = collector
            .take_batch()
            .iter()
            .map(|p| p.message.conversation_id)
            .collect();
        // At most three are gathered (a, a, b); a's second send waits.
        assert_eq!(first, vec![a, b]);
        let second: Vec<_> = collector
            .take_batch()
            .iter()
            .map(|p| p.message.conversation_id)
            .collect();
        assert_eq!(second, vec![a, c, d], "the deferred send goes first");
        drop(submitter);
        assert!(!collector.ready().await);
    }
}
