-- Staff conversations with members: `direct` conversations (a fixed set of
-- staff, identified by direct_key) and `channel`s (named, public or private),
-- their members, and the system notices membership changes post into the
-- conversation's seq stream.
--
-- As in 0001, the adapter maps some index names to domain outcomes
-- (conversations_channel_name_key -> the name is taken).

alter table conversations
    drop constraint conversations_kind_check,
    add constraint conversations_kind_check check (kind in ('customer', 'direct', 'channel')),
    -- A channel's visibility: 'public' or 'private'.
    add column visibility text,
    -- When a channel was archived; null while active.
    add column archived_at timestamptz,
    -- A channel's name as given, and folded to lower case by the adapter
    -- (ChannelName::folded, so that every adapter folds alike); compared
    -- byte-wise, so that ordering and prefixes are the same everywhere.
    add column name text,
    add column name_folded text collate "C",
    -- A channel's topic, if set.
    add column topic text,
    -- A direct conversation's members: their ids in order, joined by '.'.
    add column direct_key text,
    add constraint conversations_visibility_check
        check (visibility is null or visibility in ('public', 'private')),
    add constraint conversations_channel_check
        check ((kind = 'channel')
            = (name is not null and name_folded is not null and visibility is not null)),
    add constraint conversations_channel_only_check
        check (kind = 'channel' or (topic is null and archived_at is null)),
    add constraint conversations_direct_check check ((kind = 'direct') = (direct_key is not null)),
    add constraint conversations_staff_check
        check (kind = 'customer' or (customer_id is null and staff_user_id is null));

-- One channel per name (ignoring case) and tenant; also the channel list,
-- by folded name, and its name prefixes.
create unique index conversations_channel_name_key
    on conversations (tenant_id, name_folded) where kind = 'channel';

-- One direct conversation per set of people and tenant.
create unique index conversations_direct_key
    on conversations (tenant_id, direct_key) where kind = 'direct';

-- The customer lists read customer conversations only: their ranges must
-- not run through staff conversations (which have no clinician either, so
-- they would land in the shared inbox's range). Staff conversations are
-- listed through their members instead.
drop index conversations_tenant_activity_idx;
drop index conversations_tenant_status_activity_idx;
drop index conversations_tenant_staff_activity_idx;
create index conversations_tenant_activity_idx
    on conversations (tenant_id, last_activity_at desc, id desc)
    where kind = 'customer';
create index conversations_tenant_status_activity_idx
    on conversations (tenant_id, status, last_activity_at desc, id desc)
    where kind = 'customer';
create index conversations_tenant_staff_activity_idx
    on conversations (tenant_id, staff_user_id, last_activity_at desc, id desc)
    where kind = 'customer';

create table conversation_members (
    tenant_id uuid not null,
    conversation_id uuid not null references conversations (id) on delete cascade,
    user_id uuid not null,
    role text not null,
    joined_at timestamptz not null,
    primary key (conversation_id, user_id),
    constraint conversation_members_role_check check (role in ('owner', 'member'))
);

-- A staff member's conversations (lists, unread totals).
create index conversation_members_user_idx
    on conversation_members (tenant_id, user_id, conversation_id);
-- Member pages, earliest joined first.
create index conversation_members_joined_idx
    on conversation_members (conversation_id, joined_at, user_id);
-- The owners of a channel, counted under its lock when one may go.
create index conversation_members_owner_idx
    on conversation_members (conversation_id) where role = 'owner';

-- System notices: what happened, to whom (none for a settings change), by
-- whom. Only the system sends them.
alter table messages
    add column system_event text,
    add column system_user_id uuid,
    add column system_by_id uuid,
    add constraint messages_system_event_check
        check (system_event is null or system_event in
            ('member_added', 'member_removed', 'member_left', 'channel_updated')),
    add constraint messages_system_sender_check
        check (system_event is null or sender_type = 'system'),
    add constraint messages_system_parts_check
        check ((system_event is null) = (system_by_id is null)
            and (system_event is not null or system_user_id is null));
