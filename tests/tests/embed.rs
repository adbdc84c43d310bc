//! A node embedded in applications built on other runtimes. The node runs on its own
//! thread, so the handle's futures work under any executor.

use std::time::Duration;

use chord_core::Id;
use chord_tests::{owner_of, start_ring, wait_consistent};

#[test]
fn embeds_in_an_async_std_application() {
    async_std::task::block_on(async {
        let nodes = start_ring(2).await;
        wait_consistent(&nodes, Duration::from_secs(10))
            .await
            .expect("consistent");
        let events = nodes[0].events().await.expect("events");
        let key = Id::for_key("async-std");
        let found = async_std::task::spawn({
            let b = nodes[1].clone();
            async move { b.lookup(key).await }
        })
        .await
        .expect("lookup");
        assert_eq!(found.owner.id, owner_of(&nodes, key));
        nodes[1].leave().await.expect("leave");
        // The remaining node hears that its range changed.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let mut saw_range_change = false;
        while std::time::Instant::now() < deadline && !saw_range_change {
            if let Ok(Ok(e)) =
                async_std::future::timeout(Duration::from_millis(200), events.recv()).await
            {
                saw_range_change = matches!(e, chord_core::Event::PredecessorChanged { .. });
            }
        }
        assert!(saw_range_change);
        nodes[0].leave().await.expect("leave");
    });
}

#[test]
fn embeds_in_a_smol_application() {
    smol::block_on(async {
        let nodes = start_ring(2).await;
        wait_consistent(&nodes, Duration::from_secs(10))
            .await
            .expect("consistent");
        let key = Id::for_key("smol");
        let found = smol::spawn({
            let a = nodes[0].clone();
            async move { a.lookup(key).await }
        })
        .await
        .expect("lookup");
        assert_eq!(found.owner.id, owner_of(&nodes, key));
        for n in &nodes {
            n.kill();
        }
    });
}

/// Issue 12: "Dropping every handle does not stop a node." The last handle dropped makes
/// it leave gracefully: its neighbours see it go at once, and its port closes. Detached
/// handles (a service's, a maintenance loop's) do not hold it up.
#[test]
fn a_node_stops_when_its_last_handle_drops() {
    futures_lite::future::block_on(async {
        let mut nodes = start_ring(3).await;
        wait_consistent(&nodes, Duration::from_secs(10))
            .await
            .expect("consistent");
        let gone = nodes.pop().expect("third");
        let addr = gone.addr();
        let watcher = gone.detached();
        let extra = gone.clone();
        drop(gone);
        async_io::Timer::after(Duration::from_millis(300)).await;
        assert!(
            watcher.status().await.is_ok(),
            "a clone still holds the node"
        );
        drop(extra);
        let stopped = stops_within(&watcher, Duration::from_secs(10)).await;
        assert!(
            stopped,
            "the node did not stop when its last handle dropped"
        );
        assert!(
            chord_net::Client::connect(addr).await.is_err(),
            "port closed"
        );
        wait_consistent(&nodes, Duration::from_secs(10))
            .await
            .expect("the others close the ring");
        for n in &nodes {
            n.kill();
        }
    });
}

/// The same for a node that shares files: its maintenance thread does not keep it alive.
#[test]
fn a_files_node_stops_when_its_last_handle_drops() {
    futures_lite::future::block_on(async {
        let b = chord_net::Node::builder()
            .listen(chord_tests::any_port())
            .config(chord_tests::fast_config());
        let store = std::sync::Arc::new(chord_files::MemoryStore::default());
        let f = chord_files::FilesNode::start(b, store, chord_files::FilesConfig::default())
            .await
            .expect("start");
        assert!(format!("{f:?}").contains("FilesNode"));
        let watcher = f.node().detached();
        drop(f);
        let stopped = stops_within(&watcher, Duration::from_secs(10)).await;
        assert!(stopped, "the files node did not stop");
    });
}

/// Does `node` stop within `limit`?
async fn stops_within(node: &chord_net::Node, limit: Duration) -> bool {
    futures_lite::future::or(
        async {
            node.stopped().await;
            true
        },
        async {
            async_io::Timer::after(limit).await;
            false
        },
    )
    .await
}
