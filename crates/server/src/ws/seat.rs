//! A connection's seat: counted in presence, and toward its user's limit of
//! open connections on every node, from before the upgrade until it closes.

use chat_app::{ConnectionId, PresenceService};
use chat_domain::Principal;

use super::Realtime;
use crate::error::ApiError;

/// A connection counted in presence (and toward the caller's limit) from
/// before the upgrade; released when dropped, so an upgrade that never
/// completes does not keep a place.
pub(crate) struct Seat {
    principal: Principal,
    id: ConnectionId,
    /// Where the connection is recorded; `None` once released.
    presence: Option<PresenceService>,
}

impl Seat {
    /// Records a connection of `principal`, or refuses it with 429 when
    /// they already have the configured number open on all nodes. When
    /// presence is unavailable the connection is let in uncounted: chat
    /// goes on without presence.
    pub(super) async fn take(rt: &Realtime, principal: Principal) -> Result<Self, ApiError> {
        let id = ConnectionId::new();
        let limit = rt.settings.max_connections_per_user;
        let presence = rt.presence.clone();
        match presence
            .connect_within(&principal, id, (limit > 0).then_some(limit))
            .await
        {
            Ok(Some(_)) => Ok(Self {
                principal,
                id,
                presence: Some(presence),
            }),
            Ok(None) => Err(ApiError::too_many_connections(limit)),
            Err(err) => {
                tracing::warn!(error = ?err, "presence unavailable");
                Ok(Self {
                    principal,
                    id,
                    presence: None,
                })
            }
        }
    }

    /// The connection's id.
    pub(crate) fn id(&self) -> ConnectionId {
        self.id
    }

    /// Whose connection it is.
    pub(crate) fn principal(&self) -> Principal {
        self.principal
    }

    /// Records the connection closed.
    pub(crate) async fn release(mut self) {
        if let Some(presence) = self.presence.take() {
            if let Err(err) = presence.disconnected(&self.principal, self.id).await {
                tracing::warn!(error = ?err, "presence unavailable");
            }
        }
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        let Some(presence) = self.presence.take() else {
            return;
        };
        let (principal, id) = (self.principal, self.id);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(err) = presence.disconnected(&principal, id).await {
                    tracing::warn!(error = ?err, "presence unavailable");
                }
            });
        }
    }
}
