//! The client side of file sharing: `put`, `get`, `ls`, `rm`.
//!
//! A client talks to one node (to locate items on the ring) and directly to the nodes that
//! hold them. Transfers stream: at most `window` chunks are in memory at once, fetched or
//! stored in parallel, each verified against its hash before it is written; the output
//! file appears (renamed into place) only once the whole-file hash matches.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use chord_core::{Id, Peer};
use chord_net::Client;

use crate::manifest::{check_name, hash, ItemKey, Manifest, DEFAULT_CHUNK, MAX_CHUNK};
use crate::service::{FilesRequest, FilesResponse};
use crate::{decode, encode, FilesError, DEFAULT_REPLICAS, SERVICE};

/// Settings of a transfer.
#[derive(Clone, Debug)]
pub struct TransferOptions {
    /// Copies of each item (put), and how many holders to try (get).
    pub replicas: u8,
    /// Chunks in flight at once.
    pub window: usize,
    /// Chunk size for uploads.
    pub chunk_size: u32,
}

impl Default for TransferOptions {
    fn default() -> TransferOptions {
        TransferOptions {
            replicas: DEFAULT_REPLICAS,
            window: 8,
            chunk_size: DEFAULT_CHUNK,
        }
    }
}

fn local(e: std::io::Error, what: &Path) -> FilesError {
    FilesError::Local(format!("{}: {e}", what.display()))
}

/// One lane of a transfer: its own connections (a `Client` serves one request at a time).
struct Lane {
    node: SocketAddr,
    clients: HashMap<SocketAddr, Client>,
}

impl Lane {
    fn new(node: SocketAddr) -> Lane {
        Lane {
            node,
            clients: HashMap::new(),
        }
    }

    async fn ask(
        &mut self,
        to: SocketAddr,
        req: &FilesRequest,
    ) -> Result<FilesResponse, FilesError> {
        let bytes = encode(req)?;
        let c = match self.clients.entry(to) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(
                Client::connect(to)
                    .await
                    .map_err(|e| FilesError::Unreachable(chain(&e)))?,
            ),
        };
        match c.call(SERVICE, bytes).await {
            Ok(answer) => match decode::<FilesResponse>(&answer)? {
                FilesResponse::Error(e) => Err(e),
                r => Ok(r),
            },
            Err(e) => {
                // The connection may be broken: open a new one next time.
                self.clients.remove(&to);
                Err(FilesError::Unreachable(chain(&e)))
            }
        }
    }

    async fn locate(&mut self, id: Id, k: u8) -> Result<Vec<Peer>, FilesError> {
        let node = self.node;
        match self
            .ask(node, &FilesRequest::Locate { id, replicas: k })
            .await?
        {
            FilesResponse::Located(p) if !p.is_empty() => Ok(p),
            _ => Err(FilesError::Lookup("no holder found".into())),
        }
    }

    /// Store an item on its `k` holders; returns how many took it.
    async fn store(&mut self, key: ItemKey, data: &[u8], k: u8) -> Result<u8, FilesError> {
        let holders = self.locate(key.ring_id(), k).await?;
        let mut stored = 0;
        let mut last = None;
        for h in holders {
            let req = FilesRequest::Store {
                key,
                data: data.to_vec(),
            };
            match self.ask(h.addr, &req).await {
                Ok(FilesResponse::Stored) => stored += 1,
                Ok(_) => {}
                Err(e) => last = Some(e),
            }
        }
        match (stored, last) {
            (0, Some(e)) => Err(e),
            (0, None) => Err(FilesError::Unavailable),
            (n, _) => Ok(n),
        }
    }

    /// Fetch a chunk from the first holder whose copy verifies.
    async fn fetch_chunk(&mut self, h: crate::Hash, k: u8) -> Result<Vec<u8>, FilesError> {
        let key = ItemKey::Chunk(h);
        for p in self.locate(key.ring_id(), k).await? {
            match self.ask(p.addr, &FilesRequest::Fetch { key }).await {
                Ok(FilesResponse::Data(d)) if hash(&d) == h => return Ok(d),
                Ok(FilesResponse::Data(_)) => {
                    tracing::warn!(from = %p.addr, "corrupt chunk received: trying another replica")
                }
                _ => {}
            }
        }
        Err(FilesError::Unavailable)
    }
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

/// What `put` did.
#[derive(Clone, Debug)]
pub struct PutReport {
    /// The stored manifest.
    pub manifest: Manifest,
    /// The fewest copies any item got.
    pub min_replicas: u8,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Upload the file at `path` under `name` through the node at `node`. `progress` is
/// called with the bytes done so far.
pub async fn put(
    node: SocketAddr,
    path: &Path,
    name: &str,
    opts: &TransferOptions,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<PutReport, FilesError> {
    check_name(name)?;
    let chunk_size = opts.chunk_size.clamp(1, MAX_CHUNK);
    let window = opts.window.max(1);
    let mut file = std::fs::File::open(path).map_err(|e| local(e, path))?;
    let size = file.metadata().map_err(|e| local(e, path))?.len();
    let mut lanes: Vec<Lane> = (0..window).map(|_| Lane::new(node)).collect();
    let mut whole = blake3::Hasher::new();
    let mut chunks = Vec::new();
    let mut done = 0u64;
    let mut min_replicas = opts.replicas;
    loop {
        // Read up to `window` chunks: the only file data in memory.
        let mut batch = Vec::with_capacity(window);
        while batch.len() < window
            && done + batch.iter().map(|b: &Vec<u8>| b.len() as u64).sum::<u64>() < size
        {
            let mut buf = vec![0u8; chunk_size as usize];
            let n = read_full(&mut file, &mut buf).map_err(|e| local(e, path))?;
            if n == 0 {
                break;
            }
            buf.truncate(n);
            whole.update(&buf);
            batch.push(buf);
        }
        if batch.is_empty() {
            break;
        }
        let jobs = batch.iter().zip(lanes.iter_mut()).map(|(data, lane)| {
            let h = hash(data);
            async move {
                lane.store(ItemKey::Chunk(h), data, opts.replicas)
                    .await
                    .map(|n| (h, n))
            }
        });
        for r in futures::future::join_all(jobs).await {
            let (h, n) = r?;
            chunks.push(h);
            min_replicas = min_replicas.min(n);
        }
        done += batch.iter().map(|b| b.len() as u64).sum::<u64>();
        progress(done);
    }
    if done != size {
        return Err(FilesError::Local(format!(
            "{} changed while reading",
            path.display()
        )));
    }
    let manifest = Manifest {
        name: name.to_string(),
        size,
        chunk_size,
        chunks,
        file_hash: *whole.finalize().as_bytes(),
        uploaded_ms: now_ms(),
    };
    let n = lanes[0]
        .store(manifest.key(), &encode(&manifest)?, opts.replicas)
        .await?;
    Ok(PutReport {
        manifest,
        min_replicas: min_replicas.min(n),
    })
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// The newest manifest named `name`, from its holders.
pub async fn manifest(node: SocketAddr, name: &str, k: u8) -> Result<Manifest, FilesError> {
    check_name(name)?;
    let mut lane = Lane::new(node);
    let key = ItemKey::Manifest(Id::for_key(name));
    let mut best: Option<Manifest> = None;
    for p in lane.locate(key.ring_id(), k).await? {
        if let Ok(FilesResponse::Data(d)) = lane.ask(p.addr, &FilesRequest::Fetch { key }).await {
            if let Ok(m) = decode::<Manifest>(&d) {
                if m.validate().is_ok()
                    && m.name == name
                    && best.as_ref().is_none_or(|b| m.supersedes(b))
                {
                    best = Some(m);
                }
            }
        }
    }
    best.ok_or_else(|| FilesError::NotFound(name.to_string()))
}

/// What `get` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GetOutcome {
    /// The file was downloaded and verified.
    Written(PathBuf),
    /// The output already held exactly this file: nothing was changed.
    UpToDate(PathBuf),
}

fn file_hash(path: &Path) -> std::io::Result<crate::Hash> {
    let mut h = blake3::Hasher::new();
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match f.read(&mut buf)? {
            0 => return Ok(*h.finalize().as_bytes()),
            n => {
                h.update(&buf[..n]);
            }
        }
    }
}

/// Download `name` to `out` through the node at `node`. An existing `out` with the same
/// content is left alone; with other content it is replaced only with `force`.
pub async fn get(
    node: SocketAddr,
    name: &str,
    out: &Path,
    force: bool,
    opts: &TransferOptions,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<GetOutcome, FilesError> {
    let m = manifest(node, name, opts.replicas).await?;
    if out.exists() {
        if file_hash(out).map_err(|e| local(e, out))? == m.file_hash {
            return Ok(GetOutcome::UpToDate(out.to_path_buf()));
        }
        if !force {
            return Err(FilesError::Exists(out.display().to_string()));
        }
    }
    let file_name = out
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| FilesError::Local(format!("{} is not a file path", out.display())))?;
    let tmp = out.with_file_name(format!(".{file_name}.chord-part-{}", std::process::id()));
    let result = download(&m, node, &tmp, opts, progress).await;
    match result {
        Ok(()) => {
            std::fs::rename(&tmp, out).map_err(|e| local(e, out))?;
            Ok(GetOutcome::Written(out.to_path_buf()))
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

async fn download(
    m: &Manifest,
    node: SocketAddr,
    tmp: &Path,
    opts: &TransferOptions,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<(), FilesError> {
    let window = opts.window.max(1);
    let mut f = std::fs::File::create(tmp).map_err(|e| local(e, tmp))?;
    let mut lanes: Vec<Lane> = (0..window).map(|_| Lane::new(node)).collect();
    let mut whole = blake3::Hasher::new();
    let mut done = 0u64;
    for batch in m.chunks.chunks(window) {
        let jobs = batch
            .iter()
            .zip(lanes.iter_mut())
            .map(|(h, lane)| lane.fetch_chunk(*h, opts.replicas));
        for (i, r) in futures::future::join_all(jobs)
            .await
            .into_iter()
            .enumerate()
        {
            let data = r?;
            let idx = (done / u64::from(m.chunk_size)) as usize;
            if data.len() != m.chunk_len(idx) {
                return Err(FilesError::Corrupt);
            }
            let _ = i;
            f.write_all(&data).map_err(|e| local(e, tmp))?;
            whole.update(&data);
            done += data.len() as u64;
        }
        progress(done, m.size);
    }
    if *whole.finalize().as_bytes() != m.file_hash || done != m.size {
        return Err(FilesError::Corrupt);
    }
    f.sync_all().map_err(|e| local(e, tmp))?;
    Ok(())
}

/// One file as `ls` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listing {
    /// The newest manifest of the name.
    pub manifest: Manifest,
    /// Nodes holding that manifest.
    pub replicas: usize,
}

/// Every file in the ring, found by walking it from `node` (bounded by `max_nodes`).
pub async fn ls(node: SocketAddr, max_nodes: usize) -> Result<Vec<Listing>, FilesError> {
    let mut lane = Lane::new(node);
    let mut seen = std::collections::HashSet::new();
    let mut by_name: HashMap<String, (Manifest, usize)> = HashMap::new();
    let mut next = node;
    while seen.len() < max_nodes && seen.insert(next) {
        let FilesResponse::Here {
            manifests,
            successor,
            ..
        } = lane.ask(next, &FilesRequest::ListHere).await?
        else {
            return Err(FilesError::BadRequest);
        };
        for m in manifests {
            match by_name.get_mut(&m.name) {
                Some((best, n))
                    if best.file_hash == m.file_hash && best.uploaded_ms == m.uploaded_ms =>
                {
                    *n += 1
                }
                Some((best, n)) if m.supersedes(best) => {
                    *best = m;
                    *n = 1;
                }
                Some(_) => {}
                None => {
                    by_name.insert(m.name.clone(), (m, 1));
                }
            }
        }
        match successor {
            Some(s) => next = s,
            None => break,
        }
    }
    let mut out: Vec<Listing> = by_name
        .into_values()
        .map(|(manifest, replicas)| Listing { manifest, replicas })
        .collect();
    out.sort_by(|a, b| a.manifest.name.cmp(&b.manifest.name));
    Ok(out)
}

/// Remove the file `name` (its manifest, from every holder). Chunks stay until a future
/// garbage collection: another file may share them.
pub async fn rm(node: SocketAddr, name: &str, k: u8) -> Result<usize, FilesError> {
    let m = manifest(node, name, k).await?;
    let mut lane = Lane::new(node);
    let mut removed = 0;
    for p in lane.locate(m.key().ring_id(), k).await? {
        if let Ok(FilesResponse::Removed) = lane
            .ask(p.addr, &FilesRequest::Remove { key: m.key() })
            .await
        {
            removed += 1;
        }
    }
    Ok(removed)
}
