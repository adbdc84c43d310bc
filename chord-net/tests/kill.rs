//! `Node::kill` on a node whose driver queue is full (found in review of issue 14's
//! changes): it must stop the node (it was lost before), calling it again and again must
//! not start a thread each time, and the calls still queued when the node stops must end
//! (they waited for ever).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chord_net::{Node, Service};

const BLOCK: u16 = 8;

/// Blocks the driver's thread in its call (an application bug, used here only to fill the
/// driver's queue deterministically).
struct Block;

impl Service for Block {
    fn handle(
        &self,
        _node: Node,
        _from: Option<SocketAddr>,
        _request: Vec<u8>,
    ) -> Pin<Box<dyn Future<Output = Vec<u8>> + Send>> {
        std::thread::sleep(Duration::from_secs(2));
        Box::pin(async { Vec::new() })
    }
}

#[cfg(target_os = "linux")]
fn threads() -> usize {
    let s = std::fs::read_to_string("/proc/self/status").expect("status");
    s.lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("a thread count")
}

#[cfg(not(target_os = "linux"))]
fn threads() -> usize {
    0
}

#[test]
fn kill_stops_a_node_with_a_full_queue_with_one_thread() {
    futures_lite::future::block_on(async {
        let node = Node::builder()
            .listen("127.0.0.1:0".parse().expect("addr"))
            .service(BLOCK, Arc::new(Block))
            .start()
            .await
            .expect("node");
        let (n, addr) = (node.detached(), node.addr());
        let blocker = std::thread::spawn(move || {
            let _ = futures_lite::future::block_on(n.call(addr, BLOCK, vec![]));
        });
        std::thread::sleep(Duration::from_millis(200));
        // Fill the driver's queue (1,024 inputs) while the driver is stuck.
        let n = node.detached();
        let filler = std::thread::spawn(move || {
            let ex = smol::LocalExecutor::new();
            let tasks: Vec<_> = (0..1100)
                .map(|_| {
                    let n = n.clone();
                    ex.spawn(async move { n.status().await })
                })
                .collect();
            futures_lite::future::block_on(ex.run(async {
                for t in tasks {
                    let _ = t.await;
                }
            }));
        });
        std::thread::sleep(Duration::from_millis(300));
        let before = threads();
        for _ in 0..300 {
            node.kill();
        }
        let after = threads();
        let stopped = futures_lite::future::or(
            async {
                node.stopped().await;
                true
            },
            async {
                async_io::Timer::after(Duration::from_secs(20)).await;
                false
            },
        )
        .await;
        assert!(stopped, "the node did not stop");
        assert!(
            after.saturating_sub(before) < 5,
            "{} threads for 300 kills",
            after - before
        );
        blocker.join().expect("blocker");
        // Every status call queued behind the kill has its answer (Stopped), none waits.
        filler.join().expect("filler");
    })
}
