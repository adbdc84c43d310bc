//! Rectify (Zave's replacement for the paper's `notify` and `check_predecessor`): a node
//! takes the sender as its predecessor if it has none, if the sender is closer, or if the
//! current one fails a ping.

use super::*;

impl Node {
    pub(super) fn rectify(&mut self, n: Peer, now: Time) {
        if n.id == self.me.id || self.is_departed(n.id) {
            return;
        }
        match self.predecessor {
            None => self.set_predecessor(Some(n)),
            Some(p) if p.id == n.id => {}
            Some(p) if n.id.in_open(p.id, self.me.id) => self.set_predecessor(Some(n)),
            Some(p) => {
                // n is farther than our predecessor: take it only if p is dead.
                self.check_predecessor(p, Some(n), now);
            }
        }
    }

    /// Ping our predecessor `p` (one check at a time); if it is silent, take `candidate`
    /// (maybe none) instead.
    pub(super) fn check_predecessor(&mut self, p: Peer, candidate: Option<Peer>, now: Time) {
        if !self.checking_predecessor {
            self.checking_predecessor = true;
            self.send_request(
                p,
                Request::Ping,
                Purpose::CheckPredecessor { candidate },
                now,
            );
        }
    }

    pub(super) fn set_predecessor(&mut self, new: Option<Peer>) {
        if self.predecessor != new {
            let old = std::mem::replace(&mut self.predecessor, new);
            self.events
                .push_back(Event::PredecessorChanged { old, new });
        }
    }
}
