//! `chord node` processes on loopback, driven by the client commands.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chord_tests::NodeProc;

const CHORD: &str = env!("CARGO_BIN_EXE_chord");

fn chord_json(args: &[&str]) -> Option<serde_json::Value> {
    let out = chord_tests::chord(env!("CARGO_BIN_EXE_chord"))
        .args(args)
        .arg("--json")
        .output()
        .expect("run chord");
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

fn wait_ring(at: SocketAddr, n: usize, limit: Duration) -> serde_json::Value {
    let start = Instant::now();
    loop {
        if let Some(v) = chord_json(&["ring", "--node", &at.to_string()]) {
            if v["consistent"] == true && v["nodes"].as_array().map(|a| a.len()) == Some(n) {
                return v;
            }
        }
        assert!(
            start.elapsed() < limit,
            "ring of {n} not consistent in {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn three_processes_join_look_up_crash_and_leave() {
    let a = NodeProc::start(CHORD, None);
    let b = NodeProc::start(CHORD, Some(a.addr));
    let mut c = NodeProc::start(CHORD, Some(b.addr));
    let ring = wait_ring(a.addr, 3, Duration::from_secs(20));
    let mut ids: Vec<String> = ring["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| n["id"].as_str().expect("id").to_string())
        .collect();
    ids.sort();

    // Lookups from every node agree with the ring.
    for key in ["song.mp3", "notes.txt", "a", "b"] {
        for at in [a.addr, b.addr, c.addr] {
            let v = chord_json(&["lookup", key, "--node", &at.to_string()]).expect("lookup");
            let k = v["key"].as_str().expect("key").to_string();
            let want = ids.iter().find(|id| **id >= k).unwrap_or(&ids[0]);
            assert_eq!(v["node"]["id"].as_str(), Some(want.as_str()), "{v}");
            assert!(v["hops"].as_u64().expect("hops") <= 2);
        }
    }
    let st = chord_json(&["status", "--node", &a.addr.to_string()]).expect("status");
    assert_eq!(st["addr"], a.addr.to_string());
    assert_eq!(st["successors"].as_array().map(|s| s.len()), Some(2));

    // kill -9 one node: the other two repair.
    c.child.kill().expect("kill -9");
    c.child.wait().expect("reaped");
    wait_ring(a.addr, 2, Duration::from_secs(30));

    // `chord leave` stops b; SIGTERM makes a leave and exit cleanly.
    let mut b = b;
    assert!(chord_json(&["leave", "--node", &b.addr.to_string()]).is_some());
    let s = b.wait_exit(Duration::from_secs(10)).expect("b exits");
    assert!(s.success());
    wait_ring(a.addr, 1, Duration::from_secs(10));
    let mut a = a;
    a.signal("-TERM");
    let s = a
        .wait_exit(Duration::from_secs(10))
        .expect("a exits on SIGTERM");
    assert!(s.success());
}

#[test]
fn client_errors_are_clear() {
    // Nothing listens on this port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let out = chord_tests::chord(env!("CARGO_BIN_EXE_chord"))
        .args(["status", "--node", &port.to_string()])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("error: cannot connect to"), "{err}");
    assert!(err.contains("hint: is a node running"), "{err}");
    // CHORD_NODE is honoured.
    let out = chord_tests::chord(env!("CARGO_BIN_EXE_chord"))
        .args(["ring"])
        .env("CHORD_NODE", port.to_string())
        .output()
        .expect("run");
    assert!(String::from_utf8_lossy(&out.stderr).contains(&port.to_string()));
}

fn chord_in(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    chord_tests::run_in(CHORD, dir, args)
}

#[test]
fn files_through_processes() {
    let dir = tempfile::tempdir().expect("tmp");
    let a = NodeProc::start(CHORD, None);
    let b = NodeProc::start(CHORD, Some(a.addr));
    wait_ring(a.addr, 2, Duration::from_secs(20));
    let bytes: Vec<u8> = (0..2_500_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(dir.path().join("photo.jpg"), &bytes).expect("write");
    let at = a.addr.to_string();
    let out = chord_in(dir.path(), &["put", "photo.jpg", "--node", &at, "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["name"], "photo.jpg");
    assert_eq!(v["size"], 2_500_000);
    // Only two nodes: two copies.
    assert_eq!(v["replicas"], 2);
    let ls = chord_json(&["ls", "--node", &at]).expect("ls");
    assert_eq!(ls[0]["name"], "photo.jpg");
    assert_eq!(ls[0]["replicas"], 2);
    // Download through the other node into a fresh directory, with the default name.
    let down = dir.path().join("down");
    std::fs::create_dir(&down).expect("mkdir");
    let out = chord_in(&down, &["get", "photo.jpg", "--node", &b.addr.to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(down.join("photo.jpg")).expect("read"), bytes);
    let out = chord_in(&down, &["get", "photo.jpg", "--node", &at]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("already up to date"));
    std::fs::write(down.join("photo.jpg"), b"changed").expect("write");
    let out = chord_in(&down, &["get", "photo.jpg", "--node", &at]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"));
    // A hostile name is stored as data and written only inside the current directory.
    let out = chord_in(
        dir.path(),
        &["put", "photo.jpg", "--name", "../../escape", "--node", &at],
    );
    assert!(out.status.success());
    let out = chord_in(&down, &["get", "../../escape", "--node", &at]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(down.join("escape").is_file());
    assert!(!dir.path().parent().expect("parent").join("escape").exists());
    // A picture of the ring, with bytes stored per node.
    let svg = dir.path().join("ring.svg");
    let out = chord_in(
        dir.path(),
        &["ring", "--node", &at, "--svg", svg.to_str().expect("utf-8")],
    );
    assert!(out.status.success());
    let text = std::fs::read_to_string(&svg).expect("svg");
    assert_eq!(text.matches(r#"class="node""#).count(), 2);
    assert!(text.contains("MiB"), "stored bytes are labelled");
    let out = chord_in(&down, &["rm", "photo.jpg", "--node", &at]);
    assert!(out.status.success());
    let ls = chord_json(&["ls", "--node", &at]).expect("ls");
    assert_eq!(ls.as_array().map(|a| a.len()), Some(1));
}

/// `chord keygen`, then a keyed node: clients with the key file are served, clients
/// without it get a one-line reason.
#[test]
fn network_key_through_processes() {
    let dir = tempfile::tempdir().expect("tmp");
    let key = dir.path().join("ring.key");
    let out = chord_in(dir.path(), &["keygen", "ring.key"]);
    assert!(out.status.success(), "{out:?}");
    let text = std::fs::read_to_string(&key).expect("key file");
    assert_eq!(text.trim().len(), 64, "{text}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // No silent overwrite of a key.
    let again = chord_in(dir.path(), &["keygen", "ring.key"]);
    assert_eq!(again.status.code(), Some(1));
    assert_eq!(std::fs::read_to_string(&key).expect("key file"), text);

    let key_arg = key.to_str().expect("utf-8 path");
    let a = NodeProc::start_with(
        CHORD,
        None,
        &["--network-key", key_arg],
        std::process::Stdio::null(),
    );
    let _b = NodeProc::start_with(
        CHORD,
        Some(a.addr),
        &["--network-key", key_arg],
        std::process::Stdio::null(),
    );
    let at = a.addr.to_string();
    let start = Instant::now();
    loop {
        let out = chord_in(
            dir.path(),
            &["ring", "--node", &at, "--network-key", key_arg, "--json"],
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if v["consistent"] == true && v["nodes"].as_array().map(|a| a.len()) == Some(2) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "{out:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = chord_in(dir.path(), &["status", "--node", &at]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("requires a network key"), "{err}");
    // A file command without the key: the key's hint, not "is a node running" (which
    // every failed connection got before the node's own address was checked).
    let out = chord_in(dir.path(), &["get", "some.txt", "--node", &at]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("hint: give the ring's key"), "{err}");
    assert!(!err.contains("is a node running"), "{err}");
}

/// Issue 13, finding 8 (the small ones): names printed as data, a closed stdout, a
/// 255-byte name saved under its default output, `--data FILE`, sizes from what is read.
#[test]
fn small_things_a_stranger_or_a_pipe_found() {
    let dir = tempfile::tempdir().expect("tmp");
    let a = NodeProc::start(CHORD, None);
    let at = a.addr.to_string();
    std::fs::write(dir.path().join("x"), b"payload").expect("write");
    // A name with an escape sequence and a newline that would draw a fake row.
    let evil = "\u{1b}[31mred\n     999  000000000000  x3  fake.txt";
    let out = chord_in(dir.path(), &["put", "x", "--name", evil, "--node", &at]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.stdout.contains(&0x1b), "raw escape in put's output");
    let out = chord_in(dir.path(), &["ls", "--node", &at]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(text.lines().count(), 1, "one file, one row: {text:?}");
    assert!(!text.contains('\u{1b}'), "{text:?}");
    assert!(text.contains("\\u{1b}[31mred\\n"), "{text:?}");

    // `chord ls | true`: the reader is gone before chord writes.
    let mut child = chord_tests::chord(CHORD)
        .args(["ls", "--node", &at])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.status.code(), Some(141), "{err}");

    // A 255-byte name (valid) downloads under its default output name.
    let long = "n".repeat(255);
    let out = chord_in(dir.path(), &["put", "x", "--name", &long, "--node", &at]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let down = dir.path().join("down");
    std::fs::create_dir(&down).expect("mkdir");
    let out = chord_in(&down, &["get", &long, "--node", &at]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(down.join(&long)).expect("saved"), b"payload");

    // A key with an escape sequence, echoed by `chord lookup` (review, session 7).
    let out = chord_in(dir.path(), &["lookup", "k\u{1b}[31m", "--node", &at]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.stdout.contains(&0x1b), "raw escape in lookup's output");

    // A file that says 0 bytes and holds more.
    let out = chord_in(
        dir.path(),
        &[
            "put",
            "/proc/self/status",
            "--name",
            "status",
            "--node",
            &at,
            "--json",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(v["size"].as_u64().unwrap_or(0) > 0, "{v}");

    // --data naming a file: say so.
    let file = dir.path().join("plain");
    std::fs::write(&file, b"not a directory").expect("write");
    let out = chord_in(
        dir.path(),
        &[
            "node",
            "127.0.0.1",
            "0",
            "--headless",
            "--data",
            file.to_str().expect("utf-8"),
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not a directory"), "{err}");
}

/// `chord id` and `chord kv` as a user runs them (issue 12): identities made on first use
/// (0600), records written, swapped, read by another user through the owner's key, and
/// deleted only by their owner.
#[test]
fn records_through_processes() {
    let dir = tempfile::tempdir().expect("tmp");
    let a = NodeProc::start(CHORD, None);
    let b = NodeProc::start(CHORD, Some(a.addr));
    wait_ring(a.addr, 2, Duration::from_secs(20));
    let at = a.addr.to_string();
    let alice = dir.path().join("alice.key");
    let bob = dir.path().join("bob.key");
    let run = |who: &std::path::Path, args: &[&str], stdin: Option<&[u8]>| {
        use std::io::Write;
        let mut c = chord_tests::chord(CHORD)
            .env("CHORD_IDENTITY", who)
            .args(args)
            .args(["--node", &at])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run chord");
        let mut input = c.stdin.take().expect("stdin");
        input.write_all(stdin.unwrap_or_default()).expect("write");
        drop(input);
        c.wait_with_output().expect("wait")
    };
    // The identity is made on first use, private, and stable.
    let id = chord_tests::chord(CHORD)
        .args(["id", "--identity", alice.to_str().expect("utf-8")])
        .output()
        .expect("id");
    assert!(id.status.success());
    let alice_pk = String::from_utf8(id.stdout)
        .expect("utf-8")
        .trim()
        .to_string();
    assert_eq!(alice_pk.len(), 64);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&alice)
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let out = run(&alice, &["kv", "put", "color", "blue", "--json"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["replicas"].as_u64(), Some(2));
    let seq = v["seq"].as_u64().expect("seq").to_string();
    // A compare-and-swap that lost, then one that won.
    let out = run(
        &alice,
        &["kv", "put", "color", "red", "--expect", "7"],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    let found = format!("expected sequence 7, found sequence {seq}");
    assert!(String::from_utf8_lossy(&out.stderr).contains(&found));
    let out = run(
        &alice,
        &["kv", "put", "color", "green", "--expect", &seq],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Binary values from a pipe come back byte for byte through the other node.
    let bin: Vec<u8> = (0..=255u8).collect();
    let out = run(&alice, &["kv", "put", "blob", "-"], Some(&bin));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let b_at = b.addr.to_string();
    let out = chord_tests::chord(CHORD)
        .env("CHORD_IDENTITY", &alice)
        .args(["kv", "get", "blob", "--node", &b_at])
        .output()
        .expect("get");
    assert_eq!(out.stdout, bin);
    // Bob reads Alice's record through her public key, and cannot delete or replace it.
    let out = run(&bob, &["kv", "get", "color", "--owner", &alice_pk], None);
    assert_eq!(out.stdout, b"green");
    let out = run(&bob, &["kv", "rm", "color"], None);
    assert_eq!(out.status.code(), Some(1));
    let out = run(&bob, &["kv", "put", "color", "mine now"], None);
    assert!(
        out.status.success(),
        "Bob writes his own record of that name"
    );
    let out = run(&bob, &["kv", "get", "color", "--owner", &alice_pk], None);
    assert_eq!(out.stdout, b"green");
    // Alice deletes hers: gone, for everyone.
    let out = run(&alice, &["kv", "rm", "color", "--json"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(said["deleted"], true, "{said}");
    let out = run(&bob, &["kv", "get", "color", "--owner", &alice_pk], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no record"));
    // Too large a value is refused before anything is sent.
    let big = vec![b'x'; 64 * 1024 + 1];
    let out = run(&alice, &["kv", "put", "big", "-"], Some(&big));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("at most 65536 bytes"));
}

/// Review finding (session 7): every refused control request wrote a warning, so anyone
/// could fill a node's log (20,000 requests from one address: 2.38 MB of stderr). Refusals
/// are now logged at most once per 10 s, with their count.
#[test]
fn refused_control_requests_do_not_fill_the_log() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = dir.path().join("node.log");
    let f = std::fs::File::create(&log).expect("log");
    let a = NodeProc::start_with(CHORD, None, &[], std::process::Stdio::from(f));
    let wrong = chord_net::ControlToken::from_bytes([9; 32]);
    let refused = futures_lite::future::block_on(async {
        let mut c = chord_net::Client::connect(a.addr).await.expect("connect");
        let mut refused = 0;
        for _ in 0..200 {
            if c.leave(&wrong).await.is_err() {
                refused += 1;
            }
        }
        refused
    });
    assert_eq!(refused, 200, "a wrong token was obeyed");
    // The node is still there, and its log has a line or two, not 200.
    futures_lite::future::block_on(async {
        let mut c = chord_net::Client::connect(a.addr).await.expect("connect");
        c.status().await.expect("status");
    });
    let text = std::fs::read_to_string(&log).expect("read log");
    let lines = text.lines().filter(|l| l.contains("refused")).count();
    assert!(
        (1..=2).contains(&lines),
        "{lines} log lines for 200 refusals:\n{text}"
    );
}
