//! `chord sim`: the deterministic simulator from the command line.

use std::time::{Duration, Instant};

use crate::experiment::{Experiment, Report};

pub const EXAMPLES: &str = "Examples:
  chord sim --nodes 1000
  chord sim --nodes 10000 --keys 100000 --lookups 100000 --json
  chord sim --nodes 10000 --fail 0.5 --successors 28 --replicas 3
  chord sim --nodes 500 --churn 24 --duration 3600 --lookups 3600 --retries 3";

/// Options of `chord sim`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Number of nodes (hosts) in the ring, built by joins.
    #[arg(long, default_value_t = 1000)]
    nodes: usize,
    /// Keys to place on the ring.
    #[arg(long, default_value_t = 10_000)]
    keys: usize,
    /// Lookups from random nodes for random keys.
    #[arg(long, default_value_t = 10_000)]
    lookups: usize,
    /// Fraction of nodes crashed at once before the lookups (no repair first).
    #[arg(long, default_value_t = 0.0, value_parser = fraction)]
    fail: f64,
    /// Joins plus crashes per minute during the lookup phase.
    #[arg(long, default_value_t = 0.0)]
    churn: f64,
    /// Virtual nodes (ring positions) per host.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1000))]
    vnodes: u16,
    /// Copies of each key, on the successive distinct hosts after it.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=64))]
    replicas: u64,
    /// Successor list length r.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=64))]
    successors: u64,
    /// Seed: the same seed gives the same output.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Retries of a failed lookup, one (virtual) second apart.
    #[arg(long, default_value_t = 0)]
    retries: u32,
    /// Length of the lookup phase in virtual seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Stabilize period in virtual seconds.
    #[arg(long, default_value_t = 1.0)]
    stabilize: f64,
    /// Probability that a message is lost.
    #[arg(long, default_value_t = 0.0, value_parser = fraction)]
    loss: f64,
    /// One-way message latency in virtual milliseconds, uniform in MIN..MAX (or one
    /// fixed value).
    #[arg(long, value_name = "MIN_MS..MAX_MS", default_value = "5..50", value_parser = latency_range)]
    latency: (Duration, Duration),
    /// Check invariants every this many virtual seconds.
    #[arg(long, default_value_t = 1.0)]
    check_every: f64,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// Draw the ring at the end (after the lookups) as SVG, with the fingers of its first
    /// node.
    #[arg(long, value_name = "FILE")]
    svg: Option<std::path::PathBuf>,
}

fn fraction(s: &str) -> Result<f64, String> {
    let x: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if (0.0..=1.0).contains(&x) {
        Ok(x)
    } else {
        Err(format!("{x} is not between 0 and 1"))
    }
}

fn latency_range(s: &str) -> Result<(Duration, Duration), String> {
    let ms = |x: &str| -> Result<u64, String> {
        let v: u64 = x
            .trim()
            .parse()
            .map_err(|e| format!("{x:?} is not a whole number of milliseconds: {e}"))?;
        if v > 600_000 {
            return Err(format!("{v} ms is more than 10 minutes"));
        }
        Ok(v)
    };
    let (lo, hi) = match s.split_once("..") {
        Some((a, b)) => (ms(a)?, ms(b)?),
        None => (ms(s)?, ms(s)?),
    };
    if lo > hi {
        return Err(format!("{lo}..{hi}: the minimum is above the maximum"));
    }
    Ok((Duration::from_millis(lo), Duration::from_millis(hi)))
}

fn seconds(name: &str, x: f64) -> crate::common::Result<Duration> {
    if x.is_finite() && x > 0.0 && x < 1e9 {
        Ok(Duration::from_secs_f64(x))
    } else {
        Err(format!("--{name} must be a positive number of seconds, got {x}").into())
    }
}

pub fn run(a: &Args) -> crate::common::Result<()> {
    if a.nodes == 0 {
        return Err("--nodes must be at least 1".into());
    }
    if !(a.churn.is_finite() && a.churn >= 0.0) {
        return Err(format!("--churn must be a rate >= 0, got {}", a.churn).into());
    }
    let e = Experiment {
        nodes: a.nodes,
        keys: a.keys,
        lookups: a.lookups,
        fail: a.fail,
        churn: a.churn,
        vnodes: a.vnodes,
        replicas: a.replicas as usize,
        successors: a.successors as usize,
        seed: a.seed,
        retries: a.retries,
        duration: seconds("duration", a.duration)?,
        stabilize: seconds("stabilize", a.stabilize)?,
        check_every: seconds("check-every", a.check_every)?,
        loss: a.loss,
        latency: a.latency,
        ..Experiment::default()
    };
    let started = Instant::now();
    let (report, sim) = crate::experiment::run_sim(&e);
    if let Some(path) = &a.svg {
        let nodes: Vec<crate::svg::RingNode> = sim
            .members()
            .filter_map(|(id, h)| {
                let n = sim.node(id)?;
                Some(crate::svg::RingNode {
                    id,
                    label: sim.host_addr_of(h).to_string(),
                    successor: n.successors().first().map(|p| p.id),
                    stored: None,
                })
            })
            .collect();
        let focus = nodes.first().map(|n| n.id);
        let fingers: Vec<chord_core::Id> = focus
            .and_then(|f| sim.node(f))
            .map(|n| n.fingers().entries().iter().map(|p| p.id).collect())
            .unwrap_or_default();
        let title = format!(
            "Simulated Chord ring: {} ring positions (seed {})",
            nodes.len(),
            a.seed
        );
        let doc = crate::svg::ring(&nodes, focus.map(|f| (f, &fingers[..])), &title);
        std::fs::write(path, doc).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    if a.json {
        out!("{}", serde_json::to_string(&report)?);
    } else {
        print_table(&report, started.elapsed());
    }
    Ok(())
}

fn print_table(r: &Report, took: Duration) {
    let rows: Vec<(&str, String)> = vec![
        (
            "nodes",
            format!(
                "{} ({} vnode(s) each){}",
                r.nodes,
                r.vnodes,
                if r.members_built < r.nodes * usize::from(r.vnodes) {
                    format!("; only {} position(s) joined", r.members_built)
                } else {
                    String::new()
                }
            ),
        ),
        (
            "network",
            format!(
                "{:.1}% loss, one way {}..{} ms",
                r.loss * 100.0,
                r.latency_ms[0],
                r.latency_ms[1]
            ),
        ),
        ("keys", format!("{} ({} replicas)", r.keys, r.replicas)),
        ("successor list", r.successors.to_string()),
        (
            "stabilize rounds",
            format!(
                "{}{}",
                r.stabilize_rounds,
                if r.settled { "" } else { " (did not settle)" }
            ),
        ),
        (
            "invariants",
            format!(
                "{} violation(s) in {} checks",
                r.invariant_violations, r.invariant_checks
            ),
        ),
        ("failed at once", format!("{:.0}%", r.fail * 100.0)),
        ("churn", format!("{} per minute", r.churn)),
        (
            "lookups",
            format!(
                "{} ({} failed, {} wrong, {} retried)",
                r.lookups, r.lookups_failed, r.lookups_wrong, r.lookups_retried
            ),
        ),
        (
            "path length",
            format!(
                "mean {:.2}  p50 {}  p99 {}  max {}",
                r.path_length.mean, r.path_length.p50, r.path_length.p99, r.path_length.max
            ),
        ),
        (
            "keys per node",
            format!(
                "mean {:.1}  p1 {}  p99 {}  max {}  (p99/mean {:.2})",
                r.keys_per_node.mean,
                r.keys_per_node.p1,
                r.keys_per_node.p99,
                r.keys_per_node.max,
                if r.keys_per_node.mean > 0.0 {
                    r.keys_per_node.p99 / r.keys_per_node.mean
                } else {
                    0.0
                }
            ),
        ),
        ("keys lost", r.keys_lost.to_string()),
        ("messages", r.messages.to_string()),
        (
            "time",
            format!(
                "{:.0} s simulated in {:.1} s",
                r.sim_seconds,
                took.as_secs_f64()
            ),
        ),
    ];
    let w = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in rows {
        out!("{k:<w$}  {v}");
    }
}
