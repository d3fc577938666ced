//! Receipts: moving one's read and delivered markers, and listing every
//! participant's, from which senders derive sent / delivered / read.
//!
//! Its share of [`ChatError`]: `NotFound(Resource::Conversation)`,
//! `Forbidden` and `Unexpected` (an invalid `up_to` is the transport's to
//! refuse: [`chat_domain::Seq`] is valid once it exists).

use chat_domain::{Action, ConversationId, Principal, ReadState, Seq};

use crate::error::{ChatError, Resource};
use crate::ports::{ChatEvent, Receipt, Route};
use crate::service::ChatService;

#[cfg(test)]
mod tests;

impl ChatService {
    /// Marks the conversation read (or delivered) up to `up_to` for the
    /// principal. Never moves backwards; capped at the newest message.
    ///
    /// # Errors
    /// [`ChatError::NotFound`]; [`ChatError::Unexpected`].
    #[tracing::instrument(skip_all, fields(conversation_id = %id), err(level = "debug"))]
    pub async fn mark(
        &self,
        principal: &Principal,
        id: ConversationId,
        receipt: Receipt,
        up_to: Seq,
    ) -> Result<ReadState, ChatError> {
        let conversation = self.authorized(principal, id, Action::MarkRead).await?;
        let update = self
            .ports
            .read_states
            .advance(
                principal.tenant(),
                id,
                principal.as_sender(),
                receipt,
                up_to,
                self.ports.clock.now(),
            )
            .await?
            .ok_or(ChatError::NotFound(Resource::Conversation))?;
        if update.moved {
            self.publish(ChatEvent::ReceiptMoved {
                route: Route::of(&conversation),
                receipt,
                state: update.state,
            })
            .await;
        }
        Ok(update.state)
    }

    /// from them a sender derives the sent / delivered / read status of
    /// each message (delivered once another participant's delivered marker
    /// reaches its `seq`, read likewise).
    ///
    /// # Errors
    /// [`ChatError::NotFound`]; [`ChatError::Unexpected`].
    #[tracing::instrument(skip_all, fields(conversation_id = %id), err(level = "debug"))]
    pub async fn receipts(
        &self,
        principal: &Principal,
        id: ConversationId,
    ) -> Result<Vec<ReadState>, ChatError> {
        self.authorized(principal, id, Action::Read).await?;
        Ok(self
            .ports
            .read_states
            .list_receipts(principal.tenant(), id)
            .await?)
    }
}
