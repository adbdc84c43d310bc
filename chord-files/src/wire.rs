//! What travels between files services: requests, answers, and the page limits of
//! listings. Pinned by tests: add variants at the end.

use std::net::SocketAddr;

use chord_core::{Id, Peer};
use serde::{Deserialize, Serialize};

use crate::manifest::{ItemKey, Manifest};
use crate::record::{Record, Version};

/// Most keys in one `Have` request.
pub const MAX_HAVE: usize = 4096;

/// A request to the files service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FilesRequest {
    /// The `replicas` nodes that should hold ring position `id`: its owner, then the
    /// owner's successors. For clients that need no range: this crate's own clients send
    /// [`FilesRequest::LocateRange`], whose answer also says which positions it holds for
    /// (one lookup then serves a run of keys). Kept, first of the enum, because removing
    /// a variant would renumber every later one on the wire.
    Locate {
        /// Ring position.
        id: Id,
        /// How many.
        replicas: u8,
    },
    /// Store an item here (verified first).
    Store {
        /// Its key.
        key: ItemKey,
        /// Its bytes.
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// Read an item held here.
    Fetch {
        /// Its key.
        key: ItemKey,
    },
    /// Which of these items are held here?
    Have {
        /// At most [`MAX_HAVE`] keys.
        keys: Vec<ItemKey>,
    },
    /// Remove an item held here.
    Remove {
        /// Its key.
        key: ItemKey,
    },
    /// Bytes stored here, and where to continue a ring walk (the manifests it also
    /// answered with are retired: always empty; see `ListFiles`).
    ListHere,
    /// Like `Locate`, also telling the range of ring positions the answer holds for.
    LocateRange {
        /// Ring position.
        id: Id,
        /// How many.
        replicas: u8,
    },
    /// Which version of each of these items is held here? (Replication compares versions,
    /// so that an older copy is replaced and never pushed over a newer one.)
    Versions {
        /// At most [`MAX_HAVE`] keys.
        keys: Vec<ItemKey>,
    },
    /// The file records held here, in pages by record id: those after `after`.
    ListFiles {
        /// Where the previous page ended (`None`: from the start).
        after: Option<Id>,
    },
    /// Extend the leases of these blocks, if held here, to `until_ms` (at most one lease
    /// period from now): sent by the holders of live file records for their chunks.
    Renew {
        /// At most [`MAX_HAVE`] keys.
        keys: Vec<ItemKey>,
        /// Milliseconds since the Unix epoch.
        until_ms: u64,
    },
    /// Store a copy from another holder (repair), keeping the sender's lease on a block
    /// (at most one lease period from now) instead of starting a new one: a block nobody
    /// renews runs out everywhere, however often repair copies it.
    Replicate {
        /// Its key.
        key: ItemKey,
        /// Its bytes.
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
        /// The sender's lease end, in milliseconds since the Unix epoch.
        until_ms: u64,
    },
    /// Store a record only if the live sequence held here is `expect` (`None`: no live
    /// record): a compare-and-swap that the holders enforce, so that of two writers
    /// expecting the same sequence at most one is told it won.
    StoreIf {
        /// The record's key.
        key: ItemKey,
        /// Its bytes.
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
        /// The live sequence the writer saw.
        expect: Option<u64>,
    },
    /// Show that the item is held here now: answered with [`proof`] of its bytes under
    /// `nonce` and this node's address (`NotFound` if not held). A holder's word in
    /// `Versions` is not enough for another to drop its copy or leave a repair to it.
    Prove {
        /// The item.
        key: ItemKey,
        /// Fresh random bytes from the asker.
        nonce: [u8; 32],
    },
    /// How much is held here: bytes and items (for a view of the ring; the count may be
    /// up to [`STATS_MAX_AGE`] old).
    Stats,
}

/// How old the item count of a [`FilesResponse::Stats`] answer may be: a node counts its
/// items at most this often, however often it is asked.
pub const STATS_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(1);

/// A proof of holding `data`: BLAKE3 keyed by `nonce` over the holder's address and the
/// bytes. Only a node that has the bytes when asked can answer, and one node's answer is
/// no use to another (the address is in it), so a claim cannot be passed on from an
/// honest holder without fetching the whole item.
pub fn proof(nonce: &[u8; 32], holder: SocketAddr, data: &[u8]) -> [u8; 32] {
    let addr = holder.to_string();
    let mut h = blake3::Hasher::new_keyed(nonce);
    h.update(&(addr.len() as u64).to_le_bytes());
    h.update(addr.as_bytes());
    h.update(data);
    *h.finalize().as_bytes()
}

/// The answer of the files service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FilesResponse {
    /// Answer to `Locate`.
    Located(Vec<Peer>),
    /// Stored (or a newer manifest of the same name was already here).
    Stored,
    /// The item's bytes.
    Data(#[serde(with = "serde_bytes")] Vec<u8>),
    /// Not held here.
    NotFound,
    /// One flag per asked key.
    Have(Vec<bool>),
    /// Removed (or was not here).
    Removed,
    /// Answer to `ListHere`.
    Here {
        /// Always empty (unsigned manifests are retired).
        manifests: Vec<Manifest>,
        /// This node's successor, if it has one.
        successor: Option<SocketAddr>,
        /// Bytes stored here.
        stored: u64,
    },
    /// The request failed.
    Error(RemoteError),
    /// Answer to `LocateRange`: the holders, and the ring range `(from, holders[0]]` for
    /// which they are the same, so a client can reuse the answer.
    LocatedRange {
        /// Start of the range (exclusive): the owner's predecessor.
        from: Id,
        /// The holders, owner first.
        holders: Vec<Peer>,
    },
    /// Answer to `Versions`: one per asked key, `None` if not held.
    Versions(Vec<Option<Version>>),
    /// Answer to a `Store` of a record when a newer version (or the same one) is already
    /// held here: that version's bytes, so the writer learns what won.
    Newer(#[serde(with = "serde_bytes")] Vec<u8>),
    /// Answer to `ListFiles`: one page (at most [`PAGE_RECORDS`] records and
    /// [`PAGE_BYTES`] bytes), as signed, so the reader checks them itself.
    Files {
        /// File records held here, by id.
        records: Vec<Record>,
        /// The id to continue after, if there are more.
        more: Option<Id>,
        /// This node's successor, if it has one.
        successor: Option<SocketAddr>,
        /// Bytes stored here.
        stored: u64,
    },
    /// Answer to `Prove`.
    Proof([u8; 32]),
    /// Answer to `Stats`.
    Stats {
        /// Bytes stored here.
        stored: u64,
        /// Items (blocks and records) held here.
        items: u64,
    },
}

/// A node's refusal of a request, as it travels: the first field of
/// [`FilesResponse::Error`]. The variants keep their order for ever (postcard numbers
/// them); a client turns one into a [`FilesError`](crate::FilesError) (see there). Some
/// exist for the numbering only: `Exists`, `NoIdentity` and `NoRoom` are a client's own
/// errors, which a node of this version never sends (it would send any such error as
/// `Local`, its text); `BadAnswer` means a node's own request to another node got an
/// answer that did not fit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum RemoteError {
    /// Names are UTF-8, 1 to 255 bytes, without NUL.
    #[error("invalid file name (1 to 255 bytes of UTF-8, no NUL)")]
    BadName,
    /// A manifest that does not describe a file.
    #[error("malformed manifest")]
    BadManifest,
    /// A request that could not be decoded.
    #[error("malformed request")]
    BadRequest,
    /// Bytes that do not match their hash.
    #[error("data does not match its hash")]
    Corrupt,
    /// The store is full.
    #[error("store full: {used} of {limit} bytes used, {wanted} more requested")]
    StoreFull {
        /// Bytes in use.
        used: u64,
        /// The limit.
        limit: u64,
        /// Bytes asked for.
        wanted: u64,
    },
    /// The storing node's disk failed.
    #[error("storage error: {0}")]
    Storage(String),
    /// A ring lookup failed.
    #[error("lookup failed: {0}")]
    Lookup(String),
    /// A node could not be reached.
    #[error("node unreachable: {0}")]
    Unreachable(String),
    /// No such file in the ring.
    #[error("no file named {0:?} in the ring")]
    NotFound(String),
    /// No replica of an item could be read.
    #[error("no replica of a chunk could be read")]
    Unavailable,
    /// The output exists with other content.
    #[error("{0} exists and differs")]
    Exists(String),
    /// A local file error.
    #[error("{0}")]
    Local(String),
    /// The node stopped.
    #[error("the node has stopped")]
    Stopped,
    /// A record that is malformed, too large, stored at the wrong position or carries a
    /// sequence above [`record::MAX_SEQ`](crate::record::MAX_SEQ).
    #[error("malformed record")]
    BadRecord,
    /// A record whose signature does not verify under its public key.
    #[error("the record's signature does not verify")]
    BadSignature,
    /// Not allowed to anyone, or not to this caller.
    #[error("not allowed: {0}")]
    NotAllowed(String),
    /// A compare-and-swap found another sequence than the one expected.
    #[error(
        "the record changed: expected {}, found {}",
        crate::error::seq_text(*.expected),
        crate::error::seq_text(*.found)
    )]
    Conflict {
        /// What the writer expected (`None`: no record).
        expected: Option<u64>,
        /// What the holders have.
        found: Option<u64>,
    },
    /// A record that has expired.
    #[error("the record has expired")]
    Expired,
    /// More bytes than one item may hold.
    #[error("{size} bytes is more than the {limit} one item may hold")]
    TooLarge {
        /// Bytes given.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// An operation that needs an identity (writing, removing, or a name without its
    /// owner) was given none.
    #[error("no identity: writing or removing a file, or naming one without its owner, needs a signing key")]
    NoIdentity,
    /// The file does not fit where it is to be written.
    #[error("{path} has room for {available} bytes; the file needs {needed}")]
    NoRoom {
        /// Where the file was to go.
        path: String,
        /// Bytes the file needs.
        needed: u64,
        /// Bytes free there.
        available: u64,
    },
    /// A node answered with something that does not answer the request.
    #[error("a node gave an answer that does not fit the request")]
    BadAnswer,
    /// The node's store is on a disk nearly full: storing this would leave it less free
    /// space than the store keeps free (`DiskStore::keep_free`).
    #[error("the node's disk is nearly full: {available} bytes free, {keep_free} kept free, {wanted} more requested")]
    DiskLow {
        /// Bytes free on the node's disk.
        available: u64,
        /// Bytes the node's store leaves free.
        keep_free: u64,
        /// Bytes asked for.
        wanted: u64,
    },
}

/// Most records in one `Files` page.
pub const PAGE_RECORDS: usize = 256;

/// Most bytes of records in one `Files` page (far below a frame).
pub const PAGE_BYTES: usize = 256 * 1024;

impl FilesResponse {
    /// Where the bytes of an encoded `Data` answer start (they run to its end), so that a
    /// receiver can keep them in place instead of copying them out.
    pub fn data_at(encoded: &[u8]) -> Option<usize> {
        const DATA: u32 = 2; // the variant index of `Data`, pinned by a test
        let (variant, rest) = chord_net::wire::enum_variant(encoded)?;
        if variant != DATA {
            return None;
        }
        chord_net::wire::bytes_to_end(encoded, rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode;

    #[test]
    fn data_is_found_in_place() {
        for len in [0usize, 1, 200, 1 << 20] {
            let d: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let enc = encode(&FilesResponse::Data(d.clone())).expect("enc");
            let at = FilesResponse::data_at(&enc).expect("found");
            assert_eq!(&enc[at..], &d[..]);
        }
        for other in [
            FilesResponse::Stored,
            FilesResponse::NotFound,
            FilesResponse::Have(vec![true, false]),
        ] {
            assert_eq!(FilesResponse::data_at(&encode(&other).expect("enc")), None);
        }
        let mut enc = encode(&FilesResponse::Data(vec![1, 2, 3])).expect("enc");
        enc.push(0);
        assert_eq!(FilesResponse::data_at(&enc), None);
    }
}
