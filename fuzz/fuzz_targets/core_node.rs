//! The sans-IO protocol state machine fed arbitrary messages from arbitrary peers,
//! interleaved with timeouts, lookups and a leave: no panic, bounded state.
#![no_main]

use chord_core::{Config, Id, Message, Node, Peer, Time};
use libfuzzer_sys::fuzz_target;
use std::net::SocketAddr;

fn peer(i: u8) -> Peer {
    let addr: SocketAddr = ([127, 0, 0, 1], 2000 + u16::from(i % 8)).into();
    Peer::from_addr(addr)
}

fuzz_target!(|data: &[u8]| {
    let mut node = Node::new(peer(0), Config::default());
    let mut now = Time::ZERO;
    let mut rest = data;
    match rest.split_first() {
        Some((b, r)) if b % 2 == 0 => {
            node.create(now);
            rest = r;
        }
        Some((b, r)) => {
            node.join(peer(*b), now);
            rest = r;
        }
        None => return,
    }
    let mut steps = 0;
    while let Some((&op, r)) = rest.split_first() {
        rest = r;
        steps += 1;
        if steps > 256 {
            break;
        }
        match op >> 5 {
            0..=4 => {
                // A message from one of eight peers (ourselves included).
                let Ok((msg, r)) = postcard::take_from_bytes::<Message>(rest) else {
                    break;
                };
                rest = r;
                node.handle(peer(op), msg, now);
            }
            5 => {
                now = now + std::time::Duration::from_millis(u64::from(op & 31) * 250);
                node.handle_timeout(now);
            }
            6 => {
                let mut key = [0u8; 20];
                key[0] = op;
                node.lookup(Id(key), now);
            }
            _ => node.leave(now),
        }
        while node.poll_transmit().is_some() {}
        while node.poll_event().is_some() {}
    }
});
