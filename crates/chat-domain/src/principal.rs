//! Who is acting ([`Principal`]) and who wrote a message ([`Sender`]).

use std::fmt;

use crate::ids::{CustomerId, StaffUserId, TenantId};

/// A staff member's role. Hosts map their own role names onto these two.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StaffRole {
    /// Pharmacist, clinician, agent: answers the shared inbox and their own
    /// private threads.
    Staff,
    /// Sees and manages every conversation of the tenant.
    Admin,
}

/// The authenticated caller of a use case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Principal {
    /// A staff member of one tenant, authenticated by the host's JWT.
    Staff {
        /// The tenant the staff member belongs to.
        tenant: TenantId,
        /// The staff member's user id.
        user_id: StaffUserId,
        /// Their role.
        role: StaffRole,
    },
    /// A customer or patient holding a short-lived chat token.
    Customer {
        /// The tenant that issued the chat token.
        tenant: TenantId,
        /// The customer the token was issued for.
        customer_id: CustomerId,
    },
}

impl Principal {
    /// A staff principal.
    pub const fn staff(tenant: TenantId, user_id: StaffUserId, role: StaffRole) -> Self {
        Self::Staff {
            tenant,
            user_id,
            role,
        }
    }

    /// A customer principal.
    pub const fn customer(tenant: TenantId, customer_id: CustomerId) -> Self {
        Self::Customer {
            tenant,
            customer_id,
        }
    }

    /// The tenant the principal acts within.
    pub const fn tenant(&self) -> TenantId {
        match self {
            Self::Staff { tenant, .. } | Self::Customer { tenant, .. } => *tenant,
        }
    }

    /// Whether the principal is a staff member (of any role).
    pub const fn is_staff(&self) -> bool {
        matches!(self, Self::Staff { .. })
    }

    /// Whether the principal is a tenant admin.
    pub const fn is_admin(&self) -> bool {
        matches!(
            self,
            Self::Staff {
                role: StaffRole::Admin,
                ..
            }
        )
    }

    /// The identity this principal writes messages and read receipts as.
    pub const fn as_sender(&self) -> Sender {
        match self {
            Self::Staff { user_id, .. } => Sender::Staff(*user_id),
            Self::Customer { customer_id, .. } => Sender::Customer(*customer_id),
        }
    }
}

/// The author of a message, or the owner of a read state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Sender {
    /// A staff member.
    Staff(StaffUserId),
    /// A customer or patient.
    Customer(CustomerId),
    /// The system itself (status changes, automated notices).
    System,
}

impl Sender {
    /// The wire name of the sender's kind: `staff`, `customer` or `system`.
    pub const fn kind(&self) -> &'static str {
        match self {
            Self::Staff(_) => "staff",
            Self::Customer(_) => "customer",
            Self::System => "system",
        }
    }

    /// The sender's id, `None` for the system.
    pub fn id(&self) -> Option<uuid::Uuid> {
        match self {
            Self::Staff(id) => Some(*id.as_uuid()),
            Self::Customer(id) => Some(*id.as_uuid()),
            Self::System => None,
        }
    }

    /// Rebuilds a sender from its stored kind and id.
    ///
    /// Returns `None` for an unknown kind, or a staff/customer kind without an
    /// id.
    pub fn from_parts(kind: &str, id: Option<uuid::Uuid>) -> Option<Self> {
        match (kind, id) {
            ("staff", Some(id)) => Some(Self::Staff(StaffUserId::from_uuid(id))),
            ("customer", Some(id)) => Some(Self::Customer(CustomerId::from_uuid(id))),
            ("system", _) => Some(Self::System),
            _ => None,
        }
    }
}

impl fmt::Display for Sender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.id() {
            Some(id) => write!(f, "{}:{id}", self.kind()),
            None => f.write_str(self.kind()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn senders_round_trip_through_their_parts() {
        let cases = [
            Sender::Staff(StaffUserId::new_v4()),
            Sender::Customer(CustomerId::new_v4()),
            Sender::System,
        ];
        for sender in cases {
            assert_eq!(Sender::from_parts(sender.kind(), sender.id()), Some(sender));
        }
    }

    #[test]
    fn unknown_sender_kinds_are_rejected() {
        assert_eq!(Sender::from_parts("robot", Some(uuid::Uuid::nil())), None);
        assert_eq!(Sender::from_parts("staff", None), None);
    }

    #[test]
    fn a_principal_writes_as_its_own_sender() {
        let tenant = TenantId::new_v4();
        let user = StaffUserId::new_v4();
        let customer = CustomerId::new_v4();
        assert_eq!(
            Principal::staff(tenant, user, StaffRole::Admin).as_sender(),
            Sender::Staff(user)
        );
        assert_eq!(
            Principal::customer(tenant, customer).as_sender(),
            Sender::Customer(customer)
        );
    }
}
