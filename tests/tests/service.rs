//! Application services on top of chord-net, written as any application would (the way
//! chord-files is): only public API.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chord_net::wire::ServiceError;
use chord_net::{Client, Error, Limits, Node, Service};
use chord_tests::{any_port, fast_config};
use futures_lite::future::block_on;

const ECHO: u16 = 1;
const FORWARD: u16 = 2;
const SLOW: u16 = 3;
const PANICS: u16 = 4;

/// Panics: in its call when the request is "now", else in its future.
struct Panics;
impl Service for Panics {
    fn handle(
        &self,
        _node: Node,
        _from: Option<SocketAddr>,
        request: Vec<u8>,
    ) -> Pin<Box<dyn Future<Output = Vec<u8>> + Send>> {
        assert!(request != b"now", "a service bug, in its call");
        Box::pin(async move {
            async_io::Timer::after(Duration::from_millis(10)).await;
            panic!("a service bug, in its future");
        })
    }
}

/// Answers with the request reversed, followed by the node's own address.
struct Echo;
impl Service for Echo {
    fn handle(
        &self,
        node: Node,
        _from: Option<SocketAddr>,
        mut request: Vec<u8>,
    ) -> Pin<Box<dyn Future<Output = Vec<u8>> + Send>> {
        Box::pin(async move {
            request.reverse();
            request.extend_from_slice(node.addr().to_string().as_bytes());
            request
        })
    }
}

/// The request is "ADDR"; asks the echo service there and returns its answer: a service
/// calling other nodes.
struct Forward;
impl Service for Forward {
    fn handle(
        &self,
        node: Node,
        _from: Option<SocketAddr>,
        request: Vec<u8>,
    ) -> Pin<Box<dyn Future<Output = Vec<u8>> + Send>> {
        Box::pin(async move {
            let Some(to) = std::str::from_utf8(&request)
                .ok()
                .and_then(|s| s.parse().ok())
            else {
                return b"bad address".to_vec();
            };
            node.call(to, ECHO, b"fwd".to_vec())
                .await
                .unwrap_or_else(|e| e.to_string().into_bytes())
        })
    }
}

async fn start(join: Option<SocketAddr>) -> Node {
    let mut b = Node::builder()
        .listen(any_port())
        .config(fast_config())
        .limits(Limits {
            max_service_requests: 1,
            ..Limits::default()
        })
        .service(ECHO, Arc::new(Echo))
        .service(FORWARD, Arc::new(Forward))
        .service(
            SLOW,
            Arc::new(chord_tests::Delayed {
                after: Duration::from_millis(500),
                answer: b"done",
            }),
        )
        .service(PANICS, Arc::new(Panics));
    if let Some(j) = join {
        b = b.join(j);
    }
    b.start().await.expect("start")
}

#[test]
fn services_answer_peers_clients_and_themselves() {
    block_on(async {
        let a = start(None).await;
        let b = start(Some(a.addr())).await;
        let want = |node: &Node, s: &str| {
            let mut v: Vec<u8> = s.bytes().rev().collect();
            v.extend_from_slice(node.addr().to_string().as_bytes());
            v
        };
        // Peer to peer.
        let got = b.call(a.addr(), ECHO, b"abc".to_vec()).await.expect("call");
        assert_eq!(got, want(&a, "abc"));
        // To itself.
        let got = a
            .call(a.addr(), ECHO, b"xy".to_vec())
            .await
            .expect("local call");
        assert_eq!(got, want(&a, "xy"));
        // From a client.
        let mut c = Client::connect(b.addr()).await.expect("client");
        let got = c.call(ECHO, b"hello".to_vec()).await.expect("client call");
        assert_eq!(got, want(&b, "hello"));
        // A service that calls another node.
        let got = c
            .call(FORWARD, a.addr().to_string().into_bytes())
            .await
            .expect("forward");
        assert_eq!(got, want(&a, "fwd"));
        // Unknown service: a typed error, and the connection keeps working.
        let e = c.call(99, vec![]).await.expect_err("no such service");
        assert!(
            matches!(e, Error::Service(_, ServiceError::NoSuchService)),
            "{e}"
        );
        let e = b
            .call(a.addr(), 99, vec![])
            .await
            .expect_err("no such service");
        assert!(
            matches!(e, Error::Service(_, ServiceError::NoSuchService)),
            "{e}"
        );
        assert!(c.status().await.expect("status").member);
        a.kill();
        b.kill();
    });
}

#[test]
fn service_requests_are_bounded() {
    block_on(async {
        let a = start(None).await;
        // Limit 1: the second of two concurrent slow requests is refused, not queued.
        let first = a.call(a.addr(), SLOW, vec![]);
        let second = async {
            async_io::Timer::after(Duration::from_millis(100)).await;
            a.call(a.addr(), SLOW, vec![]).await
        };
        let (r1, r2) = futures_lite::future::zip(first, second).await;
        assert_eq!(r1.expect("first"), b"done");
        assert!(
            matches!(r2, Err(Error::Service(_, ServiceError::Busy))),
            "{r2:?}"
        );
        // Once it is done, requests are served again.
        assert_eq!(
            a.call(a.addr(), SLOW, vec![]).await.expect("later"),
            b"done"
        );
        a.kill();
    });
}

/// Issue 12: a panic in a service's call stopped the node; one in its future made the
/// caller wait the whole call timeout and kept a request slot for good (with
/// `max_service_requests = 1` here, every later call got Busy). Now the caller gets
/// `Failed` at once and the node goes on serving, slot returned.
#[test]
fn a_panicking_service_answers_failed_and_the_node_goes_on() {
    block_on(async {
        let a = start(None).await;
        let b = start(Some(a.addr())).await;
        let mut c = Client::connect(a.addr()).await.expect("client");
        for _ in 0..3 {
            for body in [b"now".to_vec(), b"later".to_vec()] {
                let t = std::time::Instant::now();
                let e = b
                    .call(a.addr(), PANICS, body.clone())
                    .await
                    .expect_err("panic");
                assert!(matches!(e, Error::Service(_, ServiceError::Failed)), "{e}");
                assert!(t.elapsed() < Duration::from_secs(2), "answered at once");
                let e = c.call(PANICS, body).await.expect_err("panic");
                assert!(matches!(e, Error::Service(_, ServiceError::Failed)), "{e}");
            }
        }
        // The one slot is free again, and the node is still in its ring.
        let got = c.call(ECHO, b"ok".to_vec()).await.expect("still serving");
        assert!(got.starts_with(b"ko"));
        assert!(c.status().await.expect("status").member);
        a.kill();
        b.kill();
    });
}
