//! The hash table applications embed: immutable blocks and signed mutable records (the
//! DHash layer of CFS, with BEP 44's mutable items).
//!
//! * A **block** is stored under the BLAKE3 hash of its bytes: anyone may store one,
//!   nobody can forge one, and readers check the hash.
//! * A **record** belongs to an ed25519 key ([`Identity`]) and a salt. Its writer numbers
//!   its versions; holders keep the highest (see [`crate::record`]); reads ask every one of
//!   the `k` holders and take the highest valid version, so one holder that lags or lies
//!   cannot roll a record back while another has the newer one, and the holders that
//!   answered with less are sent the winner (read repair).
//! * A **delete** writes a tombstone: a signed version with no value, kept for
//!   [`DEFAULT_TOMBSTONE_HORIZON`] (configurable), longer than a holder is expected to be
//!   away; a holder that comes back with an old copy is overruled by it.
//!
//! The same operations run on a local node ([`crate::FilesNode`], no connection to
//! itself) and, through any node, from a client ([`RemoteDht`]).

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use chord_core::{Id, Peer};

use crate::manifest::{hash, Hash, ItemKey, MAX_CHUNK};
use crate::record::{now_ms, record_id, Identity, Record, MAX_SEQ};
use crate::transfer::{Lane, TransferOptions};
use crate::wire::{FilesRequest, FilesResponse};
use crate::FilesError;

/// How long a tombstone is kept by default: 30 days.
pub const DEFAULT_TOMBSTONE_HORIZON: Duration = Duration::from_secs(30 * 24 * 3600);

/// The value of a record, as read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordValue {
    /// Its sequence number (the next write uses a higher one).
    pub seq: u64,
    /// The value.
    pub value: Vec<u8>,
}

/// What a write did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Written {
    /// The sequence number written.
    pub seq: u64,
    /// How many holders took it.
    pub replicas: u8,
}

/// Conditions of a record write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// Compare-and-swap: write only if the record's current sequence is this one
    /// (`Some(None)`: only if there is no record, or it was deleted). `None`: write over
    /// whatever is there.
    pub expect: Option<Option<u64>>,
    /// When holders may forget the value, in milliseconds since the Unix epoch.
    pub expires_ms: Option<u64>,
}

/// How requests reach the ring: from a node inside it, or from a client through one. A
/// transfer runs several routes at once (one request in flight on each).
pub(crate) trait Route: Send {
    /// The `k` holders of ring position `id`, owner first (`fresh`: not from a cache,
    /// after a cached answer turned out wrong).
    fn locate(
        &mut self,
        id: Id,
        k: u8,
        fresh: bool,
    ) -> impl Future<Output = Result<Vec<Peer>, FilesError>> + Send;
    /// Ask the files service at `to`; an `Error` answer comes back as `Err`.
    fn ask(
        &mut self,
        to: SocketAddr,
        req: &FilesRequest,
    ) -> impl Future<Output = Result<FilesResponse, FilesError>> + Send;
    /// A buffer the caller is done with, to read a later answer into.
    fn recycle(&mut self, buf: Vec<u8>) {
        let _ = buf;
    }
    /// Records whose signature this route already checked, if it keeps them.
    fn verified(&mut self) -> Option<&mut Verified> {
        None
    }
}

/// The BLAKE3 hashes of the last [`Verified::CAPACITY`] record encodings whose signature
/// a client checked: a record read again unchanged (the same bytes, so the same position,
/// sequence and signature) is not verified again. Checking a signature is most of what a
/// read costs a client.
#[derive(Debug, Default)]
pub(crate) struct Verified {
    order: std::collections::VecDeque<Hash>,
    set: std::collections::HashSet<Hash>,
}

impl Verified {
    const CAPACITY: usize = 1024;

    fn contains(&self, h: &Hash) -> bool {
        self.set.contains(h)
    }

    fn insert(&mut self, h: Hash) {
        if !self.set.insert(h) {
            return;
        }
        if self.order.len() >= Self::CAPACITY {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        self.order.push_back(h);
    }
}

/// A node's own route: its lookups, and its calls (a call to itself stays inside).
pub(crate) struct Local<'a>(pub(crate) &'a chord_net::Node);

impl Route for Local<'_> {
    async fn locate(&mut self, id: Id, k: u8, _fresh: bool) -> Result<Vec<Peer>, FilesError> {
        Ok(crate::maintain::locate(self.0, id, k).await?.1)
    }

    async fn ask(
        &mut self,
        to: SocketAddr,
        req: &FilesRequest,
    ) -> Result<FilesResponse, FilesError> {
        match crate::maintain::ask(self.0, to, req).await? {
            FilesResponse::Error(e) => Err(e),
            r => Ok(r),
        }
    }
}

impl Route for Lane {
    async fn locate(&mut self, id: Id, k: u8, fresh: bool) -> Result<Vec<Peer>, FilesError> {
        Lane::locate(self, id, k, fresh).await
    }

    async fn ask(
        &mut self,
        to: SocketAddr,
        req: &FilesRequest,
    ) -> Result<FilesResponse, FilesError> {
        Lane::ask(self, to, req).await
    }

    fn recycle(&mut self, buf: Vec<u8>) {
        self.spare = buf;
    }

    fn verified(&mut self) -> Option<&mut Verified> {
        Some(&mut self.verified)
    }
}

/// Store a block on its `k` holders; returns its hash and how many took it.
pub(crate) async fn put_block(
    route: &mut impl Route,
    bytes: Vec<u8>,
    k: u8,
) -> Result<(Hash, u8), FilesError> {
    if bytes.len() > MAX_CHUNK as usize {
        return Err(FilesError::TooLarge {
            size: bytes.len() as u64,
            limit: u64::from(MAX_CHUNK),
        });
    }
    let h = hash(&bytes);
    Ok((h, store_item(route, ItemKey::Chunk(h), bytes, k).await?))
}

/// Store an item on its `k` holders; returns how many took it.
pub(crate) async fn store_item(
    route: &mut impl Route,
    key: ItemKey,
    data: Vec<u8>,
    k: u8,
) -> Result<u8, FilesError> {
    let mut stored = 0u8;
    let mut last = None;
    for p in route.locate(key.ring_id(), k, false).await? {
        let req = FilesRequest::Store {
            key,
            data: data.clone(),
        };
        match route.ask(p.addr, &req).await {
            Ok(FilesResponse::Stored) => stored += 1,
            Ok(other) => last = Some(unexpected(other)),
            Err(e) => last = Some(e),
        }
    }
    match (stored, last) {
        (0, e) => Err(e.unwrap_or(FilesError::Unavailable)),
        (n, _) => Ok(n),
    }
}

/// Extend the leases of blocks on their `k` holders to `until_ms` (each holder caps it at
/// one lease from now): what the holders of live file records do for their blocks, and an
/// upload for the chunks it stored until the file's record exists. Returns how many
/// copies were renewed.
pub(crate) async fn renew_blocks(
    route: &mut impl Route,
    mut keys: Vec<ItemKey>,
    until_ms: u64,
    k: u8,
) -> Result<usize, FilesError> {
    keys.sort_by_key(|key| key.ring_id());
    keys.dedup();
    let mut renewed = 0;
    let mut i = 0;
    while i < keys.len() {
        // One lookup serves every key up to the owner's id.
        let holders = route.locate(keys[i].ring_id(), k, false).await?;
        let owner = holders.first().ok_or(FilesError::Unavailable)?.id;
        let j = crate::maintain::run_end(&keys, i, owner);
        let req = FilesRequest::Renew {
            keys: keys[i..j].to_vec(),
            until_ms,
        };
        for h in &holders {
            match route.ask(h.addr, &req).await {
                Ok(FilesResponse::Have(v)) => renewed += v.iter().filter(|x| **x).count(),
                Err(FilesError::Stopped) => return Err(FilesError::Stopped),
                other => tracing::debug!(to = %h.addr, "renew failed: {other:?}"),
            }
        }
        i = j;
    }
    Ok(renewed)
}

/// Read a block: the first copy whose hash matches, from the `k` holders; then, if none
/// had it, from fresh holders and further along the owner's successors (2k nodes): after
/// joins or a partition heals, copies wait on the old holders until repair moves them,
/// and those follow the new ones in the ring (DHash reads the same way). `None`: every
/// node asked answered that it does not hold it.
pub(crate) async fn get_block(
    route: &mut impl Route,
    h: Hash,
    k: u8,
) -> Result<Option<Vec<u8>>, FilesError> {
    let key = ItemKey::Chunk(h);
    let mut answered = false;
    let mut last = None;
    for (fresh, n) in [(false, k), (true, k.saturating_mul(2))] {
        for p in route.locate(key.ring_id(), n, fresh).await? {
            match route.ask(p.addr, &FilesRequest::Fetch { key }).await {
                Ok(FilesResponse::Data(d)) if hash(&d) == h => return Ok(Some(d)),
                Ok(FilesResponse::Data(_)) => {
                    tracing::warn!(from = %p.addr, "corrupt block received: trying another replica");
                    last = Some(FilesError::Corrupt);
                }
                Ok(FilesResponse::NotFound) => answered = true,
                Ok(other) => last = Some(unexpected(other)),
                Err(e) => last = Some(e),
            }
        }
    }
    match (answered, last) {
        (true, _) => Ok(None),
        (false, e) => Err(e.unwrap_or(FilesError::Unavailable)),
    }
}

fn unexpected(r: FilesResponse) -> FilesError {
    match r {
        FilesResponse::Error(e) => e,
        _ => FilesError::BadAnswer,
    }
}

/// The highest valid, unexpired version of the record at `id` among its `k` holders
/// (tombstones included), after sending it to the holders that answered with less.
pub(crate) async fn fetch_record(
    route: &mut impl Route,
    id: Id,
    k: u8,
) -> Result<Option<Record>, FilesError> {
    let key = ItemKey::Record(id);
    let now = now_ms();
    let mut best: Option<Record> = None;
    // Who answered, and with which version (`None`: nothing valid).
    let mut held = Vec::new();
    let mut last = None;
    // Holders usually answer with the same bytes: each distinct answer is checked once
    // (and a client route remembers what it checked across reads).
    let mut checked: Vec<Hash> = Vec::new();
    for p in route.locate(id, k, false).await? {
        let got = match route.ask(p.addr, &FilesRequest::Fetch { key }).await {
            // A holder serving a forged or expired record counts as holding nothing.
            Ok(FilesResponse::Data(d)) => {
                let h = hash(&d);
                let known =
                    checked.contains(&h) || route.verified().is_some_and(|v| v.contains(&h));
                let r = if known {
                    Record::decode_stored(&d, id)
                } else {
                    Record::decode_at(&d, id)
                };
                if r.is_ok() && !known {
                    checked.push(h);
                    if let Some(v) = route.verified() {
                        v.insert(h);
                    }
                }
                r.ok().filter(|r| !r.expired(now))
            }
            Ok(FilesResponse::NotFound) => None,
            Ok(other) => {
                last = Some(unexpected(other));
                continue;
            }
            Err(e) => {
                last = Some(e);
                continue;
            }
        };
        held.push((p.addr, got.as_ref().map(Record::version)));
        if got.as_ref().map(Record::version) > best.as_ref().map(Record::version) {
            best = got;
        }
    }
    if held.is_empty() {
        return Err(last.unwrap_or(FilesError::Unavailable));
    }
    if let Some(b) = &best {
        let (v, data) = (Some(b.version()), crate::encode(b)?);
        for (to, _) in held.iter().filter(|(_, h)| *h < v) {
            let req = FilesRequest::Store {
                key,
                data: data.clone(),
            };
            let _ = route.ask(*to, &req).await;
        }
    }
    Ok(best)
}

/// Store a signed record on its `k` holders; returns how many hold it (or the same
/// version). A different version that a holder keeps instead is a `Conflict`. With
/// `expect` (a compare-and-swap), holders refuse if the record moved past what the writer
/// saw, so that of two writers expecting the same sequence at most one hears it won.
pub(crate) async fn store_record(
    route: &mut impl Route,
    record: &Record,
    expect: Option<Option<u64>>,
    k: u8,
) -> Result<u8, FilesError> {
    let id = record.id();
    let key = ItemKey::Record(id);
    let data = crate::encode(record)?;
    let mut stored = 0u8;
    let mut newer: Option<u64> = None;
    let mut last = None;
    for p in route.locate(id, k, false).await? {
        let req = match expect {
            Some(expect) => FilesRequest::StoreIf {
                key,
                data: data.clone(),
                expect,
            },
            None => FilesRequest::Store {
                key,
                data: data.clone(),
            },
        };
        match route.ask(p.addr, &req).await {
            Ok(FilesResponse::Stored) => stored += 1,
            Ok(FilesResponse::Newer(d)) => match Record::decode_at(&d, id) {
                Ok(r) if r.version() == record.version() => stored += 1,
                Ok(r) if r.version() > record.version() || expect.is_some() => {
                    newer = newer.max(Some(r.seq));
                }
                _ => last = Some(FilesError::BadAnswer),
            },
            Ok(other) => last = Some(unexpected(other)),
            Err(e) => last = Some(e),
        }
    }
    if let Some(found) = newer {
        return Err(FilesError::Conflict {
            expected: expect.unwrap_or(Some(record.seq)),
            found: Some(found),
        });
    }
    match (stored, last) {
        (0, e) => Err(e.unwrap_or(FilesError::Unavailable)),
        (n, _) => Ok(n),
    }
}

/// Attempts of a plain overwrite ([`write_record`] without `expect`) before it gives up
/// to another writer of the same record that keeps writing above it.
const BLIND_WRITE_ATTEMPTS: usize = 3;

/// Write the next version of `identity`'s record `salt`: `value`, or a tombstone.
///
/// A compare-and-swap (`opts.expect`) reads the current version first. A plain overwrite
/// does not: it signs at the clock (milliseconds), which is the sequence a read would
/// have given unless the record was written in the same millisecond or the clock is
/// behind the last write; then a holder answers with its newer version and the write is
/// signed again just above it. That halves a put's requests (k stores instead of k
/// fetches and k stores).
pub(crate) async fn write_record(
    route: &mut impl Route,
    identity: &Identity,
    salt: &[u8],
    value: Option<Vec<u8>>,
    opts: WriteOptions,
    k: u8,
) -> Result<Written, FilesError> {
    if opts.expect.is_some() {
        let current = fetch_record(route, record_id(&identity.public_key(), salt), k).await?;
        return write_over(route, identity, salt, value, opts, current.as_ref(), k).await;
    }
    let mut seq = now_ms().max(1);
    let (mut tried, mut found) = (seq, None);
    for _ in 0..BLIND_WRITE_ATTEMPTS {
        tried = seq;
        if seq > MAX_SEQ {
            return Err(FilesError::BadRecord);
        }
        let record = identity.sign(salt, seq, value.clone(), opts.expires_ms)?;
        match store_record(route, &record, None, k).await {
            Ok(replicas) => return Ok(Written { seq, replicas }),
            // A holder keeps a version at or above ours (same millisecond, or a clock
            // behind): sign above it.
            Err(FilesError::Conflict { found: Some(f), .. }) if f >= seq => {
                found = Some(f);
                seq = f + 1;
            }
            Err(e) => return Err(e),
        }
    }
    Err(FilesError::Conflict {
        expected: Some(tried),
        found,
    })
}

/// [`write_record`] over `current`, the highest version its holders had.
async fn write_over(
    route: &mut impl Route,
    identity: &Identity,
    salt: &[u8],
    value: Option<Vec<u8>>,
    opts: WriteOptions,
    current: Option<&Record>,
    k: u8,
) -> Result<Written, FilesError> {
    let live = current.filter(|r| !r.is_tombstone()).map(|r| r.seq);
    if let Some(expected) = opts.expect {
        if expected != live {
            return Err(FilesError::Conflict {
                expected,
                found: live,
            });
        }
    }
    // The next sequence, and at least the time in milliseconds: after a tombstone has
    // expired and been forgotten, a new write still outranks every version signed before
    // it (a stranger replaying an old signed version cannot bring it back). The order is
    // still the sequence's, never the clock's: a clock that is behind only means +1.
    let seq = current.map_or(1, |r| r.seq + 1).max(now_ms());
    if seq > MAX_SEQ {
        return Err(FilesError::BadRecord);
    }
    let record = identity.sign(salt, seq, value, opts.expires_ms)?;
    let replicas = store_record(route, &record, opts.expect, k).await?;
    Ok(Written { seq, replicas })
}

/// Read the live value of the record of `public_key` and `salt` (`None`: none, or deleted).
pub(crate) async fn read_record(
    route: &mut impl Route,
    public_key: &[u8; 32],
    salt: &[u8],
    k: u8,
) -> Result<Option<RecordValue>, FilesError> {
    let r = fetch_record(route, record_id(public_key, salt), k).await?;
    Ok(r.and_then(|r| {
        let seq = r.seq;
        r.value.map(|v| RecordValue {
            seq,
            value: v.into_vec(),
        })
    }))
}

/// Delete `identity`'s record `salt` with a tombstone kept for `horizon`. Returns the
/// tombstone's write, or `None` if there was no live record.
pub(crate) async fn delete_record(
    route: &mut impl Route,
    identity: &Identity,
    salt: &[u8],
    horizon: Duration,
    k: u8,
) -> Result<Option<Written>, FilesError> {
    // One read: it tells whether there is a live record, and what the tombstone follows.
    let id = record_id(&identity.public_key(), salt);
    let current = fetch_record(route, id, k).await?;
    let Some(live) = current.as_ref().filter(|r| !r.is_tombstone()) else {
        return Ok(None);
    };
    let opts = WriteOptions {
        expect: Some(Some(live.seq)),
        expires_ms: Some(now_ms().saturating_add(horizon.as_millis() as u64)),
    };
    write_over(route, identity, salt, None, opts, current.as_ref(), k)
        .await
        .map(Some)
}

/// The hash table through a node of the ring, from outside it (a client): the same
/// operations as on [`crate::FilesNode`].
pub struct RemoteDht {
    lane: Lane,
    replicas: u8,
    horizon: Duration,
}

impl std::fmt::Debug for RemoteDht {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteDht")
            .field("node", &self.lane.node())
            .field("replicas", &self.replicas)
            .finish()
    }
}

impl RemoteDht {
    /// Use the ring through the node at `node` (`opts.replicas` copies, its network key).
    pub fn new(node: SocketAddr, opts: &TransferOptions) -> RemoteDht {
        RemoteDht {
            lane: Lane::new(node, &opts.network_key),
            replicas: opts.replicas.max(1),
            horizon: DEFAULT_TOMBSTONE_HORIZON,
        }
    }

    /// Keep tombstones this long (default [`DEFAULT_TOMBSTONE_HORIZON`]).
    pub fn tombstone_horizon(mut self, horizon: Duration) -> RemoteDht {
        self.horizon = horizon;
        self
    }

    /// Store a block (at most [`MAX_CHUNK`] bytes); returns its hash.
    pub async fn put_block(&mut self, bytes: Vec<u8>) -> Result<Hash, FilesError> {
        Ok(put_block(&mut self.lane, bytes, self.replicas).await?.0)
    }

    /// Read a block by its hash (`None`: no holder has it).
    pub async fn get_block(&mut self, h: Hash) -> Result<Option<Vec<u8>>, FilesError> {
        get_block(&mut self.lane, h, self.replicas).await
    }

    /// Write the next version of `identity`'s record `salt`.
    pub async fn put_record(
        &mut self,
        identity: &Identity,
        salt: &[u8],
        value: Vec<u8>,
        opts: WriteOptions,
    ) -> Result<Written, FilesError> {
        write_record(
            &mut self.lane,
            identity,
            salt,
            Some(value),
            opts,
            self.replicas,
        )
        .await
    }

    /// Read the live value of a record.
    pub async fn get_record(
        &mut self,
        public_key: &[u8; 32],
        salt: &[u8],
    ) -> Result<Option<RecordValue>, FilesError> {
        read_record(&mut self.lane, public_key, salt, self.replicas).await
    }

    /// Delete a record (a tombstone); `None` if there was no live record.
    pub async fn delete_record(
        &mut self,
        identity: &Identity,
        salt: &[u8],
    ) -> Result<Option<Written>, FilesError> {
        delete_record(&mut self.lane, identity, salt, self.horizon, self.replicas).await
    }

    /// The highest version held of a record, tombstones included, as signed.
    pub async fn fetch_record(&mut self, id: Id) -> Result<Option<Record>, FilesError> {
        fetch_record(&mut self.lane, id, self.replicas).await
    }

    /// Store a record someone signed (it is checked by every holder).
    pub async fn store_record(&mut self, record: &Record) -> Result<u8, FilesError> {
        store_record(&mut self.lane, record, None, self.replicas).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future::block_on;
    use std::collections::HashMap;

    /// `k` holders in memory that keep the highest version of a record, as `store_here`
    /// does (without `expect`), and count the requests they get.
    #[derive(Default)]
    struct Holders {
        peers: Vec<Peer>,
        held: HashMap<SocketAddr, Vec<u8>>,
        fetches: usize,
        stores: usize,
        verified: Option<Verified>,
    }

    impl Holders {
        fn new(k: u8) -> Holders {
            let peers = (1..=k)
                .map(|i| {
                    let addr: SocketAddr = format!("127.0.0.{i}:4000").parse().expect("addr");
                    Peer::from_addr(addr)
                })
                .collect();
            Holders {
                peers,
                ..Holders::default()
            }
        }
    }

    impl Route for Holders {
        async fn locate(&mut self, _id: Id, k: u8, _fresh: bool) -> Result<Vec<Peer>, FilesError> {
            Ok(self.peers.iter().take(usize::from(k)).copied().collect())
        }

        async fn ask(
            &mut self,
            to: SocketAddr,
            req: &FilesRequest,
        ) -> Result<FilesResponse, FilesError> {
            match req {
                FilesRequest::Fetch { .. } => {
                    self.fetches += 1;
                    Ok(self
                        .held
                        .get(&to)
                        .cloned()
                        .map_or(FilesResponse::NotFound, FilesResponse::Data))
                }
                FilesRequest::Store {
                    key: ItemKey::Record(id),
                    data,
                }
                | FilesRequest::StoreIf {
                    key: ItemKey::Record(id),
                    data,
                    ..
                } => {
                    self.stores += 1;
                    let new = Record::decode_at(data, *id)?;
                    if let Some(d) = self.held.get(&to) {
                        if Record::decode_stored(d, *id)?.version() >= new.version() {
                            return Ok(FilesResponse::Newer(d.clone()));
                        }
                    }
                    self.held.insert(to, data.clone());
                    Ok(FilesResponse::Stored)
                }
                _ => Err(FilesError::BadAnswer),
            }
        }

        fn verified(&mut self) -> Option<&mut Verified> {
            self.verified.as_mut()
        }
    }

    fn put(h: &mut Holders, me: &Identity, value: &[u8], opts: WriteOptions) -> Written {
        block_on(write_record(h, me, b"k", Some(value.to_vec()), opts, 3)).expect("put")
    }

    fn get(h: &mut Holders, me: &Identity) -> Option<Vec<u8>> {
        let r = block_on(read_record(h, &me.public_key(), b"k", 3)).expect("get");
        r.map(|r| r.value)
    }

    /// Issue 12's throughput target: a plain put used to read the record from its k
    /// holders before writing it (2k requests); it now writes at once.
    #[test]
    fn a_plain_put_does_not_read_first() {
        let (mut h, me) = (Holders::new(3), Identity::from_seed([1; 32]));
        let w = put(&mut h, &me, b"one", WriteOptions::default());
        assert_eq!((h.fetches, h.stores, w.replicas), (0, 3, 3));
        assert_eq!(get(&mut h, &me).as_deref(), Some(&b"one"[..]));
    }

    /// Puts in quick succession (several in one millisecond, where the clock gives the
    /// same sequence) each win over the one before: a holder's newer or equal version
    /// makes the writer sign again above it.
    #[test]
    fn rapid_overwrites_each_win() {
        let (mut h, me) = (Holders::new(3), Identity::from_seed([2; 32]));
        for i in 0..200u32 {
            put(&mut h, &me, &i.to_be_bytes(), WriteOptions::default());
            assert_eq!(
                get(&mut h, &me),
                Some(i.to_be_bytes().to_vec()),
                "write {i}"
            );
        }
    }

    /// A holder that keeps a version above the writer's clock (a clock set back, or a
    /// write from a machine ahead): the put signs above it, and every holder ends with it.
    #[test]
    fn a_put_behind_a_newer_version_signs_above_it() {
        let (mut h, me) = (Holders::new(3), Identity::from_seed([3; 32]));
        let ahead = now_ms() + 3_600_000;
        let old = me
            .sign(b"k", ahead, Some(b"old".to_vec()), None)
            .expect("sign");
        let at = h.peers[1].addr;
        h.held.insert(at, crate::encode(&old).expect("encode"));
        let w = put(&mut h, &me, b"new", WriteOptions::default());
        assert_eq!((w.seq, w.replicas), (ahead + 1, 3));
        assert_eq!(get(&mut h, &me).as_deref(), Some(&b"new"[..]));
    }

    /// A compare-and-swap still reads what is there first.
    #[test]
    fn a_compare_and_swap_reads_first() {
        let (mut h, me) = (Holders::new(3), Identity::from_seed([4; 32]));
        let opts = WriteOptions {
            expect: Some(None),
            ..WriteOptions::default()
        };
        put(&mut h, &me, b"first", opts);
        assert_eq!(h.fetches, 3);
        let again = block_on(write_record(
            &mut h,
            &me,
            b"k",
            Some(b"x".to_vec()),
            opts,
            3,
        ));
        assert!(
            matches!(again, Err(FilesError::Conflict { .. })),
            "{again:?}"
        );
    }

    /// A client remembers the records it verified: the same bytes read again are not
    /// checked again, and anything else still is (a forged copy served after the genuine
    /// one was read counts as nothing).
    #[test]
    fn a_record_read_again_is_verified_once_and_forgeries_still_fail() {
        let (mut h, me) = (Holders::new(3), Identity::from_seed([5; 32]));
        h.verified = Some(Verified::default());
        put(&mut h, &me, b"genuine", WriteOptions::default());
        assert_eq!(get(&mut h, &me).as_deref(), Some(&b"genuine"[..]));
        assert_eq!(get(&mut h, &me).as_deref(), Some(&b"genuine"[..]));
        assert_eq!(h.verified.as_ref().map(|v| v.order.len()), Some(1));
        // One holder now serves the same record with another value and a higher
        // sequence under the old signature.
        let at = h.peers[0].addr;
        let id = record_id(&me.public_key(), b"k");
        let mut forged = Record::decode_stored(&h.held[&at], id).expect("held");
        forged.seq += 1;
        forged.value = Some(b"forged".to_vec().into());
        h.held.insert(at, crate::encode(&forged).expect("encode"));
        assert_eq!(get(&mut h, &me).as_deref(), Some(&b"genuine"[..]));
    }

    /// Holders that take, just before the first store of a put, a tombstone signed at the
    /// put's own sequence (a delete from another process of the same owner in the same
    /// millisecond).
    struct RacingDelete {
        inner: Holders,
        owner: Identity,
        fired: bool,
    }

    impl Route for RacingDelete {
        async fn locate(&mut self, id: Id, k: u8, fresh: bool) -> Result<Vec<Peer>, FilesError> {
            self.inner.locate(id, k, fresh).await
        }

        async fn ask(
            &mut self,
            to: SocketAddr,
            req: &FilesRequest,
        ) -> Result<FilesResponse, FilesError> {
            if let FilesRequest::Store {
                key: ItemKey::Record(id),
                data,
            } = req
            {
                if !self.fired {
                    self.fired = true;
                    let put = Record::decode_at(data, *id)?;
                    let expires = now_ms() + 3_600_000;
                    let tomb = self.owner.sign(&put.salt, put.seq, None, Some(expires))?;
                    let bytes = crate::encode(&tomb)?;
                    for p in self.inner.peers.clone() {
                        self.inner.held.insert(p.addr, bytes.clone());
                    }
                }
            }
            self.inner.ask(to, req).await
        }
    }

    /// A plain put is last-writer-wins, over a tombstone too: one that meets a delete at
    /// its own sequence (the delete wins that tie at the holders) signs again above it
    /// and its value stands. (Found in review: the earlier read-first put reported a
    /// `Conflict` there and the delete stood; docs/design.md says which to use when a
    /// delete one did not see must stand: a compare-and-swap.)
    #[test]
    fn a_plain_put_that_meets_a_delete_at_its_sequence_writes_above_it() {
        let me = Identity::from_seed([9; 32]);
        let mut r = RacingDelete {
            inner: Holders::new(3),
            owner: Identity::from_seed([9; 32]),
            fired: false,
        };
        let w = block_on(write_record(
            &mut r,
            &me,
            b"k",
            Some(b"value".to_vec()),
            WriteOptions::default(),
            3,
        ))
        .expect("put");
        assert_eq!(w.replicas, 3);
        let got = block_on(read_record(&mut r.inner, &me.public_key(), b"k", 3)).expect("get");
        assert_eq!(
            got.map(|v| (v.seq, v.value)),
            Some((w.seq, b"value".to_vec()))
        );
    }
}
