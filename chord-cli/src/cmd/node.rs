//! `chord node`: run a node (a new ring, or joining one), with the original app's menu
//! on a terminal, or headless until SIGINT or SIGTERM; either way it leaves gracefully.

use std::io::IsTerminal;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use chord_files::{DiskStore, FilesConfig, FilesNode, MemoryStore, Store};
use chord_net::{NetworkKey, Node};
use futures_lite::future::block_on;

use crate::common::{load_key, parse_replicas, parse_size, with_no_node_hint, Result};
use crate::identity::IdentityArg;

pub const EXAMPLES: &str = "Examples:
  chord node                                   # 127.0.0.1:2000, a new ring
  chord node 127.0.0.2 5000 --join 127.0.0.1:2000
  chord node 127.0.0.3 5000 --join 127.0.0.1:2000 --headless
  chord node --http                            # and watch the ring at http://127.0.0.1:8080/";

/// Options of `chord node`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// IP address to listen on.
    #[arg(default_value = "127.0.0.1")]
    ip: IpAddr,
    /// Port to listen on.
    #[arg(default_value_t = 2000)]
    port: u16,
    /// Join the ring of the node at this address (default: start a new ring).
    #[arg(long, value_name = "ADDR")]
    join: Option<SocketAddr>,
    /// Successor list length r.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=64))]
    successors: u64,
    /// Ring positions (virtual nodes) to host (at most 16: peers refuse more).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=16))]
    vnodes: u16,
    /// Run without the interactive menu, until SIGINT or SIGTERM (then leave gracefully).
    #[arg(long)]
    headless: bool,
    /// Keep stored files in this directory (default: in memory, lost at exit). A node
    /// restarted on the same directory serves what it stored.
    #[arg(long, value_name = "DIR")]
    data: Option<std::path::PathBuf>,
    /// Copies of every stored item (replication factor k).
    #[arg(long, default_value_t = chord_files::DEFAULT_REPLICAS, value_parser = parse_replicas)]
    replicas: u8,
    /// Refuse new data beyond this many bytes (suffixes K, M, G, T). Default: 256M in
    /// memory; with --data none, but on Unix a store on disk refuses new items that would
    /// leave its file system less than 1G (or 5% of the disk, if less) free.
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    max_store: Option<u64>,
    /// Encrypt and authenticate all traffic with this network key (made by `chord
    /// keygen`); nodes and clients without it are refused.
    #[arg(long, env = "CHORD_NETWORK_KEY", value_name = "FILE")]
    network_key: Option<PathBuf>,
    /// Serve a live view of the ring in the browser on this address (default
    /// 127.0.0.1:8080 when no address is given). Read-only.
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = crate::view::DEFAULT_ADDR)]
    http: Option<SocketAddr>,
    /// Whose files the menu uploads and downloads by plain name.
    #[command(flatten)]
    identity: IdentityArg,
}

/// How to (re)start this process's node: the menu restarts it to join another ring.
pub struct NodeSetup {
    pub listen: SocketAddr,
    successors: usize,
    vnodes: u16,
    store: Arc<dyn Store>,
    cfg: FilesConfig,
    key: Option<NetworkKey>,
    /// Obeyed from `chord leave` on this host (see [`crate::control`]).
    pub control: chord_net::ControlToken,
    /// The menu's identity (loaded, or made, when first needed).
    pub identity: IdentityArg,
}

impl NodeSetup {
    /// Start the node, joining `join` if given (else a new ring).
    pub fn start(&self, join: Option<SocketAddr>) -> Result<FilesNode> {
        let mut b = Node::builder()
            .listen(self.listen)
            .successors(self.successors)
            .vnodes(self.vnodes)
            .control_token(self.control.clone())
            .defer_client_leave(true);
        if let Some(j) = join {
            b = b.join(j);
        }
        if let Some(k) = &self.key {
            b = b.network_key(k.clone());
        }
        block_on(FilesNode::start(b, self.store.clone(), self.cfg.clone())).map_err(
            |e| -> Box<dyn std::error::Error> {
                match (join, &e) {
                    (Some(j), chord_net::Error::Join(_)) => with_no_node_hint(e, j),
                    _ => e.into(),
                }
            },
        )
    }
}

/// Hand the node's files over, then leave; if the hand-over fails, leave anyway.
pub fn leave_gracefully(files: &FilesNode) -> Result<()> {
    block_on(async {
        match files.leave().await {
            Ok(r) if r.failed > 0 => eprintln!(
                "handed over {} copies ({} bytes); {} could not be handed over",
                r.sent, r.bytes, r.failed
            ),
            Ok(r) => eprintln!("handed over {} copies ({} bytes)", r.sent, r.bytes),
            Err(e) => {
                eprintln!("hand-over failed ({e}); leaving anyway");
                files.node().leave().await?;
            }
        }
        Ok(())
    })
}

pub fn run(a: &Args) -> Result<()> {
    let store: Arc<dyn Store> = match &a.data {
        Some(dir) => Arc::new(
            DiskStore::open(dir, a.max_store.unwrap_or(u64::MAX))
                .map_err(|e| format!("cannot use {}: {e}", dir.display()))?,
        ),
        // In memory, never without a limit: anyone on the ring can store.
        None => Arc::new(MemoryStore::new(
            a.max_store
                .unwrap_or(chord_files::store::DEFAULT_MEMORY_LIMIT),
        )),
    };
    let setup = NodeSetup {
        listen: SocketAddr::new(a.ip, a.port),
        successors: a.successors as usize,
        vnodes: a.vnodes,
        store,
        cfg: FilesConfig {
            replicas: a.replicas,
            ..FilesConfig::default()
        },
        key: load_key(a.network_key.as_deref())?,
        control: chord_net::ControlToken::generate()
            .ok_or("cannot get random bytes from the operating system")?,
        identity: a.identity.clone(),
    };
    // The handler before the "listening" line: a supervisor may signal as soon as it
    // reads it, and the node must then leave gracefully, not die.
    let (tx, rx) = async_channel::bounded::<()>(1);
    ctrlc::set_handler(move || {
        let _ = tx.try_send(());
    })?;
    let view = a.http.map(crate::view::bind).transpose()?;
    let files = setup.start(a.join)?;
    let node = files.node().clone();
    // Removed when this function returns (the node has stopped).
    let _token = crate::control::write_token(node.addr(), &setup.control)?;
    out!("listening on {} id {}", node.addr(), node.id());
    if let Some(view) = view {
        let at = view.serve(node.addr(), setup.key.clone())?;
        eprintln!("live view: http://{at}/");
    }
    if !a.headless && std::io::stdin().is_terminal() {
        return crate::menu::run(setup, files, rx);
    }
    let leave = block_on(futures_lite::future::or(
        futures_lite::future::or(
            async {
                let _ = rx.recv().await;
                true
            },
            async {
                node.leave_requested().await;
                true
            },
        ),
        async {
            node.stopped().await;
            false
        },
    ));
    if leave {
        eprintln!("handing stored data over and leaving the ring…");
        leave_gracefully(&files)?;
    }
    eprintln!("stopped");
    Ok(())
}
