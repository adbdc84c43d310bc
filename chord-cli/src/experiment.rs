//! The standard experiment behind `chord sim`, after section 6 of the Chord paper, run on
//! chord-core's simulator (it lived in chord-core until issue 14: the report is the CLI's).
//!
//! 1. Build a ring of `nodes` hosts **by joins**: hosts join in waves, each wave as large
//!    as the ring already is, through random members, with stabilization running.
//! 2. Let it settle until every successor list, predecessor and finger is exact
//!    (`stabilize_rounds` counts the stabilization intervals that took).
//! 3. Place `keys` keys; each lives on the `replicas` distinct hosts succeeding it.
//! 4. Optionally crash a fraction `fail` of the hosts at once, with no repair first.
//! 5. Run `lookups` lookups from random live members for random keys, spread over
//!    `duration`, with `churn` joins and crashes per minute happening meanwhile. A lookup
//!    fails if it does not reach the live node responsible for the key; failed lookups
//!    are retried `retries` times.
//!
//! Invariants are checked every `check_every` of virtual time throughout.

use std::time::Duration;

use rand::seq::SliceRandom;
use rand::Rng;
use serde::Serialize;

use chord_core::sim::{HostId, Sim, SimConfig};
use chord_core::{Config, Id, Time};

/// Parameters of one experiment.
#[derive(Clone, Debug)]
pub struct Experiment {
    /// Number of hosts.
    pub nodes: usize,
    /// Number of keys placed.
    pub keys: usize,
    /// Number of lookups.
    pub lookups: usize,
    /// Fraction of hosts crashed at once before the lookups.
    pub fail: f64,
    /// Joins plus crashes per minute during the lookup phase.
    pub churn: f64,
    /// Ring positions per host.
    pub vnodes: u16,
    /// Copies of each key (on distinct hosts).
    pub replicas: usize,
    /// Successor list length `r`.
    pub successors: usize,
    /// Seed.
    pub seed: u64,
    /// Retries of a failed lookup (one second apart).
    pub retries: u32,
    /// Length of the lookup phase.
    pub duration: Duration,
    /// Stabilize (and fix_fingers) period.
    pub stabilize: Duration,
    /// Invariant check period.
    pub check_every: Duration,
    /// Message loss probability.
    pub loss: f64,
    /// One-way message latency, uniform in this range.
    pub latency: (Duration, Duration),
    /// Most stabilization rounds to wait for the ring to settle.
    pub max_settle_rounds: u32,
}

impl Default for Experiment {
    fn default() -> Experiment {
        Experiment {
            nodes: 100,
            keys: 10_000,
            lookups: 10_000,
            fail: 0.0,
            churn: 0.0,
            vnodes: 1,
            replicas: 3,
            successors: 8,
            seed: 1,
            retries: 0,
            duration: Duration::from_secs(10),
            stabilize: Duration::from_secs(1),
            check_every: Duration::from_secs(1),
            loss: 0.0,
            latency: (Duration::from_millis(5), Duration::from_millis(50)),
            max_settle_rounds: 300,
        }
    }
}

/// Summary statistics of a sample.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Distribution {
    /// Mean.
    pub mean: f64,
    /// 1st percentile.
    pub p1: f64,
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Maximum.
    pub max: f64,
}

impl Distribution {
    /// Statistics of `xs` (nearest-rank percentiles). All zero for an empty sample.
    pub fn of(xs: &mut [f64]) -> Distribution {
        if xs.is_empty() {
            return Distribution::default();
        }
        xs.sort_by(|a, b| a.total_cmp(b));
        let rank = |p: f64| {
            let k = ((p * xs.len() as f64).ceil() as usize).clamp(1, xs.len());
            xs[k - 1]
        };
        Distribution {
            mean: xs.iter().sum::<f64>() / xs.len() as f64,
            p1: rank(0.01),
            p50: rank(0.50),
            p99: rank(0.99),
            max: xs[xs.len() - 1],
        }
    }
}

/// What an experiment measured. Deterministic for a given [`Experiment`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    /// Hosts built.
    pub nodes: usize,
    /// Keys placed.
    pub keys: usize,
    /// Lookups issued.
    pub lookups: usize,
    /// Seed.
    pub seed: u64,
    /// Ring positions per host.
    pub vnodes: u16,
    /// Replicas per key.
    pub replicas: usize,
    /// Successor list length.
    pub successors: usize,
    /// Fraction crashed.
    pub fail: f64,
    /// Churn per minute.
    pub churn: f64,
    /// Message loss probability.
    pub loss: f64,
    /// One-way message latency range, in milliseconds.
    pub latency_ms: [u64; 2],
    /// Ring positions that were members once the ring was built, before any crash:
    /// `nodes` x `vnodes` unless joins failed (at very high loss, say).
    pub members_built: usize,
    /// Stabilization intervals after the last join until the ring and fingers were exact.
    pub stabilize_rounds: u32,
    /// Did the ring become exact within `max_settle_rounds`?
    pub settled: bool,
    /// Invariant violations found over all checks.
    pub invariant_violations: u64,
    /// Invariant checks made.
    pub invariant_checks: u64,
    /// Lookups that never got an answer (an error, or no answer after every retry),
    /// including lookups whose issuing node crashed before they finished.
    pub lookups_failed: usize,
    /// Lookups that were answered as a success with an owner that was not the key's live
    /// owner at that moment (on any attempt): silent wrong answers, counted apart from
    /// failures.
    pub lookups_wrong: usize,
    /// Lookups that needed at least one retry.
    pub lookups_retried: usize,
    /// Keys none of whose holders is alive after the crash.
    pub keys_lost: usize,
    /// Hops of successful lookups.
    pub path_length: Distribution,
    /// Keys whose first holder is each host (before any crash).
    pub keys_per_node: Distribution,
    /// Messages sent over the whole run.
    pub messages: u64,
    /// Virtual time simulated, in seconds.
    pub sim_seconds: f64,
}

/// Run an experiment.
pub fn run(e: &Experiment) -> Report {
    run_sim(e).0
}

/// Run an experiment and also return the simulated world at its end (to draw it, or to
/// look further).
pub fn run_sim(e: &Experiment) -> (Report, Sim) {
    let mut sim = ring_for(e);

    // 1 and 2. Grow by joins, then settle.
    sim.grow_to(e.nodes);
    let (rounds, settled) = match sim.settle(e.max_settle_rounds) {
        Some(r) => (r, true),
        None => (e.max_settle_rounds, false),
    };
    let members_built = sim.member_count();

    // 3 and 4. Place keys, choose the crashed hosts, count load and losses.
    let placed = place_keys_and_crash(&mut sim, e);

    // 5. Lookups, with churn alongside, until every one has finished.
    lookups_with_churn(&mut sim, e, &placed.keys);

    let records = sim.take_lookup_records();
    let ok: Vec<_> = records.iter().filter(|r| r.correct && !r.wrong).collect();
    let wrong = records.iter().filter(|r| r.wrong).count();
    let mut hops: Vec<f64> = ok.iter().map(|r| r.hops as f64).collect();
    let report = Report {
        nodes: e.nodes,
        keys: e.keys,
        lookups: e.lookups,
        seed: e.seed,
        vnodes: e.vnodes.max(1),
        replicas: e.replicas,
        successors: e.successors,
        fail: e.fail,
        churn: e.churn,
        loss: e.loss,
        latency_ms: [e.latency.0, e.latency.1].map(|d| d.as_millis() as u64),
        members_built,
        stabilize_rounds: rounds,
        settled,
        invariant_violations: sim.invariant_report().1,
        invariant_checks: sim.invariant_report().0,
        lookups_failed: e.lookups - ok.len() - wrong,
        lookups_wrong: wrong,
        lookups_retried: records.iter().filter(|r| r.attempts > 1).count(),
        keys_lost: placed.lost,
        path_length: Distribution::of(&mut hops),
        keys_per_node: placed.per_node,
        messages: sim.traffic().sent,
        sim_seconds: sim.now().since_epoch().as_secs_f64(),
    };
    (report, sim)
}

/// The simulator for `e`, before any node joins.
fn ring_for(e: &Experiment) -> Sim {
    let node = Config {
        successor_list_len: e.successors.max(1),
        stabilize_interval: e.stabilize,
        fix_fingers_interval: e.stabilize,
        request_timeout: Duration::from_millis(500),
        lookup_timeout: Duration::from_secs(30),
        ..Config::default()
    };
    Sim::new(SimConfig {
        seed: e.seed,
        node,
        loss: e.loss,
        latency_min: e.latency.0.min(e.latency.1),
        latency_max: e.latency.1.max(e.latency.0),
        vnodes: e.vnodes.max(1),
        check_every: Some(e.check_every),
        ..SimConfig::default()
    })
}

/// The keys of an experiment, where they fell, and what the crash took.
struct Placed {
    keys: Vec<Id>,
    /// Keys whose every holder crashed.
    lost: usize,
    /// Keys per live host (by its first position), before the crash.
    per_node: Distribution,
}

/// Place `e.keys` keys on their `e.replicas` holders (distinct hosts), count each live
/// host's load, then crash the fraction `e.fail` of the hosts (never all) and count the
/// keys that lost every holder.
fn place_keys_and_crash(sim: &mut Sim, e: &Experiment) -> Placed {
    let mut hosts = sim.live_hosts();
    hosts.shuffle(sim.rng());
    let crash_count = ((e.fail.clamp(0.0, 1.0) * hosts.len() as f64).round() as usize)
        .min(hosts.len().saturating_sub(1));
    let crashed: Vec<HostId> = hosts[..crash_count].to_vec();
    let mut dead = vec![false; sim.host_count()];
    for h in &crashed {
        dead[*h] = true;
    }
    let ring: Vec<(Id, HostId)> = sim.members().collect();
    let mut per_host = vec![0u64; sim.host_count()];
    let mut lost = 0;
    let keys: Vec<Id> = (0..e.keys)
        .map(|i| Id::for_key(&format!("key-{i}")))
        .collect();
    for key in &keys {
        let first = ring.partition_point(|(id, _)| id < key) % ring.len().max(1);
        let mut holders: Vec<HostId> = Vec::with_capacity(e.replicas);
        for k in 0..ring.len() {
            let h = ring[(first + k) % ring.len()].1;
            if !holders.contains(&h) {
                holders.push(h);
                if holders.len() == e.replicas.max(1) {
                    break;
                }
            }
        }
        if let Some(h) = holders.first() {
            per_host[*h] += 1;
        }
        if holders.iter().all(|h| dead[*h]) {
            lost += 1;
        }
    }
    let mut load: Vec<f64> = sim
        .live_hosts()
        .iter()
        .map(|h| per_host[*h] as f64)
        .collect();
    let per_node = Distribution::of(&mut load);
    for h in crashed {
        sim.crash(h);
    }
    Placed {
        keys,
        lost,
        per_node,
    }
}

/// `e.lookups` lookups of random keys from random members, evenly over `e.duration`,
/// with joins and crashes at `e.churn` per minute (a Poisson process) alongside; then
/// run until every lookup has finished (each attempt is bounded by the lookup timeout).
fn lookups_with_churn(sim: &mut Sim, e: &Experiment, keys: &[Id]) {
    let phase_start = sim.now();
    let mut plan: Vec<(Time, Op)> = Vec::new();
    for i in 0..e.lookups {
        let at = phase_start + e.duration.mul_f64(i as f64 / e.lookups.max(1) as f64);
        plan.push((at, Op::Lookup));
    }
    if e.churn > 0.0 {
        let rate = e.churn / 60.0; // per second
        let mut t = 0.0;
        loop {
            let u: f64 = sim.rng().random::<f64>();
            t += -(1.0 - u).ln() / rate;
            if t >= e.duration.as_secs_f64() {
                break;
            }
            let op = if sim.rng().random_bool(0.5) {
                Op::Join
            } else {
                Op::Crash
            };
            plan.push((phase_start + Duration::from_secs_f64(t), op));
        }
    }
    plan.sort_by_key(|(t, op)| (*t, *op as u8));
    for (at, op) in plan {
        sim.run_until(at);
        match op {
            Op::Lookup => {
                let key = if keys.is_empty() {
                    Id(sim.rng().random())
                } else {
                    keys[sim.rng().random_range(0..keys.len())]
                };
                if let Some(from) = sim.random_member_id() {
                    sim.lookup(from, key, e.retries);
                }
            }
            Op::Join => {
                sim.add_joining_host();
            }
            Op::Crash => {
                let live = sim.live_hosts();
                if live.len() > 1 {
                    let h = live[sim.rng().random_range(0..live.len())];
                    sim.crash(h);
                }
            }
        }
    }
    let limit = sim.now() + (Duration::from_secs(31) + Duration::from_secs(1)) * (e.retries + 1);
    while sim.lookups_in_flight() > 0 && sim.now() < limit {
        sim.run_for(e.stabilize);
    }
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Op {
    Lookup,
    Join,
    Crash,
}
