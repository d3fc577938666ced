//! The queueing half of a group commit, shared by the adapters: senders
//! submit appends and wait for their own outcome; a collector gathers
//! whatever is waiting into batches of at most one send per conversation
//! (a conversation's later sends wait for a later batch, so they keep their
//! order), and [`settle`] answers each send once the adapter has staged
//! and committed a batch. How a batch is stored is the adapter's business.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;

use chat_domain::{Conversation, ConversationId, NewMessage, TenantId};
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

/// What a batch finds a send's conversation by: its id and the send's
/// tenant, so that a send naming another tenant's conversation finds none.
pub type ConversationKey = (ConversationId, TenantId);

/// The key of `message`'s conversation.
pub fn key(message: &NewMessage) -> ConversationKey {
    (message.conversation_id, message.tenant)
}

/// The conversations a batch read (under its lock), by [`key`].
pub fn by_key(
    conversations: impl IntoIterator<Item = Conversation>,
) -> HashMap<ConversationKey, Conversation> {
    conversations
        .into_iter()
        .map(|conversation| ((conversation.id, conversation.tenant), conversation))
        .collect()
}

/// Whether `message` may go into a batch: plain messages only. Attachments
/// and a `reply_to` need checks that a batch does not make.
pub fn batchable(message: &NewMessage) -> bool {
    message.attachments.is_empty() && message.reply_to.is_none()
}

impl Submitter {
    /// Submits `message` and waits for its outcome; `None` when it is not
    /// [`batchable`] or the collector is gone: nothing was submitted, and
    /// the message is the caller's to append alone.
    pub async fn append(&self, message: &NewMessage, reopen: bool) -> Option<Outcome> {
        if !batchable(message) {
            return None;
        }
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

/// Answers the sends of `batch` from how its transaction went: once
/// `staged` (each send's outcome, in batch order), the transaction is
/// committed with `commit` and every send gets its outcome, or, when the
/// commit fails, that failure (the batch may or may not be stored, as for a
/// lone append whose commit fails). When staging failed, the transaction
/// was rolled back: the sends are returned, to be appended one by one so
/// that one bad send cannot fail the others.
pub async fn settle<Tx, Commit, E>(
    batch: Vec<Pending>,
    staged: anyhow::Result<(Tx, Vec<Outcome>)>,
    commit: impl FnOnce(Tx) -> Commit,
) -> Vec<Pending>
where
    Commit: Future<Output = Result<(), E>>,
    E: Into<anyhow::Error>,
{
    let size = batch.len();
    let (tx, outcomes) = match staged {
        Ok(staged) => staged,
        Err(err) => {
            tracing::warn!(error = ?err, size, "batch failed before commit: appending one by one");
            return batch;
        }
    };
    match commit(tx).await {
        Ok(()) => {
            tracing::trace!(size, "batch committed");
            for (pending, outcome) in batch.into_iter().zip(outcomes) {
                let _ = pending.done.send(outcome);
            }
        }
        Err(err) => {
            let err = err.into().context("committing a batch of appends");
            tracing::error!(error = ?err, size, "batch commit failed");
            for pending in batch {
                let _ = pending
                    .done
                    .send(Err(AppendError::Unexpected(anyhow::anyhow!(
                        "committing a batch of appends failed: {err:#}"
                    ))));
            }
        }
    }
    Vec::new()
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
