//! A node that accepts a connection and never answers: every wait for it ends as
//! `Error::Timeout` naming it (issue 14: the handshake's came back as a frame error).

use std::time::{Duration, Instant};

use chord_net::{Client, Error, Limits};

#[test]
fn a_silent_node_times_out_as_timeout() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    // Accepts (the kernel completes the TCP handshake) and reads nothing, answers nothing.
    let held = std::thread::spawn(move || listener.accept().map(|(s, _)| s));
    let limits = Limits {
        handshake_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let t = Instant::now();
    let r = futures_lite::future::block_on(Client::connect_with_key(addr, limits, None));
    assert!(
        matches!(r, Err(Error::Timeout(a)) if a == addr),
        "{:?}",
        r.err()
    );
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    drop(held.join());
}
