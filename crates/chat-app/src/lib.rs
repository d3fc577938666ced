//! The application layer of the chat core: [`ChatService`] and the ports
//! (traits) it drives.
//!
//! Hosts embed this crate with adapters of their choice (the project's
//! PostgreSQL and SQLite ones, or their own): build a [`ChatService`] from
//! [`Ports`], then call its use cases with an authenticated
//! [`chat_domain::Principal`].
//!
//! ```no_run
//! # async fn demo(ports: chat_app::Ports) -> Result<(), chat_app::ChatError> {
//! use chat_app::{ChatService, SendMessage};
//! use chat_domain::{CustomerId, MessageBody, Principal, StaffRole, StaffUserId, TenantId};
//!
//! let service = ChatService::new(ports);
//! let tenant = TenantId::new_v4();
//! let pharmacist = Principal::staff(tenant, StaffUserId::new_v4(), StaffRole::Staff);
//! let (conversation, _created) = service
//!     .get_or_create_conversation(&pharmacist, CustomerId::new_v4(), None)
//!     .await?;
//! let sent = service
//!     .send_message(&pharmacist, conversation.id, SendMessage {
//!         body: Some(MessageBody::parse("Your prescription is ready").unwrap()),
//!         attachment_ids: Vec::new(),
//!         reply_to: None,
//!         client_msg_id: None,
//!     })
//!     .await?;
//! assert_eq!(sent.message.seq.get(), 1);
//! # Ok(()) }
//! ```
//!
//! # Where things live
//!
//! One room per use-case area, each a module with its `impl ChatService`
//! block (or, for presence, its own service), its share of the errors and
//! its unit tests (`<area>/tests.rs`):
//!
//! - `conversations`: get or create, list, get, update, unread total;
//! - `messages`: history, send, edit, delete (and, to come, threads,
//!   reactions, pins, forwarding, mentions);
//! - `receipts`: read and delivered markers;
//! - `typing`: typing indicators;
//! - `presence`: [`PresenceService`], who is online;
//! - `attachments`: [`AttachmentService`], uploads (with the content
//!   sniffer, private to it), downloads and the sweeps;
//! - `members`: staff direct conversations and channels: get or create,
//!   create, change, archive, list, join, leave, add, remove, roles.
//!
//! Rooms kept for what comes next: `search`, `webhooks`
//! (with their outbox), `audit`. A new use
//! case goes in its area's module; a new area gets a new module of the
//! same shape, listed here. Nothing goes in `service`, which holds only
//! [`ChatService`], its [`Ports`] and the checks every area shares.
//!
//! Beside the rooms:
//!
//! - [`ports`]: the traits the use cases drive, one file per area;
//! - [`feed`]: [`OrderedFeed`], the bus's events with each conversation's
//!   messages exactly once and in `seq` order (gaps read from the store),
//!   for every live consumer (the WebSocket hub; webhooks, other
//!   transports);
//! - [`memory`]: in-memory adapters of a single node ([`InProcessBus`],
//!   [`InMemoryPresence`]);
//! - `publish_queue`: [`QueuedPublisher`], which publishes to a bus that
//!   may stall (Redis) in the background, in order, so no use case waits
//!   for it;
//! - `contract` (feature `contract-tests`): the suite every store adapter
//!   runs, and `batch_contract` the case every SQL store's batch append
//!   runs;
//! - `fixtures` (feature `mocks`): values for tests of code that handles
//!   conversations and messages;
//! - [`store_support`]: the append steps every SQL adapter shares (seq
//!   assignment and outcomes of a batch), for store implementers only.
//!
//! Every type other crates use is re-exported at the crate root.

mod access_cache;
mod attachments;
#[cfg(feature = "contract-tests")]
pub mod batch_contract;
#[cfg(feature = "contract-tests")]
pub mod contract;
mod conversations;
mod error;
pub mod feed;
#[cfg(any(test, feature = "mocks"))]
pub mod fixtures;
mod members;
pub mod memory;
mod messages;
mod page;
pub mod ports;
mod presence;
mod publish_queue;
mod receipts;
mod service;
pub mod store_support;
#[cfg(test)]
mod test_support;
mod typing;

pub use attachments::{
    download_headers, AttachmentError, AttachmentPorts, AttachmentService, AttachmentSettings,
    Download, MacroSign, UnreadableContainer, UnsupportedContent, DEFAULT_MAX_ATTACHMENT_BYTES,
};
pub use error::{ChatError, Conflict, Field, Reason, Resource};
pub use feed::{OrderedFeed, ORDER_IDLE};
pub use members::{ChannelListRequest, NewChannelRequest};
pub use memory::{broadcast_stream, InMemoryPresence, InProcessBus};
pub use messages::{SendMessage, SendOutcome};
pub use page::PageLimit;
pub use ports::{
    AccessPolicy, AllowAll, AppendError, AppendOutcome, AttachmentRepository, BusError, BusEvent,
    BusPublisher, ByteStream, ChannelListQuery, ChannelListing, ChannelPage, ChatEvent, Clock,
    ConnectionId, ConversationCursor, ConversationListQuery, ConversationPage,
    ConversationRepository, ConversationSummary, CursorError, DownloadHeaders, EventBus,
    EventPublisher, EventStream, FileStorage, IdGenerator, ListCursor, MemberChange,
    MemberChangeOutcome, MemberOp, MemberPage, MembershipError, MembershipFacts,
    MembershipRepository, MessageCursor, MessagePage, MessageQuery, MessageRepository,
    PolicyAction, PresenceChange, PresenceStore, ReadStateRepository, Receipt, ReceiptUpdate,
    RepoError, Route, ScanVerdict, Scanner, StorageError, SystemClock, UuidV7Generator,
};
#[cfg(any(test, feature = "mocks"))]
pub use ports::{
    MockAccessPolicy, MockAttachmentRepository, MockClock, MockConversationRepository,
    MockEventBus, MockEventPublisher, MockFileStorage, MockIdGenerator, MockMembershipRepository,
    MockMessageRepository, MockPresenceStore, MockReadStateRepository, MockScanner,
};
pub use presence::PresenceService;
pub use publish_queue::{PublishStats, QueuedPublisher};
pub use service::{ChatService, Ports};
