//! The files service that every node runs: each request ([`crate::wire`]) served with the
//! node's own store (`Locate` uses the ring). Keeping items on the right nodes is
//! [`crate::maintain`]'s job; what to send and drop, [`crate::plan`]'s.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chord_core::Id;
use chord_net::Node;

use crate::maintain::held_version;
use crate::manifest::ItemKey;
use crate::record::{now_ms, Record};
use crate::store::{version, Store, StoreError};
use crate::wire::RemoteError;
use crate::{decode, encode};

pub use crate::maintain::{
    ask, collect_garbage, lease_grace, locate, maintain, maintenance_loop, renew_files, Repair,
};
pub use crate::wire::{
    proof, FilesRequest, FilesResponse, MAX_HAVE, PAGE_BYTES, PAGE_RECORDS, STATS_MAX_AGE,
};

/// Most records a `ListFiles` answer looks at.
const LIST_EXAMINE: usize = 4096;

/// The files service of one node.
pub struct FilesService {
    store: Arc<dyn Store>,
    locks: Arc<crate::store::Locks>,
    lease: Duration,
    count: Arc<CountCache>,
}

/// The store's item count, taken at most once per [`STATS_MAX_AGE`] however often
/// `Stats` is asked (counting may read a whole directory).
#[derive(Default)]
struct CountCache(futures::lock::Mutex<Option<(Instant, u64)>>);

impl CountCache {
    async fn get(&self, store: &dyn Store) -> Result<u64, StoreError> {
        let mut cached = self.0.lock().await;
        if let Some((at, n)) = *cached {
            if at.elapsed() < STATS_MAX_AGE {
                return Ok(n);
            }
        }
        let n = store.count().await?;
        *cached = Some((Instant::now(), n));
        Ok(n)
    }
}

impl FilesService {
    /// A service over `store`, with blocks leased for [`crate::DEFAULT_BLOCK_LEASE`].
    pub fn new(store: Arc<dyn Store>) -> FilesService {
        FilesService::with_lease(store, crate::DEFAULT_BLOCK_LEASE)
    }

    /// A service over `store` whose blocks are kept `lease` after they are stored or last
    /// renewed.
    pub fn with_lease(store: Arc<dyn Store>, lease: Duration) -> FilesService {
        FilesService {
            store,
            locks: Arc::new(crate::store::Locks::default()),
            lease,
            count: Arc::default(),
        }
    }
}

impl chord_net::Service for FilesService {
    fn handle(
        &self,
        node: Node,
        _from: Option<SocketAddr>,
        request: Vec<u8>,
    ) -> Pin<Box<dyn Future<Output = Vec<u8>> + Send>> {
        let (store, locks, lease) = (self.store.clone(), self.locks.clone(), self.lease);
        let count = self.count.clone();
        Box::pin(async move {
            let answer = match decode::<FilesRequest>(&request) {
                Ok(req) => serve(&node, &*store, &locks, &count, lease, req)
                    .await
                    .unwrap_or_else(FilesResponse::Error),
                Err(_) => FilesResponse::Error(RemoteError::BadRequest),
            };
            encode(&answer).unwrap_or_default()
        })
    }
}

async fn serve(
    node: &Node,
    store: &dyn Store,
    locks: &crate::store::Locks,
    count: &CountCache,
    lease: Duration,
    req: FilesRequest,
) -> Result<FilesResponse, RemoteError> {
    let lease_end = now_ms().saturating_add(lease.as_millis() as u64);
    Ok(match req {
        FilesRequest::Locate { id, replicas } => {
            FilesResponse::Located(locate(node, id, replicas.max(1)).await?.1)
        }
        FilesRequest::LocateRange { id, replicas } => {
            let (from, holders) = locate(node, id, replicas.max(1)).await?;
            FilesResponse::LocatedRange {
                // Unknown predecessor: the range is just this id.
                from: from.unwrap_or_else(|| id.wrapping_sub(Id::pow2(0))),
                holders,
            }
        }
        FilesRequest::Replicate {
            key,
            data,
            until_ms,
        } => replicate_here(store, locks, lease_end, key, data, until_ms).await?,
        FilesRequest::Renew { keys, until_ms } => {
            FilesResponse::Have(renew_here(store, keys, until_ms.min(lease_end)).await?)
        }
        FilesRequest::StoreIf { key, data, expect } => {
            if !matches!(key, ItemKey::Record(_)) {
                return Err(RemoteError::BadRequest);
            }
            store_here(store, locks, lease_end, key, data, Some(expect)).await?
        }
        FilesRequest::Store { key, data } => {
            store_here(store, locks, lease_end, key, data, None).await?
        }
        FilesRequest::Fetch { key } => match store.get(key).await? {
            Some(d) => FilesResponse::Data(d),
            None => FilesResponse::NotFound,
        },
        FilesRequest::Prove { key, nonce } => match store.get(key).await? {
            Some(d) => FilesResponse::Proof(proof(&nonce, node.addr(), &d)),
            None => FilesResponse::NotFound,
        },
        FilesRequest::Stats => FilesResponse::Stats {
            stored: store.used(),
            items: count.get(store).await?,
        },
        FilesRequest::Have { keys } => {
            if keys.len() > MAX_HAVE {
                return Err(RemoteError::BadRequest);
            }
            let mut out = Vec::with_capacity(keys.len());
            for k in keys {
                out.push(store.has(k).await?);
            }
            FilesResponse::Have(out)
        }
        FilesRequest::Remove { .. } => {
            // Nobody may remove an item on request: a record goes by its owner's tombstone,
            // a block when no live file renews its lease.
            return Err(RemoteError::NotAllowed(
                "items are removed by tombstones (records) and expiring leases (blocks)".into(),
            ));
        }
        FilesRequest::Versions { keys } => {
            if keys.len() > MAX_HAVE {
                return Err(RemoteError::BadRequest);
            }
            let mut out = Vec::with_capacity(keys.len());
            for k in keys {
                out.push(held_version(store, k).await?);
            }
            FilesResponse::Versions(out)
        }
        FilesRequest::ListFiles { after } => list_files_page(node, store, after).await?,
        FilesRequest::ListHere => {
            // Kept for what it says of the node; files are listed by `ListFiles`.
            let manifests = Vec::new();
            let status = node.status().await.map_err(|_| RemoteError::Stopped)?;
            FilesResponse::Here {
                manifests,
                successor: status.successors.first().map(|p| p.addr),
                stored: store.used(),
            }
        }
    })
}

/// A copy pushed by another holder (repair, hand-off): stored like any item, but a block
/// whose lease has ended is garbage and not taken back (holders would pass it back and
/// forth for ever), and a block's lease here only grows.
async fn replicate_here(
    store: &dyn Store,
    locks: &crate::store::Locks,
    lease_end: u64,
    key: ItemKey,
    data: Vec<u8>,
    until_ms: u64,
) -> Result<FilesResponse, RemoteError> {
    if matches!(key, ItemKey::Chunk(_)) && until_ms < now_ms() {
        return Err(RemoteError::Expired);
    }
    let before = match key {
        ItemKey::Chunk(_) => store.lease(key).await?,
        _ => None,
    };
    let r = store_here(store, locks, lease_end, key, data, None).await?;
    if let ItemKey::Chunk(_) = key {
        // A copy sent with a short lease never cuts the lease of a block held here already.
        let until = until_ms.min(lease_end).max(before.unwrap_or(0));
        store.set_lease(key, until).await?;
    }
    Ok(r)
}

/// Extend the leases of the blocks among `keys` held here to `until` (never shorten
/// one); which keys are held.
async fn renew_here(
    store: &dyn Store,
    keys: Vec<ItemKey>,
    until: u64,
) -> Result<Vec<bool>, RemoteError> {
    if keys.len() > MAX_HAVE {
        return Err(RemoteError::BadRequest);
    }
    let mut out = Vec::with_capacity(keys.len());
    for k in keys {
        let held = match k {
            ItemKey::Chunk(_) => store.lease(k).await?,
            _ => None,
        };
        if let Some(now) = held {
            if now < until {
                store.set_lease(k, until).await?;
            }
        }
        out.push(held.is_some());
    }
    Ok(out)
}

/// One page of the file records held here, after record `after`: bounded work per page
/// (at most `LIST_EXAMINE` records looked at, whatever else the store holds) and bounded
/// size (`PAGE_RECORDS`, `PAGE_BYTES`).
async fn list_files_page(
    node: &Node,
    store: &dyn Store,
    after: Option<Id>,
) -> Result<FilesResponse, RemoteError> {
    let ids = store.record_ids_after(after, LIST_EXAMINE).await?;
    let (mut records, mut bytes, mut more) = (Vec::new(), 0, None);
    let mut last = None;
    for &id in &ids {
        if records.len() >= PAGE_RECORDS || bytes >= PAGE_BYTES {
            more = last;
            break;
        }
        last = Some(id);
        let Some(d) = store.get(ItemKey::Record(id)).await? else {
            continue;
        };
        if let Ok(r) = Record::decode_stored(&d, id) {
            if r.salt.starts_with(crate::manifest::FILE_PREFIX) {
                bytes += d.len();
                records.push(r);
            }
        }
    }
    if more.is_none() && ids.len() == LIST_EXAMINE {
        more = last;
    }
    let status = node.status().await.map_err(|_| RemoteError::Stopped)?;
    Ok(FilesResponse::Files {
        records,
        more,
        successor: status.successors.first().map(|p| p.addr),
        stored: store.used(),
    })
}

/// Store an item here: checked once, on arrival (a block's hash; a record's signature,
/// position and expiry); a record only if it is newer than the one held (else `Newer`
/// with the held one), and with `expect`, only if the live sequence held is that one
/// (a compare-and-swap the holders enforce: check and write under one lock).
async fn store_here(
    store: &dyn Store,
    locks: &crate::store::Locks,
    lease_end: u64,
    key: ItemKey,
    data: Vec<u8>,
    expect: Option<Option<u64>>,
) -> Result<FilesResponse, RemoteError> {
    let ItemKey::Record(id) = key else {
        // A block: its hash is all there is to check (retired manifests fail it). Stored,
        // or stored again, with a full lease from now.
        version(&key, &data).ok_or(RemoteError::Corrupt)?;
        store.put(key, data).await?;
        store.set_lease(key, lease_end).await?;
        return Ok(FilesResponse::Stored);
    };
    let r = Record::decode_at(&data, id)?;
    if r.expired(now_ms()) {
        return Err(RemoteError::Expired);
    }
    let _guard = locks.lock(&key).await;
    if let Some(d) = store.get(key).await? {
        if let Ok(here) = Record::decode_stored(&d, id) {
            // With `expect`, refused if written since the writer looked: a live record
            // where it saw none, or any version above the sequence it saw (a holder that
            // lags behind what the writer saw elsewhere does not refuse). In any case
            // the highest version wins: what is here stays if it is as new.
            let moved = match expect {
                Some(None) => !here.is_tombstone(),
                Some(Some(seen)) => here.seq > seen,
                None => false,
            };
            if moved || here.version() >= r.version() {
                return Ok(FilesResponse::Newer(d));
            }
        }
    }
    store.put(key, data).await?;
    Ok(FilesResponse::Stored)
}
