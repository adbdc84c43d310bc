//! `chord get NAME`: download a file and verify it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use chord_files::manifest::output_name;
use chord_files::transfer::{self, GetOutcome, TransferOptions};
use futures_lite::future::block_on;
use serde_json::json;

use crate::common::{bar, hinted, opts, printable, ItemArgs, Result};

/// Options of `chord get`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Its name in the ring.
    name: String,
    /// Where to write it (default: the name's last component, in this directory).
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Overwrite an existing file with other content.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    item: ItemArgs,
}

/// Download `name` to `out` through the node at `addr`, with a progress bar on a terminal
/// (the menu's download too).
pub fn download(
    addr: SocketAddr,
    name: &str,
    out: &Path,
    force: bool,
    opts: &TransferOptions,
) -> Result<GetOutcome> {
    let pb = bar(0);
    let result = block_on(transfer::get(
        addr,
        name,
        out,
        force,
        opts,
        &|done, total| {
            pb.set_length(total);
            pb.set_position(done);
        },
    ))
    .map_err(|e| hinted(addr, e))?;
    pb.finish_and_clear();
    Ok(result)
}

pub fn run(a: &Args) -> Result<()> {
    let (at, name) = (&a.item.at, a.name.as_str());
    let out = match &a.output {
        Some(p) => p.clone(),
        None => PathBuf::from(output_name(name).ok_or_else(|| {
            format!("{name:?} does not end in a usable file name; choose the output with -o PATH")
        })?),
    };
    let o = a.item.identity.for_name(name, opts(at, a.item.replicas)?)?;
    let result = download(at.addr, name, &out, a.force, &o)?;
    let (path, fresh) = match result {
        GetOutcome::Written(p) => (p, true),
        GetOutcome::UpToDate(p) => (p, false),
    };
    if at.json {
        out!(
            "{}",
            json!({"name": name, "path": path.display().to_string(), "written": fresh})
        );
    } else if fresh {
        out!(
            "saved {} to {} (verified)",
            printable(name),
            printable(&path.display().to_string())
        );
    } else {
        out!("{} is already up to date", path.display());
    }
    Ok(())
}
