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
//!   predecessor only after it answered too, and sends **rectify** to each successor it
//!   adopts;
//! * **rectify** replaces notify and check_predecessor: a node takes the sender as
//!   predecessor if it has none, if the sender is closer, or if the current one is dead;
//! * **fix_fingers** refreshes the next distinct finger per tick by lookup.
//!
//! Where each task lives (each file is one `impl Node` block): `join.rs`, `stabilize.rs`
//! (with the probe of dead entries and the fall-back to a ring of one), `rectify.rs`,
//! `fingers.rs`, `merge.rs` (rings that formed apart), `leave.rs` (the check, the
//! notices, and what a node does with a neighbour's), `lookups.rs` (driving a
//! [`Lookup`] for the user, fix_fingers, a join or a merge probe), `requests.rs` (sending
//! with deadlines and resends, handing each answer or silence to the task that asked,
//! and what is in flight), `timers.rs` (the periodic timers), `config.rs`. This file holds the state, the inputs and outputs, and the
//! answers to other nodes' requests.
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

mod config;
mod fingers;
mod join;
mod leave;
mod lookups;
mod merge;
mod rectify;
mod requests;
mod stabilize;
mod timers;

pub use config::Config;
use leave::LeaveCheck;
use lookups::{LookupKind, RunningLookup};
use merge::Remembered;
use requests::{Pending, Reply, Silence};
use stabilize::Probe;
use timers::{Timer, TimerTable};

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

#[derive(Clone, Debug)]
enum Purpose {
    /// GetNeighbors to our first successor, or to the next one when those before it were
    /// silent this round.
    StabilizeFirst,
    /// GetNeighbors to a candidate successor from outside our list (the closest other
    /// node we know, or a merge probe's finding); adopted if it answers.
    StabilizeCandidate,
    /// GetNeighbors to a node a merge probe found between us and our successor during
    /// the last round (`Node::merge_candidate`); if it fails, the round starts over as
    /// usual.
    StabilizeMerge,
    /// GetNeighbors to a probed entry that answered before its turn came (every entry
    /// before it has failed since), asked again for a fresh answer; `named` is the list
    /// its earlier answer gave (see [`Node::on_reask_reply`]).
    StabilizeReask { named: Vec<Peer> },
    /// GetNeighbors to the node the successor just adopted names as its predecessor: its
    /// answer is read like any stabilize answer (it may name a node further in front).
    StabilizeInFront,
    /// GetNeighbors, once more, to an entry dropped for silence when `before`, a later
    /// one, answered: put back in front of `before` if it answers (it was a false
    /// suspicion), nothing if not. Not part of a stabilization round: the next round
    /// does not wait for it.
    StabilizeRecheck { before: Id, sent: Time },
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

/// One ring position. See the [module documentation](self).
pub struct Node {
    me: Peer,
    cfg: Config,
    phase: Phase,
    predecessor: Option<Peer>,
    successors: SuccessorList,
    fingers: FingerTable,
    next_finger: usize,
    /// The parallel probe of this stabilization round, if one is running.
    probe: Option<Probe>,
    probe_rounds: u64,
    /// When stabilize, fix_fingers and merge probing are due.
    timers: TimerTable,
    /// Peers that dropped out of our tables without saying goodbye: dead, or across a
    /// partition. Probed now and then; a ring that formed apart is found through them.
    remembered: VecDeque<Remembered>,
    next_seed_probe: Time,
    /// Nodes that told us they were leaving, with when: kept out of our successor list
    /// until `Config::departed_horizon` has passed.
    departed: VecDeque<(Id, Time)>,
    /// Peers that answered [`Response::NeighborsLeaving`] lately (they are checking their
    /// lists before they leave), with when, most recent last; at most
    /// [`leave::MAX_LEAVING`]. A plain `Neighbors` answer to a request sent after that
    /// takes a peer out.
    leaving_peers: VecDeque<(Id, Time)>,
    /// The peer we last joined through.
    bootstrap: Option<Peer>,
    /// Stabilization rounds in a row in which nobody answered.
    silent_rounds: u32,
    /// Entries put back by a recheck since the current stabilization round started: that
    /// round did not ask them, so its answer must not drop them as silent.
    put_back: Vec<Id>,
    /// A node a merge probe found between us and our successor while a stabilization
    /// round was running: the next round asks it first.
    merge_candidate: Option<Peer>,
    /// Our list being checked before we leave.
    leave_check: Option<LeaveCheck>,
    next_request: u64,
    next_lookup: u64,
    /// Boxed, as `lookups`: a map keeps the slots of its busiest moment for good, and
    /// with entries of 272 and 560 bytes inline that was 3.8 KiB per node in the
    /// simulator at 10^4 nodes (165 MiB against 127 MiB; session 13). A slot is now a
    /// pointer; entries live only while their request or lookup does.
    pending: HashMap<u64, Box<Pending>>,
    rtt: RttTable,
    lookups: HashMap<LookupId, Box<RunningLookup>>,
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
            probe: None,
            probe_rounds: 0,
            timers: TimerTable::default(),
            remembered: VecDeque::new(),
            next_seed_probe: Time::ZERO,
            departed: VecDeque::new(),
            leaving_peers: VecDeque::new(),
            bootstrap: None,
            silent_rounds: 0,
            put_back: Vec::new(),
            merge_candidate: None,
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
                let sent = self
                    .pending
                    .get(&id)
                    .filter(|p| p.to.id == from.id)
                    .map(|p| p.first_sent);
                let ours = sent.is_some();
                let body = match body {
                    Response::NeighborsLeaving {
                        predecessor,
                        successors,
                    } => {
                        if ours {
                            self.note_leaving(from.id, now);
                        }
                        Response::Neighbors {
                            predecessor,
                            successors,
                        }
                    }
                    b => {
                        // A plain answer to a question asked after it said it was leaving:
                        // it is not leaving any more (it came back at the same address,
                        // with the same id). An older question's answer, overtaken, is not.
                        if let (Some(sent), Response::Neighbors { .. }) = (sent, &b) {
                            self.leaving_peers
                                .retain(|(d, noted)| *d != from.id || sent <= *noted);
                        }
                        b
                    }
                };
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
                // is no sample; the timeout that worked is kept until a clean one. Only a
                // member's answers count: the table's last-heard time is proof of life as a
                // member (`RttTable::heard_since`), and `NotMember` or `Departed` is not.
                let member = !matches!(body, Response::NotMember | Response::Departed { .. });
                if member && p.retries_left == self.cfg.request_retries {
                    self.rtt.sample(p.to.id, now - p.first_sent, now);
                } else if member {
                    self.rtt.backed_off(p.to.id, p.wait, now);
                }
                if let Some(check) = self.leave_check.as_mut().filter(|_| member) {
                    check.note_answer(p.to.id, p.first_sent);
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
                    self.on_reply(p.to, p.purpose, Err(Silence), now);
                } else if let Response::Departed { successors } = &body {
                    // It is leaving: as good as its notice, then on to the next.
                    self.on_leaving(from, None, successors, &[], now);
                    self.on_reply(p.to, p.purpose, Err(Silence), now);
                } else if body == Response::NotMember {
                    self.on_reply(p.to, p.purpose, Err(Silence), now);
                } else {
                    // A member answered us directly: whatever it did before, it is back.
                    self.departed.retain(|(d, _)| *d != from.id);
                    self.on_reply(p.to, p.purpose, Ok(body), now);
                }
            }
        }
    }

    /// Run whatever timers have expired at `now`.
    pub fn handle_timeout(&mut self, now: Time) {
        // In this order: requests first (a resend or a silence may finish a lookup), then
        // lookups, the leave, and the periodic tasks of a member.
        self.expire_requests(now);
        self.expire_lookup_timers(now);
        self.expire_leave_timers(now);
        self.forget_old_departures(now);
        if self.phase == Phase::Member {
            self.run_periodic_tasks(now);
        }
    }

    /// Stabilize, fix_fingers and merge probing, each when its interval is up.
    fn run_periodic_tasks(&mut self, now: Time) {
        let cfg = &self.cfg;
        let (stabilize, fix, merge) = (
            cfg.stabilize_interval,
            cfg.fix_fingers_interval,
            cfg.merge_interval,
        );
        if self.timers.fire(Timer::Stabilize, now, stabilize) && !self.stabilizing() {
            self.stabilize(now);
        }
        if self.timers.fire(Timer::FixFingers, now, fix) && !self.fixing_fingers() {
            self.fix_fingers(now);
        }
        if self.timers.fire(Timer::Merge, now, merge) && !self.merging() {
            self.probe_remembered(now);
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
            consider(self.timers.get(Timer::Stabilize));
            consider(self.timers.get(Timer::FixFingers));
            if !self.remembered.is_empty() {
                consider(self.timers.get(Timer::Merge));
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
            Request::GetNeighbors if self.leave_check.is_some() => Response::NeighborsLeaving {
                predecessor: self.predecessor,
                successors: self.successors.as_slice().to_vec(),
            },
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

    fn successors_changed(&mut self) {
        self.events.push_back(Event::SuccessorsChanged(
            self.successors.as_slice().to_vec(),
        ));
    }
}

#[cfg(test)]
mod tests;
