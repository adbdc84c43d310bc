//! `chord put PATH`: upload a file, signed by your identity.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Instant;

use chord_files::manifest::hex;
use chord_files::transfer::{self, PutReport, TransferOptions};
use futures_lite::future::block_on;
use serde_json::json;

use crate::common::{bar, hinted, opts, printable, ItemArgs, Result};

/// Options of `chord put`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The file to upload.
    path: PathBuf,
    /// Name in the ring.
    #[arg(long)]
    name: Option<String>,
    #[command(flatten)]
    item: ItemArgs,
}

/// Upload `path` as `name` through the node at `addr`, with a progress bar on a terminal
/// (the menu's upload too). `opts` is made once the file is known to be readable: it may
/// read a key file or make an identity, which a missing file must not do.
pub fn upload(
    addr: SocketAddr,
    path: &Path,
    name: &str,
    opts: impl FnOnce() -> Result<TransferOptions>,
) -> Result<PutReport> {
    let size = std::fs::metadata(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .len();
    let opts = opts()?;
    let pb = bar(size);
    let rep = block_on(transfer::put(addr, path, name, &opts, &|n| {
        pb.set_position(n)
    }))
    .map_err(|e| hinted(addr, e))?;
    pb.finish_and_clear();
    Ok(rep)
}

pub fn run(a: &Args) -> Result<()> {
    let (at, path, replicas) = (&a.item.at, &a.path, a.item.replicas);
    let name = match &a.name {
        Some(n) => n.to_string(),
        None => path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| format!("{} has no file name; give one with --name", path.display()))?
            .to_string(),
    };
    let start = Instant::now();
    let rep = upload(at.addr, path, &name, || {
        a.item.identity.sign(opts(at, replicas)?)
    })?;
    let m = &rep.manifest;
    if at.json {
        out!(
            "{}",
            json!({"name": m.name, "owner": hex(&rep.owner), "link": rep.qualified_name(), "seq": rep.seq, "size": m.size, "hash": hex(&m.file_hash), "replicas": rep.min_replicas})
        );
    } else {
        out!("stored   {} (version {})", printable(&m.name), rep.seq);
        out!("size     {} bytes in {} chunk(s)", m.size, m.chunks.len());
        out!("hash     {} (BLAKE3)", hex(&m.file_hash));
        out!("replicas {}", rep.min_replicas);
        out!("link     {}", printable(&rep.qualified_name()));
        eprintln!(
            "{:.1} MiB/s",
            m.size as f64 / (1 << 20) as f64 / start.elapsed().as_secs_f64().max(1e-6)
        );
    }
    if rep.min_replicas < replicas {
        eprintln!(
            "warning: some items got only {} of {replicas} copies (a node refused or could not be reached, or the ring has fewer nodes than that)",
            rep.min_replicas
        );
    }
    Ok(())
}
