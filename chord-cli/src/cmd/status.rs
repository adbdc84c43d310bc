//! `chord status`: a node's predecessor, successor list and finger table.

use chord_net::Status;
use futures_lite::future::block_on;
use serde_json::{json, Value};

use crate::common::{peer_json, short, NodeAddr, Result};

/// Options of `chord status`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    at: NodeAddr,
}

/// A node's status as JSON (`chord status --json`).
pub fn status_json(s: &Status) -> Value {
    json!({
        "id": s.me.id.to_string(),
        "addr": s.me.addr.to_string(),
        "member": s.member,
        "predecessor": s.predecessor.as_ref().map(peer_json),
        "successors": s.successors.iter().map(peer_json).collect::<Vec<_>>(),
        "fingers": s.fingers.iter().map(|f| json!({
            "index": f.index,
            "start": f.start.to_string(),
            "id": f.peer.id.to_string(),
            "addr": f.peer.addr.to_string(),
        })).collect::<Vec<_>>(),
    })
}

pub fn run(a: &Args) -> Result<()> {
    let at = &a.at;
    let s = block_on(async { at.connect().await?.status().await.map_err(Into::into) })
        .map_err(|e: Box<dyn std::error::Error>| e)?;
    if at.json {
        out!("{}", status_json(&s));
        return Ok(());
    }
    out!("node         {}  {}", s.me.id, s.me.addr);
    out!(
        "predecessor  {}",
        s.predecessor.as_ref().map_or("(none yet)".into(), short)
    );
    for (i, p) in s.successors.iter().enumerate() {
        let label = if i == 0 { "successors" } else { "" };
        out!("{label:<12} {}", short(p));
    }
    if s.successors.is_empty() {
        out!("successors   (alone in the ring)");
    }
    print_fingers(&s, "fingers      ");
    Ok(())
}

/// The finger table (index, start, node), the header after `lead` (as wide as the rows'
/// indent). Shared with the menu's "finger table".
pub fn print_fingers(s: &Status, lead: &str) {
    let indent = " ".repeat(lead.chars().count());
    out!("{lead}{:>3}  {:<10} node", "i", "start");
    for f in &s.fingers {
        out!(
            "{indent}{:>3}  {:<10} {}",
            f.index,
            &f.start.to_string()[..8],
            short(&f.peer)
        );
    }
}
