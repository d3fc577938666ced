//! Policy: the [`AccessPolicy`] a host implements to narrow the domain's
//! permission rules, and the default [`AllowAll`].

use async_trait::async_trait;
use chat_domain::{Action, Conversation, Denied, Principal};

/// What a principal asks to do, as seen by an [`AccessPolicy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicyAction {
    /// Get or create the conversation.
    Create,
    /// An action on an existing conversation.
    Act(Action),
}

/// A host's own rule that narrows the domain's permissions further (for
/// example: a patient may only reach clinicians of their care team). It is
/// asked only after the domain rules allowed the action.
///
/// Where it applies: every use case on one conversation (get, update,
/// messages, send, receipts, typing, edits), conversation lists, which
/// drop what it refuses, and the real-time events of a conversation, which
/// reach only the connections whose principal it lets read it (asked once
/// per principal and event, for `Act(Read)`, with the conversation as
/// stored, read once per event: keep it quick, or cache).
/// Presence is no conversation's and goes to the tenant's staff. The
/// unread total uses the domain rules alone: it counts every conversation
/// of the principal's scope, so a host whose policy hides whole
/// conversations should keep them out of it too (e.g. by not creating
/// them).
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait AccessPolicy: Send + Sync {
    /// Whether `principal` may do `action` on `conversation`.
    ///
    /// # Errors
    /// [`Denied::NotFound`] to hide the conversation, [`Denied::Forbidden`]
    /// to refuse the action.
    async fn check(
        &self,
        principal: &Principal,
        conversation: &Conversation,
        action: PolicyAction,
    ) -> Result<(), Denied>;

    /// Whether this policy never refuses anything, so that a use case may
    /// decide from the domain rules alone and skip loading what only the
    /// policy would look at (a send then checks the conversation's
    /// [`chat_domain::ConversationAccess`], kept from an earlier load,
    /// instead of reading the conversation again). Only [`AllowAll`] says
    /// `true`; a policy that ever refuses must keep the default, `false`.
    fn refuses_nothing(&self) -> bool {
        false
    }
}

/// The default policy: the domain rules alone decide.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll;

#[async_trait]
impl AccessPolicy for AllowAll {
    async fn check(
        &self,
        _principal: &Principal,
        _conversation: &Conversation,
        _action: PolicyAction,
    ) -> Result<(), Denied> {
        Ok(())
    }

    fn refuses_nothing(&self) -> bool {
        true
    }
}
