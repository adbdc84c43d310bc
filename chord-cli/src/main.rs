//! `chord`: the command-line face of the Chord DHT: run a node, ask a running node
//! questions, or simulate whole rings.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// `println!` for the command's output: a closed stdout (`chord ls | head -1`) ends the
/// process quietly with the status a shell shows for SIGPIPE (141), as other Unix tools
/// do, instead of panicking; other write errors are reported.
macro_rules! out {
    ($($t:tt)*) => {
        $crate::common::out_line(format_args!($($t)*))
    };
}

mod cmd;
mod common;
mod control;
mod experiment;
mod identity;
mod menu;
mod svg;
mod view;

use common::{printable, CLIENT_EXAMPLES, FILES_EXAMPLES};

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
    #[command(after_help = cmd::demo::EXAMPLES)]
    Demo(cmd::demo::Args),
    /// Run a node: start a ring, or join one with --join.
    #[command(after_help = cmd::node::EXAMPLES)]
    Node(cmd::node::Args),
    /// Find the node responsible for KEY (a name; its id is SHA-1 of it).
    #[command(after_help = CLIENT_EXAMPLES)]
    Lookup(cmd::lookup::Args),
    /// Show a node's predecessor, successor list and finger table.
    #[command(after_help = CLIENT_EXAMPLES)]
    Status(cmd::status::Args),
    /// Walk the ring by successors from a node and check it is consistent.
    #[command(after_help = CLIENT_EXAMPLES)]
    Ring(cmd::ring::Args),
    /// Generate shell completions.
    #[command(after_help = cmd::completions::EXAMPLES)]
    Completions(cmd::completions::Args),
    /// Make a new network key: give the file to every node and client of a ring
    /// (--network-key FILE) and all their traffic is authenticated and encrypted.
    #[command(after_help = cmd::keygen::EXAMPLES)]
    Keygen(cmd::keygen::Args),
    /// Make a node leave the ring gracefully and stop (on the node's host, as the user who
    /// started it: it reads the node's control token, `control-IP-PORT.token` in
    /// $CHORD_RUNTIME_DIR, else $XDG_RUNTIME_DIR/chord, else ~/.local/state/chord).
    #[command(after_help = CLIENT_EXAMPLES)]
    Leave(cmd::leave::Args),
    /// Upload a file to the ring (any path; the name defaults to its file name).
    #[command(after_help = FILES_EXAMPLES)]
    Put(cmd::put::Args),
    /// Download a file from the ring and verify it.
    #[command(after_help = FILES_EXAMPLES)]
    Get(cmd::get::Args),
    /// List every file in the ring with its size, hash and replica count.
    #[command(after_help = FILES_EXAMPLES)]
    Ls(cmd::ls::Args),
    /// Remove a file from the ring.
    #[command(after_help = FILES_EXAMPLES)]
    Rm(cmd::rm::Args),
    /// Signed records: small values only you can change (`kv put`, `kv get`, `kv rm`).
    #[command(after_help = cmd::kv::EXAMPLES)]
    Kv(cmd::kv::Args),
    /// Print your identity's public key (made on first use): others read your records
    /// with it (`chord kv get KEY --owner PUBLIC_KEY`).
    #[command(after_help = cmd::kv::EXAMPLES)]
    Id(cmd::id::Args),
    /// Simulate a Chord ring deterministically and report what it measured.
    #[command(after_help = cmd::sim::EXAMPLES)]
    Sim(cmd::sim::Args),
    /// Measure lookup path length for rings of 2^FROM .. 2^TO nodes (Chord paper, fig. 10).
    #[command(after_help = cmd::paths::EXAMPLES)]
    Paths(cmd::paths::Args),
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let result = match cli.command {
        Command::Demo(a) => cmd::demo::run(&a),
        Command::Node(a) => cmd::node::run(&a),
        Command::Lookup(a) => cmd::lookup::run(&a),
        Command::Status(a) => cmd::status::run(&a),
        Command::Ring(a) => cmd::ring::run(&a),
        Command::Completions(a) => {
            use clap::CommandFactory;
            cmd::completions::run(&a, Cli::command())
        }
        Command::Keygen(a) => cmd::keygen::run(&a),
        Command::Leave(a) => cmd::leave::run(&a),
        Command::Put(a) => cmd::put::run(&a),
        Command::Get(a) => cmd::get::run(&a),
        Command::Ls(a) => cmd::ls::run(&a),
        Command::Rm(a) => cmd::rm::run(&a),
        Command::Kv(a) => cmd::kv::run(&a),
        Command::Id(a) => cmd::id::run(&a),
        Command::Sim(a) => cmd::sim::run(&a),
        Command::Paths(a) => cmd::paths::run(&a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            for line in common::error_report(&*e) {
                eprintln!("{line}");
            }
            ExitCode::FAILURE
        }
    }
}
