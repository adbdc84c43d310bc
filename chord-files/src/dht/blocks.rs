//! Blocks: stored under the BLAKE3 hash of their bytes, checked by every reader.

use super::*;

/// Store a block on its `k` holders; returns its hash and how many took it.
pub(crate) async fn put_block(
    route: &mut impl Route,
    bytes: Vec<u8>,
    k: u8,
) -> Result<(Hash, u8), FilesError> {
    if bytes.len() > MAX_CHUNK as usize {
        return Err(FilesError::TooLarge {
            size: bytes.len() as u64,
            limit: u64::from(MAX_CHUNK),
        });
    }
    let h = hash(&bytes);
    Ok((h, store_item(route, ItemKey::Chunk(h), bytes, k).await?))
}

/// Store an item on its `k` holders; returns how many took it.
pub(crate) async fn store_item(
    route: &mut impl Route,
    key: ItemKey,
    data: Vec<u8>,
    k: u8,
) -> Result<u8, FilesError> {
    let mut stored = 0u8;
    let mut last = None;
    // One request for every holder: a chunk is not copied once per holder.
    let req = FilesRequest::Store { key, data };
    for p in route.locate(key.ring_id(), k, false).await? {
        match route.ask(p.addr, &req).await {
            Ok(FilesResponse::Stored) => stored += 1,
            Ok(other) => last = Some(unexpected(other)),
            Err(e) => last = Some(e),
        }
    }
    match (stored, last) {
        (0, e) => Err(e.unwrap_or(FilesError::Unavailable)),
        (n, _) => Ok(n),
    }
}

/// Extend the leases of blocks on their `k` holders to `until_ms` (each holder caps it at
/// one lease from now): what the holders of live file records do for their blocks, and an
/// upload for the chunks it stored until the file's record exists. Returns how many
/// copies were renewed.
pub(crate) async fn renew_blocks(
    route: &mut impl Route,
    mut keys: Vec<ItemKey>,
    until_ms: u64,
    k: u8,
) -> Result<usize, FilesError> {
    keys.sort_by_key(|key| key.ring_id());
    keys.dedup();
    let mut renewed = 0;
    let mut i = 0;
    while i < keys.len() {
        // One lookup serves every key up to the owner's id.
        let holders = route.locate(keys[i].ring_id(), k, false).await?;
        let owner = holders.first().ok_or(FilesError::Unavailable)?.id;
        let j = crate::maintain::run_end(&keys, i, owner);
        let req = FilesRequest::Renew {
            keys: keys[i..j].to_vec(),
            until_ms,
        };
        for h in &holders {
            match route.ask(h.addr, &req).await {
                Ok(FilesResponse::Have(v)) => renewed += v.iter().filter(|x| **x).count(),
                Err(FilesError::Stopped) => return Err(FilesError::Stopped),
                other => tracing::debug!(to = %h.addr, "renew failed: {other:?}"),
            }
        }
        i = j;
    }
    Ok(renewed)
}

/// Read a block: the first copy whose hash matches, from the `k` holders; then, if none
/// had it, from fresh holders and further along the owner's successors (2k nodes): after
/// joins or a partition heals, copies wait on the old holders until repair moves them,
/// and those follow the new ones in the ring (DHash reads the same way). `None`: every
/// node asked answered that it does not hold it.
pub(crate) async fn get_block(
    route: &mut impl Route,
    h: Hash,
    k: u8,
) -> Result<Option<Vec<u8>>, FilesError> {
    let key = ItemKey::Chunk(h);
    let mut answered = false;
    let mut last = None;
    for (fresh, n) in [(false, k), (true, k.saturating_mul(2))] {
        for p in route.locate(key.ring_id(), n, fresh).await? {
            match route.ask(p.addr, &FilesRequest::Fetch { key }).await {
                Ok(FilesResponse::Data(d)) if hash(&d) == h => return Ok(Some(d)),
                Ok(FilesResponse::Data(_)) => {
                    tracing::warn!(from = %p.addr, "corrupt block received: trying another replica");
                    last = Some(FilesError::Corrupt);
                }
                Ok(FilesResponse::NotFound) => answered = true,
                Ok(other) => last = Some(unexpected(other)),
                Err(e) => last = Some(e),
            }
        }
    }
    match (answered, last) {
        (true, _) => Ok(None),
        (false, e) => Err(e.unwrap_or(FilesError::Unavailable)),
    }
}
