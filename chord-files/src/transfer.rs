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
use chord_net::{Client, Limits, NetworkKey};

use crate::dht::{Route, WriteOptions};
use crate::manifest::{
    check_name, file_salt, hash, hex, parse_name, FileRef, ItemKey, Manifest, DEFAULT_CHUNK,
    FILE_PREFIX, MAX_CHUNK,
};
use crate::record::{now_ms, record_id, Identity, Record};
use crate::wire::{FilesRequest, FilesResponse};
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
    /// The ring's network key, if it uses one.
    pub network_key: Option<NetworkKey>,
    /// Whose files: the signing key that `put` and `rm` use, and the owner of names given
    /// without one. Reading `OWNER/NAME` needs none.
    pub identity: Option<Identity>,
    /// During an upload, how often the leases of the chunks stored so far are renewed
    /// (default 1 hour). Until the file's record is written nobody else renews them, so an
    /// upload longer than the nodes' block lease (24 hours by default) would lose its
    /// first chunks; keep this well below that lease.
    pub renew_every: std::time::Duration,
}

impl Default for TransferOptions {
    fn default() -> TransferOptions {
        TransferOptions {
            replicas: DEFAULT_REPLICAS,
            window: 16,
            chunk_size: DEFAULT_CHUNK,
            network_key: None,
            identity: None,
            renew_every: std::time::Duration::from_secs(3600),
        }
    }
}

/// One lane of a transfer: its own connections (a `Client` serves one request at a time).
pub(crate) struct Lane {
    node: SocketAddr,
    key: Option<NetworkKey>,
    /// A buffer to read the next answer into (recycled from chunks already written).
    pub(crate) spare: Vec<u8>,
    clients: HashMap<SocketAddr, Client>,
    /// Ring ranges `(from, to]` already located, with their holders.
    ranges: Vec<(Id, Id, Vec<Peer>)>,
    /// Records whose signature was checked already.
    pub(crate) verified: crate::dht::Verified,
}

impl Lane {
    pub(crate) fn node(&self) -> SocketAddr {
        self.node
    }

    pub(crate) fn new(node: SocketAddr, key: &Option<NetworkKey>) -> Lane {
        Lane {
            node,
            key: key.clone(),
            spare: Vec::new(),
            clients: HashMap::new(),
            ranges: Vec::new(),
            verified: crate::dht::Verified::default(),
        }
    }

    pub(crate) async fn ask(
        &mut self,
        to: SocketAddr,
        req: &FilesRequest,
    ) -> Result<FilesResponse, FilesError> {
        let bytes = encode(req)?;
        let c = match self.clients.entry(to) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(
                Client::connect_with_key(to, Limits::default(), self.key.as_ref())
                    .await
                    .map_err(FilesError::Unreachable)?,
            ),
        };
        match c
            .call_into(SERVICE, bytes, std::mem::take(&mut self.spare))
            .await
        {
            Ok(mut answer) => {
                // A chunk: keep it in the buffer it arrived in.
                if let Some(at) = FilesResponse::data_at(&answer) {
                    answer.drain(..at);
                    return Ok(FilesResponse::Data(answer));
                }
                match decode::<FilesResponse>(&answer)? {
                    FilesResponse::Error(e) => Err(e.into()),
                    r => Ok(r),
                }
            }
            Err(e) => {
                // The connection may be broken: open a new one next time.
                self.clients.remove(&to);
                Err(FilesError::Unreachable(e))
            }
        }
    }

    /// The holders of ring position `id`, from the ranges already located if possible
    /// (`fresh` forces a new lookup, after a cached answer turned out wrong).
    pub(crate) async fn locate(
        &mut self,
        id: Id,
        k: u8,
        fresh: bool,
    ) -> Result<Vec<Peer>, FilesError> {
        if !fresh {
            if let Some((_, _, h)) = self
                .ranges
                .iter()
                .find(|(from, to, _)| id.in_half_open(*from, *to))
            {
                // A range located for a wider read may hold more than `k`.
                return Ok(h.iter().take(usize::from(k)).copied().collect());
            }
        }
        let node = self.node;
        match self
            .ask(node, &FilesRequest::LocateRange { id, replicas: k })
            .await?
        {
            FilesResponse::LocatedRange { from, holders } if !holders.is_empty() => {
                let to = holders[0].id;
                // Keep the cache small and never let a stale range shadow a fresh one.
                self.ranges.retain(|(f, t, _)| !(id.in_half_open(*f, *t)));
                if self.ranges.len() >= 256 {
                    self.ranges.remove(0);
                }
                if from != to {
                    self.ranges.push((from, to, holders.clone()));
                }
                Ok(holders)
            }
            _ => Err(FilesError::NoHolder),
        }
    }
}

/// What `put` did.
#[derive(Clone, Debug)]
pub struct PutReport {
    /// The stored manifest.
    pub manifest: Manifest,
    /// The fewest copies any item got.
    pub min_replicas: u8,
    /// The owner: the identity's public key.
    pub owner: [u8; 32],
    /// The file record's sequence (1 for a new name, higher for each replacement).
    pub seq: u64,
}

impl PutReport {
    /// The name anyone can fetch the file by: `OWNER/NAME`.
    pub fn qualified_name(&self) -> String {
        format!("{}/{}", hex(&self.owner), self.manifest.name)
    }
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
    let file = std::fs::File::open(path).map_err(FilesError::io(path))?;
    // The size is what is read: files such as /proc's say 0 and hold more. A regular file
    // that says a size must still have it at the end (or it changed while read).
    let meta = file.metadata().map_err(FilesError::io(path))?;
    let expected = Some(meta.len()).filter(|&n| meta.is_file() && n > 0);
    let lanes = lanes(node, opts);
    let reader = blocking::Unblock::new(file);
    put_stream(lanes, reader, expected, name, opts, progress)
        .await
        .map_err(|e| match e {
            FilesError::Stream(e) => FilesError::io(path)(e),
            e => e,
        })
}

/// Upload what `reader` gives, to its end, under `name` through the node at `node`.
pub async fn put_reader(
    node: SocketAddr,
    reader: impl futures::AsyncRead + Unpin + Send,
    name: &str,
    opts: &TransferOptions,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<PutReport, FilesError> {
    put_stream(lanes(node, opts), reader, None, name, opts, progress).await
}

/// Upload `bytes` under `name` through the node at `node`.
pub async fn put_bytes(
    node: SocketAddr,
    bytes: &[u8],
    name: &str,
    opts: &TransferOptions,
) -> Result<PutReport, FilesError> {
    put_reader(node, bytes, name, opts, &|_| {}).await
}

/// One lane per chunk in flight, each with its own connections.
fn lanes(node: SocketAddr, opts: &TransferOptions) -> Vec<Lane> {
    (0..opts.window.max(1))
        .map(|_| Lane::new(node, &opts.network_key))
        .collect()
}

/// Read to the end of `reader`, a chunk at a time, storing at most one chunk per route in
/// `idle` at once (a sliding window); then the manifest block and the file's record.
pub(crate) async fn put_stream<R: Route>(
    mut idle: Vec<R>,
    mut reader: impl futures::AsyncRead + Unpin,
    expected: Option<u64>,
    name: &str,
    opts: &TransferOptions,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<PutReport, FilesError> {
    use futures::stream::{FuturesOrdered, StreamExt};
    check_name(name)?;
    if crate::manifest::split_owner(name).is_some() {
        // It would read as someone's OWNER/NAME in listings and links.
        return Err(FilesError::NotAllowed(
            "a name that starts with 64 hexadecimal digits and / reads as OWNER/NAME".into(),
        ));
    }
    let identity = opts.identity.as_ref().ok_or(FilesError::NoIdentity)?;
    let chunk_size = opts.chunk_size.clamp(1, MAX_CHUNK);
    let k = opts.replicas;
    let mut eof = false;
    let mut whole = blake3::Hasher::new();
    let mut chunks = Vec::new();
    let mut read = 0u64;
    let mut done = 0u64;
    let mut min_replicas = opts.replicas;
    let mut in_flight = FuturesOrdered::new();
    let mut renewed = std::time::Instant::now();
    loop {
        while !eof {
            let Some(mut lane) = idle.pop() else { break };
            let mut buf = vec![0u8; chunk_size as usize];
            let n = read_full(&mut reader, &mut buf)
                .await
                .map_err(FilesError::Stream)?;
            if n < buf.len() {
                eof = true;
            }
            if n == 0 {
                idle.push(lane);
                break;
            }
            buf.truncate(n);
            whole.update(&buf);
            read += n as u64;
            in_flight.push_back(async move {
                let h = hash(&buf);
                let len = buf.len() as u64;
                let r = crate::dht::store_item(&mut lane, ItemKey::Chunk(h), buf, k).await;
                (lane, h, len, r)
            });
        }
        let Some((lane, h, len, r)) = in_flight.next().await else {
            break;
        };
        idle.push(lane);
        min_replicas = min_replicas.min(r?);
        chunks.push(h);
        done += len;
        progress(done);
        if renewed.elapsed() >= opts.renew_every {
            // The chunks stored so far, kept alive until the record exists to renew them.
            let lane = idle.last_mut().ok_or(FilesError::Stopped)?;
            let keys = chunks.iter().map(|h| ItemKey::Chunk(*h)).collect();
            // Each holder caps the end at one lease from now.
            crate::dht::renew_blocks(lane, keys, u64::MAX, k).await?;
            renewed = std::time::Instant::now();
        }
    }
    if expected.is_some_and(|n| n != done) || done != read {
        return Err(FilesError::Changed);
    }
    let manifest = Manifest {
        name: name.to_string(),
        size: done,
        chunk_size,
        chunks,
        file_hash: *whole.finalize().as_bytes(),
        uploaded_ms: now_ms(),
    };
    let lane = idle.first_mut().ok_or(FilesError::Stopped)?;
    // The manifest is a block; the file's record names it and is what only we can sign.
    let (block, n) = crate::dht::put_block(lane, encode(&manifest)?, k).await?;
    let file = FileRef {
        manifest: block,
        size: manifest.size,
        file_hash: manifest.file_hash,
    };
    let w = crate::dht::write_record(
        lane,
        identity,
        &file_salt(name),
        Some(encode(&file)?),
        WriteOptions::default(),
        k,
    )
    .await?;
    Ok(PutReport {
        manifest,
        min_replicas: min_replicas.min(n).min(w.replicas),
        owner: identity.public_key(),
        seq: w.seq,
    })
}

async fn read_full(
    r: &mut (impl futures::AsyncRead + Unpin),
    buf: &mut [u8],
) -> std::io::Result<usize> {
    use futures::AsyncReadExt;
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]).await? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// The manifest of the owner's latest version of the file `name` (`OWNER/NAME`, or a
/// plain name of `opts.identity`): the highest validly signed record among its holders,
/// then the manifest block it names, checked against it.
pub async fn manifest(
    node: SocketAddr,
    name: &str,
    opts: &TransferOptions,
) -> Result<Manifest, FilesError> {
    manifest_via(&mut Lane::new(node, &opts.network_key), name, opts).await
}

pub(crate) async fn manifest_via(
    lane: &mut impl Route,
    name: &str,
    opts: &TransferOptions,
) -> Result<Manifest, FilesError> {
    let (owner, plain) = parse_name(name, opts.identity.as_ref())?;
    let k = opts.replicas;
    let id = record_id(&owner, &file_salt(plain));
    let found = crate::dht::fetch_record(lane, id, k).await?;
    let Some(value) = found.as_ref().and_then(|r| r.value()) else {
        return Err(FilesError::NotFound(name.to_string()));
    };
    let file: FileRef = decode(value).map_err(|_| FilesError::BadManifest)?;
    let bytes = crate::dht::get_block(lane, file.manifest, k)
        .await?
        .ok_or(FilesError::Unavailable)?;
    let m: Manifest = decode(&bytes).map_err(|_| FilesError::BadManifest)?;
    m.validate()?;
    if m.name != plain || m.size != file.size || m.file_hash != file.file_hash {
        return Err(FilesError::BadManifest);
    }
    Ok(m)
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
    let m = manifest(node, name, opts).await?;
    if out.exists() {
        if file_hash(out).map_err(FilesError::io(out))? == m.file_hash {
            return Ok(GetOutcome::UpToDate(out.to_path_buf()));
        }
        if !force {
            return Err(FilesError::Exists(out.to_path_buf()));
        }
    }
    let file_name = out
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| FilesError::NotAFilePath(out.to_path_buf()))?;
    remove_stale_parts(out, file_name);
    // Before a byte is fetched: a manifest may name a file larger than the disk (one
    // chunk repeated, say), and a half-written one helps nobody.
    if let Some(available) = free_space(out) {
        if available < m.size {
            return Err(FilesError::NoRoom {
                path: out.to_path_buf(),
                needed: m.size,
                available,
            });
        }
    }
    let tmp = out.with_file_name(format!("{}{}", part_prefix(file_name), std::process::id()));
    let result = download(&m, node, &tmp, opts, progress).await;
    match result {
        Ok(()) => {
            std::fs::rename(&tmp, out).map_err(FilesError::io(out))?;
            Ok(GetOutcome::Written(out.to_path_buf()))
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Bytes an unprivileged writer may still use in the directory of `out` (`None`: unknown).
fn free_space(out: &Path) -> Option<u64> {
    #[cfg(unix)]
    {
        let dir = match out.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let s = rustix::fs::statvfs(dir).ok()?;
        Some(s.f_bavail.saturating_mul(s.f_frsize))
    }
    #[cfg(not(unix))]
    {
        let _ = out;
        None
    }
}

/// The start of the name of a partial download of `file_name`: `.chord-part-H-` with H
/// the first 16 hex digits of the name's BLAKE3 hash, so that it stays short whatever the
/// name's length (a 255-byte name is valid, and the file system's limit is 255 bytes).
fn part_prefix(file_name: &str) -> String {
    format!(".chord-part-{}-", &hex(&hash(file_name.as_bytes()))[..16])
}

/// Remove the partial downloads of `out` left by `chord get` processes that died (killed
/// mid-way): `.chord-part-H-PID` (see [`part_prefix`]) whose PID no longer runs. Where
/// processes cannot be checked (no /proc), nothing is removed.
fn remove_stale_parts(out: &Path, file_name: &str) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let prefix = part_prefix(file_name);
    let dir = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_file(e.path());
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
    let k = opts.replicas;
    let f = std::fs::File::create(tmp).map_err(FilesError::io(tmp))?;
    let mut idle = lanes(node, opts);
    // Writing to the file and hashing the whole of it happen on a thread of their own, so
    // that neither holds up the receiving of the next chunks; a few chunks of queue.
    // Written chunks come back as buffers for the next answers: a download then reuses a
    // window's worth of memory instead of asking for a fresh megabyte per chunk.
    let (to_writer, from_fetch) = async_channel::bounded::<Vec<u8>>(4);
    let (recycle, recycled) = async_channel::bounded::<Vec<u8>>(window + 4);
    let writer = std::thread::Builder::new()
        .name("chord-get-writer".into())
        .spawn(move || -> std::io::Result<crate::Hash> {
            let mut f = f;
            let mut whole = blake3::Hasher::new();
            while let Ok(data) = from_fetch.recv_blocking() {
                f.write_all(&data)?;
                whole.update(&data);
                let _ = recycle.try_send(data);
            }
            f.sync_all()?;
            Ok(*whole.finalize().as_bytes())
        })
        .map_err(FilesError::io(tmp))?;
    let fetched = fetch_in_order(m, &mut idle, k, &to_writer, &recycled, progress).await;
    to_writer.close();
    let written = writer
        .join()
        .map_err(|_| FilesError::WriterStopped)?
        .map_err(FilesError::io(tmp))?;
    let done = fetched?;
    if written != m.file_hash || done != m.size {
        return Err(FilesError::Corrupt);
    }
    Ok(())
}

/// Download `name` (see [`manifest`] for how names are read) into `writer` through the
/// node at `node`. Every chunk is checked against its hash before it is written; the
/// whole file's hash is checked at the end, and a mismatch (which the chunk checks make
/// all but impossible) is `Corrupt`: the writer has the bytes by then, so discard them.
pub async fn get_writer(
    node: SocketAddr,
    name: &str,
    writer: impl futures::AsyncWrite + Unpin,
    opts: &TransferOptions,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<Manifest, FilesError> {
    get_stream(lanes(node, opts), name, writer, None, opts, progress).await
}

/// Download `name` into memory, refusing a file larger than `max` bytes before any byte
/// is fetched.
pub async fn get_bytes(
    node: SocketAddr,
    name: &str,
    max: u64,
    opts: &TransferOptions,
) -> Result<Vec<u8>, FilesError> {
    let mut out = Vec::new();
    get_stream(
        lanes(node, opts),
        name,
        &mut out,
        Some(max),
        opts,
        &|_, _| {},
    )
    .await?;
    Ok(out)
}

/// [`get_writer`] over any routes (one chunk in flight on each), with an optional
/// largest size.
pub(crate) async fn get_stream<R: Route>(
    mut lanes: Vec<R>,
    name: &str,
    mut writer: impl futures::AsyncWrite + Unpin,
    max: Option<u64>,
    opts: &TransferOptions,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<Manifest, FilesError> {
    use futures::AsyncWriteExt;
    let first = lanes.first_mut().ok_or(FilesError::Stopped)?;
    let m = manifest_via(first, name, opts).await?;
    if let Some(limit) = max.filter(|&l| m.size > l) {
        return Err(FilesError::TooLarge {
            size: m.size,
            limit,
        });
    }
    let window = lanes.len();
    let (to_writer, from_fetch) = async_channel::bounded::<Vec<u8>>(4);
    let (recycle, recycled) = async_channel::bounded::<Vec<u8>>(window + 4);
    let fetch = async {
        let r = fetch_in_order(
            &m,
            &mut lanes,
            opts.replicas,
            &to_writer,
            &recycled,
            progress,
        )
        .await;
        to_writer.close();
        r
    };
    let write = async move {
        let mut whole = blake3::Hasher::new();
        while let Ok(data) = from_fetch.recv().await {
            writer.write_all(&data).await?;
            whole.update(&data);
            let _ = recycle.try_send(data);
        }
        writer.flush().await?;
        std::io::Result::Ok(*whole.finalize().as_bytes())
    };
    let (fetched, written) = futures_lite::future::zip(fetch, write).await;
    // A fetch that failed says why (the writer then saw only a closed channel).
    let fetched = fetched?;
    let written = written.map_err(FilesError::Stream)?;
    if written != m.file_hash || fetched != m.size {
        return Err(FilesError::Corrupt);
    }
    Ok(m)
}

/// Fetch the chunks of `m`, one in flight per lane of `idle`, handing them to `out` in
/// order and reading into the buffers that come back on `recycled`; returns the bytes
/// handed over.
async fn fetch_in_order<R: Route>(
    m: &Manifest,
    idle: &mut Vec<R>,
    k: u8,
    out: &async_channel::Sender<Vec<u8>>,
    recycled: &async_channel::Receiver<Vec<u8>>,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<u64, FilesError> {
    use futures::stream::{FuturesOrdered, StreamExt};
    let mut done = 0u64;
    // A sliding window: `window` chunks always in flight, written in order as they come.
    let mut in_flight = FuturesOrdered::new();
    let mut next = 0;
    let mut written = 0;
    while written < m.chunks.len() {
        while next < m.chunks.len() {
            let Some(mut lane) = idle.pop() else { break };
            if let Ok(buf) = recycled.try_recv() {
                lane.recycle(buf);
            }
            let h = m.chunks[next];
            in_flight.push_back(async move {
                let r = crate::dht::get_block(&mut lane, h, k).await;
                (lane, r.and_then(|d| d.ok_or(FilesError::Unavailable)))
            });
            next += 1;
        }
        let Some((lane, r)) = in_flight.next().await else {
            break;
        };
        idle.push(lane);
        let data = r?;
        if data.len() != m.chunk_len(written) {
            return Err(FilesError::Corrupt);
        }
        done += data.len() as u64;
        written += 1;
        if out.send(data).await.is_err() {
            // The writer stopped: its error is reported by the caller.
            break;
        }
        progress(done, m.size);
    }
    Ok(done)
}

/// Most `ListFiles` pages read from one node.
const MAX_PAGES: usize = 4096;

/// One file as `ls` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listing {
    /// The owner's public key.
    pub owner: [u8; 32],
    /// The file's name.
    pub name: String,
    /// Its record's sequence (the version).
    pub seq: u64,
    /// Size in bytes.
    pub size: u64,
    /// BLAKE3 of the whole file.
    pub file_hash: crate::Hash,
    /// Nodes holding that version of its record.
    pub replicas: usize,
}

impl Listing {
    /// The name anyone can fetch it by: `OWNER/NAME`.
    pub fn qualified_name(&self) -> String {
        format!("{}/{}", hex(&self.owner), self.name)
    }
}

/// Every file in the ring, found by walking it from `node` (bounded by `max_nodes`) and
/// reading each node's file records in pages. Records are checked (signature, position)
/// here too; of each file the highest version counts, and a deleted file is not listed.
pub async fn ls(
    node: SocketAddr,
    max_nodes: usize,
    opts: &TransferOptions,
) -> Result<Vec<Listing>, FilesError> {
    let mut lane = Lane::new(node, &opts.network_key);
    let mut seen = std::collections::HashSet::new();
    let mut best: HashMap<Id, (Record, usize)> = HashMap::new();
    let now = crate::record::now_ms();
    let mut next = node;
    while seen.len() < max_nodes && seen.insert(next) {
        let mut after = None;
        let mut pages = 0;
        let successor = loop {
            let FilesResponse::Files {
                records,
                more,
                successor,
                ..
            } = lane.ask(next, &FilesRequest::ListFiles { after }).await?
            else {
                return Err(FilesError::BadAnswer);
            };
            for r in records {
                if r.verify().is_err() || !r.salt.starts_with(FILE_PREFIX) || r.expired(now) {
                    continue;
                }
                match best.get_mut(&r.id()) {
                    Some((b, n)) if b.version() == r.version() => *n += 1,
                    Some((b, n)) if r.version() > b.version() => {
                        *b = r;
                        *n = 1;
                    }
                    Some(_) => {}
                    None => {
                        best.insert(r.id(), (r, 1));
                    }
                }
            }
            pages += 1;
            match more {
                // Pages go forward, and end (a node holds at most about a million file
                // records' worth of pages), or the node is lying about them.
                Some(m) if after.is_none_or(|a: Id| m > a) && pages < MAX_PAGES => after = Some(m),
                Some(_) => return Err(FilesError::BadAnswer),
                None => break successor,
            }
        };
        match successor {
            Some(s) => next = s,
            None => break,
        }
    }
    let mut out: Vec<Listing> = best
        .into_values()
        .filter_map(|(r, replicas)| {
            let file: FileRef = decode(r.value()?).ok()?;
            let name = std::str::from_utf8(&r.salt[FILE_PREFIX.len()..]).ok()?;
            Some(Listing {
                owner: r.public_key,
                name: name.to_string(),
                seq: r.seq,
                size: file.size,
                file_hash: file.file_hash,
                replicas,
            })
        })
        .collect();
    out.sort_by(|a, b| (&a.name, a.owner).cmp(&(&b.name, b.owner)));
    Ok(out)
}

/// Remove the file `name` of `opts.identity`: a signed tombstone on its record's holders;
/// returns how many took it. Only the owner can: another identity gets `NotAllowed`.
/// The chunks are freed by garbage collection (another file may share them).
pub async fn rm(node: SocketAddr, name: &str, opts: &TransferOptions) -> Result<usize, FilesError> {
    let identity = opts.identity.as_ref().ok_or(FilesError::NoIdentity)?;
    let (owner, plain) = parse_name(name, Some(identity))?;
    if owner != identity.public_key() {
        return Err(FilesError::NotAllowed(format!(
            "{name} belongs to another identity; only its owner can remove it"
        )));
    }
    let mut lane = Lane::new(node, &opts.network_key);
    let horizon = crate::dht::DEFAULT_TOMBSTONE_HORIZON;
    match crate::dht::delete_record(
        &mut lane,
        identity,
        &file_salt(plain),
        horizon,
        opts.replicas,
    )
    .await?
    {
        Some(w) => Ok(usize::from(w.replicas)),
        None => Err(FilesError::NotFound(name.to_string())),
    }
}
