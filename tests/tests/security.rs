//! The network key: a ring started with one runs Noise on every connection. Nodes and
//! clients without the key, or with another, are refused with a clear reason; traffic on
//! the wire does not show what it carries; files work as without a key.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chord_core::Id;
use chord_files::transfer::{self, GetOutcome, TransferOptions};
use chord_files::{FilesConfig, FilesNode, MemoryStore};
use chord_net::wire::Refusal;
use chord_net::{Client, Error, Limits, NetworkKey, Node};
use chord_tests::{any_port, fast_config, wait_consistent, wait_full_lists_with};
use futures_lite::future::block_on;

fn builder(join: Option<SocketAddr>, key: Option<&NetworkKey>) -> chord_net::NodeBuilder {
    let mut b = Node::builder().listen(any_port()).config(fast_config());
    if let Some(j) = join {
        b = b.join(j);
    }
    if let Some(k) = key {
        b = b.network_key(k.clone());
    }
    b
}

fn refusal(e: Error) -> Refusal {
    match e {
        Error::Refused(_, why) => why,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn only_holders_of_the_key_join_or_ask() {
    block_on(async {
        let key = NetworkKey::generate().expect("key");
        let other = NetworkKey::generate().expect("key");
        let a = builder(None, Some(&key)).start().await.expect("a");
        let b = builder(Some(a.addr()), Some(&key))
            .start()
            .await
            .expect("b");
        let c = builder(Some(b.addr()), Some(&key))
            .start()
            .await
            .expect("c");
        let ring = [a.clone(), b.clone(), c.clone()];
        wait_consistent(&ring, Duration::from_secs(20))
            .await
            .expect("keyed ring consistent");

        // Nodes: without a key, with another key.
        let e = builder(Some(a.addr()), None)
            .start()
            .await
            .expect_err("no key");
        assert_eq!(refusal(e), Refusal::NetworkKeyRequired);
        let e = builder(Some(a.addr()), Some(&other))
            .start()
            .await
            .expect_err("wrong key");
        assert_eq!(refusal(e), Refusal::WrongNetworkKey);

        // Clients likewise; with the key, they are served.
        let e = Client::connect(a.addr()).await.expect_err("no key");
        assert_eq!(refusal(e), Refusal::NetworkKeyRequired);
        let e = Client::connect_with_key(a.addr(), Limits::default(), Some(&other))
            .await
            .expect_err("wrong key");
        assert_eq!(refusal(e), Refusal::WrongNetworkKey);
        let mut ok = Client::connect_with_key(c.addr(), Limits::default(), Some(&key))
            .await
            .expect("right key");
        let (owner, _) = ok.lookup(Id::for_key("x")).await.expect("lookup");
        assert!(ring.iter().any(|n| n.addr() == owner.addr));

        // The ring was not disturbed by the refused attempts.
        wait_consistent(&ring, Duration::from_secs(20))
            .await
            .expect("still consistent");

        // A keyed node or client at a ring without a key is told so.
        let plain = builder(None, None).start().await.expect("plain");
        let e = builder(Some(plain.addr()), Some(&key))
            .start()
            .await
            .expect_err("key offered");
        assert_eq!(refusal(e), Refusal::NoNetworkKey);
        let e = Client::connect_with_key(plain.addr(), Limits::default(), Some(&key))
            .await
            .expect_err("key offered");
        assert_eq!(refusal(e), Refusal::NoNetworkKey);
        for n in [plain, c, b, a] {
            n.leave().await.expect("leave");
        }
    });
}

/// A TCP relay in front of `to` that keeps a copy of every byte in both directions.
fn tap(to: SocketAddr) -> (SocketAddr, Arc<Mutex<Vec<u8>>>) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    std::thread::spawn(move || {
        // One connection, relayed until either side closes.
        let Ok((inbound, _)) = l.accept() else { return };
        let Ok(outbound) = TcpStream::connect(to) else {
            return;
        };
        let pipe = |mut from: TcpStream, mut to: TcpStream, seen: Arc<Mutex<Vec<u8>>>| {
            std::thread::spawn(move || {
                let mut buf = [0u8; 65536];
                while let Ok(n) = from.read(&mut buf) {
                    if n == 0 || to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    seen.lock().expect("lock").extend_from_slice(&buf[..n]);
                }
                let _ = to.shutdown(std::net::Shutdown::Write);
            })
        };
        let up = pipe(
            inbound.try_clone().expect("clone"),
            outbound.try_clone().expect("clone"),
            s.clone(),
        );
        let down = pipe(outbound, inbound, s);
        let _ = up.join();
        let _ = down.join();
    });
    (addr, seen)
}

/// What a client asks and is told is visible on the wire without a key and hidden with one.
#[test]
fn the_wire_shows_nothing_with_a_key() {
    let contains = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    for key in [None, Some(NetworkKey::generate().expect("key"))] {
        let seen = block_on(async {
            let a = builder(None, key.as_ref()).start().await.expect("a");
            let (relay, seen) = tap(a.addr());
            let mut c = Client::connect_with_key(relay, Limits::default(), key.as_ref())
                .await
                .expect("client");
            let secret = Id::for_key("the secret name");
            let (owner, _) = c.lookup(secret).await.expect("lookup");
            assert_eq!(owner.addr, a.addr());
            drop(c);
            a.leave().await.expect("leave");
            let bytes = seen.lock().expect("lock").clone();
            (bytes, secret, owner.id)
        });
        let (bytes, secret, owner) = seen;
        assert!(!bytes.is_empty());
        let visible = contains(&bytes, &secret.0) || contains(&bytes, &owner.0);
        assert_eq!(
            visible,
            key.is_none(),
            "key {}: the asked key or the answer is {} on the wire",
            if key.is_some() { "set" } else { "unset" },
            if visible { "visible" } else { "hidden" }
        );
    }
}

/// Files over a keyed ring: put through one node, get through another, byte for byte.
#[test]
fn files_over_an_encrypted_ring() {
    block_on(async {
        let key = NetworkKey::generate().expect("key");
        let mut nodes: Vec<FilesNode> = Vec::new();
        for i in 0..3 {
            let join = (i > 0).then(|| nodes[0].node().addr());
            let cfg = FilesConfig {
                replicas: 3,
                repair_every: Duration::from_millis(300),
                ..FilesConfig::default()
            };
            let store = Arc::new(MemoryStore::new(1 << 30));
            nodes.push(
                FilesNode::start(builder(join, Some(&key)), store, cfg)
                    .await
                    .expect("start"),
            );
        }
        let handles: Vec<Node> = nodes.iter().map(|n| n.node().clone()).collect();
        wait_consistent(&handles, Duration::from_secs(20))
            .await
            .expect("consistent");
        let addrs: Vec<SocketAddr> = handles.iter().map(|n| n.addr()).collect();
        assert!(wait_full_lists_with(&addrs, Some(&key), Duration::from_secs(20)).await);

        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().join("src.bin");
        let body: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 253) as u8).collect();
        std::fs::write(&src, &body).expect("write");
        let opts = TransferOptions {
            replicas: 3,
            chunk_size: 1 << 20,
            network_key: Some(key.clone()),
            identity: Some(chord_files::Identity::from_seed([6; 32])),
            ..TransferOptions::default()
        };
        let rep = transfer::put(addrs[0], &src, "secret.bin", &opts, &|_| {})
            .await
            .expect("put");
        assert_eq!(rep.min_replicas, 3);
        let out = dir.path().join("out.bin");
        let got = transfer::get(addrs[2], "secret.bin", &out, false, &opts, &|_, _| {})
            .await
            .expect("get");
        assert!(matches!(got, GetOutcome::Written(_)), "{got:?}");
        assert_eq!(std::fs::read(&out).expect("read"), body);

        // Without the key the same request is refused, not served.
        let plain = TransferOptions {
            network_key: None,
            ..opts
        };
        let e = transfer::get(addrs[1], "secret.bin", &out, true, &plain, &|_, _| {})
            .await
            .expect_err("no key");
        // The refusal is the cause, kept whole (not flattened into text).
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        let mut refused = false;
        while let Some(c) = cause {
            refused |= matches!(
                c.downcast_ref(),
                Some(chord_net::wire::Refusal::NetworkKeyRequired)
            );
            cause = c.source();
        }
        assert!(refused, "{e:?}");
        for n in nodes.iter().rev() {
            n.node().leave().await.expect("leave");
        }
    });
}

/// Issue 13, finding 6: a recorded hello and first Noise message, replayed by someone
/// without the key, got a Welcome every time and held its connection past the handshake
/// deadline (until the 120 s idle timeout). The replayer cannot make the session keys, so
/// it can never send a frame: the node now wants the first frame within the handshake
/// deadline and closes the connection otherwise.
#[test]
fn a_replayed_handshake_cannot_hold_a_slot() {
    let key = NetworkKey::generate().expect("random");
    let limits = Limits {
        handshake_timeout: Duration::from_secs(1),
        ..Limits::default()
    };
    // Record what a genuine client sends first: its hello frame and Noise message 1.
    let recorder = TcpListener::bind("127.0.0.1:0").expect("bind");
    let rec_addr = recorder.local_addr().expect("addr");
    let recorded = std::thread::spawn(move || {
        let (mut s, _) = recorder.accept().expect("accept");
        let mut header = [0u8; 4];
        s.read_exact(&mut header).expect("hello header");
        let mut hello = vec![0u8; u32::from_be_bytes(header) as usize];
        s.read_exact(&mut hello).expect("hello");
        let mut len = [0u8; 2];
        s.read_exact(&mut len).expect("noise length");
        let mut msg1 = vec![0u8; u16::from_be_bytes(len) as usize];
        s.read_exact(&mut msg1).expect("noise message 1");
        [&header[..], &hello, &len, &msg1].concat()
    });
    let k2 = key.clone();
    let _ = std::thread::spawn(move || {
        block_on(async {
            let short = Limits {
                handshake_timeout: Duration::from_millis(500),
                busy_deadline: Duration::ZERO,
                ..Limits::default()
            };
            let _ = Client::connect_with_key(rec_addr, short, Some(&k2)).await;
        })
    });
    let bytes = recorded.join().expect("recorded");
    block_on(async {
        let node = builder(None, Some(&key))
            .limits(limits)
            .start()
            .await
            .expect("start");
        let mut s = TcpStream::connect(node.addr()).expect("connect");
        s.write_all(&bytes).expect("replay");
        s.set_read_timeout(Some(Duration::from_secs(4)))
            .expect("timeout");
        // The node answers (it cannot tell a replay from a first try), then closes the
        // connection at the handshake deadline, since no frame ever comes.
        let t = std::time::Instant::now();
        let mut got = 0;
        let mut buf = [0u8; 1024];
        let closed = loop {
            match s.read(&mut buf) {
                Ok(0) => break true,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
                Err(_) => break false,
            }
        };
        assert!(got > 0, "the node answered the replayed handshake");
        assert!(
            closed,
            "the replayed connection was still open after {:?}",
            t.elapsed()
        );
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
        // A genuine client is served as before.
        let mut c = Client::connect_with_key(node.addr(), Limits::default(), Some(&key))
            .await
            .expect("client");
        c.status().await.expect("status");
        node.kill();
    });
}
