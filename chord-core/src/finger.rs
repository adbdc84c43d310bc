//! The finger table, stored compactly.
//!
//! Finger `i` of node `n` is `successor(n + 2^i)`, for `i` in `0..160`. In a ring of N
//! nodes only about log2 N of the 160 fingers are distinct, so the table keeps just the
//! distinct nodes, sorted by clockwise distance from `n`: finger `i` is then the first
//! entry at distance at least `2^i`. A lookup result for finger `i` replaces whatever
//! entries it proves stale (any entry at distance in `[2^i, d(result))`).

use crate::{Id, Peer, ID_BITS};

/// The distinct fingers of node `me`, nearest first.
#[derive(Clone, Debug)]
pub struct FingerTable {
    me: Id,
    entries: Vec<Peer>,
}

impl FingerTable {
    /// An empty table for node `me`.
    pub fn new(me: Id) -> FingerTable {
        FingerTable {
            me,
            entries: Vec::new(),
        }
    }

    /// Start of finger `i`: `me + 2^i`.
    pub fn start(&self, i: usize) -> Id {
        self.me.wrapping_add(Id::pow2(i))
    }

    /// The distinct fingers, nearest first.
    pub fn entries(&self) -> &[Peer] {
        &self.entries
    }

    /// Finger `i` as far as this table knows: the first entry at distance `>= 2^i`.
    pub fn finger(&self, i: usize) -> Option<&Peer> {
        let lo = Id::pow2(i);
        self.entries
            .iter()
            .find(|p| self.me.distance_to(p.id) >= lo)
    }

    /// Record that finger `i` is `owner` (the result of looking up `start(i)`).
    /// Returns whether the table changed.
    pub fn update(&mut self, i: usize, owner: Peer) -> bool {
        if owner.id == self.me {
            // No other node at or after start(i) before we come round again: every entry
            // at distance >= 2^i is stale.
            let lo = Id::pow2(i);
            let before = self.entries.len();
            self.entries.retain(|p| self.me.distance_to(p.id) < lo);
            return before != self.entries.len();
        }
        let lo = Id::pow2(i);
        let d = self.me.distance_to(owner.id);
        let before = self.entries.clone();
        // The owner is successor(start(i)), so nothing lies in [start(i), owner).
        self.entries.retain(|p| {
            let pd = self.me.distance_to(p.id);
            !(pd >= lo && pd < d) && p.id != owner.id
        });
        let pos = self
            .entries
            .partition_point(|p| self.me.distance_to(p.id) < d);
        self.entries.insert(pos, owner);
        self.prune();
        before != self.entries
    }

    /// The entries a lookup result for finger `i` proves stale, before [`update`]
    /// drops them: those at distance in `[2^i, d(owner))` (the lookup found nothing
    /// there), or every entry at distance `>= 2^i` when the owner is `me`. If the result
    /// is right, each is dead or in a ring apart from ours (a wrong result can pass over
    /// a live node of our ring too).
    ///
    /// [`update`]: FingerTable::update
    pub fn stale_for(&self, i: usize, owner: Id) -> Vec<Peer> {
        let lo = Id::pow2(i);
        let d = self.me.distance_to(owner);
        self.entries
            .iter()
            .filter(|p| {
                let pd = self.me.distance_to(p.id);
                p.id != owner && pd >= lo && (owner == self.me || pd < d)
            })
            .copied()
            .collect()
    }

    /// Drop entries that are no finger at all: an entry serves index `i` only if it is the
    /// first at distance `>= 2^i`, so one with no power of two between the previous
    /// entry's distance and its own serves none (it is left over from before a closer
    /// node was found).
    fn prune(&mut self) {
        let me = self.me;
        let mut prev = Id::ZERO;
        self.entries.retain(|p| {
            let d = me.distance_to(p.id);
            let serves = Self::next_index_after(prev).is_some_and(|j| Id::pow2(j) <= d);
            if serves {
                prev = d;
            }
            serves
        });
    }

    /// Drop a node that failed. Returns whether it was a finger.
    pub fn remove(&mut self, id: Id) -> bool {
        let before = self.entries.len();
        self.entries.retain(|p| p.id != id);
        before != self.entries.len()
    }

    /// The next finger index worth refreshing after one whose owner is at clockwise
    /// distance `d`: every index `j` with `2^j <= d` has the same owner. Wraps to `None`
    /// past the last index.
    pub fn next_index_after(d: Id) -> Option<usize> {
        // Smallest j with 2^j > d.
        let j = match d.log2() {
            None => 0,
            Some(b) => b + 1,
        };
        (j < ID_BITS).then_some(j)
    }

    /// `(i, start(i), finger)` for the first index each distinct finger serves, the rows a
    /// person wants to see in "print the finger table".
    pub fn rows(&self) -> Vec<(usize, Id, Peer)> {
        let mut rows = Vec::new();
        let mut i = 0;
        while i < ID_BITS {
            match self.finger(i) {
                Some(p) => {
                    rows.push((i, self.start(i), *p));
                    match Self::next_index_after(self.me.distance_to(p.id)) {
                        Some(j) => i = j,
                        None => break,
                    }
                }
                None => break,
            }
        }
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer_at(d: Id) -> Peer {
        Peer::new(d, "127.0.0.1:1".parse().expect("valid"))
    }

    #[test]
    fn update_replaces_stale_and_finger_lookup() {
        let me = Id::ZERO;
        let mut t = FingerTable::new(me);
        let p5 = peer_at(Id::pow2(5));
        let p9 = peer_at(Id::pow2(9));
        let p100 = peer_at(Id::pow2(100));
        assert!(t.update(5, p5));
        assert!(t.update(100, p100));
        assert!(t.update(6, p9)); // nothing in [2^6, 2^9)
        assert_eq!(t.entries(), &[p5, p9, p100]);
        assert_eq!(t.finger(0), Some(&p5));
        assert_eq!(t.finger(7), Some(&p9));
        assert_eq!(t.finger(50), Some(&p100));
        assert_eq!(t.finger(101), None);
        // A later lookup for finger 3 finds p9: p5 is gone (it left or never was).
        assert!(t.update(3, p9));
        assert_eq!(t.entries(), &[p9, p100]);
        let rows = t.rows();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].0, 0);
        assert_eq!(rows[1].0, 10);
        assert!(t.remove(p100.id));
        assert!(!t.remove(p100.id));
        // Looking up start(50) wrapped round to ourselves: drop everything at >= 2^50.
        t.update(50, p100);
        assert!(t.update(50, peer_at(me)));
        assert_eq!(t.entries(), &[p9]);
    }

    #[test]
    fn next_index_skips_indices_with_the_same_owner() {
        assert_eq!(FingerTable::next_index_after(Id::ZERO), Some(0));
        assert_eq!(FingerTable::next_index_after(Id::pow2(4)), Some(5));
        assert_eq!(
            FingerTable::next_index_after(Id::pow2(4).wrapping_add(Id::pow2(1))),
            Some(5)
        );
        assert_eq!(FingerTable::next_index_after(Id::pow2(159)), None);
    }
}
