//! Where a node keeps its items: behind the [`Store`] trait, on disk by default, in
//! memory for tests. Applications can supply their own.

use std::collections::HashMap;
use std::future::Future;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chord_core::Id;

use crate::manifest::{hash, hex, ItemKey, MAX_CHUNK};
use crate::record::{Record, Version};

/// A boxed future, as the trait methods return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why the store refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Storing this would exceed the store's limit.
    #[error("store full: {used} of {limit} bytes used, {wanted} more requested")]
    Full {
        /// Bytes in use.
        used: u64,
        /// The limit.
        limit: u64,
        /// Bytes asked for.
        wanted: u64,
    },
    /// The disk failed.
    #[error("storage I/O error: {0}")]
    Io(#[from] io::Error),
}

/// An item store. Items are verified before `put` is called (hashes, signatures); `get`
/// must only return bytes that are intact (a store on disk re-checks a block's hash and a
/// record's checksum; signatures are not checked again).
pub trait Store: Send + Sync + 'static {
    /// Store an item, replacing any earlier one.
    fn put(&self, key: ItemKey, data: Vec<u8>) -> BoxFuture<'_, Result<(), StoreError>>;
    /// Read an item, `None` if absent (or corrupt: a corrupt item is dropped).
    fn get(&self, key: ItemKey) -> BoxFuture<'_, Result<Option<Vec<u8>>, StoreError>>;
    /// Is the item here?
    fn has(&self, key: ItemKey) -> BoxFuture<'_, Result<bool, StoreError>>;
    /// Remove an item (no error if absent).
    fn delete(&self, key: ItemKey) -> BoxFuture<'_, Result<(), StoreError>>;
    /// Every item held.
    fn list(&self) -> BoxFuture<'_, Result<Vec<ItemKey>, StoreError>>;
    /// Bytes in use.
    fn used(&self) -> u64;
    /// The ids of the records held here after `after` (all if `None`), in order, at most
    /// `limit` of them. The default sorts the whole `list`; a store that keeps records in
    /// order should do better.
    fn record_ids_after(
        &self,
        after: Option<Id>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<Id>, StoreError>> {
        Box::pin(async move {
            let mut ids: Vec<Id> = self
                .list()
                .await?
                .into_iter()
                .filter_map(|k| match k {
                    ItemKey::Record(id) if after.is_none_or(|a| id > a) => Some(id),
                    _ => None,
                })
                .collect();
            ids.sort();
            ids.truncate(limit);
            Ok(ids)
        })
    }
    /// When the lease of a block held here ends, in milliseconds since the Unix epoch
    /// (`None`: not held, or the store keeps no leases; such blocks are never collected).
    fn lease(&self, key: ItemKey) -> BoxFuture<'_, Result<Option<u64>, StoreError>> {
        let _ = key;
        Box::pin(async { Ok(None) })
    }
    /// Set the lease end of a block held here (no error if absent).
    fn set_lease(&self, key: ItemKey, until_ms: u64) -> BoxFuture<'_, Result<(), StoreError>> {
        let _ = (key, until_ms);
        Box::pin(async { Ok(()) })
    }
}

/// Do these bytes really belong under this key?
pub fn verify(key: &ItemKey, data: &[u8]) -> bool {
    match key {
        // No chunk above the protocol's chunk size, whatever the frame limit allows: a
        // stored chunk is later read whole into memory to answer a Fetch.
        ItemKey::Chunk(h) => data.len() <= MAX_CHUNK as usize && hash(data) == *h,
        // Unsigned manifests by name are retired: anyone could replace them. A file is now
        // a signed record naming a manifest block; old ones are dropped when read.
        ItemKey::Manifest(_) => false,
        ItemKey::Record(id) => Record::decode_at(data, *id).is_ok(),
    }
}

/// The version of an item read from this node's own store (checked when it arrived, and
/// intact: see [`Store::get`]), without checking its signature again.
pub fn stored_version(key: &ItemKey, data: &[u8]) -> Option<Version> {
    match key {
        ItemKey::Chunk(_) => Some(Version::default()),
        ItemKey::Manifest(_) => None,
        ItemKey::Record(id) => Record::decode_stored(data, *id).ok().map(|r| r.version()),
    }
}

/// A record on disk is followed by the BLAKE3 hash of its bytes, so that a bit flipped on
/// the disk is caught when it is read without checking its signature again.
fn seal(mut data: Vec<u8>) -> Vec<u8> {
    let h = hash(&data);
    data.extend_from_slice(&h);
    data
}

/// The bytes of a sealed record, if intact.
fn unseal(mut data: Vec<u8>) -> Option<Vec<u8>> {
    let at = data.len().checked_sub(32)?;
    (hash(&data[..at])[..] == data[at..]).then(|| {
        data.truncate(at);
        data
    })
}

/// The version of an item's bytes, to decide which of two copies wins (`None`: the bytes
/// do not belong under the key). A block has one version; a record's is
/// [`Record::version`].
pub fn version(key: &ItemKey, data: &[u8]) -> Option<Version> {
    match key {
        ItemKey::Chunk(_) => verify(key, data).then_some(Version::default()),
        ItemKey::Manifest(_) => None,
        ItemKey::Record(id) => Record::decode_at(data, *id).ok().map(|r| r.version()),
    }
}

fn check_room(used: u64, limit: u64, wanted: u64) -> Result<(), StoreError> {
    if used.saturating_add(wanted) > limit {
        return Err(StoreError::Full {
            used,
            limit,
            wanted,
        });
    }
    Ok(())
}

/// The limit of a [`MemoryStore::default`]: 256 MiB. A node in memory is a node whose
/// store anyone on the ring can fill, so it is never without a limit by default.
pub const DEFAULT_MEMORY_LIMIT: u64 = 256 << 20;

/// Take `wanted` bytes of `limit` in `used` at once (so that concurrent writes cannot all
/// pass one check and overshoot together), or say why not.
fn reserve(used: &AtomicU64, limit: u64, wanted: u64) -> Result<(), StoreError> {
    used.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |u| {
        u.checked_add(wanted).filter(|&t| t <= limit)
    })
    .map(|_| ())
    .map_err(|u| StoreError::Full {
        used: u,
        limit,
        wanted,
    })
}

/// Give back `n` reserved or freed bytes.
fn release(used: &AtomicU64, n: u64) {
    let _ = used.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |u| {
        Some(u.saturating_sub(n))
    });
}

/// Serialises the compare-then-write of versioned items (manifests, records) by key, so
/// that two concurrent stores of one key cannot leave the older version in place.
pub(crate) struct Locks([futures::lock::Mutex<()>; 64]);

impl Default for Locks {
    fn default() -> Locks {
        Locks(std::array::from_fn(|_| futures::lock::Mutex::new(())))
    }
}

impl Locks {
    pub(crate) async fn lock(&self, key: &ItemKey) -> futures::lock::MutexGuard<'_, ()> {
        let b = key.ring_id().0;
        self.0[usize::from(b[19]) % self.0.len()].lock().await
    }
}

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

/// Items on disk under one directory:
///
/// ```text
/// DIR/chunks/ab/cd/abcd…(64 hex)      chunk bytes
/// DIR/records.redb                    signed records (redb; each sealed with its BLAKE3)
/// DIR/tmp/                            block writes in progress
/// ```
///
/// A block goes to `tmp/`, is fsynced, renamed into place and its directory fsynced, so a
/// crash leaves either the old block, the new one, or a stray temporary file (removed at
/// the next start) — never a partial block. A block's lease is its file's modification
/// time. Records are small and many: they share one embedded database (redb, in
/// the records database's group commits), durable before the write is acknowledged.
/// Items are checked again when read (blocks by hash, records by their seal); one that
/// no longer matches is deleted and reported absent, so a replica is fetched instead.
pub struct DiskStore {
    dir: PathBuf,
    limit: u64,
    used: AtomicU64,
    seq: AtomicU64,
    records: crate::records_db::RecordDb,
    /// A block's write or delete and the count of its bytes, one at a time per key.
    locks: Locks,
}

impl DiskStore {
    /// Open (creating if needed) a store in `dir`, holding at most `limit` bytes.
    pub fn open(dir: &Path, limit: u64) -> Result<DiskStore, StoreError> {
        if dir.exists() && !dir.is_dir() {
            return Err(StoreError::Io(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("{} is not a directory", dir.display()),
            )));
        }
        for sub in ["chunks", "tmp"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        // Leftovers of writes interrupted by a crash.
        for e in std::fs::read_dir(dir.join("tmp"))? {
            let _ = std::fs::remove_file(e?.path());
        }
        let (records, mut used) = crate::records_db::RecordDb::open(&dir.join("records.redb"))?;
        let store = DiskStore {
            dir: dir.to_path_buf(),
            limit,
            used: AtomicU64::new(0),
            seq: AtomicU64::new(0),
            records,
            locks: Locks::default(),
        };
        for key in store.scan()? {
            if let Ok(m) = std::fs::metadata(store.path(&key)) {
                used += m.len();
            }
        }
        store.used.store(used, Ordering::SeqCst);
        Ok(store)
    }

    fn path(&self, key: &ItemKey) -> PathBuf {
        match key {
            ItemKey::Chunk(h) => {
                let x = hex(h);
                self.dir.join("chunks").join(&x[..2]).join(&x[2..4]).join(x)
            }
            ItemKey::Manifest(id) => {
                let x = id.to_string();
                self.dir.join("manifests").join(&x[..2]).join(x)
            }
            // Records live in the database; no file of theirs exists.
            ItemKey::Record(id) => self.dir.join("records.redb.d").join(id.to_string()),
        }
    }

    /// Every item file present. Files whose names are not item keys are ignored.
    fn scan(&self) -> io::Result<Vec<ItemKey>> {
        let mut out = Vec::new();
        let walk = |root: PathBuf, depth: usize, out: &mut Vec<PathBuf>| -> io::Result<()> {
            let mut stack = vec![(root, 0)];
            while let Some((d, level)) = stack.pop() {
                for e in std::fs::read_dir(&d)? {
                    let p = e?.path();
                    if level < depth {
                        if p.is_dir() {
                            stack.push((p, level + 1));
                        }
                    } else if p.is_file() {
                        out.push(p);
                    }
                }
            }
            Ok(())
        };
        let mut files = Vec::new();
        walk(self.dir.join("chunks"), 2, &mut files)?;
        for p in files.drain(..) {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let mut h = [0u8; 32];
            if name.len() == 64 && hex_decode(name, &mut h) {
                out.push(ItemKey::Chunk(h));
            }
        }
        let named = |p: &PathBuf| {
            p.file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.parse::<Id>().ok())
        };
        // Retired unsigned manifests of an older store: listed so that they are dropped.
        if self.dir.join("manifests").is_dir() {
            walk(self.dir.join("manifests"), 1, &mut files)?;
            out.extend(files.iter().filter_map(named).map(ItemKey::Manifest));
        }
        Ok(out)
    }
}

fn hex_decode(s: &str, out: &mut [u8]) -> bool {
    hex::decode_to_slice(s, out).is_ok()
}

impl Store for DiskStore {
    fn put(&self, key: ItemKey, data: Vec<u8>) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            if let ItemKey::Record(id) = key {
                let data = seal(data);
                let len = data.len() as u64;
                reserve(&self.used, self.limit, len)?;
                return match self.records.put(id, data).await {
                    Ok(old) => {
                        release(&self.used, old);
                        Ok(())
                    }
                    Err(e) => {
                        release(&self.used, len);
                        Err(e.into())
                    }
                };
            }
            let path = self.path(&key);
            let len = data.len() as u64;
            // Reserved before writing; what a replaced copy held is given back after, and
            // read under the key's lock so that concurrent writes count it once.
            reserve(&self.used, self.limit, len)?;
            let _guard = self.locks.lock(&key).await;
            let old = std::fs::metadata(&path).map_or(0, |m| m.len());
            let tmp = self.dir.join("tmp").join(format!(
                "{}-{}",
                std::process::id(),
                self.seq.fetch_add(1, Ordering::SeqCst)
            ));
            let r = blocking::unblock(move || -> io::Result<()> {
                let write = || -> io::Result<()> {
                    if let Some(parent) = path.parent() {
                        std::fs::create_dir_all(parent)?;
                    }
                    let mut f = std::fs::File::create(&tmp)?;
                    f.write_all(&data)?;
                    f.sync_all()?;
                    std::fs::rename(&tmp, &path)?;
                    // The rename itself survives a crash only once its directory is synced.
                    match path.parent() {
                        Some(dir) => std::fs::File::open(dir)?.sync_all(),
                        None => Ok(()),
                    }
                };
                let r = write();
                if r.is_err() {
                    // A full disk, say: do not leave the partial copy taking room.
                    let _ = std::fs::remove_file(&tmp);
                }
                r
            })
            .await;
            match r {
                Ok(()) => release(&self.used, old),
                Err(e) => {
                    release(&self.used, len);
                    return Err(e.into());
                }
            }
            Ok(())
        })
    }

    fn get(&self, key: ItemKey) -> BoxFuture<'_, Result<Option<Vec<u8>>, StoreError>> {
        Box::pin(async move {
            if let ItemKey::Record(id) = key {
                let Some(d) = self.records.get(id)? else {
                    return Ok(None);
                };
                return match unseal(d).filter(|d| Record::decode_stored(d, id).is_ok()) {
                    Some(d) => Ok(Some(d)),
                    None => {
                        tracing::warn!(?key, "stored record is corrupt: dropped");
                        self.delete(key).await?;
                        Ok(None)
                    }
                };
            }
            let path = self.path(&key);
            // Read and verify off the async thread: hashing a chunk takes a while.
            let data = blocking::unblock(move || match std::fs::read(&path) {
                Ok(d) => {
                    let ok = verify(&key, &d);
                    Ok(Some((d, ok)))
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e),
            })
            .await?;
            match data {
                Some((d, true)) => Ok(Some(d)),
                Some((_, false)) => {
                    tracing::warn!(?key, "stored item is corrupt: dropped");
                    self.delete(key).await?;
                    Ok(None)
                }
                None => Ok(None),
            }
        })
    }

    fn has(&self, key: ItemKey) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(async move {
            match key {
                ItemKey::Record(id) => Ok(self.records.has(id)?),
                _ => Ok(self.path(&key).is_file()),
            }
        })
    }

    fn delete(&self, key: ItemKey) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            if let ItemKey::Record(id) = key {
                let old = self.records.delete(id).await?;
                release(&self.used, old);
                return Ok(());
            }
            let path = self.path(&key);
            let _guard = self.locks.lock(&key).await;
            if let Ok(m) = std::fs::metadata(&path) {
                std::fs::remove_file(&path)?;
                release(&self.used, m.len());
            }
            Ok(())
        })
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<ItemKey>, StoreError>> {
        Box::pin(async move {
            let mut keys = self.scan()?;
            let records = self.records.ids_after(None, usize::MAX)?;
            keys.extend(records.into_iter().map(ItemKey::Record));
            Ok(keys)
        })
    }

    fn used(&self) -> u64 {
        self.used.load(Ordering::SeqCst)
    }

    fn record_ids_after(
        &self,
        after: Option<Id>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<Id>, StoreError>> {
        Box::pin(async move { Ok(self.records.ids_after(after, limit)?) })
    }

    /// A block's lease is kept as its file's modification time (so it survives restarts
    /// without another file): the time the lease ends.
    fn lease(&self, key: ItemKey) -> BoxFuture<'_, Result<Option<u64>, StoreError>> {
        Box::pin(async move {
            match std::fs::metadata(self.path(&key)) {
                Ok(m) => Ok(Some(
                    m.modified()?
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as u64),
                )),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e.into()),
            }
        })
    }

    fn set_lease(&self, key: ItemKey, until_ms: u64) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(until_ms);
            match std::fs::File::options().write(true).open(self.path(&key)) {
                Ok(f) => Ok(f.set_modified(t)?),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e.into()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future::block_on;

    fn exercise(store: &dyn Store) {
        block_on(async {
            let a = b"hello".to_vec();
            let ka = ItemKey::Chunk(hash(&a));
            store.put(ka, a.clone()).await.expect("put");
            assert_eq!(store.get(ka).await.expect("get"), Some(a.clone()));
            assert!(store.has(ka).await.expect("has"));
            assert_eq!(store.used(), 5);
            // Full: a 96-byte item does not fit in the 100-byte store.
            let big = vec![7u8; 96];
            let kb = ItemKey::Chunk(hash(&big));
            assert!(matches!(
                store.put(kb, big).await,
                Err(StoreError::Full { .. })
            ));
            assert_eq!(store.list().await.expect("list"), vec![ka]);
            store.delete(ka).await.expect("delete");
            assert_eq!(store.get(ka).await.expect("get"), None);
            assert_eq!(store.used(), 0);
        });
    }

    /// Issue 13, finding 1: a chunk of ~8 MiB (the frame limit) was accepted; every Fetch
    /// of it then costs 8 MiB of answer queue.
    #[test]
    fn no_chunk_above_the_chunk_size() {
        let big = vec![7u8; MAX_CHUNK as usize + 1];
        assert!(!verify(&ItemKey::Chunk(hash(&big)), &big));
        let fits = vec![7u8; MAX_CHUNK as usize];
        assert!(verify(&ItemKey::Chunk(hash(&fits)), &fits));
    }

    /// Issue 12: `--max-store 10M` with 64 concurrent Stores stored 507 MiB (checked before
    /// the write, counted after). Room is now reserved before writing.
    #[test]
    fn the_limit_holds_under_concurrent_writes() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = DiskStore::open(dir.path(), 10 << 20).expect("open");
        let chunks: Vec<Vec<u8>> = (0..64u32)
            .map(|i| {
                let mut c = vec![0u8; 1 << 20];
                c[..4].copy_from_slice(&i.to_be_bytes());
                c
            })
            .collect();
        let results = block_on(futures::future::join_all(
            chunks
                .into_iter()
                .map(|c| s.put(ItemKey::Chunk(hash(&c)), c)),
        ));
        let ok = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(ok, 10, "exactly as many as fit");
        assert!(results
            .iter()
            .all(|r| r.is_ok() || matches!(r, Err(StoreError::Full { .. }))));
        assert_eq!(s.used(), 10 << 20);
        drop(s);
        let reopened = DiskStore::open(dir.path(), 10 << 20).expect("reopen");
        assert_eq!(reopened.used(), 10 << 20, "what is on disk agrees");
    }

    /// Records are checked once, when they arrive; on disk a checksum catches corruption
    /// without checking the signature again.
    #[test]
    fn a_corrupt_record_on_disk_is_dropped() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = DiskStore::open(dir.path(), 1 << 20).expect("open");
        let r = crate::Identity::from_seed([1; 32])
            .sign(b"k", 1, Some(b"value".to_vec()), None)
            .expect("sign");
        let key = ItemKey::Record(r.id());
        let bytes = crate::encode(&r).expect("enc");
        block_on(async {
            s.put(key, bytes.clone()).await.expect("put");
            assert_eq!(s.get(key).await.expect("get"), Some(bytes.clone()));
            // A bit flipped inside the value, under the seal.
            let mut raw = s.records.get(r.id()).expect("raw").expect("held");
            let at = raw.len() - 40;
            raw[at] ^= 1;
            s.records.put(r.id(), raw).await.expect("write");
            assert_eq!(s.get(key).await.expect("get"), None);
            assert!(!s.has(key).await.expect("has"), "dropped");
        });
    }

    /// Review finding: eight concurrent stores of one block counted it eight times (and
    /// its delete then left 7 MiB counted): a stranger could make a store "full".
    #[test]
    fn concurrent_writes_of_one_block_count_it_once() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = DiskStore::open(dir.path(), 100 << 20).expect("open");
        let c = vec![5u8; 1 << 20];
        let key = ItemKey::Chunk(hash(&c));
        block_on(futures::future::join_all(
            (0..8).map(|_| s.put(key, c.clone())),
        ))
        .into_iter()
        .for_each(|r| r.expect("put"));
        assert_eq!(s.used(), 1 << 20);
        block_on(s.delete(key)).expect("delete");
        assert_eq!(s.used(), 0);
    }

    /// Records come out of both stores in id order, a page at a time.
    #[test]
    fn record_ids_page_in_order() {
        let dir = tempfile::tempdir().expect("tmp");
        let disk = DiskStore::open(dir.path(), 1 << 30).expect("open");
        let mem = MemoryStore::default();
        let me = crate::Identity::from_seed([2; 32]);
        block_on(async {
            let mut want = Vec::new();
            for i in 0..300u32 {
                let r = me.sign(&i.to_be_bytes(), 1, None, None).expect("sign");
                let b = crate::encode(&r).expect("enc");
                disk.put(ItemKey::Record(r.id()), b.clone())
                    .await
                    .expect("put");
                mem.put(ItemKey::Record(r.id()), b).await.expect("put");
                want.push(r.id());
            }
            want.sort();
            for store in [&disk as &dyn Store, &mem] {
                let mut got = Vec::new();
                let mut after = None;
                loop {
                    let page = store.record_ids_after(after, 64).await.expect("page");
                    if page.is_empty() {
                        break;
                    }
                    after = page.last().copied();
                    got.extend(page);
                }
                assert_eq!(got, want);
            }
        });
    }

    #[test]
    fn memory_store() {
        exercise(&MemoryStore::new(100));
    }

    #[test]
    fn disk_store_and_restart_and_corruption() {
        let dir = tempfile::tempdir().expect("tmp");
        exercise(&DiskStore::open(dir.path(), 100).expect("open"));
        block_on(async {
            let s = DiskStore::open(dir.path(), 1 << 20).expect("open");
            let a = b"kept across restarts".to_vec();
            let ka = ItemKey::Chunk(hash(&a));
            s.put(ka, a.clone()).await.expect("put");
            let b = b"will be corrupted".to_vec();
            let kb = ItemKey::Chunk(hash(&b));
            s.put(kb, b.clone()).await.expect("put");
            drop(s);
            // A leftover temporary file from a crash is cleaned at start.
            std::fs::write(dir.path().join("tmp").join("999-1"), b"partial").expect("write");
            // Flip a byte of one chunk on disk.
            let s = DiskStore::open(dir.path(), 1 << 20).expect("reopen");
            assert!(std::fs::read_dir(dir.path().join("tmp"))
                .expect("tmp")
                .next()
                .is_none());
            let p = s.path(&kb);
            let mut bytes = std::fs::read(&p).expect("read");
            bytes[0] ^= 1;
            std::fs::write(&p, bytes).expect("write");
            let mut keys = s.list().await.expect("list");
            keys.sort();
            let mut want = vec![ka, kb];
            want.sort();
            assert_eq!(keys, want);
            assert_eq!(s.used(), (a.len() + b.len()) as u64);
            assert_eq!(s.get(ka).await.expect("get"), Some(a));
            assert_eq!(s.get(kb).await.expect("get"), None, "corrupt chunk served");
            assert!(!s.has(kb).await.expect("has"));
        });
    }
}
