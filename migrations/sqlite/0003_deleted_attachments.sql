-- Deleting a message takes its attachments with it: deleted_at (integer
-- microseconds) is set in the same transaction, after which no read returns
-- the attachment and the sweep removes its bytes, then the record (bytes
-- first: a file that cannot be removed stays listed and is tried again).

alter table attachments add column deleted_at integer;

-- The attachments of messages deleted before this column existed.
update attachments set deleted_at = (
    select m.deleted_at from messages m where m.id = attachments.message_id
)
where message_id in (select id from messages where deleted_at is not null);

-- The purge: deleted attachments, earliest deletion first.
create index attachments_deleted_idx on attachments (deleted_at, id)
    where deleted_at is not null;
