//! [`DiskStore`]: records in an embedded database (redb), blocks as files, crash-safe.

use super::*;

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
    /// Bytes of the file system never filled (see [`DiskStore::keep_free`]).
    keep_free: u64,
    /// Bytes being written now: not yet seen in the file system's free space.
    writing: AtomicU64,
    used: Arc<AtomicU64>,
    /// Items held (blocks and records), kept as they come and go.
    items: Arc<AtomicU64>,
    seq: AtomicU64,
    pub(super) records: crate::records_db::RecordDb,
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
        let (records, mut used, records_held) =
            crate::records_db::RecordDb::open(&dir.join("records.redb"))?;
        let store = DiskStore {
            dir: dir.to_path_buf(),
            limit,
            keep_free: default_keep_free(dir),
            writing: AtomicU64::new(0),
            used: Arc::new(AtomicU64::new(0)),
            items: Arc::new(AtomicU64::new(0)),
            seq: AtomicU64::new(0),
            records,
            locks: Locks::default(),
        };
        let mut items = records_held;
        for key in store.scan()? {
            if let Ok(m) = std::fs::metadata(store.path(&key)) {
                used += m.len();
                items += 1;
            }
        }
        store.used.store(used, Ordering::SeqCst);
        store.items.store(items, Ordering::SeqCst);
        Ok(store)
    }

    /// Refuse new items that would leave less than `bytes` free on the file system
    /// under the store, whatever its own limit: anyone on the ring can store, and a node
    /// whose disk fills breaks more than its store. Default: [`DEFAULT_KEEP_FREE`], or 5%
    /// of the file system if that is smaller. 0 turns the check off. Only where the free
    /// space can be read (Unix); counted in item bytes (the records database's pages
    /// come on top). At the floor, an item already held is still taken (a block again, a
    /// record no larger than the one it replaces: a tombstone over a value).
    pub fn keep_free(mut self, bytes: u64) -> DiskStore {
        self.keep_free = bytes;
        self
    }

    /// Bytes this store leaves free on its file system.
    pub fn kept_free(&self) -> u64 {
        self.keep_free
    }

    /// Room on the file system for `wanted` more bytes, counted as being written until
    /// the returned guard drops (so that writes in progress at once are all counted).
    fn disk_room(&self, wanted: u64) -> Result<Writing<'_>, StoreError> {
        let writing = Writing::new(&self.writing, wanted);
        if self.keep_free == 0 {
            return Ok(writing);
        }
        let Some((_, free)) = file_system(&self.dir) else {
            return Ok(writing);
        };
        // Ours included: the writes in progress, this one too.
        let pending = self.writing.load(Ordering::SeqCst);
        let available = free.saturating_sub(pending.saturating_sub(wanted));
        if available < self.keep_free.saturating_add(wanted) {
            return Err(StoreError::DiskLow {
                used: self.used(),
                available,
                keep_free: self.keep_free,
                wanted,
            });
        }
        Ok(writing)
    }

    pub(super) fn path(&self, key: &ItemKey) -> PathBuf {
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

/// What a [`DiskStore`] keeps free on its file system by default: 1 GiB (or 5% of the
/// file system, if that is less).
pub const DEFAULT_KEEP_FREE: u64 = 1 << 30;

fn default_keep_free(dir: &Path) -> u64 {
    match file_system(dir) {
        Some((size, _)) => DEFAULT_KEEP_FREE.min(size / 20),
        None => DEFAULT_KEEP_FREE,
    }
}

/// Bytes reserved under a store's limit: given back when this drops, unless kept (the
/// item was stored). A put that fails, or is dropped before its write, gives its
/// reservation back.
struct Reserved {
    used: Arc<AtomicU64>,
    n: u64,
}

impl Reserved {
    fn new(used: &Arc<AtomicU64>, limit: u64, n: u64) -> Result<Reserved, StoreError> {
        reserve(used, limit, n)?;
        Ok(Reserved {
            used: used.clone(),
            n,
        })
    }

    /// The item is stored: the bytes stay counted.
    fn keep(mut self) {
        self.n = 0;
    }
}

impl Drop for Reserved {
    fn drop(&mut self) {
        release(&self.used, self.n);
    }
}

/// Bytes counted as being written while this lives.
struct Writing<'a>(&'a AtomicU64, u64);

impl<'a> Writing<'a> {
    fn new(writing: &'a AtomicU64, n: u64) -> Writing<'a> {
        writing.fetch_add(n, Ordering::SeqCst);
        Writing(writing, n)
    }
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        release(self.0, self.1);
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
                // At the free-space floor a record no larger than the one it replaces (a
                // tombstone over a value, a repair's newer version) still goes in.
                let _writing = match self.disk_room(len) {
                    Ok(w) => w,
                    Err(_) if self.records.get(id)?.is_some_and(|d| d.len() as u64 >= len) => {
                        Writing::new(&self.writing, 0)
                    }
                    Err(e) => return Err(e),
                };
                let reserved = Reserved::new(&self.used, self.limit, len)?;
                // A put dropped while the records database commits it can still be
                // committed; it is then not counted (`used`, `items`) until the next start.
                let old = self.records.put(id, data).await?;
                reserved.keep();
                release(&self.used, old);
                // A sealed record is never empty: nothing replaced means a new one.
                if old == 0 {
                    self.items.fetch_add(1, Ordering::SeqCst);
                }
                return Ok(());
            }
            let path = self.path(&key);
            let len = data.len() as u64;
            // Reserved before writing; what a replaced copy held is given back after, and
            // read under the key's lock so that concurrent writes count it once.
            let _writing = match self.disk_room(len) {
                Ok(w) => w,
                // At the floor a block already held (blocks are named by their hash) is
                // not written again: the store is asked to keep it, which it does.
                Err(e) => {
                    let held = std::fs::metadata(&path).is_ok_and(|m| m.len() == len);
                    return if held { Ok(()) } else { Err(e) };
                }
            };
            let reserved = Reserved::new(&self.used, self.limit, len)?;
            let _guard = self.locks.lock(&key).await;
            let tmp = self.dir.join("tmp").join(format!(
                "{}-{}",
                std::process::id(),
                self.seq.fetch_add(1, Ordering::SeqCst)
            ));
            let (used, items) = (self.used.clone(), self.items.clone());
            // The counts are settled inside the write: a put dropped while its write runs
            // (the write goes on) still counts what it wrote.
            blocking::unblock(move || -> io::Result<()> {
                let held = std::fs::metadata(&path).ok();
                let old = held.as_ref().map_or(0, |m| m.len());
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
                match write() {
                    Ok(()) => {
                        reserved.keep();
                        release(&used, old);
                        if held.is_none() {
                            items.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok(())
                    }
                    Err(e) => {
                        // A full disk, say: do not leave the partial copy taking room.
                        let _ = std::fs::remove_file(&tmp);
                        Err(e)
                    }
                }
            })
            .await?;
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
                if old > 0 {
                    release(&self.items, 1);
                }
                return Ok(());
            }
            let path = self.path(&key);
            let _guard = self.locks.lock(&key).await;
            if let Ok(m) = std::fs::metadata(&path) {
                std::fs::remove_file(&path)?;
                release(&self.used, m.len());
                release(&self.items, 1);
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

    fn count(&self) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(async move { Ok(self.items.load(Ordering::SeqCst)) })
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
