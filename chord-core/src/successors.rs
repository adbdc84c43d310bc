//! The successor list: the `r` nearest live nodes clockwise, nearest first.
//!
//! Zave's invariants require the list to be ordered by clockwise distance from its owner,
//! without duplicates and without the owner itself. Every way the list is changed goes
//! through [`SuccessorList::rebuild`] or [`SuccessorList::remove`], which keep that true
//! even when the input (from the network) is unordered, duplicated or too long.

use std::net::SocketAddr;

use crate::{Id, Peer, MAX_PEERS_PER_MESSAGE};

/// Counts how much of a capacity the entries seen so far fill, one entry at a time:
/// entries, or distinct hosts other than `host` (a list holds a few dozen at most, so a
/// small vector is the set).
#[derive(Default)]
struct Coverage {
    hosts: Vec<SocketAddr>,
    count: usize,
}

impl Coverage {
    fn add(&mut self, host: Option<SocketAddr>, p: &Peer) {
        match host {
            None => self.count += 1,
            Some(mine) => {
                if p.addr != mine && !self.hosts.contains(&p.addr) {
                    self.hosts.push(p.addr);
                    self.count += 1;
                }
            }
        }
    }

    /// Full for `want`, with `entries` entries so far?
    fn full(&self, want: usize, entries: usize) -> bool {
        entries >= MAX_PEERS_PER_MESSAGE || self.count >= want
    }
}

/// The successor list of the node `me`.
#[derive(Clone, Debug)]
pub struct SuccessorList {
    me: Id,
    /// Our host's address, when the list counts hosts (see
    /// [`SuccessorList::counting_hosts`]).
    host: Option<SocketAddr>,
    cap: usize,
    entries: Vec<Peer>,
}

impl SuccessorList {
    /// An empty list (the node is alone, or has lost every successor) of capacity `cap`.
    pub fn new(me: Id, cap: usize) -> SuccessorList {
        SuccessorList {
            me,
            host: None,
            cap: cap.max(1),
            entries: Vec::with_capacity(cap.max(1)),
        }
    }

    /// An empty list for the ring position `me` whose capacity counts *hosts*: it holds
    /// the next positions, in order, up to the one that brings in the `cap`-th distinct
    /// host other than `me`'s own (further positions of hosts already covered are kept,
    /// not skipped). With virtual nodes a list of `r` positions may cover fewer than `r`
    /// hosts, and one host's crash then takes several entries at once; this list survives
    /// `r - 1` host failures as a list without virtual nodes does. Without virtual nodes
    /// it is the plain list of `cap` entries. (Keeping the positions in between, rather
    /// than skipping them, is what lets a node build its list from its successor's: see
    /// docs/design.md.) At most [`MAX_PEERS_PER_MESSAGE`] entries in any case.
    pub fn counting_hosts(me: Peer, cap: usize) -> SuccessorList {
        SuccessorList {
            host: Some(me.addr),
            ..SuccessorList::new(me.id, cap)
        }
    }

    /// How much of a capacity `peers` would fill: its distinct hosts other than ours
    /// when the list counts hosts, else its length.
    pub fn coverage(&self, peers: &[Peer]) -> usize {
        let mut c = Coverage::default();
        for p in peers {
            c.add(self.host, p);
        }
        c.count
    }

    /// The first entries of `all` that make a full list of `want`.
    fn cut(&self, mut all: Vec<Peer>, want: usize) -> Vec<Peer> {
        let mut c = Coverage::default();
        let mut n = 0;
        while n < all.len() && !c.full(want, n) {
            c.add(self.host, &all[n]);
            n += 1;
        }
        all.truncate(n);
        all
    }

    /// The nearest successor, if any.
    pub fn first(&self) -> Option<&Peer> {
        self.entries.first()
    }

    /// The entries, nearest first.
    pub fn as_slice(&self) -> &[Peer] {
        &self.entries
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Is the list empty?
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Capacity `r`.
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Change the capacity (the adaptive `r`), dropping the farthest entries if needed.
    pub fn set_capacity(&mut self, cap: usize) {
        self.cap = cap.max(1);
        let entries = std::mem::take(&mut self.entries);
        self.entries = self.cut(entries, self.cap);
    }

    /// Does the list contain `id`?
    pub fn contains(&self, id: Id) -> bool {
        self.entries.iter().any(|p| p.id == id)
    }

    /// Replace the list by `head` followed by `tail`, as stabilize and join do: stop at our
    /// own id (the tail wrapped around a small ring), skip anything not strictly farther
    /// than the previous entry (duplicates, disorder), and cut at the capacity.
    /// Returns whether the list changed.
    pub fn rebuild(&mut self, head: Peer, tail: &[Peer]) -> bool {
        let mut next = Vec::with_capacity(self.cap);
        let mut c = Coverage::default();
        let mut last = Id::ZERO;
        for p in std::iter::once(&head).chain(tail) {
            if c.full(self.cap, next.len()) || p.id == self.me {
                break;
            }
            let d = self.me.distance_to(p.id);
            if d <= last {
                continue;
            }
            last = d;
            c.add(self.host, p);
            next.push(*p);
        }
        let changed = next != self.entries;
        self.entries = next;
        changed
    }

    /// Merge `peers` into the list keeping it ordered (used when a successor leaves and
    /// hands us its own list). Returns whether the list changed.
    pub fn merge(&mut self, peers: &[Peer]) -> bool {
        self.merge_up_to(peers, self.cap)
    }

    /// Merge `peers` into the list keeping it ordered, without dropping any entry we had:
    /// the list may grow past its capacity, by at most `peers.len()`, until the next
    /// [`SuccessorList::rebuild`]. Used for a leaver's list, whose entries are
    /// unconfirmed and must not push out live entries. Returns whether the list changed.
    pub fn merge_keeping(&mut self, peers: &[Peer]) -> bool {
        let len = (self.cap.max(self.entries.len()) + peers.len()).min(MAX_PEERS_PER_MESSAGE);
        self.merge_up_to(peers, len)
    }

    /// Merge `peers` into the list, ordered and without duplicates, cut when it is full
    /// for `len` (hosts, or entries).
    fn merge_up_to(&mut self, peers: &[Peer], len: usize) -> bool {
        let mut all: Vec<Peer> = self.entries.iter().chain(peers).copied().collect();
        all.retain(|p| p.id != self.me);
        all.sort_by_key(|p| self.me.distance_to(p.id));
        all.dedup_by_key(|p| p.id);
        let all = self.cut(all, len);
        let changed = all != self.entries;
        self.entries = all;
        changed
    }

    /// Remove `id` (it failed or left). Returns whether it was there.
    pub fn remove(&mut self, id: Id) -> bool {
        let before = self.entries.len();
        self.entries.retain(|p| p.id != id);
        before != self.entries.len()
    }

    /// Estimate of the number of nodes in the ring from how much of it the list spans:
    /// `len` successors cover about `len / N` of the circle. `None` while the list is empty.
    pub fn estimate_ring_size(&self) -> Option<f64> {
        let last = self.entries.last()?;
        let span = self.me.distance_to(last.id).as_fraction();
        if span <= 0.0 {
            return None;
        }
        // Positions, or hosts when the list counts hosts (the capacity is in hosts then).
        Some(self.coverage(&self.entries).max(1) as f64 / span)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn peer(n: u8) -> Peer {
        let mut b = [0u8; 20];
        b[0] = n;
        let addr: SocketAddr = format!("127.0.0.{n}:1").parse().expect("valid");
        Peer::new(Id(b), addr)
    }

    #[test]
    fn rebuild_orders_dedups_and_cuts_at_self() {
        let me = peer(10).id;
        let mut l = SuccessorList::new(me, 4);
        // Tail wraps around past us (small ring) and contains a duplicate and a step back.
        assert!(l.rebuild(
            peer(20),
            &[peer(30), peer(30), peer(25), peer(40), peer(10), peer(20)]
        ));
        let ids: Vec<u8> = l.as_slice().iter().map(|p| p.id.0[0]).collect();
        assert_eq!(ids, vec![20, 30, 40]);
        assert!(!l.rebuild(peer(20), &[peer(30), peer(40)]));
    }

    #[test]
    fn rebuild_respects_capacity_and_wraps() {
        let me = peer(200).id;
        let mut l = SuccessorList::new(me, 3);
        l.rebuild(peer(250), &[peer(5), peer(50), peer(100)]);
        let ids: Vec<u8> = l.as_slice().iter().map(|p| p.id.0[0]).collect();
        assert_eq!(ids, vec![250, 5, 50]);
    }

    #[test]
    fn merge_and_remove() {
        let me = peer(10).id;
        let mut l = SuccessorList::new(me, 3);
        l.rebuild(peer(20), &[peer(40)]);
        assert!(l.merge(&[peer(30), peer(10), peer(50)]));
        let ids: Vec<u8> = l.as_slice().iter().map(|p| p.id.0[0]).collect();
        assert_eq!(ids, vec![20, 30, 40]);
        assert!(l.remove(peer(20).id));
        assert!(!l.remove(peer(20).id));
        assert_eq!(l.first().map(|p| p.id), Some(peer(30).id));
    }

    #[test]
    fn a_list_counting_hosts_keeps_positions_until_it_covers_r_hosts() {
        let at = |x: u8, host: u8| {
            let mut b = [0u8; 20];
            b[0] = x;
            Peer::new(Id(b), format!("127.0.0.{host}:1").parse().expect("valid"))
        };
        let me = at(10, 1);
        let mut l = SuccessorList::counting_hosts(me, 3);
        // 20 and 40 are our own host, 30 and 50 host 2, 60 host 3, 70 host 4, 80 host 5.
        l.rebuild(
            at(20, 1),
            &[
                at(30, 2),
                at(40, 1),
                at(50, 2),
                at(60, 3),
                at(70, 4),
                at(80, 5),
            ],
        );
        let ids: Vec<u8> = l.as_slice().iter().map(|p| p.id.0[0]).collect();
        assert_eq!(ids, vec![20, 30, 40, 50, 60, 70]);
        // Merging keeps the same rule; a smaller r cuts by hosts.
        l.merge(&[at(35, 6)]);
        let ids: Vec<u8> = l.as_slice().iter().map(|p| p.id.0[0]).collect();
        assert_eq!(ids, vec![20, 30, 35, 40, 50, 60]);
        l.set_capacity(2);
        let ids: Vec<u8> = l.as_slice().iter().map(|p| p.id.0[0]).collect();
        assert_eq!(ids, vec![20, 30, 35]);
    }

    #[test]
    fn ring_size_estimate() {
        let me = Id::ZERO;
        let mut l = SuccessorList::new(me, 8);
        assert_eq!(l.estimate_ring_size(), None);
        // Four successors spanning a quarter of the ring: about 16 nodes.
        let q: Vec<Peer> = (1..=4u8)
            .map(|i| {
                let mut b = [0u8; 20];
                b[0] = i * 16;
                Peer::new(Id(b), "127.0.0.1:1".parse().expect("valid"))
            })
            .collect();
        l.rebuild(q[0], &q[1..]);
        let n = l.estimate_ring_size().expect("non-empty");
        assert!((n - 16.0).abs() < 0.01, "{n}");
    }
}
