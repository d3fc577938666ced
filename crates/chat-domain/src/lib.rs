//! Pure domain of the chat core: identifiers, principals, conversations,
//! messages, attachments, read state and the permission rules that govern them.
//!
//! Nothing here performs I/O or reads the clock: every value that exists is
//! valid (constructors are `parse`), and every rule is a pure function that a
//! host can test table by table.
//!
//! ```
//! use chat_domain::{MessageBody, Principal, StaffRole, TenantId, StaffUserId};
//!
//! let body = MessageBody::parse("  Your prescription is ready  ").unwrap();
//! assert_eq!(body.as_str(), "Your prescription is ready");
//!
//! let pharmacist = Principal::staff(TenantId::new_v4(), StaffUserId::new_v4(), StaffRole::Staff);
//! assert!(pharmacist.is_staff());
//! ```

mod attachment;
mod conversation;
mod ids;
mod membership;
mod message;
mod permissions;
mod presence;
mod principal;
mod read_state;

pub use attachment::{
    AttachedFile, Attachment, AttachmentIds, AttachmentIdsError, AttachmentName,
    AttachmentNameError, DigestError, MediaType, NewAttachment, Sha256Digest, StorageKey,
    StorageKeyError, MAX_ATTACHMENTS_PER_MESSAGE,
};
pub use conversation::{
    Conversation, ConversationKind, ConversationPatch, ConversationStatus, ConversationStatusError,
    KindName, KindNameError, NewCustomerConversation, Tag, TagError, Tags, TagsError,
};
pub use ids::{
    AttachmentId, ConversationId, CustomerId, IdParseError, MessageId, StaffUserId, TenantId,
};
pub use membership::{
    check_owner_departure, ChannelName, ChannelPatch, ChannelProfile, ChannelTextError,
    ChannelTopic, DirectMembers, DirectMembersError, LastOwner, Member, MemberRole,
    MemberRoleError, NewChannel, NewDirect, NoticeKind, NoticeKindError, SystemNotice, Visibility,
    VisibilityError,
};
pub use message::{
    ClientMsgId, ClientMsgIdError, Message, MessageBody, MessageBodyError, NewMessage, Seq,
    SeqError, MAX_BODY_CHARS,
};
pub use permissions::{
    authorize, authorize_access, authorize_create, authorize_message_change, conversation_scope,
    Action, ConversationAccess, ConversationScope, Denied, MessageChange,
};
pub use presence::{ChosenStatus, Presence, PresenceStatus, PresenceStatusError};
pub use principal::{Principal, Sender, StaffRole};
pub use read_state::ReadState;
