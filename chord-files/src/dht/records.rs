//! Records: fetched from every holder and the highest valid version taken (holders that
//! answered with less are sent it), written with compare-and-swap or blind retries, and
//! deleted by tombstones.

use super::*;
use crate::record::Version;

/// The highest valid, unexpired version of the record at `id` among its `k` holders
/// (tombstones included), after sending it to the holders that answered with less.
///
/// If no holder has a valid version, the holders are located again (fresh, not from a
/// cache) and up to `2k` of them asked, as [`get_block`] does: just after joins the new
/// holders may not have received the record yet, while the old ones, now further along
/// the ring, still have it.
pub(crate) async fn fetch_record(
    route: &mut impl Route,
    id: Id,
    k: u8,
) -> Result<Option<Record>, FilesError> {
    let key = ItemKey::Record(id);
    let now = now_ms();
    let mut best: Option<Record> = None;
    // Who answered, and with which version (`None`: nothing valid).
    let mut held: Vec<(SocketAddr, Option<Version>)> = Vec::new();
    let mut asked: Vec<SocketAddr> = Vec::new();
    // The `k` holders of the latest location: the ones a read repairs.
    let mut primary: Vec<SocketAddr> = Vec::new();
    let mut last = None;
    // Holders usually answer with the same bytes: each distinct answer is checked once
    // (and a client route remembers what it checked across reads).
    let mut checked: Vec<Hash> = Vec::new();
    for (fresh, n) in [(false, k), (true, k.saturating_mul(2))] {
        let holders = match route.locate(id, n, fresh).await {
            Ok(h) => h,
            // The wider look is a second chance: without it, what the first round said.
            Err(_) if fresh && !held.is_empty() => break,
            Err(e) => return Err(e),
        };
        primary = holders
            .iter()
            .take(usize::from(k))
            .map(|p| p.addr)
            .collect();
        let asks: Vec<_> = holders
            .iter()
            .filter(|p| !asked.contains(&p.addr))
            .map(|p| (p.addr, FilesRequest::Fetch { key }))
            .collect();
        asked.extend(asks.iter().map(|(to, _)| *to));
        let tos: Vec<SocketAddr> = asks.iter().map(|(to, _)| *to).collect();
        for (to, answer) in tos.into_iter().zip(route.ask_each(asks).await) {
            let got = match answer {
                // A holder serving a forged or expired record counts as holding nothing.
                Ok(FilesResponse::Data(d)) => {
                    let h = hash(&d);
                    let known =
                        checked.contains(&h) || route.verified().is_some_and(|v| v.contains(&h));
                    let r = if known {
                        Record::decode_stored(&d, id)
                    } else {
                        Record::decode_at(&d, id)
                    };
                    if r.is_ok() && !known {
                        checked.push(h);
                        if let Some(v) = route.verified() {
                            v.insert(h);
                        }
                    }
                    r.ok().filter(|r| !r.expired(now))
                }
                Ok(FilesResponse::NotFound) => None,
                Ok(other) => {
                    last = Some(unexpected(other));
                    continue;
                }
                Err(e) => {
                    last = Some(e);
                    continue;
                }
            };
            held.push((to, got.as_ref().map(Record::version)));
            if got.as_ref().map(Record::version) > best.as_ref().map(Record::version) {
                best = got;
            }
        }
        if best.is_some() {
            break;
        }
    }
    if held.is_empty() {
        return Err(last.unwrap_or(FilesError::Unavailable));
    }
    if let Some(b) = &best {
        let (v, data) = (Some(b.version()), crate::encode(b)?);
        let behind: Vec<_> = held
            .iter()
            .filter(|(to, h)| *h < v && primary.contains(to))
            .map(|(to, _)| {
                let data = data.clone();
                (*to, FilesRequest::Store { key, data })
            })
            .collect();
        if !behind.is_empty() {
            let _ = route.ask_each(behind).await;
        }
    }
    Ok(best)
}

/// Store a signed record on its `k` holders; returns how many hold it (or the same
/// version). A different version that a holder keeps instead is a `Conflict`. With
/// `expect` (a compare-and-swap), holders refuse if the record moved past what the writer
/// saw, so that of two writers expecting the same sequence at most one hears it won.
pub(crate) async fn store_record(
    route: &mut impl Route,
    record: &Record,
    expect: Option<Option<u64>>,
    k: u8,
) -> Result<u8, FilesError> {
    let id = record.id();
    let key = ItemKey::Record(id);
    let data = crate::encode(record)?;
    let mut stored = 0u8;
    let mut newer: Option<u64> = None;
    let mut last = None;
    let asks = route
        .locate(id, k, false)
        .await?
        .iter()
        .map(|p| {
            let data = data.clone();
            let req = match expect {
                Some(expect) => FilesRequest::StoreIf { key, data, expect },
                None => FilesRequest::Store { key, data },
            };
            (p.addr, req)
        })
        .collect();
    for answer in route.ask_each(asks).await {
        match answer {
            Ok(FilesResponse::Stored) => stored += 1,
            Ok(FilesResponse::Newer(d)) => match Record::decode_at(&d, id) {
                Ok(r) if r.version() == record.version() => stored += 1,
                Ok(r) if r.version() > record.version() || expect.is_some() => {
                    newer = newer.max(Some(r.seq));
                }
                _ => last = Some(FilesError::BadAnswer),
            },
            Ok(other) => last = Some(unexpected(other)),
            Err(e) => last = Some(e),
        }
    }
    if let Some(found) = newer {
        return Err(FilesError::Conflict {
            expected: expect.unwrap_or(Some(record.seq)),
            found: Some(found),
        });
    }
    match (stored, last) {
        (0, e) => Err(e.unwrap_or(FilesError::Unavailable)),
        (n, _) => Ok(n),
    }
}

/// Attempts of a plain overwrite ([`write_record`] without `expect`) before it gives up
/// to another writer of the same record that keeps writing above it.
pub(super) const BLIND_WRITE_ATTEMPTS: usize = 3;

/// Write the next version of `identity`'s record `salt`: `value`, or a tombstone.
///
/// A compare-and-swap (`opts.expect`) reads the current version first. A plain overwrite
/// does not: it signs at the clock (milliseconds), which is the sequence a read would
/// have given unless the record was written in the same millisecond or the clock is
/// behind the last write; then a holder answers with its newer version and the write is
/// signed again just above it. That halves a put's requests (k stores instead of k
/// fetches and k stores).
pub(crate) async fn write_record(
    route: &mut impl Route,
    identity: &Identity,
    salt: &[u8],
    value: Option<Vec<u8>>,
    opts: WriteOptions,
    k: u8,
) -> Result<Written, FilesError> {
    // Before any request: a compare-and-swap would otherwise read first and could answer
    // `Conflict` for a value that can never be written (review).
    if let Some(v) = value
        .as_ref()
        .filter(|v| v.len() > crate::record::MAX_VALUE)
    {
        return Err(FilesError::TooLarge {
            size: v.len() as u64,
            limit: crate::record::MAX_VALUE as u64,
        });
    }
    if opts.expect.is_some() {
        let current = fetch_record(route, record_id(&identity.public_key(), salt), k).await?;
        return write_over(route, identity, salt, value, opts, current.as_ref(), k).await;
    }
    let mut seq = now_ms().max(1);
    let (mut tried, mut found) = (seq, None);
    for _ in 0..BLIND_WRITE_ATTEMPTS {
        tried = seq;
        if seq > MAX_SEQ {
            return Err(FilesError::BadRecord);
        }
        let record = identity.sign(salt, seq, value.clone(), opts.expires_ms)?;
        match store_record(route, &record, None, k).await {
            Ok(replicas) => return Ok(Written { seq, replicas }),
            // A holder keeps a version at or above ours (same millisecond, or a clock
            // behind): sign above it.
            Err(FilesError::Conflict { found: Some(f), .. }) if f >= seq => {
                found = Some(f);
                // A holder's claim above MAX_SEQ ends the loop with BadRecord above.
                seq = f.saturating_add(1);
            }
            Err(e) => return Err(e),
        }
    }
    Err(FilesError::Conflict {
        expected: Some(tried),
        found,
    })
}

/// [`write_record`] over `current`, the highest version its holders had.
pub(super) async fn write_over(
    route: &mut impl Route,
    identity: &Identity,
    salt: &[u8],
    value: Option<Vec<u8>>,
    opts: WriteOptions,
    current: Option<&Record>,
    k: u8,
) -> Result<Written, FilesError> {
    let live = current.filter(|r| !r.is_tombstone()).map(|r| r.seq);
    if let Some(expected) = opts.expect {
        if expected != live {
            return Err(FilesError::Conflict {
                expected,
                found: live,
            });
        }
    }
    // The next sequence, and at least the time in milliseconds: after a tombstone has
    // expired and been forgotten, a new write still outranks every version signed before
    // it (a stranger replaying an old signed version cannot bring it back). The order is
    // still the sequence's, never the clock's: a clock that is behind only means +1.
    let seq = current.map_or(1, |r| r.seq + 1).max(now_ms());
    if seq > MAX_SEQ {
        return Err(FilesError::BadRecord);
    }
    let record = identity.sign(salt, seq, value, opts.expires_ms)?;
    let replicas = store_record(route, &record, opts.expect, k).await?;
    Ok(Written { seq, replicas })
}

/// Read the live value of the record of `public_key` and `salt` (`None`: none, or deleted).
pub(crate) async fn read_record(
    route: &mut impl Route,
    public_key: &[u8; 32],
    salt: &[u8],
    k: u8,
) -> Result<Option<RecordValue>, FilesError> {
    let r = fetch_record(route, record_id(public_key, salt), k).await?;
    Ok(r.and_then(|r| {
        let seq = r.seq;
        r.value.map(|v| RecordValue {
            seq,
            value: v.into_vec(),
        })
    }))
}

/// Delete `identity`'s record `salt` with a tombstone kept for `horizon`. Returns the
/// tombstone's write, or `None` if there was no live record.
pub(crate) async fn delete_record(
    route: &mut impl Route,
    identity: &Identity,
    salt: &[u8],
    horizon: Duration,
    k: u8,
) -> Result<Option<Written>, FilesError> {
    // One read: it tells whether there is a live record, and what the tombstone follows.
    let id = record_id(&identity.public_key(), salt);
    let current = fetch_record(route, id, k).await?;
    let Some(live) = current.as_ref().filter(|r| !r.is_tombstone()) else {
        return Ok(None);
    };
    let opts = WriteOptions {
        expect: Some(Some(live.seq)),
        expires_ms: Some(now_ms().saturating_add(horizon.as_millis() as u64)),
    };
    write_over(route, identity, salt, None, opts, current.as_ref(), k)
        .await
        .map(Some)
}
