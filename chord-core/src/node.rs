//! One Chord ring position as a sans-IO state machine.
//!
//! The shape follows quinn-proto's `Connection`: the caller feeds it messages
//! ([`Node::handle`]) and timer expiries ([`Node::handle_timeout`]), always with the current
//! time, and drains what it wants done ([`Node::poll_transmit`], [`Node::poll_event`],
//! [`Node::poll_timeout`]). The node never performs I/O and never reads a clock, so the
//! same code runs under the chord-net runtime and inside the deterministic simulator.
//!
//! Maintenance is Pamela Zave's corrected Chord:
//! * **join** looks up our own id, then copies the owner's successor list; only then are we
//!   a member;
//! * **stabilize** asks the first successor for its predecessor and list, adopts the
//!   predecessor only after it answered too, and ends with **rectify** to the successor;
//! * **rectify** replaces notify and check_predecessor: a node takes the sender as
//!   predecessor if it has none, if the sender is closer, or if the current one is dead;
//! * **fix_fingers** refreshes the next distinct finger per tick by lookup.
//!
//! ```
//! use chord_core::{Config, Event, Node, Peer, Time};
//! let a = Peer::from_addr("127.0.0.1:2000".parse().unwrap());
//! let mut node = Node::new(a, Config::default());
//! node.create(Time::ZERO);
//! assert!(node.is_member());
//! assert_eq!(node.poll_event(), Some(Event::Joined));
//! // A one-node ring owns every key; the lookup completes without a message.
//! let id = node.lookup(chord_core::Id::for_key("song.mp3"), Time::ZERO);
//! assert!(node.poll_transmit().is_none());
//! match node.poll_event() {
//!     Some(Event::LookupDone { id: done, result: Ok(out) }) => {
//!         assert_eq!(done, id);
//!         assert_eq!(out.owner, a);
//!     }
//!     other => panic!("{other:?}"),
//! }
//! ```

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use crate::finger::FingerTable;
use crate::lookup::{Lookup, LookupAction, LookupError, LookupOutcome};
use crate::rtt::RttTable;
use crate::successors::SuccessorList;
use crate::{Id, Message, Peer, Request, Response, Time, MAX_PEERS_PER_MESSAGE};

/// How far the adaptive successor list length must fall below the current one before
/// the list shrinks.
const RESIZE_MARGIN: usize = 3;

/// Most departed nodes remembered at once.
const MAX_DEPARTED: usize = 64;

/// Protocol settings. The defaults suit a LAN or loopback ring.
#[derive(Clone, Debug)]
pub struct Config {
    /// Length `r` of the successor list (default 8). A ring survives up to `r - 1`
    /// consecutive failures between stabilizations.
    pub successor_list_len: usize,
    /// Grow the successor list to `2·log2 N`, with N estimated from the list itself, the
    /// length the Chord paper's failure analysis assumes (default off).
    pub adaptive_successor_list: bool,
    /// Upper bound for the adaptive length (default 32).
    pub max_successor_list_len: usize,
    /// Period of stabilize (default 1 s).
    pub stabilize_interval: Duration,
    /// Period of fix_fingers; each tick refreshes the next distinct finger (default 1 s).
    pub fix_fingers_interval: Duration,
    /// How long to wait for an answer before resending or, with no resends left, taking
    /// the peer as failed, at least (default 1 s). This is the timeout for a peer never
    /// measured while no peer is; for the others it is the RTT estimate (`srtt + 4·rttvar`,
    /// Jacobson/Karels) when that is longer, up to `max_request_timeout`, and a peer never
    /// measured gets a smoothed average of the measured ones' timeouts. While no peer has
    /// been measured, each resend waits twice as long.
    pub request_timeout: Duration,
    /// The most a request waits for an answer, however slow the peer has been (default
    /// 10 s).
    pub max_request_timeout: Duration,
    /// Resends of an unanswered request before the peer counts as failed (default 1). Over
    /// TCP a lost message is rare, but a false suspicion costs a live successor, so one
    /// more try is cheap insurance.
    pub request_retries: u32,
    /// How long a whole lookup may take (default 10 s); one whose steps are answered is
    /// given more (each answer leaves it at least half of this), up to three times this.
    pub lookup_timeout: Duration,
    /// Most requests one lookup may send (default 128).
    pub lookup_max_queries: u32,
    /// Step requests a lookup keeps in flight at once, to its best untried candidates
    /// (Kademlia's α, default 1), not counting slow ones: a step unanswered after twice
    /// the peer's smoothed round trip (a quarter of the timeout for a peer never
    /// measured) lets the lookup ask the next candidate meanwhile (a hedged request), so a
    /// dead or slow hop costs that delay rather than a timeout and a resend, and a
    /// healthy path costs no extra messages.
    pub lookup_parallelism: usize,
    /// Closest preceding nodes returned per lookup step, so the asker can skip dead hops
    /// (default 4).
    pub closer_per_step: usize,
    /// How often to probe a remembered peer that dropped out of our tables, to find and
    /// merge with a ring that formed apart during a partition (default 10 s).
    pub merge_interval: Duration,
    /// How many such peers to remember (default 16; 0 turns merging off).
    pub remembered_peers: usize,
    /// How often to probe a seed (a bootstrap address, see [`Node::add_seed`]) the same
    /// way (default 60 s): a ring split by a partition merges through it even when every
    /// peer met across the partition is gone.
    pub seed_probe_interval: Duration,
    /// How long a node that told us it was leaving is kept out of our successor list,
    /// whatever stale lists say (default 60 s). A node that comes back at the same address
    /// sooner is taken again as soon as it rectifies us or answers us directly.
    pub departed_horizon: Duration,
    /// Stabilization intervals a leaving node stays up after its neighbours acknowledged
    /// its notices, answering every request with its successor list
    /// ([`Response::Departed`]), so that nodes further back that list it skip it at once
    /// (default 2; 0 leaves at once).
    pub leave_linger_rounds: u32,
    /// Stabilization rounds in a row in which every successor and every other node we
    /// know stays silent before we give them up and carry on as a ring of one (default 3).
    /// The silent ones are remembered and probed, so the ring merges again if they come
    /// back.
    pub silent_rounds_to_alone: u32,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            successor_list_len: 8,
            adaptive_successor_list: false,
            max_successor_list_len: 32,
            stabilize_interval: Duration::from_secs(1),
            fix_fingers_interval: Duration::from_secs(1),
            request_timeout: Duration::from_secs(1),
            max_request_timeout: Duration::from_secs(10),
            request_retries: 1,
            lookup_timeout: Duration::from_secs(10),
            lookup_max_queries: 128,
            lookup_parallelism: 1,
            closer_per_step: 4,
            merge_interval: Duration::from_secs(10),
            remembered_peers: 16,
            seed_probe_interval: Duration::from_secs(60),
            departed_horizon: Duration::from_secs(60),
            leave_linger_rounds: 2,
            silent_rounds_to_alone: 3,
        }
    }
}

/// Handle of a lookup started with [`Node::lookup`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LookupId(pub u64);

/// Why joining failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    /// Looking up our own id through the bootstrap peer failed.
    #[error("could not find our place in the ring")]
    Lookup(#[from] LookupError),
    /// A live node already has our id (another node runs at our address).
    #[error("a node with our id is already in the ring")]
    IdInUse,
}

/// What the node tells the layer above.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// We are a ring member (created a ring or finished joining one).
    Joined,
    /// Joining failed; the node is idle again and may retry.
    JoinFailed(JoinError),
    /// The predecessor changed, so the key range `(predecessor, me]` we are responsible
    /// for changed.
    PredecessorChanged {
        /// Previous predecessor.
        old: Option<Peer>,
        /// New predecessor (`None`: unknown until some node rectifies us).
        new: Option<Peer>,
    },
    /// The successor list changed: the nodes that hold replicas of our range changed.
    SuccessorsChanged(Vec<Peer>),
    /// A lookup started with [`Node::lookup`] finished.
    LookupDone {
        /// Which lookup.
        id: LookupId,
        /// Its result.
        result: Result<LookupOutcome, LookupError>,
    },
    /// We have left the ring: predecessor and successor were told (or timed out).
    Left,
}

/// A message to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Destination.
    pub to: Peer,
    /// The message.
    pub message: Message,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Idle,
    Joining(LookupId),
    Member,
    Leaving,
    /// Notices acknowledged; answering [`Response::Departed`] until then.
    Lingering(Time),
    Left,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LookupKind {
    User,
    Join,
    Finger(usize),
    /// Our own id looked up through a remembered peer.
    Merge(Peer),
}

struct RunningLookup {
    lookup: Lookup,
    deadline: Time,
    /// When it started: answered steps extend `deadline`, up to three lookup timeouts
    /// from here.
    started: Time,
    kind: LookupKind,
    /// An attempt ended [`LookupError::Unsure`]: start afresh at this time (once).
    again_at: Option<Time>,
    /// Has it been started afresh already?
    retried: bool,
}

#[derive(Clone, Debug)]
enum Purpose {
    /// GetNeighbors to our first successor, or to the next one when those before it were
    /// silent this round.
    StabilizeFirst,
    /// GetNeighbors to a candidate successor; if it fails, go back to `fallback`.
    StabilizeCandidate { fallback: Option<Peer> },
    /// GetNeighbors whose answer is adopted as it is (the fallback of a failed candidate).
    StabilizeAdopt,
    /// GetNeighbors to a later entry of our list, sent to all of them at once when the
    /// first entry asked this round was silent (see [`Probe`]).
    StabilizeProbe { round: u64 },
    /// Rectify sent to our successor.
    Rectify,
    /// Ping to our predecessor; if it fails, take `candidate` (maybe none) instead.
    CheckPredecessor { candidate: Option<Peer> },
    /// A lookup's FindStep or confirmation.
    Lookup(LookupId),
    /// Our Leaving notice.
    Leaving,
    /// A ping to an entry of our list before we leave (see [`LeaveCheck`]).
    LeaveCheck,
    /// A [`Request::CheckPredecessor`] hint: nothing to do with the answer.
    Hint,
}

/// Before it leaves, a node asks every entry of its successor list at once, so that its
/// notice hands over only entries that answered and names the others as dead: its
/// predecessor drops those from its own list. Without the check, the survivor of a ring
/// that shrank by crashes and then a leave took the crashed nodes the leaver still listed
/// and had no live successor until its own probes timed out (the unguarded hunting sweep's
/// most common violation). The node stays a member meanwhile; the check costs one round
/// trip, or one timeout and a resend when an entry is dead. Each entry gets
/// [`LEAVE_CHECK_PINGS`] pings at once, and is named dead only if every one of them (each
/// with its resend) went unanswered: a live entry named dead is dropped by the receiver,
/// so a ping lost twice must not be enough (with 9% loss it made lists lose their last
/// live entry in 3 of 2,000 hunting seeds).
struct LeaveCheck {
    /// Entries asked so far (each at most once, with [`LEAVE_CHECK_PINGS`] pings).
    asked: Vec<Id>,
    /// One item per unanswered ping (not counting entries that answered they are leaving:
    /// their list is in ours, and the receiver must not drop them without it). An entry
    /// is dead when every one of its pings is here: one answer keeps it out.
    silent: Vec<Peer>,
    /// The check ends by then whatever is still unanswered (unanswered is not dead): a
    /// list that keeps changing, or slow peers, cannot hold a leave up.
    check_until: Time,
    /// With no live predecessor to tell, we wait until this for one to rectify us: the
    /// nodes behind us that list us would otherwise learn only by asking us.
    wait_until: Option<Time>,
}

impl LeaveCheck {
    /// When [`Node::continue_leave_check`] must run next.
    fn next_deadline(&self) -> Time {
        self.wait_until.unwrap_or(self.check_until)
    }
}

/// Pings per entry in a [`LeaveCheck`].
const LEAVE_CHECK_PINGS: usize = 3;

/// The entries after a silent one, asked all at once instead of one timeout after the
/// other (dead entries cost one timeout together, not one each), but decided in list
/// order: an entry is taken only once every entry before it has failed, so a slow but
/// live entry is never passed over (passing over one on a false suspicion can leave a
/// list with no live entry). An entry that answered before its turn came is asked again,
/// so that only a fresh answer is adopted, as in the sequential walk.
struct Probe {
    round: u64,
    /// How far the silent entry that started it is from us: the probe covers every entry
    /// of the list beyond it, including entries a leaver hands over while it runs.
    after: Id,
    /// In list order.
    entries: Vec<(Peer, ProbeState)>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ProbeState {
    Waiting,
    Failed,
    Answered,
}

struct Pending {
    to: Peer,
    deadline: Time,
    purpose: Purpose,
    /// Kept for a resend after a timeout (every request is idempotent).
    body: Request,
    retries_left: u32,
    /// When the first copy was sent, and how long the current try waits.
    first_sent: Time,
    wait: Duration,
    /// A lookup step: when to tell the lookup it is slow and let it ask another
    /// candidate meanwhile (once).
    hedge_at: Option<Time>,
}

/// A peer probed now and then to find a ring that formed apart.
#[derive(Clone, Copy, Debug)]
struct Remembered {
    peer: Peer,
    /// A seed (a bootstrap address) stays whatever its probes give; any other peer is
    /// forgotten once a probe through it finds our own ring, or after
    /// `MAX_PROBE_FAILURES` probes through it in a row failed (it is dead).
    seed: bool,
    failures: u8,
}

/// Failed probes in a row after which a remembered peer is forgotten.
const MAX_PROBE_FAILURES: u8 = 3;

/// Most seeds kept.
const MAX_SEEDS: usize = 8;

/// One ring position. See the [module documentation](self).
pub struct Node {
    me: Peer,
    cfg: Config,
    phase: Phase,
    predecessor: Option<Peer>,
    successors: SuccessorList,
    fingers: FingerTable,
    next_finger: usize,
    finger_lookup: Option<LookupId>,
    stabilizing: bool,
    /// The parallel probe of this stabilization round, if one is running.
    probe: Option<Probe>,
    probe_rounds: u64,
    checking_predecessor: bool,
    next_stabilize: Time,
    next_fix_fingers: Time,
    next_merge: Time,
    /// Peers that dropped out of our tables without saying goodbye: dead, or across a
    /// partition. Probed now and then; a ring that formed apart is found through them.
    remembered: VecDeque<Remembered>,
    merging: bool,
    next_seed_probe: Time,
    /// Nodes that told us they were leaving, with when: kept out of our successor list
    /// until `Config::departed_horizon` has passed.
    departed: VecDeque<(Id, Time)>,
    /// The peer we last joined through.
    bootstrap: Option<Peer>,
    /// Stabilization rounds in a row in which nobody answered.
    silent_rounds: u32,
    /// Our list being checked before we leave.
    leave_check: Option<LeaveCheck>,
    next_request: u64,
    next_lookup: u64,
    pending: HashMap<u64, Pending>,
    rtt: RttTable,
    lookups: HashMap<LookupId, RunningLookup>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
}

impl Node {
    /// A node at `me` that is not yet in any ring: call [`Node::create`] or [`Node::join`].
    pub fn new(me: Peer, cfg: Config) -> Node {
        let successors = SuccessorList::counting_hosts(me, cfg.successor_list_len);
        Node {
            me,
            phase: Phase::Idle,
            predecessor: None,
            successors,
            fingers: FingerTable::new(me.id),
            next_finger: 0,
            finger_lookup: None,
            stabilizing: false,
            probe: None,
            probe_rounds: 0,
            checking_predecessor: false,
            next_stabilize: Time::ZERO,
            next_fix_fingers: Time::ZERO,
            next_merge: Time::ZERO,
            remembered: VecDeque::new(),
            merging: false,
            next_seed_probe: Time::ZERO,
            departed: VecDeque::new(),
            bootstrap: None,
            silent_rounds: 0,
            leave_check: None,
            next_request: 1,
            next_lookup: 1,
            pending: HashMap::new(),
            rtt: RttTable::new(),
            lookups: HashMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            cfg,
        }
    }

    // ----- accessors -----

    /// This node.
    pub fn me(&self) -> Peer {
        self.me
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Is the node a ring member (answers ring queries)?
    pub fn is_member(&self) -> bool {
        self.phase == Phase::Member
    }

    /// Nodes that told us they left, kept out of our successor list for
    /// [`Config::departed_horizon`].
    pub fn departed(&self) -> impl Iterator<Item = Id> + '_ {
        self.departed.iter().map(|(id, _)| *id)
    }

    /// Is the node leaving: checking its list before it tells its neighbours (it is still
    /// a member then, [`Node::is_member`]), its notices sent, or lingering?
    pub fn is_leaving(&self) -> bool {
        self.leave_check.is_some() || matches!(self.phase, Phase::Leaving | Phase::Lingering(_))
    }

    /// Has the node finished leaving?
    pub fn has_left(&self) -> bool {
        self.phase == Phase::Left
    }

    /// Current predecessor, if known.
    pub fn predecessor(&self) -> Option<Peer> {
        self.predecessor
    }

    /// Successor list, nearest first (empty when alone).
    pub fn successors(&self) -> &[Peer] {
        self.successors.as_slice()
    }

    /// Current length limit `r` of the successor list (changes with
    /// [`Config::adaptive_successor_list`]).
    pub fn successor_list_capacity(&self) -> usize {
        self.successors.capacity()
    }

    /// The first successor, or this node itself when it is alone.
    pub fn successor(&self) -> Peer {
        self.successors.first().copied().unwrap_or(self.me)
    }

    /// The finger table.
    pub fn fingers(&self) -> &FingerTable {
        &self.fingers
    }

    /// Number of requests awaiting an answer (bounded by the protocol's own activity).
    pub fn pending_requests(&self) -> usize {
        self.pending.len()
    }

    /// Is `key` in the range this node is responsible for, `(predecessor, me]`?
    /// With no known predecessor, only a node that is alone claims every key.
    pub fn is_responsible_for(&self, key: Id) -> bool {
        match self.predecessor {
            Some(p) => key.in_half_open(p.id, self.me.id),
            None => self.successors.is_empty(),
        }
    }

    // ----- commands -----

    /// Start a new ring with this node as its only member.
    pub fn create(&mut self, now: Time) {
        if self.phase != Phase::Idle {
            return;
        }
        self.phase = Phase::Member;
        self.next_stabilize = now;
        self.next_fix_fingers = now + self.cfg.fix_fingers_interval;
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

    /// Find the live node responsible for `key`. The result arrives as
    /// [`Event::LookupDone`] with the returned id.
    pub fn lookup(&mut self, key: Id, now: Time) -> LookupId {
        self.start_lookup(key, LookupKind::User, now)
    }

    /// Leave gracefully: ask every entry of the successor list at once (one round trip, or
    /// a timeout and a resend if one is dead), then tell the predecessor our list, which
    /// entries did not answer, and the successor our predecessor, then stop answering.
    /// Emits [`Event::Left`] once both answered or timed out. The layer above should hand
    /// its data over before calling this. The node stays a member (and owns its keys)
    /// during the check, and, if its predecessor is dead, until the next one rectifies it
    /// (at most three stabilization intervals): a few seconds at worst.
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
        // Every ping with its resends, to the slowest peer we ask at the start, and half a
        // timeout more (the last resends' failures arrive at the end of their timeouts).
        // Resends wait longer only while no peer is measured; counting it always is an
        // upper bound.
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
        self.leave_check = Some(LeaveCheck {
            asked: Vec::new(),
            silent: Vec::new(),
            check_until: now + all_tries,
            wait_until: None,
        });
        // The predecessor is checked too: a dead one would get our notice in vain.
        if let Some(p) = self.predecessor {
            self.check_predecessor(p, None, now);
        }
        self.continue_leave_check(now);
    }

    /// Ask the entries of our list not asked yet (the list may have changed meanwhile:
    /// a leaving entry hands over its own); once every answer is in, and we have a
    /// predecessor (or waited a few stabilization intervals for one), send the notices.
    fn continue_leave_check(&mut self, now: Time) {
        let Some(check) = self.leave_check.as_mut() else {
            return;
        };
        if let Some(until) = check.wait_until {
            // The check is over; only a predecessor, or the end of the wait, is missing.
            if self.predecessor.is_some() || now >= until {
                self.send_leave_notices(now);
            }
            return;
        }
        let checking = now < check.check_until;
        let me = self.me.id;
        let new: Vec<Peer> = self
            .successors
            .as_slice()
            .iter()
            .filter(|p| checking && p.id != me && !check.asked.contains(&p.id))
            .copied()
            .collect();
        for p in new {
            // Bounded: a list holds at most MAX_PEERS_PER_MESSAGE entries, asked once each,
            // and only twice that many in all however the list changes meanwhile.
            let check = self.leave_check.as_mut().expect("checked above");
            if check.asked.len() >= 2 * MAX_PEERS_PER_MESSAGE {
                break;
            }
            check.asked.push(p.id);
            for _ in 0..LEAVE_CHECK_PINGS {
                self.send_request(p, Request::Ping, Purpose::LeaveCheck, now);
            }
        }
        if checking
            && (self.checking_predecessor
                || self
                    .pending
                    .values()
                    .any(|p| matches!(p.purpose, Purpose::LeaveCheck)))
        {
            return;
        }
        if self.predecessor.is_none() && !self.successors.is_empty() {
            let wait = self.cfg.stabilize_interval * 3;
            if let Some(check) = self.leave_check.as_mut() {
                check.wait_until = Some(now + wait);
            }
            return;
        }
        self.send_leave_notices(now);
    }

    fn send_leave_notices(&mut self, now: Time) {
        let mut dead: Vec<Peer> = Vec::new();
        if let Some(c) = self.leave_check.take() {
            for p in &c.silent {
                let unanswered = c.silent.iter().filter(|q| q.id == p.id).count();
                if unanswered >= LEAVE_CHECK_PINGS && !dead.iter().any(|d| d.id == p.id) {
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

    // ----- inputs -----

    /// A message arrived from `from`. The transport is responsible for `from` being the
    /// authenticated sender.
    pub fn handle(&mut self, from: Peer, message: Message, now: Time) {
        match message {
            Message::Request { id, body } => {
                if matches!(body, Request::Rectify) {
                    // Only a member rectifies: a node that left has come back, unless it
                    // left so recently that this is a message sent before it left.
                    let fresh = self.cfg.stabilize_interval * (self.cfg.leave_linger_rounds + 2);
                    self.departed
                        .retain(|(d, at)| *d != from.id || now < *at + fresh);
                }
                let answer = self.answer(from, body, now);
                self.transmits.push_back(Transmit {
                    to: from,
                    message: Message::Response { id, body: answer },
                });
            }
            Message::Response { id, body } => {
                let Some(p) = self.pending.get(&id) else {
                    return; // late (already timed out) or never asked
                };
                if p.to.id != from.id {
                    return; // someone else answering our request: ignore
                }
                let Some(p) = self.pending.remove(&id) else {
                    return;
                };
                // Karn's rule: an answer to a resent request may be to either copy, so it
                // is no sample; the timeout that worked is kept until a clean one.
                if p.retries_left == self.cfg.request_retries {
                    self.rtt.sample(p.to.id, now - p.first_sent, now);
                } else {
                    self.rtt.backed_off(p.to.id, p.wait, now);
                }
                let lookup_kind_mismatch = matches!(p.purpose, Purpose::Lookup(_))
                    && !matches!(
                        (&p.body, &body),
                        (Request::FindStep { .. }, Response::Step { .. })
                            | (Request::GetNeighbors, Response::Neighbors { .. })
                            | (_, Response::Departed { .. } | Response::NotMember)
                    );
                if lookup_kind_mismatch {
                    // A step answered with neighbours, or a confirmation with a step: as
                    // good as no answer (else the lookup would wait for it for ever).
                    self.on_request_failed(p.to, p.purpose, now);
                } else if let Response::Departed { successors } = &body {
                    // It is leaving: as good as its notice, then on to the next.
                    self.on_leaving(from, None, successors, &[], now);
                    self.on_request_failed(p.to, p.purpose, now);
                } else if body == Response::NotMember {
                    self.on_request_failed(p.to, p.purpose, now);
                } else {
                    // A member answered us directly: whatever it did before, it is back.
                    self.departed.retain(|(d, _)| *d != from.id);
                    self.on_response(p.to, p.purpose, body, now);
                }
            }
        }
    }

    /// Run whatever timers have expired at `now`.
    pub fn handle_timeout(&mut self, now: Time) {
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
                self.on_request_failed(p.to, p.purpose, now);
            }
        }
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
        let horizon = self.cfg.departed_horizon;
        while self
            .departed
            .front()
            .is_some_and(|(_, at)| *at + horizon <= now)
        {
            self.departed.pop_front();
        }
        if self.phase != Phase::Member {
            return;
        }
        if now >= self.next_stabilize {
            self.next_stabilize = now + self.cfg.stabilize_interval;
            if !self.stabilizing {
                self.stabilize(now);
            }
        }
        if now >= self.next_fix_fingers {
            self.next_fix_fingers = now + self.cfg.fix_fingers_interval;
            if self.finger_lookup.is_none() {
                self.fix_fingers(now);
            }
        }
        if now >= self.next_merge {
            self.next_merge = now + self.cfg.merge_interval;
            if !self.merging {
                self.probe_remembered(now);
            }
        }
    }

    // ----- outputs -----

    /// Next message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// Next event for the layer above.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Node::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Time> {
        let mut t: Option<Time> = None;
        let mut consider = |x: Time| t = Some(t.map_or(x, |t| t.min(x)));
        for p in self.pending.values() {
            consider(p.deadline);
            if let Some(t) = p.hedge_at {
                consider(t);
            }
        }
        for l in self.lookups.values() {
            consider(l.deadline);
            if let Some(t) = l.again_at {
                consider(t);
            }
        }
        if let Phase::Lingering(until) = self.phase {
            consider(until);
        }
        if let Some(c) = &self.leave_check {
            consider(c.next_deadline());
        }
        if self.phase == Phase::Member {
            consider(self.next_stabilize);
            consider(self.next_fix_fingers);
            if !self.remembered.is_empty() {
                consider(self.next_merge);
            }
        }
        t
    }

    // ----- answering -----

    fn answer(&mut self, from: Peer, req: Request, now: Time) -> Response {
        // While it checks its list before leaving, a node still answers as a member.
        if matches!(self.phase, Phase::Leaving | Phase::Lingering(_)) {
            return Response::Departed {
                successors: self.successors.as_slice().to_vec(),
            };
        }
        if self.phase != Phase::Member {
            return Response::NotMember;
        }
        match req {
            Request::Ping => Response::Pong,
            Request::GetNeighbors => Response::Neighbors {
                predecessor: self.predecessor,
                successors: self.successors.as_slice().to_vec(),
            },
            Request::FindStep { key } => Response::Step {
                // Alone, we are our own successor: (me, me] covers every key.
                successors: if self.successors.is_empty() {
                    vec![self.me]
                } else {
                    self.successors.as_slice().to_vec()
                },
                closer: self.closest_preceding_nodes(key, self.cfg.closer_per_step),
            },
            Request::Rectify => {
                self.rectify(from, now);
                // A leave waiting for a live predecessor may go on now.
                self.continue_leave_check(now);
                Response::Ack
            }
            Request::Leaving {
                predecessor,
                successors,
            } => {
                self.on_leaving(from, predecessor, &successors, &[], now);
                Response::Ack
            }
            Request::LeavingChecked {
                predecessor,
                successors,
                dead,
            } => {
                self.on_leaving(from, predecessor, &successors, &dead, now);
                Response::Ack
            }
            Request::CheckPredecessor => {
                // Trust nothing but our own ping; one check at a time bounds the cost.
                if let Some(p) = self.predecessor {
                    self.check_predecessor(p, None, now);
                }
                Response::Ack
            }
        }
    }

    /// The nodes we know that most closely precede `key`, best first: Chord's
    /// `closest_preceding_node`, extended to the next few for fallback.
    pub fn closest_preceding_nodes(&self, key: Id, k: usize) -> Vec<Peer> {
        let mut c: Vec<Peer> = self
            .fingers
            .entries()
            .iter()
            .chain(self.successors.as_slice())
            .filter(|p| p.id.in_open(self.me.id, key))
            .copied()
            .collect();
        c.sort_by_key(|p| p.id.distance_to(key));
        c.dedup_by_key(|p| p.id);
        c.truncate(k);
        c
    }

    fn rectify(&mut self, n: Peer, now: Time) {
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

    /// `from` is leaving (its notice, or its `Departed` answer). `dead`: entries of its list
    /// it found dead just before (see [`LeaveCheck`]).
    fn on_leaving(
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
            self.successors_changed();
            // Confirm the new first successor at once (Zave: no unconfirmed pointers last).
            self.next_stabilize = now;
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

    /// Ping our predecessor `p` (one check at a time); if it is silent, take `candidate`
    /// (maybe none) instead.
    fn check_predecessor(&mut self, p: Peer, candidate: Option<Peer>, now: Time) {
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

    fn note_departed(&mut self, id: Id, now: Time) {
        self.departed.retain(|(d, _)| *d != id);
        if self.departed.len() >= MAX_DEPARTED {
            self.departed.pop_front();
        }
        self.departed.push_back((id, now));
        self.remembered.retain(|q| q.seed || q.peer.id != id);
    }

    fn is_departed(&self, id: Id) -> bool {
        self.departed.iter().any(|(d, _)| *d == id)
    }

    /// `peers` without the nodes that told us they left.
    fn without_departed(&self, peers: &[Peer]) -> Vec<Peer> {
        peers
            .iter()
            .take(MAX_PEERS_PER_MESSAGE)
            .filter(|p| !self.is_departed(p.id))
            .copied()
            .collect()
    }

    // ----- stabilize -----

    fn stabilize(&mut self, now: Time) {
        match self.successors.first().copied() {
            Some(s) => {
                self.stabilizing = true;
                self.send_request(s, Request::GetNeighbors, Purpose::StabilizeFirst, now);
            }
            None => self.stabilize_from_known(now),
        }
    }

    /// Alone, or every successor silent: try the closest node we know of outside the
    /// successor list (the predecessor that rectified us, or a finger), and adopt it only
    /// if it answers.
    fn stabilize_from_known(&mut self, now: Time) {
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
                self.stabilizing = true;
                self.send_request(
                    c,
                    Request::GetNeighbors,
                    Purpose::StabilizeCandidate { fallback: None },
                    now,
                );
            }
            None => self.silent_round(),
        }
    }

    /// A stabilization round in which nobody answered, or nobody was left to ask. After
    /// `Config::silent_rounds_to_alone` of them in a row, or at once if every entry of
    /// our list told us it left, give the list up and carry on as a ring of one: keys must
    /// have an owner, and a lone node answers for all of them. The silent entries are
    /// remembered, so merge probing finds their ring again if they were only cut off.
    fn silent_round(&mut self) {
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

    fn adopt_successor(&mut self, head: Peer, tail: &[Peer], now: Time) {
        self.stabilizing = false;
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
        let mut changed = self.successors.rebuild(head, &tail);
        if self.cfg.adaptive_successor_list {
            // Before the entries kept below go back in: a resize rebuilds the list from
            // its first entry and `tail`, which is `head`'s list. With a kept entry
            // first, `head` itself was dropped and the kept (maybe dead) entry got
            // `head`'s list: a list with no live entry (found by the hunting sweep).
            self.resize_successor_list(&tail);
        }
        if head_was_listed {
            // We asked the entries before `head` in order this round and they were
            // silent: dead, or across a partition. Remember them, to find their ring
            // again if it was the latter.
            for p in closer {
                self.remember(p);
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

    fn resize_successor_list(&mut self, tail: &[Peer]) {
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

    // ----- fix_fingers -----

    fn fix_fingers(&mut self, now: Time) {
        // Indices below the first successor's distance all point at the successor, which
        // stabilize keeps fresh; start after it.
        let Some(s) = self.successors.first() else {
            return;
        };
        let first = FingerTable::next_index_after(self.me.id.distance_to(s.id));
        let Some(first) = first else {
            return;
        };
        if self.next_finger < first {
            self.next_finger = first;
        }
        let i = self.next_finger;
        let key = self.fingers.start(i);
        let id = self.start_lookup(key, LookupKind::Finger(i), now);
        if self.lookups.contains_key(&id) {
            self.finger_lookup = Some(id);
        }
    }

    fn on_finger_found(&mut self, i: usize, owner: Peer) {
        self.fingers.update(i, owner);
        let d = self.me.id.distance_to(owner.id);
        self.next_finger = if owner.id == self.me.id {
            0
        } else {
            FingerTable::next_index_after(d).unwrap_or(0)
        };
    }

    // ----- merging rings after a partition -----

    /// Remember a peer that left our tables without a goodbye.
    fn remember(&mut self, p: Peer) {
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
    fn probe_remembered(&mut self, now: Time) {
        // Seeds only every `seed_probe_interval`; the others in turn.
        let seeds_due = now >= self.next_seed_probe;
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
        self.merging = true;
        let lookup = self.seeded_lookup(self.me.id, via.peer);
        self.run_lookup(id, lookup, LookupKind::Merge(via.peer), now);
    }

    /// A probe through `via` failed: forget it after a few in a row, unless a seed.
    fn on_probe_failed(&mut self, via: Peer) {
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
    fn on_merge_found(&mut self, via: Peer, owner: Peer, now: Time) {
        let succ = self.successor();
        if let Some(q) = self.remembered.iter_mut().find(|q| q.peer.id == via.id) {
            q.failures = 0;
        }
        if owner.id == self.me.id || owner.id == succ.id {
            // Same ring as ours: nothing to merge through this peer (a seed stays).
            self.remembered.retain(|q| q.seed || q.peer.id != via.id);
            return;
        }
        if owner.id.in_open(self.me.id, succ.id) && !self.stabilizing {
            self.stabilizing = true;
            self.send_request(
                owner,
                Request::GetNeighbors,
                Purpose::StabilizeCandidate { fallback: None },
                now,
            );
        }
    }

    // ----- lookups -----

    fn alloc_lookup_id(&mut self) -> LookupId {
        let id = LookupId(self.next_lookup);
        self.next_lookup += 1;
        id
    }

    fn start_lookup(&mut self, key: Id, kind: LookupKind, now: Time) -> LookupId {
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
    fn local_lookup(&self, key: Id) -> Lookup {
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
    fn seeded_lookup(&self, key: Id, seed: Peer) -> Lookup {
        Lookup::new(key, &[seed], self.cfg.lookup_max_queries)
            .with_parallelism(self.cfg.lookup_parallelism)
    }

    /// Register a lookup under `id` with its deadline and take its first steps. The
    /// caller sets any state the lookup's end checks (join phase, merging) beforehand:
    /// a lookup can finish within this call.
    fn run_lookup(&mut self, id: LookupId, lookup: Lookup, kind: LookupKind, now: Time) {
        self.lookups.insert(
            id,
            RunningLookup {
                lookup,
                deadline: now + self.cfg.lookup_timeout,
                started: now,
                kind,
                again_at: None,
                retried: false,
            },
        );
        self.drive_lookup(id, now);
    }

    /// A step of lookup `id` was answered: it is making progress, so it gets at least
    /// half a lookup timeout more, up to three lookup timeouts from its start (at one-way
    /// latencies near a second a path of a few hops takes more than one).
    fn lookup_answered(&mut self, id: LookupId, now: Time) {
        let t = self.cfg.lookup_timeout;
        if let Some(l) = self.lookups.get_mut(&id) {
            l.deadline = l.deadline.max((now + t / 2).min(l.started + t * 3));
        }
    }

    fn drive_lookup(&mut self, id: LookupId, now: Time) {
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
    fn hedge_delay(&self, peer: Id) -> Duration {
        let timeout = self.timeout_for(peer);
        match self.rtt.srtt(peer) {
            Some(srtt) => (srtt * 2).max(Duration::from_millis(10)).min(timeout),
            None => timeout / 4,
        }
    }

    /// How long the first try of a request to `peer` waits for an answer.
    /// A resend's wait when it must be longer than the try before: twice as long, up to
    /// `max_request_timeout` (or the wait itself, if that was longer already).
    fn longer_wait(&self, wait: Duration) -> Duration {
        (wait * 2).min(self.cfg.max_request_timeout.max(wait))
    }

    fn timeout_for(&self, peer: Id) -> Duration {
        self.rtt
            .timeout(peer, self.cfg.request_timeout, self.cfg.max_request_timeout)
    }

    /// How long an owner needs to check its predecessor: every try of a ping times out,
    /// plus one timeout for the messages to and from it. Its timeouts are not ours to
    /// know; ours towards it stand in for them.
    fn recheck_delay(&self, owner: Option<Peer>) -> Duration {
        let t = owner.map_or(self.cfg.request_timeout, |o| self.timeout_for(o.id));
        t * (self.cfg.request_retries + 2)
    }

    /// Start a parked lookup afresh, keeping its id and deadline: from our own tables, or
    /// through the peer it started from (a join's bootstrap, a merge probe's peer).
    fn restart_lookup(&mut self, id: LookupId, now: Time) {
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
    fn forget_failed(&mut self, lookup: &Lookup) {
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

    fn finish_lookup(
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

    fn finish_kind(
        &mut self,
        id: LookupId,
        kind: LookupKind,
        result: Result<LookupOutcome, LookupError>,
        now: Time,
    ) {
        match kind {
            LookupKind::User => self.events.push_back(Event::LookupDone { id, result }),
            LookupKind::Finger(i) => {
                self.finger_lookup = None;
                if let Ok(out) = result {
                    self.on_finger_found(i, out.owner);
                }
            }
            LookupKind::Merge(via) => {
                self.merging = false;
                match result {
                    Ok(out) => self.on_merge_found(via, out.owner, now),
                    Err(_) => self.on_probe_failed(via),
                }
            }
            LookupKind::Join => {
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
                        self.next_stabilize = now;
                        self.next_fix_fingers = now;
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
    }

    // ----- requests -----

    fn send_request(&mut self, to: Peer, body: Request, purpose: Purpose, now: Time) {
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

    fn on_response(&mut self, from: Peer, purpose: Purpose, body: Response, now: Time) {
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

    /// Our successor (or a candidate for it) answered with its neighbours.
    fn on_successor_neighbors(
        &mut self,
        from: Peer,
        predecessor: Option<Peer>,
        successors: &[Peer],
        now: Time,
    ) {
        match predecessor {
            // A node between us and the one that answered: adopt it only if it
            // answers too. Repeating this walks a gap of several new nodes in one
            // round; each step is strictly closer to us, so the walk ends.
            Some(p) if p.id.in_open(self.me.id, from.id) => self.send_request(
                p,
                Request::GetNeighbors,
                Purpose::StabilizeCandidate {
                    fallback: Some(from),
                },
                now,
            ),
            _ => self.adopt_successor(from, successors, now),
        }
    }

    /// Record the outcome of a probe request; false if it belongs to no running probe.
    fn probe_entry(&mut self, round: u64, id: Id, state: ProbeState) -> bool {
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
    fn advance_probe(&mut self, answer: Option<(Peer, Option<Peer>, &[Peer])>, now: Time) {
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
                self.probe = None;
                match answer {
                    Some((from, predecessor, successors)) if from.id == p.id => {
                        self.on_successor_neighbors(from, predecessor, successors, now)
                    }
                    // It answered while an entry before it was still being waited for:
                    // that answer may be as old as a timeout. Ask it again.
                    _ => self.send_request(p, Request::GetNeighbors, Purpose::StabilizeFirst, now),
                }
            }
            None => {
                // Every successor is silent: either the ring is broken here (r
                // consecutive failures) or we are cut off. Keep the list (they may
                // come back) and try the closest other node we know; whoever
                // answers is adopted and stabilize walks back from there.
                self.probe = None;
                self.stabilizing = false;
                self.stabilize_from_known(now);
            }
        }
    }

    /// Ask the entries that came into the list since the probe started (a leaver among
    /// its entries answered `Departed` with its own list, or a notice arrived): the probe
    /// must not pass over one of them for a later entry (found in review: a live node
    /// handed over by a departing entry was dropped for the entry after it).
    fn probe_new_entries(&mut self, now: Time) {
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

    fn on_request_failed(&mut self, to: Peer, purpose: Purpose, now: Time) {
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

    fn leave_acknowledged(&mut self, now: Time) {
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

    fn finish_leave(&mut self) {
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

    fn set_predecessor(&mut self, new: Option<Peer>) {
        if self.predecessor != new {
            let old = std::mem::replace(&mut self.predecessor, new);
            self.events
                .push_back(Event::PredecessorChanged { old, new });
        }
    }

    fn successors_changed(&mut self) {
        self.events.push_back(Event::SuccessorsChanged(
            self.successors.as_slice().to_vec(),
        ));
    }
}

#[cfg(test)]
mod tests;
