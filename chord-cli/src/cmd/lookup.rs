//! `chord lookup KEY`: the node responsible for a key, and the hops it took.

use chord_core::Id;
use futures_lite::future::block_on;
use serde_json::json;

use crate::common::{peer_json, NodeAddr, Result};

/// Options of `chord lookup`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The key's name.
    key: String,
    #[command(flatten)]
    at: NodeAddr,
}

pub fn run(a: &Args) -> Result<()> {
    let (at, key) = (&a.at, a.key.as_str());
    let id = Id::for_key(key);
    let (owner, hops) =
        block_on(async { at.connect().await?.lookup(id).await.map_err(Into::into) })
            .map_err(|e: Box<dyn std::error::Error>| e)?;
    if at.json {
        out!(
            "{}",
            json!({"key": id.to_string(), "node": peer_json(&owner), "hops": hops})
        );
    } else {
        out!("key   {id}  ({})", crate::printable(key));
        out!("node  {}  {}", owner.id, owner.addr);
        out!("hops  {hops}");
    }
    Ok(())
}
