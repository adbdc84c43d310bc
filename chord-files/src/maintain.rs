//! Maintenance: keeps every item on the `k` nodes that succeed its key. It pushes items to
//! replicas that miss them (asking first which they have, so nothing in place is sent
//! again) and drops a local copy once this node is no longer among the `k` and all of them
//! hold it. The same pass hands data to a node that joined, re-replicates after a crash,
//! and (run with `leaving`) hands everything over before a graceful leave. What to send
//! and drop is decided by [`crate::plan`], a pure function; this module does the asking,
//! sending and deleting.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chord_core::{Event, Id, Peer};
use chord_net::Node;
use tracing::{debug, info, warn};

use crate::manifest::{ItemKey, Manifest};
use crate::plan::{plan, relied_on, Holder, Plan};
use crate::record::{now_ms, Record, Version};
use crate::store::{stored_version, Store, StoreError};
use crate::wire::{proof, FilesRequest, FilesResponse, MAX_HAVE};
use crate::{decode, encode, FilesError, SERVICE};

/// The `k` nodes that should hold ring position `id` (distinct hosts, owner first), and
/// the owner's predecessor id if known.
pub async fn locate(node: &Node, id: Id, k: u8) -> Result<(Option<Id>, Vec<Peer>), FilesError> {
    let found = node.lookup(id).await.map_err(|e| match e {
        chord_net::Error::Stopped => FilesError::Stopped,
        e => FilesError::Lookup(e),
    })?;
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
    let answer = node
        .call(to, SERVICE, bytes)
        .await
        .map_err(FilesError::net)?;
    decode(&answer)
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
    /// Records forgotten because they expired (tombstones past their horizon too).
    pub expired: usize,
    /// Copies that could not be sent (a holder refused, or could not be found).
    pub failed: usize,
}

/// The version of the item held here under `key` (`None`: not held, or no longer valid).
pub(crate) async fn held_version(
    store: &dyn Store,
    key: ItemKey,
) -> Result<Option<Version>, StoreError> {
    Ok(match key {
        // A chunk has one version; reading it to say so would cost its whole size.
        ItemKey::Chunk(_) => store.has(key).await?.then_some(Version::default()),
        _ => store.get(key).await?.and_then(|d| stored_version(&key, &d)),
    })
}

/// Where the run of `keys` (sorted by ring position) that starts at `i` and shares the
/// holders of `keys[i]`, whose owner is `owner`, ends: the items up to the owner's id, at
/// most [`MAX_HAVE`] of them.
pub(crate) fn run_end(keys: &[ItemKey], i: usize, owner: Id) -> usize {
    let id = keys[i].ring_id();
    let mut j = i + 1;
    while j < keys.len() && j - i < MAX_HAVE {
        let x = keys[j].ring_id();
        if x == id || (owner != id && x.in_half_open(id, owner)) {
            j += 1;
        } else {
            break;
        }
    }
    j
}

/// One maintenance pass over the items held here. With `leaving`, this node counts as
/// gone: everything is pushed to the others and nothing is dropped (the caller stops).
/// Records that have expired are forgotten. What to send and drop is decided by
/// [`plan`]; this function only asks, sends and deletes.
pub async fn maintain(
    node: &Node,
    store: &dyn Store,
    k: u8,
    leaving: bool,
) -> Result<Repair, FilesError> {
    let me = node.addr();
    let mut keys = store.list().await?;
    // Sorted by ring position from our own id, so one lookup serves a whole run of items
    // owned by the same node.
    let origin = node.id();
    keys.sort_by_key(|k| origin.distance_to(k.ring_id()));
    let mut r = Repair {
        items: keys.len(),
        ..Repair::default()
    };
    let now = now_ms();
    let mut i = 0;
    while i < keys.len() {
        let id = keys[i].ring_id();
        // With `leaving`, look one further so that k others are found.
        let want = if leaving { k.saturating_add(1) } else { k };
        let (_, mut holders) = match locate(node, id, want).await {
            Ok(found) => found,
            // Leaving, hand over what can be; the rest is counted.
            Err(e) if leaving && !matches!(e, FilesError::Stopped) => {
                debug!("no holders found for an item: {}", crate::error::chain(&e));
                r.failed += 1;
                i += 1;
                continue;
            }
            Err(e) => return Err(e),
        };
        let owner = holders[0].id;
        // Items from here up to the owner's id share its replica set.
        // At most MAX_HAVE at a time: a node's memory for a pass stays bounded however
        // many items one range holds.
        let j = run_end(&keys, i, owner);
        let (group, mine) = read_group(store, &keys[i..j], now, &mut r).await?;
        i = j;
        if leaving {
            holders.retain(|p| p.addr != me);
            holders.truncate(usize::from(k));
        }
        let mut said = ask_holders(node, &holders, &group, &mine).await?;
        let todo = plan_on_proof(node, store, &group, &mine, &mut said, k, leaving).await?;
        if leaving {
            // An item no other holder has and nobody is to be sent (no other node left,
            // or none answered) is lost with this node: say so.
            for (n, v) in mine.iter().enumerate() {
                let kept = said
                    .iter()
                    .any(|h| h.addr != me && h.said[n].flatten().is_some_and(|x| x >= *v));
                if !kept && !todo.send.iter().any(|(m, _)| *m == n) {
                    r.failed += 1;
                }
            }
        }
        let failed = send_copies(node, store, &group, &todo.send, &mut r).await?;
        drop_planned(store, &group, &mine, &todo.drop, &failed, &mut r).await?;
    }
    Ok(r)
}

/// This node's items of one replica group (`keys`) and their versions: expired records
/// are deleted here (counted), blocks whose lease has ended are left to garbage
/// collection.
async fn read_group(
    store: &dyn Store,
    keys: &[ItemKey],
    now: u64,
    r: &mut Repair,
) -> Result<(Vec<ItemKey>, Vec<Version>), FilesError> {
    let mut group = Vec::with_capacity(keys.len());
    let mut mine = Vec::with_capacity(keys.len());
    for key in keys {
        let v = match *key {
            ItemKey::Record(rid) => {
                let held = store.get(*key).await?;
                match held.and_then(|d| Record::decode_stored(&d, rid).ok()) {
                    Some(x) if !x.expired(now) => Some(x.version()),
                    _ => {
                        store.delete(*key).await?;
                        r.expired += 1;
                        continue;
                    }
                }
            }
            // A block whose lease has ended is left to garbage collection.
            ItemKey::Chunk(_) if store.lease(*key).await?.is_some_and(|end| end < now) => {
                continue;
            }
            _ => held_version(store, *key).await?,
        };
        if let Some(v) = v {
            group.push(*key);
            mine.push(v);
        }
    }
    Ok((group, mine))
}

/// What each holder says it has of `group` (`None` where it did not answer), with every
/// claim of a newer record than ours checked by fetching it.
async fn ask_holders(
    node: &Node,
    holders: &[Peer],
    group: &[ItemKey],
    mine: &[Version],
) -> Result<Vec<Holder>, FilesError> {
    let me = node.addr();
    let mut said = Vec::with_capacity(holders.len());
    for h in holders {
        let mut v = vec![None; group.len()];
        if h.addr != me {
            for (c, chunk) in group.chunks(MAX_HAVE).enumerate() {
                let req = FilesRequest::Versions {
                    keys: chunk.to_vec(),
                };
                match ask(node, h.addr, &req).await {
                    Err(FilesError::Stopped) => return Err(FilesError::Stopped),
                    Ok(FilesResponse::Versions(answer)) if answer.len() == chunk.len() => {
                        for (n, a) in answer.into_iter().enumerate() {
                            v[c * MAX_HAVE + n] = Some(a);
                        }
                    }
                    other => debug!(to = %h.addr, "versions failed: {other:?}"),
                }
            }
        }
        // A claim of a newer record than ours decides that ours goes (or is not
        // sent): believed only once the record is fetched and its signature checks.
        // A holder that claims what it cannot show counts as not answering.
        for (n, key) in group.iter().enumerate() {
            let ItemKey::Record(rid) = *key else { continue };
            let Some(Some(claim)) = v[n] else { continue };
            if claim <= mine[n] {
                continue;
            }
            let shown = match ask(node, h.addr, &FilesRequest::Fetch { key: *key }).await {
                Err(FilesError::Stopped) => return Err(FilesError::Stopped),
                Ok(FilesResponse::Data(d)) => Record::decode_at(&d, rid).ok(),
                _ => None,
            };
            if shown.is_none_or(|r| r.version() != claim) {
                warn!(from = %h.addr, "a holder claimed a record version it did not show");
                v[n] = None;
            }
        }
        said.push(Holder {
            addr: h.addr,
            said: v,
        });
    }
    Ok(said)
}

/// Send the planned copies (`send`: item index and destination); which items failed.
async fn send_copies(
    node: &Node,
    store: &dyn Store,
    group: &[ItemKey],
    send: &[(usize, SocketAddr)],
    r: &mut Repair,
) -> Result<Vec<bool>, FilesError> {
    let mut failed = vec![false; group.len()];
    let mut data: Option<(usize, Vec<u8>)> = None;
    for &(n, to) in send {
        if data.as_ref().is_none_or(|(m, _)| *m != n) {
            data = store.get(group[n]).await.ok().flatten().map(|d| (n, d));
        }
        let Some((_, d)) = &data else {
            failed[n] = true;
            r.failed += 1;
            continue;
        };
        let len = d.len() as u64;
        let req = match group[n] {
            // A block's copy keeps this copy's lease: repair never extends one.
            key @ ItemKey::Chunk(_) => FilesRequest::Replicate {
                key,
                data: d.clone(),
                until_ms: store.lease(key).await.ok().flatten().unwrap_or(u64::MAX),
            },
            key => FilesRequest::Store {
                key,
                data: d.clone(),
            },
        };
        match ask(node, to, &req).await {
            Ok(FilesResponse::Stored) => {
                r.sent += 1;
                r.bytes += len;
            }
            // It had a newer one by now: the next pass sees it.
            Ok(FilesResponse::Newer(_)) => {}
            Err(FilesError::Stopped) => return Err(FilesError::Stopped),
            other => {
                warn!(to = %to, "replica refused an item: {other:?}");
                failed[n] = true;
                r.failed += 1;
            }
        }
    }
    Ok(failed)
}

/// Delete the copies the plan drops, unless their send failed or the record changed here
/// since it was read.
async fn drop_planned(
    store: &dyn Store,
    group: &[ItemKey],
    mine: &[Version],
    drop: &[usize],
    failed: &[bool],
    r: &mut Repair,
) -> Result<(), FilesError> {
    for &n in drop {
        if failed[n] {
            continue;
        }
        // A record may have been replaced here since it was read (a writer whose
        // view of the holders is older than ours): only the version planned for goes.
        if let ItemKey::Record(_) = group[n] {
            let now_held = held_version(store, group[n]).await?;
            if now_held != Some(mine[n]) {
                continue;
            }
        }
        store.delete(group[n]).await?;
        r.dropped += 1;
    }
    Ok(())
}

/// [`plan`], with every claim the plan takes on trust ([`relied_on`]) proven first: the
/// claimant shows, under a fresh nonce, that it holds the same bytes as this node's copy
/// (`Prove`). A claim not proven counts as no answer (nothing is dropped on it, and the
/// sending falls to the next holder that has the item, or to this node), and the plan is
/// made again; each round proves or discards at least one claim, so this ends.
async fn plan_on_proof(
    node: &Node,
    store: &dyn Store,
    group: &[ItemKey],
    mine: &[Version],
    said: &mut [Holder],
    k: u8,
    leaving: bool,
) -> Result<Plan, FilesError> {
    let me = node.addr();
    let mut proven: Vec<(usize, SocketAddr)> = Vec::new();
    let mut unproven = Vec::new();
    let nonce = crate::record::random_bytes()?;
    // Our copy of the item last read (several holders may claim one item).
    let mut copy: Option<(usize, Option<Vec<u8>>)> = None;
    loop {
        let todo = plan(me, mine, said, usize::from(k), leaving);
        let open: Vec<(usize, usize)> = relied_on(me, mine, said, &todo)
            .into_iter()
            .filter(|&(n, h)| !proven.contains(&(n, said[h].addr)))
            .collect();
        if open.is_empty() {
            if !unproven.is_empty() {
                // One line per group, not per item: the claims come from the network.
                warn!(holders = ?unproven, "claims of holding items not proven");
            }
            return Ok(todo);
        }
        for (n, h) in open {
            let to = said[h].addr;
            if copy.as_ref().is_none_or(|(m, _)| *m != n) {
                copy = Some((n, store.get(group[n]).await?));
            }
            let ours = copy.as_ref().and_then(|(_, d)| d.as_deref());
            let shown = match ask(
                node,
                to,
                &FilesRequest::Prove {
                    key: group[n],
                    nonce,
                },
            )
            .await
            {
                Err(FilesError::Stopped) => return Err(FilesError::Stopped),
                Ok(FilesResponse::Proof(p)) => ours.is_some_and(|d| p == proof(&nonce, to, d)),
                _ => false,
            };
            if shown {
                proven.push((n, to));
            } else {
                if !unproven.contains(&to) {
                    unproven.push(to);
                }
                if let Some(x) = said[h].said.get_mut(n) {
                    *x = None;
                }
            }
        }
    }
}

/// How long after its lease ends a block is still kept: room for clocks that differ
/// between nodes and for a lease being set just after the block was written. A minute,
/// or a quarter lease if that is shorter.
pub fn lease_grace(lease: Duration) -> Duration {
    (lease / 4).min(Duration::from_secs(60))
}

/// Free the blocks held here whose lease ended more than `grace` ago; returns how many.
/// Records are not touched (they end by expiry or a tombstone's horizon).
pub async fn collect_garbage(store: &dyn Store, grace: Duration) -> Result<usize, FilesError> {
    let now = now_ms();
    let grace = grace.as_millis() as u64;
    let mut freed = 0;
    for key in store.list().await? {
        if let ItemKey::Chunk(_) = key {
            let lease = store.lease(key).await?;
            if lease.is_some_and(|end| end.saturating_add(grace) < now) {
                store.delete(key).await?;
                freed += 1;
            }
        }
    }
    Ok(freed)
}

/// Renew the leases of every block of the live files whose records are held here and
/// whose renewal is due (not renewed in `every`; `renewed` remembers when): the manifest
/// block and the chunks, on each of their `k` holders, to one `lease` from now. Returns
/// the number of blocks renewed. Every holder of a record renews, so one that is down
/// does not let a live file's blocks run out.
pub async fn renew_files(
    node: &Node,
    store: &dyn Store,
    k: u8,
    lease: Duration,
    every: Duration,
    renewed: &mut std::collections::HashMap<Id, std::time::Instant>,
) -> Result<usize, FilesError> {
    let now = std::time::Instant::now();
    renewed.retain(|_, t| now.duration_since(*t) < every);
    let (mut keys, mut due) = (Vec::new(), Vec::new());
    for key in store.list().await? {
        let ItemKey::Record(id) = key else { continue };
        if renewed.contains_key(&id) {
            continue;
        }
        let Some(d) = store.get(key).await? else {
            continue;
        };
        let Ok(r) = Record::decode_stored(&d, id) else {
            continue;
        };
        let file = r
            .value()
            .filter(|_| r.salt.starts_with(crate::manifest::FILE_PREFIX))
            .and_then(|v| decode::<crate::FileRef>(v).ok());
        let Some(file) = file else { continue };
        let block = ItemKey::Chunk(file.manifest);
        let bytes = match store.get(block).await? {
            Some(b) => Some(b),
            None => {
                let route = &mut crate::dht::Local(node);
                crate::dht::get_block(route, file.manifest, k)
                    .await
                    .ok()
                    .flatten()
            }
        };
        let Some(m) = bytes.and_then(|b| decode::<Manifest>(&b).ok()) else {
            debug!("the manifest of a file record held here could not be read");
            continue;
        };
        keys.push(block);
        keys.extend(m.chunks.iter().map(|h| ItemKey::Chunk(*h)));
        due.push(id);
    }
    let until = now_ms().saturating_add(lease.as_millis() as u64);
    let done = crate::dht::renew_blocks(&mut crate::dht::Local(node), keys, until, k).await?;
    renewed.extend(due.into_iter().map(|id| (id, now)));
    Ok(done)
}

/// Run maintenance until the node stops: a pass every `cfg.repair_every`, and soon after
/// any change of this node's range; leases renewed every quarter lease, and blocks whose
/// lease ended freed (once this node has been up a quarter lease, so that renewals from
/// the others have reached it after a restart). Returns when the node has stopped.
pub async fn maintenance_loop(node: Node, store: Arc<dyn Store>, cfg: crate::FilesConfig) {
    let Ok(events) = node.events().await else {
        return;
    };
    let (k, every, lease) = (cfg.replicas, cfg.repair_every, cfg.block_lease);
    let started = std::time::Instant::now();
    let mut renewed = std::collections::HashMap::new();
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
            Err(e) => debug!("repair pass failed: {}", crate::error::chain(&e)),
        }
        if let Err(e) = renew_files(&node, &*store, k, lease, lease / 4, &mut renewed).await {
            debug!("lease renewal failed: {}", crate::error::chain(&e));
        }
        if started.elapsed() >= lease / 4 {
            match collect_garbage(&*store, lease_grace(lease)).await {
                Ok(0) => {}
                Ok(n) => info!("freed {n} blocks whose lease ended"),
                Err(e) => debug!("garbage collection failed: {}", crate::error::chain(&e)),
            }
        }
    }
}
