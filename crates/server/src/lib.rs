//! The thin chat server: REST transport over [`chat_app::ChatService`], JWT
//! authentication for staff and customers, configuration from the
//! environment, and the wiring of concrete adapters.
//!
//! Hosts that run their own axum application can mount [`router`] under
//! their own routes instead of running [`Application`].
//!
//! Where things live: `routes` (one module per resource), [`ws`] (the
//! WebSocket transport: `protocol` frames, `cmd` one handler per client
//! frame, `connection` per-socket concerns, `hub` registry and fan-out,
//! `dispatch` events to frames), [`config`] (one module per section),
//! [`startup`] (adapters chosen by configuration), [`error`] (every error's
//! code and message on the wire, and which store failures are outages),
//! [`store_health`] (the readiness check and the breaker in front of the
//! store), [`metrics`], [`auth`] and [`listener`].

pub mod auth;
pub mod cli;
pub mod config;
mod dto;
pub mod error;
mod extract;
pub mod limits;
pub mod listener;
pub mod metrics;
mod routes;
pub mod startup;
pub mod state;
pub mod store_health;
pub mod telemetry;
mod throttle;
pub mod ws;

pub use routes::router;
pub use startup::attachments;
pub use startup::Application;
pub use state::AppState;
