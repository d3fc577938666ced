//! End-to-end tests of the server over real HTTP, each on its own random
//! port with its own database (a fresh SQLite file, or a fresh PostgreSQL
//! database).

mod helpers;

mod attachments;
mod auth;
mod bad_inputs;
mod faults;
mod hardening;
mod multi_node;
mod staff;
mod walkthrough;
mod ws;
