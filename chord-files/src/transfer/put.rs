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
    let mut read = 0u64;
    let mut up = Stored {
        chunks: Vec::new(),
        done: 0,
        min_replicas: opts.replicas,
        renewed: std::time::Instant::now(),
        renew_every: opts.renew_every,
        renew_due: false,
        progress,
    };
    let mut window = Window::new(routes);
    loop {
        // Renewals wait for the window to drain: the stores in flight are not polled
        // while a renewal is awaited, and their deadlines would run out meanwhile.
        while !eof && !up.renew_due && window.has_room() {
            let mut buf = vec![0u8; chunk_size as usize];
            let n = read_driving(&mut reader, &mut buf, &mut window, &mut up).await?;
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
            Some(stored) => up.add(stored)?,
            None if up.renew_due => {
                // The chunks stored so far, kept alive until the record exists to renew
                // them. Each holder caps the end at one lease from now.
                let lane = window.free_route().ok_or(FilesError::Stopped)?;
                let keys = up.chunks.iter().map(|h| ItemKey::Chunk(*h)).collect();
                crate::dht::renew_blocks(lane, keys, u64::MAX, k).await?;
                up.renewed = std::time::Instant::now();
                up.renew_due = false;
            }
            None => break,
        }
    }
    let Stored {
        chunks,
        done,
        min_replicas,
        ..
    } = up;
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

/// What an upload has stored so far, and when its chunks' leases were last renewed.
struct Stored<'a> {
    /// The chunks stored, in the file's order.
    chunks: Vec<crate::Hash>,
    /// Their bytes.
    done: u64,
    /// The fewest copies any got.
    min_replicas: u8,
    renewed: std::time::Instant,
    renew_every: std::time::Duration,
    /// A renewal is due: start no more stores until the window drains and it is done.
    renew_due: bool,
    progress: &'a (dyn Fn(u64) + Sync),
}

/// A chunk's store, done: its hash, its length, and how many copies it got.
type ChunkStored = (crate::Hash, u64, Result<u8, FilesError>);

impl Stored<'_> {
    /// One more chunk stored (they come in the file's order).
    fn add(&mut self, (h, len, r): ChunkStored) -> Result<(), FilesError> {
        self.min_replicas = self.min_replicas.min(r?);
        self.chunks.push(h);
        self.done += len;
        (self.progress)(self.done);
        self.renew_due |= self.renewed.elapsed() >= self.renew_every;
        Ok(())
    }
}

/// Read the next chunk into `buf` (see [`read_full`]) while the stores in flight go on:
/// a slow source (a pipe, a network stream) must not hold them up past their deadlines.
/// The stores that finish meanwhile are added to `up`.
async fn read_driving<R, F>(
    reader: &mut (impl futures::AsyncRead + Unpin),
    buf: &mut [u8],
    window: &mut Window<R, F>,
    up: &mut Stored<'_>,
) -> Result<usize, FilesError>
where
    F: std::future::Future<Output = (R, ChunkStored)>,
{
    use futures::future::{select, Either};
    let read = read_full(reader, buf);
    futures::pin_mut!(read);
    let n = loop {
        let next = window.next();
        futures::pin_mut!(next);
        match select(read.as_mut(), next).await {
            Either::Left((n, _)) => break n,
            Either::Right((Some(stored), _)) => up.add(stored)?,
            // Nothing in flight: only the read is left.
            Either::Right((None, _)) => break read.await,
        }
    };
    n.map_err(FilesError::Stream)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dht::Route;
    use crate::wire::{FilesRequest, FilesResponse};
    use chord_core::{Id, Peer};
    use futures::TryStreamExt;

    /// A ring of one holder that stores anything, and says when it stored a chunk.
    struct OneHolder(async_channel::Sender<()>);

    impl Route for OneHolder {
        async fn locate(&mut self, _id: Id, _k: u8, _fresh: bool) -> Result<Vec<Peer>, FilesError> {
            let addr: SocketAddr = "127.0.0.1:4000".parse().expect("addr");
            Ok(vec![Peer::from_addr(addr)])
        }

        async fn ask(
            &mut self,
            _to: SocketAddr,
            req: &FilesRequest,
        ) -> Result<FilesResponse, FilesError> {
            if let FilesRequest::Store {
                key: ItemKey::Chunk(_),
                ..
            } = req
            {
                let _ = self.0.try_send(());
            }
            Ok(FilesResponse::Stored)
        }
    }

    /// A source whose second chunk comes only once the first is stored: the stores in
    /// flight must go on while a read waits (they were not polled, and a slow pipe made
    /// them miss their deadlines; here it would wait for ever).
    #[test]
    fn stores_go_on_while_the_source_is_slow() {
        let (stored, first_stored) = async_channel::bounded(16);
        let items = futures::stream::unfold(0, move |i| {
            let first_stored = first_stored.clone();
            async move {
                match i {
                    0 => Some((Ok::<_, std::io::Error>(vec![1u8; 4]), 1)),
                    1 => {
                        first_stored.recv().await.ok()?;
                        Some((Ok(vec![2u8; 4]), 2))
                    }
                    _ => None,
                }
            }
        });
        let reader = Box::pin(items).into_async_read();
        let opts = TransferOptions {
            chunk_size: 4,
            identity: Some(crate::Identity::from_seed([3; 32])),
            ..TransferOptions::default()
        };
        let routes = vec![OneHolder(stored.clone()), OneHolder(stored)];
        let put = put_stream(routes, reader, None, "slow.bin", &opts, &|_| {});
        let deadline = async {
            async_io::Timer::after(std::time::Duration::from_secs(10)).await;
            Err(FilesError::Unavailable)
        };
        let report = futures_lite::future::block_on(futures_lite::future::or(put, deadline))
            .expect("the upload ends");
        assert_eq!(report.manifest.size, 8);
        assert_eq!(report.manifest.chunks.len(), 2);
    }
}
