//! `put`: a stream read a chunk at a time, each chunk a block stored on its `k` holders
//! through a sliding window, then the manifest block and the file's signed record.

use std::net::SocketAddr;
use std::path::Path;

use super::{lanes, TransferOptions, Window};
use crate::dht::{Route, WriteOptions};
use crate::manifest::{check_name, file_salt, hash, hex, FileRef, ItemKey, Manifest, MAX_CHUNK};
use crate::record::now_ms;
use crate::{encode, FilesError};

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
            FilesError::Changed(None) => FilesError::Changed(Some(path.to_path_buf())),
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

/// Read to the end of `reader`, a chunk at a time, storing at most one chunk per route in
/// `routes` at once (a sliding window); then the manifest block and the file's record.
pub(crate) async fn put_stream<R: Route>(
    routes: Vec<R>,
    mut reader: impl futures::AsyncRead + Unpin,
    expected: Option<u64>,
    name: &str,
    opts: &TransferOptions,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<PutReport, FilesError> {
    check_name(name)?;
    if crate::manifest::split_owner(name).is_some() {
        // It would read as someone's OWNER/NAME in listings and links.
        return Err(FilesError::ReadsAsQualified(name.to_string()));
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
    let mut window = Window::new(routes);
    let mut renewed = std::time::Instant::now();
    // Renewals wait for the window to drain: the stores in flight are not polled while a
    // renewal is awaited, and their deadlines would run out meanwhile.
    let mut renew_due = false;
    loop {
        while !eof && !renew_due && window.has_room() {
            let mut buf = vec![0u8; chunk_size as usize];
            let n = read_full(&mut reader, &mut buf)
                .await
                .map_err(FilesError::Stream)?;
            eof = n < buf.len();
            if n == 0 {
                break;
            }
            buf.truncate(n);
            whole.update(&buf);
            read += n as u64;
            window.start(|mut lane| async move {
                let h = hash(&buf);
                let len = buf.len() as u64;
                let r = crate::dht::store_item(&mut lane, ItemKey::Chunk(h), buf, k).await;
                (lane, (h, len, r))
            });
        }
        match window.next().await {
            Some((h, len, r)) => {
                min_replicas = min_replicas.min(r?);
                chunks.push(h);
                done += len;
                progress(done);
                renew_due |= renewed.elapsed() >= opts.renew_every;
            }
            None if renew_due => {
                // The chunks stored so far, kept alive until the record exists to renew
                // them. Each holder caps the end at one lease from now.
                let lane = window.free_route().ok_or(FilesError::Stopped)?;
                let keys = chunks.iter().map(|h| ItemKey::Chunk(*h)).collect();
                crate::dht::renew_blocks(lane, keys, u64::MAX, k).await?;
                renewed = std::time::Instant::now();
                renew_due = false;
            }
            None => break,
        }
    }
    if expected.is_some_and(|n| n != done) || done != read {
        return Err(FilesError::Changed(None));
    }
    let manifest = Manifest {
        name: name.to_string(),
        size: done,
        chunk_size,
        chunks,
        file_hash: *whole.finalize().as_bytes(),
        uploaded_ms: now_ms(),
    };
    let mut routes = window.into_routes();
    let lane = routes.first_mut().ok_or(FilesError::Stopped)?;
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
