//! Lookups (the paper's `find_successor`, iterative): a [`Lookup`] decides whom to ask and
//! when it is done; this drives it with requests, timeouts, hedging and retries, and hands
//! the result to whoever started it (the user, fix_fingers, a join, a merge probe).

use super::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum LookupKind {
    User,
    Join,
    Finger(usize),
    /// Our own id looked up through a remembered peer.
    Merge(Peer),
}

pub(super) struct RunningLookup {
    pub(super) lookup: Lookup,
    pub(super) deadline: Time,
    /// When it started: answered steps extend `deadline`, up to three lookup timeouts
    /// from here.
    pub(super) started: Time,
    pub(super) kind: LookupKind,
    /// An attempt ended [`LookupError::Unsure`]: start afresh at this time (once).
    pub(super) again_at: Option<Time>,
    /// Has it been started afresh already?
    pub(super) retried: bool,
}

impl Node {
    /// Find the live node responsible for `key`. The result arrives as
    /// [`Event::LookupDone`] with the returned id.
    pub fn lookup(&mut self, key: Id, now: Time) -> LookupId {
        self.start_lookup(key, LookupKind::User, now)
    }

    pub(super) fn alloc_lookup_id(&mut self) -> LookupId {
        let id = LookupId(self.next_lookup);
        self.next_lookup += 1;
        id
    }

    pub(super) fn start_lookup(&mut self, key: Id, kind: LookupKind, now: Time) -> LookupId {
        let id = self.alloc_lookup_id();
        if self.phase != Phase::Member {
            self.finish_kind(id, kind, Err(LookupError::NotMember), now);
            return id;
        }
        let lookup = self.local_lookup(key);
        self.run_lookup(id, lookup, kind, now);
        id
    }

    /// A lookup for `key` seeded with our own successor list and closest fingers.
    pub(super) fn local_lookup(&self, key: Id) -> Lookup {
        let closer = self.closest_preceding_nodes(key, self.cfg.closer_per_step);
        // Alone, we are our own successor: (me, me] is the whole ring.
        let alone = [self.me];
        let succ = if self.successors.is_empty() {
            &alone[..]
        } else {
            self.successors.as_slice()
        };
        Lookup::from_local(key, self.me, succ, &closer, self.cfg.lookup_max_queries)
            .with_parallelism(self.cfg.lookup_parallelism)
    }

    /// A lookup for `key` that starts at `seed` (a join's bootstrap, a merge probe's peer).
    pub(super) fn seeded_lookup(&self, key: Id, seed: Peer) -> Lookup {
        Lookup::new(key, &[seed], self.cfg.lookup_max_queries)
            .with_parallelism(self.cfg.lookup_parallelism)
    }

    /// Register a lookup under `id` with its deadline and take its first steps. The
    /// caller sets any state the lookup's end checks (the join phase) beforehand:
    /// a lookup can finish within this call.
    pub(super) fn run_lookup(&mut self, id: LookupId, lookup: Lookup, kind: LookupKind, now: Time) {
        self.lookups.insert(
            id,
            Box::new(RunningLookup {
                lookup,
                deadline: now + self.cfg.lookup_timeout,
                started: now,
                kind,
                again_at: None,
                retried: false,
            }),
        );
        self.drive_lookup(id, now);
    }

    /// A step of lookup `id` was answered: it is making progress, so it gets at least
    /// half a lookup timeout more, up to three lookup timeouts from its start (at one-way
    /// latencies near a second a path of a few hops takes more than one).
    pub(super) fn lookup_answered(&mut self, id: LookupId, now: Time) {
        let t = self.cfg.lookup_timeout;
        if let Some(l) = self.lookups.get_mut(&id) {
            l.deadline = l.deadline.max((now + t / 2).min(l.started + t * 3));
        }
    }

    pub(super) fn drive_lookup(&mut self, id: LookupId, now: Time) {
        loop {
            let Some(l) = self.lookups.get_mut(&id) else {
                return;
            };
            if l.again_at.is_some() {
                // Parked until it starts afresh: late answers of its first attempt change
                // nothing (its outcome, Unsure, is already known).
                return;
            }
            match l.lookup.poll() {
                LookupAction::Wait => return,
                // Asked to contact ourselves while not a member (joining, e.g. after a
                // restart at the same address while others still list our old self):
                // that hop is not alive as far as this lookup is concerned.
                LookupAction::Query(p) | LookupAction::Confirm(p)
                    if p.id == self.me.id && self.phase != Phase::Member =>
                {
                    l.lookup.on_gone(p.id);
                }
                LookupAction::Query(p) if p.id == self.me.id => {
                    let key = l.lookup.key();
                    let closer = self.closest_preceding_nodes(key, self.cfg.closer_per_step);
                    let succ = self.successors.as_slice().to_vec();
                    if let Some(l) = self.lookups.get_mut(&id) {
                        l.lookup.on_step(self.me, &succ, &closer);
                    }
                }
                LookupAction::Confirm(p) if p.id == self.me.id => {
                    let succ = self.successors.as_slice().to_vec();
                    let pred = self.predecessor;
                    l.lookup.on_confirm(self.me, pred, &succ);
                }
                LookupAction::Query(p) => {
                    // Up to `lookup_parallelism` of these go out before the lookup waits.
                    let key = l.lookup.key();
                    self.send_request(p, Request::FindStep { key }, Purpose::Lookup(id), now);
                }
                LookupAction::Confirm(p) => {
                    self.send_request(p, Request::GetNeighbors, Purpose::Lookup(id), now);
                    return;
                }
                LookupAction::Done(out) => {
                    self.finish_lookup(id, Ok(out), now);
                    return;
                }
                LookupAction::Failed(LookupError::Unsure) if !l.retried => {
                    // The owner does not count the key as its own yet and its predecessor
                    // is silent: a crash the owner has not noticed, or lost messages. Tell
                    // the owner, which checks its predecessor itself (and drops it if it
                    // is dead), and ask again once that check is over, rather than fail or
                    // name a doubtful owner.
                    let deadline = l.deadline;
                    let doubtful = l.lookup.doubtful_owner();
                    let recheck = self.recheck_delay(doubtful);
                    if now + recheck >= deadline {
                        self.finish_lookup(id, Err(LookupError::Unsure), now);
                        return;
                    }
                    if let Some(l) = self.lookups.get_mut(&id) {
                        l.retried = true;
                        l.again_at = Some(now + recheck);
                    }
                    if let Some(owner) = doubtful {
                        if owner.id != self.me.id {
                            self.send_request(owner, Request::CheckPredecessor, Purpose::Hint, now);
                        } else if let Some(p) = self.predecessor {
                            self.check_predecessor(p, None, now);
                        }
                    }
                    return;
                }
                LookupAction::Failed(e) => {
                    self.finish_lookup(id, Err(e), now);
                    return;
                }
            }
        }
    }

    /// How long a lookup step to `peer` may take before another candidate is asked
    /// meanwhile: twice its smoothed round trip (at least 10 ms), or a quarter of the
    /// timeout for a peer never measured; never more than the timeout.
    pub(super) fn hedge_delay(&self, peer: Id) -> Duration {
        let timeout = self.timeout_for(peer);
        match self.rtt.srtt(peer) {
            Some(srtt) => (srtt * 2).max(Duration::from_millis(10)).min(timeout),
            None => timeout / 4,
        }
    }

    /// How long an owner needs to check its predecessor: every try of a ping times out,
    /// plus one timeout for the messages to and from it. Its timeouts are not ours to
    /// know; ours towards it stand in for them.
    pub(super) fn recheck_delay(&self, owner: Option<Peer>) -> Duration {
        let t = owner.map_or(self.cfg.request_timeout, |o| self.timeout_for(o.id));
        t * (self.cfg.request_retries + 2)
    }

    /// Start a parked lookup afresh, keeping its id and deadline: from our own tables, or
    /// through the peer it started from (a join's bootstrap, a merge probe's peer).
    pub(super) fn restart_lookup(&mut self, id: LookupId, now: Time) {
        // Requests of the first attempt still in flight must not speak for the second.
        self.pending
            .retain(|_, p| !matches!(p.purpose, Purpose::Lookup(x) if x == id));
        let Some(l) = self.lookups.get_mut(&id) else {
            return;
        };
        l.again_at = None;
        let key = l.lookup.key();
        let kind = l.kind;
        let fresh = match kind {
            LookupKind::Join => match self.bootstrap {
                Some(b) => self.seeded_lookup(key, b),
                None => return self.finish_lookup(id, Err(LookupError::NoRoute), now),
            },
            LookupKind::Merge(via) => self.seeded_lookup(key, via),
            LookupKind::User | LookupKind::Finger(_) if self.phase == Phase::Member => {
                self.local_lookup(key)
            }
            LookupKind::User | LookupKind::Finger(_) => {
                return self.finish_lookup(id, Err(LookupError::NotMember), now)
            }
        };
        if let Some(l) = self.lookups.get_mut(&id) {
            let first = std::mem::replace(&mut l.lookup, fresh);
            self.forget_failed(&first);
        }
        self.drive_lookup(id, now);
    }

    /// Dead nodes a lookup met are no use as fingers: drop them (and remember them, in
    /// case they were only cut off).
    pub(super) fn forget_failed(&mut self, lookup: &Lookup) {
        let failed: Vec<Id> = lookup.failed_peers().collect();
        for dead in failed {
            if let Some(p) = self
                .fingers
                .entries()
                .iter()
                .find(|p| p.id == dead)
                .copied()
            {
                self.remember(p);
            }
            self.fingers.remove(dead);
        }
    }

    pub(super) fn finish_lookup(
        &mut self,
        id: LookupId,
        result: Result<LookupOutcome, LookupError>,
        now: Time,
    ) {
        let Some(l) = self.lookups.remove(&id) else {
            return;
        };
        self.forget_failed(&l.lookup);
        // Requests still in flight for it are dropped when they answer or time out.
        self.pending
            .retain(|_, p| !matches!(p.purpose, Purpose::Lookup(x) if x == id));
        self.finish_kind(id, l.kind, result, now);
    }

    pub(super) fn finish_kind(
        &mut self,
        id: LookupId,
        kind: LookupKind,
        result: Result<LookupOutcome, LookupError>,
        now: Time,
    ) {
        match kind {
            LookupKind::User => self.events.push_back(Event::LookupDone { id, result }),
            LookupKind::Finger(i) => {
                if let Ok(out) = result {
                    self.on_finger_found(i, out.owner);
                }
            }
            LookupKind::Merge(via) => match result {
                Ok(out) => self.on_merge_found(via, out.owner, now),
                Err(_) => self.on_probe_failed(via),
            },
            LookupKind::Join => self.on_join_found(id, result, now),
        }
    }

    /// A lookup step's answer (a step, or the owner's neighbours confirming it), or its
    /// silence.
    pub(super) fn on_lookup_reply(&mut self, id: LookupId, from: Peer, reply: Reply, now: Time) {
        match reply {
            Ok(Response::Step { successors, closer }) => {
                self.lookup_answered(id, now);
                if let Some(l) = self.lookups.get_mut(&id) {
                    l.lookup.on_step(from, &successors, &closer);
                    self.drive_lookup(id, now);
                }
            }
            Ok(Response::Neighbors {
                predecessor,
                successors,
            }) => {
                self.lookup_answered(id, now);
                if let Some(l) = self.lookups.get_mut(&id) {
                    l.lookup.on_confirm(from, predecessor, &successors);
                    self.drive_lookup(id, now);
                }
            }
            _ => {
                if let Some(l) = self.lookups.get_mut(&id) {
                    l.lookup.on_failure(from.id);
                    self.drive_lookup(id, now);
                }
            }
        }
    }

    /// Lookup steps that are slow (hedge), lookups past their deadline, and lookups
    /// waiting to be asked again.
    pub(super) fn expire_lookup_timers(&mut self, now: Time) {
        let mut slow: Vec<(u64, LookupId, Id)> = self
            .pending
            .iter()
            .filter_map(|(id, p)| match (p.hedge_at, &p.purpose) {
                (Some(t), Purpose::Lookup(l)) if t <= now => Some((*id, *l, p.to.id)),
                _ => None,
            })
            .collect();
        slow.sort_unstable();
        for (req, lookup, peer) in slow {
            if let Some(p) = self.pending.get_mut(&req) {
                p.hedge_at = None;
            }
            if let Some(l) = self.lookups.get_mut(&lookup) {
                l.lookup.on_slow(peer);
                self.drive_lookup(lookup, now);
            }
        }
        let mut late: Vec<LookupId> = self
            .lookups
            .iter()
            .filter(|(_, l)| l.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        late.sort_unstable();
        for id in late {
            self.finish_lookup(id, Err(LookupError::Timeout), now);
        }
        let mut again: Vec<LookupId> = self
            .lookups
            .iter()
            .filter(|(_, l)| l.again_at.is_some_and(|t| t <= now))
            .map(|(id, _)| *id)
            .collect();
        again.sort_unstable();
        for id in again {
            self.restart_lookup(id, now);
        }
    }
}
