-- Deleting a message takes its attachments with it: deleted_at is set in the
-- same transaction, after which no read returns the attachment and the
-- sweep removes its bytes, then the record (bytes first: a file that cannot
-- be removed stays listed and is tried again).

alter table attachments add column deleted_at timestamptz;

-- The attachments of messages deleted before this column existed.
update attachments as a set deleted_at = m.deleted_at
from messages as m
where m.id = a.message_id and m.deleted_at is not null;

-- The purge: deleted attachments, earliest deletion first.
create index attachments_deleted_idx on attachments (deleted_at, id)
    where deleted_at is not null;
