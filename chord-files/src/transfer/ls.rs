//! `ls` (every file in the ring, by walking it) and `rm` (a signed tombstone).

use std::collections::HashMap;
use std::net::SocketAddr;

use chord_core::Id;

use super::{Lane, TransferOptions};
use crate::manifest::{file_salt, hex, parse_name, FileRef, FILE_PREFIX};
use crate::record::Record;
use crate::wire::{FilesRequest, FilesResponse};
use crate::{decode, FilesError};

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
/// A node that does not answer (a crash the ring has not repaired yet) is passed over:
/// the walk goes on at the entry after it in the previous node's successor list, and
/// its records are read from their other holders.
pub async fn ls(
    node: SocketAddr,
    max_nodes: usize,
    opts: &TransferOptions,
) -> Result<Vec<Listing>, FilesError> {
    let mut lane = Lane::new(node, &opts.network_key);
    let mut seen = std::collections::HashSet::new();
    let mut best: HashMap<Id, (Record, usize)> = HashMap::new();
    let now = crate::record::now_ms();
    let (mut next, mut prev) = (node, None);
    while seen.len() < max_nodes && seen.insert(next) {
        let successor = match read_files(&mut lane, next, &mut best, now).await {
            Ok(s) => {
                prev = Some(next);
                s
            }
            // The walk goes on from the last node that answered.
            Err(FilesError::Unreachable(e)) => match prev {
                Some(p) => after_silent(p, next, &seen, opts).await.ok_or(
                    // Nobody after it answers either: say why, about the silent node.
                    FilesError::Unreachable(e),
                )?,
                None => return Err(FilesError::Unreachable(e)),
            },
            Err(e) => return Err(e),
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

/// Read every file record `at` holds, in pages, into `best`; returns its successor.
async fn read_files(
    lane: &mut Lane,
    at: SocketAddr,
    best: &mut HashMap<Id, (Record, usize)>,
    now: u64,
) -> Result<Option<SocketAddr>, FilesError> {
    let mut after = None;
    let mut pages = 0;
    loop {
        let FilesResponse::Files {
            records,
            more,
            successor,
            ..
        } = lane.ask(at, &FilesRequest::ListFiles { after }).await?
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
            None => return Ok(successor),
        }
    }
}

/// Where the walk goes on after `silent`, the successor `prev` named: the first entry of
/// `prev`'s successor list after `silent` not visited yet (`Some(None)`: the walk is
/// done; `None`: `prev` does not answer either).
async fn after_silent(
    prev: SocketAddr,
    silent: SocketAddr,
    seen: &std::collections::HashSet<SocketAddr>,
    opts: &TransferOptions,
) -> Option<Option<SocketAddr>> {
    let status = async {
        let mut c = chord_net::Client::connect_with_key(
            prev,
            chord_net::Limits::default(),
            opts.network_key.as_ref(),
        )
        .await?;
        c.status().await
    };
    let list = status.await.ok()?.successors;
    // Not listed any more: the ring repaired itself meanwhile; go on from the start.
    let from = list
        .iter()
        .position(|p| p.addr == silent)
        .map_or(0, |i| i + 1);
    let next = list[from..]
        .iter()
        .map(|p| p.addr)
        .find(|a| *a != silent && (!seen.contains(a) || *a == prev));
    // Back at `prev` (a ring of two): the walk is done.
    Some(next.filter(|a| *a != prev))
}

/// Remove the file `name` of `opts.identity`: a signed tombstone on its record's holders;
/// returns how many took it. Only the owner can: another identity gets `NotOwner`.
/// The chunks are freed by garbage collection (another file may share them).
pub async fn rm(node: SocketAddr, name: &str, opts: &TransferOptions) -> Result<usize, FilesError> {
    let identity = opts.identity.as_ref().ok_or(FilesError::NoIdentity)?;
    let (owner, plain) = parse_name(name, Some(identity))?;
    if owner != identity.public_key() {
        return Err(FilesError::NotOwner(name.to_string()));
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
