//! Permission rules as pure functions of (principal, conversation, action).
//!
//! Two ways to say no: [`Denied::NotFound`] when the principal may not even
//! know the conversation exists (other tenant, another customer's thread,
//! another clinician's private thread), and [`Denied::Forbidden`] when they
//! may see it but not do this.

use crate::conversation::{Conversation, ConversationKind};
use crate::ids::{CustomerId, StaffUserId, TenantId};
use crate::membership::{MemberRole, Visibility};
use crate::principal::Principal;

/// Something a principal wants to do to an existing conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// See the conversation and its messages.
    Read,
    /// Send a message into it.
    Send,
    /// Move one's own read or delivered marker.
    MarkRead,
    /// Change status, assignee or tags of a customer conversation (staff
    /// only).
    Update,
    /// React to a message (whoever may send).
    React,
    /// Pin or unpin a message (staff in customer conversations, members
    /// elsewhere).
    Pin,
    /// Add members to a channel (owners and admins; any member of a public
    /// channel).
    AddMembers,
    /// Remove members or change their roles (owners and admins).
    ManageMembers,
    /// Rename a channel, change its topic or visibility (owners and admins).
    Rename,
    /// Archive a channel or bring it back (owners and admins).
    Archive,
    /// Join a public channel.
    Join,
    /// Leave a channel.
    Leave,
}

impl Action {
    /// Every action, for tables.
    pub const ALL: [Self; 12] = [
        Self::Read,
        Self::Send,
        Self::MarkRead,
        Self::Update,
        Self::React,
        Self::Pin,
        Self::AddMembers,
        Self::ManageMembers,
        Self::Rename,
        Self::Archive,
        Self::Join,
        Self::Leave,
    ];

    /// Whether it writes into the conversation, which an archived channel
    /// refuses (archiving itself and marking read excepted).
    const fn writes(self) -> bool {
        !matches!(self, Self::Read | Self::MarkRead | Self::Archive)
    }
}

/// Why an action is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// The principal may not know the conversation exists.
    #[error("conversation not found")]
    NotFound,
    /// The principal may see the conversation but not do this.
    #[error("not allowed to do this")]
    Forbidden,
    /// The principal could do this, but the channel is archived (read-only
    /// until it is brought back).
    #[error("the channel is archived")]
    Archived,
}

/// Which conversations of a tenant a principal may read: the filter behind
/// conversation lists and unread totals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConversationScope {
    /// Every conversation of the tenant (admins).
    All {
        /// The tenant.
        tenant: TenantId,
    },
    /// The shared inbox plus the private threads of one clinician (staff).
    InboxAndClinician {
        /// The tenant.
        tenant: TenantId,
        /// The staff member.
        clinician: StaffUserId,
    },
    /// One customer's conversations.
    Customer {
        /// The tenant.
        tenant: TenantId,
        /// The customer.
        customer_id: CustomerId,
    },
}

impl ConversationScope {
    /// The tenant the scope is within.
    pub const fn tenant(&self) -> TenantId {
        match self {
            Self::All { tenant }
            | Self::InboxAndClinician { tenant, .. }
            | Self::Customer { tenant, .. } => *tenant,
        }
    }
}

/// The customer conversations `principal` may read (admins read every
/// conversation of their tenant). Staff also take part in the direct
/// conversations and channels they are members of, which lists add to this
/// scope by membership.
pub const fn conversation_scope(principal: &Principal) -> ConversationScope {
    match *principal {
        Principal::Staff {
            tenant,
            role: crate::StaffRole::Admin,
            ..
        } => ConversationScope::All { tenant },
        Principal::Staff {
            tenant, user_id, ..
        } => ConversationScope::InboxAndClinician {
            tenant,
            clinician: user_id,
        },
        Principal::Customer {
            tenant,
            customer_id,
        } => ConversationScope::Customer {
            tenant,
            customer_id,
        },
    }
}

/// What decides who may reach a conversation: its tenant and its kind (with
/// its participants).
///
/// The tenant never changes. Whether the rest may change depends on the
/// kind, as [`ConversationAccess::never_changes`] says: a copy may be kept
/// to check later actions without loading the conversation again only while
/// it says `true`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConversationAccess {
    /// The tenant that owns the conversation.
    pub tenant: TenantId,
    /// Its kind and participants.
    pub kind: ConversationKind,
}

impl ConversationAccess {
    /// Whether these facts hold for the conversation's whole life, so that
    /// a copy never goes stale.
    ///
    /// A customer conversation's facts are its identity (tenant, customer,
    /// clinician of a private thread; the assignee is no access fact) and
    /// never change. A kind whose readers can change (members joining or
    /// leaving, a channel's visibility or archiving) must answer `false`,
    /// unless every holder of a copy drops it on each such change.
    ///
    /// ```
    /// use chat_domain::{ConversationAccess, ConversationKind, CustomerId, TenantId};
    ///
    /// let access = ConversationAccess {
    ///     tenant: TenantId::new_v4(),
    ///     kind: ConversationKind::Customer { customer_id: CustomerId::new_v4(), clinician: None },
    /// };
    /// assert!(access.never_changes());
    /// ```
    pub const fn never_changes(&self) -> bool {
        // No wildcard: a new kind must decide.
        match self.kind {
            ConversationKind::Customer { .. } => true,
            // Readers are members, who change (and a channel's visibility
            // and archiving with them).
            ConversationKind::Direct | ConversationKind::Channel { .. } => false,
        }
    }
}

impl Conversation {
    /// The facts the permission rules decide by.
    pub const fn access(&self) -> ConversationAccess {
        ConversationAccess {
            tenant: self.tenant,
            kind: self.kind,
        }
    }
}

fn can_read(
    principal: &Principal,
    conversation: &ConversationAccess,
    member: Option<MemberRole>,
) -> bool {
    if principal.tenant() != conversation.tenant {
        return false;
    }
    match (principal, conversation.kind) {
        (
            Principal::Customer { customer_id, .. },
            ConversationKind::Customer {
                customer_id: owner, ..
            },
        ) => *customer_id == owner,
        // Customers never reach staff conversations.
        (
            Principal::Customer { .. },
            ConversationKind::Direct | ConversationKind::Channel { .. },
        ) => false,
        (Principal::Staff { .. }, _) if principal.is_admin() => true,
        (Principal::Staff { user_id, .. }, ConversationKind::Customer { clinician, .. }) => {
            clinician.is_none_or(|c| c == *user_id)
        }
        (
            Principal::Staff { .. },
            ConversationKind::Channel {
                visibility: Visibility::Public,
                ..
            },
        ) => true,
        (Principal::Staff { .. }, ConversationKind::Direct | ConversationKind::Channel { .. }) => {
            member.is_some()
        }
    }
}

/// Whether `principal`, a member of `conversation` with role `member` (for
/// kinds with members; `None` when they are not one, and for customer
/// conversations), may do `action` on it.
///
/// # Errors
/// [`Denied::NotFound`] when the conversation is not readable by the
/// principal at all, [`Denied::Forbidden`] when it is readable but the action
/// is not allowed, [`Denied::Archived`] when it would be allowed but the
/// channel is archived.
pub fn authorize(
    principal: &Principal,
    conversation: &Conversation,
    member: Option<MemberRole>,
    action: Action,
) -> Result<(), Denied> {
    authorize_access(principal, &conversation.access(), member, action)
}

/// [`authorize`] from a conversation's [`ConversationAccess`] alone: the
/// same answer, without the conversation's changing fields.
///
/// # Errors
/// As [`authorize`].
pub fn authorize_access(
    principal: &Principal,
    conversation: &ConversationAccess,
    member: Option<MemberRole>,
    action: Action,
) -> Result<(), Denied> {
    if !can_read(principal, conversation, member) {
        return Err(Denied::NotFound);
    }
    let allowed = match conversation.kind {
        ConversationKind::Customer { .. } => match action {
            Action::Read | Action::Send | Action::MarkRead | Action::React => true,
            Action::Update | Action::Pin => principal.is_staff(),
            Action::AddMembers
            | Action::ManageMembers
            | Action::Rename
            | Action::Archive
            | Action::Join
            | Action::Leave => false,
        },
        // A fixed set of people: nobody manages it, nobody joins or leaves.
        ConversationKind::Direct => match action {
            Action::Read => true,
            Action::Send | Action::MarkRead | Action::React | Action::Pin => member.is_some(),
            _ => false,
        },
        ConversationKind::Channel { visibility, .. } => {
            let manager = member == Some(MemberRole::Owner) || principal.is_admin();
            match action {
                Action::Read => true,
                Action::Send | Action::MarkRead | Action::React | Action::Pin | Action::Leave => {
                    member.is_some()
                }
                Action::Update => false,
                Action::AddMembers => {
                    manager || (member.is_some() && visibility == Visibility::Public)
                }
                Action::ManageMembers | Action::Rename | Action::Archive => manager,
                Action::Join => visibility == Visibility::Public,
            }
        }
    };
    if !allowed {
        return Err(Denied::Forbidden);
    }
    if conversation.kind.archived_at().is_some() && action.writes() {
        return Err(Denied::Archived);
    }
    Ok(())
}

/// A change to a stored message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageChange {
    /// Replace its text (its sender only).
    Edit,
    /// Delete it, softly: it keeps its place in the sequence, not its
    /// content (its sender, or a tenant admin for moderation).
    Delete,
}

/// Whether `principal` may make `change` to `message` of `conversation`.
///
/// # Errors
/// [`Denied::NotFound`] when the principal may not read the conversation or
/// the message is not of it; [`Denied::Forbidden`] when they may read it
/// but the message is not theirs to change.
pub fn authorize_message_change(
    principal: &Principal,
    conversation: &Conversation,
    member: Option<MemberRole>,
    message: &crate::Message,
    change: MessageChange,
) -> Result<(), Denied> {
    authorize(principal, conversation, member, Action::Read)?;
    if message.conversation_id != conversation.id || message.tenant != conversation.tenant {
        return Err(Denied::NotFound);
    }
    let own = message.sender == principal.as_sender();
    match change {
        MessageChange::Edit if own => {}
        MessageChange::Delete if own || principal.is_admin() => {}
        MessageChange::Edit | MessageChange::Delete => return Err(Denied::Forbidden),
    }
    // One's own messages change only where one may still send (a member
    // who left cannot, nor anybody in an archived channel); an admin
    // deleting moderates, wherever.
    if change == MessageChange::Delete && principal.is_admin() && !own {
        return Ok(());
    }
    authorize(principal, conversation, member, Action::Send)
}

/// Whether `principal` may get or create `conversation` (a prospective one,
/// not stored yet).
///
/// Staff may open the shared inbox with any customer of their tenant and a
/// private thread with themselves as clinician; admins may also open one for
/// another clinician. Customers never create conversations: staff invite them.
///
/// # Errors
/// [`Denied::Forbidden`] for customers and for staff naming another
/// clinician; [`Denied::NotFound`] across tenants.
pub fn authorize_create(principal: &Principal, conversation: &Conversation) -> Result<(), Denied> {
    if principal.tenant() != conversation.tenant {
        return Err(Denied::NotFound);
    }
    // Staff open what they could read once it exists: a customer
    // conversation by its rules, a direct conversation or a channel as one
    // of its members.
    let member = conversation
        .kind
        .has_members()
        .then_some(MemberRole::Member);
    if principal.is_staff() && can_read(principal, &conversation.access(), member) {
        Ok(())
    } else {
        Err(Denied::Forbidden)
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::{ConversationId, ConversationStatus, Seq, StaffRole, Tags};

    struct World {
        tenant: TenantId,
        other_tenant: TenantId,
        customer: CustomerId,
        other_customer: CustomerId,
        clinician: StaffUserId,
        colleague: StaffUserId,
        admin: StaffUserId,
    }

    fn world() -> World {
        World {
            tenant: TenantId::new_v4(),
            other_tenant: TenantId::new_v4(),
            customer: CustomerId::new_v4(),
            other_customer: CustomerId::new_v4(),
            clinician: StaffUserId::new_v4(),
            colleague: StaffUserId::new_v4(),
            admin: StaffUserId::new_v4(),
        }
    }

    fn conversation(
        tenant: TenantId,
        customer: CustomerId,
        clinician: Option<StaffUserId>,
    ) -> Conversation {
        let at = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        Conversation {
            id: ConversationId::new_v7(),
            tenant,
            kind: ConversationKind::Customer {
                customer_id: customer,
                clinician,
            },
            status: ConversationStatus::Open,
            assignee: None,
            tags: Tags::default(),
            channel: None,
            last_seq: Seq::ZERO,
            created_at: at,
            updated_at: at,
            last_activity_at: at,
        }
    }

    /// (rule, who, on what, doing what, expected outcome)
    type AccessRow<'a> = (
        &'a str,
        Principal,
        &'a Conversation,
        Action,
        Result<(), Denied>,
    );

    #[test]
    fn access_rules() {
        let w = world();
        let inbox = conversation(w.tenant, w.customer, None);
        let private = conversation(w.tenant, w.customer, Some(w.clinician));
        let staff = |user| Principal::staff(w.tenant, user, StaffRole::Staff);
        let admin = Principal::staff(w.tenant, w.admin, StaffRole::Admin);
        let foreign_staff = Principal::staff(w.other_tenant, w.colleague, StaffRole::Staff);
        let foreign_admin = Principal::staff(w.other_tenant, w.admin, StaffRole::Admin);
        let customer = Principal::customer(w.tenant, w.customer);
        let other_customer = Principal::customer(w.tenant, w.other_customer);
        let foreign_customer = Principal::customer(w.other_tenant, w.customer);

        use Action::*;
        use Denied::*;
        #[rustfmt::skip]
        let table: Vec<AccessRow<'_>> = vec![
            ("staff of the tenant reads the shared inbox",      staff(w.colleague), &inbox,   Read,     Ok(())),
            ("staff of the tenant answers the shared inbox",    staff(w.colleague), &inbox,   Send,     Ok(())),
            ("staff of the tenant marks the inbox read",        staff(w.colleague), &inbox,   MarkRead, Ok(())),
            ("staff of the tenant updates the shared inbox",    staff(w.colleague), &inbox,   Update,   Ok(())),
            ("staff of another tenant cannot see the inbox",    foreign_staff,      &inbox,   Read,     Err(NotFound)),
            ("staff of another tenant cannot send",             foreign_staff,      &inbox,   Send,     Err(NotFound)),
            ("admin of another tenant cannot see the inbox",    foreign_admin,      &inbox,   Read,     Err(NotFound)),
            ("customer reads their own conversation",           customer,           &inbox,   Read,     Ok(())),
            ("customer sends into their own conversation",      customer,           &inbox,   Send,     Ok(())),
            ("customer marks their own conversation read",      customer,           &inbox,   MarkRead, Ok(())),
            ("customer cannot update (staff-only action)",      customer,           &inbox,   Update,   Err(Forbidden)),
            ("customer reads their private thread",             customer,           &private, Read,     Ok(())),
            ("customer cannot update their private thread",     customer,           &private, Update,   Err(Forbidden)),
            ("another customer of the tenant cannot see it",    other_customer,     &inbox,   Read,     Err(NotFound)),
            ("another customer cannot send into it",            other_customer,     &inbox,   Send,     Err(NotFound)),
            ("another customer cannot even try to update it",   other_customer,     &inbox,   Update,   Err(NotFound)),
            ("customer of another tenant cannot see it",        foreign_customer,   &inbox,   Read,     Err(NotFound)),
            ("assigned clinician reads the private thread",     staff(w.clinician), &private, Read,     Ok(())),
            ("assigned clinician answers the private thread",   staff(w.clinician), &private, Send,     Ok(())),
            ("assigned clinician updates the private thread",   staff(w.clinician), &private, Update,   Ok(())),
            ("another staff member cannot see the thread",      staff(w.colleague), &private, Read,     Err(NotFound)),
            ("another staff member cannot send into it",        staff(w.colleague), &private, Send,     Err(NotFound)),
            ("another staff member cannot update it",           staff(w.colleague), &private, Update,   Err(NotFound)),
            ("admin reads the private thread",                  admin,              &private, Read,     Ok(())),
            ("admin sends into the private thread",             admin,              &private, Send,     Ok(())),
            ("admin updates the private thread",                admin,              &private, Update,   Ok(())),
            ("admin reads the shared inbox",                    admin,              &inbox,   Read,     Ok(())),
        ];
        for (rule, principal, conversation, action, expected) in table {
            assert_eq!(
                authorize(&principal, conversation, None, action),
                expected,
                "{rule}"
            );
            // The access facts alone give the same answer, whatever the
            // conversation's changing fields say.
            let mut changed = conversation.clone();
            changed.status = ConversationStatus::Archived;
            changed.assignee = Some(w.admin);
            changed.last_seq = Seq::from_u64(9).unwrap();
            assert_eq!(
                authorize_access(&principal, &changed.access(), None, action),
                expected,
                "{rule} (access facts)"
            );
        }
    }

    #[test]
    fn creation_rules() {
        let w = world();
        let inbox = conversation(w.tenant, w.customer, None);
        let own_thread = conversation(w.tenant, w.customer, Some(w.clinician));
        let foreign_inbox = conversation(w.other_tenant, w.customer, None);
        let clinician = Principal::staff(w.tenant, w.clinician, StaffRole::Staff);
        let colleague = Principal::staff(w.tenant, w.colleague, StaffRole::Staff);
        let admin = Principal::staff(w.tenant, w.admin, StaffRole::Admin);
        let customer = Principal::customer(w.tenant, w.customer);

        #[rustfmt::skip]
        let table: Vec<(&str, Principal, &Conversation, Result<(), Denied>)> = vec![
            ("staff opens the shared inbox with a customer",    colleague, &inbox,         Ok(())),
            ("clinician opens a private thread for themself",   clinician, &own_thread,    Ok(())),
            ("staff cannot open a thread for another clinician", colleague, &own_thread,   Err(Denied::Forbidden)),
            ("admin opens a thread for any clinician",          admin,     &own_thread,    Ok(())),
            ("customer cannot create conversations",            customer,  &inbox,         Err(Denied::Forbidden)),
            ("nobody creates in another tenant",                admin,     &foreign_inbox, Err(Denied::NotFound)),
        ];
        for (rule, principal, conversation, expected) in table {
            assert_eq!(
                authorize_create(&principal, conversation),
                expected,
                "{rule}"
            );
        }
    }

    /// (rule, who, conversation, message, change, expected outcome)
    type ChangeRow<'a> = (
        &'a str,
        Principal,
        &'a Conversation,
        &'a crate::Message,
        MessageChange,
        Result<(), Denied>,
    );

    #[test]
    fn message_change_rules() {
        let w = world();
        let inbox = conversation(w.tenant, w.customer, None);
        let private = conversation(w.tenant, w.customer, Some(w.clinician));
        let message = |conversation: &Conversation, sender: crate::Sender| crate::Message {
            id: crate::MessageId::new_v7(),
            tenant: conversation.tenant,
            conversation_id: conversation.id,
            seq: Seq::ZERO.next(),
            sender,
            body: None,
            attachments: Vec::new(),
            reply_to: None,
            client_msg_id: None,
            created_at: conversation.created_at,
            edited_at: None,
            deleted_at: None,
            system: None,
        };
        let customer = Principal::customer(w.tenant, w.customer);
        let colleague = Principal::staff(w.tenant, w.colleague, StaffRole::Staff);
        let clinician = Principal::staff(w.tenant, w.clinician, StaffRole::Staff);
        let admin = Principal::staff(w.tenant, w.admin, StaffRole::Admin);
        let foreign_admin = Principal::staff(w.other_tenant, w.admin, StaffRole::Admin);
        let customers = message(&inbox, customer.as_sender());
        let colleagues = message(&inbox, colleague.as_sender());
        let clinicians = message(&private, clinician.as_sender());
        let elsewhere = message(&private, customer.as_sender());

        use MessageChange::*;
        #[rustfmt::skip]
        let table: Vec<ChangeRow<'_>> = vec![
            ("a customer edits their own message",           customer,      &inbox,   &customers,  Edit,   Ok(())),
            ("a customer deletes their own message",         customer,      &inbox,   &customers,  Delete, Ok(())),
            ("a customer cannot edit staff's message",       customer,      &inbox,   &colleagues, Edit,   Err(Denied::Forbidden)),
            ("a customer cannot delete staff's message",     customer,      &inbox,   &colleagues, Delete, Err(Denied::Forbidden)),
            ("staff cannot edit a colleague's message",      clinician,     &inbox,   &colleagues, Edit,   Err(Denied::Forbidden)),
            ("staff cannot delete a colleague's message",    clinician,     &inbox,   &colleagues, Delete, Err(Denied::Forbidden)),
            ("staff edit their own message",                 colleague,     &inbox,   &colleagues, Edit,   Ok(())),
            ("an admin cannot edit someone else's message",  admin,         &inbox,   &customers,  Edit,   Err(Denied::Forbidden)),
            ("an admin deletes any message (moderation)",    admin,         &inbox,   &customers,  Delete, Ok(())),
            ("another tenant's admin sees nothing",          foreign_admin, &inbox,   &customers,  Delete, Err(Denied::NotFound)),
            ("staff outside a private thread see nothing",   colleague,     &private, &clinicians, Delete, Err(Denied::NotFound)),
            ("a message of another conversation is unknown", customer,      &inbox,   &elsewhere,  Edit,   Err(Denied::NotFound)),
        ];
        for (rule, principal, conversation, message, change, expected) in table {
            assert_eq!(
                authorize_message_change(&principal, conversation, None, message, change),
                expected,
                "{rule}"
            );
        }
    }

    #[test]
    fn customer_conversations_have_access_facts_that_never_change() {
        let w = world();
        #[rustfmt::skip]
        let cases = [
            ("shared inbox",   conversation(w.tenant, w.customer, None),              true),
            ("private thread", conversation(w.tenant, w.customer, Some(w.clinician)), true),
        ];
        for (label, conversation, fixed) in cases {
            assert_eq!(conversation.access().never_changes(), fixed, "{label}");
        }
    }

    /// The rules of the kinds with members, for every (principal, kind)
    /// pair, one letter per action of [`Action::ALL`]: `y` allowed, `n` not
    /// found, `f` forbidden, `a` refused as archived.
    #[test]
    fn member_kind_rules() {
        use crate::membership::MemberRole::{Member, Owner};
        let w = world();
        let at = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let of = |kind| ConversationAccess {
            tenant: w.tenant,
            kind,
        };
        let direct = of(ConversationKind::Direct);
        let channel = |visibility, archived_at| {
            of(ConversationKind::Channel {
                visibility,
                archived_at,
            })
        };
        let public = channel(Visibility::Public, None);
        let private = channel(Visibility::Private, None);
        let archived = channel(Visibility::Public, Some(at));
        let archived_private = channel(Visibility::Private, Some(at));
        let staff = Principal::staff(w.tenant, w.colleague, StaffRole::Staff);
        let admin = Principal::staff(w.tenant, w.admin, StaffRole::Admin);
        let customer = Principal::customer(w.tenant, w.customer);
        let foreign = Principal::staff(w.other_tenant, w.colleague, StaffRole::Staff);
        let foreign_admin = Principal::staff(w.other_tenant, w.admin, StaffRole::Admin);

        // Actions:            R S M U R P A M R A J L
        //                     e e a p e i d a e r o e
        //                     a n r d a n d n n c i a
        #[rustfmt::skip]
        let table: Vec<(&str, Principal, Option<MemberRole>, ConversationAccess, &str)> = vec![
            ("member, direct",               staff,         Some(Member), direct,           "yyyfyyffffff"),
            ("owner role, direct",           staff,         Some(Owner),  direct,           "yyyfyyffffff"),
            ("non-member staff, direct",     staff,         None,         direct,           "nnnnnnnnnnnn"),
            ("admin, direct",                admin,         None,         direct,           "yfffffffffff"),
            ("customer, direct",             customer,      None,         direct,           "nnnnnnnnnnnn"),
            ("other tenant, direct",         foreign,       Some(Member), direct,           "nnnnnnnnnnnn"),
            ("member, public",               staff,         Some(Member), public,           "yyyfyyyfffyy"),
            ("owner, public",                staff,         Some(Owner),  public,           "yyyfyyyyyyyy"),
            ("non-member staff, public",     staff,         None,         public,           "yfffffffffyf"),
            ("admin, public",                admin,         None,         public,           "yfffffyyyyyf"),
            ("customer, public",             customer,      None,         public,           "nnnnnnnnnnnn"),
            ("other tenant, public",         foreign,       None,         public,           "nnnnnnnnnnnn"),
            ("other tenant admin, public",   foreign_admin, None,         public,           "nnnnnnnnnnnn"),
            ("member, private",              staff,         Some(Member), private,          "yyyfyyfffffy"),
            ("owner, private",               staff,         Some(Owner),  private,          "yyyfyyyyyyfy"),
            ("non-member staff, private",    staff,         None,         private,          "nnnnnnnnnnnn"),
            ("admin, private",               admin,         None,         private,          "yfffffyyyyff"),
            ("customer, private",            customer,      None,         private,          "nnnnnnnnnnnn"),
            ("member, archived",             staff,         Some(Member), archived,         "yayfaaafffaa"),
            ("owner, archived",              staff,         Some(Owner),  archived,         "yayfaaaaayaa"),
            ("non-member staff, archived",   staff,         None,         archived,         "yfffffffffaf"),
            ("admin, archived",              admin,         None,         archived,         "yfffffaaayaf"),
            ("customer, archived",           customer,      None,         archived,         "nnnnnnnnnnnn"),
            ("other tenant, archived",       foreign,       Some(Owner),  archived,         "nnnnnnnnnnnn"),
            ("owner, archived private",      staff,         Some(Owner),  archived_private, "yayfaaaaayfa"),
            ("non-member, archived private", staff,         None,         archived_private, "nnnnnnnnnnnn"),
        ];
        for (rule, principal, member, access, letters) in table {
            let letters: Vec<char> = letters.chars().filter(|c| !c.is_whitespace()).collect();
            assert_eq!(
                letters.len(),
                Action::ALL.len(),
                "{rule}: one letter per action"
            );
            for (action, letter) in Action::ALL.into_iter().zip(letters) {
                let expected = match letter {
                    'y' => Ok(()),
                    'n' => Err(Denied::NotFound),
                    'f' => Err(Denied::Forbidden),
                    'a' => Err(Denied::Archived),
                    other => panic!("{rule}: unknown letter {other}"),
                };
                assert_eq!(
                    authorize_access(&principal, &access, member, action),
                    expected,
                    "{rule}: {action:?}"
                );
            }
            assert!(!access.never_changes(), "{rule}: members change");
        }
    }

    #[test]
    fn staff_create_staff_conversations_and_customers_do_not() {
        use crate::membership::{
            ChannelName, ChannelProfile, DirectMembers, NewChannel, NewDirect,
        };
        let w = world();
        let at = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let direct = NewDirect {
            id: ConversationId::new_v7(),
            tenant: w.tenant,
            members: DirectMembers::new(w.colleague, &[w.clinician]).unwrap(),
            now: at,
        }
        .prospective();
        let channel = NewChannel {
            id: ConversationId::new_v7(),
            tenant: w.tenant,
            profile: ChannelProfile {
                name: ChannelName::parse("rx").unwrap(),
                topic: None,
            },
            visibility: Visibility::Private,
            owner: w.colleague,
            members: vec![],
            now: at,
        }
        .prospective();
        let staff = Principal::staff(w.tenant, w.colleague, StaffRole::Staff);
        let customer = Principal::customer(w.tenant, w.customer);
        let foreign = Principal::staff(w.other_tenant, w.colleague, StaffRole::Staff);
        for conversation in [&direct, &channel] {
            assert_eq!(authorize_create(&staff, conversation), Ok(()));
            assert_eq!(
                authorize_create(&customer, conversation),
                Err(Denied::Forbidden)
            );
            assert_eq!(
                authorize_create(&foreign, conversation),
                Err(Denied::NotFound)
            );
        }
    }

    #[test]
    fn scopes_follow_the_principal() {
        let w = world();
        assert_eq!(
            conversation_scope(&Principal::staff(w.tenant, w.admin, StaffRole::Admin)),
            ConversationScope::All { tenant: w.tenant }
        );
        assert_eq!(
            conversation_scope(&Principal::staff(w.tenant, w.clinician, StaffRole::Staff)),
            ConversationScope::InboxAndClinician {
                tenant: w.tenant,
                clinician: w.clinician
            }
        );
        let scope = conversation_scope(&Principal::customer(w.tenant, w.customer));
        assert_eq!(
            scope,
            ConversationScope::Customer {
                tenant: w.tenant,
                customer_id: w.customer
            }
        );
        assert_eq!(scope.tenant(), w.tenant);
    }
}
