//! `chord put`, `get`, `ls`, `rm`: file sharing through a running node.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

use chord_files::manifest::{hex, output_name};
use chord_files::transfer::{self, GetOutcome, TransferOptions};
use chord_files::FilesError;
use futures_lite::future::block_on;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::kv::IdentityArg;
use crate::net::{no_node_hint, Hinted, NodeAddr};
use crate::printable;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

pub const EXAMPLES: &str = "Examples:
  chord put ./holiday.jpg
  chord put ./notes.txt --name docs/notes.txt --node 127.0.0.2:5000
  chord get holiday.jpg -o /tmp/copy.jpg
  chord ls --json
  chord rm docs/notes.txt";

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

/// Errors reaching the node get the usual hint.
pub(crate) fn hinted(at: &NodeAddr, e: FilesError) -> Box<dyn std::error::Error> {
    match e {
        FilesError::Unreachable(_) => Box::new(Hinted {
            err: e.into(),
            hint: no_node_hint(at.addr),
        }),
        e => e.into(),
    }
}

pub(crate) fn opts(at: &NodeAddr, replicas: u8) -> Result<TransferOptions> {
    Ok(TransferOptions {
        replicas,
        network_key: at.key()?,
        ..TransferOptions::default()
    })
}

pub fn put(
    at: &NodeAddr,
    path: &PathBuf,
    name: Option<&str>,
    replicas: u8,
    identity: &IdentityArg,
) -> Result<()> {
    let name = match name {
        Some(n) => n.to_string(),
        None => path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| format!("{} has no file name; give one with --name", path.display()))?
            .to_string(),
    };
    let size = std::fs::metadata(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .len();
    let pb = bar(size);
    let start = Instant::now();
    let rep = block_on(transfer::put(
        at.addr,
        path,
        &name,
        &identity.sign(opts(at, replicas)?)?,
        &|n| pb.set_position(n),
    ))
    .map_err(|e| hinted(at, e))?;
    pb.finish_and_clear();
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
            "warning: some items got only {} of {replicas} copies (fewer nodes than replicas?)",
            rep.min_replicas
        );
    }
    Ok(())
}

pub fn get(
    at: &NodeAddr,
    name: &str,
    out: Option<&PathBuf>,
    force: bool,
    replicas: u8,
    identity: &IdentityArg,
) -> Result<()> {
    let out = match out {
        Some(p) => p.clone(),
        None => PathBuf::from(output_name(name).ok_or_else(|| {
            format!("{name:?} does not end in a usable file name; choose the output with -o PATH")
        })?),
    };
    let o = identity.for_name(name, opts(at, replicas)?)?;
    let pb = bar(0);
    let result = block_on(transfer::get(
        at.addr,
        name,
        &out,
        force,
        &o,
        &|done, total| {
            pb.set_length(total);
            pb.set_position(done);
        },
    ))
    .map_err(|e| hinted(at, e))?;
    pb.finish_and_clear();
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

pub fn ls(at: &NodeAddr) -> Result<()> {
    let list =
        block_on(transfer::ls(at.addr, 100_000, &opts(at, 1)?)).map_err(|e| hinted(at, e))?;
    if at.json {
        let v: Vec<_> = list
            .iter()
            .map(|l| {
                json!({
                    "name": l.name,
                    "owner": hex(&l.owner),
                    "link": l.qualified_name(),
                    "version": l.seq,
                    "size": l.size,
                    "hash": hex(&l.file_hash),
                    "replicas": l.replicas,
                })
            })
            .collect();
        out!("{}", serde_json::Value::Array(v));
        return Ok(());
    }
    if list.is_empty() {
        out!("(no files in the ring)");
    }
    for l in &list {
        out!(
            "{:>12}  {}  x{}  {}  {}",
            l.size,
            &hex(&l.file_hash)[..12],
            l.replicas,
            &hex(&l.owner)[..8],
            printable(&l.name)
        );
    }
    Ok(())
}

pub fn rm(at: &NodeAddr, name: &str, replicas: u8, identity: &IdentityArg) -> Result<()> {
    let o = identity.sign(opts(at, replicas)?)?;
    let n = block_on(transfer::rm(at.addr, name, &o)).map_err(|e| hinted(at, e))?;
    if at.json {
        out!("{}", json!({"name": name, "removed_from": n}));
    } else {
        out!(
            "removed {} ({n} cop{})",
            printable(name),
            if n == 1 { "y" } else { "ies" }
        );
    }
    Ok(())
}

/// Bytes the files service at `addr` stores, if it answers.
pub fn stored_bytes(
    addr: std::net::SocketAddr,
    key: Option<&chord_net::NetworkKey>,
) -> Option<u64> {
    use chord_files::service::{FilesRequest, FilesResponse};
    block_on(async {
        let mut c = chord_net::Client::connect_with_key(addr, chord_net::Limits::default(), key)
            .await
            .ok()?;
        let req = chord_files::encode(&FilesRequest::ListHere).ok()?;
        let answer = c.call(chord_files::SERVICE, req).await.ok()?;
        match chord_files::decode::<FilesResponse>(&answer).ok()? {
            FilesResponse::Here { stored, .. } => Some(stored),
            _ => None,
        }
    })
}
