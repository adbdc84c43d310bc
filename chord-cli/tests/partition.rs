//! A real network partition: `chord node` processes in two network namespaces joined by a
//! veth pair that this test creates (addresses 10.201.x.y exist only inside them). The
//! link goes down: each half becomes a ring of its own and keeps serving files. The link
//! comes back: the halves merge into one ring (remembered peers are probed, see
//! docs/correctness.md) and the files from both sides are found, with k copies.
//!
//! Needs root (CAP_NET_ADMIN) and iproute2's `ip`; without them it says so and passes
//! without testing anything (CI runs as root).

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use chord_tests::NodeProc;

const CHORD: &str = env!("CARGO_BIN_EXE_chord");

/// Two namespaces and the veth pair between them; deleted on drop.
struct Net {
    ns: [String; 2],
    ips: [String; 2],
    veth: [String; 2],
}

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Net {
    fn new() -> Option<Net> {
        let id = std::process::id() % 100_000;
        let net = Net {
            ns: [format!("chordA{id}"), format!("chordB{id}")],
            ips: ["10.201.0.1".into(), "10.201.0.2".into()],
            veth: [format!("cvA{id}"), format!("cvB{id}")],
        };
        if !ip(&["netns", "add", &net.ns[0]]) {
            return None;
        }
        let ok = ip(&["netns", "add", &net.ns[1]])
            && ip(&[
                "link",
                "add",
                &net.veth[0],
                "type",
                "veth",
                "peer",
                "name",
                &net.veth[1],
            ]);
        let mut ok = ok;
        for i in 0..2 {
            ok = ok
                && ip(&["link", "set", &net.veth[i], "netns", &net.ns[i]])
                && ip(&[
                    "-n",
                    &net.ns[i],
                    "addr",
                    "add",
                    &format!("{}/24", net.ips[i]),
                    "dev",
                    &net.veth[i],
                ])
                && ip(&["-n", &net.ns[i], "link", "set", "lo", "up"])
                && ip(&["-n", &net.ns[i], "link", "set", &net.veth[i], "up"]);
        }
        assert!(ok, "could create a namespace but not set up the veth pair");
        Some(net)
    }

    /// Cut (`false`) or restore (`true`) the link between the two sides.
    fn link(&self, up: bool) {
        let state = if up { "up" } else { "down" };
        for i in 0..2 {
            assert!(ip(&[
                "-n",
                &self.ns[i],
                "link",
                "set",
                &self.veth[i],
                state
            ]));
        }
    }

    fn chord(&self, side: usize, dir: &Path, args: &[&str]) -> Output {
        Command::new("ip")
            .env("CHORD_RUNTIME_DIR", chord_tests::runtime_dir())
            .env(
                "CHORD_IDENTITY",
                chord_tests::runtime_dir().join("identity"),
            )
            .args(["netns", "exec", &self.ns[side], CHORD])
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run chord")
    }

    fn node(&self, side: usize, port: u16, join: Option<SocketAddr>) -> NodeProc {
        let mut cmd = Command::new("ip");
        // Control tokens of these (killed) nodes go to the tests' own runtime directory.
        cmd.env("CHORD_RUNTIME_DIR", chord_tests::runtime_dir())
            .args(["netns", "exec", &self.ns[side], CHORD, "node"])
            .args([&self.ips[side], &port.to_string(), "--headless"]);
        if let Some(j) = join {
            cmd.args(["--join", &j.to_string()]);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        // `ip netns exec` execs chord itself, so the handle's pid is the node's.
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut line);
        }
        let addr = format!("{}:{port}", self.ips[side])
            .parse()
            .expect("address");
        assert!(line.starts_with("listening on"), "node: {line:?}");
        NodeProc { child, addr }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in &self.ns {
            ip(&["netns", "del", ns]);
        }
    }
}

/// The ring seen from `at` (on `side`): its nodes, if it is consistent.
fn ring(net: &Net, side: usize, at: SocketAddr, dir: &Path) -> Option<usize> {
    let out = net.chord(side, dir, &["ring", "--json", "--node", &at.to_string()]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    (v["consistent"] == true).then(|| v["nodes"].as_array().map_or(0, |a| a.len()))
}

fn wait_ring(net: &Net, side: usize, at: SocketAddr, n: usize, dir: &Path, limit: Duration) {
    let start = Instant::now();
    loop {
        if ring(net, side, at, dir) == Some(n) {
            println!("side {side}: ring of {n} after {:?}", start.elapsed());
            return;
        }
        assert!(
            start.elapsed() < limit,
            "side {side}: no consistent ring of {n} within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Replica counts by file name, as `chord ls --json` on `side` shows them.
fn listing(net: &Net, side: usize, at: SocketAddr, dir: &Path) -> Vec<(String, u64)> {
    let out = net.chord(side, dir, &["ls", "--json", "--node", &at.to_string()]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let mut l: Vec<(String, u64)> = v
        .as_array()
        .map(|a| {
            a.iter()
                .map(|f| {
                    (
                        f["name"].as_str().unwrap_or("").to_string(),
                        f["replicas"].as_u64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    l.sort();
    l
}

fn put(net: &Net, side: usize, at: SocketAddr, dir: &Path, name: &str, seed: u32) -> Vec<u8> {
    let bytes: Vec<u8> = (0..1_500_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 11) as u8)
        .collect();
    std::fs::write(dir.join(name), &bytes).expect("write");
    let out = net.chord(side, dir, &["put", name, "--node", &at.to_string()]);
    assert!(out.status.success(), "put {name} on side {side}: {out:?}");
    std::fs::remove_file(dir.join(name)).expect("rm");
    bytes
}

fn get(net: &Net, side: usize, at: SocketAddr, dir: &Path, name: &str) -> Vec<u8> {
    let out = net.chord(
        side,
        dir,
        &["get", name, "--force", "--node", &at.to_string()],
    );
    assert!(out.status.success(), "get {name} on side {side}: {out:?}");
    let b = std::fs::read(dir.join(name)).expect("read");
    std::fs::remove_file(dir.join(name)).expect("rm");
    b
}

#[test]
fn a_partition_splits_the_ring_and_healing_merges_it_with_its_files() {
    let Some(net) = Net::new() else {
        eprintln!("skipped: creating a network namespace needs root (CAP_NET_ADMIN) and `ip`");
        return;
    };
    let dir = tempfile::tempdir().expect("tmp");
    let dir = dir.path();
    let a0: SocketAddr = format!("{}:7001", net.ips[0]).parse().expect("addr");
    let b0: SocketAddr = format!("{}:7001", net.ips[1]).parse().expect("addr");
    let mut nodes = vec![net.node(0, 7001, None)];
    for port in [7002, 7003] {
        nodes.push(net.node(0, port, Some(a0)));
    }
    for port in [7001, 7002, 7003] {
        nodes.push(net.node(1, port, Some(a0)));
    }
    wait_ring(&net, 0, a0, 6, dir, Duration::from_secs(30));
    let before = put(&net, 0, a0, dir, "before.bin", 1);
    kv(&net, 0, a0, dir, &["put", "doc", "before"]);

    // Split: each side settles into a ring of its own and serves files stored there.
    net.link(false);
    let t = Instant::now();
    wait_ring(&net, 0, a0, 3, dir, Duration::from_secs(60));
    wait_ring(&net, 1, b0, 3, dir, Duration::from_secs(60));
    println!("split into two rings of 3 in {:?}", t.elapsed());
    let left = put(&net, 0, a0, dir, "left.bin", 2);
    let right = put(&net, 1, b0, dir, "right.bin", 3);
    // Records written on both sides: the later write has the higher sequence.
    let l = kv(&net, 0, a0, dir, &["put", "doc", "left", "--json"]);
    std::thread::sleep(Duration::from_millis(5));
    let r = kv(&net, 1, b0, dir, &["put", "doc", "right", "--json"]);
    let seq = |out: &Output| -> u64 {
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        v["seq"].as_u64().expect("seq")
    };
    let winner = if seq(&r) > seq(&l) { "right" } else { "left" };
    // "gone": written on the right, then written and deleted on the left, later.
    kv(&net, 1, b0, dir, &["put", "gone", "right"]);
    std::thread::sleep(Duration::from_millis(5));
    kv(&net, 0, a0, dir, &["put", "gone", "left"]);
    kv(&net, 0, a0, dir, &["rm", "gone"]);
    assert_eq!(get(&net, 0, a0, dir, "left.bin"), left);
    assert_eq!(get(&net, 1, b0, dir, "right.bin"), right);
    assert!(!listing(&net, 0, a0, dir)
        .iter()
        .any(|(n, _)| n == "right.bin"));

    // Heal: one ring again, seen the same from both sides, and every file from either.
    net.link(true);
    let t = Instant::now();
    wait_ring(&net, 0, a0, 6, dir, Duration::from_secs(90));
    wait_ring(&net, 1, b0, 6, dir, Duration::from_secs(30));
    println!("merged into one ring of 6 in {:?}", t.elapsed());
    let want: Vec<(String, u64)> = ["before.bin", "left.bin", "right.bin"]
        .iter()
        .map(|n| (n.to_string(), 3))
        .collect();
    let t = Instant::now();
    loop {
        let l = listing(&net, 1, b0, dir);
        if l == want {
            println!("files reconciled, 3 copies each, in {:?}", t.elapsed());
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(90),
            "after healing: {l:?}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    // The manifests are reconciled first; chunks follow as repair moves them to their new
    // holders, so right after the merge a chunk may be on none of the 2k nodes a reader
    // asks (seen in about 4 runs of 10). Each file must download within 30 s.
    for (side, at, name, want) in [
        (1, b0, "left.bin", &left),
        (0, a0, "right.bin", &right),
        (1, b0, "before.bin", &before),
    ] {
        let t = Instant::now();
        loop {
            let out = net.chord(
                side,
                dir,
                &["get", name, "--force", "--node", &at.to_string()],
            );
            if out.status.success() {
                let b = std::fs::read(dir.join(name)).expect("read");
                std::fs::remove_file(dir.join(name)).expect("rm");
                assert_eq!(&b, want, "{name} on side {side}");
                println!(
                    "{name} on side {side}: downloaded {:?} after the check",
                    t.elapsed()
                );
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "get {name} on side {side}: {out:?}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    // The highest sequence wins everywhere, and the delete holds, once repair has run.
    let t = Instant::now();
    loop {
        let doc: Vec<Output> = [(0, a0), (1, b0)]
            .iter()
            .map(|(side, at)| {
                net.chord(*side, dir, &["kv", "get", "doc", "--node", &at.to_string()])
            })
            .collect();
        let gone: Vec<Output> = [(0, a0), (1, b0)]
            .iter()
            .map(|(side, at)| {
                net.chord(
                    *side,
                    dir,
                    &["kv", "get", "gone", "--node", &at.to_string()],
                )
            })
            .collect();
        let agreed = doc.iter().all(|o| o.stdout == winner.as_bytes())
            && gone.iter().all(|o| o.status.code() == Some(1));
        if agreed {
            println!(
                "records agree on both sides {:?} after the check",
                t.elapsed()
            );
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "records after healing: doc {:?}, gone {:?}",
            doc.iter()
                .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
                .collect::<Vec<_>>(),
            gone.iter().map(|o| o.status.code()).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    drop(nodes);
}

/// `chord kv ARGS` on `side` through `at`; must succeed.
fn kv(net: &Net, side: usize, at: SocketAddr, dir: &Path, args: &[&str]) -> Output {
    let mut all = vec!["kv"];
    all.extend_from_slice(args);
    let at = at.to_string();
    all.extend_from_slice(&["--node", &at]);
    let out = net.chord(side, dir, &all);
    assert!(out.status.success(), "kv {args:?} on side {side}: {out:?}");
    out
}
