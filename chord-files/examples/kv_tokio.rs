//! A key-value store on tokio: three nodes of a ring on loopback, signed records written
//! through one and read through another, a compare-and-swap, a delete.
//!
//! The nodes run on their own threads, so their handles' futures work under tokio (or
//! any executor) as they are.
//!
//! ```text
//! cargo run -p chord-files --example kv_tokio
//! ```

use std::sync::Arc;
use std::time::Duration;

use chord_files::dht::WriteOptions;
use chord_files::{FilesConfig, FilesError, FilesNode, Identity, MemoryStore};

async fn node(join: Option<std::net::SocketAddr>) -> Result<FilesNode, chord_net::Error> {
    let mut b = chord_net::Node::builder().listen("127.0.0.1:0".parse().expect("address"));
    if let Some(j) = join {
        b = b.join(j);
    }
    FilesNode::start(b, Arc::new(MemoryStore::default()), FilesConfig::default()).await
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let a = node(None).await?;
    let b = node(Some(a.addr())).await?;
    let c = node(Some(a.addr())).await?;
    // Wait until the three have formed one ring with full successor lists.
    let r = chord_net::Config::default().successor_list_len;
    chord_net::ring::wait_stable(a.addr(), None, 3, r, Duration::from_secs(30)).await?;

    // Each writer has an identity; a real one keeps it with Identity::load_or_create.
    let me = Identity::generate()?;
    let w = a
        .put_record(&me, b"greeting", b"hello".to_vec(), WriteOptions::default())
        .await?;
    println!(
        "wrote greeting at sequence {} on {} nodes",
        w.seq, w.replicas
    );

    // Anyone reads it with the owner's public key, through any node.
    let got = c.get_record(&me.public_key(), b"greeting").await?;
    println!(
        "read {:?}",
        got.as_ref().map(|v| String::from_utf8_lossy(&v.value))
    );

    // Compare-and-swap: only if nobody wrote since sequence 1.
    let swap = WriteOptions {
        expect: Some(Some(w.seq)),
        ..WriteOptions::default()
    };
    b.put_record(&me, b"greeting", b"hello again".to_vec(), swap)
        .await?;
    match b.put_record(&me, b"greeting", b"late".to_vec(), swap).await {
        Err(FilesError::Conflict { found, .. }) => println!("a stale swap lost to {found:?}"),
        other => println!("unexpected: {other:?}"),
    }

    // A delete is a signed tombstone: the value does not come back.
    c.delete_record(&me, b"greeting").await?;
    let gone = a.get_record(&me.public_key(), b"greeting").await?;
    println!("after the delete: {gone:?}");
    assert!(gone.is_none());

    // Dropping the handles makes the nodes leave.
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    run().await
}

#[cfg(test)]
mod tests {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_example_runs() {
        super::run().await.expect("the example runs");
    }
}
