//! Stabilize (the paper's `stabilize`, in Zave's corrected form): ask the first successor
//! for its predecessor and list, adopt a node in between only after it answered too, and
//! end with a rectify to the adopted successor. Dead entries are probed together
//! ([`Probe`]); a node whose whole list is silent falls back to the nodes it remembers,
//! then to a ring of one.

use super::*;

/// The entries after a silent one, asked all at once instead of one timeout after the
/// other (dead entries cost one timeout together, not one each), but decided in list
/// order: an entry is taken only once every entry before it has failed, so a slow but
/// live entry is never passed over (passing over one on a false suspicion can leave a
/// list with no live entry). An entry that answered before its turn came is asked again,
/// so that only a fresh answer is adopted, as in the sequential walk.
pub(super) struct Probe {
    pub(super) round: u64,
    /// How far the silent entry that started it is from us: the probe covers every entry
    /// of the list beyond it, including entries a leaver hands over while it runs.
    pub(super) after: Id,
    /// In list order.
    pub(super) entries: Vec<(Peer, ProbeState)>,
    /// The lists given by entries that answered while an entry before them was still
    /// being waited for.
    pub(super) early: Vec<(Id, Vec<Peer>)>,
    /// When it started.
    pub(super) started: Time,
    /// Entries asked once more because they were silent to the probe but answered
    /// another request of ours since it started.
    pub(super) asked_again: Vec<Id>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum ProbeState {
    Waiting,
    Failed,
    Answered,
}

/// Entries passed over in one adoption that are asked once more ([`Node::on_recheck_reply`]).
pub(super) const RECHECKS: usize = 2;

/// How far the adaptive successor list length must fall below the current one before
/// the list shrinks.
pub(super) const RESIZE_MARGIN: usize = 3;

impl Node {
    pub(super) fn stabilize(&mut self, now: Time) {
        self.put_back.clear();
        // A node a merge probe found in front of our successor during the last round is
        // asked first; if it is silent, the round starts over without it.
        let due = self
            .merge_candidate
            .take()
            .filter(|c| c.id.in_open(self.me.id, self.successor().id) && !self.is_departed(c.id));
        if let Some(c) = due {
            return self.send_request(c, Request::GetNeighbors, Purpose::StabilizeMerge, now);
        }
        match self.successors.first().copied() {
            Some(s) => {
                self.send_request(s, Request::GetNeighbors, Purpose::StabilizeFirst, now);
            }
            None => self.stabilize_from_known(now),
        }
    }

    /// Our successor (or a candidate for it) answered with its neighbours.
    pub(super) fn on_successor_neighbors(
        &mut self,
        from: Peer,
        predecessor: Option<Peer>,
        successors: &[Peer],
        now: Time,
    ) {
        // Its answer is fresh: adopt it now. A node it names between us and it is asked
        // next and adopted in turn if it answers (Zave's stabilize, one step after the
        // other in the same round); each step is strictly closer to us, so the walk
        // ends. The walk used to adopt nothing until its last step answered: a walk
        // through a chain of joiners with a lost try in it took seconds, during which
        // the list still held the entries that had crashed or left (the hunting sweep,
        // seeds 19377, 37062 and 39028 at <= 200 ms: lists of crashed entries while the
        // live nodes the walk had heard from were not in them).
        let in_front = predecessor.filter(|p| {
            p.id.in_open(self.me.id, from.id) && !self.is_departed(p.id) && !self.rechecking(p.id)
        });
        // Rectified too, although it names a node closer to it than us: if that node is
        // dead, only our rectify makes it check (and drop) it; without one, rings whose
        // successors kept naming a dead predecessor never settled.
        self.adopt_successor(from, successors, now);
        if let Some(p) = in_front {
            self.send_request(p, Request::GetNeighbors, Purpose::StabilizeInFront, now);
        }
    }

    pub(super) fn adopt_successor(&mut self, head: Peer, tail: &[Peer], now: Time) {
        if head.id == self.me.id {
            return;
        }
        self.silent_rounds = 0;
        let tail = self.without_departed(tail);
        let d = self.me.id.distance_to(head.id);
        let closer: Vec<Peer> = self
            .successors
            .as_slice()
            .iter()
            .filter(|p| self.me.id.distance_to(p.id) < d)
            .copied()
            .collect();
        let head_was_listed = self.successors.contains(head.id);
        // `head` has begun to leave: its list is unchecked and may die with it (a crash
        // after its check), so ours beyond it stays while it answers `NeighborsLeaving`.
        let ours: Vec<Peer> = if self.is_leaving_peer(head.id) {
            self.successors.as_slice().to_vec()
        } else {
            Vec::new()
        };
        let mut changed = self.successors.rebuild(head, &tail);
        if self.cfg.adaptive_successor_list {
            // Before the entries kept below go back in: a resize rebuilds the list from
            // its first entry and `tail`, which is `head`'s list. With a kept entry
            // first, `head` itself was dropped and the kept (maybe dead) entry got
            // `head`'s list: a list with no live entry (found by the hunting sweep).
            self.resize_successor_list(&tail);
        }
        // Only past the end of the list its answer gave: entries it left out in the middle
        // (dead, or gone) stay out.
        let end = self
            .successors
            .as_slice()
            .last()
            .map_or(Id::ZERO, |p| self.me.id.distance_to(p.id));
        // At most a list's worth: a peer answering `NeighborsLeaving` round after round,
        // each list ending nearer, must not grow ours past twice its size.
        let beyond: Vec<Peer> = ours
            .into_iter()
            .filter(|p| self.me.id.distance_to(p.id) > end && !self.is_departed(p.id))
            .take(self.successors.capacity())
            .collect();
        changed |= self.successors.merge_keeping(&beyond);
        if head_was_listed {
            // We asked the entries before `head` in order this round and they were
            // silent: dead, or across a partition. Remember them, to find their ring
            // again if it was the latter. Not those a recheck put back after the round
            // started: the round never asked them, and they just answered.
            let (back, mut silent): (Vec<Peer>, Vec<Peer>) = closer
                .into_iter()
                .partition(|p| self.put_back.contains(&p.id));
            changed |= self.successors.merge_keeping(&back);
            // Ask two of the silent ones once more, outside the round: two tries lost
            // together happen (3% of the time at 9% loss), and a live successor dropped
            // for a node beyond it closes a loop that wraps the ring twice, which
            // nothing but merge probing repairs (the hunting sweep, seed 2106). Two lost
            // tries explain one false suspicion, not many: at most two are asked, so a
            // silent entry cannot make us send to a whole list of others twice.
            // With `head` alone left in the list, they stay in front until their
            // recheck is silent too: `head` has no backup, and dropping a live entry
            // silent twice by loss left a list of one node that had crashed right after
            // it answered (the hunting sweep, seed 33794, while the live entry's recheck
            // was on its way). A longer list drops them at once, so a dead first entry
            // does not hold up lookups for another timeout.
            let thin = self.successors.len() < 2;
            // The ones rechecked (and, for a list of one, kept) are the ones heard from
            // last: an entry that answered this round, only its question asked again
            // lost, is likelier alive than the nearer ones silent for longer (the
            // hunting sweep at 1 s one way, seed 12555: the nearest two had crashed;
            // the third, alive, was dropped; seed 28399 the same with a longer list).
            silent.sort_by_key(|p| std::cmp::Reverse(self.rtt.last_heard(p.id)));
            for (i, p) in silent.into_iter().enumerate() {
                self.remember(p);
                if i < RECHECKS {
                    if thin {
                        changed |= self.successors.merge_keeping(&[p]);
                    }
                    if self.rechecking(p.id) {
                        // Its recheck from an earlier adoption is still out.
                        continue;
                    }
                    self.send_request(
                        p,
                        Request::GetNeighbors,
                        Purpose::StabilizeRecheck {
                            before: head.id,
                            sent: now,
                        },
                        now,
                    );
                }
            }
        } else {
            // `head` came from outside the list (a node we knew otherwise, or one that
            // joined in front of an entry): entries before it were not all asked, or
            // were silent only this once. Dropping a live one on a false suspicion for a
            // node beyond it closes a loop that wraps the ring twice (Zave's "loopy"
            // ring) which nothing repairs. Keep them one more round: the next round asks
            // them first and drops them if they are silent again.
            let keep = self.without_departed(&closer);
            changed |= self.successors.merge_keeping(&keep);
        }
        if changed {
            self.successors_changed();
        }
        self.fingers.update(0, head);
        self.send_request(head, Request::Rectify, Purpose::Rectify, now);
    }

    pub(super) fn resize_successor_list(&mut self, tail: &[Peer]) {
        let Some(n) = self.successors.estimate_ring_size() else {
            return;
        };
        let want = (2.0 * n.max(2.0).log2()).ceil() as usize;
        let cap = self.successors.capacity();
        // Our list is our successor and its list, so it can be no longer than that list
        // plus one: a capacity above it would never be filled (lists shorter than their
        // capacity for good, the ring never exact). The estimate is noisy (it comes from
        // the list itself), so r grows at once but shrinks on the estimate only once it
        // has fallen by a factor of about 2.8 (2·log2 N three lower); without that margin
        // r changed every round in small rings after churn.
        let fill = match self.successors.first() {
            Some(head) => {
                let mut all = vec![*head];
                all.extend_from_slice(tail);
                self.successors.coverage(&all)
            }
            None => tail.len() + 1,
        };
        let r = want
            .min(fill)
            .clamp(self.cfg.successor_list_len, self.cfg.max_successor_list_len);
        if r > cap || (r < cap && (want + RESIZE_MARGIN <= cap || fill < cap)) {
            self.successors.set_capacity(r);
            if let Some(head) = self.successors.first().copied() {
                self.successors.rebuild(head, tail);
            }
            self.successors_changed();
        }
    }

    /// Record the outcome of a probe request; false if it belongs to no running probe.
    pub(super) fn probe_entry(&mut self, round: u64, id: Id, state: ProbeState) -> bool {
        let Some(probe) = self.probe.as_mut().filter(|p| p.round == round) else {
            return false;
        };
        match probe.entries.iter_mut().find(|(p, _)| p.id == id) {
            Some(e) => {
                e.1 = state;
                true
            }
            None => false,
        }
    }

    /// Act on the probe once its first entry that did not fail has answered, or every
    /// entry failed. `answer` is the answer that just arrived, if any.
    pub(super) fn advance_probe(
        &mut self,
        answer: Option<(Peer, Option<Peer>, &[Peer])>,
        now: Time,
    ) {
        self.probe_new_entries(now);
        let Some(probe) = &self.probe else {
            return;
        };
        let first = probe
            .entries
            .iter()
            .find(|(_, s)| *s != ProbeState::Failed)
            .copied();
        match first {
            Some((_, ProbeState::Waiting)) => {}
            Some((p, _)) => {
                let early = self.probe.take().map(|pr| pr.early).unwrap_or_default();
                match answer {
                    // A fresh answer from the first entry that did not fail: adopt it
                    // now, and ask a node it names in front of it (a joiner) after. Asking
                    // that node first, as stabilize did until session 15 when its first
                    // successor answered, left the list with its silent entries for another two
                    // timeouts when the node in front was the silent entry itself or
                    // another dead one, and then the answered entry was asked again
                    // (seed 13315: four seconds, in which the entries that had answered
                    // crashed too, leaving a list of crashed nodes). A silent entry
                    // the answer names as its predecessor stays in front of it until a
                    // recheck says otherwise: the answer says it lived a moment ago,
                    // and dropping a slow but live first successor shortened lists for
                    // a moment on a healthy ring (a keyed 3-node ring's put found 2
                    // holders: `files_over_an_encrypted_ring`).
                    Some((from, predecessor, successors)) if from.id == p.id => {
                        let named = predecessor.filter(|q| {
                            q.id.in_open(self.me.id, from.id) && !self.is_departed(q.id)
                        });
                        let listed = named.is_some_and(|q| self.successors.contains(q.id));
                        self.adopt_successor(from, successors, now);
                        match named {
                            Some(q) if !listed => self.send_request(
                                q,
                                Request::GetNeighbors,
                                Purpose::StabilizeInFront,
                                now,
                            ),
                            Some(q) => {
                                if self.successors.merge_keeping(&[q]) {
                                    self.successors_changed();
                                }
                                if !self.rechecking(q.id) {
                                    self.send_request(
                                        q,
                                        Request::GetNeighbors,
                                        Purpose::StabilizeRecheck {
                                            before: from.id,
                                            sent: now,
                                        },
                                        now,
                                    );
                                }
                            }
                            None => {}
                        }
                    }
                    // It answered while an entry before it was still being waited for:
                    // that answer may be as old as a timeout. Ask it again.
                    _ => {
                        let named = early
                            .into_iter()
                            .find(|(q, _)| *q == p.id)
                            .map(|(_, named)| named)
                            .unwrap_or_default();
                        let purpose = Purpose::StabilizeReask { named };
                        self.send_request(p, Request::GetNeighbors, purpose, now)
                    }
                }
            }
            None => {
                // Every successor is silent: either the ring is broken here (r
                // consecutive failures) or we are cut off. Keep the list (they may
                // come back) and try the closest other node we know; whoever
                // answers is adopted and stabilize walks back from there.
                self.probe = None;
                self.stabilize_from_known(now);
            }
        }
    }

    /// Ask the entries that came into the list since the probe started (a leaver among
    /// its entries answered `Departed` with its own list, or a notice arrived): the probe
    /// must not pass over one of them for a later entry (found in review: a live node
    /// handed over by a departing entry was dropped for the entry after it).
    pub(super) fn probe_new_entries(&mut self, now: Time) {
        let Some(probe) = &self.probe else {
            return;
        };
        let (round, after) = (probe.round, probe.after);
        let new: Vec<Peer> = self
            .successors
            .as_slice()
            .iter()
            .filter(|p| {
                self.me.id.distance_to(p.id) > after
                    && !probe.entries.iter().any(|(q, _)| q.id == p.id)
            })
            .copied()
            .collect();
        for p in new {
            self.send_request(
                p,
                Request::GetNeighbors,
                Purpose::StabilizeProbe { round },
                now,
            );
            let me = self.me.id;
            if let Some(probe) = self.probe.as_mut() {
                let d = me.distance_to(p.id);
                let at = probe
                    .entries
                    .partition_point(|(q, _)| me.distance_to(q.id) < d);
                probe.entries.insert(at, (p, ProbeState::Waiting));
            }
        }
    }

    /// Alone, or every successor silent: try the closest node we know of outside the
    /// successor list (the predecessor that rectified us, or a finger), and adopt it only
    /// if it answers.
    pub(super) fn stabilize_from_known(&mut self, now: Time) {
        let candidate = self
            .predecessor
            .iter()
            .chain(self.fingers.entries())
            .filter(|p| {
                p.id != self.me.id && !self.successors.contains(p.id) && !self.is_departed(p.id)
            })
            .min_by_key(|p| self.me.id.distance_to(p.id))
            .copied();
        match candidate {
            Some(c) => {
                self.send_request(c, Request::GetNeighbors, Purpose::StabilizeCandidate, now);
            }
            None => self.silent_round(),
        }
    }

    /// A stabilization round in which nobody answered, or nobody was left to ask. After
    /// `Config::silent_rounds_to_alone` of them in a row, or at once if every entry of
    /// our list told us it left, give the list up and carry on as a ring of one: keys must
    /// have an owner, and a lone node answers for all of them. The silent entries are
    /// remembered, so merge probing finds their ring again if they were only cut off.
    pub(super) fn silent_round(&mut self) {
        self.silent_rounds += 1;
        let all_departed = self
            .successors
            .as_slice()
            .iter()
            .all(|p| self.is_departed(p.id));
        if self.successors.is_empty()
            || !(all_departed || self.silent_rounds >= self.cfg.silent_rounds_to_alone)
        {
            return;
        }
        let gone: Vec<Peer> = self.successors.as_slice().to_vec();
        for p in gone {
            if !self.is_departed(p.id) {
                self.remember(p);
            }
            self.successors.remove(p.id);
            self.fingers.remove(p.id);
        }
        self.successors_changed();
        self.silent_rounds = 0;
    }

    /// Our first successor's answer to stabilize's question, or its silence: on silence,
    /// ask the later entries, but keep the silent ones in the list until a later one
    /// answers. The silence may be a lost message, and dropping a live successor on a
    /// false suspicion could leave a list with no live entry. The answer replaces
    /// everything before the one that answered.
    pub(super) fn on_first_successor_reply(&mut self, to: Peer, reply: Reply, now: Time) {
        if self.took_neighbors(to, reply, now) {
            return;
        }
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
            early: Vec::new(),
            started: now,
            asked_again: Vec::new(),
        });
        self.advance_probe(None, now);
    }

    /// The node a merge probe found in front of our successor answered: read as any
    /// answer to stabilize. Silent: forget it and run the round as usual.
    pub(super) fn on_merge_candidate_reply(&mut self, to: Peer, reply: Reply, now: Time) {
        if !self.took_neighbors(to, reply, now) {
            self.stabilize(now);
        }
    }

    /// A node from outside our list asked as our successor (the closest other node we
    /// know, when every entry was silent, or a merge probe's finding): adopted if it
    /// answers; its silence ends the round.
    pub(super) fn on_candidate_reply(&mut self, to: Peer, reply: Reply, now: Time) {
        if self.took_neighbors(to, reply, now) {
            return;
        }
        if self.predecessor.map(|p| p.id) == Some(to.id) {
            self.set_predecessor(None);
        }
        // Nobody answered this round. Try the next known node, if any, at the next tick.
        if !self.successors.contains(to.id) {
            self.silent_round();
        }
    }

    /// An entry beyond a silent first successor, asked in a [`Probe`].
    pub(super) fn on_probe_reply(&mut self, to: Peer, round: u64, reply: Reply, now: Time) {
        match reply {
            Ok(Response::Neighbors {
                predecessor,
                successors,
            }) => {
                if self.probe_entry(round, to.id, ProbeState::Answered) {
                    self.advance_probe(Some((to, predecessor, &successors)), now);
                }
                // Not adopted yet (an entry before it is still waited for): keep the list
                // it gave, in case the question asked again when its turn comes is lost.
                // Only what a re-ask's silence can use: a list's worth, up to our own id,
                // as a rebuild reads a list (past it, the list wrapped round the ring).
                let me = self.me.id;
                let cap = self.successors.capacity();
                if let Some(probe) = self.probe.as_mut().filter(|p| p.round == round) {
                    let named = successors
                        .into_iter()
                        .take_while(|p| p.id != me)
                        .take(cap)
                        .collect();
                    probe.early.push((to.id, named));
                }
            }
            _ => {
                // Silent to the probe, but it answered another request of ours since the
                // probe started: the silence was loss. Ask it once more before it counts
                // as failed; passing over it dropped a live entry that is not always
                // among the ones rechecked after (the hunting sweep, seed 5055: a live
                // third entry that answered our hints throughout, dropped for a leaver).
                let heard = self.probe.as_ref().is_some_and(|p| {
                    p.round == round
                        && p.entries
                            .iter()
                            .any(|(q, s)| q.id == to.id && *s == ProbeState::Waiting)
                        && !p.asked_again.contains(&to.id)
                        && !self.is_departed(to.id)
                        && self.rtt.heard_since(to.id, p.started)
                });
                if heard {
                    if let Some(p) = self.probe.as_mut() {
                        p.asked_again.push(to.id);
                    }
                    let purpose = Purpose::StabilizeProbe { round };
                    return self.send_request(to, Request::GetNeighbors, purpose, now);
                }
                if self.probe_entry(round, to.id, ProbeState::Failed) {
                    self.fingers.remove(to.id);
                    self.advance_probe(None, now);
                }
            }
        }
    }

    /// A probed entry that answered before its turn, asked again when every entry before
    /// it had failed: a fresh answer is read as stabilize reads its first successor's.
    /// On silence, the entries its earlier answer named beyond it (up to r of them) join
    /// our list, pushing none of ours out (`merge_keeping`: the list grows until the next
    /// rebuild, to at most 64 entries), before the probe of the entries after it. At 18% loss two
    /// tries are both lost one time in nine, and throwing the earlier answer away left a
    /// list of crashed entries, probed round after round, while the live nodes that
    /// answer had named were never asked (the hunting sweep at up to 20% loss, seed
    /// 13352: a ring of two formed there, and merge probing had not found the rest 60 s
    /// later). Adopting the earlier answer instead, dropping the entries before it, put
    /// falsely suspected live entries out of lists whose answering entry had crashed
    /// meanwhile (12 of 10,000 seeds at <= 200 ms had a moment with no live successor).
    pub(super) fn on_reask_reply(&mut self, to: Peer, named: &[Peer], reply: Reply, now: Time) {
        if reply.is_err() && !self.is_departed(to.id) && self.successors.contains(to.id) {
            let d = self.me.id.distance_to(to.id);
            // Already cut at our own id when it was kept (`on_probe_reply`).
            let named: Vec<Peer> = named
                .iter()
                .filter(|p| self.me.id.distance_to(p.id) > d && !self.is_departed(p.id))
                .take(self.successors.capacity())
                .copied()
                .collect();
            if self.successors.merge_keeping(&named) {
                self.successors_changed();
            }
        }
        self.on_first_successor_reply(to, reply, now);
    }

    /// The node in front of a successor just adopted (from a stabilize answer or a
    /// probe): its answer is read as any answer to stabilize is (it may name one further
    /// in front); on silence it only leaves the finger table.
    pub(super) fn on_in_front_reply(&mut self, to: Peer, reply: Reply, now: Time) {
        self.took_neighbors(to, reply, now);
    }

    /// Read an answer to one of stabilize's questions: `Neighbors` goes to
    /// [`Node::on_successor_neighbors`] (true); anything else counts as silence, and `to`
    /// leaves the finger table (false).
    fn took_neighbors(&mut self, to: Peer, reply: Reply, now: Time) -> bool {
        if let Ok(Response::Neighbors {
            predecessor,
            successors,
        }) = reply
        {
            self.on_successor_neighbors(to, predecessor, &successors, now);
            return true;
        }
        self.fingers.remove(to.id);
        false
    }

    /// An entry dropped for silence (when `before` answered) answered after all: put it
    /// back in front of `before`, as it is (its list may be as old as whatever kept it
    /// silent). A round already running does not drop it again; the next one asks it
    /// first, if it is still our first entry.
    pub(super) fn on_recheck_reply(&mut self, to: Peer, before: Id, sent: Time, reply: Reply) {
        // A leave notice that arrived before this answer does not keep the node out:
        // `handle` takes any direct answer as proof of life (see `Node::handle`).
        if !matches!(reply, Ok(Response::Neighbors { .. })) {
            // It answered another request of ours since (the next stabilize asks a kept
            // entry first): this silence was loss. Dropping it anyway took a live first
            // successor out right after it answered, and with one dead entry after it
            // (r = 2) left a list of crashed nodes (the hunting sweep, seed 28921).
            // Otherwise, kept in front on another node's word (a probe's answer named it)
            // and silent again, or gone: out, unless it is all we have.
            if !self.rtt.heard_since(to.id, sent)
                && self.successors.contains(to.id)
                && self.successors.len() > 1
            {
                self.successors.remove(to.id);
                self.successors_changed();
            }
            return;
        }
        // Also when `before` has left since: the answer still shows a live node in front
        // of where `before` stood (seed 26800: a leaver's notice arrived between the
        // adoption and this answer, and the list was left with two crashed entries).
        if self.is_member()
            && (self.successors.contains(before) || self.is_departed(before))
            && to.id.in_open(self.me.id, before)
        {
            // Also when it is listed already (the leaver's notice brought it back while
            // this recheck ran): a round under way must not drop it as silent (found in
            // review: the round's probe, past the leaver, would have passed over it).
            if self.successors.merge_keeping(&[to]) {
                self.successors_changed();
            }
            self.remembered.retain(|q| q.seed || q.peer.id != to.id);
            self.put_back.push(to.id);
        }
    }
}
