-- One row the readiness check writes (SQLite): a store that cannot write,
-- a full disk say, then fails the check instead of reading fine.
create table store_probe (
    id integer not null primary key check (id = 1),
    checked_at integer not null
) strict;

insert into store_probe (id, checked_at) values (1, 0);
