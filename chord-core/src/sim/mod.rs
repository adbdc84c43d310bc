//! A deterministic discrete-event simulator for chord-core nodes.
//!
//! Thousands of [`Node`]s exchange messages on a virtual clock. Latency is drawn per
//! message from a seeded RNG, messages can be lost, hosts can crash, join, leave and be
//! partitioned. The same [`SimConfig::seed`] gives the same run, bit for bit: there is no
//! clock, no thread and no iteration over unordered maps where order matters.
//!
//! The simulator knows the truth (which nodes are alive and ring members), so it can judge
//! every lookup and check Zave's invariants at any moment ([`Sim::check_invariants`]).
//!
//! A host runs [`SimConfig::vnodes`] ring positions (virtual nodes); crashes, leaves and
//! partitions act on hosts.

mod invariants;
mod scenario;

pub use invariants::Violation;
pub use scenario::{hunt, random_mix, HuntConfig, HuntReport, MixReport};

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::{Config, Event, Id, LookupId, Message, Node, Peer, Time};

/// Simulation settings.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Seed of the only random number generator.
    pub seed: u64,
    /// Protocol settings for every node.
    pub node: Config,
    /// One-way message latency is uniform in `[latency_min, latency_max]`.
    pub latency_min: Duration,
    /// See `latency_min`.
    pub latency_max: Duration,
    /// Probability that a message is lost.
    pub loss: f64,
    /// Ring positions per host (virtual nodes), at least 1.
    pub vnodes: u16,
    /// How long to wait before retrying a failed join.
    pub join_retry: Duration,
    /// Check Zave's invariants every this much virtual time (`None`: never).
    pub check_every: Option<Duration>,
}

impl Default for SimConfig {
    fn default() -> SimConfig {
        SimConfig {
            seed: 1,
            node: Config::default(),
            latency_min: Duration::from_millis(5),
            latency_max: Duration::from_millis(50),
            loss: 0.0,
            vnodes: 1,
            join_retry: Duration::from_secs(1),
            check_every: Some(Duration::from_secs(1)),
        }
    }
}

/// Index of a simulated host.
pub type HostId = usize;

struct SimNode {
    node: Node,
    host: HostId,
    timer: Option<Time>,
    /// Lookups issued through [`Sim::lookup`] and not yet answered.
    lookups: HashMap<LookupId, PendingLookup>,
}

#[derive(Clone, Copy)]
struct PendingLookup {
    key: Id,
    retries_left: u32,
    started: Time,
}

struct Host {
    addr: SocketAddr,
    alive: bool,
    nodes: Vec<usize>,
    /// Partition group; messages only flow within a group.
    group: u8,
}

enum Action {
    Deliver {
        to: usize,
        from: Peer,
        msg: Message,
    },
    Timer {
        node: usize,
    },
    Join {
        node: usize,
    },
    RetryLookup {
        node: usize,
        key: Id,
        retries_left: u32,
    },
}

/// An action due at a time: (time, sequence number, slot in `Sim::slots`). Ordered by
/// time then sequence, so that actions due at the same moment run in the order they were
/// scheduled. The actions themselves stay put in the slab; the heap moves 24 bytes.
type Scheduled = (Time, u64, u32);

/// The outcome of one lookup issued with [`Sim::lookup`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LookupRecord {
    /// The key.
    pub key: Id,
    /// Did it reach the live node responsible for the key (at completion time)?
    pub correct: bool,
    /// Did some attempt answer `Ok` with an owner that was not the live node responsible
    /// for the key (a silent wrong answer, worse than a failure)?
    pub wrong: bool,
    /// Hops of the final attempt (0 if it failed without an answer).
    pub hops: u32,
    /// Attempts made (1 + retries).
    pub attempts: u32,
    /// Virtual time the final attempt took.
    pub latency: Duration,
}

/// Message counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Messages handed to the network.
    pub sent: u64,
    /// Messages lost (random loss, partition, or dead destination).
    pub dropped: u64,
}

/// The simulated world.
pub struct Sim {
    cfg: SimConfig,
    rng: ChaCha8Rng,
    now: Time,
    seq: u64,
    queue: BinaryHeap<Reverse<Scheduled>>,
    slots: Vec<Option<Action>>,
    free_slots: Vec<u32>,
    hosts: Vec<Host>,
    nodes: Vec<SimNode>,
    by_id: HashMap<Id, usize>,
    /// Live ring members by id: the truth lookups are judged against.
    members: BTreeMap<Id, usize>,
    /// `members`' values in id order, for drawing a random member in O(1); rebuilt when
    /// `members` changed since (None).
    member_order: Option<Vec<usize>>,
    finished: Vec<LookupRecord>,
    /// Failed attempts of lookups being retried, by (node, key), and whether one of them
    /// was a wrong answer.
    retry_counts: HashMap<(usize, Id), (u32, bool)>,
    traffic: Traffic,
    retry_delay: Duration,
    next_check: Time,
    checks: u64,
    violations: Vec<(Time, Violation)>,
    violation_count: u64,
    /// Every node's routing state when the first violation was found.
    first_violation_dump: Option<String>,
    /// Checks that found an unordered appendage (measured, not a violation).
    appendage_disorder: u64,
}

impl Sim {
    /// An empty world.
    pub fn new(cfg: SimConfig) -> Sim {
        Sim {
            rng: ChaCha8Rng::seed_from_u64(cfg.seed),
            cfg,
            now: Time::ZERO,
            seq: 0,
            queue: BinaryHeap::new(),
            slots: Vec::new(),
            free_slots: Vec::new(),
            hosts: Vec::new(),
            nodes: Vec::new(),
            by_id: HashMap::new(),
            members: BTreeMap::new(),
            member_order: None,
            finished: Vec::new(),
            retry_counts: HashMap::new(),
            traffic: Traffic::default(),
            retry_delay: Duration::from_secs(1),
            next_check: Time::ZERO,
            checks: 0,
            violations: Vec::new(),
            violation_count: 0,
            first_violation_dump: None,
            appendage_disorder: 0,
        }
    }

    /// Invariant checks made so far and violations found (the first 100 are kept with
    /// their time; the count is of all).
    pub fn invariant_report(&self) -> (u64, u64, &[(Time, Violation)]) {
        (self.checks, self.violation_count, &self.violations)
    }

    /// Invariant checks that found an unordered appendage (Zave's OrderedAppendages,
    /// measured rather than enforced: see [`Sim::unordered_appendages`]).
    pub fn appendage_disorder_checks(&self) -> u64 {
        self.appendage_disorder
    }

    /// Every node's routing state at the first violation found, for debugging.
    pub fn first_violation_dump(&self) -> Option<&str> {
        self.first_violation_dump.as_deref()
    }

    /// Forget the violations seen so far (for a scenario that broke the fault assumption
    /// on purpose and wants to watch the repair).
    pub fn reset_violations(&mut self) {
        self.violations.clear();
        self.violation_count = 0;
        self.first_violation_dump = None;
    }

    // ----- inspection -----

    /// Virtual time now.
    pub fn now(&self) -> Time {
        self.now
    }

    /// Settings.
    pub fn config(&self) -> &SimConfig {
        &self.cfg
    }

    /// The simulator's random number generator (for scenario drivers; using it keeps runs
    /// deterministic).
    pub fn rng(&mut self) -> &mut ChaCha8Rng {
        &mut self.rng
    }

    /// Number of hosts ever added.
    pub fn host_count(&self) -> usize {
        self.hosts.len()
    }

    /// Hosts that are alive.
    pub fn live_hosts(&self) -> Vec<HostId> {
        (0..self.hosts.len())
            .filter(|h| self.hosts[*h].alive)
            .collect()
    }

    /// Live hosts that have not started to leave.
    pub fn staying_hosts(&self) -> Vec<HostId> {
        (0..self.hosts.len())
            .filter(|h| {
                self.hosts[*h].alive
                    && !self.hosts[*h]
                        .nodes
                        .iter()
                        .any(|i| self.nodes[*i].node.is_leaving())
            })
            .collect()
    }

    /// Number of live ring members (ring positions, so hosts × vnodes).
    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    /// Has the ring member `id` started to leave (it stays a member while it checks its
    /// list before it tells its neighbours)?
    pub fn is_leaving(&self, id: Id) -> bool {
        self.by_id
            .get(&id)
            .is_some_and(|&i| self.nodes[i].node.is_leaving())
    }

    /// Live ring members in id order, with their host.
    pub fn members(&self) -> impl Iterator<Item = (Id, HostId)> + '_ {
        self.members
            .values()
            .map(|i| (self.nodes[*i].node.me().id, self.nodes[*i].host))
    }

    /// The address of a host.
    pub fn host_addr_of(&self, h: HostId) -> SocketAddr {
        self.hosts[h].addr
    }

    /// Is the host alive?
    pub fn is_alive(&self, h: HostId) -> bool {
        self.hosts[h].alive
    }

    /// The node objects of a host.
    pub fn host_nodes(&self, h: HostId) -> impl Iterator<Item = &Node> {
        self.hosts[h].nodes.iter().map(|i| &self.nodes[*i].node)
    }

    /// The node whose id is `id`, if it was ever created.
    pub fn node(&self, id: Id) -> Option<&Node> {
        self.by_id.get(&id).map(|i| &self.nodes[*i].node)
    }

    /// The host of ring position `id`.
    pub fn host_of(&self, id: Id) -> Option<HostId> {
        self.by_id.get(&id).map(|i| self.nodes[*i].host)
    }

    /// Message counters so far.
    pub fn traffic(&self) -> Traffic {
        self.traffic
    }

    /// Lookups finished so far (drains the record).
    pub fn take_lookup_records(&mut self) -> Vec<LookupRecord> {
        std::mem::take(&mut self.finished)
    }

    /// Lookups issued and not finished yet.
    pub fn lookups_in_flight(&self) -> usize {
        self.nodes.iter().map(|n| n.lookups.len()).sum::<usize>()
            + self
                .queue
                .iter()
                .filter(|Reverse((_, _, slot))| {
                    matches!(self.slots[*slot as usize], Some(Action::RetryLookup { .. }))
                })
                .count()
    }

    /// The live member responsible for `key`: the first member at or after it.
    pub fn responsible(&self, key: Id) -> Option<Peer> {
        let i = self
            .members
            .range(key..)
            .next()
            .or_else(|| self.members.iter().next())
            .map(|(_, i)| *i)?;
        Some(self.nodes[i].node.me())
    }

    // ----- world changes -----

    fn host_addr(h: usize) -> SocketAddr {
        // Loopback addresses only: 127.0.0.0/8 has room for 16 million hosts. Nothing is
        // ever sent to them; they only name simulated hosts and feed their ids.
        let n = (h + 1) as u32;
        let ip = Ipv4Addr::new(127, (n >> 16) as u8, (n >> 8) as u8, n as u8);
        SocketAddr::V4(SocketAddrV4::new(ip, 2000))
    }

    fn add_host(&mut self) -> HostId {
        let h = self.hosts.len();
        let addr = Self::host_addr(h);
        let mut idx = Vec::new();
        for v in 0..self.cfg.vnodes.max(1) {
            let me = Peer::new(Id::for_vnode(addr, v), addr);
            let i = self.nodes.len();
            self.nodes.push(SimNode {
                node: Node::new(me, self.cfg.node.clone()),
                host: h,
                timer: None,
                lookups: HashMap::new(),
            });
            self.by_id.insert(me.id, i);
            idx.push(i);
        }
        self.hosts.push(Host {
            addr,
            alive: true,
            nodes: idx,
            group: 0,
        });
        h
    }

    /// Add a host whose ring positions join now, each through a random live member (the
    /// first host creates the ring). Returns the host.
    pub fn add_joining_host(&mut self) -> HostId {
        self.add_joining_host_in(0)
    }

    /// [`Sim::add_joining_host`] for a host in partition group `group` (see
    /// [`Sim::partition`]); it joins through random members until one on its side
    /// answers (each peer it joins through becomes one of its seeds, see
    /// [`Node::add_seed`]; [`Sim::add_seed`] adds others).
    pub fn add_joining_host_in(&mut self, group: u8) -> HostId {
        let h = self.add_host();
        self.hosts[h].group = group;
        let nodes = self.hosts[h].nodes.clone();
        for i in nodes {
            if self.members.is_empty() {
                self.nodes[i].node.create(self.now);
                self.sync(i);
            } else {
                self.start_join(i);
            }
        }
        h
    }

    fn random_member(&mut self) -> Option<usize> {
        if self.members.is_empty() {
            return None;
        }
        // Deterministic: the BTreeMap iterates in id order.
        let k = self.rng.random_range(0..self.members.len());
        let members = &self.members;
        let order = self
            .member_order
            .get_or_insert_with(|| members.values().copied().collect());
        order.get(k).copied()
    }

    fn start_join(&mut self, i: usize) {
        if !self.hosts[self.nodes[i].host].alive {
            return;
        }
        let Some(b) = self.random_member() else {
            self.nodes[i].node.create(self.now);
            self.sync(i);
            return;
        };
        let bootstrap = self.nodes[b].node.me();
        self.nodes[i].node.join(bootstrap, self.now);
        self.sync(i);
    }

    /// Crash a host: it stops at once, without telling anyone.
    pub fn crash(&mut self, h: HostId) {
        if !self.hosts[h].alive {
            return;
        }
        self.hosts[h].alive = false;
        for i in self.hosts[h].nodes.clone() {
            let id = self.nodes[i].node.me().id;
            self.members.remove(&id);
            self.member_order = None;
            self.nodes[i].lookups.clear();
            self.nodes[i].timer = None;
        }
    }

    /// Ask every ring position of a host to leave gracefully. The host stops when all have
    /// left (or immediately if none was a member).
    pub fn leave(&mut self, h: HostId) {
        if !self.hosts[h].alive {
            return;
        }
        for i in self.hosts[h].nodes.clone() {
            // It stays a member while it checks its list; `sync` takes it out of the
            // members (it is no longer responsible for anything) once it sends its notices.
            self.nodes[i].node.leave(self.now);
            self.sync(i);
        }
    }

    /// Make every ring position of host `h` keep probing host `seed`'s first position for
    /// a ring that formed apart ([`Node::add_seed`]).
    pub fn add_seed(&mut self, h: HostId, seed: HostId) {
        let Some(&first) = self.hosts[seed].nodes.first() else {
            return;
        };
        let peer = self.nodes[first].node.me();
        for i in self.hosts[h].nodes.clone() {
            self.nodes[i].node.add_seed(peer);
        }
    }

    /// Change the message loss probability from now on.
    pub fn set_loss(&mut self, p: f64) {
        self.cfg.loss = p.clamp(0.0, 1.0);
    }

    /// Put hosts in partition groups: messages between different groups are dropped.
    /// `group(h)` gives each host's group; call with `|_| 0` to heal.
    pub fn partition(&mut self, group: impl Fn(HostId) -> u8) {
        for (h, host) in self.hosts.iter_mut().enumerate() {
            host.group = group(h);
        }
    }

    /// Would crashing `h` leave some live member without a live successor, or the ring
    /// without members? (The fault assumption of Zave's proof: a member's whole successor
    /// list never fails between two stabilizations.)
    ///
    /// Zave's model changes a node's state in atomic steps; here a stabilize answer can be
    /// in flight while its sender and everything in its list die, and the receiver would
    /// then adopt a list with no live entry. So lists in flight count too: every
    /// `Neighbors` answer on the wire must keep a survivor among its sender and its list.
    pub fn crash_would_break_ring(&self, h: HostId) -> bool {
        // A member that has started to leave (it is checking its list) will be gone soon.
        let survives = |p: &Peer| {
            self.members
                .get(&p.id)
                .is_some_and(|&j| self.nodes[j].host != h && !self.nodes[j].node.is_leaving())
        };
        let mut others = 0;
        for &m in self.members.values() {
            if self.nodes[m].host == h {
                continue;
            }
            others += 1;
            let s = self.nodes[m].node.successors();
            if !s.is_empty() && !s.iter().any(survives) {
                return true;
            }
        }
        let in_flight_list_dies = self.slots.iter().flatten().any(|a| match a {
            Action::Deliver {
                to,
                from,
                msg:
                    Message::Response {
                        body: crate::Response::Neighbors { successors, .. },
                        ..
                    },
            } => {
                // The receiver keeps the list only up to itself (it wraps round in a small
                // ring), and at most r entries: the sender and r - 1 of its list. Only those
                // can be its live successor.
                let me = self.nodes[*to].node.me().id;
                let keep = self.nodes[*to]
                    .node
                    .successor_list_capacity()
                    .saturating_sub(1);
                self.nodes[*to].host != h
                    && self.hosts[self.nodes[*to].host].alive
                    && !survives(from)
                    && !successors
                        .iter()
                        .take_while(|p| p.id != me)
                        .take(keep)
                        .any(survives)
            }
            _ => false,
        });
        others == 0 || in_flight_list_dies
    }

    /// Start a lookup for `key` at the ring position `from`; the result is judged when it
    /// arrives and kept in [`Sim::take_lookup_records`]. A failed or wrong result is
    /// retried `retries` times, one second apart.
    pub fn lookup(&mut self, from: Id, key: Id, retries: u32) {
        let Some(&i) = self.by_id.get(&from) else {
            return;
        };
        if !self.hosts[self.nodes[i].host].alive {
            return;
        }
        let lid = self.nodes[i].node.lookup(key, self.now);
        self.nodes[i].lookups.insert(
            lid,
            PendingLookup {
                key,
                retries_left: retries,
                started: self.now,
            },
        );
        self.sync(i);
    }

    /// A random live member's id.
    pub fn random_member_id(&mut self) -> Option<Id> {
        let i = self.random_member()?;
        Some(self.nodes[i].node.me().id)
    }

    // ----- running -----

    fn schedule(&mut self, at: Time, a: Action) {
        self.seq += 1;
        let slot = match self.free_slots.pop() {
            Some(k) => {
                self.slots[k as usize] = Some(a);
                k
            }
            None => {
                self.slots.push(Some(a));
                (self.slots.len() - 1) as u32
            }
        };
        self.queue.push(Reverse((at, self.seq, slot)));
    }

    /// Run until virtual time `until` (inclusive), checking the invariants on the way
    /// every [`SimConfig::check_every`].
    pub fn run_until(&mut self, until: Time) {
        if let Some(every) = self.cfg.check_every {
            while self.next_check <= until {
                let t = self.next_check;
                self.run_events_until(t);
                self.checks += 1;
                if !self.unordered_appendages().is_empty() {
                    self.appendage_disorder += 1;
                }
                if let Err(vs) = self.check_invariants() {
                    if self.first_violation_dump.is_none() {
                        let why: Vec<String> = vs.iter().map(|v| self.explain(v)).collect();
                        self.first_violation_dump =
                            Some(format!("{}\n{}", why.join("\n"), self.dump()));
                    }
                    self.violation_count += vs.len() as u64;
                    for v in vs {
                        if self.violations.len() < 100 {
                            self.violations.push((t, v));
                        }
                    }
                }
                self.next_check = t + every;
            }
        }
        self.run_events_until(until);
    }

    /// Grow the ring to `n` hosts by joins: waves as large as the ring already is, joins
    /// spread over one stabilization interval, four intervals between waves.
    pub fn grow_to(&mut self, n: usize) {
        let interval = self.cfg.node.stabilize_interval;
        while self.host_count() < n {
            let wave = (n - self.host_count()).min(self.host_count().max(1));
            let start = self.now;
            for k in 0..wave {
                self.run_until(start + interval.mul_f64(k as f64 / wave as f64));
                self.add_joining_host();
            }
            self.run_for(interval * 4);
        }
    }

    /// Run one stabilization interval at a time until every successor list, predecessor
    /// and finger is exact, at most `max_rounds` intervals. Returns the intervals it took,
    /// or `None` if the ring did not settle.
    pub fn settle(&mut self, max_rounds: u32) -> Option<u32> {
        for round in 0..=max_rounds {
            if self.is_ideal() && self.finger_accuracy() >= 1.0 {
                return Some(round);
            }
            if round < max_rounds {
                self.run_for(self.cfg.node.stabilize_interval);
            }
        }
        None
    }

    /// Run one stabilization interval at a time until every successor list and
    /// predecessor is exact (fingers may still be catching up), at most `max_rounds`
    /// intervals. Returns the intervals it took, or `None`.
    pub fn heal(&mut self, max_rounds: u32) -> Option<u32> {
        for round in 0..=max_rounds {
            if self.is_ideal() {
                return Some(round);
            }
            if round < max_rounds {
                self.run_for(self.cfg.node.stabilize_interval);
            }
        }
        None
    }

    fn run_events_until(&mut self, until: Time) {
        while let Some(Reverse((at, _, _))) = self.queue.peek() {
            if *at > until {
                break;
            }
            let Some(Reverse((at, _, slot))) = self.queue.pop() else {
                break;
            };
            self.now = at;
            let action = self.slots[slot as usize].take();
            self.free_slots.push(slot);
            if let Some(action) = action {
                self.step(action);
            }
        }
        self.now = self.now.max(until);
    }

    /// Run for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }

    fn step(&mut self, action: Action) {
        match action {
            Action::Deliver { to, from, msg } => {
                if !self.hosts[self.nodes[to].host].alive {
                    self.traffic.dropped += 1;
                    return;
                }
                self.nodes[to].node.handle(from, msg, self.now);
                self.sync(to);
            }
            Action::Timer { node } => {
                if self.nodes[node].timer != Some(self.now) {
                    return; // superseded
                }
                self.nodes[node].timer = None;
                if !self.hosts[self.nodes[node].host].alive {
                    return;
                }
                self.nodes[node].node.handle_timeout(self.now);
                self.sync(node);
            }
            Action::Join { node } => self.start_join(node),
            Action::RetryLookup {
                node,
                key,
                retries_left,
            } => {
                let from = self.nodes[node].node.me().id;
                if self.hosts[self.nodes[node].host].alive && self.nodes[node].node.is_member() {
                    self.lookup(from, key, retries_left);
                }
            }
        }
    }

    /// Move a node's outputs into the world: messages onto the network, events into the
    /// truth and the lookup record, its next deadline into the queue.
    fn sync(&mut self, i: usize) {
        while let Some(t) = self.nodes[i].node.poll_transmit() {
            self.traffic.sent += 1;
            let Some(&to) = self.by_id.get(&t.to.id) else {
                self.traffic.dropped += 1;
                continue;
            };
            let from_group = self.hosts[self.nodes[i].host].group;
            let to_group = self.hosts[self.nodes[to].host].group;
            let lost = self.cfg.loss > 0.0 && self.rng.random_bool(self.cfg.loss.min(1.0));
            if lost || from_group != to_group || self.nodes[to].node.me().addr != t.to.addr {
                self.traffic.dropped += 1;
                continue;
            }
            let lo = self.cfg.latency_min.as_micros() as u64;
            let hi = self.cfg.latency_max.as_micros().max(lo as u128) as u64;
            let lat = if hi > lo {
                self.rng.random_range(lo..=hi)
            } else {
                lo
            };
            let from = self.nodes[i].node.me();
            self.schedule(
                Time(self.now.0 + lat),
                Action::Deliver {
                    to,
                    from,
                    msg: t.message,
                },
            );
        }
        while let Some(e) = self.nodes[i].node.poll_event() {
            self.on_event(i, e);
        }
        let node = &self.nodes[i].node;
        if node.is_leaving() && !node.is_member() && self.members.remove(&node.me().id).is_some() {
            self.member_order = None;
        }
        if let Some(t) = self.nodes[i].node.poll_timeout() {
            let t = t.max(self.now);
            if self.nodes[i].timer.is_none_or(|cur| t < cur) {
                self.nodes[i].timer = Some(t);
                self.schedule(t, Action::Timer { node: i });
            }
        }
    }

    fn on_event(&mut self, i: usize, e: Event) {
        match e {
            Event::Joined => {
                let id = self.nodes[i].node.me().id;
                self.members.insert(id, i);
                self.member_order = None;
            }
            Event::JoinFailed(_) => {
                let at = self.now + self.cfg.join_retry;
                self.schedule(at, Action::Join { node: i });
            }
            Event::Left => {
                let id = self.nodes[i].node.me().id;
                self.members.remove(&id);
                self.member_order = None;
                let h = self.nodes[i].host;
                if self.hosts[h]
                    .nodes
                    .iter()
                    .all(|n| self.nodes[*n].node.has_left())
                {
                    self.hosts[h].alive = false;
                }
            }
            Event::LookupDone { id, result } => {
                let Some(p) = self.nodes[i].lookups.remove(&id) else {
                    return;
                };
                let truth = self.responsible(p.key).map(|t| t.id);
                let (correct, hops) = match &result {
                    Ok(out) => (Some(out.owner.id) == truth, out.hops),
                    Err(_) => (false, 0),
                };
                let wrong = result.is_ok() && !correct;
                if !correct && p.retries_left > 0 {
                    let at = self.now + self.retry_delay;
                    self.schedule(
                        at,
                        Action::RetryLookup {
                            node: i,
                            key: p.key,
                            retries_left: p.retries_left - 1,
                        },
                    );
                    // Attempts are counted when the final one is recorded.
                    let c = self.retry_counts.entry((i, p.key)).or_insert((0, false));
                    c.0 += 1;
                    c.1 |= wrong;
                    return;
                }
                let (retried, wrong_before) =
                    self.retry_counts.remove(&(i, p.key)).unwrap_or((0, false));
                self.finished.push(LookupRecord {
                    key: p.key,
                    correct,
                    wrong: wrong || wrong_before,
                    hops,
                    attempts: 1 + retried,
                    latency: self.now - p.started,
                });
            }
            Event::PredecessorChanged { .. } | Event::SuccessorsChanged(_) => {}
        }
    }
}

#[cfg(test)]
mod tests;
