//! The ordered feed: the bus's events as every real-time consumer needs
//! them, with each conversation's new messages exactly once and in `seq`
//! order, whatever order the bus carried them in.
//!
//! Events may arrive out of order (two senders racing, two nodes
//! publishing), twice, or not at all (a node that crashed between commit
//! and publish). A message is committed only after every lower `seq` of
//! its conversation, so on a gap the feed reads the missing messages from
//! the [`MessageRepository`] and yields them first. Everything that is not
//! a new message passes through where it arrived.
//!
//! A gap is only seen when a later message of the same conversation
//! arrives, so the feed alone cannot notice events that never came. The
//! rule that covers them, kept by every publisher and every consumer:
//!
//! - a publisher that cannot hand an event to the bus keeps it, in order,
//!   and tries again until the bus takes it ([`crate::QueuedPublisher`]); if
//!   it has to drop events (its bounded queue is full), the next thing it
//!   publishes is a [`ChatEvent::EventsLost`];
//! - a consumer that sees [`ChatEvent::EventsLost`], or a
//!   [`BusEvent::Lagged`] (its own subscription fell behind or was
//!   re-established), makes its clients catch up from the database: the
//!   WebSocket hub closes every connection with 1013, and clients
//!   reconnect and `resume` from the last `seq` they saw.
//!
//! Presence follows the same rule: a presence event waits in the same
//! queue, and a reconnect announces the user again.
//!
//! Consumers that deliver messages live (the WebSocket hub; later
//! webhooks, server-sent events, long polling) each wrap their own
//! subscription: `OrderedFeed::new(bus.subscribe(), messages)`. The
//! ordering rule lives here and nowhere else.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chat_domain::{ConversationId, Message, Seq};
use futures::StreamExt;

use crate::{
    BusEvent, ChatEvent, EventStream, MessageCursor, MessageQuery, MessageRepository, Route,
};

/// How long the order of a conversation without new messages is kept; a
/// message after that is taken as the conversation's first.
pub const ORDER_IDLE: Duration = Duration::from_secs(600);
/// How often idle conversations are forgotten (checked as events arrive).
const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// The most messages read from the store at once to fill a gap.
const FILL_PAGE: u64 = 200;

/// Where a new message falls in its conversation's delivery order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placement {
    /// Yield it now: the first this feed saw of its conversation, the next
    /// one, or one published before the first and arriving after it.
    Now,
    /// Yield the stored messages after `after` first, then it.
    AfterGap {
        /// The highest `seq` yielded before the gap.
        after: u64,
    },
    /// Already yielded (read from the store on a gap, or published twice).
    Duplicate,
}

/// What the feed has yielded of one conversation.
#[derive(Debug)]
struct Order {
    /// Highest `seq` yielded; every `seq` from `floor` to it has been.
    upto: u64,
    /// The first `seq` yielded.
    floor: u64,
    /// `seq`s below `floor` yielded late (out of order, never twice).
    late: HashSet<u64>,
    touched: Instant,
}

/// The delivery order of every conversation with recent messages: which
/// new message goes now, which is a duplicate, where a gap is.
#[derive(Debug, Default)]
struct Sequencer(HashMap<ConversationId, Order>);

impl Sequencer {
    /// Places message `seq` of `conversation`, arrived at `now`, and counts
    /// it (and any gap before it) as yielded.
    fn place(&mut self, conversation: ConversationId, seq: u64, now: Instant) -> Placement {
        let Some(order) = self.0.get_mut(&conversation) else {
            self.0.insert(
                conversation,
                Order {
                    upto: seq,
                    floor: seq,
                    late: HashSet::new(),
                    touched: now,
                },
            );
            return Placement::Now;
        };
        order.touched = now;
        if seq == order.upto + 1 {
            order.upto = seq;
            Placement::Now
        } else if seq > order.upto + 1 {
            // Counted as filled whether or not the store answers: a reader
            // that misses messages then recovers them with `resume`.
            let after = order.upto;
            order.upto = seq;
            Placement::AfterGap { after }
        } else if seq < order.floor && order.late.insert(seq) {
            Placement::Now
        } else {
            Placement::Duplicate
        }
    }

    /// Forgets conversations without a new message since `ORDER_IDLE`.
    fn sweep(&mut self, now: Instant) {
        self.0
            .retain(|_, order| now.duration_since(order.touched) < ORDER_IDLE);
    }

    /// Forgets every conversation: after lost events nothing is known.
    fn clear(&mut self) {
        self.0.clear();
    }
}

/// A bus subscription in delivery order: each conversation's
/// [`ChatEvent::MessageCreated`] exactly once and in `seq` order, missing
/// ones read from the store; other events where they arrived.
///
/// [`BusEvent::Lagged`] passes through (and resets the order, since
/// whatever was lost is unknown): its consumer must resynchronise its own
/// readers. When a gap cannot be read from the store it is logged and
/// skipped, and the messages after it still come: readers recover the
/// skipped ones from the database (`resume`).
///
/// ```no_run
/// # async fn demo(bus: &dyn chat_app::EventBus, messages: std::sync::Arc<dyn chat_app::MessageRepository>) {
/// use chat_app::{BusEvent, ChatEvent, OrderedFeed};
///
/// let mut feed = OrderedFeed::new(bus.subscribe(), messages);
/// while let Some(event) = feed.next().await {
///     match event {
///         BusEvent::Event(ChatEvent::MessageCreated { message, .. }) => {
///             println!("message {}", message.seq.get());
///         }
///         BusEvent::Event(_) => {}
///         BusEvent::Lagged(_) => { /* tell readers to catch up from the store */ }
///     }
/// }
/// # }
/// ```
pub struct OrderedFeed {
    events: EventStream,
    messages: Arc<dyn MessageRepository>,
    sequencer: Sequencer,
    /// Events placed and not yielded yet (a gap's messages, then the
    /// message that revealed it).
    ready: VecDeque<BusEvent>,
    swept_at: Instant,
}

impl OrderedFeed {
    /// Orders `events`, reading gaps from `messages`.
    pub fn new(events: EventStream, messages: Arc<dyn MessageRepository>) -> Self {
        Self {
            events,
            messages,
            sequencer: Sequencer::default(),
            ready: VecDeque::new(),
            swept_at: Instant::now(),
        }
    }

    /// The next event in delivery order; `None` once the bus is closed.
    ///
    /// Not cancel safe while it fills a gap (the message that revealed the
    /// gap would be lost): drop it only to stop, or use
    /// [`OrderedFeed::into_stream`], whose `next()` is.
    pub async fn next(&mut self) -> Option<BusEvent> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Some(event);
            }
            let event = self.events.next().await?;
            self.place(event).await;
        }
    }

    /// The feed as a stream, to be polled (and its `next()` dropped) from a
    /// `select!`: an interrupted gap fill resumes on the next poll.
    pub fn into_stream(self) -> EventStream {
        futures::stream::unfold(self, |mut feed| async move {
            feed.next().await.map(|event| (event, feed))
        })
        .boxed()
    }

    /// Queues `event`, and the messages of a gap it reveals, in order.
    async fn place(&mut self, event: BusEvent) {
        let now = Instant::now();
        if now.duration_since(self.swept_at) >= SWEEP_EVERY {
            self.sequencer.sweep(now);
            self.swept_at = now;
        }
        match event {
            BusEvent::Event(ChatEvent::MessageCreated { route, message }) => match self
                .sequencer
                .place(route.conversation_id, message.seq.get(), now)
            {
                Placement::Now => self.ready.push_back(created(route, message)),
                Placement::AfterGap { after } => {
                    let missing = missing(&*self.messages, route, after, message.seq.get()).await;
                    self.ready
                        .extend(missing.into_iter().map(|missed| created(route, missed)));
                    self.ready.push_back(created(route, message));
                }
                Placement::Duplicate => {}
            },
            BusEvent::Lagged(missed) => {
                self.sequencer.clear();
                self.ready.push_back(BusEvent::Lagged(missed));
            }
            event @ BusEvent::Event(_) => self.ready.push_back(event),
        }
    }
}

/// Reads the messages of the conversation of `route` after `after` and below
/// `below` from the store, in order; on a storage failure, those read
/// before it.
async fn missing(
    messages: &dyn MessageRepository,
    route: Route,
    after: u64,
    below: u64,
) -> Vec<Message> {
    let mut found = Vec::new();
    let mut after = after;
    while after + 1 < below {
        let Ok(cursor) = Seq::from_u64(after) else {
            break;
        };
        let limit = u32::try_from((below - after - 1).min(FILL_PAGE)).unwrap_or(u32::MAX);
        let query = MessageQuery {
            cursor: MessageCursor::After(cursor),
            limit,
        };
        match messages
            .list_messages(route.access.tenant, route.conversation_id, query)
            .await
        {
            Ok(page) => {
                let before = found.len();
                for message in page.messages {
                    if message.seq.get() < below {
                        after = message.seq.get();
                        found.push(message);
                    }
                }
                if found.len() == before || !page.has_more {
                    break;
                }
            }
            Err(err) => {
                tracing::error!(error = ?err, conversation_id = %route.conversation_id, "cannot read missed messages; clients will resume");
                break;
            }
        }
    }
    found
}

fn created(route: Route, message: Message) -> BusEvent {
    BusEvent::Event(ChatEvent::MessageCreated { route, message })
}

#[cfg(test)]
mod tests {
    use chat_domain::{Conversation, CustomerId, Sender, StaffUserId, TenantId};

    use super::*;
    use crate::{EventBus, InProcessBus, MessagePage, MockMessageRepository, RepoError};

    fn conversation() -> Conversation {
        crate::fixtures::conversation(TenantId::new_v4(), CustomerId::new_v4(), None)
    }

    fn message(conversation: &Conversation, seq: u64) -> Message {
        crate::fixtures::message(conversation, seq, Sender::Customer(CustomerId::new_v4()))
    }

    fn new_message(conversation: &Conversation, seq: u64) -> ChatEvent {
        ChatEvent::MessageCreated {
            route: Route::of(conversation),
            message: message(conversation, seq),
        }
    }

    fn typing(conversation: &Conversation) -> ChatEvent {
        ChatEvent::Typing {
            route: Route::of(conversation),
            sender: Sender::Staff(StaffUserId::new_v4()),
            is_typing: true,
        }
    }

    /// An event as the assertions name it: `(conversation, seq)` for new
    /// messages, `(conversation, 0)` for anything else of a conversation.
    fn label(event: &BusEvent) -> (ConversationId, u64) {
        match event {
            BusEvent::Event(ChatEvent::MessageCreated { route, message }) => {
                assert_eq!(message.conversation_id, route.conversation_id);
                (route.conversation_id, message.seq.get())
            }
            BusEvent::Event(ChatEvent::Typing { route, .. }) => (route.conversation_id, 0),
            other => panic!("unexpected {other:?}"),
        }
    }

    /// Publishes `events` on an in-process bus and reads the ordered feed
    /// of it to the end.
    async fn ordered(messages: MockMessageRepository, events: Vec<ChatEvent>) -> Vec<BusEvent> {
        let bus = InProcessBus::new(64);
        let mut feed = OrderedFeed::new(bus.subscribe(), Arc::new(messages));
        for event in events {
            bus.publish(&event).await.expect("published");
        }
        drop(bus);
        let mut out = Vec::new();
        while let Some(event) = feed.next().await {
            out.push(event);
        }
        out
    }

    fn labels(events: &[BusEvent]) -> Vec<(ConversationId, u64)> {
        events.iter().map(label).collect()
    }

    /// The pages a store was asked for: `(after, limit)`.
    type Reads = Arc<std::sync::Mutex<Vec<(u64, u32)>>>;

    /// A store that holds `conversation`'s messages `1..=last`.
    fn store_of(conversation: &Conversation, last: u64) -> MockMessageRepository {
        store_logging(conversation, last, Reads::default())
    }

    /// [`store_of`], noting every read in `reads`.
    fn store_logging(
        conversation: &Conversation,
        last: u64,
        reads: Reads,
    ) -> MockMessageRepository {
        let mut store = MockMessageRepository::new();
        let stored = conversation.clone();
        store
            .expect_list_messages()
            .returning(move |tenant, id, query| {
                assert_eq!((tenant, id), (stored.tenant, stored.id));
                let MessageCursor::After(after) = query.cursor else {
                    panic!("gaps are read forwards: {query:?}");
                };
                reads
                    .lock()
                    .expect("no test panics holding it")
                    .push((after.get(), query.limit));
                let first = after.get() + 1;
                let end = (first + u64::from(query.limit)).min(last + 1);
                Ok(MessagePage {
                    messages: (first..end).map(|seq| message(&stored, seq)).collect(),
                    has_more: end <= last,
                })
            });
        store
    }

    #[tokio::test]
    async fn in_order_messages_pass_without_reading_the_store() {
        let c = conversation();
        // No expectation: any read of the store panics.
        let out = ordered(
            MockMessageRepository::new(),
            (1..=3).map(|seq| new_message(&c, seq)).collect(),
        )
        .await;
        assert_eq!(labels(&out), [(c.id, 1), (c.id, 2), (c.id, 3)]);
    }

    #[tokio::test]
    async fn a_message_arriving_before_its_predecessor_comes_after_it_once() {
        let c = conversation();
        let mut store = MockMessageRepository::new();
        let stored = c.clone();
        store
            .expect_list_messages()
            .withf(|_, _, query| {
                query.cursor == MessageCursor::After(Seq::from_u64(1).expect("seq"))
                    && query.limit == 1
            })
            .times(1)
            .return_once(move |_, _, _| {
                Ok(MessagePage {
                    messages: vec![message(&stored, 2)],
                    has_more: true,
                })
            });
        let events = vec![new_message(&c, 1), new_message(&c, 3), new_message(&c, 2)];
        let out = ordered(store, events).await;
        assert_eq!(labels(&out), [(c.id, 1), (c.id, 2), (c.id, 3)]);
    }

    #[tokio::test]
    async fn a_message_published_twice_comes_once() {
        let c = conversation();
        let events = vec![new_message(&c, 1), new_message(&c, 2), new_message(&c, 2)];
        let out = ordered(MockMessageRepository::new(), events).await;
        assert_eq!(labels(&out), [(c.id, 1), (c.id, 2)]);
    }

    #[tokio::test]
    async fn messages_published_before_the_first_one_seen_come_late_but_once() {
        let c = conversation();
        let events = vec![
            new_message(&c, 5),
            new_message(&c, 4),
            new_message(&c, 4),
            new_message(&c, 6),
        ];
        let out = ordered(MockMessageRepository::new(), events).await;
        assert_eq!(labels(&out), [(c.id, 5), (c.id, 4), (c.id, 6)]);
    }

    #[tokio::test]
    async fn a_gap_is_filled_from_the_store_page_by_page_before_the_message_after_it() {
        let c = conversation();
        let reads = Reads::default();
        let store = store_logging(&c, 450, reads.clone());
        let out = ordered(store, vec![new_message(&c, 1), new_message(&c, 450)]).await;
        let expected: Vec<_> = (1..=450).map(|seq| (c.id, seq)).collect();
        assert_eq!(labels(&out), expected);
        let reads = reads.lock().expect("no test panics holding it").clone();
        assert_eq!(reads, [(1, 200), (201, 200), (401, 48)]);
    }

    #[tokio::test]
    async fn a_gap_the_store_cannot_fill_is_skipped_and_what_follows_still_comes() {
        let c = conversation();
        let mut store = MockMessageRepository::new();
        store
            .expect_list_messages()
            .times(1)
            .return_once(|_, _, _| Err(RepoError::Unexpected(anyhow::anyhow!("down"))));
        let events = vec![
            new_message(&c, 1),
            new_message(&c, 4),
            // Counted as filled: readers recover 2 and 3 with `resume`.
            new_message(&c, 2),
            new_message(&c, 5),
        ];
        let out = ordered(store, events).await;
        assert_eq!(labels(&out), [(c.id, 1), (c.id, 4), (c.id, 5)]);
    }

    #[tokio::test]
    async fn conversations_are_ordered_independently() {
        let (a, b) = (conversation(), conversation());
        let events = vec![
            new_message(&a, 1),
            new_message(&b, 7),
            new_message(&a, 2),
            new_message(&b, 8),
            new_message(&b, 7),
            new_message(&a, 3),
        ];
        // Each conversation starts where it was first seen: no store read.
        let out = ordered(MockMessageRepository::new(), events).await;
        assert_eq!(
            labels(&out),
            [(a.id, 1), (b.id, 7), (a.id, 2), (b.id, 8), (a.id, 3)]
        );
    }

    #[tokio::test]
    async fn a_gap_in_one_conversation_reads_only_that_conversation() {
        let (a, b) = (conversation(), conversation());
        let events = vec![
            new_message(&a, 1),
            new_message(&b, 1),
            new_message(&a, 3),
            new_message(&b, 2),
        ];
        let out = ordered(store_of(&a, 3), events).await;
        assert_eq!(
            labels(&out),
            [(a.id, 1), (b.id, 1), (a.id, 2), (a.id, 3), (b.id, 2)]
        );
    }

    #[tokio::test]
    async fn other_events_pass_through_where_they_arrived() {
        let c = conversation();
        let events = vec![
            new_message(&c, 1),
            typing(&c),
            new_message(&c, 3),
            typing(&c),
            new_message(&c, 3),
        ];
        let out = ordered(store_of(&c, 3), events).await;
        assert_eq!(
            labels(&out),
            [(c.id, 1), (c.id, 0), (c.id, 2), (c.id, 3), (c.id, 0)]
        );
    }

    #[tokio::test]
    async fn lost_events_pass_through_and_reset_the_order() {
        let c = conversation();
        let events = futures::stream::iter(vec![
            BusEvent::Event(new_message(&c, 1)),
            BusEvent::Lagged(3),
            // The first after the loss: taken as it is, no gap read.
            BusEvent::Event(new_message(&c, 5)),
            BusEvent::Event(new_message(&c, 6)),
        ])
        .boxed();
        let mut feed = OrderedFeed::new(events, Arc::new(MockMessageRepository::new()));
        let mut out = Vec::new();
        while let Some(event) = feed.next().await {
            out.push(event);
        }
        assert_eq!(out[1], BusEvent::Lagged(3));
        out.remove(1);
        assert_eq!(labels(&out), [(c.id, 1), (c.id, 5), (c.id, 6)]);
    }

    #[tokio::test]
    async fn the_stream_form_yields_the_same_order() {
        let c = conversation();
        let bus = InProcessBus::new(16);
        let feed = OrderedFeed::new(bus.subscribe(), Arc::new(store_of(&c, 4)));
        for seq in [1, 4, 3] {
            bus.publish(&new_message(&c, seq)).await.expect("published");
        }
        drop(bus);
        let out: Vec<BusEvent> = feed.into_stream().collect().await;
        assert_eq!(labels(&out), [(c.id, 1), (c.id, 2), (c.id, 3), (c.id, 4)]);
    }

    #[test]
    fn an_idle_conversation_is_forgotten_and_starts_afresh() {
        let (a, b) = (ConversationId::new_v7(), ConversationId::new_v7());
        let start = Instant::now();
        let mut sequencer = Sequencer::default();
        assert_eq!(sequencer.place(a, 1, start), Placement::Now);
        assert_eq!(sequencer.place(b, 1, start), Placement::Now);
        let later = start + ORDER_IDLE - Duration::from_secs(1);
        assert_eq!(sequencer.place(b, 2, later), Placement::Now);

        sequencer.sweep(start + ORDER_IDLE);
        // `a` is forgotten: its next message is a first one, not a gap.
        assert_eq!(sequencer.place(a, 9, start + ORDER_IDLE), Placement::Now);
        // `b` was active: its order holds.
        assert_eq!(
            sequencer.place(b, 4, start + ORDER_IDLE),
            Placement::AfterGap { after: 2 }
        );
        assert_eq!(
            sequencer.place(b, 3, start + ORDER_IDLE),
            Placement::Duplicate
        );
    }

    #[test]
    fn placements_follow_the_order_rules() {
        let c = ConversationId::new_v7();
        let now = Instant::now();
        let mut sequencer = Sequencer::default();
        // (seq, placement): one row per rule, in arrival order.
        let table = [
            (10, Placement::Now),                    // first seen
            (11, Placement::Now),                    // next
            (11, Placement::Duplicate),              // again
            (14, Placement::AfterGap { after: 11 }), // gap: 12, 13 read
            (12, Placement::Duplicate),              // read with the gap
            (9, Placement::Now),                     // below the first: late
            (9, Placement::Duplicate),               // late, again
            (15, Placement::Now),                    // next after the gap
        ];
        for (seq, expected) in table {
            assert_eq!(sequencer.place(c, seq, now), expected, "seq {seq}");
        }
        sequencer.clear();
        assert_eq!(sequencer.place(c, 20, now), Placement::Now, "after a reset");
    }
}
