//! Where a [`crate::DiskStore`] keeps its records: one redb database file instead of a
//! file (and an fsync, and a directory entry) per record.
//!
//! Writes go to one writer thread that commits whatever has queued up in a single
//! transaction (group commit): every write is durable when its caller hears back (redb's
//! `Durability::Immediate`), and concurrent writers share an fsync instead of waiting for
//! one each. Reads take their own read transaction and never wait for the writer.

use std::io;
use std::path::Path;
use std::sync::Arc;

use chord_core::Id;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

const RECORDS: TableDefinition<&[u8; 20], &[u8]> = TableDefinition::new("records");

/// Most writes committed in one transaction.
const BATCH: usize = 512;

/// redb's page cache (its default is 1 GiB): a node's memory must stay bounded whatever
/// it stores; the operating system's page cache still holds what is read often.
const CACHE: usize = 32 << 20;

enum Op {
    Put([u8; 20], Vec<u8>),
    Delete([u8; 20]),
}

/// What a write replaced: the length of the earlier value (0 if none).
type Reply = async_channel::Sender<io::Result<u64>>;

pub(crate) struct RecordDb {
    db: Arc<Database>,
    writes: async_channel::Sender<(Op, Reply)>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl Drop for RecordDb {
    /// The writer finishes what is queued and lets go of the database, so that the same
    /// directory can be opened again at once (redb allows one opener).
    fn drop(&mut self) {
        self.writes.close();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

fn other(e: impl std::error::Error + Send + Sync + 'static) -> io::Error {
    io::Error::other(e)
}

impl RecordDb {
    /// Open (or create) the database at `path`; returns it and the bytes its records hold.
    pub(crate) fn open(path: &Path) -> io::Result<(RecordDb, u64, u64)> {
        // redb allows one opener per process. A store whose node was just stopped in this
        // process lets go of it once the node's threads are done: wait a little for that.
        let mut tries = 0;
        let db = loop {
            match Database::builder().set_cache_size(CACHE).create(path) {
                Ok(db) => break Arc::new(db),
                Err(redb::DatabaseError::DatabaseAlreadyOpen) if tries < 50 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                    return Err(io::Error::new(
                        io::ErrorKind::ResourceBusy,
                        format!("{} is in use by another store", path.display()),
                    ))
                }
                Err(e) => return Err(other(e)),
            }
        };
        // Make sure the table exists, so that readers can open it.
        let w = db.begin_write().map_err(other)?;
        w.open_table(RECORDS).map_err(other)?;
        w.commit().map_err(other)?;
        let (mut bytes, mut rows) = (0u64, 0u64);
        {
            let r = db.begin_read().map_err(other)?;
            let t = r.open_table(RECORDS).map_err(other)?;
            for row in t.iter().map_err(other)? {
                let (_, v) = row.map_err(other)?;
                bytes += v.value().len() as u64;
                rows += 1;
            }
        }
        let (tx, rx) = async_channel::bounded::<(Op, Reply)>(4 * BATCH);
        let shared = db.clone();
        let writer = std::thread::Builder::new()
            .name("chord-records-writer".into())
            .spawn(move || write_loop(&shared, &rx))?;
        let db = RecordDb {
            db,
            writes: tx,
            writer: Some(writer),
        };
        Ok((db, bytes, rows))
    }

    async fn write(&self, op: Op) -> io::Result<u64> {
        let (tx, rx) = async_channel::bounded(1);
        self.writes
            .send((op, tx))
            .await
            .map_err(|_| io::Error::other("the record writer stopped"))?;
        rx.recv()
            .await
            .map_err(|_| io::Error::other("the record writer stopped"))?
    }

    /// Store `data` as the record at `id`, durably; returns the replaced value's length.
    pub(crate) async fn put(&self, id: Id, data: Vec<u8>) -> io::Result<u64> {
        self.write(Op::Put(id.0, data)).await
    }

    /// Remove the record at `id`, durably; returns the removed value's length.
    pub(crate) async fn delete(&self, id: Id) -> io::Result<u64> {
        self.write(Op::Delete(id.0)).await
    }

    pub(crate) fn get(&self, id: Id) -> io::Result<Option<Vec<u8>>> {
        let r = self.db.begin_read().map_err(other)?;
        let t = r.open_table(RECORDS).map_err(other)?;
        Ok(t.get(&id.0).map_err(other)?.map(|v| v.value().to_vec()))
    }

    pub(crate) fn has(&self, id: Id) -> io::Result<bool> {
        let r = self.db.begin_read().map_err(other)?;
        let t = r.open_table(RECORDS).map_err(other)?;
        Ok(t.get(&id.0).map_err(other)?.is_some())
    }

    /// Up to `limit` ids after `after` (from the start if `None`), in order.
    pub(crate) fn ids_after(&self, after: Option<Id>, limit: usize) -> io::Result<Vec<Id>> {
        let r = self.db.begin_read().map_err(other)?;
        let t = r.open_table(RECORDS).map_err(other)?;
        let mut out = Vec::new();
        let rows = match &after {
            Some(a) => {
                t.range::<&[u8; 20]>((std::ops::Bound::Excluded(&a.0), std::ops::Bound::Unbounded))
            }
            None => t.iter(),
        }
        .map_err(other)?;
        for row in rows.take(limit) {
            let (k, _) = row.map_err(other)?;
            out.push(Id(*k.value()));
        }
        Ok(out)
    }
}

/// Commit what has queued, in batches, until every store handle is gone.
fn write_loop(db: &Database, rx: &async_channel::Receiver<(Op, Reply)>) {
    while let Ok(first) = rx.recv_blocking() {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let mut replaced = Vec::with_capacity(batch.len());
        let done = (|| -> Result<(), redb::Error> {
            let w = db.begin_write()?;
            {
                let mut t = w.open_table(RECORDS)?;
                for (op, _) in &batch {
                    let old = match op {
                        Op::Put(id, data) => t.insert(id, &data[..])?,
                        Op::Delete(id) => t.remove(id)?,
                    };
                    replaced.push(old.map_or(0, |v| v.value().len() as u64));
                }
            }
            w.commit()?;
            Ok(())
        })();
        for (n, (_, reply)) in batch.into_iter().enumerate() {
            let r = match &done {
                Ok(()) => Ok(replaced.get(n).copied().unwrap_or(0)),
                Err(e) => Err(io::Error::other(e.to_string())),
            };
            let _ = reply.try_send(r);
        }
    }
}
