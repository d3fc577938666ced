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

mod access_cache;
mod attachments;
#[cfg(feature = "contract-tests")]
pub mod contract;
mod error;
mod files;
#[cfg(test)]
mod message_change_tests;
pub mod ports;
pub mod realtime;
mod service;
#[cfg(test)]
mod service_tests;
pub mod sniff;
pub mod store_support;

pub use attachments::{
    download_headers, AttachmentError, AttachmentPorts, AttachmentService, AttachmentSettings,
    Download, DEFAULT_MAX_ATTACHMENT_BYTES,
};
pub use error::ChatError;
pub use files::{
    AttachmentRepository, ByteStream, DownloadHeaders, FileStorage, ScanVerdict, Scanner,
    StorageError,
};
#[cfg(any(test, feature = "mocks"))]
pub use files::{MockAttachmentRepository, MockFileStorage, MockScanner};
pub use ports::{
    AccessPolicy, AllowAll, AppendError, AppendOutcome, ChatEvent, Clock, ConversationCursor,
    ConversationListQuery, ConversationPage, ConversationRepository, ConversationSummary,
    CursorError, EventPublisher, IdGenerator, MessageCursor, MessagePage, MessageQuery,
    MessageRepository, PolicyAction, ReadStateRepository, Receipt, ReceiptUpdate, RepoError,
    SystemClock, UuidV7Generator,
};
#[cfg(any(test, feature = "mocks"))]
pub use ports::{
    MockAccessPolicy, MockClock, MockConversationRepository, MockEventPublisher, MockIdGenerator,
    MockMessageRepository, MockReadStateRepository,
};
pub use realtime::{
    broadcast_stream, BusEvent, BusPublisher, ConnectionId, EventBus, EventStream,
    InMemoryPresence, InProcessBus, PresenceChange, PresenceService, PresenceStore,
};
#[cfg(any(test, feature = "mocks"))]
pub use realtime::{MockEventBus, MockPresenceStore};
pub use service::{ChatService, PageLimit, Ports, SendMessage, SendOutcome};
