//! The files service that every node runs, and its maintenance loop.
//!
//! Requests are served with the node's own store; `Locate` uses the ring. Maintenance
//! keeps every item on the `k` nodes that succeed its key: it pushes items to replicas
//! that miss them (asking first which they have, so nothing in place is sent again) and
//! drops a local copy once this node is no longer among the `k` and all of them hold it.
//! The same pass hands data to a node that joined, re-replicates after a crash, and (run
//! with `leaving`) hands everything over before a graceful leave.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chord_core::{Event, Id, Peer};
use chord_net::Node;
use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

use crate::manifest::{ItemKey, Manifest};
use crate::store::{verify, Store, StoreError};
use crate::{decode, encode, FilesError, SERVICE};

/// Most keys in one `Have` request.
pub const MAX_HAVE: usize = 4096;

/// A request to the files service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FilesRequest {
    /// The `replicas` nodes that should hold ring position `id`: its owner, then the
    /// owner's successors.
    Locate {
        /// Ring position.
        id: Id,
        /// How many.
        replicas: u8,
    },
    /// Store an item here (verified first).
    Store {
        /// Its key.
        key: ItemKey,
        /// Its bytes.
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// Read an item held here.
    Fetch {
        /// Its key.
        key: ItemKey,
    },
    /// Which of these items are held here?
    Have {
        /// At most [`MAX_HAVE`] keys.
        keys: Vec<ItemKey>,
    },
    /// Remove an item held here.
    Remove {
        /// Its key.
        key: ItemKey,
    },
    /// The manifests held here, and where to continue a ring walk.
    ListHere,
    /// Like `Locate`, also telling the range of ring positions the answer holds for.
    LocateRange {
        /// Ring position.
        id: Id,
        /// How many.
        replicas: u8,
    },
}

/// The answer of the files service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FilesResponse {
    /// Answer to `Locate`.
    Located(Vec<Peer>),
    /// Stored (or a newer manifest of the same name was already here).
    Stored,
    /// The item's bytes.
    Data(#[serde(with = "serde_bytes")] Vec<u8>),
    /// Not held here.
    NotFound,
    /// One flag per asked key.
    Have(Vec<bool>),
    /// Removed (or was not here).
    Removed,
    /// Answer to `ListHere`.
    Here {
        /// Manifests held here.
        manifests: Vec<Manifest>,
        /// This node's successor, if it has one.
        successor: Option<SocketAddr>,
        /// Bytes stored here.
        stored: u64,
    },
    /// The request failed.
    Error(FilesError),
    /// Answer to `LocateRange`: the holders, and the ring range `(from, holders[0]]` for
    /// which they are the same, so a client can reuse the answer.
    LocatedRange {
        /// Start of the range (exclusive): the owner's predecessor.
        from: Id,
        /// The holders, owner first.
        holders: Vec<Peer>,
    },
}

impl FilesResponse {
    /// Where the bytes of an encoded `Data` answer start (they run to its end), so that a
    /// receiver can keep them in place instead of copying them out.
    pub fn data_at(encoded: &[u8]) -> Option<usize> {
        const DATA: u32 = 2; // the variant index of `Data`, pinned by a test
        let (variant, rest) = postcard::take_from_bytes::<u32>(encoded).ok()?;
        if variant != DATA {
            return None;
        }
        let (bytes, rest) = postcard::take_from_bytes::<&[u8]>(rest).ok()?;
        rest.is_empty().then(|| encoded.len() - bytes.len())
    }
}

/// The files service of one node.
pub struct FilesService {
    store: Arc<dyn Store>,
}

impl FilesService {
    /// A service over `store`.
    pub fn new(store: Arc<dyn Store>) -> FilesService {
        FilesService { store }
    }
}

impl chord_net::Service for FilesService {
    fn handle(
        &self,
        node: Node,
        _from: Option<SocketAddr>,
        request: Vec<u8>,
    ) -> Pin<Box<dyn Future<Output = Vec<u8>> + Send>> {
        let store = self.store.clone();
        Box::pin(async move {
            let answer = match decode::<FilesRequest>(&request) {
                Ok(req) => serve(&node, &*store, req)
                    .await
                    .unwrap_or_else(FilesResponse::Error),
                Err(_) => FilesResponse::Error(FilesError::BadRequest),
            };
            encode(&answer).unwrap_or_default()
        })
    }
}

fn store_err(e: StoreError) -> FilesError {
    match e {
        StoreError::Full {
            used,
            limit,
            wanted,
        } => FilesError::StoreFull {
            used,
            limit,
            wanted,
        },
        StoreError::Io(e) => FilesError::Storage(e.to_string()),
    }
}

async fn serve(
    node: &Node,
    store: &dyn Store,
    req: FilesRequest,
) -> Result<FilesResponse, FilesError> {
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
        FilesRequest::Store { key, data } => {
            if !verify(&key, &data) {
                return Err(FilesError::Corrupt);
            }
            if let ItemKey::Manifest(_) = key {
                // Last writer wins: keep a newer manifest already here.
                if let Some(old) = store.get(key).await.map_err(store_err)? {
                    let (Ok(old), Ok(new)) = (decode::<Manifest>(&old), decode::<Manifest>(&data))
                    else {
                        return Err(FilesError::Corrupt);
                    };
                    if !new.supersedes(&old) {
                        return Ok(FilesResponse::Stored);
                    }
                }
            }
            store.put(key, data).await.map_err(store_err)?;
            FilesResponse::Stored
        }
        FilesRequest::Fetch { key } => match store.get(key).await.map_err(store_err)? {
            Some(d) => FilesResponse::Data(d),
            None => FilesResponse::NotFound,
        },
        FilesRequest::Have { keys } => {
            if keys.len() > MAX_HAVE {
                return Err(FilesError::BadRequest);
            }
            let mut out = Vec::with_capacity(keys.len());
            for k in keys {
                out.push(store.has(k).await.map_err(store_err)?);
            }
            FilesResponse::Have(out)
        }
        FilesRequest::Remove { key } => {
            store.delete(key).await.map_err(store_err)?;
            FilesResponse::Removed
        }
        FilesRequest::ListHere => {
            let mut manifests = Vec::new();
            for key in store.list().await.map_err(store_err)? {
                if let ItemKey::Manifest(_) = key {
                    if let Some(d) = store.get(key).await.map_err(store_err)? {
                        if let Ok(m) = decode::<Manifest>(&d) {
                            manifests.push(m);
                        }
                    }
                }
            }
            let status = node.status().await.map_err(|_| FilesError::Stopped)?;
            FilesResponse::Here {
                manifests,
                successor: status.successors.first().map(|p| p.addr),
                stored: store.used(),
            }
        }
    })
}

/// The `k` nodes that should hold ring position `id` (distinct hosts, owner first), and
/// the owner's predecessor id if known.
pub async fn locate(node: &Node, id: Id, k: u8) -> Result<(Option<Id>, Vec<Peer>), FilesError> {
    let found = node
        .lookup(id)
        .await
        .map_err(|e| FilesError::Lookup(e.to_string()))?;
    let pred = found.predecessor.map(|p| p.id);
    let mut out = vec![found.owner];
    for p in found.successors {
        if out.len() >= usize::from(k) {
            break;
        }
        if !out.iter().any(|q| q.addr == p.addr) {
            out.push(p);
        }
    }
    Ok((pred, out))
}

/// Ask the files service at `to` (through `node`) and decode the answer.
pub async fn ask(
    node: &Node,
    to: SocketAddr,
    req: &FilesRequest,
) -> Result<FilesResponse, FilesError> {
    let bytes = encode(req)?;
    let answer = node.call(to, SERVICE, bytes).await.map_err(|e| match e {
        chord_net::Error::Stopped => FilesError::Stopped,
        e => FilesError::Unreachable(e.to_string()),
    })?;
    decode(&answer).map_err(|_| FilesError::BadRequest)
}

/// Counts of one maintenance pass.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Repair {
    /// Items examined.
    pub items: usize,
    /// Copies sent to replicas that missed them.
    pub sent: usize,
    /// Bytes sent.
    pub bytes: u64,
    /// Local copies dropped (no longer ours, and every replica has it).
    pub dropped: usize,
}

/// One maintenance pass over the items held here. With `leaving`, this node counts as
/// gone: everything is pushed to the others and nothing is dropped (the caller stops).
pub async fn maintain(
    node: &Node,
    store: &dyn Store,
    k: u8,
    leaving: bool,
) -> Result<Repair, FilesError> {
    let me = node.addr();
    let mut keys = store.list().await.map_err(store_err)?;
    // Sorted by ring position from our own id, so one lookup serves a whole run of items
    // owned by the same node.
    let origin = node.id();
    keys.sort_by_key(|k| origin.distance_to(k.ring_id()));
    let mut r = Repair {
        items: keys.len(),
        ..Repair::default()
    };
    let mut i = 0;
    while i < keys.len() {
        let id = keys[i].ring_id();
        // With `leaving`, look one further so that k others are found.
        let want = if leaving { k.saturating_add(1) } else { k };
        let (_, mut holders) = locate(node, id, want).await?;
        let owner = holders[0].id;
        // Items from here up to the owner's id share its replica set.
        let mut j = i + 1;
        while j < keys.len() {
            let x = keys[j].ring_id();
            if x == id || (owner != id && x.in_half_open(id, owner)) {
                j += 1;
            } else {
                break;
            }
        }
        let group = &keys[i..j];
        i = j;
        let mine = holders.iter().any(|p| p.addr == me);
        if leaving {
            holders.retain(|p| p.addr != me);
            holders.truncate(usize::from(k));
        }
        // What every other holder has of the group (`None`: it did not say).
        let mut has: Vec<Vec<Option<bool>>> = Vec::with_capacity(holders.len());
        for h in &holders {
            let mut v = vec![None; group.len()];
            if h.addr == me {
                v.fill(Some(true));
                has.push(v);
                continue;
            }
            for (c, chunk) in group.chunks(MAX_HAVE).enumerate() {
                let req = FilesRequest::Have {
                    keys: chunk.to_vec(),
                };
                match ask(node, h.addr, &req).await {
                    Err(FilesError::Stopped) => return Err(FilesError::Stopped),
                    Ok(FilesResponse::Have(answer)) if answer.len() == chunk.len() => {
                        for (n, a) in answer.into_iter().enumerate() {
                            v[c * MAX_HAVE + n] = Some(a);
                        }
                    }
                    other => debug!(to = %h.addr, "have failed: {other:?}"),
                }
            }
            has.push(v);
        }
        // One copy is sent per missing replica, by one node: the first holder (owner
        // first) that has the item, or, if no holder has it, whoever holds it outside the
        // replica set (a node that is leaving it, or leaving the ring). Without this rule
        // every holder pushed the same item to a newcomer at once (1.6-1.9 times the
        // bytes a join needs).
        let mut everywhere = vec![true; group.len()];
        for (n, key) in group.iter().enumerate() {
            let first = holders
                .iter()
                .zip(&has)
                .find(|(_, v)| v[n] == Some(true))
                .map(|(p, _)| p.addr);
            let duty = leaving || first.is_none_or(|a| a == me);
            let mut data = None;
            for (h, v) in holders.iter().zip(&has) {
                if h.addr == me || v[n] == Some(true) {
                    continue;
                }
                if !duty || v[n].is_none() {
                    everywhere[n] = false;
                    continue;
                }
                if data.is_none() {
                    data = store.get(*key).await.ok().flatten();
                }
                let Some(d) = data.clone() else {
                    everywhere[n] = false;
                    continue;
                };
                let len = d.len() as u64;
                match ask(node, h.addr, &FilesRequest::Store { key: *key, data: d }).await {
                    Ok(FilesResponse::Stored) => {
                        r.sent += 1;
                        r.bytes += len;
                    }
                    Err(FilesError::Stopped) => return Err(FilesError::Stopped),
                    other => {
                        warn!(to = %h.addr, "replica refused an item: {other:?}");
                        everywhere[n] = false;
                    }
                }
            }
        }
        if !mine && !leaving && holders.len() >= usize::from(k) {
            for (key, ok) in group.iter().zip(everywhere) {
                if ok {
                    store.delete(*key).await.map_err(store_err)?;
                    r.dropped += 1;
                }
            }
        }
    }
    Ok(r)
}

/// Run maintenance until the node stops: a pass every `every`, and soon after any change
/// of this node's range. Returns when the node has stopped.
pub async fn maintenance_loop(node: Node, store: Arc<dyn Store>, k: u8, every: Duration) {
    let Ok(events) = node.events().await else {
        return;
    };
    loop {
        let wake = futures_lite::future::or(
            async {
                // A range change: wait a moment for the ring to settle, then repair.
                while let Ok(e) = events.recv().await {
                    if matches!(
                        e,
                        Event::PredecessorChanged { .. } | Event::SuccessorsChanged(_)
                    ) {
                        async_io::Timer::after(every.min(Duration::from_secs(2)) / 2).await;
                        return true;
                    }
                }
                false
            },
            async {
                async_io::Timer::after(every).await;
                true
            },
        );
        let go = futures_lite::future::or(wake, async {
            node.stopped().await;
            false
        })
        .await;
        if !go {
            return;
        }
        match maintain(&node, &*store, k, false).await {
            Ok(r) if r.sent > 0 || r.dropped > 0 => info!(
                "repair: {} items, {} copies sent ({} bytes), {} dropped",
                r.items, r.sent, r.bytes, r.dropped
            ),
            Ok(_) => {}
            Err(e) => debug!("repair pass failed: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_is_found_in_place() {
        for len in [0usize, 1, 200, 1 << 20] {
            let d: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let enc = encode(&FilesResponse::Data(d.clone())).expect("enc");
            let at = FilesResponse::data_at(&enc).expect("found");
            assert_eq!(&enc[at..], &d[..]);
        }
        for other in [
            FilesResponse::Stored,
            FilesResponse::NotFound,
            FilesResponse::Have(vec![true, false]),
        ] {
            assert_eq!(FilesResponse::data_at(&encode(&other).expect("enc")), None);
        }
        let mut enc = encode(&FilesResponse::Data(vec![1, 2, 3])).expect("enc");
        enc.push(0);
        assert_eq!(FilesResponse::data_at(&enc), None);
    }
}
