//! The error a caller of this crate gets: [`FilesError`]. What travels between nodes is
//! another type, [`RemoteError`](crate::wire::RemoteError): a node's refusal in words
//! every version can decode. The two meet in two places only: a node answers a request
//! with `RemoteError::from(&FilesError)`, and a client turns the answer it got back into a
//! `FilesError` (a refusal with a meaning of its own, such as [`FilesError::Conflict`],
//! keeps it; any other is [`FilesError::Remote`]).

use std::path::PathBuf;

use crate::store::StoreError;
use crate::wire::RemoteError;

/// What a file-sharing or record operation failed with.
///
/// Local failures keep their cause as [`std::error::Error::source`] (an I/O error with
/// the path it concerns, a chord-net error with the node it concerns); `Display` shows
/// this level only, as is usual in Rust: print the chain to see the causes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FilesError {
    /// Names are UTF-8, 1 to 255 bytes, without NUL.
    #[error("invalid file name (1 to 255 bytes of UTF-8, no NUL)")]
    BadName,
    /// A manifest that does not describe a file.
    #[error("malformed manifest")]
    BadManifest,
    /// Bytes that do not match their hash.
    #[error("data does not match its hash")]
    Corrupt,
    /// A store is full (this node's, or the node that answered).
    #[error("store full: {used} of {limit} bytes used, {wanted} more requested")]
    StoreFull {
        /// Bytes in use.
        used: u64,
        /// The limit.
        limit: u64,
        /// Bytes asked for.
        wanted: u64,
    },
    /// A store's disk is nearly full (this node's, or the node that answered): storing
    /// this would leave less free than the store keeps free.
    #[error("the node's disk is nearly full: {available} bytes free, {keep_free} kept free, {wanted} more requested")]
    DiskLow {
        /// Bytes free on the disk.
        available: u64,
        /// Bytes the store leaves free.
        keep_free: u64,
        /// Bytes asked for.
        wanted: u64,
    },
    /// This node's store failed.
    #[error("this node's store failed")]
    Storage(#[source] std::io::Error),
    /// A ring lookup failed.
    #[error("ring lookup failed")]
    Lookup(#[source] chord_net::Error),
    /// A lookup answered without any holder.
    #[error("the ring named no holder for the position")]
    NoHolder,
    /// A node could not be reached, or the connection to it failed.
    #[error("node unreachable")]
    Unreachable(#[source] chord_net::Error),
    /// No such file in the ring.
    #[error("no file named {0:?} in the ring")]
    NotFound(String),
    /// No replica of an item could be read.
    #[error("no replica of a chunk could be read")]
    Unavailable,
    /// The output exists with other content.
    #[error("{} exists and differs", .0.display())]
    Exists(PathBuf),
    /// A local file could not be read or written.
    #[error("cannot use {}", .path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// Reading an upload's stream, or writing a download's, failed.
    #[error("the stream failed")]
    Stream(#[source] std::io::Error),
    /// A file changed while it was uploaded (its size at the end is not the size it said
    /// at the start); its path if it was a file.
    #[error("{} changed while it was read", .0.as_ref().map_or("the input".into(), |p| p.display().to_string()))]
    Changed(Option<PathBuf>),
    /// An output path that names no file (such as `/` or `..`).
    #[error("{} is not a file path", .0.display())]
    NotAFilePath(PathBuf),
    /// An identity file that does not hold an identity.
    #[error("{}: an identity file holds 64 hexadecimal digits", .0.display())]
    BadIdentityFile(PathBuf),
    /// The operating system gave no random numbers (to make an identity or a salt).
    #[error("no random numbers from the operating system")]
    Random(#[source] rand::rand_core::OsError),
    /// The thread that writes a download to disk stopped unexpectedly.
    #[error("the thread writing the download stopped")]
    WriterStopped,
    /// A message could not be encoded.
    #[error("cannot encode a message")]
    Encode(#[source] postcard::Error),
    /// This side's node stopped (another node that stopped answers
    /// `Remote(RemoteError::Stopped)`).
    #[error("the node has stopped")]
    Stopped,
    /// A record that is malformed, too large, stored at the wrong position or carries a
    /// sequence above [`record::MAX_SEQ`](crate::record::MAX_SEQ).
    #[error("malformed record")]
    BadRecord,
    /// A record whose signature does not verify under its public key.
    #[error("the record's signature does not verify")]
    BadSignature,
    /// A node refused: not allowed to anyone, or not to this caller (the node's reason).
    #[error("not allowed: {0}")]
    NotAllowed(String),
    /// The file belongs to another identity: only its owner can replace or remove it.
    #[error("{0} belongs to another identity; only its owner can remove it")]
    NotOwner(String),
    /// A file name that starts with 64 hexadecimal digits and `/`: it would read as
    /// another owner's `OWNER/NAME` in listings and links.
    #[error("{0:?} reads as OWNER/NAME (64 hexadecimal digits and /); choose another name")]
    ReadsAsQualified(String),
    /// A compare-and-swap found another sequence than the one expected.
    #[error("{}", conflict_text(*.expected, *.found))]
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
    #[error("{} has room for {available} bytes; the file needs {needed}", .path.display())]
    NoRoom {
        /// Where the file was to go.
        path: PathBuf,
        /// Bytes the file needs.
        needed: u64,
        /// Bytes free there.
        available: u64,
    },
    /// A node gave an answer that is not one of the protocol's, or does not fit the
    /// request.
    #[error("a node gave an answer that does not fit the request")]
    BadAnswer,
    /// A node refused the request for a reason of its own (a request it could not
    /// decode, its disk, its own lookups).
    #[error("a node refused the request")]
    Remote(#[source] RemoteError),
}

fn conflict_text(expected: Option<u64>, found: Option<u64>) -> String {
    if expected == found {
        // A plain write that lost its tie: another version at its own sequence won (one
        // writer's processes writing at once), or kept winning above it.
        return format!(
            "the record changed: another version was written at {} at the same time",
            seq_text(found)
        );
    }
    format!(
        "the record changed: expected {}, found {}",
        seq_text(expected),
        seq_text(found)
    )
}

pub(crate) fn seq_text(seq: Option<u64>) -> String {
    seq.map_or_else(|| "no record".into(), |s| format!("sequence {s}"))
}

impl FilesError {
    /// An I/O error about `path`.
    pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> FilesError + '_ {
        move |source| FilesError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// A chord-net error met while talking to another node.
    pub(crate) fn net(e: chord_net::Error) -> FilesError {
        match e {
            chord_net::Error::Stopped => FilesError::Stopped,
            e => FilesError::Unreachable(e),
        }
    }
}

impl From<StoreError> for FilesError {
    fn from(e: StoreError) -> FilesError {
        match e {
            StoreError::Full {
                used,
                limit,
                wanted,
            } => FilesError::StoreFull {
                used,
                limit,
                wanted,
            },
            StoreError::DiskLow {
                available,
                keep_free,
                wanted,
                ..
            } => FilesError::DiskLow {
                available,
                keep_free,
                wanted,
            },
            StoreError::Io(e) => FilesError::Storage(e),
        }
    }
}

/// Longest text from another node kept in an error (names, reasons): what a node sends
/// is printed to users and logged, and a frame could carry megabytes of it.
const MAX_REMOTE_TEXT: usize = 1024;

/// `text` cut to [`MAX_REMOTE_TEXT`] bytes (at a character boundary), marked if cut.
fn bounded(mut text: String) -> String {
    if text.len() > MAX_REMOTE_TEXT {
        let mut end = MAX_REMOTE_TEXT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

/// A node's refusal, as the client that asked sees it. Its texts are cut to 1 KiB; a
/// `Conflict` claiming a sequence no valid record can have is a bad answer.
impl From<RemoteError> for FilesError {
    fn from(e: RemoteError) -> FilesError {
        use RemoteError as R;
        match e {
            R::BadName => FilesError::BadName,
            R::BadManifest => FilesError::BadManifest,
            R::Corrupt => FilesError::Corrupt,
            R::StoreFull {
                used,
                limit,
                wanted,
            } => FilesError::StoreFull {
                used,
                limit,
                wanted,
            },
            R::DiskLow {
                available,
                keep_free,
                wanted,
            } => FilesError::DiskLow {
                available,
                keep_free,
                wanted,
            },
            R::NotFound(name) => FilesError::NotFound(bounded(name)),
            R::Unavailable => FilesError::Unavailable,
            R::BadRecord => FilesError::BadRecord,
            R::BadSignature => FilesError::BadSignature,
            R::NotAllowed(why) => FilesError::NotAllowed(bounded(why)),
            R::Conflict { found, .. } if found.is_some_and(|f| f > crate::record::MAX_SEQ) => {
                FilesError::BadAnswer
            }
            R::Conflict { expected, found } => FilesError::Conflict { expected, found },
            R::Expired => FilesError::Expired,
            R::TooLarge { size, limit } => FilesError::TooLarge { size, limit },
            // A node that says it stopped is that node: `FilesError::Stopped` means ours.
            R::Storage(text) => FilesError::Remote(R::Storage(bounded(text))),
            R::Lookup(text) => FilesError::Remote(R::Lookup(bounded(text))),
            R::Unreachable(text) => FilesError::Remote(R::Unreachable(bounded(text))),
            R::Exists(text) => FilesError::Remote(R::Exists(bounded(text))),
            R::Local(text) => FilesError::Remote(R::Local(bounded(text))),
            R::NoRoom {
                path,
                needed,
                available,
            } => FilesError::Remote(R::NoRoom {
                path: bounded(path),
                needed,
                available,
            }),
            e @ (R::Stopped | R::BadRequest | R::NoIdentity | R::BadAnswer) => {
                FilesError::Remote(e)
            }
        }
    }
}

/// What a node answers a request that failed with `e`. Causes travel as text (the
/// asker cannot decode another node's error types); an error without a wire meaning of
/// its own (those a client meets, should a node ever meet one) is sent as
/// [`RemoteError::Local`], its text.
impl From<&FilesError> for RemoteError {
    fn from(e: &FilesError) -> RemoteError {
        use FilesError as F;
        match e {
            F::BadName => RemoteError::BadName,
            F::BadManifest => RemoteError::BadManifest,
            F::Corrupt => RemoteError::Corrupt,
            F::StoreFull {
                used,
                limit,
                wanted,
            } => RemoteError::StoreFull {
                used: *used,
                limit: *limit,
                wanted: *wanted,
            },
            F::DiskLow {
                available,
                keep_free,
                wanted,
            } => RemoteError::DiskLow {
                available: *available,
                keep_free: *keep_free,
                wanted: *wanted,
            },
            F::Storage(e) => RemoteError::Storage(e.to_string()),
            F::Lookup(e) => RemoteError::Lookup(chain(e)),
            F::NoHolder => RemoteError::Lookup(e.to_string()),
            F::Unreachable(e) => RemoteError::Unreachable(chain(e)),
            F::NotFound(name) => RemoteError::NotFound(name.clone()),
            F::Unavailable => RemoteError::Unavailable,
            F::Stopped => RemoteError::Stopped,
            F::BadRecord => RemoteError::BadRecord,
            F::BadSignature => RemoteError::BadSignature,
            F::NotAllowed(why) => RemoteError::NotAllowed(why.clone()),
            F::Conflict { expected, found } => RemoteError::Conflict {
                expected: *expected,
                found: *found,
            },
            F::Expired => RemoteError::Expired,
            F::TooLarge { size, limit } => RemoteError::TooLarge {
                size: *size,
                limit: *limit,
            },
            F::BadAnswer => RemoteError::BadAnswer,
            F::Remote(e) => e.clone(),
            F::Exists(_)
            | F::Io { .. }
            | F::Stream(_)
            | F::Changed(_)
            | F::NotAFilePath(_)
            | F::BadIdentityFile(_)
            | F::Random(_)
            | F::WriterStopped
            | F::Encode(_)
            | F::NoIdentity
            | F::NotOwner(_)
            | F::ReadsAsQualified(_)
            | F::NoRoom { .. } => RemoteError::Local(chain(e)),
        }
    }
}

impl From<FilesError> for RemoteError {
    fn from(e: FilesError) -> RemoteError {
        RemoteError::from(&e)
    }
}

impl From<StoreError> for RemoteError {
    fn from(e: StoreError) -> RemoteError {
        RemoteError::from(FilesError::from(e))
    }
}

/// `e` and its causes on one line (for the wire, where a cause chain cannot travel, and
/// for logs).
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn a_refusal_with_a_meaning_keeps_it_across_the_wire() {
        let sent = FilesError::Conflict {
            expected: Some(3),
            found: Some(4),
        };
        let wire = RemoteError::from(&sent);
        let bytes = crate::encode(&wire).expect("encode");
        let got: RemoteError = crate::decode(&bytes).expect("decode");
        assert!(matches!(
            FilesError::from(got),
            FilesError::Conflict {
                expected: Some(3),
                found: Some(4)
            }
        ));
    }

    #[test]
    fn refusals_keep_their_wire_numbers() {
        use crate::wire::FilesResponse;
        // `Error` is answer 7; the refusal's number follows (postcard varints).
        for (e, n) in [
            (RemoteError::BadRequest, 2u8),
            (RemoteError::Stopped, 12),
            (RemoteError::BadRecord, 13),
            (RemoteError::BadAnswer, 21),
        ] {
            let bytes = crate::encode(&FilesResponse::Error(e)).expect("encode");
            assert_eq!(bytes, [7, n]);
        }
        // Appended in session 13: after every earlier refusal.
        let low = RemoteError::DiskLow {
            available: 1,
            keep_free: 2,
            wanted: 3,
        };
        let bytes = crate::encode(&FilesResponse::Error(low)).expect("encode");
        assert_eq!(bytes, [7, 22, 1, 2, 3]);
    }

    /// Twenty plain `kv put`s of one key by one user at once: some ended with "expected
    /// sequence N, found sequence N" (found in an acceptance run, session 13).
    #[test]
    fn a_lost_tie_says_so_and_a_compare_and_swap_names_both_sequences() {
        let tie = FilesError::Conflict {
            expected: Some(5),
            found: Some(5),
        };
        assert_eq!(
            tie.to_string(),
            "the record changed: another version was written at sequence 5 at the same time"
        );
        let moved = FilesError::Conflict {
            expected: None,
            found: Some(7),
        };
        assert_eq!(
            moved.to_string(),
            "the record changed: expected no record, found sequence 7"
        );
    }

    #[test]
    fn a_node_s_own_trouble_arrives_as_a_remote_refusal_with_its_words() {
        let disk = FilesError::Storage(std::io::Error::other("disk on fire"));
        let got = FilesError::from(RemoteError::from(&disk));
        let FilesError::Remote(RemoteError::Storage(words)) = &got else {
            panic!("{got:?}");
        };
        assert!(words.contains("disk on fire"), "{words}");
        assert!(got.source().is_some());
    }

    #[test]
    fn a_node_s_words_are_cut_and_its_impossible_claims_refused() {
        // A sequence no valid record can carry: the writer would add 1 to it.
        let lie = RemoteError::Conflict {
            expected: None,
            found: Some(u64::MAX),
        };
        assert!(matches!(FilesError::from(lie), FilesError::BadAnswer));
        // Megabytes of text, multi-byte characters across the cut.
        let long = "é".repeat(1 << 20);
        for e in [
            RemoteError::NotAllowed(long.clone()),
            RemoteError::NotFound(long.clone()),
            RemoteError::Storage(long.clone()),
            RemoteError::Local(long.clone()),
        ] {
            let got = FilesError::from(e);
            let text = match &got {
                FilesError::NotAllowed(t) | FilesError::NotFound(t) => t.clone(),
                FilesError::Remote(RemoteError::Storage(t) | RemoteError::Local(t)) => t.clone(),
                other => panic!("{other:?}"),
            };
            assert!(
                text.len() <= MAX_REMOTE_TEXT + '…'.len_utf8(),
                "{}",
                text.len()
            );
            assert!(text.ends_with('…'));
        }
    }

    #[test]
    fn local_errors_keep_their_cause_and_path() {
        let e = FilesError::io(std::path::Path::new("/nowhere/x"))(std::io::Error::from(
            std::io::ErrorKind::NotFound,
        ));
        assert_eq!(e.to_string(), "cannot use /nowhere/x");
        let cause = e.source().expect("a source");
        assert_eq!(
            cause.downcast_ref::<std::io::Error>().map(|e| e.kind()),
            Some(std::io::ErrorKind::NotFound)
        );
    }
}
