//! A ring seen from outside: walk it by successors, check that it is whole, wait for it
//! to settle. One place for what the `chord` command, its demo, the examples and the
//! tests all need.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chord_core::Peer;

use crate::{Client, Error, Limits, NetworkKey, Status};

/// Walk the ring by successors from the node at `start`, asking each ring position for
/// its status (`key`: the ring's network key, if it has one). Every position is walked,
/// virtual nodes included (each asked by its id, [`Client::status_of`]). Stops on coming
/// back to a position already seen, at a node without a successor, or after `max_nodes`
/// positions.
pub async fn walk(
    start: SocketAddr,
    key: Option<&NetworkKey>,
    max_nodes: usize,
) -> Result<Vec<Status>, Error> {
    let mut out: Vec<Status> = Vec::new();
    let mut seen = HashSet::new();
    let mut next: Option<Peer> = None;
    while out.len() < max_nodes {
        let addr = next.map_or(start, |p| p.addr);
        let mut c = Client::connect_with_key(addr, Limits::default(), key).await?;
        let s = match next {
            None => c.status().await?,
            Some(p) => {
                let s = c.status_of(p.id).await?;
                if s.me.id != p.id {
                    return Err(Error::Unexpected(addr));
                }
                s
            }
        };
        if !seen.insert(s.me.id) {
            break;
        }
        next = s.successors.first().copied();
        out.push(s);
        if next.is_none() {
            break;
        }
    }
    Ok(out)
}

/// Is this walk a whole ring: every node's successor's predecessor is that node, the
/// walk closes on its start, and it goes round the identifier circle exactly once?
pub fn is_consistent(walk: &[Status]) -> bool {
    let Some(first) = walk.first() else {
        return false;
    };
    let n = walk.len();
    if n == 1 {
        return first.successors.is_empty();
    }
    let mut wraps = 0;
    for (k, s) in walk.iter().enumerate() {
        let next = &walk[(k + 1) % n];
        if s.successors.first().map(|p| p.id) != Some(next.me.id) {
            return false;
        }
        if next.predecessor.map(|p| p.id) != Some(s.me.id) {
            return false;
        }
        if next.me.id <= s.me.id {
            wraps += 1;
        }
    }
    wraps == 1
}

/// Wait until the ring seen from `start` is consistent with `positions` ring positions
/// and every successor list holds `min(list_len, positions - 1)` entries; returns the
/// walk. Gives up after `limit` with the last error, or `Error::Timeout`.
pub async fn wait_stable(
    start: SocketAddr,
    key: Option<&NetworkKey>,
    positions: usize,
    list_len: usize,
    limit: Duration,
) -> Result<Vec<Status>, Error> {
    let began = Instant::now();
    let want = list_len.min(positions.saturating_sub(1));
    loop {
        let last = match walk(start, key, positions + 1).await {
            Ok(w)
                if w.len() == positions
                    && is_consistent(&w)
                    && w.iter().all(|s| s.successors.len() >= want) =>
            {
                return Ok(w);
            }
            Ok(_) => Error::Timeout(start),
            Err(e) => e,
        };
        if began.elapsed() > limit {
            return Err(last);
        }
        async_io::Timer::after(Duration::from_millis(100)).await;
    }
}
