//! Files from memory, without touching the disk: put bytes on one node, read them back
//! through another, and stream one into any `AsyncWrite`.
//!
//! ```text
//! cargo run -p chord-files --example files_from_memory
//! ```

use std::sync::Arc;

use chord_files::transfer::TransferOptions;
use chord_files::{FilesConfig, FilesNode, Identity, MemoryStore};
use futures_lite::future::block_on;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    block_on(async {
        let start = |join: Option<std::net::SocketAddr>| {
            let mut b = chord_net::Node::builder().listen("127.0.0.1:0".parse().expect("addr"));
            if let Some(j) = join {
                b = b.join(j);
            }
            FilesNode::start(b, Arc::new(MemoryStore::default()), FilesConfig::default())
        };
        let a = start(None).await?;
        let b = start(Some(a.addr())).await?;
        let r = chord_net::Config::default().successor_list_len;
        let limit = std::time::Duration::from_secs(30);
        chord_net::ring::wait_stable(a.addr(), None, 2, r, limit).await?;

        let opts = TransferOptions {
            identity: Some(Identity::generate()?),
            ..TransferOptions::default()
        };
        let report = a
            .put_bytes("notes.txt", b"bytes from memory", &opts)
            .await?;
        println!("stored; others fetch it as {}", report.qualified_name());

        let back = b.get_bytes("notes.txt", 1 << 20, &opts).await?;
        println!("read back: {}", String::from_utf8_lossy(&back));

        let mut sink = futures_lite::io::Cursor::new(Vec::new());
        b.get_writer(&report.qualified_name(), &mut sink, &opts, &|_, _| {})
            .await?;
        assert_eq!(sink.into_inner(), back);
        Ok(())
    })
}
