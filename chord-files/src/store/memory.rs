//! [`MemoryStore`]: items in memory, within a byte limit.

use super::*;

/// Items in memory (tests, or caches).
pub struct MemoryStore {
    items: Mutex<HashMap<ItemKey, Arc<Vec<u8>>>>,
    leases: Mutex<HashMap<ItemKey, u64>>,
    limit: u64,
    used: AtomicU64,
}

impl Default for MemoryStore {
    /// An empty store of [`DEFAULT_MEMORY_LIMIT`] bytes.
    fn default() -> MemoryStore {
        MemoryStore::new(DEFAULT_MEMORY_LIMIT)
    }
}

impl MemoryStore {
    /// An empty store holding at most `limit` bytes.
    pub fn new(limit: u64) -> MemoryStore {
        MemoryStore {
            items: Mutex::default(),
            leases: Mutex::default(),
            limit,
            used: AtomicU64::new(0),
        }
    }

    fn items(&self) -> std::sync::MutexGuard<'_, HashMap<ItemKey, Arc<Vec<u8>>>> {
        // A panic while holding the lock cannot leave the map half-changed (every
        // change is one insert or remove), so a poisoned lock is still usable.
        self.items.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn leases(&self) -> std::sync::MutexGuard<'_, HashMap<ItemKey, u64>> {
        self.leases.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Store for MemoryStore {
    fn put(&self, key: ItemKey, data: Vec<u8>) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let mut items = self.items();
            let old = items.get(&key).map_or(0, |d| d.len() as u64);
            check_room(
                self.used.load(Ordering::SeqCst) - old,
                self.limit,
                data.len() as u64,
            )?;
            self.used.fetch_add(data.len() as u64, Ordering::SeqCst);
            self.used.fetch_sub(old, Ordering::SeqCst);
            items.insert(key, Arc::new(data));
            Ok(())
        })
    }

    fn get(&self, key: ItemKey) -> BoxFuture<'_, Result<Option<Vec<u8>>, StoreError>> {
        Box::pin(async move { Ok(self.items().get(&key).map(|d| d.to_vec())) })
    }

    fn has(&self, key: ItemKey) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(async move { Ok(self.items().contains_key(&key)) })
    }

    fn delete(&self, key: ItemKey) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            if let Some(d) = self.items().remove(&key) {
                self.used.fetch_sub(d.len() as u64, Ordering::SeqCst);
            }
            self.leases().remove(&key);
            Ok(())
        })
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<ItemKey>, StoreError>> {
        Box::pin(async move { Ok(self.items().keys().copied().collect()) })
    }

    fn count(&self) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(async move { Ok(self.items().len() as u64) })
    }

    fn used(&self) -> u64 {
        self.used.load(Ordering::SeqCst)
    }

    fn lease(&self, key: ItemKey) -> BoxFuture<'_, Result<Option<u64>, StoreError>> {
        Box::pin(async move {
            let held = self.items().contains_key(&key);
            Ok(held.then(|| self.leases().get(&key).copied().unwrap_or(0)))
        })
    }

    fn set_lease(&self, key: ItemKey, until_ms: u64) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            if self.items().contains_key(&key) {
                self.leases().insert(key, until_ms);
            }
            Ok(())
        })
    }
}
