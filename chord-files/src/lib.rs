//! # chord-files
//!
//! CFS-style file sharing on a Chord ring, built only on chord-net's public service API.
//!
//! * [`manifest`]: a file is split into chunks (1 MiB by default), each stored under its
//!   BLAKE3 hash and placed on the ring by it; a [`Manifest`] (name, size, chunk hashes,
//!   whole-file hash, upload time) is stored under SHA-1 of the name.
//! * [`store`]: where a node keeps items: [`DiskStore`] (sharded directories, write to a
//!   temporary file, fsync, rename; verified again when read) or [`MemoryStore`].
//! * [`service`]: the [`FilesService`] every node runs, and the maintenance pass that keeps
//!   each item on the `k` nodes succeeding its key (join transfer, crash repair, leave
//!   hand-off are one mechanism).
//! * [`transfer`]: the client side: `put`, `get`, `ls`, `rm`, streaming with a bounded
//!   window of chunks in flight, each verified before it is written.

#![forbid(unsafe_code)]

pub mod manifest;
pub mod service;
pub mod store;
pub mod transfer;

use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use manifest::{Hash, ItemKey, Manifest};
pub use service::FilesService;
pub use store::{DiskStore, MemoryStore, Store};

/// The chord-net service number of the files service.
pub const SERVICE: u16 = 1;

/// Default replication factor k.
pub const DEFAULT_REPLICAS: u8 = 3;

/// Errors of file sharing, as they travel between nodes and clients.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum FilesError {
    /// Names are UTF-8, 1 to 255 bytes, without NUL.
    #[error("invalid file name (1 to 255 bytes of UTF-8, no NUL)")]
    BadName,
    /// A manifest that does not describe a file.
    #[error("malformed manifest")]
    BadManifest,
    /// A request that could not be decoded.
    #[error("malformed request")]
    BadRequest,
    /// Bytes that do not match their hash.
    #[error("data does not match its hash")]
    Corrupt,
    /// The store is full.
    #[error("store full: {used} of {limit} bytes used, {wanted} more requested")]
    StoreFull {
        /// Bytes in use.
        used: u64,
        /// The limit.
        limit: u64,
        /// Bytes asked for.
        wanted: u64,
    },
    /// The storing node's disk failed.
    #[error("storage error: {0}")]
    Storage(String),
    /// A ring lookup failed.
    #[error("lookup failed: {0}")]
    Lookup(String),
    /// A node could not be reached.
    #[error("node unreachable: {0}")]
    Unreachable(String),
    /// No such file in the ring.
    #[error("no file named {0:?} in the ring")]
    NotFound(String),
    /// No replica of an item could be read.
    #[error("no replica of a chunk could be read")]
    Unavailable,
    /// The output exists with other content.
    #[error("{0} exists and differs (use --force to overwrite)")]
    Exists(String),
    /// A local file error.
    #[error("{0}")]
    Local(String),
    /// The node stopped.
    #[error("the node has stopped")]
    Stopped,
}

/// Encode a service message.
pub fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, FilesError> {
    postcard::to_stdvec(v).map_err(|_| FilesError::BadRequest)
}

/// Decode a service message: exactly one value, nothing after it.
pub fn decode<T: DeserializeOwned>(b: &[u8]) -> Result<T, FilesError> {
    match postcard::take_from_bytes(b) {
        Ok((v, [])) => Ok(v),
        _ => Err(FilesError::BadRequest),
    }
}

/// Settings of the files layer on a node.
#[derive(Clone, Debug)]
pub struct FilesConfig {
    /// Replication factor k (default 3).
    pub replicas: u8,
    /// Period of the maintenance pass (default 10 s; also run soon after range changes).
    pub repair_every: Duration,
}

impl Default for FilesConfig {
    fn default() -> FilesConfig {
        FilesConfig {
            replicas: DEFAULT_REPLICAS,
            repair_every: Duration::from_secs(10),
        }
    }
}

/// A node that shares files: a chord-net node with the files service and its maintenance.
#[derive(Clone)]
pub struct FilesNode {
    node: chord_net::Node,
    store: Arc<dyn Store>,
    cfg: FilesConfig,
}

impl FilesNode {
    /// Start `builder`'s node with the files service over `store`.
    pub async fn start(
        builder: chord_net::NodeBuilder,
        store: Arc<dyn Store>,
        cfg: FilesConfig,
    ) -> Result<FilesNode, chord_net::Error> {
        let node = builder
            .service(SERVICE, Arc::new(FilesService::new(store.clone())))
            .start()
            .await?;
        let (n, s, k, every) = (node.clone(), store.clone(), cfg.replicas, cfg.repair_every);
        std::thread::Builder::new()
            .name("chord-files-repair".into())
            .spawn(move || {
                futures_lite::future::block_on(service::maintenance_loop(n, s, k, every))
            })
            .map_err(chord_net::Error::Spawn)?;
        Ok(FilesNode { node, store, cfg })
    }

    /// The underlying ring node.
    pub fn node(&self) -> &chord_net::Node {
        &self.node
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Run one maintenance pass now.
    pub async fn repair(&self) -> Result<service::Repair, FilesError> {
        service::maintain(&self.node, &*self.store, self.cfg.replicas, false).await
    }

    /// Hand every item to the nodes that hold it once we are gone, then leave the ring.
    pub async fn leave(&self) -> Result<service::Repair, FilesError> {
        let r = service::maintain(&self.node, &*self.store, self.cfg.replicas, true).await?;
        self.node.leave().await.map_err(|_| FilesError::Stopped)?;
        Ok(r)
    }
}
