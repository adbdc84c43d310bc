//! Requests to other nodes: every request is sent with a deadline from the peer's
//! measured round-trip time and resent once on silence; its answer, or its final
//! silence, goes to the task that asked ([`Purpose`]).

use super::*;

pub(super) struct Pending {
    pub(super) to: Peer,
    pub(super) deadline: Time,
    pub(super) purpose: Purpose,
    /// Kept for a resend after a timeout (every request is idempotent).
    pub(super) body: Request,
    pub(super) retries_left: u32,
    /// When the first copy was sent, and how long the current try waits.
    pub(super) first_sent: Time,
    pub(super) wait: Duration,
    /// A lookup step: when to tell the lookup it is slow and let it ask another
    /// candidate meanwhile (once).
    pub(super) hedge_at: Option<Time>,
}

impl Node {
    pub(super) fn send_request(&mut self, to: Peer, body: Request, purpose: Purpose, now: Time) {
        let id = self.next_request;
        self.next_request += 1;
        self.transmits.push_back(Transmit {
            to,
            message: Message::Request {
                id,
                body: body.clone(),
            },
        });
        let wait = self.timeout_for(to.id);
        let hedge_at = match (&purpose, &body) {
            (Purpose::Lookup(_), Request::FindStep { .. }) => Some(now + self.hedge_delay(to.id)),
            _ => None,
        };
        self.pending.insert(
            id,
            Pending {
                to,
                deadline: now + wait,
                purpose,
                body,
                retries_left: self.cfg.request_retries,
                first_sent: now,
                wait,
                hedge_at,
            },
        );
    }

    pub(super) fn timeout_for(&self, peer: Id) -> Duration {
        self.rtt
            .timeout(peer, self.cfg.request_timeout, self.cfg.max_request_timeout)
    }

    /// How long the first try of a request to `peer` waits for an answer.
    /// A resend's wait when it must be longer than the try before: twice as long, up to
    /// `max_request_timeout` (or the wait itself, if that was longer already).
    pub(super) fn longer_wait(&self, wait: Duration) -> Duration {
        (wait * 2).min(self.cfg.max_request_timeout.max(wait))
    }

    pub(super) fn on_response(&mut self, from: Peer, purpose: Purpose, body: Response, now: Time) {
        match (purpose, body) {
            (
                Purpose::StabilizeFirst | Purpose::StabilizeCandidate { .. },
                Response::Neighbors {
                    predecessor,
                    successors,
                },
            ) => self.on_successor_neighbors(from, predecessor, &successors, now),
            (
                Purpose::StabilizeProbe { round },
                Response::Neighbors {
                    predecessor,
                    successors,
                },
            ) => {
                if self.probe_entry(round, from.id, ProbeState::Answered) {
                    self.advance_probe(Some((from, predecessor, &successors)), now);
                }
            }
            (Purpose::StabilizeAdopt, Response::Neighbors { successors, .. }) => {
                self.adopt_successor(from, &successors, now)
            }
            // Our Rectify was heard: nothing to do (the predecessor check, if one is
            // running, is not this request's).
            (Purpose::Rectify, _) => {}
            (Purpose::CheckPredecessor { .. }, _) => {
                self.checking_predecessor = false;
                self.continue_leave_check(now);
            }
            (Purpose::Lookup(id), Response::Step { successors, closer }) => {
                self.lookup_answered(id, now);
                if let Some(l) = self.lookups.get_mut(&id) {
                    l.lookup.on_step(from, &successors, &closer);
                    self.drive_lookup(id, now);
                }
            }
            (
                Purpose::Lookup(id),
                Response::Neighbors {
                    predecessor,
                    successors,
                },
            ) => {
                self.lookup_answered(id, now);
                if let Some(l) = self.lookups.get_mut(&id) {
                    l.lookup.on_confirm(from, predecessor, &successors);
                    self.drive_lookup(id, now);
                }
            }
            (Purpose::Leaving, _) => self.leave_acknowledged(now),
            (Purpose::LeaveCheck, Response::Pong) => self.continue_leave_check(now),
            (Purpose::Hint, _) => {}
            (purpose, _) => {
                // An answer of the wrong kind is as good as none.
                self.on_request_failed(from, purpose, now);
            }
        }
    }

    pub(super) fn on_request_failed(&mut self, to: Peer, purpose: Purpose, now: Time) {
        match purpose {
            Purpose::StabilizeFirst => {
                self.fingers.remove(to.id);
                // Ask the later entries, but keep the silent ones in the list until a
                // later one answers: the silence may be a lost message, and dropping a
                // live successor on a false suspicion could leave a list with no live
                // entry. The answer replaces everything before the one that answered.
                let d = self.me.id.distance_to(to.id);
                let later: Vec<Peer> = self
                    .successors
                    .as_slice()
                    .iter()
                    .filter(|p| self.me.id.distance_to(p.id) > d)
                    .copied()
                    .collect();
                self.probe_rounds += 1;
                let round = self.probe_rounds;
                for p in &later {
                    self.send_request(
                        *p,
                        Request::GetNeighbors,
                        Purpose::StabilizeProbe { round },
                        now,
                    );
                }
                self.probe = Some(Probe {
                    round,
                    after: d,
                    entries: later
                        .into_iter()
                        .map(|p| (p, ProbeState::Waiting))
                        .collect(),
                });
                self.advance_probe(None, now);
            }
            Purpose::StabilizeProbe { round } => {
                if self.probe_entry(round, to.id, ProbeState::Failed) {
                    self.fingers.remove(to.id);
                    self.advance_probe(None, now);
                }
            }
            Purpose::StabilizeCandidate { fallback } => {
                self.fingers.remove(to.id);
                if self.predecessor.map(|p| p.id) == Some(to.id) {
                    self.set_predecessor(None);
                }
                match fallback {
                    // Fall back to the node that answered before, but ask it again: its
                    // answer is as old as this timeout, and in the meantime it and its
                    // list may have died. Only a fresh answer is adopted.
                    Some(s) => {
                        self.send_request(s, Request::GetNeighbors, Purpose::StabilizeAdopt, now)
                    }
                    // Nobody answered this round. Try the next known node, if any, at the
                    // next tick.
                    None => {
                        self.stabilizing = false;
                        if !self.successors.contains(to.id) {
                            self.silent_round();
                        }
                    }
                }
            }
            Purpose::StabilizeAdopt => self.stabilizing = false,
            Purpose::Rectify => {}
            Purpose::CheckPredecessor { candidate } => {
                self.checking_predecessor = false;
                // The predecessor may be gone already (its Departed answer to this very
                // ping cleared it): the candidate that rectified us is still the one.
                let ours = self.predecessor.map(|p| p.id);
                if ours == Some(to.id) || (ours.is_none() && candidate.is_some()) {
                    self.set_predecessor(candidate);
                }
                self.continue_leave_check(now);
            }
            Purpose::Lookup(id) => {
                if let Some(l) = self.lookups.get_mut(&id) {
                    l.lookup.on_failure(to.id);
                    self.drive_lookup(id, now);
                }
            }
            Purpose::Leaving => self.leave_acknowledged(now),
            Purpose::LeaveCheck => {
                // An entry that answered that it is leaving too is not dead: its list is
                // in ours now (and asked in turn).
                let departing = self.is_departed(to.id);
                if let Some(c) = self.leave_check.as_mut().filter(|_| !departing) {
                    c.silent.push(to);
                }
                self.continue_leave_check(now);
            }
            Purpose::Hint => {}
        }
    }
}
