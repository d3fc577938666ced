//! For store implementers only: the parts of
//! [`MessageRepository::append`](crate::MessageRepository::append) that do
//! not depend on the database, written once for every SQL store. Hosts that
//! call [`ChatService`](crate::ChatService) never need this module; the
//! project's PostgreSQL and SQLite adapters use it, and so may a host's own
//! store.
//!
//! # One append path
//!
//! A store appends [`Append`]s in batches, and a lone send is a batch of one:
//! the same code stores a send that comes through the group commit and one
//! that goes alone (attachments, a `reply_to`, the fallback of a failed
//! batch). The steps of a batch, in one transaction, carry the same names in
//! every adapter:
//!
//! 1. `load_state`: under the batch's lock, read its conversations, the
//!    originals of the `client_msg_id`s already stored
//!    ([`State::keyed`] says which to look up) and which reply targets exist
//!    ([`State::replying`]), into a [`State`].
//! 2. [`assign`] (pure, here): each send is refused, replayed, or given the
//!    next `seq` of its conversation, which it leaves as
//!    [`Assigned::fresh`] says.
//! 3. `insert_messages`, `link_attachments`, `bump_conversations`,
//!    `advance_senders`: write the fresh sends, their conversations and
//!    their senders' read markers (a store may run several of these steps
//!    as one statement).
//! 4. Commit when anything was written ([`Assigned::writes`]), roll back
//!    otherwise, and answer with [`Assigned::into_outcomes`], or with a
//!    [`BatchError`].
//!
//! # Group commit
//!
//! Senders [`Submitter::submit`] appends and wait for their own outcome; a
//! [`Collector`] gathers whatever is waiting into [`Batch`]es of at most one
//! send per conversation (a conversation's later sends wait for a later
//! batch, so they keep their order), and [`Batch::settle`] answers each send
//! once the store has appended the batch: after the commit, never before.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use chat_domain::{
    Conversation, ConversationId, Message, MessageId, NewMessage, Seq, StaffUserId, SystemNotice,
    TenantId,
};
use tokio::sync::{mpsc, oneshot};

use crate::ports::{AppendError, AppendOutcome};

/// The outcome of one append.
pub type Outcome = Result<AppendOutcome, AppendError>;

/// One append, as [`MessageRepository::append`](crate::MessageRepository::append)
/// was asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Append {
    /// The message to store, its `created_at` already cut to the store's
    /// precision: the outcome carries it as given.
    pub message: NewMessage,
    /// Reopen the conversation with it.
    pub reopen: bool,
}

/// What a batch finds a send's conversation by: its id and the send's
/// tenant, so that a send naming another tenant's conversation finds none.
pub type ConversationKey = (ConversationId, TenantId);

/// The key of `message`'s conversation.
pub fn key(message: &NewMessage) -> ConversationKey {
    (message.conversation_id, message.tenant)
}

/// Whether `message` may go through the group commit: plain messages only.
/// Attachments are linked one statement at a time and refuse a send on
/// their own, which would fail a whole batch; a `reply_to` stays alone with
/// them, as it always has.
pub fn batchable(message: &NewMessage) -> bool {
    message.attachments.is_empty() && message.reply_to.is_none()
}

/// What `load_state` read under the batch's lock.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    /// The batch's conversations that exist, by [`key`].
    pub conversations: HashMap<ConversationKey, Conversation>,
    /// The messages already stored under a send's `client_msg_id` (same
    /// sender, same conversation), by the send's position in the batch.
    pub originals: HashMap<usize, Message>,
    /// The positions of the sends whose `reply_to` names a message of their
    /// conversation.
    pub reply_targets: HashSet<usize>,
}

impl State {
    /// A state that has read `conversations` (the rows found for the
    /// batch's conversation ids, of any tenant) and nothing else yet.
    pub fn new(conversations: impl IntoIterator<Item = Conversation>) -> Self {
        Self {
            conversations: conversations
                .into_iter()
                .map(|conversation| ((conversation.id, conversation.tenant), conversation))
                .collect(),
            ..Self::default()
        }
    }

    /// The positions of the sends of `batch` whose `client_msg_id` must be
    /// looked up: those with one, whose conversation exists.
    pub fn keyed(&self, batch: &[Append]) -> Vec<usize> {
        self.positions(batch, |append| append.message.client_msg_id.is_some())
    }

    /// The positions of the sends of `batch` whose `reply_to` must be
    /// checked: those with one, whose conversation exists, that are not
    /// replays (ask after the originals are in).
    pub fn replying(&self, batch: &[Append]) -> Vec<usize> {
        self.positions(batch, |append| append.message.reply_to.is_some())
            .into_iter()
            .filter(|position| !self.originals.contains_key(position))
            .collect()
    }

    fn positions(&self, batch: &[Append], wanted: impl Fn(&Append) -> bool) -> Vec<usize> {
        batch
            .iter()
            .enumerate()
            .filter(|(_, append)| {
                wanted(append) && self.conversations.contains_key(&key(&append.message))
            })
            .map(|(position, _)| position)
            .collect()
    }
}

/// A send that [`assign`] gave a `seq`: what the store writes for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fresh {
    /// Its position in the batch.
    pub position: usize,
    /// The message as stored; `link_attachments` fills in its attachments.
    pub message: Message,
    /// Its conversation as this send leaves it: `last_seq` is the message's
    /// `seq`, `updated_at` and `last_activity_at` its `created_at`, and the
    /// status open when `reopened`.
    pub conversation: Conversation,
    /// Whether this send reopens its conversation.
    pub reopened: bool,
}

impl Fresh {
    /// The message's `seq`.
    pub fn seq(&self) -> Seq {
        self.message.seq
    }
}

/// The sends of a batch, each refused, replayed or [`Fresh`].
#[derive(Debug)]
pub struct Assigned {
    /// Each send's outcome in batch order; `None` for a fresh one, answered
    /// from `fresh`.
    answered: Vec<Option<Outcome>>,
    fresh: Vec<Fresh>,
}

impl Assigned {
    /// The sends to write, in batch order.
    pub fn fresh(&self) -> &[Fresh] {
        &self.fresh
    }

    /// The sends to write, to fill in what only writing tells (their
    /// attachments).
    pub fn fresh_mut(&mut self) -> &mut [Fresh] {
        &mut self.fresh
    }

    /// Whether the batch writes anything: otherwise its transaction is
    /// rolled back (a replay or a refusal stores nothing).
    pub fn writes(&self) -> bool {
        !self.fresh.is_empty()
    }

    /// Each send's outcome, in batch order; for the store to hand out once
    /// the batch is committed.
    pub fn into_outcomes(self) -> Vec<Outcome> {
        let mut fresh = self.fresh.into_iter();
        self.answered
            .into_iter()
            .map(|answered| match answered {
                Some(outcome) => outcome,
                None => {
                    let Some(fresh) = fresh.next() else {
                        unreachable!("one fresh send per unanswered position")
                    };
                    Ok(AppendOutcome::Created {
                        message: fresh.message,
                        conversation: fresh.conversation,
                        reopened: fresh.reopened,
                    })
                }
            })
            .collect()
    }
}

/// Decides each send of `batch` from what `load_state` read, in batch order
/// and as a lone append would: a missing conversation (or another tenant's)
/// refuses it, a stored `client_msg_id` replays its original, a missing
/// reply target refuses it; any other send becomes the next message of its
/// conversation.
///
/// # Errors
/// When two sends of `batch` share a conversation: a batch holds at most
/// one send per conversation (the [`Collector`] sees to it), so that its
/// statements write each conversation and read marker once.
pub fn assign(batch: &[Append], mut state: State) -> anyhow::Result<Assigned> {
    let mut seen = HashSet::with_capacity(batch.len());
    let mut answered = Vec::with_capacity(batch.len());
    let mut fresh = Vec::with_capacity(batch.len());
    for (position, append) in batch.iter().enumerate() {
        let new = &append.message;
        if !seen.insert(key(new)) {
            anyhow::bail!(
                "a batch holds two sends of conversation {}",
                new.conversation_id
            );
        }
        let Some(mut conversation) = state.conversations.remove(&key(new)) else {
            answered.push(Some(Err(AppendError::ConversationNotFound)));
            continue;
        };
        if let Some(original) = state.originals.remove(&position) {
            answered.push(Some(Ok(AppendOutcome::Replayed(original))));
            continue;
        }
        if new.reply_to.is_some() && !state.reply_targets.contains(&position) {
            answered.push(Some(Err(AppendError::ReplyTargetNotFound)));
            continue;
        }
        let seq = conversation.last_seq.next();
        let message = new.clone().into_message(seq, Vec::new());
        let reopened = conversation.record_message(seq, message.created_at, append.reopen);
        answered.push(None);
        fresh.push(Fresh {
            position,
            message,
            conversation,
            reopened,
        });
    }
    Ok(Assigned { answered, fresh })
}

/// Why a batch stored nothing, or may not have.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// A step before the commit failed: the transaction was rolled back and
    /// nothing of the batch is stored.
    #[error(transparent)]
    Staging(#[from] StageError),
    /// The commit failed: the batch may or may not be stored (as for any
    /// transaction whose commit fails).
    #[error("committing the batch")]
    Commit(#[source] anyhow::Error),
}

/// Why a step before the commit failed.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// A send's own refusal, found while writing it (an attachment that is
    /// not the sender's to send): that send fails, and alone it stores
    /// nothing.
    #[error(transparent)]
    Refused(AppendError),
    /// The insert hit the `client_msg_id` index: a writer that did not wait
    /// for the batch's lock (another process on the same file) stored one of
    /// the batch's keys first. Alone, the send is a replay of that message.
    #[error("a client_msg_id was stored meanwhile")]
    ClientMsgIdTaken(#[source] anyhow::Error),
    /// Any other failure.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<AppendError> for StageError {
    fn from(err: AppendError) -> Self {
        match err {
            AppendError::Unexpected(err) => Self::Unexpected(err),
            refusal => Self::Refused(refusal),
        }
    }
}

impl BatchError {
    /// The outcome of a batch of one that failed so: a refusal is the
    /// send's, anything else unexpected. A [`StageError::ClientMsgIdTaken`]
    /// is `Err(self)` back: the store looks the original up.
    ///
    /// # Errors
    /// `self` when it is a taken `client_msg_id`.
    pub fn into_lone_error(self) -> Result<AppendError, anyhow::Error> {
        match self {
            Self::Staging(StageError::Refused(err)) => Ok(err),
            Self::Staging(StageError::ClientMsgIdTaken(err)) => Err(err),
            Self::Staging(StageError::Unexpected(err)) => Ok(AppendError::Unexpected(err)),
            Self::Commit(err) => Ok(AppendError::Unexpected(
                err.context("committing the append"),
            )),
        }
    }
}

/// One failure handed to every send of a batch: its sources are the
/// failure's own chain.
#[derive(Debug, Clone)]
struct SharedFailure(Arc<anyhow::Error>);

impl std::fmt::Display for SharedFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the batch's commit failed")
    }
}

impl std::error::Error for SharedFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        let inner: &(dyn std::error::Error + Send + Sync + 'static) = (*self.0).as_ref();
        Some(inner)
    }
}

/// Where the outcome of one submitted send goes.
#[derive(Debug)]
pub struct Answer(oneshot::Sender<Outcome>);

impl Answer {
    /// Hands `outcome` to the waiting sender (gone senders are fine: their
    /// send is stored or not all the same).
    pub fn send(self, outcome: Outcome) {
        let _ = self.0.send(outcome);
    }
}

/// One submitted send, waiting for its batch.
#[derive(Debug)]
struct Pending {
    append: Append,
    answer: Answer,
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
    /// Submits `append` and waits for its outcome. `Err(append)` back when it
    /// is not [`batchable`] or the collector is gone: nothing was submitted,
    /// and the send is the caller's to append alone.
    ///
    /// # Errors
    /// The append back, as said.
    pub async fn submit(&self, append: Append) -> Result<Outcome, Append> {
        if !batchable(&append.message) {
            return Err(append);
        }
        let (done, answer) = oneshot::channel();
        self.queue
            .send(Pending {
                append,
                answer: Answer(done),
            })
            .await
            .map_err(|refused| refused.0.append)?;
        Ok(answer.await.unwrap_or_else(|_| {
            Err(AppendError::Unexpected(anyhow::anyhow!(
                "the group commit stopped before answering; the send may or may not be stored"
            )))
        }))
    }
}

/// Sends taken together by [`Collector::take_batch`]: at most one per
/// conversation, in arrival order.
#[derive(Debug)]
pub struct Batch {
    appends: Vec<Append>,
    answers: Vec<Answer>,
}

impl Batch {
    /// The sends, to append.
    pub fn appends(&self) -> &[Append] {
        &self.appends
    }

    /// How many sends it holds.
    pub fn len(&self) -> usize {
        self.appends.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.appends.is_empty()
    }

    /// Answers the sends from how the batch's append went: each its own
    /// outcome once committed; every one the failure when the commit failed
    /// (the batch may or may not be stored, as for a lone append whose
    /// commit fails). When a step before the commit failed, nothing is
    /// stored and nothing answered: the batch comes back, for its sends to
    /// be appended alone, one by one, so that one bad send cannot fail the
    /// others.
    pub fn settle(self, appended: Result<Vec<Outcome>, BatchError>) -> Option<Self> {
        let size = self.len();
        match appended {
            Ok(outcomes) => {
                debug_assert_eq!(outcomes.len(), size, "one outcome per send");
                tracing::trace!(size, "batch committed");
                for (answer, outcome) in self.answers.into_iter().zip(outcomes) {
                    answer.send(outcome);
                }
                None
            }
            Err(BatchError::Staging(err)) => {
                tracing::warn!(error = ?err, size, "batch failed before commit: appending one by one");
                Some(self)
            }
            Err(BatchError::Commit(err)) => {
                tracing::error!(error = ?err, size, "batch commit failed");
                // Every send gets the whole cause, so that callers can tell
                // a full disk or a lost connection from a bug.
                let err = SharedFailure(Arc::new(err));
                for answer in self.answers {
                    answer.send(Err(AppendError::Unexpected(
                        anyhow::Error::new(err.clone())
                            .context("committing a batch of appends failed"),
                    )));
                }
                None
            }
        }
    }
}

impl IntoIterator for Batch {
    type Item = (Append, Answer);
    type IntoIter = std::iter::Zip<std::vec::IntoIter<Append>, std::vec::IntoIter<Answer>>;

    fn into_iter(self) -> Self::IntoIter {
        self.appends.into_iter().zip(self.answers)
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
    pub fn take_batch(&mut self) -> Batch {
        while self.carried.len() < self.max_batch {
            match self.waiting.try_recv() {
                Ok(pending) => self.carried.push_back(pending),
                Err(_) => break,
            }
        }
        let capacity = self.carried.len().min(self.max_batch);
        let mut batch = Batch {
            appends: Vec::with_capacity(capacity),
            answers: Vec::with_capacity(capacity),
        };
        let mut taken: HashSet<ConversationId> = HashSet::new();
        let mut later = VecDeque::new();
        for pending in self.carried.drain(..) {
            let conversation = pending.append.message.conversation_id;
            // Once a conversation is deferred, its later sends are too.
            if batch.len() < self.max_batch && taken.insert(conversation) {
                batch.appends.push(pending.append);
                batch.answers.push(pending.answer);
            } else {
                taken.insert(conversation);
                later.push_back(pending);
            }
        }
        self.carried = later;
        batch
    }
}

/// Each of `users` once, in the order given, leaving out `except`: the
/// people a membership change is about (a channel's owner is not among its
/// added members).
pub fn distinct_users(users: &[StaffUserId], except: Option<StaffUserId>) -> Vec<StaffUserId> {
    let mut seen: HashSet<StaffUserId> = except.into_iter().collect();
    users.iter().copied().filter(|u| seen.insert(*u)).collect()
}

/// The messages `notices` become when posted to `conversation` at `at`:
/// from the system, with the seqs after its `last_seq`, in order (`at`
/// already cut to what the store keeps).
pub fn notice_messages(
    conversation: &Conversation,
    notices: &[(MessageId, SystemNotice)],
    at: chrono::DateTime<chrono::Utc>,
) -> Vec<Message> {
    let mut seq = conversation.last_seq;
    notices
        .iter()
        .map(|&(id, notice)| {
            seq = seq.next();
            Message {
                id,
                tenant: conversation.tenant,
                conversation_id: conversation.id,
                seq,
                sender: chat_domain::Sender::System,
                body: None,
                attachments: Vec::new(),
                reply_to: None,
                client_msg_id: None,
                created_at: at,
                edited_at: None,
                deleted_at: None,
                system: Some(notice),
            }
        })
        .collect()
}

/// Pairs each notice of a membership change with the next of the ids the
/// change was given for them.
///
/// # Errors
/// When there are fewer ids than notices (a caller's bug).
pub fn notices_with_ids(
    ids: &[MessageId],
    notices: impl ExactSizeIterator<Item = SystemNotice>,
) -> anyhow::Result<Vec<(MessageId, SystemNotice)>> {
    anyhow::ensure!(
        ids.len() >= notices.len(),
        "{} notice ids for {} notices",
        ids.len(),
        notices.len()
    );
    Ok(ids.iter().copied().zip(notices).collect())
}

#[cfg(test)]
mod tests {
    use chat_domain::{
        ClientMsgId, ConversationKind, ConversationStatus, CustomerId, MessageBody, MessageId,
        Sender, Tags, TenantId,
    };
    use chrono::{DateTime, Utc};

    use super::*;

    fn at(second: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_772_355_600 + second, 0).unwrap()
    }

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
            created_at: at(0),
        }
    }

    fn conversation(tenant: TenantId, status: ConversationStatus, last_seq: u64) -> Conversation {
        Conversation {
            id: ConversationId::new_v7(),
            tenant,
            kind: ConversationKind::Customer {
                customer_id: CustomerId::new_v4(),
                clinician: None,
            },
            status,
            assignee: None,
            tags: Tags::default(),
            channel: None,
            last_seq: Seq::from_u64(last_seq).unwrap(),
            created_at: at(-60),
            updated_at: at(-60),
            last_activity_at: at(-60),
        }
    }

    /// How a test case's send is built and what is stored around it.
    #[derive(Clone, Copy, Debug)]
    enum Kind {
        /// A plain send into conversation `n` of the case.
        To(usize),
        /// With `reopen`.
        Reopening(usize),
        /// Into conversation `n`, but naming another tenant.
        Foreign(usize),
        /// Into a conversation that does not exist.
        Nowhere,
        /// With a `client_msg_id` whose original is stored.
        Retried(usize),
        /// With a `client_msg_id` not stored yet.
        Keyed(usize),
        /// With a `reply_to` that exists, or not.
        Reply(usize, bool),
    }

    /// What the case expects of a send.
    #[derive(Debug, PartialEq, Eq)]
    enum Expect {
        /// Stored with this seq; reopened or not.
        Created(u64, bool),
        Replayed,
        NotFound,
        NoReplyTarget,
    }

    #[test]
    fn assign_decides_each_send_as_a_lone_append_would() {
        use ConversationStatus::{Open, Resolved};
        use Expect::{Created, NoReplyTarget, NotFound, Replayed};
        use Kind::{Foreign, Keyed, Nowhere, Reopening, Reply, Retried, To};
        // (case, the conversations' status and last seq, the sends, what
        // each gets)
        type Case = (
            &'static str,
            Vec<(ConversationStatus, u64)>,
            Vec<Kind>,
            Vec<Expect>,
        );
        let cases: Vec<Case> = vec![
            (
                "a batch of one",
                vec![(Open, 0)],
                vec![To(0)],
                vec![Created(1, false)],
            ),
            (
                "each conversation's next seq",
                vec![(Open, 0), (Open, 41), (Open, 7)],
                vec![To(1), To(0), To(2)],
                vec![Created(42, false), Created(1, false), Created(8, false)],
            ),
            (
                "missing and foreign conversations fail alone",
                vec![(Open, 3)],
                vec![Nowhere, Foreign(0), To(0)],
                vec![NotFound, NotFound, Created(4, false)],
            ),
            (
                "new and retried client_msg_ids",
                vec![(Open, 5), (Open, 9), (Open, 0)],
                vec![Retried(0), Keyed(1), Retried(2)],
                vec![Replayed, Created(10, false), Replayed],
            ),
            (
                "reopening only what is not open",
                vec![(Resolved, 2), (Open, 2), (Resolved, 2)],
                vec![Reopening(0), Reopening(1), To(2)],
                vec![Created(3, true), Created(3, false), Created(3, false)],
            ),
            (
                "reply targets",
                vec![(Open, 1), (Open, 1)],
                vec![Reply(0, true), Reply(1, false)],
                vec![Created(2, false), NoReplyTarget],
            ),
            ("an empty batch", vec![], vec![], vec![]),
        ];
        for (case, stored, sends, expected) in cases {
            let tenant = TenantId::new_v4();
            let conversations: Vec<Conversation> = stored
                .iter()
                .map(|&(status, last_seq)| conversation(tenant, status, last_seq))
                .collect();
            let mut state = State::new(conversations.clone());
            let mut batch = Vec::new();
            for (position, send) in sends.iter().enumerate() {
                let (n, reopen) = match *send {
                    To(n) | Foreign(n) | Retried(n) | Keyed(n) | Reply(n, _) => (Some(n), false),
                    Reopening(n) => (Some(n), true),
                    Nowhere => (None, false),
                };
                let mut new =
                    message(n.map_or_else(ConversationId::new_v7, |n| conversations[n].id));
                new.tenant = tenant;
                new.created_at = at(i64::try_from(position).unwrap());
                match *send {
                    Foreign(_) => new.tenant = TenantId::new_v4(),
                    Retried(_) | Keyed(_) => {
                        new.client_msg_id = Some(ClientMsgId::parse("k").unwrap());
                    }
                    Reply(_, found) => {
                        new.reply_to = Some(MessageId::new_v7());
                        if found {
                            state.reply_targets.insert(position);
                        }
                    }
                    _ => {}
                }
                if let Retried(_) = send {
                    let original = new
                        .clone()
                        .into_message(Seq::from_u64(1).unwrap(), Vec::new());
                    state.originals.insert(position, original);
                }
                batch.push(Append {
                    message: new,
                    reopen,
                });
            }
            let keyed = state.keyed(&batch);
            let expected_keyed: Vec<usize> = sends
                .iter()
                .enumerate()
                .filter(|(_, s)| matches!(s, Retried(_) | Keyed(_)))
                .map(|(i, _)| i)
                .collect();
            assert_eq!(keyed, expected_keyed, "{case}: keyed");
            let replying: Vec<usize> = sends
                .iter()
                .enumerate()
                .filter(|(_, s)| matches!(s, Reply(..)))
                .map(|(i, _)| i)
                .collect();
            assert_eq!(state.replying(&batch), replying, "{case}: replying");

            let originals = state.originals.clone();
            let assigned = assign(&batch, state).unwrap();
            let fresh_positions: Vec<usize> = assigned.fresh().iter().map(|f| f.position).collect();
            assert_eq!(assigned.writes(), !fresh_positions.is_empty(), "{case}");
            for fresh in assigned.fresh() {
                let append = &batch[fresh.position];
                assert_eq!(
                    fresh.message,
                    append.message.clone().into_message(fresh.seq(), Vec::new()),
                    "{case}: the message as given, with its seq"
                );
                assert_eq!(fresh.conversation.last_seq, fresh.seq(), "{case}");
                assert_eq!(fresh.conversation.updated_at, append.message.created_at);
                assert_eq!(
                    fresh.conversation.last_activity_at,
                    append.message.created_at
                );
                if fresh.reopened {
                    assert_eq!(fresh.conversation.status, ConversationStatus::Open);
                }
            }
            let outcomes = assigned.into_outcomes();
            let got: Vec<Expect> = outcomes
                .iter()
                .enumerate()
                .map(|(position, outcome)| match outcome {
                    Ok(AppendOutcome::Created {
                        message,
                        conversation,
                        reopened,
                    }) => {
                        assert_eq!(conversation.id, message.conversation_id, "{case}");
                        assert!(fresh_positions.contains(&position), "{case}");
                        Created(message.seq.get(), *reopened)
                    }
                    Ok(AppendOutcome::Replayed(original)) => {
                        assert_eq!(Some(original), originals.get(&position), "{case}");
                        Replayed
                    }
                    Err(AppendError::ConversationNotFound) => NotFound,
                    Err(AppendError::ReplyTargetNotFound) => NoReplyTarget,
                    Err(err) => panic!("{case}: {err}"),
                })
                .collect();
            assert_eq!(got, expected, "{case}");
        }
    }

    #[test]
    fn a_batch_with_two_sends_of_one_conversation_is_refused_whole() {
        let tenant = TenantId::new_v4();
        let stored = conversation(tenant, ConversationStatus::Open, 0);
        let mut new = message(stored.id);
        new.tenant = tenant;
        let append = Append {
            message: new,
            reopen: false,
        };
        let err = assign(&[append.clone(), append], State::new([stored])).unwrap_err();
        assert!(err.to_string().contains("two sends"), "{err}");
    }

    #[test]
    fn a_failed_batch_of_one_answers_as_a_lone_append() {
        let cases: Vec<(BatchError, Option<&str>)> = vec![
            (
                StageError::from(AppendError::AttachmentNotFound(
                    chat_domain::AttachmentId::new_v7(),
                ))
                .into(),
                Some("is not an upload"),
            ),
            (
                StageError::from(AppendError::Unexpected(anyhow::anyhow!("disk"))).into(),
                Some("disk"),
            ),
            (
                BatchError::Commit(anyhow::anyhow!("gone")),
                Some("committing"),
            ),
            (
                StageError::ClientMsgIdTaken(anyhow::anyhow!("key")).into(),
                None,
            ),
        ];
        for (err, expected) in cases {
            match (err.into_lone_error(), expected) {
                (Ok(err), Some(text)) => assert!(format!("{err:#}").contains(text), "{err:#}"),
                (Err(_), None) => {}
                (got, expected) => panic!("{got:?} for {expected:?}"),
            }
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
                    append: Append {
                        message: message(conversation),
                        reopen: false,
                    },
                    answer: Answer(done),
                })
                .await
                .unwrap();
            answers.push(answer);
        }
        let ids = |batch: &Batch| -> Vec<ConversationId> {
            batch
                .appends()
                .iter()
                .map(|a| a.message.conversation_id)
                .collect()
        };
        assert!(collector.ready().await);
        // At most three are gathered (a, a, b); a's second send waits.
        let first = collector.take_batch();
        assert_eq!(ids(&first), vec![a, b]);
        let second = collector.take_batch();
        assert_eq!(ids(&second), vec![a, c, d], "the deferred send goes first");

        // Answered after the commit; a batch that failed before it comes
        // back whole, unanswered.
        let outcomes = (0..2)
            .map(|_| Err(AppendError::ConversationNotFound))
            .collect();
        assert!(first.settle(Ok(outcomes)).is_none());
        let back = second
            .settle(Err(StageError::Unexpected(anyhow::anyhow!("x")).into()))
            .expect("the batch back");
        assert_eq!(back.len(), 3);
        assert!(matches!(
            answers.remove(0).await,
            Ok(Err(AppendError::ConversationNotFound))
        ));
        drop(back);
        drop(submitter);
        assert!(!collector.ready().await);
    }

    #[tokio::test]
    async fn unbatchable_sends_come_back_to_be_appended_alone() {
        let (submitter, _collector) = channel(4, 4);
        let mut new = message(ConversationId::new_v7());
        new.reply_to = Some(MessageId::new_v7());
        let append = Append {
            message: new,
            reopen: true,
        };
        match submitter.submit(append.clone()).await {
            Err(back) => assert_eq!(back, append),
            Ok(outcome) => panic!("submitted: {outcome:?}"),
        }
    }
}
