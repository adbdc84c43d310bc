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
        let pooled = self.clients.contains_key(&to);
        let mut c = self.client(to).await?;
        let answer = c
            .call_into(SERVICE, encode(req)?, std::mem::take(&mut self.spare))
            .await;
        if pooled && answer.as_ref().is_err_and(stale) {
            return self.ask_again(to, req).await;
        }
        self.answered(to, c, answer)
    }

    /// `req` to `to` once more on a new connection, after the pooled one turned out
    /// closed (the node closes a client's idle connections: 120 s by default, so every
    /// read of a client idle that long failed: found in review). Files requests may be
    /// repeated: stores and renewals of one version are idempotent, a compare-and-swap
    /// that took effect the first time answers with our own version, which counts as
    /// stored.
    async fn ask_again(
        &mut self,
        to: SocketAddr,
        req: &FilesRequest,
    ) -> Result<FilesResponse, FilesError> {
        let mut c = connect(to, self.key.as_ref()).await?;
        let answer = c.call_into(SERVICE, encode(req)?, Vec::new()).await;
        self.answered(to, c, answer)
    }

    /// [`Route::ask_each`](crate::dht::Route::ask_each): the calls run at once, each on
    /// its address's connection (connections opened at once too). Asks to an address
    /// that appears twice run one after the other.
    pub(crate) async fn ask_each(
        &mut self,
        asks: Vec<(SocketAddr, FilesRequest)>,
    ) -> Vec<Result<FilesResponse, FilesError>> {
        let distinct = asks.len()
            == asks
                .iter()
                .map(|(to, _)| to)
                .collect::<std::collections::HashSet<_>>()
                .len();
        if !distinct || asks.len() < 2 {
            let mut answers = Vec::with_capacity(asks.len());
            for (to, req) in &asks {
                answers.push(self.ask(*to, req).await);
            }
            return answers;
        }
        // Each ask opens its connection if it has none and calls on it at once: an
        // address slow to connect delays only its own call.
        let calls = asks.iter().map(|(to, req)| {
            let (to, known) = (*to, self.clients.remove(to));
            let key = self.key.clone();
            async move {
                let pooled = known.is_some();
                let mut c = match known {
                    Some(c) => c,
                    None => connect(to, key.as_ref()).await?,
                };
                let answer = c.call_into(SERVICE, encode(req)?, Vec::new()).await;
                Ok::<_, FilesError>((to, pooled, c, answer))
            }
        });
        let done = futures::future::join_all(calls).await;
        let mut answers = Vec::with_capacity(done.len());
        for (r, (_, req)) in done.into_iter().zip(&asks) {
            answers.push(match r {
                Ok((to, true, _, Err(e))) if stale(&e) => self.ask_again(to, req).await,
                Ok((to, _, c, answer)) => self.answered(to, c, answer),
                Err(e) => Err(e),
            });
        }
        answers
    }

    /// The connection to `to`, taken out of the pool (opened if there is none).
    async fn client(&mut self, to: SocketAddr) -> Result<Client, FilesError> {
        match self.clients.remove(&to) {
            Some(c) => Ok(c),
            None => connect(to, self.key.as_ref()).await,
        }
    }

    /// An answer from `to` on `c`: the connection goes back to the pool unless the call
    /// failed (it may be broken: a new one is opened next time).
    fn answered(
        &mut self,
        to: SocketAddr,
        c: Client,
        answer: Result<Vec<u8>, chord_net::Error>,
    ) -> Result<FilesResponse, FilesError> {
        let mut answer = answer.map_err(FilesError::Unreachable)?;
        self.clients.insert(to, c);
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
            FilesResponse::LocatedRange { from, mut holders } if !holders.is_empty() => {
                // What we asked for, not what the node sent: a hostile node's list of
                // 300,000 peers would have every one of them asked at once (review).
                holders.truncate(usize::from(k));
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

/// A new client connection to `to`, with the ring's key if it has one.
async fn connect(to: SocketAddr, key: Option<&NetworkKey>) -> Result<Client, FilesError> {
    Client::connect_with_key(to, Limits::default(), key)
        .await
        .map_err(FilesError::Unreachable)
}

/// A call that failed on a connection the peer had closed (or reset) before answering:
/// worth one more try on a new connection. Not a timeout (the peer may be slow or gone)
/// nor an answer.
fn stale(e: &chord_net::Error) -> bool {
    matches!(
        e,
        chord_net::Error::Frame(
            _,
            chord_net::frame::FrameError::Closed | chord_net::frame::FrameError::Io(_)
        )
    )
}

/// One lane per chunk in flight, each with its own connections.
fn lanes(node: SocketAddr, opts: &TransferOptions) -> Vec<Lane> {
    (0..opts.window.max(1))
        .map(|_| Lane::new(node, &opts.network_key))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;
    use crate::{FilesConfig, FilesNode};
    use futures_lite::future::block_on;
    use std::sync::Arc;

    /// Asks at once keep their order; a silent address fails at its place only; the
    /// connections that answered stay pooled, the failed one is not; an address asked
    /// twice is asked twice.
    #[test]
    fn ask_each_answers_in_order_and_pools_what_answered() {
        block_on(async {
            let mut nodes = Vec::new();
            for _ in 0..2 {
                let b = chord_net::Node::builder().listen(SocketAddr::from(([127, 0, 0, 1], 0)));
                let store = Arc::new(MemoryStore::new(1 << 20));
                nodes.push(
                    FilesNode::start(b, store, FilesConfig::default())
                        .await
                        .expect("start"),
                );
            }
            let (a, b) = (nodes[0].node().addr(), nodes[1].node().addr());
            // A port nobody listens on (taken, then released).
            let silent = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("port");
            let mut lane = Lane::new(a, &None);
            let asks = vec![
                (a, FilesRequest::Stats),
                (silent, FilesRequest::Stats),
                (b, FilesRequest::Stats),
            ];
            let answers = lane.ask_each(asks).await;
            assert!(
                matches!(answers[0], Ok(FilesResponse::Stats { .. })),
                "{answers:?}"
            );
            assert!(
                matches!(answers[1], Err(FilesError::Unreachable(_))),
                "{answers:?}"
            );
            assert!(
                matches!(answers[2], Ok(FilesResponse::Stats { .. })),
                "{answers:?}"
            );
            let mut pooled: Vec<_> = lane.clients.keys().copied().collect();
            pooled.sort();
            let mut want = vec![a, b];
            want.sort();
            assert_eq!(pooled, want);
            let twice = lane
                .ask_each(vec![(b, FilesRequest::Stats), (b, FilesRequest::Stats)])
                .await;
            assert!(twice
                .iter()
                .all(|r| matches!(r, Ok(FilesResponse::Stats { .. }))));
            for n in &nodes {
                n.node().kill();
            }
        });
    }

    /// A node that answers every locate with `n` holders (listeners that never answer).
    struct Liar(Vec<Peer>);

    impl chord_net::Service for Liar {
        fn handle(
            &self,
            _node: chord_net::Node,
            _from: Option<SocketAddr>,
            request: Vec<u8>,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Vec<u8>> + Send>> {
            let holders = self.0.clone();
            Box::pin(async move {
                let answer = match decode::<FilesRequest>(&request) {
                    Ok(FilesRequest::LocateRange { id, .. }) => FilesResponse::LocatedRange {
                        from: id.wrapping_sub(Id::pow2(0)),
                        holders,
                    },
                    _ => FilesResponse::NotFound,
                };
                encode(&answer).unwrap_or_default()
            })
        }
    }

    /// A record read with k = 3 connected to as many holders as the entry node named, all
    /// at once (found in review, session 13: a hostile entry node's 300,000 peers); it
    /// asks the k it asked for.
    #[test]
    fn a_read_asks_only_k_holders_whatever_the_entry_node_names() {
        let n = 200;
        let listeners: Vec<_> = (0..n)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
            .collect();
        let holders: Vec<Peer> = listeners
            .iter()
            .map(|l| Peer::from_addr(l.local_addr().expect("addr")))
            .collect();
        let entry = block_on(
            chord_net::Node::builder()
                .listen(SocketAddr::from(([127, 0, 0, 1], 0)))
                .service(SERVICE, Arc::new(Liar(holders)))
                .start(),
        )
        .expect("start");
        let addr = entry.addr();
        let reader = std::thread::spawn(move || {
            let mut lane = Lane::new(addr, &None);
            block_on(crate::dht::fetch_record(&mut lane, Id::pow2(7), 3)).map(|_| ())
        });
        std::thread::sleep(std::time::Duration::from_secs(2));
        let mut connected = 0;
        for l in &listeners {
            l.set_nonblocking(true).expect("nonblocking");
            while l.accept().is_ok() {
                connected += 1;
            }
        }
        let _ = reader.join();
        entry.kill();
        assert!(
            connected <= 6,
            "one read of k = 3 opened {connected} connections at once"
        );
    }

    /// A client that keeps its connections got an error for the first read after the node
    /// closed them as idle (found in review, session 13); it now asks again on a new one.
    #[test]
    fn a_read_after_the_idle_timeout_succeeds() {
        block_on(async {
            let limits = Limits {
                idle_timeout: std::time::Duration::from_secs(1),
                ..Limits::default()
            };
            let b = chord_net::Node::builder()
                .listen(SocketAddr::from(([127, 0, 0, 1], 0)))
                .limits(limits);
            let node = FilesNode::start(
                b,
                Arc::new(MemoryStore::new(1 << 20)),
                FilesConfig::default(),
            )
            .await
            .expect("start");
            let me = crate::record::Identity::from_seed([3; 32]);
            let mut dht =
                crate::dht::RemoteDht::new(node.node().addr(), &TransferOptions::default());
            dht.put_record(&me, b"k", b"v".to_vec(), Default::default())
                .await
                .expect("put");
            async_io::Timer::after(std::time::Duration::from_secs(3)).await;
            let got = dht.get_record(&me.public_key(), b"k").await;
            node.node().kill();
            assert!(matches!(got, Ok(Some(_))), "{got:?}");
        });
    }
}
