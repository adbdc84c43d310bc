//! Randomized fault scenarios for the invariant sweep.
//!
//! [`random_mix`] draws everything from its seed: ring size, successor list length,
//! message loss, and a stream of joins, graceful leaves and crashes. Crashes respect the
//! fault assumption of Zave's proof (a crash never takes out the last live entry of any
//! member's successor list; see [`Sim::crash_would_break_ring`]). The invariants are
//! checked every 250 ms of virtual time throughout, and at the end the ring must settle to
//! the ideal ring once faults stop.

use std::time::Duration;

use rand::Rng;

use super::{Sim, SimConfig, Time, Violation};
use crate::{Config, Id};

/// What one random scenario did and found.
#[derive(Clone, Debug, PartialEq)]
pub struct MixReport {
    /// The seed.
    pub seed: u64,
    /// Hosts at the start.
    pub initial: usize,
    /// Successor list length used.
    pub successors: usize,
    /// Message loss used during the faults.
    pub loss: f64,
    /// Joins, graceful leaves and crashes performed.
    pub joins: u32,
    /// See `joins`.
    pub leaves: u32,
    /// See `joins`.
    pub crashes: u32,
    /// Leaves and crashes skipped because they would have broken the fault assumption.
    pub crashes_refused: u32,
    /// Invariant checks made.
    pub checks: u64,
    /// Violations found (with virtual time).
    pub violations: Vec<(Time, Violation)>,
    /// Stabilization rounds to the ideal ring after the faults stopped, or `None`.
    pub settled_after: Option<u32>,
    /// Invariant checks that found an unordered appendage (measured, not a violation).
    pub appendage_disorder_checks: u64,
    /// With [`random_mix_dumping`], if it did not settle: the lists that were not exact,
    /// and the whole routing state.
    pub unsettled_dump: Option<String>,
}

impl MixReport {
    /// No violation and settled.
    pub fn is_clean(&self) -> bool {
        self.violations.is_empty() && self.settled_after.is_some()
    }
}

/// Run one random scenario.
pub fn random_mix(seed: u64) -> MixReport {
    run_mix(seed, false, Config::default().request_retries)
}

/// [`random_mix`] with [`Config::request_retries`] set: 0 is one try per request, no
/// resend (a documented option; one lost message then makes a live peer look dead).
pub fn random_mix_with_retries(seed: u64, request_retries: u32) -> MixReport {
    run_mix(seed, false, request_retries)
}

/// [`random_mix`], with the routing state of a scenario that did not settle in
/// [`MixReport::unsettled_dump`] (a debugging aid).
pub fn random_mix_dumping(seed: u64) -> MixReport {
    run_mix(seed, true, Config::default().request_retries)
}

fn run_mix(seed: u64, dump: bool, request_retries: u32) -> MixReport {
    let mut draw = rand_chacha::ChaCha8Rng::seed_from_u64_ext(seed);
    let initial = draw.random_range(3..=24);
    let successors = draw.random_range(2..=8);
    let loss = if draw.random_bool(0.5) {
        draw.random_range(0.0..0.03)
    } else {
        0.0
    };
    let mut sim = Sim::new(SimConfig {
        seed,
        node: Config {
            successor_list_len: successors,
            request_retries,
            ..Config::default()
        },
        check_every: Some(Duration::from_millis(250)),
        ..SimConfig::default()
    });
    sim.grow_to(initial);
    sim.settle(100);
    sim.set_loss(loss);
    let (mut joins, mut leaves, mut crashes, mut refused) = (0, 0, 0, 0);
    for _ in 0..60 {
        let gap = Duration::from_millis(sim.rng().random_range(100..1500));
        sim.run_for(gap);
        let live = sim.staying_hosts();
        let roll: f64 = sim.rng().random();
        if roll < 0.4 || live.len() <= 2 {
            sim.add_joining_host();
            joins += 1;
        } else {
            let h = live[sim.rng().random_range(0..live.len())];
            // A leave is a failure as far as other nodes' pointers go until its notices
            // arrive, so the fault assumption applies to both.
            if sim.crash_would_break_ring(h) {
                refused += 1;
            } else if roll < 0.7 {
                sim.leave(h);
                leaves += 1;
            } else {
                sim.crash(h);
                crashes += 1;
            }
        }
    }
    sim.set_loss(0.0);
    let settled_after = sim.settle(200);
    let unsettled_dump = (settled_after.is_none() && dump)
        .then(|| format!("{:?}\n{}", sim.not_ideal_counts(), sim.dump()));
    let (checks, _, violations) = sim.invariant_report();
    MixReport {
        seed,
        initial,
        successors,
        loss,
        joins,
        leaves,
        crashes,
        crashes_refused: refused,
        checks,
        violations: violations.to_vec(),
        settled_after,
        appendage_disorder_checks: sim.appendage_disorder_checks(),
        unsettled_dump,
    }
}

/// Seeding helper so the scenario's own draws differ from the simulator's stream.
trait SeedExt {
    fn seed_from_u64_ext(seed: u64) -> Self;
}

impl SeedExt for rand_chacha::ChaCha8Rng {
    fn seed_from_u64_ext(seed: u64) -> Self {
        use rand::SeedableRng;
        rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_5eed_5eed_5eed)
    }
}

/// Settings of the hunting sweep ([`hunt`]): the ranges each seed draws from.
#[derive(Clone, Debug)]
pub struct HuntConfig {
    /// Largest message loss drawn during the faults (a third of the seeds have none).
    pub max_loss: f64,
    /// Largest one-way latency drawn (a seed draws its own range below it).
    pub max_latency: Duration,
    /// Largest number of ring positions per host drawn.
    pub max_vnodes: u16,
    /// Refuse graceful leaves that would break the fault assumption, as crashes are (on
    /// by default). A leaver tells only its predecessor and successor; the nodes further
    /// back that list it see a failure, so unguarded bursts of neighbouring leaves can
    /// still empty a list (see docs/correctness.md, "what the sweeps do not cover").
    pub guard_leaves: bool,
    /// Operations (joins, leaves, crashes) per seed.
    pub operations: u32,
    /// Ring positions to trace (id prefixes in hex, e.g. `ab12`): each operation, and
    /// the predecessor and successor list of those positions whenever they change
    /// (looked at every 20 ms of virtual time), go to [`HuntReport::trace`]. Empty: off.
    /// Tracing runs in small steps and shifts the healing figures a little.
    pub trace: Vec<String>,
    /// Keep the lists that were not exact of a seed that did not settle, in
    /// [`HuntReport::unsettled_dump`].
    pub dump_unsettled: bool,
    /// A ring not healed within 60 s is followed for up to this many more stabilization
    /// rounds ([`HuntReport::healed_late`]); 0 (the default) does not follow it. It still
    /// counts as not healed within 60 s; the invariant checks keep running meanwhile.
    pub heal_beyond_rounds: u32,
}

impl Default for HuntConfig {
    fn default() -> HuntConfig {
        HuntConfig {
            max_loss: 0.10,
            max_latency: Duration::from_millis(200),
            max_vnodes: 4,
            guard_leaves: true,
            operations: 60,
            trace: Vec::new(),
            dump_unsettled: false,
            heal_beyond_rounds: 0,
        }
    }
}

/// What one hunting scenario did and found.
#[derive(Clone, Debug, PartialEq)]
pub struct HuntReport {
    /// The seed.
    pub seed: u64,
    /// Hosts at the start (1 to 24).
    pub initial: usize,
    /// Ring positions per host.
    pub vnodes: u16,
    /// Successor list length (the lower bound when adaptive).
    pub successors: usize,
    /// Was the successor list length adaptive?
    pub adaptive: bool,
    /// Message loss during the faults.
    pub loss: f64,
    /// One-way latency range, in milliseconds.
    pub latency_ms: (u64, u64),
    /// Joins, graceful leaves and crashes performed.
    pub joins: u32,
    /// See `joins`.
    pub leaves: u32,
    /// See `joins`.
    pub crashes: u32,
    /// Crashes (and leaves, with `guard_leaves`) refused by the fault assumption.
    pub refused: u32,
    /// Invariant checks made.
    pub checks: u64,
    /// Violations found (the first 100, with virtual time).
    pub violations: Vec<(Time, Violation)>,
    /// Lookups issued while faults happened.
    pub lookups_churn: usize,
    /// Of those, answered `Ok` with an owner that was not the key's live owner.
    pub wrong_churn: usize,
    /// Of those, failed (an error or no answer).
    pub failed_churn: usize,
    /// Lookups issued once the ring had settled after the faults.
    pub lookups_quiet: usize,
    /// Of those, wrong-but-Ok (must be 0).
    pub wrong_quiet: usize,
    /// Of those, failed (must be 0).
    pub failed_quiet: usize,
    /// Stabilization rounds after loss stopped until every successor list and predecessor
    /// was exact (the ring healed), or `None` if not within 60 s.
    pub healed_after: Option<u32>,
    /// Rounds until the fingers were exact too, within the same 60 s, or `None`.
    pub settled_after: Option<u32>,
    /// Not healed within 60 s, followed [`HuntConfig::heal_beyond_rounds`] more: the
    /// rounds after loss stopped until it healed, or `None` if not by then either.
    pub healed_late: Option<u32>,
    /// The routing state at the first violation (debugging aid).
    pub first_violation_dump: Option<String>,
    /// If it did not settle (fingers included): members whose list, and whose
    /// predecessor, were not exact, and the fraction with exact fingers.
    pub unsettled: Option<(usize, usize, f64)>,
    /// With [`HuntConfig::dump_unsettled`], if it did not settle: the inexact lists.
    pub unsettled_dump: Option<String>,
    /// With [`HuntConfig::trace`]: the operations and the traced positions' changes.
    pub trace: Vec<String>,
}

impl HuntReport {
    /// No violation, the ring healed, and every lookup at quiescence right. (Exact
    /// fingers are reported apart, in `settled_after`: they only make lookups shorter.)
    pub fn is_clean(&self) -> bool {
        self.violations.is_empty()
            && self.healed_after.is_some()
            && self.wrong_quiet == 0
            && self.failed_quiet == 0
    }
}

/// One scenario of the hunting sweep: small rings down to one host, virtual nodes,
/// adaptive `r`, loss, latency, operations as close as 5 ms and in bursts, graceful leaves
/// the fault guard does not refuse, and lookups judged against the true owner throughout.
/// At the end loss stops; the ring must heal (exact successor lists and predecessors)
/// within 60 simulated seconds, and then every lookup must return the true owner.
pub fn hunt(seed: u64, cfg: &HuntConfig) -> HuntReport {
    let (mut sim, mut r) = hunt_ring(seed, cfg);
    let mut trace = Trace::new(&cfg.trace);
    let mut lookups = KeyStream(0);
    hunt_faults(&mut sim, &mut r, cfg, &mut trace, &mut lookups);
    sim.set_loss(0.0);
    if trace.is_on() {
        // The first seconds of the repair too (this shifts the healing figures).
        trace.run(&mut sim, Duration::from_secs(10));
    }
    hunt_judge(&mut sim, &mut r, cfg, &mut lookups);
    r.trace = trace.lines;
    r
}

/// Keys for the hunt's lookups, a new one each time.
struct KeyStream(u64);

impl KeyStream {
    /// `n` lookups of new keys, each from a random member; the keys started.
    fn look_up(&mut self, sim: &mut Sim, n: usize) -> Vec<Id> {
        let mut keys = Vec::new();
        for _ in 0..n {
            if let Some(from) = sim.random_member_id() {
                self.0 += 1;
                let key = Id::for_key(&format!("hunt-{}", self.0));
                sim.lookup(from, key, 0);
                keys.push(key);
            }
        }
        keys
    }
}

/// The ring a hunting seed starts from, settled, with its loss set; and its report, so
/// far only what was drawn.
fn hunt_ring(seed: u64, cfg: &HuntConfig) -> (Sim, HuntReport) {
    let mut draw = rand_chacha::ChaCha8Rng::seed_from_u64_ext(seed ^ 0x4875_6e74);
    let initial = if draw.random_bool(0.3) {
        draw.random_range(1..=4)
    } else {
        draw.random_range(5..=24)
    };
    let vnodes = if cfg.max_vnodes > 1 && draw.random_bool(0.3) {
        draw.random_range(2..=cfg.max_vnodes)
    } else {
        1
    };
    let successors = draw.random_range(2..=8);
    let adaptive = draw.random_bool(0.2);
    let loss = match draw.random_range(0..3) {
        0 => 0.0,
        1 => draw.random_range(0.0..=cfg.max_loss / 2.0),
        _ => draw.random_range(cfg.max_loss / 2.0..=cfg.max_loss),
    };
    let max_ms = cfg.max_latency.as_millis().max(1) as u64;
    let hi = if draw.random_bool(0.5) {
        max_ms.min(50)
    } else {
        draw.random_range(1..=max_ms)
    };
    let lo = draw.random_range(0..=hi);
    let mut sim = Sim::new(SimConfig {
        seed,
        node: Config {
            successor_list_len: successors,
            adaptive_successor_list: adaptive,
            ..Config::default()
        },
        latency_min: Duration::from_millis(lo),
        latency_max: Duration::from_millis(hi),
        vnodes,
        check_every: Some(Duration::from_millis(250)),
        ..SimConfig::default()
    });
    sim.grow_to(initial);
    sim.settle(100);
    sim.set_loss(loss);
    let r = HuntReport {
        seed,
        initial,
        vnodes,
        successors,
        adaptive,
        loss,
        latency_ms: (lo, hi),
        joins: 0,
        leaves: 0,
        crashes: 0,
        refused: 0,
        checks: 0,
        violations: Vec::new(),
        lookups_churn: 0,
        wrong_churn: 0,
        failed_churn: 0,
        lookups_quiet: 0,
        wrong_quiet: 0,
        failed_quiet: 0,
        healed_after: None,
        healed_late: None,
        settled_after: None,
        first_violation_dump: None,
        unsettled: None,
        unsettled_dump: None,
        trace: Vec::new(),
    };
    (sim, r)
}

/// The faults: `cfg.operations` joins, leaves and crashes, 5 ms to 1.5 s apart and
/// sometimes in bursts, with two lookups before each.
fn hunt_faults(
    sim: &mut Sim,
    r: &mut HuntReport,
    cfg: &HuntConfig,
    trace: &mut Trace,
    lookups: &mut KeyStream,
) {
    let mut burst = 0;
    for _ in 0..cfg.operations {
        let gap = if burst > 0 {
            burst -= 1;
            Duration::from_millis(5)
        } else {
            if sim.rng().random_bool(0.15) {
                burst = sim.rng().random_range(1..=3);
            }
            Duration::from_millis(sim.rng().random_range(5..1500))
        };
        trace.run(sim, gap);
        lookups.look_up(sim, 2);
        let live = sim.live_hosts();
        let roll: f64 = sim.rng().random();
        if roll < 0.4 || live.is_empty() {
            sim.add_joining_host();
            r.joins += 1;
            continue;
        }
        let h = live[sim.rng().random_range(0..live.len())];
        let leave = roll < 0.7;
        if live.len() == 1 && !leave {
            // Crashing the last host ends the ring; leaving it alone is covered below.
            continue;
        }
        // The last host with ring members never goes (hosts still leaving are alive but
        // hold no members).
        let last = sim.members().all(|(id, m)| m == h || sim.is_leaving(id));
        if last || ((!leave || cfg.guard_leaves) && sim.crash_would_break_ring(h)) {
            r.refused += 1;
        } else if leave {
            trace.op(sim, "leave", h);
            sim.leave(h);
            r.leaves += 1;
        } else {
            trace.op(sim, "crash", h);
            sim.crash(h);
            r.crashes += 1;
        }
    }
}

/// Stabilization rounds (of 1 s) a ring has to heal, and settle, once loss has stopped.
const HEAL_ROUNDS: u32 = 60;

/// Once loss has stopped: how long the ring takes to heal and settle (60 s at most),
/// how the lookups issued during the faults fared, then 20 lookups at quiescence, and
/// the invariant checks' findings.
fn hunt_judge(sim: &mut Sim, r: &mut HuntReport, cfg: &HuntConfig, lookups: &mut KeyStream) {
    // Lookups in flight finish (each within its timeout) while the ring heals.
    r.healed_after = sim.heal(HEAL_ROUNDS);
    r.settled_after = r
        .healed_after
        .and_then(|h| sim.settle(HEAL_ROUNDS - h).map(|more| h + more));
    if r.settled_after.is_none() {
        let (lists, preds) = sim.not_ideal_counts();
        r.unsettled = Some((lists, preds, sim.finger_accuracy()));
        if cfg.dump_unsettled {
            r.unsettled_dump = Some(sim.dump_not_ideal());
        }
    }
    if r.healed_after.is_none() && cfg.heal_beyond_rounds > 0 {
        r.healed_late = sim
            .heal(cfg.heal_beyond_rounds)
            .map(|more| HEAL_ROUNDS + more);
    }
    sim.run_for(Duration::from_secs(12));
    let mut churn = sim.take_lookup_records();
    if r.healed_after.is_some() {
        let keys = lookups.look_up(sim, 20);
        sim.run_for(Duration::from_secs(12));
        // A lookup still running is not a failure: each ends by itself (an answer, an
        // error, or its deadline, at most three lookup timeouts with the extensions an
        // answered step earns). At up to 1 s one way a path of six round trips takes
        // 13 s, and the 12 s this used to wait counted it as failed (seed 25406).
        let limit = sim.cfg.node.lookup_timeout * 3 + Duration::from_secs(1);
        let mut waited = Duration::from_secs(12);
        while sim.lookups_in_flight() > 0 && waited < limit {
            sim.run_for(Duration::from_secs(1));
            waited += Duration::from_secs(1);
        }
        // Lookups of the faults that ended only now count with those.
        let (quiet, late): (Vec<_>, Vec<_>) = sim
            .take_lookup_records()
            .into_iter()
            .partition(|l| keys.contains(&l.key));
        churn.extend(late);
        r.lookups_quiet = quiet.len();
        r.wrong_quiet = quiet.iter().filter(|l| l.wrong).count();
        r.failed_quiet = 20 - quiet.iter().filter(|l| l.correct).count();
    }
    r.lookups_churn = churn.len();
    r.wrong_churn = churn.iter().filter(|l| l.wrong).count();
    r.failed_churn = churn.iter().filter(|l| !l.correct && !l.wrong).count();
    let (checks, _, violations) = sim.invariant_report();
    r.checks = checks;
    r.violations = violations.to_vec();
    r.first_violation_dump = sim.first_violation_dump().map(str::to_owned);
}

/// [`HuntConfig::trace`]: each operation of a hunt, and the predecessor and successor
/// list of every ring position whose id starts with one of the prefixes whenever they
/// change. How seeds 7716 and 8266 were taken apart; see docs/correctness.md.
struct Trace {
    prefixes: Vec<String>,
    last: Vec<String>,
    lines: Vec<String>,
}

impl Trace {
    fn new(prefixes: &[String]) -> Trace {
        Trace {
            prefixes: prefixes.to_vec(),
            last: Vec::new(),
            lines: Vec::new(),
        }
    }

    fn is_on(&self) -> bool {
        !self.prefixes.is_empty()
    }

    fn op(&mut self, sim: &Sim, what: &str, h: usize) {
        if self.is_on() {
            let ids: Vec<Id> = sim.host_nodes(h).map(|n| n.me().id).collect();
            let line = format!("trace {:?}: {what} host {h} {ids:?}", sim.now());
            self.lines.push(line);
        }
    }

    /// Run `gap` (in 20 ms steps when tracing).
    fn run(&mut self, sim: &mut Sim, gap: Duration) {
        if !self.is_on() {
            sim.run_for(gap);
            return;
        }
        let mut left = gap;
        while left > Duration::ZERO {
            let step = left.min(Duration::from_millis(20));
            sim.run_for(step);
            left -= step;
            let now: Vec<String> = sim
                .members()
                .filter_map(|(id, _)| {
                    let hex = id.to_string();
                    if !self.prefixes.iter().any(|p| hex.starts_with(p.as_str())) {
                        return None;
                    }
                    let n = sim.node(id)?;
                    let succ: Vec<Id> = n.successors().iter().map(|p| p.id).collect();
                    Some(format!(
                        "{id:?} leaving {} pred {:?} succ {succ:?}",
                        n.is_leaving(),
                        n.predecessor().map(|p| p.id)
                    ))
                })
                .collect();
            if now != self.last {
                for line in &now {
                    self.lines.push(format!("trace {:?}:   {line}", sim.now()));
                }
                self.last = now;
            }
        }
    }
}
