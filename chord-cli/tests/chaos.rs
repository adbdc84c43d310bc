//! Chaos: `chord node` processes join, leave gracefully and are killed with SIGKILL at
//! random while a client keeps putting and getting files. At the end the ring must be
//! consistent, every file whose upload was acknowledged must download and verify, and
//! every file must have k = 3 copies again.
//!
//! Crashes are spaced by at least the repair interval (10 s), so fewer than k holders of
//! an item die within one repair interval: no acknowledged data may be lost.
//!
//! The small run is part of `cargo test`; the large one (32 nodes, 5 minutes) is not:
//!
//! ```text
//! cargo test --release -p chord-cli --test chaos -- --ignored --nocapture
//! CHORD_CHAOS_SEED=7 ... (replays the same schedule of actions)
//! ```

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chord_tests::NodeProc;

const CHORD: &str = env!("CARGO_BIN_EXE_chord");

/// xorshift64*: a small deterministic generator for the schedule.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn content(seed: u64, len: usize) -> Vec<u8> {
    let mut r = Rng(seed | 1);
    (0..len).map(|_| r.next() as u8).collect()
}

fn chord(dir: &Path, args: &[&str]) -> std::process::Output {
    chord_tests::run_in(CHORD, dir, args)
}

#[derive(Default, Debug)]
struct Counts {
    joins: usize,
    leaves: usize,
    kills: usize,
    puts_ok: usize,
    puts_failed: usize,
    gets_ok: usize,
    gets_failed: usize,
    records_ok: usize,
    records_failed: usize,
    /// The first few failures' messages, to read.
    record_errors: Vec<String>,
}

/// One record operation of the client: a value written, or `None` for a delete, and
/// whether it was acknowledged.
type RecordOp = (Option<String>, bool);

/// The client: puts new files and gets acknowledged ones through random live nodes until
/// `stop`; returns the acknowledged files (name, content).
fn client(
    dir: &Path,
    live: &Mutex<Vec<SocketAddr>>,
    stop: &AtomicBool,
    counts: &Mutex<Counts>,
    seed: u64,
    records: &Mutex<Vec<Vec<RecordOp>>>,
) -> Vec<(String, Vec<u8>)> {
    let mut rng = Rng(seed ^ 0xc1c1_c1c1);
    let mut acked: Vec<(String, Vec<u8>)> = Vec::new();
    let mut i = 0;
    while !stop.load(Ordering::SeqCst) {
        let at = {
            let l = live.lock().expect("lock");
            l[rng.below(l.len())].to_string()
        };
        if rng.below(3) == 0 {
            // A record write or delete on one of a few keys.
            i += 1;
            let key = rng.below(RECORD_KEYS);
            let name = format!("k{key}");
            let value = (rng.below(4) != 0).then(|| format!("v{i}"));
            let out = match &value {
                Some(v) => chord(dir, &["kv", "put", &name, v, "--node", &at]),
                None => chord(dir, &["kv", "rm", &name, "--node", &at]),
            };
            // A delete of an absent record fails and changes nothing: not an operation.
            let absent =
                value.is_none() && String::from_utf8_lossy(&out.stderr).contains("no record");
            if absent {
                continue;
            }
            let mut c = counts.lock().expect("lock");
            if out.status.success() {
                c.records_ok += 1;
            } else {
                c.records_failed += 1;
                if c.record_errors.len() < 3 {
                    c.record_errors
                        .push(String::from_utf8_lossy(&out.stderr).trim().to_string());
                }
            }
            records.lock().expect("lock")[key].push((value, out.status.success()));
        } else if acked.is_empty() || rng.below(2) == 0 {
            i += 1;
            let name = format!("file{i}.bin");
            let body = content(rng.next(), 50_000 + rng.below(1_500_000));
            std::fs::write(dir.join(&name), &body).expect("write");
            let out = chord(dir, &["put", &name, "--node", &at]);
            std::fs::remove_file(dir.join(&name)).expect("rm");
            let mut c = counts.lock().expect("lock");
            if out.status.success() {
                c.puts_ok += 1;
                acked.push((name, body));
            } else {
                c.puts_failed += 1;
            }
        } else {
            let (name, body) = &acked[rng.below(acked.len())];
            let out = chord(dir, &["get", name, "--force", "--node", &at]);
            let mut c = counts.lock().expect("lock");
            if out.status.success() {
                // The client verified the hash; the bytes must be the ones put.
                assert_eq!(&std::fs::read(dir.join(name)).expect("read"), body);
                std::fs::remove_file(dir.join(name)).expect("rm");
                c.gets_ok += 1;
            } else {
                c.gets_failed += 1;
            }
        }
    }
    acked
}

/// A node of the run: in memory, with room for its share of the client's files (the
/// default of 256 MiB in memory is less than a node's share in the 32-node run).
fn start_node(join: Option<SocketAddr>) -> NodeProc {
    NodeProc::start_with(
        CHORD,
        join,
        &["--max-store", "2G"],
        std::process::Stdio::null(),
    )
}

/// Keys of the client's records.
const RECORD_KEYS: usize = 6;

fn chaos(nodes: usize, run_for: Duration, seed: u64) {
    println!("chaos: {nodes} nodes, {run_for:?}, seed {seed}");
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().to_path_buf();
    let mut rng = Rng(seed);
    let mut procs: Vec<NodeProc> = vec![start_node(None)];
    for _ in 1..nodes {
        let join = procs[rng.below(procs.len())].addr;
        procs.push(start_node(Some(join)));
    }
    let live = Arc::new(Mutex::new(procs.iter().map(|p| p.addr).collect::<Vec<_>>()));
    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(Mutex::new(Counts::default()));
    let records = Arc::new(Mutex::new(vec![Vec::<RecordOp>::new(); RECORD_KEYS]));
    let worker = {
        let (live, stop, counts, dir) = (live.clone(), stop.clone(), counts.clone(), dir.clone());
        let records = records.clone();
        std::thread::spawn(move || client(&dir, &live, &stop, &counts, seed, &records))
    };

    let start = Instant::now();
    let mut last_kill = Instant::now();
    let mut last_leave = Instant::now();
    let mut leaving: Vec<NodeProc> = Vec::new();
    while start.elapsed() < run_for {
        std::thread::sleep(Duration::from_millis(1000));
        let n = procs.len();
        let action = rng.below(10);
        if action < 4 && n < nodes + nodes / 4 {
            let join = procs[rng.below(n)].addr;
            let p = start_node(Some(join));
            live.lock().expect("lock").push(p.addr);
            procs.push(p);
            counts.lock().expect("lock").joins += 1;
        } else if action < 7
            && n > nodes - nodes / 4
            && last_leave.elapsed() > Duration::from_secs(3)
            && last_kill.elapsed() > Duration::from_secs(3)
        {
            let p = procs.remove(rng.below(n));
            live.lock().expect("lock").retain(|a| *a != p.addr);
            p.signal("-TERM"); // hands its files over, then leaves
            leaving.push(p);
            last_leave = Instant::now();
            counts.lock().expect("lock").leaves += 1;
        } else if action >= 7
            && n > nodes - nodes / 4
            && last_kill.elapsed() > Duration::from_secs(11)
            && last_leave.elapsed() > Duration::from_secs(3)
        {
            let mut p = procs.remove(rng.below(n));
            live.lock().expect("lock").retain(|a| *a != p.addr);
            p.child.kill().expect("kill -9");
            let _ = p.child.wait();
            last_kill = Instant::now();
            counts.lock().expect("lock").kills += 1;
        }
        // Reap nodes that finished leaving.
        leaving.retain_mut(|p| !matches!(p.child.try_wait(), Ok(Some(_))));
    }
    stop.store(true, Ordering::SeqCst);
    let acked = worker.join().expect("client");
    let c = std::mem::take(&mut *counts.lock().expect("lock"));
    println!("during the churn: {c:?}; {} nodes live", procs.len());
    for mut p in leaving {
        assert!(
            p.wait_exit(Duration::from_secs(30)).is_some(),
            "a leaving node did not exit"
        );
    }

    // Quiet: one consistent ring of the live nodes.
    let at = procs[0].addr.to_string();
    let t = Instant::now();
    loop {
        let out = chord(&dir, &["ring", "--json", "--node", &at]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let len = v["nodes"].as_array().map_or(0, |a| a.len());
        if v["consistent"] == true && len == procs.len() {
            println!("ring of {len} consistent {:?} after the churn", t.elapsed());
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(90),
            "ring not consistent: {len} of {} nodes",
            procs.len()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // Every acknowledged file with 3 copies again.
    let t = Instant::now();
    loop {
        let out = chord(&dir, &["ls", "--json", "--node", &at]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let short: Vec<String> = acked
            .iter()
            .filter(|(name, _)| {
                !v.as_array().is_some_and(|a| {
                    a.iter()
                        .any(|f| f["name"] == name.as_str() && f["replicas"].as_u64() == Some(3))
                })
            })
            .map(|(n, _)| n.clone())
            .collect();
        if short.is_empty() {
            println!(
                "all {} acknowledged files have 3 copies {:?} after the ring settled",
                acked.len(),
                t.elapsed()
            );
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "files without 3 copies: {short:?}"
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    // And each downloads and verifies, through a random node.
    for (name, body) in &acked {
        let at = procs[rng.below(procs.len())].addr.to_string();
        let out = chord(&dir, &["get", name, "--force", "--node", &at]);
        assert!(out.status.success(), "lost {name}: {out:?}");
        assert_eq!(&std::fs::read(dir.join(name)).expect("read"), body);
        std::fs::remove_file(dir.join(name)).expect("rm");
    }
    // Records: each key reads as its last acknowledged operation, or as an operation tried
    // after it (an unacknowledged write may still have landed). A deleted key never reads
    // as an older value, and an acknowledged write is never lost.
    let records = records.lock().expect("lock").clone();
    let mut checked = 0;
    for (key, ops) in records.iter().enumerate() {
        let Some(last) = ops.iter().rposition(|(_, ok)| *ok) else {
            continue;
        };
        let allowed: Vec<&Option<String>> = ops[last..].iter().map(|(v, _)| v).collect();
        let at = procs[rng.below(procs.len())].addr.to_string();
        let out = chord(&dir, &["kv", "get", &format!("k{key}"), "--node", &at]);
        let seen = out
            .status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).to_string());
        assert!(
            allowed.contains(&&seen),
            "record k{key} reads {seen:?}; allowed {allowed:?} (history {ops:?})"
        );
        checked += 1;
    }
    println!(
        "records: {checked} keys as last written ({} writes/deletes acknowledged, {} failed)",
        c.records_ok, c.records_failed
    );
    println!(
        "data lost: 0 of {} acknowledged files ({} puts and {} gets failed during the churn)",
        acked.len(),
        c.puts_failed,
        c.gets_failed
    );
    assert!(
        c.puts_ok > 0 && c.gets_ok > 0,
        "the client did nothing: {c:?}"
    );
}

fn seed() -> u64 {
    std::env::var("CHORD_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        })
}

#[test]
fn chaos_small() {
    chaos(8, Duration::from_secs(25), seed());
}

#[test]
#[ignore = "32 processes for 5 minutes; run with --release"]
fn chaos_32_nodes_five_minutes() {
    chaos(32, Duration::from_secs(300), seed());
}
