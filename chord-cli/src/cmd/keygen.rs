//! `chord keygen FILE`: a new network key.

use chord_net::NetworkKey;

use crate::common::Result;

pub const EXAMPLES: &str = "Examples:
  chord keygen ring.key
  chord node --network-key ring.key
  chord node 127.0.0.2 5000 --join 127.0.0.1:2000 --network-key ring.key
  CHORD_NETWORK_KEY=ring.key chord ls";

/// Options of `chord keygen`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Where to write the key (created with permissions 0600).
    file: std::path::PathBuf,
    /// Replace the file if it exists.
    #[arg(long)]
    force: bool,
}

/// Write a new random network key to the file, readable by its owner only.
pub fn run(a: &Args) -> Result<()> {
    let (path, force) = (a.file.as_path(), a.force);
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
