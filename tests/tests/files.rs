//! File sharing on real rings of in-process nodes.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chord_files::manifest::{output_name, ItemKey};
use chord_files::transfer::{self, GetOutcome, TransferOptions};
use chord_files::{DiskStore, FilesConfig, FilesError, FilesNode, MemoryStore, Store};
use chord_tests::{any_port, fast_config, wait_consistent, wait_full_lists};
use futures_lite::future::block_on;

fn files_cfg() -> FilesConfig {
    FilesConfig {
        replicas: 3,
        repair_every: Duration::from_millis(300),
        ..FilesConfig::default()
    }
}

async fn start(join: Option<std::net::SocketAddr>, store: Arc<dyn Store>) -> FilesNode {
    let mut b = chord_net::Node::builder()
        .listen(any_port())
        .config(fast_config());
    if let Some(j) = join {
        b = b.join(j);
    }
    FilesNode::start(b, store, files_cfg())
        .await
        .expect("start")
}

async fn ring(n: usize) -> Vec<FilesNode> {
    let mut nodes: Vec<FilesNode> = Vec::new();
    for i in 0..n {
        let join = (i > 0).then(|| nodes[0].node().addr());
        nodes.push(start(join, Arc::new(MemoryStore::new(1 << 30))).await);
    }
    let handles: Vec<chord_net::Node> = nodes.iter().map(|n| n.node().clone()).collect();
    wait_consistent(&handles, Duration::from_secs(20))
        .await
        .expect("ring consistent");
    let addrs: Vec<std::net::SocketAddr> = handles.iter().map(|n| n.addr()).collect();
    assert!(
        wait_full_lists(&addrs, Duration::from_secs(20)).await,
        "successor lists not full"
    );
    nodes
}

fn data(len: usize, seed: u8) -> Vec<u8> {
    chord_tests::random_bytes(len, u64::from(seed))
}

/// The identity that owns the tests' files.
fn me() -> chord_files::Identity {
    chord_files::Identity::from_seed([5; 32])
}

fn opts() -> TransferOptions {
    TransferOptions {
        chunk_size: 64 * 1024,
        identity: Some(me()),
        ..TransferOptions::default()
    }
}

/// How many of `nodes` hold each of `keys`.
async fn copies(nodes: &[FilesNode], keys: &[ItemKey]) -> Vec<usize> {
    let mut out = Vec::new();
    for k in keys {
        let mut n = 0;
        for node in nodes {
            if node.store().has(*k).await.expect("has") {
                n += 1;
            }
        }
        out.push(n);
    }
    out
}

async fn wait_copies(
    nodes: &[FilesNode],
    keys: &[ItemKey],
    k: usize,
    limit: Duration,
) -> Vec<usize> {
    let start = Instant::now();
    loop {
        let c = copies(nodes, keys).await;
        if c.iter().all(|n| *n == k) || start.elapsed() > limit {
            return c;
        }
        async_io::Timer::after(Duration::from_millis(200)).await;
    }
}

/// The items of a file: its chunks, its manifest block and its record.
fn all_keys(m: &chord_files::Manifest) -> Vec<ItemKey> {
    let mut keys: Vec<ItemKey> = m.chunks.iter().map(|h| ItemKey::Chunk(*h)).collect();
    let block = chord_files::manifest::hash(&chord_files::encode(m).expect("encode"));
    keys.push(ItemKey::Chunk(block));
    let salt = chord_files::manifest::file_salt(&m.name);
    let owner = me().public_key();
    keys.push(ItemKey::Record(chord_files::record::record_id(
        &owner, &salt,
    )));
    keys.sort();
    keys.dedup();
    keys
}

fn put_get(
    node: std::net::SocketAddr,
    dir: &Path,
    name: &str,
    bytes: &[u8],
) -> chord_files::Manifest {
    let src = dir.join("src.bin");
    std::fs::write(&src, bytes).expect("write source");
    let rep = block_on(transfer::put(node, &src, name, &opts(), &|_| {})).expect("put");
    assert_eq!(rep.manifest.size, bytes.len() as u64);
    assert_eq!(rep.min_replicas, 3);
    let out = dir.join("out.bin");
    let _ = std::fs::remove_file(&out);
    let got = block_on(transfer::get(node, name, &out, false, &opts(), &|_, _| {})).expect("get");
    assert_eq!(got, GetOutcome::Written(out.clone()));
    assert_eq!(std::fs::read(&out).expect("read"), bytes);
    rep.manifest
}

#[test]
fn round_trips_of_every_shape() {
    let dir = tempfile::tempdir().expect("tmp");
    let nodes = block_on(ring(5));
    let at = nodes[2].node().addr();
    let chunk = 64 * 1024;
    for (name, len) in [
        ("empty", 0),
        ("one byte", 1),
        ("one chunk", chunk),
        ("three chunks exactly", 3 * chunk),
        ("three chunks and a bit", 3 * chunk + 7),
    ] {
        let m = put_get(at, dir.path(), name, &data(len, len as u8));
        assert_eq!(m.chunks.len(), len.div_ceil(chunk));
    }
    // 50 MiB with the default 1 MiB chunks, downloaded through another node.
    let big = data(50 << 20, 9);
    let src = dir.path().join("big.bin");
    std::fs::write(&src, &big).expect("write");
    let o = TransferOptions {
        identity: Some(me()),
        ..TransferOptions::default()
    };
    let rep = block_on(transfer::put(at, &src, "big.bin", &o, &|_| {})).expect("put 50 MiB");
    assert_eq!(rep.manifest.chunks.len(), 50);
    let out = dir.path().join("big.out");
    block_on(transfer::get(
        nodes[4].node().addr(),
        "big.bin",
        &out,
        false,
        &o,
        &|_, _| {},
    ))
    .expect("get 50 MiB");
    assert!(std::fs::read(&out).expect("read") == big);
    // Every item on exactly k = 3 nodes.
    let c = block_on(copies(&nodes, &all_keys(&rep.manifest)));
    assert!(c.iter().all(|n| *n == 3), "{c:?}");
    // Same content already there: nothing changes. Other content: refused without force.
    let again = block_on(transfer::get(at, "big.bin", &out, false, &o, &|_, _| {})).expect("get");
    assert_eq!(again, GetOutcome::UpToDate(out.clone()));
    std::fs::write(&out, b"something else").expect("write");
    let e =
        block_on(transfer::get(at, "big.bin", &out, false, &o, &|_, _| {})).expect_err("exists");
    assert!(matches!(e, FilesError::Exists(_)), "{e}");
    block_on(transfer::get(at, "big.bin", &out, true, &o, &|_, _| {})).expect("forced");
    assert!(std::fs::read(&out).expect("read") == big);
    // ls sees every file with its replica count; rm removes one.
    let list = block_on(transfer::ls(at, 100, &o)).expect("ls");
    assert_eq!(list.len(), 6);
    assert!(list.iter().all(|l| l.replicas == 3), "{list:?}");
    assert_eq!(block_on(transfer::rm(at, "one byte", &o)).expect("rm"), 3);
    let list = block_on(transfer::ls(at, 100, &o)).expect("ls");
    assert_eq!(list.len(), 5);
    let e = block_on(transfer::get(
        at,
        "one byte",
        &dir.path().join("x"),
        false,
        &o,
        &|_, _| {},
    ))
    .expect_err("removed");
    assert!(matches!(e, FilesError::NotFound(_)), "{e}");
    // No temporary file is left behind.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .expect("dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("chord-part"))
        .collect();
    assert!(leftovers.is_empty());
    for n in &nodes {
        n.node().kill();
    }
}

#[test]
fn hostile_names_stay_data() {
    let dir = tempfile::tempdir().expect("tmp");
    let nodes = block_on(ring(3));
    let at = nodes[0].node().addr();
    for name in ["../x", "/etc/x", "a/../../b", "dir/", "..", "\u{202e}evil"] {
        let src = dir.path().join("s");
        std::fs::write(&src, name.as_bytes()).expect("write");
        block_on(transfer::put(at, &src, name, &opts(), &|_| {})).expect("any UTF-8 name is data");
        match output_name(name) {
            Some(file) => {
                // The default output is the last component, inside the chosen directory.
                assert!(!file.contains('/') && file != ".." && !file.is_empty());
                let out = dir.path().join(file);
                block_on(transfer::get(at, name, &out, true, &opts(), &|_, _| {})).expect("get");
                assert_eq!(std::fs::read(&out).expect("read"), name.as_bytes());
            }
            None => assert!(matches!(name, "dir/" | "..")),
        }
    }
    let src = dir.path().join("s");
    for bad in ["", "a\0b"] {
        let e = block_on(transfer::put(at, &src, bad, &opts(), &|_| {})).expect_err("bad name");
        assert!(matches!(e, FilesError::BadName));
    }
    let long = "x".repeat(256);
    assert!(matches!(
        block_on(transfer::put(at, &src, &long, &opts(), &|_| {})).expect_err("too long"),
        FilesError::BadName
    ));
    for n in &nodes {
        n.node().kill();
    }
}

#[test]
fn corrupt_chunk_on_disk_is_fetched_elsewhere_and_restart_serves() {
    let dir = tempfile::tempdir().expect("tmp");
    block_on(async {
        let mut nodes = Vec::new();
        for i in 0..3 {
            let store: Arc<dyn Store> = Arc::new(
                DiskStore::open(&dir.path().join(format!("n{i}")), 1 << 30).expect("open"),
            );
            let join = (i > 0)
                .then(|| nodes.first().map(|n: &FilesNode| n.node().addr()))
                .flatten();
            nodes.push(start(join, store).await);
        }
        let handles: Vec<chord_net::Node> = nodes.iter().map(|n| n.node().clone()).collect();
        wait_consistent(&handles, Duration::from_secs(20))
            .await
            .expect("ring");
        let bytes = data(300 * 1024, 3);
        let src = dir.path().join("f");
        std::fs::write(&src, &bytes).expect("write");
        let at = nodes[0].node().addr();
        let rep = transfer::put(at, &src, "f", &opts(), &|_| {})
            .await
            .expect("put");
        // Flip a byte in every copy of the first chunk but one: all three nodes hold
        // everything (k = 3 of 3), so corrupt it on two of them.
        let h = rep.manifest.chunks[0];
        let hex: String = h.iter().map(|b| format!("{b:02x}")).collect();
        for i in 0..2 {
            let p = dir
                .path()
                .join(format!("n{i}/chunks/{}/{}/{hex}", &hex[..2], &hex[2..4]));
            let mut b = std::fs::read(&p).expect("chunk file");
            b[10] ^= 0xff;
            std::fs::write(&p, b).expect("corrupt");
        }
        let out = dir.path().join("out");
        transfer::get(at, "f", &out, false, &opts(), &|_, _| {})
            .await
            .expect("get despite corruption");
        assert_eq!(std::fs::read(&out).expect("read"), bytes);
        // Restart node 2 on the same directory and address: it serves what it stored.
        let addr = nodes[2].node().addr();
        let old = nodes.remove(2);
        old.kill();
        old.node().stopped().await;
        // Its store is let go once the node's threads are done (redb has one opener).
        drop(old);
        let store: Arc<dyn Store> =
            Arc::new(DiskStore::open(&dir.path().join("n2"), 1 << 30).expect("reopen"));
        assert!(store.has(ItemKey::Chunk(h)).await.expect("has"));
        let b = chord_net::Node::builder()
            .listen(addr)
            .config(fast_config())
            .join(at);
        let again = FilesNode::start(b, store, files_cfg())
            .await
            .expect("restart");
        let mut c = chord_net::Client::connect(addr).await.expect("client");
        let req = chord_files::encode(&chord_files::wire::FilesRequest::Fetch {
            key: ItemKey::Chunk(h),
        })
        .expect("enc");
        let answer: chord_files::wire::FilesResponse =
            chord_files::decode(&c.call(chord_files::SERVICE, req).await.expect("call"))
                .expect("dec");
        assert!(
            matches!(answer, chord_files::wire::FilesResponse::Data(d) if chord_files::manifest::hash(&d) == h)
        );
        again.node().kill();
        for n in &nodes[..2] {
            n.node().kill();
        }
    });
}

#[test]
fn store_full_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tmp");
    block_on(async {
        let a = start(None, Arc::new(MemoryStore::new(100 * 1024))).await;
        let src = dir.path().join("f");
        std::fs::write(&src, data(300 * 1024, 1)).expect("write");
        let e = transfer::put(a.node().addr(), &src, "f", &opts(), &|_| {})
            .await
            .expect_err("full");
        assert!(matches!(e, FilesError::StoreFull { .. }), "{e}");
        // Bytes that do not match their hash are refused, whoever sends them.
        let mut c = chord_net::Client::connect(a.node().addr())
            .await
            .expect("client");
        let req = chord_files::encode(&chord_files::wire::FilesRequest::Store {
            key: ItemKey::Chunk(chord_files::manifest::hash(b"the real bytes")),
            data: b"other bytes".to_vec(),
        })
        .expect("enc");
        let answer: chord_files::wire::FilesResponse =
            chord_files::decode(&c.call(chord_files::SERVICE, req).await.expect("call"))
                .expect("dec");
        assert_eq!(
            answer,
            chord_files::wire::FilesResponse::Error(chord_files::wire::RemoteError::Corrupt)
        );
        // Still serving: a small file fits.
        std::fs::write(&src, b"small").expect("write");
        transfer::put(a.node().addr(), &src, "small", &opts(), &|_| {})
            .await
            .expect("small put");
        a.node().kill();
    });
}

/// `ls` right after a node crashed, before the ring has repaired itself: the walk passes
/// over the silent node (its records are read from their other holders). It failed
/// with "node unreachable" until the ring dropped the node (acceptance run, session 13).
#[test]
fn ls_right_after_a_crash_lists_every_file() {
    let dir = tempfile::tempdir().expect("tmp");
    block_on(async {
        let mut nodes = ring(4).await;
        let o = TransferOptions {
            identity: Some(me()),
            ..opts()
        };
        let at = nodes[0].node().addr();
        for i in 0..6u8 {
            let src = dir.path().join(format!("f{i}"));
            std::fs::write(&src, data(1000 + usize::from(i), i)).expect("write");
            transfer::put(at, &src, &format!("f{i}"), &o, &|_| {})
                .await
                .expect("put");
        }
        let dead = nodes.remove(2);
        dead.node().kill();
        // At once: the others still list it.
        let list = transfer::ls(at, 100, &o).await.expect("ls");
        let mut names: Vec<String> = list.iter().map(|l| l.name.clone()).collect();
        names.sort();
        assert_eq!(names, ["f0", "f1", "f2", "f3", "f4", "f5"]);
        for n in &nodes {
            n.node().kill();
        }
    });
}

#[test]
fn replicas_repair_after_crash_leave_and_join() {
    let dir = tempfile::tempdir().expect("tmp");
    block_on(async {
        let mut nodes = ring(5).await;
        let src = dir.path().join("f");
        std::fs::write(&src, data(20 * 64 * 1024 + 5, 4)).expect("write");
        let at = nodes[0].node().addr();
        let rep = transfer::put(at, &src, "f", &opts(), &|_| {})
            .await
            .expect("put");
        let keys = all_keys(&rep.manifest);
        // 21 chunks, the manifest block, the record.
        assert_eq!(keys.len(), 23);
        assert!(copies(&nodes, &keys).await.iter().all(|n| *n == 3));

        // Crash one node: the survivors bring every item back to 3 copies.
        let crashed = nodes.remove(3);
        crashed.node().kill();
        let c = wait_copies(&nodes, &keys, 3, Duration::from_secs(30)).await;
        assert!(c.iter().all(|n| *n == 3), "after crash: {c:?}");

        // A graceful leave hands everything over first.
        let leaver = nodes.remove(1);
        let handed = leaver.leave().await.expect("leave");
        assert!(handed.items > 0);
        let c = wait_copies(&nodes, &keys, 3, Duration::from_secs(30)).await;
        assert!(c.iter().all(|n| *n == 3), "after leave: {c:?}");

        // Joins: new nodes receive what they now hold; others drop what is no longer theirs.
        for _ in 0..3 {
            let n = start(Some(at), Arc::new(MemoryStore::new(1 << 30))).await;
            nodes.push(n);
        }
        let c = wait_copies(&nodes, &keys, 3, Duration::from_secs(30)).await;
        assert!(c.iter().all(|n| *n == 3), "after joins: {c:?}");
        // And the file still downloads.
        let out = dir.path().join("out");
        transfer::get(
            nodes[4].node().addr(),
            "f",
            &out,
            false,
            &opts(),
            &|_, _| {},
        )
        .await
        .expect("get");
        assert_eq!(
            std::fs::read(&out).expect("read"),
            std::fs::read(&src).expect("src")
        );
        for n in &nodes {
            n.node().kill();
        }
    });
}

/// Put and get through in-process nodes with memory stores: the CPU cost of the network
/// path without the disk's noise (docs/benchmarks.md, the guards' cost). Not in `cargo
/// test`: `cargo test --release -p chord-tests --test files -- --ignored --nocapture`.
#[test]
#[ignore = "benchmark: 5 x 256 MiB put and get in memory"]
fn memory_transfer_throughput() {
    let dir = tempfile::tempdir().expect("tmp");
    block_on(async {
        let nodes = ring(5).await;
        let src = dir.path().join("f");
        std::fs::write(&src, data(256 << 20, 9)).expect("write");
        let o = TransferOptions {
            identity: Some(me()),
            ..TransferOptions::default()
        };
        let at = nodes[0].node().addr();
        let (mut puts, mut gets) = (Vec::new(), Vec::new());
        for round in 0..5 {
            let name = format!("f{round}");
            let t = Instant::now();
            transfer::put(at, &src, &name, &o, &|_| {})
                .await
                .expect("put");
            puts.push(256.0 / t.elapsed().as_secs_f64());
            let out = dir.path().join(format!("out{round}"));
            let t = Instant::now();
            transfer::get(at, &name, &out, false, &o, &|_, _| {})
                .await
                .expect("get");
            gets.push(256.0 / t.elapsed().as_secs_f64());
            let _ = std::fs::remove_file(&out);
        }
        puts.sort_by(f64::total_cmp);
        gets.sort_by(f64::total_cmp);
        println!(
            "memory stores, 256 MiB, k = 3: put median {:.0} MiB/s ({puts:.0?}), get median {:.0} MiB/s ({gets:.0?})",
            puts[2], gets[2]
        );
        for n in &nodes {
            n.node().kill();
        }
    });
}

/// A download whose last step fails (the output name became a directory meanwhile, so
/// the rename of the finished copy onto it fails) ends in an error naming the output, and
/// leaves no partial `.chord-part-*` copy behind.
#[test]
fn a_failed_rename_leaves_no_partial_copy() {
    let dir = tempfile::tempdir().expect("tmp");
    let nodes = block_on(ring(3));
    let at = nodes[0].node().addr();
    let src = dir.path().join("s");
    std::fs::write(&src, data(300_000, 7)).expect("write");
    block_on(transfer::put(at, &src, "r", &opts(), &|_| {})).expect("put");
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).expect("mkdir");
    let out = out_dir.join("r");
    let made = std::sync::atomic::AtomicBool::new(false);
    let in_the_way = |_, _| {
        // While the download runs, something else takes the output's name.
        if !made.swap(true, std::sync::atomic::Ordering::SeqCst) {
            std::fs::create_dir(&out).expect("mkdir in the way");
            std::fs::write(out.join("keep"), b"x").expect("write");
        }
    };
    let e = block_on(transfer::get(at, "r", &out, false, &opts(), &in_the_way))
        .expect_err("the rename must fail");
    assert!(
        matches!(&e, FilesError::Io { path, .. } if *path == out),
        "{e:?}"
    );
    assert!(made.load(std::sync::atomic::Ordering::SeqCst));
    let names: Vec<String> = std::fs::read_dir(&out_dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        vec!["r".to_string()],
        "only the directory in the way"
    );
    for n in &nodes {
        n.node().kill();
    }
}

/// Issue 11: the replica set chord-files places an item on is counted in hosts. With
/// eight virtual nodes a host, a host's positions often follow one another on the ring,
/// so the owner and its next two positions could be one or two machines; the k = 3
/// holders `locate` names must be three different hosts. Every position's own id is
/// located (each position owns its id), so every such run of one host's positions is
/// met.
#[test]
fn replica_sets_are_distinct_hosts_with_virtual_nodes() {
    use chord_net::Node;
    block_on(async {
        let nodes: Vec<Node> = chord_tests::start_ring_shaped(3, |b| b.vnodes(8)).await;
        // Every list complete: 23 entries (two other hosts never fill a list of 8 hosts).
        let walk =
            chord_net::ring::wait_stable(nodes[0].addr(), None, 24, 23, Duration::from_secs(60))
                .await
                .expect("a stable ring of 24 positions with complete lists");
        let hosts: Vec<_> = nodes.iter().map(|n| n.addr()).collect();
        let mut runs = 0;
        for (k, status) in walk.iter().enumerate() {
            let id = status.me.id;
            let node = &nodes[k % nodes.len()];
            let (_, holders) = chord_files::maintain::locate(node, id, 3)
                .await
                .expect("locate");
            assert_eq!(holders.first().map(|p| p.id), Some(id), "{holders:?}");
            let mut addrs: Vec<_> = holders.iter().map(|p| p.addr).collect();
            assert!(addrs.iter().all(|a| hosts.contains(a)), "{holders:?}");
            addrs.sort();
            addrs.dedup();
            assert_eq!(addrs.len(), 3, "position {k}: holders {holders:?}");
            runs += usize::from(
                status
                    .successors
                    .first()
                    .is_some_and(|s| s.addr == status.me.addr),
            );
        }
        assert!(runs > 0, "no position was followed by one of its own host");
        for n in &nodes {
            n.kill();
        }
    });
}
