//! `chord ls`: every file in the ring, with its size, hash, owner and replica count.

use std::net::SocketAddr;

use chord_files::manifest::hex;
use chord_files::transfer::{self, Listing, TransferOptions};
use futures_lite::future::block_on;
use serde_json::json;

use crate::common::{hinted, opts, printable, NodeAddr, Result};

/// Options of `chord ls`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    at: NodeAddr,
}

/// Every file in the ring, asking through the node at `addr` (the menu's list too).
pub fn list(addr: SocketAddr, opts: &TransferOptions) -> Result<Vec<Listing>> {
    block_on(transfer::ls(addr, 100_000, opts)).map_err(|e| hinted(addr, e))
}

pub fn run(a: &Args) -> Result<()> {
    let at = &a.at;
    let list = list(at.addr, &opts(at, 1)?)?;
    if at.json {
        let v: Vec<_> = list
            .iter()
            .map(|l| {
                json!({
                    "name": l.name,
                    "owner": hex(&l.owner),
                    "link": l.qualified_name(),
                    "version": l.seq,
                    "size": l.size,
                    "hash": hex(&l.file_hash),
                    "replicas": l.replicas,
                })
            })
            .collect();
        out!("{}", serde_json::Value::Array(v));
        return Ok(());
    }
    if list.is_empty() {
        out!("(no files in the ring)");
    }
    for l in &list {
        out!(
            "{:>12}  {}  x{}  {}  {}",
            l.size,
            &hex(&l.file_hash)[..12],
            l.replicas,
            &hex(&l.owner)[..8],
            printable(&l.name)
        );
    }
    Ok(())
}
