-- Staff conversations (SQLite): `direct` conversations of a fixed set of
-- staff and `channel`s with a name, a topic and members; the system notices
-- that membership changes post into the conversation's seq stream.

-- A channel's settings; null for the other kinds.
alter table conversations add column visibility text
    check (visibility is null or visibility in ('public', 'private'));
alter table conversations add column archived_at integer;
alter table conversations add column name text;
-- The name in lower case (folded by the adapter, so both databases fold
-- alike): the key of uniqueness and of channel lists.
alter table conversations add column name_folded text;
alter table conversations add column topic text;
-- A direct conversation's sorted member ids, joined by '.'.
alter table conversations add column direct_key text;

-- One channel per folded name and tenant; it also serves channel lists
-- (by name, from a cursor or a prefix).
create unique index conversations_channel_name_key
    on conversations (tenant_id, name_folded) where kind = 'channel';
-- One direct conversation per set of people and tenant.
create unique index conversations_direct_key
    on conversations (tenant_id, direct_key) where kind = 'direct';

-- The list indexes of customer conversations only: staff conversations have
-- no clinician, so they would otherwise sit inside the shared inbox's range.
-- Staff readers reach their staff conversations through their memberships.
drop index conversations_tenant_activity_idx;
drop index conversations_tenant_status_activity_idx;
drop index conversations_tenant_staff_activity_idx;
drop index conversations_tenant_staff_status_activity_idx;
drop index conversations_tenant_customer_activity_idx;
create index conversations_tenant_activity_idx
    on conversations (tenant_id, last_activity_at desc, id desc) where kind = 'customer';
create index conversations_tenant_status_activity_idx
    on conversations (tenant_id, status, last_activity_at desc, id desc) where kind = 'customer';
create index conversations_tenant_customer_activity_idx
    on conversations (tenant_id, customer_id, last_activity_at desc, id desc)
    where kind = 'customer';
create index conversations_tenant_staff_activity_idx
    on conversations (tenant_id, staff_user_id, last_activity_at desc, id desc)
    where kind = 'customer';
create index conversations_tenant_staff_status_activity_idx
    on conversations (tenant_id, staff_user_id, status, last_activity_at desc, id desc)
    where kind = 'customer';

create table conversation_members (
    tenant_id blob not null,
    conversation_id blob not null references conversations (id) on delete cascade,
    user_id blob not null,
    role text not null check (role in ('owner', 'member')),
    joined_at integer not null,
    primary key (conversation_id, user_id)
) strict, without rowid;

-- A staff member's conversations (lists, unread totals).
create index conversation_members_user_idx
    on conversation_members (tenant_id, user_id, conversation_id);
-- Member pages, earliest joined first.
create index conversation_members_joined_idx
    on conversation_members (conversation_id, joined_at, user_id);

-- What a system notice says: its kind, whom it is about (none for a channel
-- update) and who did it.
alter table messages add column system_event text
    check (system_event is null or (sender_type = 'system'
        and system_event in ('member_added', 'member_removed', 'member_left', 'channel_updated')));
alter table messages add column system_user_id blob;
alter table messages add column system_by_id blob;
