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
use crate::Config;

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
}

impl MixReport {
    /// No violation and settled.
    pub fn is_clean(&self) -> bool {
        self.violations.is_empty() && self.settled_after.is_some()
    }
}

/// Run one random scenario.
pub fn random_mix(seed: u64) -> MixReport {
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
        let live = sim.live_hosts();
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
