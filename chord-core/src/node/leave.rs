//! Leaving gracefully (the paper's voluntary departure, with a check first): the leaver
//! pings its list, then tells its neighbours; and what a node does with a neighbour's
//! notice, and with the nodes it knows have left.

use super::*;

/// Before it leaves, a node asks every entry of its successor list at once, so that its
/// notice hands over only entries that answered and names the others as dead: its
/// predecessor drops those from its own list. Without the check, the survivor of a ring
/// that shrank by crashes and then a leave took the crashed nodes the leaver still listed
/// and had no live successor until its own probes timed out (the unguarded hunting sweep's
/// most common violation). The node stays a member meanwhile; the check costs one round
/// trip, or one timeout and a resend when an entry is dead. Each entry gets
/// [`LEAVE_CHECK_PINGS`] pings at once, and is named dead only if every one of them (each
/// with its resend) went unanswered and it answered no other request of ours sent since:
/// a live entry named dead is dropped by the receiver, so a ping lost twice must not be
/// enough (with 9% loss it made lists lose their last live entry in 3 of 2,000 hunting
/// seeds), nor, now and then, three.
pub(super) struct LeaveCheck {
    /// Entries asked so far (each at most once, with [`LEAVE_CHECK_PINGS`] pings), and
    /// when.
    pub(super) asked: Vec<(Id, Time)>,
    /// Asked entries that answered, as members, a request of ours sent since they were
    /// asked (any request: see [`Node::send_leave_notices`]).
    pub(super) answered: Vec<Id>,
    /// One item per unanswered ping (not counting entries that answered they are leaving:
    /// their list is in ours, and the receiver must not drop them without it). An entry
    /// is dead when every one of its pings is here (and it is not in `answered`): one
    /// answer keeps it out.
    pub(super) silent: Vec<Peer>,
    /// The check ends by then whatever is still unanswered (unanswered is not dead): a
    /// list that keeps changing, or slow peers, cannot hold a leave up.
    pub(super) check_until: Time,
    /// With no live predecessor to tell, we wait until this for one to rectify us: the
    /// nodes behind us that list us would otherwise learn only by asking us.
    pub(super) wait_until: Option<Time>,
    /// We waited once already: entries that joined our list meanwhile are asked after
    /// the wait, and the notices go out without a second wait.
    pub(super) waited: bool,
}

impl LeaveCheck {
    /// When [`Node::continue_leave_check`] must run next.
    pub(super) fn next_deadline(&self) -> Time {
        self.wait_until.unwrap_or(self.check_until)
    }

    /// Has `peer` been asked (pinged) in this check?
    pub(super) fn was_asked(&self, peer: Id) -> bool {
        self.asked.iter().any(|(a, _)| *a == peer)
    }

    /// `peer` answered, as a member, a request of ours first sent at `sent`: proof of
    /// life after it was asked if `sent` is not before that (an answer to an older
    /// request proves only that it was alive before).
    pub(super) fn note_answer(&mut self, peer: Id, sent: Time) {
        let after = self.asked.iter().any(|(a, at)| *a == peer && sent >= *at);
        if after && !self.answered.contains(&peer) {
            self.answered.push(peer);
        }
    }
}

/// Pings per entry in a [`LeaveCheck`].
pub(super) const LEAVE_CHECK_PINGS: usize = 3;

/// Most leaving peers remembered at once ([`Response::NeighborsLeaving`]).
pub(super) const MAX_LEAVING: usize = 8;

/// Most departed nodes remembered at once.
pub(super) const MAX_DEPARTED: usize = 64;

impl Node {
    /// Leave gracefully: ask every entry of the successor list at once (one round trip, or
    /// a timeout and a resend if one is dead), then tell the predecessor our list, which
    /// entries did not answer, and the successor our predecessor, then stop answering.
    /// Emits [`Event::Left`] once both answered or timed out. The layer above should hand
    /// its data over before calling this. The node stays a member (and owns its keys)
    /// during the check, and, if its predecessor is dead, until the next one rectifies it
    /// (at most three stabilization intervals, then one more check of the entries its
    /// list took meanwhile): a few seconds at worst.
    pub fn leave(&mut self, now: Time) {
        match self.phase {
            Phase::Member if self.leave_check.is_none() => {}
            Phase::Member => return,
            Phase::Idle | Phase::Joining(_) => {
                self.finish_leave();
                return;
            }
            Phase::Leaving | Phase::Lingering(_) | Phase::Left => return,
        }
        self.leave_check = Some(LeaveCheck {
            asked: Vec::new(),
            answered: Vec::new(),
            silent: Vec::new(),
            check_until: now + self.leave_check_time(),
            wait_until: None,
            waited: false,
        });
        // The predecessor is checked too: a dead one would get our notice in vain.
        if let Some(p) = self.predecessor {
            self.check_predecessor(p, None, now);
        }
        self.continue_leave_check(now);
    }

    /// How long a leave check asks: every ping with its resends, to the slowest peer we
    /// know, and half a timeout more (the last resends' failures arrive at the end of
    /// their timeouts). Resends wait longer only while no peer is measured; counting it
    /// always is an upper bound.
    fn leave_check_time(&self) -> Duration {
        let slowest = self
            .predecessor
            .iter()
            .chain(self.successors.as_slice())
            .map(|p| self.timeout_for(p.id))
            .max()
            .unwrap_or(self.cfg.request_timeout);
        let (mut all_tries, mut wait) = (slowest / 2, slowest);
        for _ in 0..=self.cfg.request_retries {
            all_tries += wait;
            wait = self.longer_wait(wait);
        }
        all_tries
    }

    /// Ask the entries of our list not asked yet (the list may have changed meanwhile:
    /// a leaving entry hands over its own); once every answer is in, and we have a
    /// predecessor (or waited a few stabilization intervals for one), send the notices.
    pub(super) fn continue_leave_check(&mut self, now: Time) {
        let Some(check) = self.leave_check.as_mut() else {
            return;
        };
        if let Some(until) = check.wait_until {
            // The check is over; only a predecessor, or the end of the wait, is missing.
            if self.predecessor.is_none() && now < until {
                return;
            }
            // Stabilization went on while we waited: entries it put in our list since the
            // check were never asked, and the notice hands them over as checked (the
            // hunting sweep, seed 23113: a leaver adopted a node in front of its
            // successor during the wait, the node crashed, and the predecessor that
            // rectified us took it from our notice as its only entry). Ask them first.
            let unasked = self
                .successors
                .as_slice()
                .iter()
                .any(|p| !check.was_asked(p.id));
            if !unasked {
                self.send_leave_notices(now);
                return;
            }
            let time = self.leave_check_time();
            let check = self.leave_check.as_mut().expect("checked above");
            check.wait_until = None;
            check.check_until = now + time;
        }
        let Some(check) = self.leave_check.as_mut() else {
            return;
        };
        let checking = now < check.check_until;
        let me = self.me.id;
        let new: Vec<Peer> = self
            .successors
            .as_slice()
            .iter()
            .filter(|p| checking && p.id != me && !check.was_asked(p.id))
            .copied()
            .collect();
        for p in new {
            // Bounded: a list holds at most MAX_PEERS_PER_MESSAGE entries, asked once each,
            // and only twice that many in all however the list changes meanwhile.
            let check = self.leave_check.as_mut().expect("checked above");
            if check.asked.len() >= 2 * MAX_PEERS_PER_MESSAGE {
                break;
            }
            check.asked.push((p.id, now));
            for _ in 0..LEAVE_CHECK_PINGS {
                self.send_request(p, Request::Ping, Purpose::LeaveCheck, now);
            }
        }
        if checking
            && (self.checking_predecessor()
                || self
                    .pending
                    .values()
                    .any(|p| matches!(p.purpose, Purpose::LeaveCheck)))
        {
            return;
        }
        let waited = self.leave_check.as_ref().is_some_and(|c| c.waited);
        if self.predecessor.is_none() && !self.successors.is_empty() && !waited {
            let wait = self.cfg.stabilize_interval * 3;
            if let Some(check) = self.leave_check.as_mut() {
                check.wait_until = Some(now + wait);
                check.waited = true;
            }
            return;
        }
        self.send_leave_notices(now);
    }

    pub(super) fn send_leave_notices(&mut self, now: Time) {
        let mut dead: Vec<Peer> = Vec::new();
        if let Some(c) = self.leave_check.take() {
            for p in &c.silent {
                let unanswered = c.silent.iter().filter(|q| q.id == p.id).count();
                // An entry that answered any other request of ours sent since we pinged
                // it is alive, whatever became of the pings: the receiver drops what we
                // name dead (the hunting sweep, seed 21106: three pings and their resends
                // all lost at 8.8% loss while the entry answered our stabilize questions;
                // the receiver was left with one entry, crashed).
                if unanswered >= LEAVE_CHECK_PINGS
                    && !c.answered.contains(&p.id)
                    && !dead.iter().any(|d| d.id == p.id)
                {
                    dead.push(*p);
                }
            }
        }
        // A receiver looks at no more than that (and the notice must fit a frame).
        dead.truncate(MAX_PEERS_PER_MESSAGE);
        for d in &dead {
            // What we answer while we linger is the checked list too.
            self.successors.remove(d.id);
        }
        self.phase = Phase::Leaving;
        let notice = Request::LeavingChecked {
            predecessor: self.predecessor,
            successors: self.successors.as_slice().to_vec(),
            dead,
        };
        let mut told: Vec<Peer> = Vec::new();
        for p in self
            .predecessor
            .into_iter()
            .chain(self.successors.first().copied())
        {
            if p.id != self.me.id && !told.iter().any(|t| t.id == p.id) {
                told.push(p);
            }
        }
        for p in &told {
            self.send_request(*p, notice.clone(), Purpose::Leaving, now);
        }
        if told.is_empty() {
            self.finish_leave();
        }
    }

    /// `from` is leaving (its notice, or its `Departed` answer). `dead`: entries of its list
    /// it found dead just before (see [`LeaveCheck`]).
    pub(super) fn on_leaving(
        &mut self,
        from: Peer,
        pred: Option<Peer>,
        succs: &[Peer],
        dead: &[Peer],
        now: Time,
    ) {
        self.note_departed(from.id, now);
        self.fingers.remove(from.id);
        // Only our first successor's word drops entries: it is the one we already trust
        // with our list (stabilize rebuilds it from its answers), and the one an honest
        // leaver tells; a node further down our list must not cut the entries after it.
        let from_first = self.successors.first().map(|p| p.id) == Some(from.id);
        if self.successors.contains(from.id) {
            self.successors.remove(from.id);
            // Entries it asked a moment ago and found silent: drop ours too (only in the
            // stretch of the ring its list covers, between it and us). They are
            // remembered: if the leaver was wrong (its pings lost), merge probing finds
            // them again.
            let dead = if from_first { dead } else { &[] };
            for d in dead.iter().take(MAX_PEERS_PER_MESSAGE) {
                if d.id.in_open(from.id, self.me.id) && self.successors.contains(d.id) {
                    self.successors.remove(d.id);
                    self.fingers.remove(d.id);
                    self.remember(*d);
                }
            }
            // Only the part of the leaver's list between it and us: past us it wraps round
            // the ring (small ring) and would put nodes behind us, maybe long dead, in
            // front. Nodes that left are not taken back from it.
            let handed: Vec<Peer> = succs
                .iter()
                .take(MAX_PEERS_PER_MESSAGE)
                .filter(|p| p.id.in_open(from.id, self.me.id) && !self.is_departed(p.id))
                .copied()
                .collect();
            // The handed entries are unconfirmed: they must not push out the live entries
            // we had (they may die before we ask them). The list may exceed its capacity
            // until the next stabilize rebuilds it from a fresh answer.
            self.successors.merge_keeping(&handed);
            // Entries passed over for the leaver on two lost tries and being asked once
            // more come back in front meanwhile, as unconfirmed as the handed ones: the
            // recheck's silence takes them out again. Without them the list could hold
            // only what the leaver handed over and crashed entries of ours, until the
            // recheck answered (the hunting sweep at 1 s one way, seed 3355: a checking
            // leaver adopted in place of a live successor that lost both tries).
            let rechecked: Vec<Peer> = self
                .pending
                .values()
                .filter(|p| {
                    matches!(p.purpose, Purpose::StabilizeRecheck { before, .. } if before == from.id)
                        && p.to.id.in_open(self.me.id, from.id)
                        && !self.is_departed(p.to.id)
                })
                .map(|p| p.to)
                .collect();
            self.successors.merge_keeping(&rechecked);
            self.successors_changed();
            // Confirm the new first successor at once (Zave: no unconfirmed pointers last).
            self.timers.set(Timer::Stabilize, now);
        }
        let pred =
            pred.filter(|p| p.id != from.id && p.id != self.me.id && !self.is_departed(p.id));
        // The leaver was our predecessor; or we have none (its Departed answer to another
        // request of ours may have cleared it before its notice arrived): take the
        // leaver's predecessor, checked by a ping.
        let ours = self.predecessor.map(|p| p.id);
        if ours == Some(from.id) || (ours.is_none() && pred.is_some()) {
            self.set_predecessor(pred);
            if let Some(p) = pred {
                self.check_predecessor(p, None, now);
            }
        }
    }

    pub(super) fn leave_acknowledged(&mut self, now: Time) {
        if self.phase == Phase::Leaving
            && !self
                .pending
                .values()
                .any(|p| matches!(p.purpose, Purpose::Leaving))
        {
            let linger = self.cfg.stabilize_interval * self.cfg.leave_linger_rounds;
            if linger.is_zero() {
                self.finish_leave();
            } else {
                // Nothing of ours is in flight any more; answer Departed until then.
                self.pending.clear();
                self.phase = Phase::Lingering(now + linger);
            }
        }
    }

    pub(super) fn finish_leave(&mut self) {
        self.phase = Phase::Left;
        self.pending.clear();
        let mut ids: Vec<LookupId> = self.lookups.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            if let Some(l) = self.lookups.remove(&id) {
                if l.kind == LookupKind::User {
                    self.events.push_back(Event::LookupDone {
                        id,
                        result: Err(LookupError::NotMember),
                    });
                }
            }
        }
        self.events.push_back(Event::Left);
    }

    pub(super) fn note_departed(&mut self, id: Id, now: Time) {
        self.departed.retain(|(d, _)| *d != id);
        if self.departed.len() >= MAX_DEPARTED {
            self.departed.pop_front();
        }
        self.departed.push_back((id, now));
        self.remembered.retain(|q| q.seed || q.peer.id != id);
    }

    pub(super) fn note_leaving(&mut self, id: Id, now: Time) {
        self.leaving_peers.retain(|(d, _)| *d != id);
        if self.leaving_peers.len() >= MAX_LEAVING {
            self.leaving_peers.pop_front();
        }
        self.leaving_peers.push_back((id, now));
    }

    pub(super) fn is_leaving_peer(&self, id: Id) -> bool {
        self.leaving_peers.iter().any(|(d, _)| *d == id)
    }

    pub(super) fn is_departed(&self, id: Id) -> bool {
        self.departed.iter().any(|(d, _)| *d == id)
    }

    /// `peers` without the nodes that told us they left.
    pub(super) fn without_departed(&self, peers: &[Peer]) -> Vec<Peer> {
        peers
            .iter()
            .take(MAX_PEERS_PER_MESSAGE)
            .filter(|p| !self.is_departed(p.id))
            .copied()
            .collect()
    }

    /// A ping of the leave check: an answer goes on with the check; silence counts
    /// against the entry, unless it answered that it is leaving too: then it is not dead,
    /// its list is in ours now (and asked in turn).
    pub(super) fn on_leave_check_reply(&mut self, to: Peer, reply: Reply, now: Time) {
        if !matches!(reply, Ok(Response::Pong)) {
            let departing = self.is_departed(to.id);
            if let Some(c) = self.leave_check.as_mut().filter(|_| !departing) {
                c.silent.push(to);
            }
        }
        self.continue_leave_check(now);
    }

    /// The end of lingering after the notices, and the leave check's deadline.
    pub(super) fn expire_leave_timers(&mut self, now: Time) {
        if let Phase::Lingering(until) = self.phase {
            if now >= until {
                self.finish_leave();
            }
        }
        if self
            .leave_check
            .as_ref()
            .is_some_and(|c| c.next_deadline() <= now)
        {
            self.continue_leave_check(now);
        }
    }

    /// Nodes that told us they left are kept out of our list for `departed_horizon`.
    pub(super) fn forget_old_departures(&mut self, now: Time) {
        let horizon = self.cfg.departed_horizon;
        while self
            .departed
            .front()
            .is_some_and(|(_, at)| *at + horizon <= now)
        {
            self.departed.pop_front();
        }
    }
}
