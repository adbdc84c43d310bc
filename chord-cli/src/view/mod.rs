//! The live view (`chord node --http ADDR`, `chord demo --http ADDR`): a web page that
//! draws the ring as one node sees it and follows it as it changes.
//!
//! - [`ring`]: walk the ring from the node (going on past nodes that do not answer) and
//!   put what changed between two walks in words: joins, leaves, crashes, stabilization.
//! - [`trace`]: a lookup's path hop by hop.
//! - [`http`]: the HTTP server (hyper, on smol): the page, `/api/ring`, `/api/lookup`, and
//!   `/events`, a stream of server-sent events that pushes every new walk and change.
//!
//! The server is read-only: nothing on the page changes the ring. It runs on a thread of
//! its own, beside the node, and asks the node over the same client protocol as `chord
//! ring` (with the node's network key, so it sees what that node can see).

pub mod http;
pub mod ring;
pub mod trace;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use chord_net::NetworkKey;

use crate::common::Result;
use ring::{Change, Changes, RingView, Walker};

/// Where `--http` serves when given no address.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8080";

/// How often the view walks the ring.
pub const WALK_EVERY: Duration = Duration::from_millis(500);

/// Pages following the ring at once; more are answered 503.
const MAX_FOLLOWERS: usize = 32;

/// Messages queued for one page; a page that falls this far behind is dropped (its
/// browser reconnects and starts again from the latest walk).
const FOLLOWER_QUEUE: usize = 256;

/// Changes kept for a page that arrives late.
const LOG_KEPT: usize = 100;

/// The live view's socket, bound before the node starts (a busy port is then an error
/// before the node joins, not a node that joins and exits at once).
pub struct Bound {
    listener: std::net::TcpListener,
    addr: SocketAddr,
}

/// Bind the live view's address. A non-loopback `listen` serves the view to the network,
/// as asked, with a warning.
pub fn bind(listen: SocketAddr) -> Result<Bound> {
    let listener = std::net::TcpListener::bind(listen)
        .map_err(|e| format!("cannot serve the live view on {listen}: {e}"))?;
    let addr = listener.local_addr()?;
    if !addr.ip().is_loopback() {
        eprintln!(
            "warning: the live view on {addr} can be seen from the network (read-only; it \
             shows the ring's addresses and answers lookups, to anyone, key or not)"
        );
    }
    Ok(Bound { listener, addr })
}

impl Bound {
    /// Serve the live view of the ring seen from the node at `node` (with the ring's
    /// network key), from a thread of its own, for as long as the process runs. Returns
    /// the address it listens on.
    pub fn serve(self, node: SocketAddr, key: Option<NetworkKey>) -> Result<SocketAddr> {
        let listener = async_net::TcpListener::try_from(self.listener)?;
        let shared = Arc::new(http::Shared::new(self.addr, node, key));
        std::thread::Builder::new()
            .name("chord-view".into())
            // A stack overflow here would abort the node's whole process: room to spare
            // for the view's futures, which are large in debug builds.
            .stack_size(8 << 20)
            .spawn(move || {
                let ex = Arc::new(async_executor::Executor::new());
                ex.spawn(supervise(shared.clone())).detach();
                async_io::block_on(ex.run(http::accept(ex.clone(), listener, shared)));
            })?;
        Ok(self.addr)
    }
}

/// Run [`watch`], again if it panics: a bug met on one walk must not freeze the view.
async fn supervise(shared: Arc<http::Shared>) {
    use futures_lite::FutureExt;
    loop {
        let ended = std::panic::AssertUnwindSafe(watch(shared.clone()))
            .catch_unwind()
            .await;
        if ended.is_err() {
            tracing::error!("live view: the walk panicked; starting it again");
        }
        async_io::Timer::after(Duration::from_secs(1)).await;
    }
}

/// Most changes told for one walk; more are summed up in one line, so that a burst (a
/// partition healing, or a peer's made-up list) cannot fill the pages' queues.
const MAX_CHANGES_PER_WALK: usize = 40;

/// Walk the ring every [`WALK_EVERY`] and tell the pages what changed, and that the
/// view is alive.
async fn watch(shared: Arc<http::Shared>) {
    let mut walker = Walker::new(shared.node, shared.key.clone());
    let mut changes = Changes::new();
    let mut last: Option<RingView> = None;
    let mut silent_start = false;
    loop {
        match walker.walk().await {
            Some(view) => {
                silent_start = false;
                if let Some(old) = &last {
                    let now = now_ms();
                    let all = changes.between(old, &view, now);
                    for c in all.iter().take(MAX_CHANGES_PER_WALK) {
                        shared.hub.change(c);
                    }
                    if all.len() > MAX_CHANGES_PER_WALK {
                        shared.hub.change(&Change {
                            kind: "ring",
                            node: None,
                            text: format!(
                                "… and {} more changes",
                                all.len() - MAX_CHANGES_PER_WALK
                            ),
                            at_ms: now,
                        });
                    }
                }
                if last.as_ref() != Some(&view) {
                    shared.hub.ring(&view);
                    last = Some(view);
                }
            }
            None if !silent_start => {
                silent_start = true;
                shared.hub.change(&Change {
                    kind: "ring",
                    node: None,
                    text: format!("{} (this view's node) does not answer", shared.node),
                    at_ms: now_ms(),
                });
            }
            None => {}
        }
        shared.hub.alive();
        async_io::Timer::after(WALK_EVERY).await;
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The latest walk, the recent changes, and the pages that follow them.
pub struct Hub(Mutex<HubState>);

struct HubState {
    ring: Option<Bytes>,
    ring_sse: Option<Bytes>,
    log: VecDeque<Bytes>,
    followers: Vec<async_channel::Sender<Bytes>>,
}

impl Hub {
    fn new() -> Hub {
        Hub(Mutex::new(HubState {
            ring: None,
            ring_sse: None,
            log: VecDeque::new(),
            followers: Vec::new(),
        }))
    }

    fn state(&self) -> MutexGuard<'_, HubState> {
        // A panic elsewhere while holding the lock leaves plain data behind: go on.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The latest walk as JSON (`None` before the first).
    pub fn latest(&self) -> Option<Bytes> {
        self.state().ring.clone()
    }

    /// A new page follows: it gets the latest walk and the recent changes at once, then
    /// what comes. `None` when [`MAX_FOLLOWERS`] pages already follow.
    pub fn follow(&self) -> Option<async_channel::Receiver<Bytes>> {
        let mut st = self.state();
        st.followers.retain(|f| !f.is_closed());
        if st.followers.len() >= MAX_FOLLOWERS {
            return None;
        }
        let (tx, rx) = async_channel::bounded(FOLLOWER_QUEUE);
        for m in st.ring_sse.iter().chain(st.log.iter()) {
            // The queue is longer than the log: these fit.
            let _ = tx.try_send(m.clone());
        }
        st.followers.push(tx);
        Some(rx)
    }

    fn ring(&self, view: &RingView) {
        let json = serde_json::to_string(view).unwrap_or_default();
        let sse = sse("ring", &json);
        let mut st = self.state();
        st.ring = Some(Bytes::from(json));
        st.ring_sse = Some(sse.clone());
        st.send(sse);
    }

    fn change(&self, c: &Change) {
        let sse = sse("change", &serde_json::to_string(c).unwrap_or_default());
        let mut st = self.state();
        if st.log.len() == LOG_KEPT {
            st.log.pop_front();
        }
        st.log.push_back(sse.clone());
        st.send(sse);
    }

    /// After every walk: the page shows the view as live while these come (and pages
    /// whose browser went away are found and dropped).
    fn alive(&self) {
        self.state().send(sse("alive", &now_ms().to_string()));
    }
}

impl HubState {
    /// Send to every page; a page whose queue is full (or gone) is dropped.
    fn send(&mut self, m: Bytes) {
        self.followers.retain(|f| f.try_send(m.clone()).is_ok());
    }
}

/// One server-sent event. `data` is JSON on one line (serde_json writes no newlines).
fn sse(event: &str, data: &str) -> Bytes {
    Bytes::from(format!("event: {event}\ndata: {data}\n\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(n: usize) -> RingView {
        RingView {
            nodes: Vec::new(),
            consistent: n > 0,
            complete: true,
        }
    }

    #[test]
    fn a_page_gets_the_latest_walk_and_the_log_then_what_comes() {
        let hub = Hub::new();
        hub.ring(&view(1));
        let c = Change {
            kind: "join",
            node: None,
            text: "x joined".into(),
            at_ms: 0,
        };
        hub.change(&c);
        let rx = hub.follow().expect("room");
        let first = rx.try_recv().expect("ring");
        assert!(first.starts_with(b"event: ring\ndata: {"), "{first:?}");
        let second = rx.try_recv().expect("log");
        assert!(second.starts_with(b"event: change\n"), "{second:?}");
        assert!(rx.try_recv().is_err());
        hub.ring(&view(0));
        assert!(rx.try_recv().expect("pushed").starts_with(b"event: ring"));
    }

    #[test]
    fn followers_are_bounded_and_a_stuck_one_is_dropped() {
        let hub = Hub::new();
        let pages: Vec<_> = (0..MAX_FOLLOWERS).map(|_| hub.follow()).collect();
        assert!(pages.iter().all(Option::is_some));
        assert!(hub.follow().is_none(), "one too many");
        // Nobody reads: after FOLLOWER_QUEUE messages, every page is dropped.
        for _ in 0..=FOLLOWER_QUEUE {
            hub.alive();
        }
        assert!(hub.state().followers.is_empty());
        assert!(hub.follow().is_some(), "room again");
        drop(pages);
    }
}
