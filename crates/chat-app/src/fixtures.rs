//! Values for tests of code that handles what the service hands out (with
//! the `mocks` feature, beside the mocks of the ports).

use chat_domain::{
    Conversation, ConversationId, CustomerId, Message, MessageId, NewCustomerConversation, Sender,
    Seq, StaffUserId, TenantId,
};

/// A message of `conversation` at `seq` from `sender`, with no text and no
/// files, created now; struct update syntax sets the rest.
///
/// # Panics
/// When `seq` is above the largest [`Seq`].
pub fn message(conversation: &Conversation, seq: u64, sender: Sender) -> Message {
    Message {
        id: MessageId::new_v7(),
        tenant: conversation.tenant,
        conversation_id: conversation.id,
        seq: Seq::from_u64(seq).expect("a seq within range"),
        sender,
        body: None,
        attachments: Vec::new(),
        reply_to: None,
        client_msg_id: None,
        created_at: chrono::Utc::now(),
        edited_at: None,
        deleted_at: None,
        system: None,
    }
}

/// A new conversation of `customer` in `tenant`, with `clinician` for a
/// private thread or `None` for the shared inbox, created now.
pub fn conversation(
    tenant: TenantId,
    customer: CustomerId,
    clinician: Option<StaffUserId>,
) -> Conversation {
    NewCustomerConversation {
        id: ConversationId::new_v7(),
        tenant,
        customer_id: customer,
        clinician,
        now: chrono::Utc::now(),
    }
    .prospective()
}
