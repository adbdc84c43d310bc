//! `chord`: the command-line front end of the Chord DHT.
//!
//! This first version carries the simulator (`chord sim`); the node, client and file
//! commands arrive with chord-net and chord-files.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod paths;
mod sim;

/// A Chord distributed hash table: simulator (node and file commands to come).
#[derive(Parser, Debug)]
#[command(name = "chord", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Simulate a Chord ring deterministically and report what it measured.
    #[command(after_help = sim::EXAMPLES)]
    Sim(sim::SimArgs),
    /// Measure lookup path length for rings of 2^FROM .. 2^TO nodes (Chord paper, fig. 10).
    #[command(after_help = paths::EXAMPLES)]
    Paths(paths::PathsArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Sim(args) => sim::run(&args),
        Command::Paths(args) => paths::run_paths(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            let mut source = std::error::Error::source(&*e);
            while let Some(s) = source {
                eprintln!("  caused by: {s}");
                source = s.source();
            }
            ExitCode::FAILURE
        }
    }
}
