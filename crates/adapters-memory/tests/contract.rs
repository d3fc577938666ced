//! The adapter contract suite run against [`MemoryStore`].

use std::sync::Arc;

use adapters_memory::MemoryStore;

async fn fresh_store() -> Arc<MemoryStore> {
    Arc::new(MemoryStore::new())
}

chat_app::contract_tests!(fresh_store);
