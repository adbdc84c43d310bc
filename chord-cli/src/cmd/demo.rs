//! `chord demo`: the whole system on one machine, in one process, with no set-up.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chord_core::Config;
use chord_files::manifest::hex;
use chord_files::transfer::{self, GetOutcome, TransferOptions};
use chord_files::{FilesConfig, FilesNode, MemoryStore};
use futures_lite::future::block_on;

use crate::cmd::ring::{print_ring, walk_ring};
use crate::common::{parse_size, Result};

pub const EXAMPLES: &str = "Examples:
  chord demo
  chord demo --nodes 8 --size 64M
  chord demo --keep        # leave the ring running and talk to it with chord ls, get, ring…
  chord demo --http        # and watch it in the browser at http://127.0.0.1:8080/";

/// Options of `chord demo`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Nodes in the ring.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(2..=64))]
    nodes: u16,
    /// Size of the generated file (suffixes K, M, G).
    #[arg(long, default_value = "16M", value_parser = parse_size)]
    size: u64,
    /// Keep the ring running after the demo, until Ctrl-C.
    #[arg(long)]
    keep: bool,
    /// Play the demo in the browser too: serve the live view of the ring on this address
    /// (default 127.0.0.1:8080), go at a pace one can follow, and keep the ring running
    /// at the end (as --keep).
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = crate::view::DEFAULT_ADDR)]
    http: Option<SocketAddr>,
}

/// Cleans up the demo's files however the demo ends.
struct TempDir(PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn step(n: u32, what: &str) {
    out!("\n{n}. {what}");
}

/// How the demo goes: its nodes' settings, and the pause between steps (with the live
/// view, so that the page can be followed).
struct Demo {
    config: Config,
    files: FilesConfig,
    pace: Duration,
}

impl Demo {
    async fn pause(&self) {
        async_io::Timer::after(self.pace).await;
    }
}

pub fn run(a: &Args) -> Result<()> {
    let demo = Demo {
        config: Config {
            stabilize_interval: Duration::from_millis(200),
            fix_fingers_interval: Duration::from_millis(200),
            request_timeout: Duration::from_millis(500),
            ..Config::default()
        },
        files: FilesConfig {
            replicas: 3,
            repair_every: Duration::from_secs(2),
            ..FilesConfig::default()
        },
        pace: if a.http.is_some() {
            Duration::from_secs(3)
        } else {
            Duration::ZERO
        },
    };
    let dir = TempDir(std::env::temp_dir().join(format!("chord-demo-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0)?;
    block_on(async {
        let (mut nodes, view_at) = start_ring(&demo, a).await?;
        let first = nodes[0].node().addr();

        demo.pause().await;
        let opts = store_file(a.size, &dir.0, first).await?;

        demo.pause().await;
        step(3, "Fetching it through another node and verifying it");
        let other = nodes[nodes.len() - 1].node().addr();
        let out = dir.0.join("fetched.bin");
        fetch(other, &out, &opts).await?;
        out!(
            "   fetched through {other}: identical ({} bytes)",
            std::fs::metadata(&out)?.len()
        );

        demo.pause().await;
        let crashed = crash_one(&mut nodes, other, &dir.0, &opts).await?;

        demo.pause().await;
        wait_for_repair(&demo, &nodes, crashed, &opts).await?;

        if a.keep || a.http.is_some() {
            keep_running(first, other, view_at).await?;
        }
        for n in &nodes {
            n.node().kill();
        }
        out!("\ndone: every step worked.");
        Ok(())
    })
}

/// Step 1: start the nodes (and the live view, asked for), and wait for their ring.
async fn start_ring(demo: &Demo, a: &Args) -> Result<(Vec<FilesNode>, Option<SocketAddr>)> {
    step(
        1,
        &format!(
            "Starting {} nodes on 127.0.0.1 (ports chosen by the system)",
            a.nodes
        ),
    );
    let mut nodes: Vec<FilesNode> = Vec::new();
    // Bound first: a taken port is an error before any node starts.
    let mut view = a.http.map(crate::view::bind).transpose()?;
    let mut view_at = None;
    let mut last_join = Instant::now();
    for _ in 0..a.nodes {
        let mut b = chord_net::Node::builder()
            .listen(SocketAddr::from(([127, 0, 0, 1], 0)))
            .config(demo.config.clone());
        if let Some(first) = nodes.first() {
            b = b.join(first.node().addr());
        }
        let n =
            FilesNode::start(b, Arc::new(MemoryStore::new(u64::MAX)), demo.files.clone()).await?;
        out!(
            "   node {}  id {}",
            n.node().addr(),
            &n.node().id().to_string()[..16]
        );
        nodes.push(n);
        last_join = Instant::now();
        if let Some(v) = view.take() {
            let at = v.serve(nodes[0].node().addr(), None)?;
            view_at = Some(at);
            out!(
                "   watch it live: http://{at}/  (the demo waits {} s between steps)",
                demo.pace.as_secs()
            );
            demo.pause().await;
        }
        // With the live view, the joins one by one.
        async_io::Timer::after(demo.pace / 6).await;
    }
    let walk = settled_ring(nodes[0].node().addr(), nodes.len()).await?;
    out!(
        "   the ring formed by stabilization {:.1} s after the last join:",
        last_join.elapsed().as_secs_f64()
    );
    print_ring(&walk);
    // Replicas go to the successor lists: give them a moment to fill.
    async_io::Timer::after(Duration::from_secs(1)).await;
    Ok((nodes, view_at))
}

/// Step 2: store a generated file of `size` bytes through `first`, as a new identity
/// made for this run; returns the options to fetch it with.
async fn store_file(size: u64, dir: &Path, first: SocketAddr) -> Result<TransferOptions> {
    step(
        2,
        &format!("Generating a {size} byte file and storing it with 3 replicas"),
    );
    let src = dir.join("demo.bin");
    write_pattern(&src, size)?;
    let opts = TransferOptions {
        identity: Some(chord_files::Identity::generate()?),
        ..TransferOptions::default()
    };
    let pb = crate::common::bar(size);
    let put = transfer::put(first, &src, "demo.bin", &opts, &|n| pb.set_position(n)).await?;
    pb.finish_and_clear();
    out!(
        "   stored demo.bin: {} chunk(s), BLAKE3 {}…, {} copies of every piece",
        put.manifest.chunks.len(),
        &hex(&put.manifest.file_hash)[..16],
        put.min_replicas
    );
    Ok(opts)
}

/// Step 4: kill the second node without a goodbye, fetch the file again through `other`,
/// and wait for the ring to close; returns when the crash was.
async fn crash_one(
    nodes: &mut Vec<FilesNode>,
    other: SocketAddr,
    dir: &Path,
    opts: &TransferOptions,
) -> Result<Instant> {
    step(
        4,
        "Crashing a node that holds the file, then fetching again",
    );
    let dead = nodes.remove(1);
    out!(
        "   killed {}, which held {} bytes of it (no goodbye)",
        dead.node().addr(),
        dead.store().used()
    );
    dead.node().kill();
    let crashed = Instant::now();
    fetch(other, &dir.join("fetched-again.bin"), opts).await?;
    out!("   fetched again from the surviving replicas: identical");
    let walk = settled_ring(nodes[0].node().addr(), nodes.len()).await?;
    out!(
        "   the ring repaired itself {:.1} s after the crash:",
        crashed.elapsed().as_secs_f64()
    );
    print_ring(&walk);
    Ok(crashed)
}

/// Step 5: wait until the dead node's copies are back: every item on k live nodes again.
async fn wait_for_repair(
    demo: &Demo,
    nodes: &[FilesNode],
    crashed: Instant,
    opts: &TransferOptions,
) -> Result<()> {
    let want = demo.files.replicas.min(nodes.len() as u8) as usize;
    step(
        5,
        &format!("Waiting for every piece of the file to have {want} copies again"),
    );
    if !copies_back(nodes, want, crashed, Duration::from_secs(60)).await? {
        return Err(format!("some pieces still had fewer than {want} copies after 60 s").into());
    }
    out!(
        "   every piece has {want} copies again, {:.1} s after the crash",
        crashed.elapsed().as_secs_f64()
    );
    for l in &transfer::ls(nodes[0].node().addr(), 1000, opts).await? {
        out!("   {}  {} bytes  on {} nodes", l.name, l.size, l.replicas);
    }
    Ok(())
}

/// Step 6 (`--keep`, `--http`): keep the ring up for the user until Ctrl-C.
async fn keep_running(
    first: SocketAddr,
    other: SocketAddr,
    view_at: Option<SocketAddr>,
) -> Result<()> {
    // The handler first: whoever reads "Ctrl-C stops the demo" may press it at once.
    let (tx, rx) = async_channel::bounded::<()>(1);
    ctrlc::set_handler(move || {
        let _ = tx.try_send(());
    })?;
    step(6, "The ring keeps running. From another terminal, try:");
    out!("   chord ring --node {first}");
    out!("   chord ls --node {first}");
    out!("   chord get demo.bin --node {other}");
    out!("   chord put SOME_FILE --node {first}");
    if let Some(at) = view_at {
        out!("   or watch the ring and look up keys at http://{at}/");
    }
    out!("   Ctrl-C stops the demo.");
    let _ = rx.recv().await;
    Ok(())
}

/// Wait until every item stored on `nodes` is held by at least `want` of them, at most
/// `limit`, showing the count as it changes (with the time since `since`); false if
/// `limit` passed first.
async fn copies_back(
    nodes: &[FilesNode],
    want: usize,
    since: Instant,
    limit: Duration,
) -> Result<bool> {
    let start = Instant::now();
    let mut shown = None;
    loop {
        let mut copies: std::collections::HashMap<chord_files::manifest::ItemKey, usize> =
            std::collections::HashMap::new();
        for n in nodes {
            for k in n.store().list().await? {
                *copies.entry(k).or_default() += 1;
            }
        }
        let short = copies.values().filter(|c| **c < want).count();
        if shown != Some(short) {
            out!(
                "   {:>5.1} s  {} of {} pieces have fewer than {want} copies",
                since.elapsed().as_secs_f64(),
                short,
                copies.len()
            );
            shown = Some(short);
        }
        if short == 0 {
            return Ok(true);
        }
        if start.elapsed() > limit {
            return Ok(false);
        }
        async_io::Timer::after(Duration::from_millis(200)).await;
    }
}

/// Walk the ring from `first` until it is consistent with `n` nodes (a walk may meet a
/// node that just died: that is retried), for at most 30 s.
async fn settled_ring(first: SocketAddr, n: usize) -> Result<Vec<chord_net::Status>> {
    let start = Instant::now();
    loop {
        let walk = walk_ring(first, None).await;
        match walk {
            Ok(w) if chord_net::ring::is_consistent(&w) && w.len() == n => return Ok(w),
            Ok(w) if start.elapsed() > Duration::from_secs(30) => return Ok(w),
            Err(e) if start.elapsed() > Duration::from_secs(30) => return Err(e),
            _ => {
                async_io::Timer::after(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn fetch(node: SocketAddr, out: &std::path::Path, opts: &TransferOptions) -> Result<()> {
    match transfer::get(node, "demo.bin", out, true, opts, &|_, _| {}).await? {
        GetOutcome::Written(_) | GetOutcome::UpToDate(_) => Ok(()),
    }
}

/// A file whose chunks all differ (so that they spread over the ring).
fn write_pattern(path: &std::path::Path, len: u64) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut left = len;
    while left > 0 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let bytes = x.to_le_bytes();
        let n = left.min(8) as usize;
        f.write_all(&bytes[..n])?;
        left -= n as u64;
    }
    f.flush()
}
