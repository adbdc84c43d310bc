//! Iterative lookups as a pure state machine (after libp2p-kad's `ClosestPeersIter`).
//!
//! The asking node contacts every hop itself. Each hop answers with its successor list and
//! the nodes it knows that most closely precede the key ([`Response::Step`]). From these the
//! lookup decides, without trusting any single hop:
//!
//! * a responder `n` "covers" the key when the key lies in `(n, s_i]` for some entry `s_i`
//!   of its successor list; the entries before `s_i` are still candidates (they precede the
//!   key), and `s_i, s_i+1, …` are the possible owners, in order;
//! * the next hop is always the best-ranked candidate not yet tried (rank = how closely it
//!   precedes the key), so a dead hop is simply skipped in favour of the next best one;
//! * once no untried candidate precedes the key more closely than the best covering
//!   responder, the owners are confirmed alive in order ([`Request::GetNeighbors`]); the
//!   first one that answers is the result. A confirmed owner whose predecessor lies between
//!   the key's predecessor and the key (a node that joined since) hands the result on.
//!
//! The lookup never reads a clock: the node that drives it reports timeouts as failures.
//!
//! [`Response::Step`]: crate::Response::Step
//! [`Request::GetNeighbors`]: crate::Request::GetNeighbors

use crate::{Id, Peer, MAX_PEERS_PER_MESSAGE};

/// What the driver of a [`Lookup`] should do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LookupAction {
    /// Send [`crate::Request::FindStep`] for the key to this peer.
    Query(Peer),
    /// Send [`crate::Request::GetNeighbors`] to this owner candidate to confirm it is alive.
    Confirm(Peer),
    /// A request is outstanding: wait for its answer or its timeout.
    Wait,
    /// The lookup finished.
    Done(LookupOutcome),
    /// The lookup failed.
    Failed(LookupError),
}

/// A successful lookup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LookupOutcome {
    /// The key looked up.
    pub key: Id,
    /// The live node responsible for the key (its successor), confirmed alive.
    pub owner: Peer,
    /// The owner's successor list: with the owner, the natural replica set of the key.
    pub successors: Vec<Peer>,
    /// The owner's predecessor as the owner reported it: the owner is responsible for
    /// `(predecessor, owner]`, so every key in that range has the same answer.
    pub predecessor: Option<Peer>,
    /// Number of hops: the length of the routing path from the asking node to the node
    /// whose successor list named the owner (0 when the asking node's own list did).
    /// Requests sent in parallel to other candidates are not counted.
    pub hops: u32,
}

/// Why a lookup failed.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize,
)]
pub enum LookupError {
    /// Every candidate hop and every possible owner failed to answer.
    #[error("no live route to the key: every candidate hop failed")]
    NoRoute,
    /// The lookup sent more requests than its budget allows.
    #[error("lookup gave up after too many requests")]
    TooManyQueries,
    /// The lookup did not finish before its deadline.
    #[error("lookup timed out")]
    Timeout,
    /// The node is not a ring member (it has not joined, or has left).
    #[error("this node is not a ring member")]
    NotMember,
    /// The owner found does not count the key as its own yet: its predecessor, which
    /// does, did not answer twice (it crashed and the owner has not noticed, or messages
    /// were lost). Rather than name an owner that may be wrong, the lookup gives up;
    /// asking again a little later (after a stabilization round) gets a sure answer.
    #[error(
        "the key's owner is uncertain right now (its predecessor is silent); try again shortly"
    )]
    Unsure,
}

/// How closely `id` precedes `key`: 0 for `key - 1`, the maximum for `key` itself.
fn rank(key: Id, id: Id) -> Id {
    id.distance_to(key).wrapping_sub(Id::pow2(0))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    NotContacted,
    Waiting,
    /// Asked, and slower to answer than its round trip suggests: still awaited, but no
    /// longer counted against the lookup's parallelism.
    Slow,
    Succeeded,
    Failed,
}

#[derive(Clone, Debug)]
struct Candidate {
    /// Its rank is not kept: it is computed from the id where needed (a lookup in a
    /// ring with many dead nodes gathers many candidates; 20 bytes less each).
    peer: Peer,
    state: State,
    /// Hops from the asking node: one more than the node that named it.
    depth: u32,
}

/// The best covering answer so far.
#[derive(Clone, Debug)]
struct Covering {
    /// How closely the covering responder precedes the key.
    rank: Id,
    /// Its depth: the lookup's hop count if an owner it named is confirmed.
    depth: u32,
    owners: Vec<Peer>,
    next: usize,
}

/// One iterative lookup.
#[derive(Clone, Debug)]
pub struct Lookup {
    key: Id,
    /// Ordered by rank from the worst to the best (new candidates are mostly better than
    /// the ones before, so they are pushed at the end), and found by their rank, which is
    /// unique to an id: a lookup's every answer looks up its candidates several times.
    candidates: Vec<Candidate>,
    /// The first 8 bytes of each candidate's rank, in the same order: the binary search
    /// for a candidate reads these (8 to a cache line, where a candidate is 60 bytes) and
    /// then only the candidates that share the prefix (rarely more than one), as an
    /// answer finds the lookup's state long gone from the cache.
    prefixes: Vec<u64>,
    covering: Option<Covering>,
    confirming: Option<Peer>,
    failed_owners: Vec<Id>,
    /// Peers known for certain not to be members (the asking node's own id while it is
    /// not a member: an old incarnation others still list). A confirmed owner that names
    /// one as its predecessor is taken: that predecessor is gone, not doubtful.
    gone: Vec<Id>,
    /// Failed owners given a second chance because a confirmed owner named them as its
    /// predecessor: each gets one.
    reconfirmed: Vec<Id>,
    result: Option<LookupOutcome>,
    error: Option<LookupError>,
    /// With [`LookupError::Unsure`]: the owner whose predecessor was silent.
    doubtful: Option<Peer>,
    hops: u32,
    queries: u32,
    max_queries: u32,
    /// Most `FindStep` requests in flight at once (α).
    alpha: usize,
    /// Candidates in state `Waiting` and `Slow`, kept as they change (every `poll` needs
    /// them, and counting them touched every candidate: 10% of the simulator's cache
    /// misses at 1,000 nodes).
    waiting: usize,
    slow: usize,
    /// Candidates in state `Failed`: most lookups have none, and then
    /// [`Lookup::failed_peers`] need not look at every candidate.
    failed: usize,
}

impl Lookup {
    /// A lookup for `key` starting from `seeds` (for a node joining: its bootstrap peer).
    pub fn new(key: Id, seeds: &[Peer], max_queries: u32) -> Lookup {
        let mut l = Lookup {
            key,
            candidates: Vec::new(),
            prefixes: Vec::new(),
            covering: None,
            confirming: None,
            failed_owners: Vec::new(),
            reconfirmed: Vec::new(),
            gone: Vec::new(),
            result: None,
            error: None,
            doubtful: None,
            hops: 0,
            queries: 0,
            max_queries,
            alpha: 1,
            waiting: 0,
            slow: 0,
            failed: 0,
        };
        for p in seeds {
            l.add_candidate(*p, 1);
        }
        l
    }

    /// Keep up to `alpha` (at least 1) step requests in flight, to the best untried
    /// candidates, not counting those reported slow with [`Lookup::on_slow`]
    /// (Kademlia's α; default 1).
    pub fn with_parallelism(mut self, alpha: usize) -> Lookup {
        self.alpha = alpha.max(1);
        self
    }

    /// A lookup for `key` started by the member `me`, seeded with its own answer to the
    /// step (its successor list and closest preceding fingers). Costs no hop.
    pub fn from_local(
        key: Id,
        me: Peer,
        successors: &[Peer],
        closer: &[Peer],
        max_queries: u32,
    ) -> Lookup {
        let mut l = Lookup::new(key, &[], max_queries);
        l.candidates.push(Candidate {
            peer: me,
            state: State::Succeeded,
            depth: 0,
        });
        l.prefixes.push(l.rank(me.id).prefix());
        l.absorb(me, successors, closer);
        l
    }

    /// The key being looked up.
    pub fn key(&self) -> Id {
        self.key
    }

    /// Hops so far.
    pub fn hops(&self) -> u32 {
        self.hops
    }

    /// How closely `id` precedes the key: 0 for `key - 1`, the maximum for `key` itself.
    fn rank(&self, id: Id) -> Id {
        rank(self.key, id)
    }

    /// Where the candidate of rank `rank` is (`Ok`) or would go (`Err`) in `candidates`.
    fn position(&self, rank: Id) -> Result<usize, usize> {
        // Descending: the prefixes above this one, then the (rarely more than one)
        // candidates that share it, ordered by their whole rank.
        let p = rank.prefix();
        let lo = self.prefixes.partition_point(|&q| q > p);
        let n = self.prefixes[lo..].partition_point(|&q| q == p);
        match self.candidates[lo..lo + n].binary_search_by(|c| rank.cmp(&self.rank(c.peer.id))) {
            Ok(i) => Ok(lo + i),
            Err(i) => Err(lo + i),
        }
    }

    fn candidate_mut(&mut self, id: Id) -> Option<&mut Candidate> {
        let i = self.position(self.rank(id)).ok()?;
        self.candidates.get_mut(i)
    }

    fn add_candidate(&mut self, p: Peer, depth: u32) {
        let rank = self.rank(p.id);
        let pos = match self.position(rank) {
            Ok(i) => {
                let c = &mut self.candidates[i];
                c.depth = c.depth.min(depth);
                return;
            }
            Err(pos) => pos,
        };
        self.candidates.insert(
            pos,
            Candidate {
                peer: p,
                state: State::NotContacted,
                depth,
            },
        );
        self.prefixes.insert(pos, rank.prefix());
    }

    fn set_state(&mut self, id: Id, state: State) -> bool {
        let Some(c) = self.candidate_mut(id) else {
            return false;
        };
        let old = std::mem::replace(&mut c.state, state);
        self.count(old, false);
        self.count(state, true);
        true
    }

    /// Keep `waiting`, `slow` and `failed` in step with a candidate entering or leaving
    /// `state`.
    fn count(&mut self, state: State, entering: bool) {
        let n = match state {
            State::Waiting => &mut self.waiting,
            State::Slow => &mut self.slow,
            State::Failed => &mut self.failed,
            State::NotContacted | State::Succeeded => return,
        };
        // A state is only ever left after it was counted entering it.
        if entering {
            *n += 1;
        } else {
            *n -= 1;
        }
    }

    /// Take in a responder's successor list and closer nodes.
    fn absorb(&mut self, from: Peer, successors: &[Peer], closer: &[Peer]) {
        let from_rank = self.rank(from.id);
        let from_depth = self.candidate_mut(from.id).map_or(0, |c| c.depth);
        let depth = from_depth + 1;
        // Only nodes that precede the key more closely than the responder are hops worth
        // taking; anything else in `closer` is wrong or hostile and ignored.
        for p in closer.iter().take(MAX_PEERS_PER_MESSAGE) {
            if p.id.in_open(from.id, self.key) {
                self.add_candidate(*p, depth);
            }
        }
        let successors = &successors[..successors.len().min(MAX_PEERS_PER_MESSAGE)];
        if let Some(i) = successors
            .iter()
            .position(|s| self.key.in_half_open(from.id, s.id))
        {
            for p in &successors[..i] {
                if p.id.in_open(from.id, self.key) {
                    self.add_candidate(*p, depth);
                }
            }
            // A better answer replaces the owner list even while an owner from the old
            // one is being confirmed (steps run in parallel): that confirmation's own
            // check still decides whether its owner holds the key, and owners that
            // failed are skipped in any list.
            let better = self.covering.as_ref().is_none_or(|c| from_rank < c.rank);
            if better {
                let owners = successors[i..]
                    .iter()
                    .filter(|p| !self.failed_owners.contains(&p.id))
                    .copied()
                    .collect();
                self.covering = Some(Covering {
                    rank: from_rank,
                    depth: from_depth,
                    owners,
                    next: 0,
                });
            }
        } else {
            for p in successors {
                if p.id.in_open(from.id, self.key) {
                    self.add_candidate(*p, depth);
                }
            }
        }
    }

    /// `from` answered a `FindStep`.
    pub fn on_step(&mut self, from: Peer, successors: &[Peer], closer: &[Peer]) {
        if !self.set_state(from.id, State::Succeeded) {
            return; // not ours to hear from
        }
        self.hops += 1;
        self.absorb(from, successors, closer);
    }

    /// The owner candidate `from` answered the confirmation with its predecessor and list.
    ///
    /// The answer is taken only if `from` itself counts the key as its own, i.e. the key
    /// lies in `(predecessor, from]` as `from` sees it. Otherwise its predecessor `p` owns
    /// the key (a node that joined since the covering responder's list was made, or one
    /// whose confirmation was lost): `p` is confirmed next, and if it already failed once
    /// it gets one more try. If it fails again the lookup ends with
    /// [`LookupError::Unsure`] rather than name `from`, which may be wrong. With no
    /// predecessor, the first entry of `from`'s list in `[key, from)` (a list that went
    /// round the ring past the key) shows the same and is treated the same, except that
    /// when its second chance fails too, `from` is taken (the entry is likely dead).
    pub fn on_confirm(&mut self, from: Peer, predecessor: Option<Peer>, successors: &[Peer]) {
        if self.confirming.map(|p| p.id) != Some(from.id) {
            return;
        }
        self.confirming = None;
        let Some(cov) = self.covering.as_mut() else {
            return;
        };
        // A node `from` knows that is nearer the key: its predecessor, if the key is not in
        // (predecessor, from]; with no predecessor (it dropped a dead one and no other
        // has rectified it yet), an entry of its own list that lies in [key, from), its
        // list having gone round the ring past the key. Taking `from` then named a wrong
        // owner as success: the hunting sweep at up to 20% loss, seed 11213, a joiner
        // whose owner lost both tries, the next candidate's predecessor crashed, and the
        // candidate, asked again without a predecessor, was taken; the joiner's list
        // skipped the live part of the ring and it stayed apart for good.
        let (nearer, from_list) = match predecessor {
            Some(p) => (Some(p), false),
            None => (
                successors
                    .iter()
                    .find(|s| s.id != from.id && !self.key.in_half_open(s.id, from.id))
                    .copied(),
                true,
            ),
        };
        if let Some(p) = nearer {
            if p.id != from.id
                && !self.gone.contains(&p.id)
                && !self.key.in_half_open(p.id, from.id)
            {
                // Every owner candidate has the key in (covering responder, candidate], so
                // p lies between the covering responder and `from`, the key at or before p.
                if !self.failed_owners.contains(&p.id) {
                    cov.owners.insert(cov.next, p);
                    return;
                }
                if !self.reconfirmed.contains(&p.id) {
                    self.reconfirmed.push(p.id);
                    self.failed_owners.retain(|f| *f != p.id);
                    cov.owners.insert(cov.next, p);
                    return;
                }
                if !from_list {
                    self.error = Some(LookupError::Unsure);
                    self.doubtful = Some(from);
                    return;
                }
                // A list entry silent twice is likely dead, and its news has not gone
                // round yet (a small ring whose lists wrap): `from`, having dropped its
                // predecessor, is the owner as far as anyone can tell. Failing here
                // turned correct answers into `Unsure` (found in review).
            }
        }
        self.result = Some(LookupOutcome {
            key: self.key,
            owner: from,
            successors: successors[..successors.len().min(MAX_PEERS_PER_MESSAGE)].to_vec(),
            predecessor,
            hops: self.covering.as_ref().map_or(self.hops, |c| c.depth),
        });
    }

    /// The request to `id` (a hop or an owner candidate) failed or timed out.
    pub fn on_failure(&mut self, id: Id) {
        if self.confirming.map(|p| p.id) == Some(id) {
            // `poll` moves past failed owners.
            self.confirming = None;
            self.failed_owners.push(id);
        }
        self.set_state(id, State::Failed);
    }

    /// After [`LookupError::Unsure`]: the owner that named a silent predecessor (worth a
    /// [`crate::Request::CheckPredecessor`]).
    pub fn doubtful_owner(&self) -> Option<Peer> {
        self.doubtful
    }

    /// `id` is certainly not a member (the asking node itself, while it is not one): a
    /// failure that needs no second chance.
    pub fn on_gone(&mut self, id: Id) {
        if !self.gone.contains(&id) {
            self.gone.push(id);
        }
        self.on_failure(id);
    }

    /// Every peer this lookup found dead, so that the node can drop them from its tables.
    pub fn failed_peers(&self) -> impl Iterator<Item = Id> + '_ {
        let any = self.failed > 0;
        self.candidates
            .iter()
            .rev()
            .take_while(move |_| any)
            .filter(|c| c.state == State::Failed)
            .map(|c| c.peer.id)
            .chain(self.failed_owners.iter().copied())
    }

    /// Decide the next step. Call after creating the lookup and after every answer or
    /// failure; it returns [`LookupAction::Wait`] while a request is outstanding.
    pub fn poll(&mut self) -> LookupAction {
        if let Some(r) = &self.result {
            return LookupAction::Done(r.clone());
        }
        if let Some(e) = self.error {
            return LookupAction::Failed(e);
        }
        if self.confirming.is_some() {
            return LookupAction::Wait;
        }
        let (waiting, slow) = (self.waiting, self.slow);
        debug_assert_eq!(
            (waiting, slow, self.failed),
            self.candidates
                .iter()
                .fold((0, 0, 0), |(w, s, f), c| match c.state {
                    State::Waiting => (w + 1, s, f),
                    State::Slow => (w, s + 1, f),
                    State::Failed => (w, s, f + 1),
                    State::NotContacted | State::Succeeded => (w, s, f),
                }),
            "the counts of candidates by state are out of step with the candidates"
        );
        if self.queries >= self.max_queries {
            return if waiting + slow > 0 {
                LookupAction::Wait
            } else {
                LookupAction::Failed(LookupError::TooManyQueries)
            };
        }
        let bound = self.covering.as_ref().map(|c| c.rank);
        let key = self.key;
        // Best first; only candidates better than the covering responder can name a
        // better owner, and they are all at the end.
        let mut untried = self
            .candidates
            .iter_mut()
            .rev()
            .take_while(|c| bound.is_none_or(|b| rank(key, c.peer.id) < b))
            .filter(|c| c.state == State::NotContacted)
            .peekable();
        let any_untried = untried.peek().is_some();
        if waiting < self.alpha {
            if let Some(c) = untried.next() {
                c.state = State::Waiting;
                self.waiting += 1;
                self.queries += 1;
                return LookupAction::Query(c.peer);
            }
        }
        // Confirm an owner once nothing untried could name a better one. Steps still in
        // flight do not hold it up: the covering answer we have is enough, and a slow or
        // dead hop must not cost its timeout.
        if !any_untried {
            if let Some(cov) = self.covering.as_mut() {
                while let Some(o) = cov.owners.get(cov.next).copied() {
                    if self.failed_owners.contains(&o.id) {
                        cov.next += 1;
                        continue;
                    }
                    self.confirming = Some(o);
                    self.queries += 1;
                    return LookupAction::Confirm(o);
                }
            }
        }
        if waiting + slow > 0 {
            return LookupAction::Wait;
        }
        LookupAction::Failed(LookupError::NoRoute)
    }

    /// The step request to `id` is taking longer than that peer's round trip suggests
    /// (the driver decides when): keep waiting for it, but let another candidate be asked
    /// meanwhile (a hedged request). A dead hop then costs this delay, not a timeout.
    pub fn on_slow(&mut self, id: Id) {
        if let Some(c) = self.candidate_mut(id) {
            if c.state == State::Waiting {
                c.state = State::Slow;
                self.waiting -= 1;
                self.slow += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests;
