-- Attachments: metadata of uploaded files (SQLite). The bytes live in a
-- FileStorage under storage_key; this table is the only way to reach them.
--
-- An upload belongs to one conversation and one uploader. message_id is
-- null until a send of that uploader, in that conversation, attaches it
-- (inside the append transaction); uploads left unattached are swept as
-- orphans.

create table attachments (
    id blob not null primary key,
    tenant_id blob not null,
    conversation_id blob not null references conversations (id) on delete cascade,
    uploader_type text not null check (uploader_type in ('staff', 'customer', 'system')),
    -- Null for the system.
    uploader_id blob,
    -- Display name, sanitised; never part of a path.
    name text not null,
    content_type text not null,
    size integer not null check (size > 0),
    -- sha256 of the bytes, lowercase hex.
    sha256 text not null,
    storage_key text not null,
    created_at integer not null,
    message_id blob references messages (id) on delete set null,
    -- Order within the message.
    position integer check (position is null or position >= 0),
    check (uploader_type = 'system' or uploader_id is not null)
) strict;

-- One object per key.
create unique index attachments_storage_key_key on attachments (storage_key);
-- The conversation_id foreign key.
create index attachments_conversation_idx on attachments (conversation_id);
-- The attachments of a page of messages, in order; also the message_id
-- foreign key.
create index attachments_message_idx on attachments (message_id, position)
    where message_id is not null;
-- The orphan sweep: unattached uploads, oldest first.
create index attachments_orphan_idx on attachments (created_at, id)
    where message_id is null;
