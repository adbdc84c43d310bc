//! Measurements for docs/benchmarks.md, on real processes. Not part of `cargo test`:
//!
//! ```text
//! cargo test --release -p chord-cli --test bench -- --ignored --nocapture
//! ```
//!
//! Network traffic goes to 127.0.0.1 only; every loop is bounded in count and time; every
//! process is killed when its handle drops.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chord_core::Id;
use chord_net::Client;
use chord_tests::{wait_consistent_at, NodeProc};
use futures_lite::future::block_on;

const CHORD: &str = env!("CARGO_BIN_EXE_chord");

/// A tiny deterministic generator (xorshift), so runs are repeatable without a dependency.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

fn wait_consistent(nodes: &[&NodeProc], limit: Duration) -> Option<Duration> {
    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.addr).collect();
    block_on(wait_consistent_at(&addrs, limit))
}

fn percentile(xs: &mut [f64], p: f64) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    let k = ((p * xs.len() as f64).ceil() as usize).clamp(1, xs.len());
    xs[k - 1]
}

#[test]
#[ignore = "benchmark: 64 node processes, about two minutes"]
fn ring_of_64_processes() {
    let n = 64;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    // CHORD_BENCH_DISTINCT_IPS=1: node i listens on 127.0.0.(i + 2) instead of every node
    // on 127.0.0.1, as hosts of a real ring would (per-address limits then apply to one
    // node each, not to the whole ring).
    let distinct = std::env::var("CHORD_BENCH_DISTINCT_IPS").is_ok_and(|v| v == "1");
    let start = |i: usize, via: Option<SocketAddr>| {
        let ip = if distinct {
            format!("127.0.0.{}", i + 2)
        } else {
            "127.0.0.1".to_string()
        };
        NodeProc::start_on(CHORD, &ip, via, &[], std::process::Stdio::null())
    };
    let t0 = Instant::now();
    let mut nodes: Vec<NodeProc> = vec![start(0, None)];
    for i in 1..n {
        let via = nodes[rng.below(nodes.len())].addr;
        nodes.push(start(i, Some(via)));
    }
    println!(
        "joins: {n} nodes joined one after another in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    let all: Vec<&NodeProc> = nodes.iter().collect();
    let settle = wait_consistent(&all, Duration::from_secs(120)).expect("ring consistent");
    println!(
        "ring consistent {:.1} s after the last join",
        settle.as_secs_f64()
    );
    if std::env::var("CHORD_BENCH_CONVERGE_ONLY").is_ok_and(|v| v == "1") {
        return;
    }

    // 1000 lookups from random nodes, checked against the ring.
    let mut ids: Vec<Id> = nodes.iter().map(|p| Id::for_addr(p.addr)).collect();
    ids.sort();
    let log2n = (n as f64).log2();
    let (mut wrong, mut max_hops, mut lat) = (0, 0, Vec::new());
    block_on(async {
        let mut clients = Vec::new();
        for p in &nodes {
            clients.push(Client::connect(p.addr).await.expect("client"));
        }
        for k in 0..1000 {
            let key = Id::for_key(&format!("bench-{k}"));
            let c = &mut clients[rng.below(n)];
            let t = Instant::now();
            let (owner, hops) = c.lookup(key).await.expect("lookup");
            lat.push(t.elapsed().as_secs_f64() * 1e3);
            let want = *ids.iter().find(|id| **id >= key).unwrap_or(&ids[0]);
            if owner.id != want {
                wrong += 1;
            }
            max_hops = max_hops.max(hops);
        }
    });
    println!(
        "lookups: 1000, wrong {wrong}, max hops {max_hops} (log2 N = {log2n:.0}), latency p50 {:.2} ms p99 {:.2} ms",
        percentile(&mut lat, 0.5),
        percentile(&mut lat, 0.99)
    );
    assert_eq!(wrong, 0);

    // Throughput through one node: 16 concurrent clients for 5 s, each on a thread of its
    // own (they were awaited one after another before 2026-11-27: one client at a time).
    let target = nodes[0].addr;
    let deadline = Instant::now() + Duration::from_secs(5);
    let done: u64 = (0..16u64)
        .map(|c| {
            std::thread::spawn(move || {
                block_on(async move {
                    let mut client = Client::connect(target).await.expect("client");
                    let mut count = 0u64;
                    while Instant::now() < deadline && count < 1_000_000 {
                        let key = Id::for_key(&format!("tp-{c}-{count}"));
                        client.lookup(key).await.expect("lookup");
                        count += 1;
                    }
                    count
                })
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().expect("client thread"))
        .sum();
    println!(
        "throughput: {:.0} lookups/s through one node (16 clients, 5 s)",
        done as f64 / 5.0
    );

    std::thread::sleep(Duration::from_secs(3));
    let mut rss: Vec<f64> = nodes.iter().map(|p| p.rss_kib() as f64 / 1024.0).collect();
    let mut anon: Vec<f64> = nodes
        .iter()
        .map(|p| p.anon_rss_kib() as f64 / 1024.0)
        .collect();
    println!(
        "idle RSS per node: median {:.1} MiB, max {:.1} MiB (private part: median {:.1}, max {:.1}; the rest is the binary's shared pages)",
        percentile(&mut rss, 0.5),
        percentile(&mut rss, 1.0),
        percentile(&mut anon, 0.5),
        percentile(&mut anon, 1.0)
    );

    // kill -9 a quarter of the nodes at once.
    let mut victims = Vec::new();
    while victims.len() < n / 4 {
        let v = 1 + rng.below(n - 1);
        if !victims.contains(&v) {
            victims.push(v);
        }
    }
    for v in &victims {
        nodes[*v].child.kill().expect("kill -9");
    }
    let t = Instant::now();
    let survivors: Vec<&NodeProc> = nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| !victims.contains(i))
        .map(|(_, p)| p)
        .collect();
    let repair = wait_consistent(&survivors, Duration::from_secs(120));
    println!(
        "kill -9 of {} nodes: consistent again after {:.1} s",
        victims.len(),
        repair.unwrap_or(t.elapsed()).as_secs_f64()
    );
    assert!(repair.is_some());
}
