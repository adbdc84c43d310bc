//! What the commands share: where a node is and how to reach it (`--node`,
//! `--network-key`), hints for the user, printing data from the network, progress bars,
//! sizes and replica counts.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;

use chord_core::Peer;
use chord_files::transfer::TransferOptions;
use chord_files::FilesError;
use chord_net::{Client, NetworkKey};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};

/// Every command's result: any error, printed with its causes and a hint by `main`.
pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

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

/// An error as the user reads it: the error, each cause on a line of its own, and a hint
/// if the command line has one. Errors can quote what a peer sent (names): printed as
/// data.
pub fn error_report(e: &(dyn std::error::Error + 'static)) -> Vec<String> {
    let mut lines = vec![format!("error: {}", printable(&e.to_string()))];
    let mut source = e.source();
    while let Some(s) = source {
        lines.push(format!("  caused by: {}", printable(&s.to_string())));
        source = s.source();
    }
    if let Some(h) = e.downcast_ref::<Hinted>() {
        lines.push(format!("hint: {}", h.hint));
    } else if let Some(h) = hint_for(e) {
        lines.push(format!("hint: {h}"));
    }
    lines
}

/// What the command line can add to a library error: the flag or command that helps.
/// (The libraries' messages name no flags: they are used by other programs too.)
fn hint_for(e: &(dyn std::error::Error + 'static)) -> Option<&'static str> {
    use chord_net::wire::Refusal;
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(x) = cur {
        if let Some(chord_files::FilesError::Exists(_)) = x.downcast_ref() {
            return Some("use --force to overwrite it");
        }
        if let Some(chord_files::FilesError::NotFound(_)) = x.downcast_ref() {
            return Some(
                "a plain NAME is a file of your identity (`chord id`); another user's is OWNER/NAME, the \"link\" of `chord ls --json`",
            );
        }
        if let Some(chord_net::noise::KeyError::Format(_)) = x.downcast_ref() {
            return Some("make a key file with `chord keygen FILE`");
        }
        if let Some(Refusal::NetworkKeyRequired) = x.downcast_ref() {
            return Some("give the ring's key with --network-key FILE (or CHORD_NETWORK_KEY)");
        }
        cur = x.source();
    }
    None
}

/// The node an error says could not be reached at all (no connection, or no answer in
/// time), if that is what it says: where "is a node running there?" helps.
fn not_reached(e: &chord_net::Error) -> Option<SocketAddr> {
    match e {
        chord_net::Error::Connect(a, _) | chord_net::Error::Timeout(a) => Some(*a),
        _ => None,
    }
}

/// `err`, with the hint for the node at `addr`, which could not be reached: "is a node
/// running at ADDR? start one with ...".
pub fn with_no_node_hint(
    err: impl Into<Box<dyn std::error::Error>>,
    addr: SocketAddr,
) -> Box<dyn std::error::Error> {
    Box::new(Hinted {
        err: err.into(),
        hint: format!(
            "is a node running at {addr}? start one with `chord node {} {}`",
            addr.ip(),
            addr.port()
        ),
    })
}

/// A chord-net error as the user gets it: with the node hint if it says a node could not
/// be reached.
pub fn net_error(e: chord_net::Error) -> Box<dyn std::error::Error> {
    match not_reached(&e) {
        Some(addr) => with_no_node_hint(e, addr),
        None => e.into(),
    }
}

pub const CLIENT_EXAMPLES: &str = "Examples:
  chord lookup song.mp3
  chord status --node 127.0.0.2:5000 --json
  chord ring --json
  CHORD_NODE=127.0.0.3:5000 chord leave";

pub const FILES_EXAMPLES: &str = "Examples:
  chord put ./holiday.jpg
  chord put ./notes.txt --name docs/notes.txt --node 127.0.0.2:5000
  chord get holiday.jpg -o /tmp/copy.jpg
  chord ls --json
  chord rm docs/notes.txt";

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
    pub async fn connect(&self) -> Result<Client> {
        connect(self.addr, self.key()?.as_ref()).await
    }
}

/// Read the key file at `path`, if one is given.
pub fn load_key(path: Option<&std::path::Path>) -> Result<Option<NetworkKey>> {
    Ok(path.map(NetworkKey::from_file).transpose()?)
}

/// A client of the node at `addr`; a node that cannot be reached gets the usual hint.
pub async fn connect(addr: SocketAddr, key: Option<&NetworkKey>) -> Result<Client> {
    Client::connect_with_key(addr, chord_net::Limits::default(), key)
        .await
        .map_err(net_error)
}

/// A peer as JSON.
pub fn peer_json(p: &Peer) -> Value {
    json!({"id": p.id.to_string(), "addr": p.addr.to_string()})
}

/// A peer on one line: the id's first 8 digits and the address.
pub fn short(p: &Peer) -> String {
    format!("{}  {}", &p.id.to_string()[..8], p.addr)
}

/// Write one line of output (see `out!`).
pub fn out_line(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut o = std::io::stdout().lock();
    if let Err(e) = o.write_fmt(args).and_then(|()| o.write_all(b"\n")) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(141);
        }
        eprintln!("error: cannot write the output: {e}");
        std::process::exit(1);
    }
}

/// A name from the network, for human output: control characters (escape sequences,
/// newlines) and invisible format characters (bidirectional overrides, zero-width
/// joiners) escaped, so that a name is printed as data and cannot draw on the terminal,
/// pass for another row, or read as another name.
pub fn printable(name: &str) -> String {
    // Unicode's format characters (category Cf) that reorder or hide text.
    let invisible = |c: char| matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}');
    name.chars()
        .map(|c| {
            if c.is_control() || invisible(c) {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Parse a byte count with an optional K, M, G or T suffix (powers of 1024).
pub fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    let (num, mult) = match t.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&t[..t.len() - 1], 1u64 << 10),
        Some('M') => (&t[..t.len() - 1], 1 << 20),
        Some('G') => (&t[..t.len() - 1], 1 << 30),
        Some('T') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    num.trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("{s:?} is not a size (bytes, or a number with K, M, G or T)"))
}

/// Parse a replica count (`--replicas`): 1 to 16 (peers refuse more).
pub fn parse_replicas(s: &str) -> std::result::Result<u8, String> {
    match s.trim().parse::<u8>() {
        Ok(n) if (1..=16).contains(&n) => Ok(n),
        _ => Err(format!("{s:?} is not a replica count (1 to 16)")),
    }
}

/// A progress bar on a terminal, hidden otherwise.
pub fn bar(len: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new(len);
    b.set_style(
        ProgressStyle::with_template(
            "{bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    b
}

/// An error connecting to the node at `addr` itself gets the usual hint; any other (a
/// holder unreachable, a refusal, ...) keeps the hint its causes give.
pub fn hinted(addr: SocketAddr, e: FilesError) -> Box<dyn std::error::Error> {
    let no_node = matches!(&e, FilesError::Unreachable(n) if not_reached(n) == Some(addr));
    if no_node {
        with_no_node_hint(e, addr)
    } else {
        e.into()
    }
}

/// Transfer options for the node at `at`, with `replicas` holders per item.
pub fn opts(at: &NodeAddr, replicas: u8) -> Result<TransferOptions> {
    Ok(TransferOptions {
        replicas,
        network_key: at.key()?,
        ..TransferOptions::default()
    })
}

/// What every command on items (files and records) takes: how many holders, whose
/// identity, and which node.
#[derive(clap::Args, Debug)]
pub struct ItemArgs {
    /// Copies of every item: the holders written to, read from or removed from.
    #[arg(long, default_value_t = chord_files::DEFAULT_REPLICAS, value_parser = parse_replicas)]
    pub replicas: u8,
    #[command(flatten)]
    pub identity: crate::identity::IdentityArg,
    #[command(flatten)]
    pub at: NodeAddr,
}
