//! `chord rm NAME`: remove one of your files from the ring.

use chord_files::transfer;
use futures_lite::future::block_on;
use serde_json::json;

use crate::common::{hinted, opts, printable, ItemArgs, Result};

/// Options of `chord rm`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Its name in the ring.
    name: String,
    #[command(flatten)]
    item: ItemArgs,
}

pub fn run(a: &Args) -> Result<()> {
    let (at, name) = (&a.item.at, a.name.as_str());
    let o = a.item.identity.sign(opts(at, a.item.replicas)?)?;
    let n = block_on(transfer::rm(at.addr, name, &o)).map_err(|e| hinted(at.addr, e))?;
    if at.json {
        out!("{}", json!({"name": name, "removed_from": n}));
    } else {
        out!(
            "removed {} ({n} cop{})",
            printable(name),
            if n == 1 { "y" } else { "ies" }
        );
    }
    Ok(())
}
