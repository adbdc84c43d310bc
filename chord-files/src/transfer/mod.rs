//! The client side of file sharing: `put`, `get`, `ls`, `rm`.
//!
//! A client talks to one node (to locate items on the ring) and directly to the nodes that
//! hold them. Transfers stream: at most `window` chunks are in memory at once, fetched or
//! stored in parallel, each verified against its hash before it is written; the output
//! file appears (renamed into place) only once the whole-file hash matches.

use std::collections::HashMap;
use std::net::SocketAddr;

use chord_core::{Id, Peer};
use chord_net::{Client, Limits, NetworkKey};

use crate::manifest::DEFAULT_CHUNK;
use crate::record::Identity;
use crate::wire::{FilesRequest, FilesResponse};
use crate::{decode, encode, FilesError, DEFAULT_REPLICAS, SERVICE};

mod get;
mod ls;
mod put;
mod window;

pub(crate) use get::get_stream;
pub use get::{get, get_bytes, get_writer, manifest, GetOutcome};
pub use ls::{ls, rm, Listing};
pub(crate) use put::put_stream;
pub use put::{put, put_bytes, put_reader, PutReport};
use window::Window;

/// Settings of a transfer.
#[derive(Clone, Debug)]
pub struct TransferOptions {
    /// Copies of each item (put), and how many holders to try (get).
    pub replicas: u8,
    /// Chunks in flight at once.
    pub window: usize,
    /// Chunk size for uploads.
    pub chunk_size: u32,
    /// The ring's network key, if it uses one.
    pub network_key: Option<NetworkKey>,
    /// Whose files: the signing key that `put` and `rm` use, and the owner of names given
    /// without one. Reading `OWNER/NAME` needs none.
    pub identity: Option<Identity>,
    /// During an upload, how often the leases of the chunks stored so far are renewed
    /// (default 1 hour). Until the file's record is written nobody else renews them, so an
    /// upload longer than the nodes' block lease (24 hours by default) would lose its
    /// first chunks; keep this well below that lease.
    pub renew_every: std::time::Duration,
}

impl Default for TransferOptions {
    fn default() -> TransferOptions {
        TransferOptions {
            replicas: DEFAULT_REPLICAS,
            window: 16,
            chunk_size: DEFAULT_CHUNK,
            network_key: None,
            identity: None,
            renew_every: std::time::Duration::from_secs(3600),
        }
    }
}

/// One lane of a transfer: its own connections (a `Client` serves one request at a time).
pub(crate) struct Lane {
    node: SocketAddr,
    key: Option<NetworkKey>,
    /// A buffer to read the next answer into (recycled from chunks already written).
    pub(crate) spare: Vec<u8>,
    clients: HashMap<SocketAddr, Client>,
    /// Ring ranges `(from, to]` already located, with their holders.
    ranges: Vec<(Id, Id, Vec<Peer>)>,
    /// Records whose signature was checked already.
    pub(crate) verified: crate::dht::Verified,
}

impl Lane {
    pub(crate) fn node(&self) -> SocketAddr {
        self.node
    }

    pub(crate) fn new(node: SocketAddr, key: &Option<NetworkKey>) -> Lane {
        Lane {
            node,
            key: key.clone(),
            spare: Vec::new(),
            clients: HashMap::new(),
            ranges: Vec::new(),
            verified: crate::dht::Verified::default(),
        }
    }

    pub(crate) async fn ask(
        &mut self,
        to: SocketAddr,
        req: &FilesRequest,
    ) -> Result<FilesResponse, FilesError> {
        let bytes = encode(req)?;
        let c = match self.clients.entry(to) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(
                Client::connect_with_key(to, Limits::default(), self.key.as_ref())
                    .await
                    .map_err(FilesError::Unreachable)?,
            ),
        };
        match c
            .call_into(SERVICE, bytes, std::mem::take(&mut self.spare))
            .await
        {
            Ok(mut answer) => {
                // A chunk: keep it in the buffer it arrived in.
                if let Some(at) = FilesResponse::data_at(&answer) {
                    answer.drain(..at);
                    return Ok(FilesResponse::Data(answer));
                }
                match decode::<FilesResponse>(&answer)? {
                    FilesResponse::Error(e) => Err(e.into()),
                    r => Ok(r),
                }
            }
            Err(e) => {
                // The connection may be broken: open a new one next time.
                self.clients.remove(&to);
                Err(FilesError::Unreachable(e))
            }
        }
    }

    /// The holders of ring position `id`, from the ranges already located if possible
    /// (`fresh` forces a new lookup, after a cached answer turned out wrong).
    pub(crate) async fn locate(
        &mut self,
        id: Id,
        k: u8,
        fresh: bool,
    ) -> Result<Vec<Peer>, FilesError> {
        if !fresh {
            if let Some((_, _, h)) = self
                .ranges
                .iter()
                .find(|(from, to, _)| id.in_half_open(*from, *to))
            {
                // A range located for a wider read may hold more than `k`.
                return Ok(h.iter().take(usize::from(k)).copied().collect());
            }
        }
        let node = self.node;
        match self
            .ask(node, &FilesRequest::LocateRange { id, replicas: k })
            .await?
        {
            FilesResponse::LocatedRange { from, holders } if !holders.is_empty() => {
                let to = holders[0].id;
                // Keep the cache small and never let a stale range shadow a fresh one.
                self.ranges.retain(|(f, t, _)| !(id.in_half_open(*f, *t)));
                if self.ranges.len() >= 256 {
                    self.ranges.remove(0);
                }
                if from != to {
                    self.ranges.push((from, to, holders.clone()));
                }
                Ok(holders)
            }
            _ => Err(FilesError::NoHolder),
        }
    }
}

/// One lane per chunk in flight, each with its own connections.
fn lanes(node: SocketAddr, opts: &TransferOptions) -> Vec<Lane> {
    (0..opts.window.max(1))
        .map(|_| Lane::new(node, &opts.network_key))
        .collect()
}
