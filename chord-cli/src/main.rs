//! `chord`: the command-line face of the Chord DHT: run a node, ask a running node
//! questions, or simulate whole rings.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// `println!` for the command's output: a closed stdout (`chord ls | head -1`) ends the
/// process quietly with the status a shell shows for SIGPIPE (141), as other Unix tools
/// do, instead of panicking; other write errors are reported.
macro_rules! out {
    ($($t:tt)*) => {
        $crate::out_line(format_args!($($t)*))
    };
}

mod control;
mod demo;
mod experiment;
mod files;
mod kv;
mod menu;
mod net;
mod paths;
mod sim;
mod svg;

/// A Chord distributed hash table: run a node, talk to one, or simulate a ring.
#[derive(Parser, Debug)]
#[command(name = "chord", version, about, long_about = None)]
struct Cli {
    /// More log output on stderr (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Show the whole system on this machine: a small ring, a file stored, fetched, a node
    /// crashed, the file fetched again.
    #[command(after_help = demo::EXAMPLES)]
    Demo(demo::DemoArgs),
    /// Run a node: start a ring, or join one with --join.
    #[command(after_help = net::NODE_EXAMPLES)]
    Node(net::NodeArgs),
    /// Find the node responsible for KEY (a name; its id is SHA-1 of it).
    #[command(after_help = net::CLIENT_EXAMPLES)]
    Lookup {
        /// The key's name.
        key: String,
        #[command(flatten)]
        at: net::NodeAddr,
    },
    /// Show a node's predecessor, successor list and finger table.
    #[command(after_help = net::CLIENT_EXAMPLES)]
    Status {
        #[command(flatten)]
        at: net::NodeAddr,
    },
    /// Walk the ring by successors from a node and check it is consistent.
    #[command(after_help = net::CLIENT_EXAMPLES)]
    Ring {
        #[command(flatten)]
        at: net::NodeAddr,
        /// Also draw the ring (nodes by id, successor arcs, fingers, bytes stored) as SVG.
        #[arg(long, value_name = "FILE")]
        svg: Option<std::path::PathBuf>,
        /// Whose fingers to draw (default: the node given by --node).
        #[arg(long, value_name = "ADDR")]
        fingers_of: Option<std::net::SocketAddr>,
    },
    /// Generate shell completions.
    #[command(
        after_help = "Examples:\n  chord completions bash > ~/.local/share/bash-completion/completions/chord\n  chord completions zsh > ~/.zfunc/_chord"
    )]
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Make a new network key: give the file to every node and client of a ring
    /// (--network-key FILE) and all their traffic is authenticated and encrypted.
    #[command(after_help = net::KEYGEN_EXAMPLES)]
    Keygen {
        /// Where to write the key (created with permissions 0600).
        file: std::path::PathBuf,
        /// Replace the file if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Make a node leave the ring gracefully and stop (on the node's host, as the user who
    /// started it: it reads the node's control token, `control-IP-PORT.token` in
    /// $CHORD_RUNTIME_DIR, else $XDG_RUNTIME_DIR/chord, else ~/.local/state/chord).
    #[command(after_help = net::CLIENT_EXAMPLES)]
    Leave {
        #[command(flatten)]
        at: net::NodeAddr,
    },
    /// Upload a file to the ring (any path; the name defaults to its file name).
    #[command(after_help = files::EXAMPLES)]
    Put {
        /// The file to upload.
        path: std::path::PathBuf,
        /// Name in the ring.
        #[arg(long)]
        name: Option<String>,
        /// Copies of every item.
        #[arg(long, default_value_t = chord_files::DEFAULT_REPLICAS, value_parser = clap::value_parser!(u8).range(1..=16))]
        replicas: u8,
        #[command(flatten)]
        identity: kv::IdentityArg,
        #[command(flatten)]
        at: net::NodeAddr,
    },
    /// Download a file from the ring and verify it.
    #[command(after_help = files::EXAMPLES)]
    Get {
        /// Its name in the ring.
        name: String,
        /// Where to write it (default: the name's last component, in this directory).
        #[arg(short, long)]
        output: Option<std::path::PathBuf>,
        /// Overwrite an existing file with other content.
        #[arg(long)]
        force: bool,
        /// Holders to try for every item.
        #[arg(long, default_value_t = chord_files::DEFAULT_REPLICAS, value_parser = clap::value_parser!(u8).range(1..=16))]
        replicas: u8,
        #[command(flatten)]
        identity: kv::IdentityArg,
        #[command(flatten)]
        at: net::NodeAddr,
    },
    /// List every file in the ring with its size, hash and replica count.
    #[command(after_help = files::EXAMPLES)]
    Ls {
        #[command(flatten)]
        at: net::NodeAddr,
    },
    /// Remove a file from the ring.
    #[command(after_help = files::EXAMPLES)]
    Rm {
        /// Its name in the ring.
        name: String,
        /// Holders to remove it from.
        #[arg(long, default_value_t = chord_files::DEFAULT_REPLICAS, value_parser = clap::value_parser!(u8).range(1..=16))]
        replicas: u8,
        #[command(flatten)]
        identity: kv::IdentityArg,
        #[command(flatten)]
        at: net::NodeAddr,
    },
    /// Signed records: small values only you can change (`kv put`, `kv get`, `kv rm`).
    #[command(after_help = kv::EXAMPLES)]
    Kv {
        #[command(subcommand)]
        command: kv::KvCommand,
    },
    /// Print your identity's public key (made on first use): others read your records
    /// with it (`chord kv get KEY --owner PUBLIC_KEY`).
    #[command(after_help = kv::EXAMPLES)]
    Id {
        #[command(flatten)]
        identity: kv::IdentityArg,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Simulate a Chord ring deterministically and report what it measured.
    #[command(after_help = sim::EXAMPLES)]
    Sim(sim::SimArgs),
    /// Measure lookup path length for rings of 2^FROM .. 2^TO nodes (Chord paper, fig. 10).
    #[command(after_help = paths::EXAMPLES)]
    Paths(paths::PathsArgs),
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colours only on a terminal, and never with NO_COLOR set.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .try_init();
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let result = match cli.command {
        Command::Demo(args) => demo::demo(&args),
        Command::Node(args) => net::node(&args),
        Command::Lookup { key, at } => net::lookup(&at, &key),
        Command::Status { at } => net::status(&at),
        Command::Ring {
            at,
            svg,
            fingers_of,
        } => net::ring(&at, svg.as_deref(), fingers_of),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "chord", &mut std::io::stdout());
            Ok(())
        }
        Command::Keygen { file, force } => net::keygen(&file, force),
        Command::Leave { at } => net::leave(&at),
        Command::Put {
            path,
            name,
            replicas,
            at,
            identity,
        } => files::put(&at, &path, name.as_deref(), replicas, &identity),
        Command::Get {
            name,
            output,
            force,
            replicas,
            at,
            identity,
        } => files::get(&at, &name, output.as_ref(), force, replicas, &identity),
        Command::Ls { at } => files::ls(&at),
        Command::Rm {
            name,
            replicas,
            at,
            identity,
        } => files::rm(&at, &name, replicas, &identity),
        Command::Kv { command } => kv::kv(&command),
        Command::Id { identity, json } => kv::id(&identity, json),
        Command::Sim(args) => sim::run(&args),
        Command::Paths(args) => paths::run_paths(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Errors can quote what a peer sent (names): printed as data.
            eprintln!("error: {}", printable(&e.to_string()));
            let mut source = e.source();
            while let Some(s) = source {
                eprintln!("  caused by: {}", printable(&s.to_string()));
                source = s.source();
            }
            if let Some(h) = e.downcast_ref::<net::Hinted>() {
                eprintln!("hint: {}", h.hint);
            } else if let Some(h) = hint_for(&*e) {
                eprintln!("hint: {h}");
            }
            ExitCode::FAILURE
        }
    }
}
