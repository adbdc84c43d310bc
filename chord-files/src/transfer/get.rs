//! `get`: the file's record, its manifest, then the chunks through a sliding window,
//! each checked against its hash and written in order.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::{lanes, Lane, TransferOptions, Window};
use crate::dht::Route;
use crate::manifest::{file_salt, hash, hex, parse_name, FileRef, Manifest};
use crate::record::record_id;
use crate::{decode, FilesError};

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
    let result = download(&m, node, &tmp, out, opts, progress)
        .await
        .and_then(|()| std::fs::rename(&tmp, out).map_err(FilesError::io(out)));
    match result {
        Ok(()) => Ok(GetOutcome::Written(out.to_path_buf())),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Bytes an unprivileged writer may still use in the directory of `out` (`None`: unknown).
fn free_space(out: &Path) -> Option<u64> {
    let dir = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    Some(crate::store::file_system(dir)?.1)
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

/// Download `m` into `tmp`, a partial file beside `out` (whose name errors give: the
/// partial file is removed on failure).
async fn download(
    m: &Manifest,
    node: SocketAddr,
    tmp: &Path,
    out: &Path,
    opts: &TransferOptions,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<(), FilesError> {
    let window = opts.window.max(1);
    let k = opts.replicas;
    let f = std::fs::File::create(tmp).map_err(FilesError::io(out))?;
    let routes = lanes(node, opts);
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
        .map_err(FilesError::io(out))?;
    let fetched = fetch_in_order(m, routes, k, &to_writer, &recycled, progress).await;
    to_writer.close();
    let written = writer
        .join()
        .map_err(|_| FilesError::WriterStopped)?
        .map_err(FilesError::io(out))?;
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
        let r = fetch_in_order(&m, lanes, opts.replicas, &to_writer, &recycled, progress).await;
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

/// Fetch the chunks of `m`, one in flight per route of `routes`, handing them to `out` in
/// order and reading into the buffers that come back on `recycled`; returns the bytes
/// handed over.
async fn fetch_in_order<R: Route>(
    m: &Manifest,
    routes: Vec<R>,
    k: u8,
    out: &async_channel::Sender<Vec<u8>>,
    recycled: &async_channel::Receiver<Vec<u8>>,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<u64, FilesError> {
    let mut done = 0u64;
    let mut window = Window::new(routes);
    let mut next = 0;
    let mut written = 0;
    while written < m.chunks.len() {
        while next < m.chunks.len()
            && window.start(|mut lane| {
                if let Ok(buf) = recycled.try_recv() {
                    lane.recycle(buf);
                }
                let h = m.chunks[next];
                async move {
                    let r = crate::dht::get_block(&mut lane, h, k).await;
                    (lane, r.and_then(|d| d.ok_or(FilesError::Unavailable)))
                }
            })
        {
            next += 1;
        }
        let Some(r) = window.next().await else {
            break;
        };
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
