//! Fingers (the paper's `fix_fingers` and `closest_preceding_node`): one lookup per tick
//! for the next finger that can have a different owner.

use super::*;

impl Node {
    /// The nodes we know that most closely precede `key`, best first: Chord's
    /// `closest_preceding_node`, extended to the next few for fallback.
    pub fn closest_preceding_nodes(&self, key: Id, k: usize) -> Vec<Peer> {
        // Fingers and successor list are both ordered by distance from us, strictly and
        // without us: those in (me, key) are a prefix of each, the nearest the key at its
        // end. Walk the two prefixes back from their ends, merged, a node in both taken
        // once (the finger's copy). This answers every lookup step, and reading only the
        // entries it returns (not every entry, to sort them) was 8% of the simulator's
        // cache misses at 3,000 nodes.
        let me = self.me.id;
        let fingers = self.fingers.entries();
        let list = self.successors.as_slice();
        debug_assert!(
            [fingers, list].iter().all(|l| l
                .windows(2)
                .all(|w| me.distance_to(w[0].id) < me.distance_to(w[1].id))
                && l.iter().all(|p| p.id != me)),
            "fingers and successors are ordered by distance from the node"
        );
        // (me, me) is the whole ring but us.
        let span = me.distance_to(key);
        let before = |p: &Peer| span == Id::ZERO || me.distance_to(p.id) < span;
        let (mut i, mut j) = (
            fingers.partition_point(before),
            list.partition_point(before),
        );
        let mut best = Vec::with_capacity(k.min(i + j));
        while best.len() < k {
            let next = match (i.checked_sub(1), j.checked_sub(1)) {
                (None, None) => break,
                (Some(f), None) => {
                    i = f;
                    fingers[f]
                }
                (None, Some(s)) => {
                    j = s;
                    list[s]
                }
                (Some(f), Some(s)) => {
                    // The nearer the key goes first; the same node in both moves both.
                    let (df, ds) = (me.distance_to(fingers[f].id), me.distance_to(list[s].id));
                    if ds >= df {
                        j = s;
                    }
                    if df >= ds {
                        i = f;
                        fingers[f]
                    } else {
                        list[s]
                    }
                }
            };
            if next.id.in_open(me, key) {
                best.push(next);
            }
        }
        best
    }

    pub(super) fn fix_fingers(&mut self, now: Time) {
        // Indices below the first successor's distance all point at the successor, which
        // stabilize keeps fresh; start after it.
        let Some(s) = self.successors.first() else {
            return;
        };
        let first = FingerTable::next_index_after(self.me.id.distance_to(s.id));
        let Some(first) = first else {
            return;
        };
        if self.next_finger < first {
            self.next_finger = first;
        }
        let i = self.next_finger;
        let key = self.fingers.start(i);
        self.start_lookup(key, LookupKind::Finger(i), now);
    }

    pub(super) fn on_finger_found(&mut self, i: usize, owner: Peer) {
        // A finger the lookup passed over is dead, or in a ring apart from ours: remember
        // it (unless it said goodbye), as a finger that failed a lookup is. A node cut off
        // with a few others, every peer of its list gone, may know the rest of the ring
        // only through its fingers (the hunting sweep at up to 20% loss, seed 11033: a
        // ring of two whose fingers alone had reached the other ring; fix_fingers
        // replaced them and the two rings never met again). Only while there is room: a
        // leaver's departure is forgotten after a while, and its finger, passed over
        // then, must not push out a peer remembered across a partition (found in review).
        // And only for a node that looks cut off: the lookup found no other node, or our
        // list is not full (our ring looks smaller than r + 1). In a large ring under
        // churn the fingers passed over are crashed nodes, and probing them all cost
        // 2.8% more messages and more wrong lookups (500 nodes, 60 joins plus crashes a
        // minute, five seeds: 17 wrong of 18,000 against 11).
        let list = self.successors.as_slice();
        let cut_off =
            owner.id == self.me.id || self.successors.coverage(list) < self.successors.capacity();
        if cut_off {
            for p in self.fingers.stale_for(i, owner.id) {
                if !self.is_departed(p.id) && !self.successors.contains(p.id) {
                    self.remember_if_room(p);
                }
            }
        }
        self.fingers.update(i, owner);
        let d = self.me.id.distance_to(owner.id);
        self.next_finger = if owner.id == self.me.id {
            0
        } else {
            FingerTable::next_index_after(d).unwrap_or(0)
        };
    }
}
