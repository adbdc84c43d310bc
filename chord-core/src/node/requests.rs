//! Requests to other nodes: every request is sent with a deadline from the peer's
//! measured round-trip time and resent once on silence; its answer, or its final
//! silence, goes to the task that asked ([`Purpose`]).

use super::*;

/// What came of a request: the peer's answer, or silence.
pub(super) type Reply = Result<Response, Silence>;

/// No usable answer: every try timed out, or the peer answered that it is not a member or
/// has left, or answered with the wrong kind of response (as good as none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Silence;

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
            Box::new(Pending {
                to,
                deadline: now + wait,
                purpose,
                body,
                retries_left: self.cfg.request_retries,
                first_sent: now,
                wait,
                hedge_at,
            }),
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

    /// Hand what came of a request to the task that sent it: the answer, or [`Silence`].
    /// Every purpose has one handler that sees both, so a task's success and failure are
    /// read in one place.
    pub(super) fn on_reply(&mut self, peer: Peer, purpose: Purpose, reply: Reply, now: Time) {
        match purpose {
            Purpose::StabilizeFirst => self.on_first_successor_reply(peer, reply, now),
            Purpose::StabilizeCandidate => self.on_candidate_reply(peer, reply, now),
            Purpose::StabilizeMerge => self.on_merge_candidate_reply(peer, reply, now),
            Purpose::StabilizeProbe { round } => self.on_probe_reply(peer, round, reply, now),
            Purpose::StabilizeReask { named } => self.on_reask_reply(peer, &named, reply, now),
            Purpose::StabilizeInFront => self.on_in_front_reply(peer, reply, now),
            Purpose::StabilizeRecheck { before, sent } => {
                self.on_recheck_reply(peer, before, sent, reply)
            }
            // Whether our Rectify or hint was heard changes nothing (the predecessor check,
            // if one is running, is not this request's).
            Purpose::Rectify | Purpose::Hint => {}
            Purpose::CheckPredecessor { candidate } => {
                self.on_predecessor_check_reply(peer, candidate, reply, now)
            }
            Purpose::Lookup(id) => self.on_lookup_reply(id, peer, reply, now),
            // Acknowledged or not, the notice was sent (the leave goes on either way).
            Purpose::Leaving => self.leave_acknowledged(now),
            Purpose::LeaveCheck => self.on_leave_check_reply(peer, reply, now),
        }
    }

    /// Resend the requests whose deadline passed (once), and hand the silence of the
    /// others to their tasks.
    pub(super) fn expire_requests(&mut self, now: Time) {
        // Sorted, so that the order of reactions does not depend on hash order (the
        // simulator must be deterministic).
        let mut expired: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        expired.sort_unstable();
        for id in expired {
            let Some(mut p) = self.pending.remove(&id) else {
                continue;
            };
            if p.retries_left > 0 {
                // Silence may be a lost message: ask once more (same id, so a late answer
                // to the first copy counts) before calling the peer failed.
                p.retries_left -= 1;
                // A measured peer's timeout already covers its round trip, and an
                // unmeasured one got the typical timeout of the peers we know. Only while
                // we know none may the network simply be slower than the floor: give the
                // peer twice as long each time.
                if !self.rtt.any_measured() {
                    p.wait = self.longer_wait(p.wait);
                }
                p.deadline = now + p.wait;
                self.transmits.push_back(Transmit {
                    to: p.to,
                    message: Message::Request {
                        id,
                        body: p.body.clone(),
                    },
                });
                self.pending.insert(id, p);
            } else {
                self.on_reply(p.to, p.purpose, Err(Silence), now);
            }
        }
    }

    // What is in flight is read from the requests and lookups themselves (`pending`,
    // `lookups`, the probe): no flag to keep in step with them.

    /// Is a stabilization round running (a request of it waiting for its answer, or the
    /// probe of dead entries)? Probe requests of an earlier round do not count.
    pub(super) fn stabilizing(&self) -> bool {
        self.probe.is_some()
            || self.pending.values().any(|p| {
                matches!(
                    p.purpose,
                    Purpose::StabilizeFirst
                        | Purpose::StabilizeReask { .. }
                        | Purpose::StabilizeCandidate
                        | Purpose::StabilizeMerge
                        | Purpose::StabilizeInFront
                )
            })
    }

    /// Is our predecessor being checked (one check at a time)?
    pub(super) fn checking_predecessor(&self) -> bool {
        self.pending
            .values()
            .any(|p| matches!(p.purpose, Purpose::CheckPredecessor { .. }))
    }

    /// Is `id` being asked once more after it was passed over ([`Purpose::StabilizeRecheck`])?
    pub(super) fn rechecking(&self, id: Id) -> bool {
        self.pending
            .values()
            .any(|p| p.to.id == id && matches!(p.purpose, Purpose::StabilizeRecheck { .. }))
    }

    /// Is a fix_fingers lookup running (one at a time)?
    pub(super) fn fixing_fingers(&self) -> bool {
        self.lookups
            .values()
            .any(|l| matches!(l.kind, LookupKind::Finger(_)))
    }

    /// Is a merge probe running (one at a time)?
    pub(super) fn merging(&self) -> bool {
        self.lookups
            .values()
            .any(|l| matches!(l.kind, LookupKind::Merge(_)))
    }
}
