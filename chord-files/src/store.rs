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

mod disk;
mod memory;

pub use disk::{DiskStore, DEFAULT_KEEP_FREE};

/// The size of the file system of `dir`, and the bytes an unprivileged writer may still
/// use on it (`None`: unknown).
pub(crate) fn file_system(dir: &Path) -> Option<(u64, u64)> {
    #[cfg(unix)]
    {
        let s = rustix::fs::statvfs(dir).ok()?;
        Some((
            s.f_blocks.saturating_mul(s.f_frsize),
            s.f_bavail.saturating_mul(s.f_frsize),
        ))
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        None
    }
}
pub use memory::MemoryStore;

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
    /// Storing this would leave the file system under a [`DiskStore`] with less free
    /// space than the store keeps free ([`DiskStore::keep_free`]).
    #[error("disk nearly full: {available} bytes free, {keep_free} kept free, {wanted} more requested ({used} bytes in this store)")]
    DiskLow {
        /// Bytes in use by the store.
        used: u64,
        /// Bytes free on the file system (less the writes in progress).
        available: u64,
        /// Bytes the store leaves free.
        keep_free: u64,
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
    /// How many items are held. The default counts `list`; a store that knows should
    /// say so more cheaply.
    fn count(&self) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(async move { Ok(self.list().await?.len() as u64) })
    }
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
            assert_eq!(store.count().await.expect("count"), 1);
            // The same item again is still one item.
            store.put(ka, a.clone()).await.expect("put");
            assert_eq!(store.count().await.expect("count"), 1);
            // Full: a 96-byte item does not fit in the 100-byte store.
            let big = vec![7u8; 96];
            let kb = ItemKey::Chunk(hash(&big));
            assert!(matches!(
                store.put(kb, big).await,
                Err(StoreError::Full { .. })
            ));
            assert_eq!(store.list().await.expect("list"), vec![ka]);
            assert_eq!(
                store.count().await.expect("count"),
                1,
                "a refused put counts"
            );
            store.delete(ka).await.expect("delete");
            assert_eq!(store.get(ka).await.expect("get"), None);
            assert_eq!(store.used(), 0);
            assert_eq!(store.count().await.expect("count"), 0);
            store.delete(ka).await.expect("delete again");
            assert_eq!(store.count().await.expect("count"), 0);
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
                assert_eq!(store.count().await.expect("count"), 300, "records counted");
            }
            let gone = ItemKey::Record(want[0]);
            disk.delete(gone).await.expect("delete");
            assert_eq!(disk.count().await.expect("count"), 299);
            drop(disk);
            let disk = DiskStore::open(dir.path(), 1 << 30).expect("reopen");
            assert_eq!(
                disk.count().await.expect("count"),
                299,
                "records counted at start"
            );
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
            assert_eq!(s.count().await.expect("count"), 2, "counted again at start");
            assert_eq!(s.get(ka).await.expect("get"), Some(a));
            assert_eq!(s.get(kb).await.expect("get"), None, "corrupt chunk served");
            assert!(!s.has(kb).await.expect("has"));
        });
    }

    /// A disk store never fills its file system, with or without a limit of its own:
    /// without it anyone on the ring could fill the node's disk (`chord node --data` has no
    /// store limit unless `--max-store` is given).
    #[test]
    fn a_disk_store_leaves_its_file_system_room() {
        let dir = tempfile::tempdir().expect("tmp");
        block_on(async {
            let s = DiskStore::open(dir.path(), u64::MAX).expect("open");
            let (size, free) = file_system(dir.path()).expect("statvfs");
            assert_eq!(s.kept_free(), DEFAULT_KEEP_FREE.min(size / 20));
            // Keeping more free than the disk has: every new item is refused, nothing kept.
            let s = s.keep_free(free + (1 << 30));
            let a = b"hello".to_vec();
            let ka = ItemKey::Chunk(hash(&a));
            let refused = s.put(ka, a.clone()).await;
            assert!(
                matches!(refused, Err(StoreError::DiskLow { wanted: 5, .. })),
                "{refused:?}"
            );
            let me = crate::record::Identity::from_seed([1; 32]);
            let r = me.sign(b"k", 1, Some(b"v".to_vec()), None).expect("sign");
            let kr = ItemKey::Record(r.id());
            let refused = s.put(kr, crate::encode(&r).expect("encode")).await;
            assert!(
                matches!(refused, Err(StoreError::DiskLow { .. })),
                "{refused:?}"
            );
            assert_eq!((s.used(), s.count().await.expect("count")), (0, 0));
            // What a caller is told, here and across the wire: the disk, not a limit.
            let e = crate::FilesError::from(StoreError::DiskLow {
                used: 10,
                available: 100,
                keep_free: 60,
                wanted: 50,
            });
            let e = crate::FilesError::from(crate::wire::RemoteError::from(&e));
            assert!(
                matches!(
                    e,
                    crate::FilesError::DiskLow {
                        available: 100,
                        keep_free: 60,
                        wanted: 50
                    }
                ),
                "{e:?}"
            );
            assert!(e.to_string().contains("disk is nearly full"), "{e}");
            // Turned off, the same items are taken.
            let s = s.keep_free(0);
            s.put(ka, a).await.expect("put");
            s.put(kr, crate::encode(&r).expect("encode"))
                .await
                .expect("put record");
            assert_eq!(s.count().await.expect("count"), 2);
        });
    }

    /// A `DiskLow` refusal counted the refused bytes as already used (review, session 13).
    #[test]
    fn disk_low_reports_used_without_the_refused_bytes() {
        let dir = tempfile::tempdir().expect("tmp");
        block_on(async {
            let s = DiskStore::open(dir.path(), u64::MAX).expect("open");
            let (_, free) = file_system(dir.path()).expect("statvfs");
            let s = s.keep_free(free + (1 << 30));
            let a = b"hello".to_vec();
            let refused = s.put(ItemKey::Chunk(hash(&a)), a).await;
            // The store is empty: `used` should be 0.
            assert!(
                matches!(refused, Err(StoreError::DiskLow { used: 0, .. })),
                "{refused:?}"
            );
        });
    }

    /// Storing again an item already held (the same chunk; a smaller tombstone over a
    /// record) needs no more disk: taken at the floor too (refused before: review,
    /// session 13).
    #[test]
    fn a_held_item_is_stored_again_at_the_floor() {
        let dir = tempfile::tempdir().expect("tmp");
        block_on(async {
            let s = DiskStore::open(dir.path(), u64::MAX)
                .expect("open")
                .keep_free(0);
            let a = vec![7u8; 4096];
            let ka = ItemKey::Chunk(hash(&a));
            s.put(ka, a.clone()).await.expect("put");
            let me = crate::record::Identity::from_seed([1; 32]);
            let r = me.sign(b"k", 1, Some(vec![1; 1000]), None).expect("sign");
            let kr = ItemKey::Record(r.id());
            s.put(kr, crate::encode(&r).expect("enc"))
                .await
                .expect("put record");
            // The disk reaches the floor (simulated by keeping all that is free).
            let (_, free) = file_system(dir.path()).expect("statvfs");
            let s = s.keep_free(free);
            let again = s.put(ka, a).await;
            let tomb = me.sign(b"k", 2, None, None).expect("sign");
            let deleted = s.put(kr, crate::encode(&tomb).expect("enc")).await;
            assert!(
                again.is_ok() && deleted.is_ok(),
                "re-store of a held chunk: {again:?}; tombstone over a held record: {deleted:?}"
            );
        });
    }

    /// A `put` whose future is dropped mid-way left its reservation in `used` (review,
    /// session 13); now it counts exactly what it wrote.
    #[test]
    fn a_dropped_put_counts_what_it_wrote() {
        let dir = tempfile::tempdir().expect("tmp");
        block_on(async {
            let s = DiskStore::open(dir.path(), u64::MAX)
                .expect("open")
                .keep_free(0);
            let a = vec![9u8; 1 << 20];
            let ka = ItemKey::Chunk(hash(&a));
            // Polled once (pending on the blocking write), then dropped.
            let once = futures_lite::future::poll_once(s.put(ka, a)).await;
            assert!(once.is_none(), "finished at once");
            std::thread::sleep(std::time::Duration::from_millis(500));
            let (used, items, held) = (
                s.used(),
                s.count().await.expect("count"),
                s.has(ka).await.expect("has"),
            );
            // Either nothing was written and nothing is counted, or it was and it is.
            assert!(
                (used, items) == (if held { 1 << 20 } else { 0 }, u64::from(held)),
                "used {used}, items {items}, file present {held}"
            );
        });
    }
}
