//! An application service on the ring: every node runs it; a caller finds the node
//! responsible for a key and asks that node's service directly.
//!
//! ```text
//! cargo run -p chord-net --example custom_service
//! ```

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use chord_net::{Id, Node, Service};
use futures_lite::future::block_on;

/// The service number: any u16 the ring agrees on (chord-files uses 1).
const GREETER: u16 = 7;

/// Answers "hello, NAME from ADDR". A service's input comes from the network: treat it as
/// hostile (here: bounded and checked as UTF-8).
struct Greeter;

impl Service for Greeter {
    fn handle(
        &self,
        node: Node,
        _from: Option<SocketAddr>,
        request: Vec<u8>,
    ) -> Pin<Box<dyn Future<Output = Vec<u8>> + Send>> {
        Box::pin(async move {
            match std::str::from_utf8(&request) {
                Ok(name) if name.len() <= 64 => {
                    format!("hello, {name} from {}", node.addr()).into_bytes()
                }
                _ => b"bad request".to_vec(),
            }
        })
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    block_on(async {
        let start = |join: Option<SocketAddr>| {
            let mut b = Node::builder()
                .listen("127.0.0.1:0".parse().expect("addr"))
                .service(GREETER, Arc::new(Greeter));
            if let Some(j) = join {
                b = b.join(j);
            }
            b.start()
        };
        let a = start(None).await?;
        let _b = start(Some(a.addr())).await?;
        let _c = start(Some(a.addr())).await?;
        let r = chord_net::Config::default().successor_list_len;
        let limit = std::time::Duration::from_secs(30);
        chord_net::ring::wait_stable(a.addr(), None, 3, r, limit).await?;

        for who in ["ada", "alan", "grace"] {
            let found = a.lookup(Id::for_key(who)).await?;
            let answer = a
                .call(found.owner.addr, GREETER, who.as_bytes().to_vec())
                .await?;
            println!("{}", String::from_utf8_lossy(&answer));
        }
        Ok(())
    })
}
