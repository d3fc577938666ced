//! Typing indicators: relayed to the conversation's participants, never
//! stored.
//!
//! Its share of [`ChatError`]: `NotFound(Resource::Conversation)`,
//! `Forbidden` and `Unexpected`.

use chat_domain::{Action, ConversationId, Principal};

use crate::error::ChatError;
use crate::ports::{ChatEvent, Route};
use crate::service::ChatService;

#[cfg(test)]
mod tests;

impl ChatService {
    /// Relays that `principal` started or stopped typing in conversation
    /// `id`. Nothing is stored; throttling is the transport's job.
    ///
    /// # Errors
    /// [`ChatError::NotFound`] when the conversation is not the
    /// principal's to write in; [`ChatError::Unexpected`].
    #[tracing::instrument(skip_all, fields(conversation_id = %id), err(level = "debug"))]
    pub async fn typing(
        &self,
        principal: &Principal,
        id: ConversationId,
        is_typing: bool,
    ) -> Result<(), ChatError> {
        let conversation = self.authorized(principal, id, Action::Send).await?;
        self.publish(ChatEvent::Typing {
            route: Route::of(&conversation),
            sender: principal.as_sender(),
            is_typing,
        })
        .await;
        Ok(())
    }

    /// Checks that `principal` may write in conversation `id` (what
    /// [`ChatService::typing`] checks), without doing anything: for
    /// transports that answer a throttled or redundant frame.
    ///
    /// # Errors
    /// [`ChatError::NotFound`]; [`ChatError::Unexpected`].
    pub async fn check_participant(
        &self,
        principal: &Principal,
        id: ConversationId,
    ) -> Result<(), ChatError> {
        self.authorized(principal, id, Action::Send)
            .await
            .map(|_| ())
    }
}
