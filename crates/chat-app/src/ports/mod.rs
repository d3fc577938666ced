//! Ports: the traits the application layer drives, one file per area.
//! Adapters implement them; every port has a mockall mock (feature
//! `mocks`) for unit tests.
//!
//! - [`conversations`], [`messages`], [`receipts`], [`membership`]: the
//!   repositories of a store (one adapter usually implements all four, see
//!   [`crate::Ports::from_store`]);
//! - [`files`]: attachment bytes, metadata and the malware scanner;
//! - [`events`]: what happened, and the bus that carries it between nodes;
//! - [`presence`]: who is connected, shared by every node;
//! - [`policy`]: the host's own access rules;
//! - [`clock`], [`ids`]: time and identifiers, replaceable in tests.
//!
//! A new port goes in the file of its area (or a new file here for a new
//! area, e.g. `membership.rs`, `search.rs`, `webhooks.rs`, `audit.rs`),
//! with its duties and `# Errors` in the trait's docs, a re-export below and
//! at the crate root, and, for a store, cases in the contract suite (`contract.rs`).

pub mod clock;
pub mod conversations;
pub mod events;
pub mod files;
pub mod ids;
pub mod membership;
pub mod messages;
pub mod policy;
pub mod presence;
pub mod receipts;

pub use clock::{Clock, SystemClock};
pub use conversations::{
    ConversationCursor, ConversationListQuery, ConversationPage, ConversationRepository,
    ConversationSummary, CursorError,
};
pub use events::{
    BusError, BusEvent, BusPublisher, ChatEvent, EventBus, EventPublisher, EventStream, Route,
};
pub use files::{
    AttachmentRepository, ByteStream, DownloadHeaders, FileStorage, ScanVerdict, Scanner,
    StorageError,
};
pub use ids::{IdGenerator, UuidV7Generator};
pub use membership::{
    ChannelListQuery, ChannelListing, ChannelPage, ListCursor, MemberChange, MemberChangeOutcome,
    MemberOp, MemberPage, MembershipError, MembershipFacts, MembershipRepository,
};
pub use messages::{
    AppendError, AppendOutcome, MessageCursor, MessagePage, MessageQuery, MessageRepository,
};
pub use policy::{AccessPolicy, AllowAll, PolicyAction};
pub use presence::{ConnectionId, PresenceChange, PresenceStore};
pub use receipts::{ReadStateRepository, Receipt, ReceiptUpdate};

#[cfg(any(test, feature = "mocks"))]
pub use clock::MockClock;
#[cfg(any(test, feature = "mocks"))]
pub use conversations::MockConversationRepository;
#[cfg(any(test, feature = "mocks"))]
pub use events::{MockEventBus, MockEventPublisher};
#[cfg(any(test, feature = "mocks"))]
pub use files::{MockAttachmentRepository, MockFileStorage, MockScanner};
#[cfg(any(test, feature = "mocks"))]
pub use ids::MockIdGenerator;
#[cfg(any(test, feature = "mocks"))]
pub use membership::MockMembershipRepository;
#[cfg(any(test, feature = "mocks"))]
pub use messages::MockMessageRepository;
#[cfg(any(test, feature = "mocks"))]
pub use policy::MockAccessPolicy;
#[cfg(any(test, feature = "mocks"))]
pub use presence::MockPresenceStore;
#[cfg(any(test, feature = "mocks"))]
pub use receipts::MockReadStateRepository;

/// A repository failure that is not a domain outcome: connection lost,
/// constraint the adapter did not expect, corrupt row. Carries context for
/// the logs; callers see a generic internal error.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// Anything the adapter could not map to a domain outcome.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}
