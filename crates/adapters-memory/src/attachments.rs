//! [`AttachmentRepository`] for [`MemoryStore`]: the records of uploads.
//! Linking them to messages is part of the append (see `messages`); their
//! bytes are the host's [`chat_app::FileStorage`]'s, never the store's.

use async_trait::async_trait;
use chat_app::{AttachmentRepository, RepoError};
use chat_domain::{Attachment, AttachmentId, NewAttachment, TenantId};
use chrono::{DateTime, Utc};

use crate::{truncate, Inner, MemoryStore, StoredAttachment};

impl Inner {
    fn insert_attachment(&mut self, new: &NewAttachment) -> Result<Attachment, RepoError> {
        if self.conversation(new.tenant, new.conversation_id).is_none() {
            return Err(RepoError::Unexpected(anyhow::anyhow!(
                "attachment {} names conversation {}, which its tenant does not have",
                new.id,
                new.conversation_id
            )));
        }
        if self.attachments.contains_key(&new.id) {
            return Err(RepoError::Unexpected(anyhow::anyhow!(
                "attachment id {} is already taken",
                new.id
            )));
        }
        let mut attachment = new.clone().into_attachment();
        attachment.created_at = truncate(attachment.created_at);
        self.attachments.insert(
            attachment.id,
            StoredAttachment {
                attachment: attachment.clone(),
                deleted_at: None,
            },
        );
        Ok(attachment)
    }

    /// The record `id` of `tenant`, deleted or not.
    fn stored_attachment(&self, tenant: TenantId, id: AttachmentId) -> Option<&StoredAttachment> {
        self.attachments
            .get(&id)
            .filter(|stored| stored.attachment.tenant == tenant)
    }

    fn list_orphans(&self, before: DateTime<Utc>, limit: u32) -> Vec<Attachment> {
        let before = truncate(before);
        let mut orphans: Vec<&Attachment> = self
            .attachments
            .values()
            .map(|stored| &stored.attachment)
            .filter(|a| a.message_id.is_none() && a.created_at < before)
            .collect();
        orphans.sort_unstable_by_key(|a| (a.created_at, a.id));
        take(orphans, limit)
    }

    /// Removes the record `id` of `tenant` when `condition` holds of it;
    /// `true` when it was removed.
    fn remove_attachment_if(
        &mut self,
        tenant: TenantId,
        id: AttachmentId,
        condition: impl Fn(&StoredAttachment) -> bool,
    ) -> bool {
        let removable = self.stored_attachment(tenant, id).is_some_and(condition);
        if removable {
            self.attachments.remove(&id);
        }
        removable
    }

    fn list_deleted(&self, limit: u32) -> Vec<Attachment> {
        let mut deleted: Vec<(DateTime<Utc>, &Attachment)> = self
            .attachments
            .values()
            .filter_map(|stored| Some((stored.deleted_at?, &stored.attachment)))
            .collect();
        deleted.sort_unstable_by_key(|(at, a)| (*at, a.id));
        take(deleted.into_iter().map(|(_, a)| a).collect(), limit)
    }
}

/// The first `limit` of `sorted`, cloned.
fn take(sorted: Vec<&Attachment>, limit: u32) -> Vec<Attachment> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    sorted.into_iter().take(limit).cloned().collect()
}

#[async_trait]
impl AttachmentRepository for MemoryStore {
    async fn insert_attachment(&self, new: &NewAttachment) -> Result<Attachment, RepoError> {
        self.lock().insert_attachment(new)
    }

    async fn find_attachment(
        &self,
        tenant: TenantId,
        id: AttachmentId,
    ) -> Result<Option<Attachment>, RepoError> {
        Ok(self
            .lock()
            .stored_attachment(tenant, id)
            .filter(|stored| stored.deleted_at.is_none())
            .map(|stored| stored.attachment.clone()))
    }

    async fn list_orphans(
        &self,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Attachment>, RepoError> {
        Ok(self.lock().list_orphans(before, limit))
    }

    async fn delete_unattached(
        &self,
        tenant: TenantId,
        id: AttachmentId,
    ) -> Result<bool, RepoError> {
        Ok(self
            .lock()
            .remove_attachment_if(tenant, id, |stored| stored.attachment.message_id.is_none()))
    }

    async fn list_deleted(&self, limit: u32) -> Result<Vec<Attachment>, RepoError> {
        Ok(self.lock().list_deleted(limit))
    }

    async fn purge_deleted(&self, tenant: TenantId, id: AttachmentId) -> Result<bool, RepoError> {
        Ok(self
            .lock()
            .remove_attachment_if(tenant, id, |stored| stored.deleted_at.is_some()))
    }
}
