//! `chord leave`: make a node on this host leave the ring gracefully and stop.

use futures_lite::future::block_on;
use serde_json::json;

use crate::common::{NodeAddr, Result};

/// Options of `chord leave`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    at: NodeAddr,
}

pub fn run(a: &Args) -> Result<()> {
    let at = &a.at;
    let token = crate::control::read_token(at.addr)?;
    block_on(async { at.connect().await?.leave(&token).await.map_err(Into::into) })
        .map_err(|e: Box<dyn std::error::Error>| e)?;
    if at.json {
        out!("{}", json!({"left": at.addr.to_string()}));
    } else {
        out!("{} is leaving the ring", at.addr);
    }
    Ok(())
}
