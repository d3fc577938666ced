-- Attachments: metadata of uploaded files. The bytes live in a FileStorage
-- (local folder or S3) under storage_key; this table is the only way to
-- reach them.
--
-- An upload belongs to one conversation and one uploader. message_id is
-- null until a send of that uploader, in that conversation, attaches it
-- (inside the append transaction); uploads left unattached are swept as
-- orphans.

create table attachments (
    id uuid primary key,
    tenant_id uuid not null,
    conversation_id uuid not null references conversations (id) on delete cascade,
    uploader_type text not null,
    uploader_id uuid,
    -- Display name, sanitised; never part of a path.
    name text not null,
    content_type text not null,
    size bigint not null,
    -- sha256 of the bytes, lowercase hex.
    sha256 text not null,
    storage_key text not null,
    created_at timestamptz not null,
    message_id uuid references messages (id) on delete set null,
    -- Order within the message.
    position smallint,
    constraint attachments_uploader_type_check
        check (uploader_type in ('staff', 'customer', 'system')),
    constraint attachments_uploader_id_check
        check ((uploader_type = 'system') = (uploader_id is null)),
    constraint attachments_size_check check (size > 0),
    constraint attachments_position_check
        check (position is null or position >= 0)
);

-- One object per key.
create unique index attachments_storage_key_key on attachments (storage_key);
-- The conversation_id foreign key (checked when a conversation is deleted).
create index attachments_conversation_idx on attachments (conversation_id);
-- The attachments of a page of messages, in order; also the message_id
-- foreign key.
create index attachments_message_idx on attachments (message_id, position)
    where message_id is not null;
-- The orphan sweep: unattached uploads, oldest first.
create index attachments_orphan_idx on attachments (created_at, id)
    where message_id is null;
