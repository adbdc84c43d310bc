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

/// A service that never answers: a client's call ends as `Error::Timeout` too (it came
/// back as `Error::Frame(_, Timeout)`, which the CLI's hints did not recognise).
#[test]
fn a_call_without_an_answer_times_out_as_timeout() {
    use std::future::Future;
    use std::net::SocketAddr;
    use std::pin::Pin;
    use std::sync::Arc;

    struct Silent;
    impl chord_net::Service for Silent {
        fn handle(
            &self,
            _node: chord_net::Node,
            _from: Option<SocketAddr>,
            _request: Vec<u8>,
        ) -> Pin<Box<dyn Future<Output = Vec<u8>> + Send>> {
            Box::pin(async {
                async_io::Timer::after(Duration::from_secs(5)).await;
                Vec::new()
            })
        }
    }
    futures_lite::future::block_on(async {
        let node = chord_net::Node::builder()
            .listen("127.0.0.1:0".parse().expect("addr"))
            .service(7, Arc::new(Silent))
            .start()
            .await
            .expect("start");
        let limits = Limits {
            call_timeout: Duration::from_millis(300),
            ..Limits::default()
        };
        let mut c = Client::connect_with_key(node.addr(), limits, None)
            .await
            .expect("connect");
        let r = c.call(7, vec![1]).await;
        assert!(
            matches!(r, Err(Error::Timeout(a)) if a == node.addr()),
            "{r:?}"
        );
        node.kill();
    });
}

/// A peer that keeps sending stale answers (to other request ids): the call still ends by
/// its timeout. Each stale frame restarted the wait, so a frame every 300 ms held a 1 s
/// call for good (found in review, session 13).
#[test]
fn stale_answers_do_not_stretch_a_call_past_its_timeout() {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    let server = std::thread::spawn(move || {
        let Ok((mut s, _)) = l.accept() else { return };
        let mut len = [0u8; 4];
        if s.read_exact(&mut len).is_err() {
            return;
        }
        let mut hello = vec![0u8; u32::from_be_bytes(len) as usize];
        if s.read_exact(&mut hello).is_err() {
            return;
        }
        let welcome = chord_net::wire::HelloReply::Welcome { addr, vnodes: 1 };
        let frame = chord_net::frame::encode(&welcome).expect("encode");
        if s.write_all(&frame).is_err() {
            return;
        }
        let stale = chord_net::frame::encode(&chord_net::wire::Frame::ServiceResponse {
            id: 1_000_000,
            body: Ok(Vec::new()),
        })
        .expect("encode");
        // Bounded: 30 stale frames (9 s) at most; stops when the client goes.
        for _ in 0..30 {
            if s.write_all(&stale).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    });
    let limits = Limits {
        call_timeout: Duration::from_secs(1),
        ..Limits::default()
    };
    let t = Instant::now();
    let r = futures_lite::future::block_on(async {
        let mut c = Client::connect_with_key(addr, limits, None).await?;
        c.call(7, b"anything".to_vec()).await
    });
    let took = t.elapsed();
    assert!(
        matches!(r, Err(Error::Timeout(a)) if a == addr),
        "{:?}",
        r.err()
    );
    assert!(took < Duration::from_secs(4), "the call took {took:?}");
    drop(server.join());
}
