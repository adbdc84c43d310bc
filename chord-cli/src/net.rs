//! `chord node` and the client commands that talk to a running node.

use std::io::IsTerminal;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use std::sync::Arc;

use chord_core::{Id, Peer};
use chord_files::{DiskStore, FilesConfig, FilesNode, MemoryStore, Store};
use chord_net::wire::Status;
use chord_net::{Client, NetworkKey, Node};
use futures_lite::future::block_on;
use serde_json::{json, Value};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// An error with a suggestion for the user, printed after the cause chain.
#[derive(Debug)]
pub struct Hinted {
    pub err: Box<dyn std::error::Error>,
    pub hint: String,
}

impl std::fmt::Display for Hinted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.err.fmt(f)
    }
}

impl std::error::Error for Hinted {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.err.source()
    }
}

pub fn no_node_hint(addr: SocketAddr) -> String {
    format!(
        "is a node running at {addr}? start one with `chord node {} {}`",
        addr.ip(),
        addr.port()
    )
}

pub const NODE_EXAMPLES: &str = "Examples:
  chord node                                   # 127.0.0.1:2000, a new ring
  chord node 127.0.0.2 5000 --join 127.0.0.1:2000
  chord node 127.0.0.3 5000 --join 127.0.0.1:2000 --headless";

pub const CLIENT_EXAMPLES: &str = "Examples:
  chord lookup song.mp3
  chord status --node 127.0.0.2:5000 --json
  chord ring --json
  CHORD_NODE=127.0.0.3:5000 chord leave";

pub const KEYGEN_EXAMPLES: &str = "Examples:
  chord keygen ring.key
  chord node --network-key ring.key
  chord node 127.0.0.2 5000 --join 127.0.0.1:2000 --network-key ring.key
  CHORD_NETWORK_KEY=ring.key chord ls";

/// Write a new random network key to `path`, readable by its owner only.
pub fn keygen(path: &std::path::Path, force: bool) -> Result<()> {
    use std::io::Write;
    let key = NetworkKey::generate()?;
    let mut o = std::fs::OpenOptions::new();
    o.write(true);
    if force {
        o.create(true).truncate(true);
    } else {
        o.create_new(true);
    }
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    let mut f = o.open(path).map_err(|e| -> Box<dyn std::error::Error> {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            format!("{} exists; use --force to replace it", path.display()).into()
        } else {
            format!("cannot write {}: {e}", path.display()).into()
        }
    })?;
    writeln!(f, "{}", key.to_hex())?;
    f.sync_all()?;
    eprintln!(
        "wrote a new network key to {}; pass --network-key {} to every node and client",
        path.display(),
        path.display()
    );
    Ok(())
}

/// Options of `chord node`.
#[derive(clap::Args, Debug)]
pub struct NodeArgs {
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
    #[arg(long, default_value_t = chord_files::DEFAULT_REPLICAS, value_parser = clap::value_parser!(u8).range(1..=16))]
    replicas: u8,
    /// Refuse new data beyond this many bytes (suffixes K, M, G, T). Default: 256M in
    /// memory, no limit with --data.
    #[arg(long, value_name = "BYTES", value_parser = crate::files::parse_size)]
    max_store: Option<u64>,
    /// Encrypt and authenticate all traffic with this network key (made by `chord
    /// keygen`); nodes and clients without it are refused.
    #[arg(long, env = "CHORD_NETWORK_KEY", value_name = "FILE")]
    network_key: Option<PathBuf>,
    /// Whose files the menu uploads and downloads by plain name.
    #[command(flatten)]
    identity: crate::kv::IdentityArg,
}

/// Where a client command connects.
#[derive(clap::Args, Debug, Clone)]
pub struct NodeAddr {
    /// Address of a running node.
    #[arg(
        long = "node",
        env = "CHORD_NODE",
        default_value = "127.0.0.1:2000",
        value_name = "ADDR"
    )]
    pub addr: SocketAddr,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// The ring's network key (made by `chord keygen`), if it uses one.
    #[arg(long, env = "CHORD_NETWORK_KEY", value_name = "FILE")]
    pub network_key: Option<PathBuf>,
}

impl NodeAddr {
    /// The network key named by --network-key, read now.
    pub fn key(&self) -> Result<Option<NetworkKey>> {
        load_key(self.network_key.as_deref())
    }

    /// A client of the node at --node, with the key of --network-key.
    async fn connect(&self) -> Result<Client> {
        connect(self.addr, self.key()?.as_ref()).await
    }
}

/// Read the key file at `path`, if one is given.
pub fn load_key(path: Option<&std::path::Path>) -> Result<Option<NetworkKey>> {
    Ok(path.map(NetworkKey::from_file).transpose()?)
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
    pub identity: crate::kv::IdentityArg,
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
                    (Some(j), chord_net::Error::Join(_)) => Box::new(Hinted {
                        err: e.into(),
                        hint: no_node_hint(j),
                    }),
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

pub fn node(a: &NodeArgs) -> Result<()> {
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
    let files = setup.start(a.join)?;
    let node = files.node().clone();
    // Removed when this function returns (the node has stopped).
    let _token = crate::control::write_token(node.addr(), &setup.control)?;
    out!("listening on {} id {}", node.addr(), node.id());
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

fn peer_json(p: &Peer) -> Value {
    json!({"id": p.id.to_string(), "addr": p.addr.to_string()})
}

pub fn short(p: &Peer) -> String {
    format!("{}  {}", &p.id.to_string()[..8], p.addr)
}

async fn connect(addr: SocketAddr, key: Option<&NetworkKey>) -> Result<Client> {
    Client::connect_with_key(addr, chord_net::Limits::default(), key)
        .await
        .map_err(|e| -> Box<dyn std::error::Error> {
            match e {
                chord_net::Error::Connect(..) => Box::new(Hinted {
                    err: e.into(),
                    hint: no_node_hint(addr),
                }),
                e => e.into(),
            }
        })
}

pub fn lookup(at: &NodeAddr, key: &str) -> Result<()> {
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

pub fn status(at: &NodeAddr) -> Result<()> {
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
    out!("fingers      {:>3}  {:<10} node", "i", "start");
    for f in &s.fingers {
        out!(
            "             {:>3}  {:<10} {}",
            f.index,
            &f.start.to_string()[..8],
            short(&f.peer)
        );
    }
    Ok(())
}

pub fn leave(at: &NodeAddr) -> Result<()> {
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

/// Walk the ring by successors from `start` (see [`chord_net::ring::walk`]), at most
/// 100,000 nodes; a node that cannot be reached gets the usual hint.
pub async fn walk_ring(start: SocketAddr, key: Option<&NetworkKey>) -> Result<Vec<Status>> {
    chord_net::ring::walk(start, key, 100_000)
        .await
        .map_err(|e| -> Box<dyn std::error::Error> {
            match e {
                chord_net::Error::Connect(addr, _) => Box::new(Hinted {
                    hint: no_node_hint(addr),
                    err: e.into(),
                }),
                e => e.into(),
            }
        })
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

pub fn ring(
    at: &NodeAddr,
    svg: Option<&std::path::Path>,
    fingers_of: Option<SocketAddr>,
) -> Result<()> {
    let key = at.key()?;
    let walk = block_on(walk_ring(at.addr, key.as_ref()))?;
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
            .map(|s| crate::svg::RingNode {
                id: s.me.id,
                label: s.me.addr.to_string(),
                successor: s.successors.first().map(|p| p.id),
                stored: crate::files::stored_bytes(s.me.addr, key.as_ref()),
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
    let consistent = chord_net::ring::is_consistent(&walk);
    if at.json {
        let nodes: Vec<Value> = walk
            .iter()
            .map(|s| {
                json!({
                    "id": s.me.id.to_string(),
                    "addr": s.me.addr.to_string(),
                    "successor": s.successors.first().map(peer_json),
                    "predecessor": s.predecessor.as_ref().map(peer_json),
                })
            })
            .collect();
        out!("{}", json!({"nodes": nodes, "consistent": consistent}));
    } else {
        print_ring(&walk);
    }
    Ok(())
}
