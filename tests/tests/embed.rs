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
