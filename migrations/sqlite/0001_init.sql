-- Conversations, messages and read markers of the chat core (SQLite).
--
-- Conventions: ids are 16-byte uuid blobs, times are integer microseconds
-- since the Unix epoch (they sort and compare exactly), tables are strict so
-- a value of the wrong type is refused instead of silently coerced.

create table conversations (
    id blob not null primary key,
    tenant_id blob not null,
    -- 'customer' today; 'direct' and 'channel' will follow, so the adapter
    -- rejects unknown kinds on read instead of a check constraint that a
    -- later migration could only widen by rebuilding the table.
    kind text not null,
    customer_id blob,
    -- The clinician of a private thread; null for the tenant's shared inbox.
    staff_user_id blob,
    status text not null default 'open'
        check (status in ('open', 'resolved', 'archived')),
    assignee_id blob,
    -- A json array of strings.
    tags text not null default '[]',
    last_seq integer not null default 0 check (last_seq >= 0),
    created_at integer not null,
    updated_at integer not null,
    last_activity_at integer not null,
    check (kind <> 'customer' or customer_id is not null)
) strict;

-- One customer conversation per (tenant, customer, clinician). A null
-- clinician (the shared inbox) is folded to an empty blob, because unique
-- indexes treat nulls as distinct.
create unique index conversations_customer_key
    on conversations (tenant_id, customer_id, coalesce(staff_user_id, x''))
    where kind = 'customer';

-- Conversation lists, newest activity first, keyset-paginated.
create index conversations_tenant_activity_idx
    on conversations (tenant_id, last_activity_at desc, id desc);
create index conversations_tenant_status_activity_idx
    on conversations (tenant_id, status, last_activity_at desc, id desc);
create index conversations_tenant_customer_activity_idx
    on conversations (tenant_id, customer_id, last_activity_at desc, id desc);
create index conversations_tenant_staff_activity_idx
    on conversations (tenant_id, staff_user_id, last_activity_at desc, id desc);
create index conversations_tenant_staff_status_activity_idx
    on conversations (tenant_id, staff_user_id, status, last_activity_at desc, id desc);

create table messages (
    id blob not null primary key,
    tenant_id blob not null,
    conversation_id blob not null references conversations (id) on delete cascade,
    seq integer not null check (seq > 0),
    sender_type text not null check (sender_type in ('staff', 'customer', 'system')),
    -- Null for the system.
    sender_id blob,
    body text,
    reply_to blob references messages (id),
    client_msg_id text,
    created_at integer not null,
    edited_at integer,
    deleted_at integer,
    check (sender_type = 'system' or sender_id is not null)
) strict;

-- Gap-free order within a conversation; also the index of the foreign key
-- and of every page of messages.
create unique index messages_conversation_seq_key on messages (conversation_id, seq);

-- Idempotent sends: one message per (conversation, sender, client_msg_id).
create unique index messages_client_msg_id_key
    on messages (conversation_id, sender_type, coalesce(sender_id, x''), client_msg_id)
    where client_msg_id is not null;

-- Foreign key index for reply_to.
create index messages_reply_to_idx on messages (reply_to) where reply_to is not null;

create table read_states (
    tenant_id blob not null,
    conversation_id blob not null references conversations (id) on delete cascade,
    reader_type text not null check (reader_type in ('staff', 'customer', 'system')),
    -- The nil uuid for the system, so the primary key stays not null.
    reader_id blob not null,
    last_read_seq integer not null default 0 check (last_read_seq >= 0),
    last_delivered_seq integer not null default 0 check (last_delivered_seq >= last_read_seq),
    updated_at integer not null,
    primary key (conversation_id, reader_type, reader_id)
) strict, without rowid;
