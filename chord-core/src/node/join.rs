//! Joining (the paper's `join`, as Zave corrects it): [`Node::create`] starts a ring of
//! one; [`Node::join`] looks up our own id through a bootstrap node, and only once the
//! owner answers do we copy its successor list and count as a member.

use super::*;

impl Node {
    /// Start a new ring with this node as its only member.
    pub fn create(&mut self, now: Time) {
        if self.phase != Phase::Idle {
            return;
        }
        self.phase = Phase::Member;
        self.timers.set(Timer::Stabilize, now);
        self.timers
            .set(Timer::FixFingers, now + self.cfg.fix_fingers_interval);
        self.events.push_back(Event::Joined);
    }

    /// Join the ring that `bootstrap` is a member of. Emits [`Event::Joined`] or
    /// [`Event::JoinFailed`].
    pub fn join(&mut self, bootstrap: Peer, now: Time) {
        if self.phase != Phase::Idle {
            return;
        }
        let id = self.alloc_lookup_id();
        self.phase = Phase::Joining(id);
        self.bootstrap = Some(bootstrap);
        self.add_seed(bootstrap);
        let lookup = self.seeded_lookup(self.me.id, bootstrap);
        self.run_lookup(id, lookup, LookupKind::Join, now);
    }

    /// The lookup of our own id that a join started ended: copy the owner's successor
    /// list and count as a member, or report why not.
    pub(super) fn on_join_found(
        &mut self,
        id: LookupId,
        result: Result<LookupOutcome, LookupError>,
        now: Time,
    ) {
        if self.phase != Phase::Joining(id) {
            return;
        }
        match result {
            Ok(out) if out.owner.id == self.me.id => {
                self.phase = Phase::Idle;
                self.events.push_back(Event::JoinFailed(JoinError::IdInUse));
            }
            Ok(out) => {
                // Copy the successor's list before we count as a member (Zave).
                let tail = self.without_departed(&out.successors);
                self.successors.rebuild(out.owner, &tail);
                self.fingers.update(0, out.owner);
                self.phase = Phase::Member;
                self.timers.set(Timer::Stabilize, now);
                self.timers.set(Timer::FixFingers, now);
                self.events.push_back(Event::Joined);
                self.successors_changed();
            }
            Err(e) => {
                self.phase = Phase::Idle;
                self.events
                    .push_back(Event::JoinFailed(JoinError::Lookup(e)));
            }
        }
    }
}
