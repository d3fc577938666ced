//! In-memory adapters for a single node: the [`InProcessBus`] and
//! [`InMemoryPresence`]. They make the embedded default run without any
//! other service, and serve as reference implementations of their ports.
//!
//! Other in-process adapters (for instance an in-memory search index for
//! tests) belong here; adapters over a database, a file store or Redis live
//! in their own crates.

mod bus;
mod presence;

pub use bus::{broadcast_stream, InProcessBus};
pub use presence::InMemoryPresence;
