//! The thin chat server: REST transport over [`chat_app::ChatService`], JWT
//! authentication for staff and customers, configuration from the
//! environment, and the wiring of concrete adapters.
//!
//! Hosts that run their own axum application can mount [`router`] under
//! their own routes instead of running [`Application`].

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
pub mod telemetry;
mod throttle;
pub mod ws;

pub use routes::router;
pub use startup::attachments;
pub use startup::Application;
pub use state::AppState;
