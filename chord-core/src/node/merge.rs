//! Merging rings after a partition (not in the paper): nodes we lost touch with, and
//! seeds, are remembered and probed now and then by a lookup of our own id through them;
//! an answer naming a node closer than our successor joins the two rings.

use super::*;

/// A peer probed now and then to find a ring that formed apart.
#[derive(Clone, Copy, Debug)]
pub(super) struct Remembered {
    pub(super) peer: Peer,
    /// A seed (a bootstrap address) stays whatever its probes give; any other peer is
    /// forgotten once a probe through it finds our own ring, or after
    /// `MAX_PROBE_FAILURES` probes through it in a row failed (it is dead).
    pub(super) seed: bool,
    pub(super) failures: u8,
}

/// Failed probes in a row after which a remembered peer is forgotten.
pub(super) const MAX_PROBE_FAILURES: u8 = 3;

/// Most seeds kept.
pub(super) const MAX_SEEDS: usize = 8;

impl Node {
    /// Remember a peer that left our tables without a goodbye.
    pub(super) fn remember(&mut self, p: Peer) {
        if self.cfg.remembered_peers == 0 || p.id == self.me.id {
            return;
        }
        if self.remembered.iter().any(|q| q.peer.id == p.id) {
            return;
        }
        let others = self.remembered.iter().filter(|q| !q.seed).count();
        if others >= self.cfg.remembered_peers {
            if let Some(i) = self.remembered.iter().position(|q| !q.seed) {
                self.remembered.remove(i);
            }
        }
        self.remembered.push_back(Remembered {
            peer: p,
            seed: false,
            failures: 0,
        });
    }

    /// [`Node::remember`], unless that would push out a peer remembered already.
    pub(super) fn remember_if_room(&mut self, p: Peer) {
        let others = self.remembered.iter().filter(|q| !q.seed).count();
        if others < self.cfg.remembered_peers {
            self.remember(p);
        }
    }

    /// Keep probing `p` for a ring that formed apart, whatever happens: a bootstrap
    /// address from the configuration, which stays useful after every peer we met on the
    /// other side of a partition is gone. [`Node::join`] adds its bootstrap peer. At most
    /// 8 seeds are kept (the oldest goes); with `Config::remembered_peers` 0, none.
    pub fn add_seed(&mut self, p: Peer) {
        if self.cfg.remembered_peers == 0 || p.id == self.me.id {
            return;
        }
        self.remembered.retain(|q| q.peer.id != p.id);
        if self.remembered.iter().filter(|q| q.seed).count() >= MAX_SEEDS {
            if let Some(i) = self.remembered.iter().position(|q| q.seed) {
                self.remembered.remove(i);
            }
        }
        self.remembered.push_back(Remembered {
            peer: p,
            seed: true,
            failures: 0,
        });
    }

    /// Ask a remembered peer's ring who our successor would be there.
    pub(super) fn probe_remembered(&mut self, now: Time) {
        // Seeds only every `seed_probe_interval`, the others in turn; but a node alone
        // (its whole list gave out) probes its seeds in turn with the others: the peers
        // it remembers are mostly the ones that just fell silent on it, and a seed is its
        // best way back. Waiting up to a minute for the seed kept a live node out of the
        // ring that long (the hunting sweep at up to 20% loss, seed 15142: a joiner whose
        // list had all left or crashed, healed 48 s after it went alone).
        let seeds_due = now >= self.next_seed_probe || self.successors.is_empty();
        let Some(i) = self.remembered.iter().position(|q| seeds_due || !q.seed) else {
            return;
        };
        let Some(via) = self.remembered.remove(i) else {
            return;
        };
        if via.seed {
            self.next_seed_probe = now + self.cfg.seed_probe_interval;
        }
        // Back of the queue: every remembered peer gets its turn.
        self.remembered.push_back(via);
        let id = self.alloc_lookup_id();
        let lookup = self.seeded_lookup(self.me.id, via.peer);
        self.run_lookup(id, lookup, LookupKind::Merge(via.peer), now);
    }

    /// A probe through `via` failed: forget it after a few in a row, unless a seed.
    pub(super) fn on_probe_failed(&mut self, via: Peer) {
        if let Some(i) = self.remembered.iter().position(|q| q.peer.id == via.id) {
            let q = &mut self.remembered[i];
            q.failures = q.failures.saturating_add(1);
            if !q.seed && q.failures >= MAX_PROBE_FAILURES {
                self.remembered.remove(i);
            }
        }
    }

    /// Through `via`, our successor would be `owner`. If it lies between us and our
    /// successor, the rings have been apart: take it as a stabilize candidate (adopted
    /// only if it answers), and stabilization merges the rest.
    pub(super) fn on_merge_found(&mut self, via: Peer, owner: Peer, now: Time) {
        let succ = self.successor();
        if let Some(q) = self.remembered.iter_mut().find(|q| q.peer.id == via.id) {
            q.failures = 0;
        }
        if owner.id == self.me.id || owner.id == succ.id {
            // Same ring as ours: nothing to merge through this peer (a seed stays).
            self.remembered.retain(|q| q.seed || q.peer.id != via.id);
            return;
        }
        if !owner.id.in_open(self.me.id, succ.id) {
            return;
        }
        if self.stabilizing() {
            // Not dropped: with one-way latencies of 150 ms a round runs a third of the
            // time, and a ring of two whose merge probes found the rest of the ring both
            // times mid-round stayed apart until the next seed probe a minute later (the
            // hunting sweep at up to 20% loss, seed 12463).
            self.merge_candidate = Some(owner);
        } else {
            self.send_request(
                owner,
                Request::GetNeighbors,
                Purpose::StabilizeCandidate,
                now,
            );
        }
    }
}
