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

mod inspect;
mod invariants;
mod run;
mod scenario;
mod world;

pub use invariants::Violation;
pub use scenario::{
    hunt, random_mix, random_mix_dumping, random_mix_with_retries, HuntConfig, HuntReport,
    MixReport,
};

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use dary_heap::QuaternaryHeap;
use rustc_hash::FxHashMap;

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
    /// `from` is the sending node's index: its `me()` never changes, and an index keeps
    /// the action small (every message is moved through the queue's slab).
    Deliver {
        to: usize,
        from: usize,
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
    /// A 4-ary heap: half the levels of a binary one, its children in one or two cache
    /// lines (every event is pushed and popped once; at 10^4 nodes the queue outgrows
    /// the cache). Entries are unique, so the order of events is the same in any heap.
    queue: QuaternaryHeap<Reverse<Scheduled>>,
    slots: Vec<Option<Action>>,
    free_slots: Vec<u32>,
    hosts: Vec<Host>,
    nodes: Vec<SimNode>,
    /// Every message is routed through this map. Ids are SHA-1 of the simulator's own
    /// addresses (no one chooses them), so a fast unkeyed hash is enough; it is never
    /// iterated, so the hash does not order anything.
    by_id: FxHashMap<Id, usize>,
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
            queue: QuaternaryHeap::new(),
            slots: Vec::new(),
            free_slots: Vec::new(),
            hosts: Vec::new(),
            nodes: Vec::new(),
            by_id: FxHashMap::default(),
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
}

#[cfg(test)]
mod tests;
