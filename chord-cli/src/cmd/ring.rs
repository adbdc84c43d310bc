//! `chord ring`: walk the ring by successors from a node, check it is consistent, and
//! draw it as SVG.

use std::net::SocketAddr;

use chord_core::Id;
use chord_net::NetworkKey;
use chord_net::Status;
use futures_lite::future::block_on;

use crate::common::{connect, short, NodeAddr, Result};

/// Options of `chord ring`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    at: NodeAddr,
    /// Also draw the ring (nodes by id, successor arcs, fingers, bytes stored) as SVG.
    #[arg(long, value_name = "FILE")]
    svg: Option<std::path::PathBuf>,
    /// Whose fingers to draw (default: the node given by --node).
    #[arg(long, value_name = "ADDR")]
    fingers_of: Option<SocketAddr>,
}

/// Walk the ring by successors from `start` (see [`chord_net::ring::walk`]), at most
/// 100,000 nodes; a node that cannot be reached gets the usual hint.
pub async fn walk_ring(start: SocketAddr, key: Option<&NetworkKey>) -> Result<Vec<Status>> {
    chord_net::ring::walk(start, key, 100_000)
        .await
        .map_err(crate::common::net_error)
}

/// Print a ring walk as `chord ring` does.
pub fn print_ring(walk: &[Status]) {
    for s in walk {
        out!(
            "{}  →  {}",
            short(&s.me),
            s.successors.first().map_or("(none)".into(), short)
        );
    }
    out!(
        "{} node(s), {}",
        walk.len(),
        if chord_net::ring::is_consistent(walk) {
            "consistent"
        } else {
            "NOT consistent"
        }
    );
}

pub fn run(a: &Args) -> Result<()> {
    let (at, svg, fingers_of) = (&a.at, a.svg.as_deref(), a.fingers_of);
    let key = at.key()?;
    let walk = block_on(walk_ring(at.addr, key.as_ref()))?;
    let stats: Vec<Option<(u64, u64)>> = if svg.is_some() || at.json {
        // One walker for all: positions of one address (virtual nodes) share a connection.
        let mut w = crate::view::ring::Walker::new(at.addr, key.clone());
        block_on(async {
            let mut stats = Vec::with_capacity(walk.len());
            for s in &walk {
                stats.push(w.stats(s.me.addr).await);
            }
            stats
        })
    } else {
        Vec::new()
    };
    if let Some(path) = svg {
        let focus = fingers_of.unwrap_or(at.addr);
        let st = block_on(async {
            connect(focus, key.as_ref())
                .await?
                .status()
                .await
                .map_err(Into::into)
        })
        .map_err(|e: Box<dyn std::error::Error>| e)?;
        let fingers: Vec<Id> = st.fingers.iter().map(|f| f.peer.id).collect();
        let nodes: Vec<crate::svg::RingNode> = walk
            .iter()
            .zip(&stats)
            .map(|(s, st)| crate::svg::RingNode {
                id: s.me.id,
                label: s.me.addr.to_string(),
                successor: s.successors.first().map(|p| p.id),
                stored: st.map(|st| st.0),
            })
            .collect();
        let title = format!(
            "Chord ring of {} nodes, fingers of {}",
            nodes.len(),
            st.me.addr
        );
        std::fs::write(
            path,
            crate::svg::ring(&nodes, Some((st.me.id, &fingers)), &title),
        )
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    if at.json {
        let view = crate::view::ring::RingView::of_walk(&walk, &stats);
        out!("{}", serde_json::to_string(&view)?);
    } else {
        print_ring(&walk);
    }
    Ok(())
}
