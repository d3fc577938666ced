-- Conversations, messages and read markers of the chat core.
--
-- Every table carries tenant_id and every query filters by it. Timestamps are
-- timestamptz (microsecond precision). Index names are referenced by the
-- adapter (constraint-name -> domain outcome), so renaming one needs a code
-- change too.

create table conversations (
    id uuid primary key,
    tenant_id uuid not null,
    kind text not null,
    -- The customer or patient of a `customer` conversation.
    customer_id uuid,
    -- The clinician of a private customer thread; null for the shared inbox.
    staff_user_id uuid,
    status text not null default 'open',
    assignee_id uuid,
    tags text[] not null default '{}',
    -- The seq of the newest message; 0 before the first one. Appends bump it
    -- under the row lock, which is what makes seq gap-free.
    last_seq bigint not null default 0,
    created_at timestamptz not null,
    updated_at timestamptz not null,
    last_activity_at timestamptz not null,
    constraint conversations_kind_check check (kind in ('customer')),
    constraint conversations_status_check check (status in ('open', 'resolved', 'archived')),
    constraint conversations_last_seq_check check (last_seq >= 0),
    constraint conversations_customer_check check (kind <> 'customer' or customer_id is not null)
);

-- One customer conversation per (tenant, customer, clinician); the shared
-- inbox (no clinician) is unique too, hence nulls not distinct. It also serves
-- the customer scope of the lists (a customer has a handful of rows).
create unique index conversations_customer_key
    on conversations (tenant_id, customer_id, staff_user_id) nulls not distinct
    where kind = 'customer';

-- Conversation lists: keyset pagination by (last_activity_at desc, id desc).
-- Admin scope, with and without the status filter.
create index conversations_tenant_activity_idx
    on conversations (tenant_id, last_activity_at desc, id desc);
create index conversations_tenant_status_activity_idx
    on conversations (tenant_id, status, last_activity_at desc, id desc);
-- Staff scope: the shared inbox (staff_user_id is null) and one clinician's
-- threads are two ranges of this index, merged in order.
create index conversations_tenant_staff_activity_idx
    on conversations (tenant_id, staff_user_id, last_activity_at desc, id desc);

create table messages (
    id uuid primary key,
    tenant_id uuid not null,
    conversation_id uuid not null references conversations (id) on delete cascade,
    seq bigint not null,
    sender_type text not null,
    sender_id uuid,
    body text,
    reply_to uuid references messages (id) on delete set null,
    client_msg_id text,
    created_at timestamptz not null,
    edited_at timestamptz,
    deleted_at timestamptz,
    constraint messages_seq_check check (seq > 0),
    constraint messages_sender_type_check check (sender_type in ('staff', 'customer', 'system')),
    constraint messages_sender_id_check check ((sender_type = 'system') = (sender_id is null))
);

-- Gap-free, unique seq per conversation; serves paging by seq, the last
-- message of a list row, and the conversation_id foreign key.
create unique index messages_conversation_seq_key on messages (conversation_id, seq);

-- Idempotent sends: one message per (conversation, sender, client_msg_id).
-- The system sender has no id, hence nulls not distinct. client_msg_id comes
-- second so that the replay lookup is a narrow range scan.
create unique index messages_client_msg_id_key
    on messages (conversation_id, client_msg_id, sender_type, sender_id) nulls not distinct
    where client_msg_id is not null;

-- The reply_to foreign key (checked on delete of the target).
create index messages_reply_to_idx on messages (reply_to) where reply_to is not null;

create table read_states (
    tenant_id uuid not null,
    conversation_id uuid not null references conversations (id) on delete cascade,
    reader_type text not null,
    -- The reader's id; the nil uuid for the system, which has none.
    reader_id uuid not null,
    last_read_seq bigint not null default 0,
    last_delivered_seq bigint not null default 0,
    updated_at timestamptz not null,
    primary key (conversation_id, reader_type, reader_id),
    constraint read_states_reader_type_check check (reader_type in ('staff', 'customer', 'system')),
    constraint read_states_seq_check check (last_read_seq >= 0 and last_delivered_seq >= 0)
);

-- One reader's markers across the tenant: the unread total of a scope.
create index read_states_reader_idx on read_states (tenant_id, reader_type, reader_id);
