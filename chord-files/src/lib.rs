//! # chord-files
//!
//! CFS-style file sharing on a Chord ring, built only on chord-net's public service API.
//!
//! * [`manifest`]: a file is split into chunks (1 MiB by default), each a block stored
//!   under its BLAKE3 hash and placed on the ring by it; a [`Manifest`] (name, size, chunk
//!   hashes, whole-file hash) is a block too, and the file's signed [`Record`] (at
//!   `H(owner's public key ‖ salt of the name)`) names it: only the owner can replace or
//!   remove a file.
//! * [`dht`]: blocks (content-addressed) and signed, sequenced records (tombstones for
//!   deletes) as an API: [`FilesNode`]'s methods on a local node, [`dht::RemoteDht`]
//!   through a node from outside.
//! * [`store`]: where a node keeps items: [`DiskStore`] (records in redb, blocks as files:
//!   temporary file, fsync, rename, directory fsync; verified again when read) or
//!   [`MemoryStore`].
//! * [`service`]: the [`FilesService`] every node runs; [`maintain`] and the pure
//!   [`plan`]: the pass that keeps each item on the `k` nodes succeeding its key (join
//!   transfer, crash repair, leave hand-off are one mechanism), lease renewal and garbage
//!   collection.
//! * [`transfer`]: the client side: `put`, `get`, `ls`, `rm`, streaming with a bounded
//!   window of chunks in flight, each verified before it is written.

#![forbid(unsafe_code)]

pub mod dht;
mod error;
pub mod maintain;
pub mod manifest;
pub mod plan;
pub mod record;
mod records_db;
pub mod service;
pub mod store;
pub mod transfer;
pub mod wire;

use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

pub use error::FilesError;
pub use manifest::{FileRef, Hash, ItemKey, Manifest};
pub use record::{Identity, Record, Version};
pub use service::FilesService;
pub use store::{DiskStore, MemoryStore, Store};

/// The chord-net service number of the files service.
pub const SERVICE: u16 = 1;

/// Default replication factor k.
pub const DEFAULT_REPLICAS: u8 = 3;

/// How long a block is kept after it is stored or its lease last renewed: 24 hours. The
/// holders of a live file's record renew its blocks every quarter of this; a block that
/// no live file names (its file removed or replaced) is freed one lease after the last
/// renewal.
pub const DEFAULT_BLOCK_LEASE: Duration = Duration::from_secs(24 * 3600);

/// Encode a service message.
pub fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, FilesError> {
    postcard::to_stdvec(v).map_err(FilesError::Encode)
}

/// Decode a service message: exactly one value, nothing after it ([`FilesError::BadAnswer`]
/// if not: a node decoding a request answers [`wire::RemoteError::BadRequest`] instead).
pub fn decode<T: DeserializeOwned>(b: &[u8]) -> Result<T, FilesError> {
    match postcard::take_from_bytes(b) {
        Ok((v, [])) => Ok(v),
        _ => Err(FilesError::BadAnswer),
    }
}

/// Settings of the files layer on a node.
#[derive(Clone, Debug)]
pub struct FilesConfig {
    /// Replication factor k (default 3).
    pub replicas: u8,
    /// Period of the maintenance pass (default 10 s; also run soon after range changes).
    pub repair_every: Duration,
    /// How long a record's tombstone is kept (default 30 days): longer than a holder may
    /// be away, or the holder's old copy comes back when it does.
    pub tombstone_horizon: Duration,
    /// Blocks' lease (default [`DEFAULT_BLOCK_LEASE`]); use the same on every node of a
    /// ring. A partition longer than this can free the blocks of a file whose record's
    /// holders are all on the other side.
    pub block_lease: Duration,
}

impl Default for FilesConfig {
    fn default() -> FilesConfig {
        FilesConfig {
            replicas: DEFAULT_REPLICAS,
            repair_every: Duration::from_secs(10),
            tombstone_horizon: dht::DEFAULT_TOMBSTONE_HORIZON,
            block_lease: DEFAULT_BLOCK_LEASE,
        }
    }
}

/// A node that shares files: a chord-net node with the files service and its maintenance.
/// Cheap to clone; it stops as its node does (see [`chord_net::Node`]: also when the last
/// handle is dropped; call [`FilesNode::leave`] first to hand its items over).
#[derive(Clone)]
pub struct FilesNode {
    node: chord_net::Node,
    store: Arc<dyn Store>,
    cfg: FilesConfig,
}

impl std::fmt::Debug for FilesNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FilesNode")
            .field("addr", &self.node.addr())
            .field("id", &self.node.id())
            .field("replicas", &self.cfg.replicas)
            .field("stored", &self.store.used())
            .finish()
    }
}

impl FilesNode {
    /// Start `builder`'s node with the files service over `store`.
    pub async fn start(
        builder: chord_net::NodeBuilder,
        store: Arc<dyn Store>,
        cfg: FilesConfig,
    ) -> Result<FilesNode, chord_net::Error> {
        let node = builder
            .service(
                SERVICE,
                Arc::new(FilesService::with_lease(store.clone(), cfg.block_lease)),
            )
            .start()
            .await?;
        // Detached: the loop must not keep the node running once the application's
        // handles are gone.
        let (n, s, c) = (node.detached(), store.clone(), cfg.clone());
        std::thread::Builder::new()
            .name("chord-files-repair".into())
            .spawn(move || futures_lite::future::block_on(service::maintenance_loop(n, s, c)))
            .map_err(chord_net::Error::Spawn)?;
        Ok(FilesNode { node, store, cfg })
    }

    /// The underlying ring node.
    pub fn node(&self) -> &chord_net::Node {
        &self.node
    }

    /// The address it listens on.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.node.addr()
    }

    /// Its routing state (predecessor, successors, fingers).
    pub async fn status(&self) -> Result<chord_net::Status, FilesError> {
        self.node.status().await.map_err(|_| FilesError::Stopped)
    }

    /// Its protocol events (range changes, lookups, leave).
    pub async fn events(&self) -> Result<async_channel::Receiver<chord_net::Event>, FilesError> {
        self.node.events().await.map_err(|_| FilesError::Stopped)
    }

    /// Stop at once, handing nothing over, as a crash would.
    pub fn kill(&self) {
        self.node.kill();
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Run one maintenance pass now.
    pub async fn repair(&self) -> Result<service::Repair, FilesError> {
        service::maintain(&self.node, &*self.store, self.cfg.replicas, false).await
    }

    /// Store a block (at most [`manifest::MAX_CHUNK`] bytes) on its `k` holders; returns
    /// its BLAKE3 hash, the name to read it by.
    pub async fn put_block(&self, bytes: Vec<u8>) -> Result<Hash, FilesError> {
        let k = self.cfg.replicas;
        Ok(dht::put_block(&mut dht::Local(&self.node), bytes, k)
            .await?
            .0)
    }

    /// Read a block by its hash (`None`: no holder has it). The bytes are checked.
    pub async fn get_block(&self, hash: Hash) -> Result<Option<Vec<u8>>, FilesError> {
        dht::get_block(&mut dht::Local(&self.node), hash, self.cfg.replicas).await
    }

    /// Write the next version of `identity`'s record `salt` (at most
    /// [`record::MAX_SALT`] bytes) with `value` (at most [`record::MAX_VALUE`] bytes).
    pub async fn put_record(
        &self,
        identity: &Identity,
        salt: &[u8],
        value: Vec<u8>,
        opts: dht::WriteOptions,
    ) -> Result<dht::Written, FilesError> {
        let route = &mut dht::Local(&self.node);
        dht::write_record(route, identity, salt, Some(value), opts, self.cfg.replicas).await
    }

    /// Read the live value of the record of `public_key` and `salt` (`None`: there is
    /// none, or it was deleted): the highest valid version among its holders.
    pub async fn get_record(
        &self,
        public_key: &[u8; 32],
        salt: &[u8],
    ) -> Result<Option<dht::RecordValue>, FilesError> {
        let route = &mut dht::Local(&self.node);
        dht::read_record(route, public_key, salt, self.cfg.replicas).await
    }

    /// Delete `identity`'s record `salt`: a signed tombstone, kept for the configured
    /// horizon. `None` if there was no live record.
    pub async fn delete_record(
        &self,
        identity: &Identity,
        salt: &[u8],
    ) -> Result<Option<dht::Written>, FilesError> {
        let (k, horizon) = (self.cfg.replicas, self.cfg.tombstone_horizon);
        dht::delete_record(&mut dht::Local(&self.node), identity, salt, horizon, k).await
    }

    /// The highest version held of the record at `id`, tombstones included, as signed.
    pub async fn fetch_record(&self, id: chord_core::Id) -> Result<Option<Record>, FilesError> {
        dht::fetch_record(&mut dht::Local(&self.node), id, self.cfg.replicas).await
    }

    /// Store a record signed elsewhere (every holder checks it).
    pub async fn store_record(&self, record: &Record) -> Result<u8, FilesError> {
        dht::store_record(&mut dht::Local(&self.node), record, None, self.cfg.replicas).await
    }

    /// Routes for a transfer from this node: one per chunk in flight, all calls made by
    /// the node itself (no connection to itself).
    fn routes(&self, opts: &transfer::TransferOptions) -> Vec<dht::Local<'_>> {
        (0..opts.window.max(1))
            .map(|_| dht::Local(&self.node))
            .collect()
    }

    /// Store `bytes` as the file `name` of `opts.identity` (chunked, k copies, signed).
    pub async fn put_bytes(
        &self,
        name: &str,
        bytes: &[u8],
        opts: &transfer::TransferOptions,
    ) -> Result<transfer::PutReport, FilesError> {
        self.put_reader(name, bytes, opts, &|_| {}).await
    }

    /// Store what `reader` gives, to its end, as the file `name` of `opts.identity`;
    /// `progress` is called with the bytes stored so far.
    pub async fn put_reader(
        &self,
        name: &str,
        reader: impl futures::AsyncRead + Unpin,
        opts: &transfer::TransferOptions,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<transfer::PutReport, FilesError> {
        transfer::put_stream(self.routes(opts), reader, None, name, opts, progress).await
    }

    /// Read the file `name` (`OWNER/NAME`, or a plain name of `opts.identity`) into
    /// memory, refusing one larger than `max` bytes before fetching anything.
    pub async fn get_bytes(
        &self,
        name: &str,
        max: u64,
        opts: &transfer::TransferOptions,
    ) -> Result<Vec<u8>, FilesError> {
        let mut out = Vec::new();
        let nothing = &|_, _| {};
        transfer::get_stream(self.routes(opts), name, &mut out, Some(max), opts, nothing).await?;
        Ok(out)
    }

    /// Read the file `name` into `writer`, chunk by chunk, each checked before it is
    /// written; returns its manifest. See [`transfer::get_writer`].
    pub async fn get_writer(
        &self,
        name: &str,
        writer: impl futures::AsyncWrite + Unpin,
        opts: &transfer::TransferOptions,
        progress: &(dyn Fn(u64, u64) + Sync),
    ) -> Result<Manifest, FilesError> {
        transfer::get_stream(self.routes(opts), name, writer, None, opts, progress).await
    }

    /// Hand every item to the nodes that hold it once we are gone, then leave the ring.
    /// It always leaves: what could not be handed over is counted in the report's
    /// `failed` (those items keep their other replicas, if any).
    pub async fn leave(&self) -> Result<service::Repair, FilesError> {
        let r = service::maintain(&self.node, &*self.store, self.cfg.replicas, true).await;
        let left = self.node.leave().await.map_err(|_| FilesError::Stopped);
        match (r, left) {
            (Ok(r), Ok(())) => Ok(r),
            (Err(FilesError::Stopped), _) | (_, Err(_)) => Err(FilesError::Stopped),
            (Err(e), Ok(())) => {
                tracing::warn!(
                    "hand-over before leaving failed: {}",
                    crate::error::chain(&e)
                );
                Ok(service::Repair {
                    failed: self.store.list().await.map_or(0, |l| l.len()),
                    ..service::Repair::default()
                })
            }
        }
    }
}

/// The README's Rust examples, compiled (and run, unless marked `no_run`) as doctests so
/// they stay true. Here rather than in chord-net: they use chord-files too.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
