//! Helpers for the multi-node tests in `tests/tests/`: start small rings of real nodes on
//! loopback and wait for them to agree.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chord_core::{Config, Id};
use chord_net::{Client, Node};

/// Protocol settings fast enough for tests: a ring settles in a second or two.
pub fn fast_config() -> Config {
    Config {
        stabilize_interval: Duration::from_millis(100),
        fix_fingers_interval: Duration::from_millis(100),
        request_timeout: Duration::from_millis(300),
        lookup_timeout: Duration::from_secs(5),
        ..Config::default()
    }
}

/// A loopback address with a free port chosen by the system.
pub fn any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Start `n` nodes on loopback, each joining through the previous one.
pub async fn start_ring(n: usize) -> Vec<Node> {
    let mut nodes: Vec<Node> = Vec::new();
    for i in 0..n {
        let mut b = Node::builder().listen(any_port()).config(fast_config());
        if i > 0 {
            b = b.join(nodes[i - 1].addr());
        }
        nodes.push(b.start().await.expect("node starts"));
    }
    nodes
}

/// Is the ring formed by `nodes` exactly right: each node's successor and predecessor are
/// its neighbours in id order?
pub async fn ring_is_consistent(nodes: &[Node]) -> bool {
    let mut ids: Vec<(Id, SocketAddr)> = nodes.iter().map(|n| (n.id(), n.addr())).collect();
    ids.sort();
    for (k, (_, addr)) in ids.iter().enumerate() {
        let Ok(mut c) = Client::connect(*addr).await else {
            return false;
        };
        let Ok(s) = c.status().await else {
            return false;
        };
        let next = ids[(k + 1) % ids.len()].0;
        let prev = ids[(k + ids.len() - 1) % ids.len()].0;
        if s.successors.first().map(|p| p.id) != Some(next)
            || s.predecessor.map(|p| p.id) != Some(prev)
        {
            return false;
        }
    }
    true
}

/// Wait up to `limit` for the ring to be consistent; returns how long it took.
pub async fn wait_consistent(nodes: &[Node], limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if ring_is_consistent(nodes).await {
            return Some(start.elapsed());
        }
        async_io::Timer::after(Duration::from_millis(100)).await;
    }
    None
}

/// The node of `nodes` responsible for `key`.
pub fn owner_of(nodes: &[Node], key: Id) -> Id {
    let mut ids: Vec<Id> = nodes.iter().map(|n| n.id()).collect();
    ids.sort();
    *ids.iter().find(|id| **id >= key).unwrap_or(&ids[0])
}
