//! Protocol scenarios through the simulator: every test runs the invariant checker.

use super::*;

fn sim(seed: u64) -> Sim {
    Sim::new(SimConfig {
        seed,
        ..SimConfig::default()
    })
}

fn assert_clean(sim: &Sim) {
    let (checks, count, first) = sim.invariant_report();
    assert!(checks > 0, "the invariant checker never ran");
    assert_eq!(count, 0, "invariant violations: {first:?}");
}

#[test]
fn ring_of_one_two_three() {
    let mut s = sim(1);
    s.add_joining_host();
    assert_eq!(s.settle(5), Some(0));
    s.add_joining_host();
    assert!(
        s.settle(20).is_some(),
        "two nodes did not settle:\n{}",
        s.dump()
    );
    s.add_joining_host();
    assert!(
        s.settle(20).is_some(),
        "three nodes did not settle:\n{}",
        s.dump()
    );
    assert_eq!(s.member_count(), 3);
    assert_clean(&s);
}

#[test]
fn grows_by_joins_and_settles() {
    let mut s = sim(2);
    s.grow_to(64);
    let rounds = s.settle(100).expect("ring did not settle");
    assert!(rounds < 100);
    assert_eq!(s.member_count(), 64);
    assert!(s.is_ideal());
    assert_eq!(s.finger_accuracy(), 1.0);
    assert_clean(&s);
}

#[test]
fn lookups_find_the_responsible_node() {
    let mut s = sim(3);
    s.grow_to(50);
    s.settle(100).expect("settled");
    for k in 0..200 {
        let from = s.random_member_id().expect("members");
        s.lookup(from, Id::for_key(&format!("k{k}")), 0);
    }
    s.run_for(Duration::from_secs(20));
    let recs = s.take_lookup_records();
    assert_eq!(recs.len(), 200);
    assert!(
        recs.iter().all(|r| r.correct),
        "{:?}",
        recs.iter().find(|r| !r.correct)
    );
    // O(log N) routing: nothing near N hops.
    assert!(
        recs.iter().all(|r| r.hops <= 12),
        "{:?}",
        recs.iter().map(|r| r.hops).max()
    );
    assert_clean(&s);
}

#[test]
fn crash_is_repaired() {
    let mut s = sim(4);
    s.grow_to(32);
    s.settle(100).expect("settled");
    // Crash 5 hosts, each only if the fault assumption allows it.
    let mut crashed = 0;
    for h in s.live_hosts() {
        if crashed == 5 {
            break;
        }
        if h % 3 == 0 && !s.crash_would_break_ring(h) {
            s.crash(h);
            crashed += 1;
        }
    }
    assert_eq!(crashed, 5);
    assert!(s.settle(60).is_some(), "ring did not repair");
    assert_eq!(s.member_count(), 27);
    assert_clean(&s);
}

#[test]
fn graceful_leaves_are_repaired() {
    let mut s = sim(5);
    s.grow_to(20);
    s.settle(100).expect("settled");
    for h in [1, 5, 6, 7, 12] {
        s.leave(h);
    }
    s.run_for(Duration::from_secs(3));
    for h in [1, 5, 6, 7, 12] {
        assert!(!s.is_alive(h), "host {h} did not finish leaving");
    }
    assert!(s.settle(60).is_some(), "ring did not repair after leaves");
    assert_eq!(s.member_count(), 15);
    assert_clean(&s);
}

#[test]
fn same_seed_same_run() {
    let run = |seed| {
        let mut s = Sim::new(SimConfig {
            seed,
            loss: 0.02,
            ..SimConfig::default()
        });
        s.grow_to(30);
        s.settle(50);
        for k in 0..50 {
            let from = s.random_member_id().expect("members");
            s.lookup(from, Id::for_key(&format!("k{k}")), 1);
        }
        s.run_for(Duration::from_secs(30));
        (s.traffic(), s.take_lookup_records(), s.now())
    };
    assert_eq!(run(9), run(9));
    assert_ne!(run(9).0, run(10).0);
}

/// A partition: each side repairs its lists into a ring of its own, and lookups across the
/// split cannot reach the true owner. Plain Chord would stay split after healing (nothing
/// points across any more); our nodes remember the peers that went silent and probe them,
/// so after healing the two rings merge back into one.
#[test]
fn partition_splits_the_ring_and_the_halves_merge_after_healing() {
    let mut s = sim(6);
    s.grow_to(24);
    s.settle(100).expect("settled");
    let side = |h: HostId| (h % 2) as u8;
    s.partition(side);
    s.run_for(Duration::from_secs(30));
    // Each member's successors are now all on its own side.
    for (id, h) in s.members().collect::<Vec<_>>() {
        let node = s.node(id).expect("node");
        assert!(!node.successors().is_empty());
        for p in node.successors() {
            assert_eq!(
                side(s.host_of(p.id).expect("host")),
                side(h),
                "{}",
                s.dump()
            );
        }
    }
    // Two rings: the checker reports them.
    let (_, violations, _) = s.invariant_report();
    assert!(violations > 0);
    // Lookups from side 0 for keys owned on side 1 do not find the true owner.
    let from = s
        .members()
        .find(|(_, h)| side(*h) == 0)
        .map(|(id, _)| id)
        .expect("a side-0 member");
    let keys: Vec<Id> = (0..200)
        .map(|k| Id::for_key(&format!("p{k}")))
        .filter(|k| s.responsible(*k).and_then(|o| s.host_of(o.id)).map(side) == Some(1))
        .take(20)
        .collect();
    assert_eq!(keys.len(), 20);
    for k in &keys {
        s.lookup(from, *k, 0);
    }
    s.run_for(Duration::from_secs(30));
    let recs = s.take_lookup_records();
    assert_eq!(recs.len(), 20);
    assert!(recs.iter().all(|r| !r.correct));
    // Heal: the remembered peers are probed and the rings merge into one, exact ring.
    s.partition(|_| 0);
    s.reset_violations();
    let rounds = s.settle(200);
    assert!(rounds.is_some(), "rings did not merge:\n{}", s.dump());
    assert!(s.check_invariants().is_ok());
    for k in &keys {
        s.lookup(from, *k, 0);
    }
    s.run_for(Duration::from_secs(30));
    assert!(s.take_lookup_records().iter().all(|r| r.correct));
}

/// A sample of the invariant sweep runs in every `cargo test`; the full sweep is
/// `CHORD_SWEEP_SEEDS=1000 cargo test -p chord-core --release -- --ignored sweep`.
#[test]
fn random_mix_sample_keeps_invariants() {
    for seed in 0..12 {
        let r = random_mix(seed);
        assert!(r.checks > 100, "{r:?}");
        assert!(r.joins + r.leaves + r.crashes > 40, "{r:?}");
        assert!(r.is_clean(), "seed {seed}: {r:?}");
    }
}

#[test]
#[ignore = "long: the full invariant sweep (see docs/correctness.md)"]
fn sweep() {
    let n: u64 = env_number("CHORD_SWEEP_SEEDS", 1000);
    // CHORD_MIX_DUMP=1: the routing state of any seed that did not settle.
    let dump = std::env::var("CHORD_MIX_DUMP").is_ok();
    let retries = sweep_retries();
    let mut bad = Vec::new();
    let (mut checks, mut ops, mut crashes, mut disorder) = (0, 0, 0, 0);
    for seed in 0..n {
        let r = mix(seed, retries, dump);
        if let Some(d) = &r.unsettled_dump {
            eprintln!("seed {seed} did not settle: {d}");
        }
        checks += r.checks;
        disorder += r.appendage_disorder_checks;
        ops += u64::from(r.joins + r.leaves + r.crashes);
        crashes += u64::from(r.crashes);
        if !r.is_clean() {
            bad.push(r);
        }
    }
    println!(
        "sweep: {n} seeds, {ops} joins/leaves/crashes ({crashes} crashes), {checks} invariant checks, {} unclean; {disorder} checks found an unordered appendage (measured, not enforced)",
        bad.len()
    );
    assert!(bad.is_empty(), "{:#?}", &bad[..bad.len().min(3)]);
}

#[test]
#[ignore = "debugging aid: CHORD_SEEDS=a,b,c prints a summary of each scenario"]
fn mix_summary() {
    let seeds = std::env::var("CHORD_SEEDS").unwrap_or_default();
    let retries = sweep_retries();
    for s in seeds.split(',').filter_map(|s| s.parse().ok()) {
        let r = mix(s, retries, false);
        println!(
            "seed {s}: r={} loss={:.3} initial={} j/l/c={}/{}/{} refused={} settled={:?} violations={} first={:?}",
            r.successors,
            r.loss,
            r.initial,
            r.joins,
            r.leaves,
            r.crashes,
            r.crashes_refused,
            r.settled_after,
            r.violations.len(),
            r.violations.first()
        );
    }
}

#[test]
fn adaptive_successor_list_grows_with_the_ring() {
    let mut s = Sim::new(SimConfig {
        seed: 11,
        node: crate::Config {
            successor_list_len: 4,
            adaptive_successor_list: true,
            max_successor_list_len: 32,
            ..crate::Config::default()
        },
        ..SimConfig::default()
    });
    s.grow_to(300);
    s.settle(100).expect("settled");
    // 2·log2(300) ≈ 16.5; the estimate from one list is noisy, the mean is not.
    let caps: Vec<usize> = s
        .members()
        .map(|(id, _)| s.node(id).expect("node").successor_list_capacity())
        .collect();
    let mean = caps.iter().sum::<usize>() as f64 / caps.len() as f64;
    assert!((14.0..=20.0).contains(&mean), "mean r = {mean}");
    assert!(caps.iter().all(|c| (10..=32).contains(c)), "{caps:?}");
    assert_clean(&s);
}

#[test]
fn virtual_nodes_run_on_shared_hosts() {
    let mut s = Sim::new(SimConfig {
        seed: 12,
        vnodes: 4,
        ..SimConfig::default()
    });
    s.grow_to(20);
    s.settle(100).expect("settled");
    assert_eq!(s.member_count(), 80);
    let addr = s.host_addr_of(3);
    let ids: Vec<Id> = s.host_nodes(3).map(|n| n.me().id).collect();
    assert_eq!(ids.len(), 4);
    for (v, id) in ids.iter().enumerate() {
        assert_eq!(*id, Id::for_vnode(addr, v as u16));
    }
    s.crash(3);
    assert_eq!(s.member_count(), 76);
    s.settle(60).expect("repaired");
    assert_clean(&s);
}

/// The same partition with peer memory turned off: plain Chord, which stays split.
#[test]
fn without_remembered_peers_the_halves_stay_apart() {
    let mut s = Sim::new(SimConfig {
        seed: 6,
        node: crate::Config {
            remembered_peers: 0,
            ..crate::Config::default()
        },
        ..SimConfig::default()
    });
    s.grow_to(24);
    s.settle(100).expect("settled");
    s.partition(|h| (h % 2) as u8);
    s.run_for(Duration::from_secs(30));
    s.partition(|_| 0);
    assert_eq!(s.settle(60), None);
    assert!(matches!(
        s.check_invariants(),
        Err(v) if v.contains(&Violation::Cycles(2))
    ));
}

// ----- Findings of the review under loss, latency and leaves (issue 11) -----

fn lookups_under_loss(
    seed: u64,
    nodes: usize,
    r: usize,
    loss: f64,
    lookups: usize,
) -> (usize, usize, usize) {
    let mut s = Sim::new(SimConfig {
        seed,
        node: crate::Config {
            successor_list_len: r,
            ..crate::Config::default()
        },
        ..SimConfig::default()
    });
    s.grow_to(nodes);
    s.settle(100).expect("settled");
    s.set_loss(loss);
    for k in 0..lookups {
        let from = s.random_member_id().expect("members");
        s.lookup(from, Id::for_key(&format!("w{k}")), 0);
        if k % 50 == 49 {
            s.run_for(Duration::from_millis(500));
        }
    }
    s.run_for(Duration::from_secs(30));
    let recs = s.take_lookup_records();
    let wrong = recs.iter().filter(|r| r.wrong).count();
    let failed = recs.iter().filter(|r| !r.correct && !r.wrong).count();
    (recs.len(), wrong, failed)
}

/// Finding 2: on a settled, static ring with message loss, an owner whose confirmation was
/// lost used to be skipped, and its successor (which names it as predecessor) returned as
/// the owner: 4-40 wrong answers per 4,000 lookups, none reported as failed.
#[test]
fn a_static_ring_under_loss_never_names_a_wrong_owner() {
    for seed in 1..=3 {
        for (r, loss) in [(8, 0.03), (4, 0.05)] {
            let (n, wrong, failed) = lookups_under_loss(seed, 30, r, loss, 4000);
            assert_eq!(n, 4000);
            assert_eq!(wrong, 0, "seed {seed} r {r} loss {loss}: {failed} failed");
            assert!(
                failed <= 8,
                "seed {seed} r {r} loss {loss}: {failed} failed"
            );
        }
    }
}

/// Finding 1, its second half: with `request_retries = 0` (one try per request, a
/// documented option) up to 3% loss once split a ring in two for good, with no
/// partition. The random mix (joins, leaves, crashes, loss below 3%) with no resends:
/// seed 52 (2.1% loss, r = 7) never settled and broke the ring into two cycles at the
/// pre-issue-11 build (7cc7de1; 1 of its first 1,000 seeds). The longer run:
/// `CHORD_SWEEP_RETRIES=0 CHORD_SWEEP_SEEDS=10000 ... --ignored --exact sim::tests::sweep`.
#[test]
fn without_resends_the_random_mix_stays_one_ring() {
    for seed in [52].into_iter().chain(0..12) {
        let r = random_mix_with_retries(seed, 0);
        assert!(r.is_clean(), "seed {seed}: {r:?}");
    }
}

/// Finding 3: when every other node of a small ring leaves gracefully at once (Ctrl-C in
/// every terminal but one), the survivor must end as a ring of one that answers lookups.
/// It used to keep a departed node in its list (another leaver's stale list put it back)
/// and fail every lookup for good: 91 of 200 runs with 3 nodes, 200 of 200 with 4.
#[test]
fn the_survivor_of_simultaneous_leaves_becomes_a_ring_of_one() {
    let mut stuck = Vec::new();
    for n in [2usize, 3, 4, 5] {
        for seed in 0..25 {
            let mut s = sim(1000 + seed);
            s.grow_to(n);
            s.settle(60).expect("settled");
            let hosts = s.live_hosts();
            for h in &hosts[1..] {
                s.leave(*h);
            }
            s.run_for(Duration::from_secs(30));
            let survivor = s.members().next().map(|(id, _)| id);
            if s.member_count() != 1 || s.settle(30).is_none() {
                stuck.push((n, seed, s.dump()));
                continue;
            }
            let from = survivor.expect("one member");
            for k in 0..10 {
                s.lookup(from, Id::for_key(&format!("s{k}")), 0);
            }
            s.run_for(Duration::from_secs(15));
            let recs = s.take_lookup_records();
            if recs.len() != 10 || !recs.iter().all(|r| r.correct) {
                stuck.push((n, seed, s.dump()));
            }
        }
    }
    assert!(
        stuck.is_empty(),
        "{} of 100 survivors stuck, first: {:?}",
        stuck.len(),
        stuck.first()
    );
}

/// A run that went wrong: seed, violations, the first one.
type BrokenRun = (u64, u64, Option<(Time, Violation)>);

/// Over 20 seeds: a ring of `hosts` hosts settles; the hosts at positions `crashes` (in ring
/// order from a start that moves with the seed) crash, and 20 ms later the one at `leaver`
/// leaves. Returns the runs that found a violation within `run`, or did not end exact with
/// `members` members: (seed, violations, first violation).
fn crashes_then_a_leave(
    node: Config,
    hosts: usize,
    crashes: &[usize],
    leaver: usize,
    members: usize,
    run: Duration,
) -> Vec<BrokenRun> {
    let mut broken = Vec::new();
    for seed in 0..20 {
        let mut s = Sim::new(SimConfig {
            seed: 3000 + 100 * hosts as u64 + seed,
            node: node.clone(),
            ..SimConfig::default()
        });
        s.grow_to(hosts);
        s.settle(60).expect("settled");
        let order: Vec<HostId> = s.members().map(|(_, h)| h).collect();
        let at = (seed as usize) % order.len();
        let host = |k: usize| order[(at + k) % order.len()];
        s.reset_violations();
        for &c in crashes {
            s.crash(host(c));
        }
        s.run_for(Duration::from_millis(20));
        s.leave(host(leaver));
        s.run_for(run);
        let (_, count, first) = s.invariant_report();
        if count > 0 || s.member_count() != members || !s.is_ideal() {
            broken.push((seed, count, first.first().cloned()));
        }
    }
    broken
}

/// Issue 11, unguarded leaves: the survivor's list is [L, C1, C2]; C1 and C2 crash (allowed:
/// L is alive), then L leaves before anyone noticed. L's notice used to hand its list,
/// [C1, C2], to the survivor, which then had no live successor until its own probes timed
/// out. Now L asks its list first and names C1 and C2 dead: the survivor drops them, is a
/// ring of one at once, and no check finds a list without a live entry.
#[test]
fn a_leaver_names_the_dead_entries_it_found_so_the_survivor_drops_them() {
    // Ring order: survivor (0), leaver (1), then the two that crash.
    let broken = crashes_then_a_leave(Config::default(), 4, &[2, 3], 1, 1, Duration::from_secs(20));
    assert!(
        broken.is_empty(),
        "{} of 20 broken: {broken:?}",
        broken.len()
    );
}

/// Issue 11, unguarded leaves: with r = 2, X lists [P, L]; P crashes and L leaves at once.
/// L's notice went to P (dead) and its successor; X could learn of the leave only by asking
/// L while it lingered (not at all here: no lingering), and was left with two gone entries.
/// Now a leaver whose predecessor is dead waits (a few stabilization intervals at most)
/// for the next one to rectify it, and tells that one.
#[test]
fn a_leaver_whose_predecessor_died_waits_for_the_next_one() {
    let node = Config {
        successor_list_len: 2,
        leave_linger_rounds: 0,
        ..Config::default()
    };
    // Ring order: X (0), P (1, crashes), L (2, leaves).
    let broken = crashes_then_a_leave(node, 6, &[1], 2, 4, Duration::from_secs(30));
    assert!(
        broken.is_empty(),
        "{} of 20 broken: {broken:?}",
        broken.len()
    );
}

/// The hunting sweep (see docs/correctness.md): `CHORD_HUNT_SEEDS=N`, and
/// `CHORD_HUNT_LOSS`, `CHORD_HUNT_LATENCY_MS`, `CHORD_HUNT_VNODES`,
/// `CHORD_HUNT_GUARD_LEAVES=0` to change its ranges, `CHORD_HUNT_FIRST` for the first
/// seed, `CHORD_HUNT_DUMP=1` to print the routing state at the first violation,
/// `CHORD_HUNT_DUMP_UNSETTLED=1` the inexact lists of seeds that did not settle,
/// `CHORD_HUNT_HEAL_BEYOND=N` to follow rings not healed within 60 s N more rounds,
/// `CHORD_HUNT_EXPLAIN=1` what each unclean seed's first violating list held,
/// `CHORD_HUNT_TRACE=ab12,cd34` the operations and how those positions' lists changed
/// (with one seed). Prints the per-sweep figures and the first unclean seeds.
#[test]
#[ignore = "long: the hunting sweep (see docs/correctness.md)"]
fn hunt_sweep() {
    let env = |k: &str| std::env::var(k).ok();
    let n: u64 = env_number("CHORD_HUNT_SEEDS", 1000);
    let first: u64 = env_number("CHORD_HUNT_FIRST", 0);
    let default = HuntConfig::default();
    let cfg = HuntConfig {
        max_loss: env_number("CHORD_HUNT_LOSS", default.max_loss),
        max_latency: Duration::from_millis(env_number(
            "CHORD_HUNT_LATENCY_MS",
            default.max_latency.as_millis() as u64,
        )),
        guard_leaves: env("CHORD_HUNT_GUARD_LEAVES").is_none_or(|v| v != "0"),
        max_vnodes: env_number("CHORD_HUNT_VNODES", default.max_vnodes),
        trace: env("CHORD_HUNT_TRACE")
            .map(|v| v.split(',').map(str::to_owned).collect())
            .unwrap_or_default(),
        dump_unsettled: env("CHORD_HUNT_DUMP_UNSETTLED").is_some(),
        heal_beyond_rounds: env_number("CHORD_HUNT_HEAL_BEYOND", 0),
        ..default
    };
    let (mut ops, mut checks, mut bad) = (0u64, 0u64, Vec::new());
    let (mut lc, mut wc, mut fc, mut lq, mut wq, mut fq) = (0, 0, 0, 0, 0, 0);
    let (mut with_violations, mut not_healed, mut fingers_late) = (0, 0, 0);
    let mut healed_late: Vec<u32> = Vec::new();
    for seed in first..first + n {
        let r = hunt(seed, &cfg);
        for line in &r.trace {
            eprintln!("{line}");
        }
        if let Some(d) = &r.unsettled_dump {
            eprintln!("seed {seed} did not settle:\n{d}");
        }
        ops += u64::from(r.joins + r.leaves + r.crashes);
        checks += r.checks;
        lc += r.lookups_churn;
        wc += r.wrong_churn;
        fc += r.failed_churn;
        lq += r.lookups_quiet;
        wq += r.wrong_quiet;
        fq += r.failed_quiet;
        with_violations += usize::from(!r.violations.is_empty());
        not_healed += usize::from(r.healed_after.is_none());
        healed_late.extend(r.healed_late);
        fingers_late += usize::from(r.healed_after.is_some() && r.settled_after.is_none());
        if !r.is_clean() {
            bad.push(r);
        }
    }
    println!(
        "hunt: {n} seeds (loss <= {}, latency <= {:?}, guard leaves {}), {ops} operations, {checks} checks, {} unclean; lookups under faults {lc}: {wc} wrong-but-Ok, {fc} failed; at quiescence {lq}: {wq} wrong-but-Ok, {fq} failed",
        cfg.max_loss,
        cfg.max_latency,
        cfg.guard_leaves,
        bad.len()
    );
    println!(
        "hunt: seeds with violations {with_violations}, ring not healed within 60 s {not_healed}, healed but fingers not exact within 60 s {fingers_late}"
    );
    if cfg.heal_beyond_rounds > 0 {
        println!(
            "hunt: of the {not_healed} not healed within 60 s, {} healed within {} s (the slowest after {:?} s)",
            healed_late.len(),
            60 + cfg.heal_beyond_rounds,
            healed_late.iter().max()
        );
    }
    let violating: Vec<u64> = bad
        .iter()
        .filter(|r| !r.violations.is_empty())
        .map(|r| r.seed)
        .collect();
    if !violating.is_empty() {
        println!("hunt: seeds with violations: {violating:?}");
    }
    for r in bad.iter().take(env_number("CHORD_HUNT_SHOW", 5)) {
        let rounds = |x: Option<u32>| x.map_or("never".to_owned(), |n| format!("{n} rounds"));
        let late = r.healed_late.map_or(String::new(), |n| {
            format!(" (healed after {n} rounds when followed)")
        });
        let inexact = r.unsettled.map_or(String::new(), |(lists, preds, fingers)| {
            format!(
                " (at 60 s: {lists} lists and {preds} predecessors not exact, {:.0}% exact fingers)",
                fingers * 100.0
            )
        });
        println!(
            "unclean seed {}: initial {} vnodes {} r {}{} loss {:.3} latency {:?} ms joins/leaves/crashes {}/{}/{}; healed after {}{late}, fingers exact after {}{inexact}; violations {} first {:?}; at quiescence wrong {} failed {}",
            r.seed, r.initial, r.vnodes, r.successors, if r.adaptive { " (adaptive)" } else { "" },
            r.loss, r.latency_ms, r.joins, r.leaves, r.crashes, rounds(r.healed_after), rounds(r.settled_after),
            r.violations.len(), r.violations.first(), r.wrong_quiet, r.failed_quiet
        );
    }
    if env("CHORD_HUNT_EXPLAIN").is_some() {
        for r in &bad {
            let why = r
                .first_violation_dump
                .as_deref()
                .and_then(|d| d.lines().next());
            println!("seed {} first violation: {}", r.seed, why.unwrap_or("none"));
        }
    }
    if env("CHORD_HUNT_DUMP").is_some() {
        if let Some(d) = bad.first().and_then(|r| r.first_violation_dump.as_ref()) {
            println!("{d}");
        }
    }
    assert!(bad.is_empty(), "{} unclean seeds", bad.len());
}

/// A sample of the hunting sweep in every `cargo test`.
#[test]
fn hunt_sample() {
    for seed in 0..6 {
        let r = hunt(seed, &HuntConfig::default());
        assert!(r.checks > 100, "{r:?}");
        assert!(r.is_clean(), "seed {seed}: {r:?}");
    }
}

/// Seeds of the hunting sweep that found invariant violations, kept clean (the tests in
/// `node::tests` show each mechanism alone): 7716 at up to 1 s one way (a stabilize
/// fallback adopted as it was, without the joiner it named in front of it), 2106 at 9.3%
/// loss (a live successor dropped when both tries were lost, the ring wrapping twice for
/// 12 s), and 8266 at up to 1 s (both tries to a live entry lost, and a leaver still
/// checking its list adopted in its place: no change aimed at it, clean since these),
/// 13315 (a probe's live answer adopted only after two more timeouts spent on the silent
/// entry it named: meanwhile it crashed too, session 13), 28921 (a kept entry's recheck
/// lost after the entry answered the next stabilize; the silence dropped it and left a
/// crashed entry alone in the list, session 14), 13854 and 25999 (a node took the
/// list of its successor while that one checked its list before leaving, and the
/// entries of its own beyond it fell off; the leaver's entries crashed after its
/// check, session 14), 26800 (a passed-over entry's recheck answer ignored because the
/// entry it was passed over for had left meanwhile, session 15), 19377, 37062, 39028 (a
/// walk in front of the successor adopted nothing until its last step answered), 3355 at
/// up to 1 s (a leaver's notice left crashed entries while the live one passed over for
/// it was being rechecked), 5055 (a live entry silent to the probe but answering us
/// otherwise was passed over and not rechecked; all session 15); 33794 (a list left with
/// one entry dropped the live entry being rechecked, and that one entry crashed), 23113 (a
/// leaver handed over a node its list took while it waited for a predecessor, unasked;
/// session 16); 12555, 28399 and 10256 at up to 1 s (of the entries passed over, the
/// nearest two were rechecked, both crashed, and a live one heard from a moment before
/// was dropped), 21106 (a leaver named dead a live entry whose pings were all lost while
/// it answered stabilize; session 17).
/// Any change to the protocol reshuffles what a seed does, so these say little alone:
/// the sweeps over 40,000 seeds (docs/benchmarks.md) are the measure.
#[test]
fn hunting_seeds_that_found_violations_stay_clean() {
    let slow = HuntConfig {
        max_latency: Duration::from_secs(1),
        ..HuntConfig::default()
    };
    let default = HuntConfig::default();
    for (seed, cfg) in [
        (7716, &slow),
        (8266, &slow),
        (2106, &default),
        (13315, &default),
        (28921, &default),
        (13854, &default),
        (25999, &default),
        (26800, &default),
        (19377, &default),
        (37062, &default),
        (39028, &default),
        (3355, &slow),
        (5055, &default),
        (33794, &default),
        (23113, &default),
        (12555, &slow),
        (28399, &slow),
        (10256, &slow),
        (21106, &default),
    ] {
        let r = hunt(seed, cfg);
        assert!(r.violations.is_empty(), "seed {seed}: {r:?}");
    }
}

/// Rings that did not heal within 60 s after loss of up to 20% stopped (session 15):
/// 13352 and 8539 (a probed entry's answer thrown away when the question asked again was
/// lost: lists of crashed entries for good, and a ring of two), 15142 (a joiner alone
/// probed its seed once a minute), 12463 (a ring of two whose merge probes found the rest
/// of the ring mid-round, twice, and dropped it); and session 16: 11033 (a ring of two
/// joiners that knew the rest of the ring only through fingers fix_fingers replaced),
/// 11213 (a joiner took a wrong owner whose predecessor was unknown and whose list passed
/// the key; its list skipped the live part of the ring).
#[test]
fn hunting_seeds_at_twenty_percent_loss_heal() {
    let lossy = HuntConfig {
        max_loss: 0.2,
        ..HuntConfig::default()
    };
    for seed in [13352, 8539, 15142, 12463, 11033, 11213] {
        let r = hunt(seed, &lossy);
        assert!(r.healed_after.is_some(), "seed {seed}: {r:?}");
    }
}

/// The hunting sweep waited 12 s for its lookups at quiescence and counted those still
/// running as failed: at 908-989 ms one way (seed 25406, session 14) two correct lookups
/// of five and six hops answered at 13.1 and 13.4 s. It now waits for every lookup to end
/// by itself (each is bounded by its own deadline).
#[test]
fn slow_lookups_at_quiescence_are_waited_for() {
    let slow = HuntConfig {
        max_latency: Duration::from_secs(1),
        ..HuntConfig::default()
    };
    let r = hunt(25406, &slow);
    assert!(r.healed_after.is_some(), "{r:?}");
    assert_eq!(
        (r.lookups_quiet, r.wrong_quiet, r.failed_quiet),
        (20, 0, 0),
        "{r:?}"
    );
}

/// Finding 5: with adaptive r, capacities kept changing and lists stayed shorter than
/// their capacity (a list is its successor's list plus one, and neighbours' estimates
/// differ), so small rings never settled after churn: these hunting seeds (all adaptive)
/// never reached the exact ring.
#[test]
fn adaptive_successor_lists_settle_in_small_rings_after_churn() {
    for seed in [1020, 1201, 1307] {
        let r = hunt(seed, &HuntConfig::default());
        assert!(r.adaptive, "{r:?}");
        assert!(r.is_clean(), "seed {seed}: {r:?}");
    }
}

/// Finding 8 (timeouts): with one-way latencies up to 1.2 s, fixed 1 s timeouts took live
/// peers for dead ones all the time. Timeouts now follow each peer's measured round trip:
/// the ring forms and settles, and lookups at quiescence are all right (with the default
/// lookup timeout since session 7: see `slow_but_answered_lookups_are_not_cut_off`).
#[test]
fn timeouts_follow_the_round_trip_time() {
    lookups_at_quiescence_at(900..1200, 200, 60);
}

/// Session 7: at one-way latencies near 1 s a lookup of a few hops takes more than the
/// default 10 s overall (the hunting sweep at up to 1 s found 4 of 196,140 quiescent
/// lookups failing so). A lookup whose steps are answered is now given more time (each
/// answer leaves it at least half a `lookup_timeout`, up to three in all): with the
/// default `lookup_timeout`, every lookup at quiescence returns the owner.
#[test]
fn slow_but_answered_lookups_are_not_cut_off() {
    lookups_at_quiescence_at(1400..1600, 300, 90);
}

/// A 16-node ring at one-way latencies of `latency_ms`, settled within `settle_rounds`;
/// then 100 lookups from random members, given `run_secs`: none wrong, none failed, and
/// the ring clean.
fn lookups_at_quiescence_at(latency_ms: std::ops::Range<u64>, settle_rounds: u32, run_secs: u64) {
    let mut s = Sim::new(SimConfig {
        seed: 21,
        latency_min: Duration::from_millis(latency_ms.start),
        latency_max: Duration::from_millis(latency_ms.end),
        ..SimConfig::default()
    });
    s.grow_to(16);
    assert!(
        s.settle(settle_rounds).is_some(),
        "did not settle:\n{}",
        s.dump_not_ideal()
    );
    for k in 0..100 {
        let from = s.random_member_id().expect("members");
        s.lookup(from, Id::for_key(&format!("far{k}")), 0);
    }
    s.run_for(Duration::from_secs(run_secs));
    let recs = s.take_lookup_records();
    assert_eq!(recs.len(), 100);
    let wrong = recs.iter().filter(|r| r.wrong).count();
    let failed = recs.iter().filter(|r| !r.correct && !r.wrong).count();
    assert_eq!((wrong, failed), (0, 0), "lookups wrong, failed");
    assert_clean(&s);
}

/// Lookup latency with the first hop dead.
fn latency_through_a_dead_hop() -> Vec<Duration> {
    let mut s = Sim::new(SimConfig {
        seed: 31,
        ..SimConfig::default()
    });
    s.grow_to(64);
    s.settle(100).expect("settled");
    let mut out = Vec::new();
    for k in 0..40 {
        let Some(from) = s.random_member_id() else {
            break;
        };
        let key = Id::for_key(&format!("dead-hop-{k}"));
        let node = s.node(from).expect("node");
        let owner = s.responsible(key).expect("owner").id;
        let Some(hop) = node.closest_preceding_nodes(key, 1).first().copied() else {
            continue;
        };
        if hop.id == owner || node.successors().iter().any(|p| p.id == hop.id) {
            continue; // a dead successor is stabilize's business, not the lookup's
        }
        let h = s.host_of(hop.id).expect("host");
        if s.crash_would_break_ring(h) {
            continue;
        }
        s.crash(h);
        s.lookup(from, key, 0);
        s.run_for(Duration::from_secs(15));
        let r = s.take_lookup_records();
        assert_eq!(r.len(), 1);
        assert!(r[0].correct, "{:?}", r[0]);
        out.push(r[0].latency);
        if out.len() == 10 {
            break;
        }
    }
    assert_eq!(out.len(), 10);
    out
}

/// Finding 8 (lookups): a dead hop on the path cost two timeouts (a resend, then the next
/// candidate): 2.1-2.3 s for these ten lookups before. A step unanswered after twice the
/// peer's round trip now lets the lookup ask the next candidate meanwhile: every such
/// lookup finishes within 1.5 request timeouts (1 s here).
#[test]
fn a_dead_hop_costs_less_than_one_and_a_half_timeouts() {
    let took = latency_through_a_dead_hop();
    println!("dead first hop: {took:?}");
    assert!(
        took.iter().all(|l| *l <= Duration::from_millis(1500)),
        "{took:?}"
    );
}

/// Finding 6: with virtual nodes, successor lists counted positions, so one host's crash
/// took several entries: 12 hosts x 8 vnodes, r = 8, 7 random hosts crashed at once left
/// some list with no live entry in 30.5% of runs. Lists now cover r distinct hosts.
#[test]
fn with_virtual_nodes_lists_survive_r_minus_one_host_crashes() {
    let mut broken = Vec::new();
    for seed in 0..8 {
        let (mut s, checked) = crash_seven_of_twelve_vnode_hosts(700 + seed);
        if let Err(v) = checked {
            broken.push((seed, v));
        }
        // And the ring repairs from there.
        s.reset_violations();
        assert!(s.settle(100).is_some(), "seed {seed}: did not repair");
    }
    assert!(broken.is_empty(), "{broken:?}");
}

/// 12 hosts with 8 virtual nodes each (r = 8), settled; then 7 random hosts crash at
/// once. Returns the world and the invariant check made right after the crashes.
fn crash_seven_of_twelve_vnode_hosts(seed: u64) -> (Sim, Result<(), Vec<Violation>>) {
    use rand::seq::SliceRandom;
    let mut s = Sim::new(SimConfig {
        seed,
        vnodes: 8,
        ..SimConfig::default()
    });
    s.grow_to(12);
    s.settle(100).expect("settled");
    let mut hosts = s.live_hosts();
    hosts.shuffle(s.rng());
    for h in &hosts[..7] {
        s.crash(*h);
    }
    let checked = s.check_invariants();
    (s, checked)
}

/// A number from the environment variable `name`, or `default`.
fn env_number<T: std::str::FromStr>(name: &str, default: T) -> T {
    env_option(name).unwrap_or(default)
}

fn env_option<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|s| s.parse().ok())
}

/// `CHORD_SWEEP_RETRIES=0` for the random-mix sweep and `mix_summary`: one try per
/// request (`Config::request_retries`).
fn sweep_retries() -> Option<u32> {
    env_option("CHORD_SWEEP_RETRIES")
}

/// One random-mix seed: with `retries` set, that `Config::request_retries`; else the
/// default, dumping the routing state of a seed that does not settle if `dump`.
fn mix(seed: u64, retries: Option<u32>, dump: bool) -> MixReport {
    match retries {
        Some(k) => random_mix_with_retries(seed, k),
        None if dump => random_mix_dumping(seed),
        None => random_mix(seed),
    }
}

/// The figure behind finding 6: `CHORD_VNODE_RUNS=200 cargo test -p chord-core --release
/// -- --ignored vnode_host_crashes --nocapture` crashes 7 of 12 hosts (8 vnodes, r = 8)
/// at once in each run and counts runs that left a list with no live entry.
#[test]
#[ignore = "long: the virtual-node crash figure (docs/benchmarks.md)"]
fn vnode_host_crashes() {
    let runs: u64 = env_number("CHORD_VNODE_RUNS", 200);
    let broken = (0..runs)
        .filter(|seed| crash_seven_of_twelve_vnode_hosts(10_000 + seed).1.is_err())
        .count();
    println!("vnode host crashes: {broken} of {runs} runs left a list with no live entry");
    assert_eq!(broken, 0);
}

/// A partition during which every original host of one side is replaced: after healing,
/// nobody on either side has met anybody alive on the other, except through a seed (the
/// bootstrap address a node joined through, which it keeps probing). Returns whether one
/// ring formed.
fn merge_after_replacing_one_side(seed: u64) -> bool {
    let mut s = sim(seed);
    s.grow_to(12);
    s.settle(100).expect("settled");
    let side = |h: HostId| (h % 2) as u8;
    s.partition(side);
    s.run_for(Duration::from_secs(30));
    // Replace side 1's six hosts by six new ones, one at a time.
    let originals: Vec<HostId> = (0..12).filter(|h| side(*h) == 1).collect();
    for h in originals {
        s.add_joining_host_in(1);
        s.run_for(Duration::from_secs(15));
        assert!(!s.crash_would_break_ring(h), "{}", s.dump());
        s.crash(h);
        s.run_for(Duration::from_secs(15));
    }
    s.partition(|_| 0);
    s.reset_violations();
    s.settle(300).is_some() && s.check_invariants().is_ok()
}

/// Finding 7: merging depended on remembering a live peer of the other side; with every
/// original host of one side replaced during the partition, the rings never merged (10
/// of 10 seeds in the review). Nodes now keep probing the peers they joined through
/// (seeds) every `seed_probe_interval`, and forget remembered peers that stay silent.
#[test]
fn a_partition_merges_through_seeds_when_every_peer_met_across_is_gone() {
    let merged: Vec<u64> = (41..45)
        .filter(|s| merge_after_replacing_one_side(*s))
        .collect();
    assert_eq!(merged, vec![41, 42, 43, 44]);
}

/// Finding 9 (part): appendage order is measured. Under churn, appendages (members off
/// the ring) are sometimes out of order for a while: a node hangs off a ring member past
/// a node that joined in front of it, until stabilization corrects it. Zave's atomic
/// model forbids that; here it is transient, so it is counted rather than enforced. A
/// settled ring has none.
#[test]
fn appendage_order_is_measured() {
    let mut s = sim(51);
    s.grow_to(16);
    s.settle(100).expect("settled");
    assert!(s.unordered_appendages().is_empty());
    // The random-mix scenario of seed 0 shows some (r = 4, joins, leaves, crashes).
    let mut found = 0;
    for seed in 0..4 {
        found += u64::from(random_mix(seed).appendage_disorder_checks > 0);
    }
    assert!(found > 0, "no unordered appendage in four churn scenarios");
}

/// Issue 11, healing: the entries after a silent successor were asked one after the other,
/// a timeout and a resend each, so a node behind k crashed neighbours needed about 2k
/// request timeouts to find its next live one, and rings at one-way latencies near 1 s
/// (timeouts of seconds) took longer than 60 s to heal. The later entries are now asked
/// all at once and decided in list order: six crashed neighbours cost about one timeout
/// and a resend more than one did (6.1-6.2 s here until a live first successor, from
/// 12.1-12.2 s).
#[test]
fn consecutive_dead_successors_are_probed_together() {
    let mut took = Vec::new();
    for seed in 0..4 {
        let mut s = Sim::new(SimConfig {
            seed: 900 + seed,
            ..SimConfig::default()
        });
        s.grow_to(16);
        s.settle(100).expect("settled");
        let members: Vec<(Id, HostId)> = s.members().collect();
        // Six hosts in a row after the first member (r = 8: its list keeps two live).
        for (_, h) in &members[1..7] {
            s.crash(*h);
        }
        let me = s.by_id[&members[0].0];
        let start = s.now();
        let live_head = |s: &Sim| {
            s.nodes[me]
                .node
                .successors()
                .first()
                .is_some_and(|p| s.members.contains_key(&p.id))
        };
        while !live_head(&s) && s.now() - start < Duration::from_secs(60) {
            s.run_for(Duration::from_millis(100));
        }
        took.push(s.now() - start);
        assert!(s.heal(60).is_some(), "seed {seed}: did not heal");
    }
    println!("a live first successor again after 6 neighbours crashed: {took:?}");
    assert!(took.iter().all(|t| *t < Duration::from_secs(8)), "{took:?}");
}
