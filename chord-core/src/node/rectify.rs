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
        if !self.checking_predecessor() {
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

    /// Our ping of our predecessor: any answer keeps it; on silence, take the candidate
    /// that rectified us, if any. The predecessor may be gone already (its Departed answer
    /// to this very ping cleared it): the candidate that rectified us is still the one.
    pub(super) fn on_predecessor_check_reply(
        &mut self,
        to: Peer,
        candidate: Option<Peer>,
        reply: Reply,
        now: Time,
    ) {
        if reply.is_err() {
            let ours = self.predecessor.map(|p| p.id);
            if ours == Some(to.id) || (ours.is_none() && candidate.is_some()) {
                self.set_predecessor(candidate);
            }
        }
        self.continue_leave_check(now);
    }
}
