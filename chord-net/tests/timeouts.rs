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
