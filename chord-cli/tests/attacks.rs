//! Attacks on a `chord node` process, for docs/benchmarks.md (issue 13's targets). Not part
//! of `cargo test` (they open thousands of connections and take minutes):
//!
//! ```text
//! cargo test --release -p chord-cli --test attacks -- --ignored --nocapture --test-threads 1
//! ```
//!
//! A ring of three `chord node` processes on 127.0.0.1; the attacker connects from
//! 127.0.0.2-5 (as the issue's probes did). Throughout each attack a prober asks the
//! attacked node for its status and a lookup every 50 ms from 127.0.0.1, the ring is
//! checked from the other nodes, and the attacked node's RSS is sampled. Every loop is
//! bounded in time; every process is killed when its handle drops. Needs `ulimit -n` above
//! 1,100.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chord_core::Id;
use chord_files::manifest::{hash, ItemKey};
use chord_files::wire::FilesRequest;
use chord_net::frame::encode;
use chord_net::wire::{ClientRequest, Frame, Hello, HelloReply};
use chord_net::Client;
use chord_tests::{ring_is_consistent, NodeProc};
use futures_lite::future::block_on;

const CHORD: &str = env!("CARGO_BIN_EXE_chord");

fn percentile(xs: &mut [f64], p: f64) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.sort_by(|a, b| a.total_cmp(b));
    let k = ((p * xs.len() as f64).ceil() as usize).clamp(1, xs.len());
    xs[k - 1]
}

/// A client connection from 127.0.0.`2 + i % 4`, past the handshake, non-blocking.
fn attacker(i: usize, to: SocketAddr) -> Option<TcpStream> {
    let ip = std::net::Ipv4Addr::new(127, 0, 0, 2 + (i % 4) as u8);
    match chord_tests::raw_handshake(ip.into(), to, &Hello::client()).ok()? {
        (s, HelloReply::Welcome { .. }) => {
            s.set_nonblocking(true).ok()?;
            Some(s)
        }
        (_, HelloReply::Refused(_)) => None,
    }
}

/// What the probes saw while an attack ran.
struct Seen {
    latencies_ms: Vec<f64>,
    failures: usize,
    broken_checks: usize,
    checks: usize,
    peak_rss_mib: f64,
}

/// Probe `nodes[0]` (status and a lookup every 50 ms), check the ring from the others and
/// sample the node's RSS, until `stop`.
fn probe(nodes: &[NodeProc], stop: Arc<AtomicBool>) -> Seen {
    let target = nodes[0].addr;
    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.addr).collect();
    let mut seen = Seen {
        latencies_ms: Vec::new(),
        failures: 0,
        broken_checks: 0,
        checks: 0,
        peak_rss_mib: 0.0,
    };
    let mut last_check = Instant::now();
    let mut k = 0u64;
    while !stop.load(Ordering::Relaxed) {
        k += 1;
        let t = Instant::now();
        let ok = block_on(async {
            let mut c = Client::connect(target).await.ok()?;
            c.status().await.ok()?;
            c.lookup(Id::for_key(&format!("probe{k}"))).await.ok()
        });
        match ok {
            Some(_) => seen.latencies_ms.push(t.elapsed().as_secs_f64() * 1000.0),
            None => seen.failures += 1,
        }
        seen.peak_rss_mib = seen.peak_rss_mib.max(nodes[0].rss_kib() as f64 / 1024.0);
        if last_check.elapsed() > Duration::from_secs(1) {
            last_check = Instant::now();
            seen.checks += 1;
            if !block_on(ring_is_consistent(&addrs)) {
                seen.broken_checks += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    seen
}

fn report(name: &str, mut seen: Seen, nodes: &[NodeProc]) {
    let p50 = percentile(&mut seen.latencies_ms, 0.50);
    let p99 = percentile(&mut seen.latencies_ms, 0.99);
    println!(
        "{name}: attacked node peak RSS {:.0} MiB (after: {:.0} MiB); probes (status + lookup) \
         p50 {p50:.1} ms, p99 {p99:.1} ms, {} failed of {}; ring broken in {} of {} checks",
        seen.peak_rss_mib,
        nodes[0].rss_kib() as f64 / 1024.0,
        seen.failures,
        seen.failures + seen.latencies_ms.len(),
        seen.broken_checks,
        seen.checks
    );
}

fn ring() -> Vec<NodeProc> {
    let a = NodeProc::start(CHORD, None);
    let b = NodeProc::start(CHORD, Some(a.addr));
    let c = NodeProc::start(CHORD, Some(a.addr));
    let nodes = vec![a, b, c];
    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.addr).collect();
    block_on(chord_tests::wait_consistent_at(
        &addrs,
        Duration::from_secs(30),
    ))
    .expect("ring consistent");
    nodes
}

/// Run `attack` on its own thread for `secs` while probing.
fn under_attack(
    name: &str,
    nodes: &[NodeProc],
    secs: u64,
    attack: impl FnOnce(SocketAddr, Instant) + Send + 'static,
) {
    let stop = Arc::new(AtomicBool::new(false));
    let target = nodes[0].addr;
    let end = Instant::now() + Duration::from_secs(secs);
    let attacker = std::thread::spawn(move || attack(target, end));
    let s2 = stop.clone();
    let stopper = std::thread::spawn(move || {
        while Instant::now() < end {
            std::thread::sleep(Duration::from_millis(100));
        }
        s2.store(true, Ordering::Relaxed);
    });
    let seen = probe(nodes, stop);
    let _ = stopper.join();
    let _ = attacker.join();
    report(name, seen, nodes);
}

/// Open 1,000 attacking connections to `to`, do `then` on each, and hold them until `end`.
fn hold_thousand(to: SocketAddr, end: Instant, then: impl Fn(&mut TcpStream)) {
    let mut held = Vec::new();
    for i in 0..1000 {
        if let Some(mut s) = attacker(i, to) {
            then(&mut s);
            held.push(s);
        }
    }
    println!("  {} attacking connections admitted", held.len());
    while Instant::now() < end {
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
#[ignore = "attack benchmark"]
fn unread_answers_on_a_thousand_connections() {
    let nodes = ring();
    let dir = tempfile::tempdir().expect("tmp");
    // One 1 MiB chunk to ask for.
    let data: Vec<u8> = chord_tests::random_bytes(1 << 20, 7);
    std::fs::write(dir.path().join("blob"), &data).expect("write");
    let at = nodes[0].addr.to_string();
    let out = chord_tests::run_in(CHORD, dir.path(), &["put", "blob", "--node", &at]);
    assert!(out.status.success(), "{out:?}");
    let req = chord_files::encode(&FilesRequest::Fetch {
        key: ItemKey::Chunk(hash(&data)),
    })
    .expect("encode");
    under_attack(
        "unread answers, 1,000 connections x 8 Fetch of 1 MiB",
        &nodes,
        20,
        move |to, end| {
            hold_thousand(to, end, |s| {
                for id in 0..8 {
                    let f = Frame::ServiceRequest {
                        id,
                        service: chord_files::SERVICE,
                        body: req.clone(),
                    };
                    let _ = s.write_all(&encode(&f).expect("encode"));
                }
            })
        },
    );
}

#[test]
#[ignore = "attack benchmark"]
fn eight_mib_headers_on_a_thousand_connections() {
    let nodes = ring();
    under_attack(
        "8 MiB length prefixes, 1,000 connections",
        &nodes,
        20,
        |to, end| {
            hold_thousand(to, end, |s| {
                let _ = s.write_all(&[0x00, 0x80, 0x00, 0x00, 1, 2, 3, 4]);
            })
        },
    );
}

#[test]
#[ignore = "attack benchmark"]
fn a_minute_of_pipelined_lookups() {
    let nodes = ring();
    under_attack(
        "pipelined lookup flood, 4 connections, 60 s",
        &nodes,
        60,
        |to, end| {
            let flooders: Vec<_> = (0..4)
                .map(|i| {
                    std::thread::spawn(move || {
                        use std::io::Read;
                        let Some(s) = attacker(i, to) else {
                            return (0u64, 0usize);
                        };
                        let _ = s.set_nonblocking(false);
                        let _ = s.set_write_timeout(Some(Duration::from_millis(200)));
                        let mut r = s.try_clone().expect("clone");
                        let _ = r.set_read_timeout(Some(Duration::from_millis(200)));
                        let reader = std::thread::spawn(move || {
                            let mut n = 0usize;
                            let mut buf = vec![0u8; 1 << 16];
                            while Instant::now() < end + Duration::from_secs(1) {
                                if let Ok(k) = r.read(&mut buf) {
                                    if k == 0 {
                                        break;
                                    }
                                    n += k;
                                }
                            }
                            n
                        });
                        let mut s = s;
                        let mut id = 0u64;
                        while Instant::now() < end {
                            let mut batch = Vec::new();
                            for _ in 0..64 {
                                id += 1;
                                let f = Frame::ClientRequest {
                                    id,
                                    body: ClientRequest::Lookup {
                                        key: Id::for_key(&id.to_string()),
                                    },
                                };
                                batch.extend_from_slice(&encode(&f).expect("encode"));
                            }
                            if s.write_all(&batch).is_err() {
                                std::thread::sleep(Duration::from_millis(5));
                            }
                        }
                        drop(s);
                        (id, reader.join().unwrap_or(0))
                    })
                })
                .collect();
            let mut sent = 0;
            let mut answered = 0;
            for f in flooders {
                let (s, a) = f.join().expect("flooder");
                sent += s;
                answered += a;
            }
            println!("  flood: {sent} lookups written, {answered} bytes of answers read");
        },
    );
}

#[test]
#[ignore = "attack benchmark"]
fn a_thousand_held_connections_from_four_addresses() {
    let nodes = ring();
    let held = Arc::new(std::sync::Mutex::new(Vec::new()));
    let h2 = held.clone();
    under_attack(
        "1,000 held connections from 4 addresses",
        &nodes,
        20,
        move |to, end| {
            for i in 0..1000 {
                if let Some(s) = attacker(i, to) {
                    h2.lock().expect("lock").push(s);
                }
            }
            println!(
                "  {} held connections admitted (idle ones are reclaimed for newcomers)",
                h2.lock().expect("lock").len()
            );
            while Instant::now() < end {
                std::thread::sleep(Duration::from_millis(100));
            }
        },
    );
    // A node can still join through the attacked one.
    let joiner = NodeProc::start(CHORD, Some(nodes[0].addr));
    let mut addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.addr).collect();
    addrs.push(joiner.addr);
    let t = block_on(chord_tests::wait_consistent_at(
        &addrs,
        Duration::from_secs(30),
    ));
    println!("  a node joined through the attacked node: ring of 4 consistent after {t:?}");
    drop(held);
}
