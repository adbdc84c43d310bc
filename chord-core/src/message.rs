//! The messages Chord nodes exchange. Transport-agnostic: chord-net frames them, the
//! simulator passes them by value.
//!
//! Every request carries an id chosen by the sender; the response carries the same id.
//! Variants are only ever added at the end of an enum, so that the postcard encoding of
//! existing messages never changes (golden-bytes tests in chord-net pin it).

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::Id;

/// A node as others see it: its ring position and where to reach it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct Peer {
    /// Ring position.
    pub id: Id,
    /// Address of the host that serves this ring position.
    pub addr: SocketAddr,
}

impl Peer {
    /// A peer.
    pub fn new(id: Id, addr: SocketAddr) -> Peer {
        Peer { id, addr }
    }

    /// The peer of the (non-virtual) node at `addr`: its id is SHA-1 of `ip:port`.
    pub fn from_addr(addr: SocketAddr) -> Peer {
        Peer {
            id: Id::for_addr(addr),
            addr,
        }
    }

    /// Is the id one its address can hold: `Id::for_vnode(addr, v)` for some ring position
    /// `v` below `max_vnodes`? A peer that names another id for an address (to place itself
    /// where it likes, or to point others at a node under a false position) is not.
    pub fn is_genuine(&self, max_vnodes: u16) -> bool {
        (0..max_vnodes).any(|v| Id::for_vnode(self.addr, v) == self.id)
    }
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", &self.id.to_string()[..8], self.addr)
    }
}

/// Largest number of peers a node accepts in one list from the network. Longer lists are
/// truncated, so a hostile peer cannot make a node hold more than this.
pub const MAX_PEERS_PER_MESSAGE: usize = 64;

/// One protocol message.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum Message {
    /// A request; the receiver answers with a [`Message::Response`] carrying the same `id`.
    Request {
        /// Chosen by the sender, echoed in the response.
        id: u64,
        /// What is asked.
        body: Request,
    },
    /// The answer to the request with the same `id`.
    Response {
        /// The request's id.
        id: u64,
        /// The answer.
        body: Response,
    },
}

impl Message {
    /// Every peer the message names (successor lists, predecessors, closer nodes), for a
    /// transport to check before the message is handled.
    pub fn peers(&self) -> Vec<Peer> {
        match self {
            Message::Request {
                body:
                    Request::Leaving {
                        predecessor,
                        successors,
                    },
                ..
            } => predecessor.iter().chain(successors).copied().collect(),
            Message::Request {
                body:
                    Request::LeavingChecked {
                        predecessor,
                        successors,
                        dead,
                    },
                ..
            } => predecessor
                .iter()
                .chain(successors)
                .chain(dead)
                .copied()
                .collect(),
            Message::Request { .. } => Vec::new(),
            Message::Response { body, .. } => match body {
                Response::Neighbors {
                    predecessor,
                    successors,
                }
                | Response::NeighborsLeaving {
                    predecessor,
                    successors,
                } => predecessor.iter().chain(successors).copied().collect(),
                Response::Step { successors, closer } => {
                    successors.iter().chain(closer).copied().collect()
                }
                Response::Departed { successors } => successors.clone(),
                Response::Pong | Response::Ack | Response::NotMember => Vec::new(),
            },
        }
    }
}

/// What one node asks another.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum Request {
    /// Are you alive (and a ring member)?
    Ping,
    /// Stabilize's question: your predecessor and your successor list.
    GetNeighbors,
    /// "I believe I am your predecessor" (Zave's rectify; replaces notify).
    Rectify,
    /// One step of an iterative lookup for `key`.
    FindStep {
        /// The key being looked up.
        key: Id,
    },
    /// The sender is leaving the ring. The predecessor learns the sender's successor list,
    /// the successor learns the sender's predecessor.
    Leaving {
        /// The leaver's predecessor.
        predecessor: Option<Peer>,
        /// The leaver's successor list.
        successors: Vec<Peer>,
    },
    /// "Your predecessor did not answer me": a lookup found the receiver's predecessor
    /// silent while the receiver still counts it as alive. The receiver pings its
    /// predecessor (it trusts nothing else in the hint) and drops it if it is silent, so
    /// that its range, and lookups for those keys, are sure again sooner. Answered with
    /// [`Response::Ack`].
    CheckPredecessor,
    /// The sender is leaving the ring and has just asked every entry of its successor
    /// list: `successors` holds the ones that answered, `dead` the ones that did not. The
    /// receiver handles it as [`Request::Leaving`] and also drops the `dead` entries from
    /// its own list (it remembers them, and merge probing finds them again if the leaver
    /// was wrong). Without that, the survivor of a shrinking ring kept the crashed nodes
    /// the last leaver still listed, and had no live successor until its own probes timed
    /// out. Sent instead of `Leaving` since 2026-11-27; `Leaving` is still understood.
    LeavingChecked {
        /// The leaver's predecessor.
        predecessor: Option<Peer>,
        /// The entries of the leaver's successor list that answered its check.
        successors: Vec<Peer>,
        /// The entries that did not (timeout and resend), or told it they were leaving.
        dead: Vec<Peer>,
    },
}

/// What a node answers.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum Response {
    /// Answer to [`Request::Ping`].
    Pong,
    /// Answer to [`Request::GetNeighbors`].
    Neighbors {
        /// The responder's predecessor, if it has one.
        predecessor: Option<Peer>,
        /// The responder's successor list, nearest first.
        successors: Vec<Peer>,
    },
    /// Answer to [`Request::FindStep`]: the responder's successor list and the known nodes
    /// closest to (and preceding) the key, best first. The asker decides from these whether
    /// the key's owner is in the list or which hop to try next.
    Step {
        /// The responder's successor list, nearest first.
        successors: Vec<Peer>,
        /// Fingers of the responder strictly between it and the key, closest to the key first.
        closer: Vec<Peer>,
    },
    /// Plain acknowledgement (of [`Request::Rectify`] and [`Request::Leaving`]).
    Ack,
    /// The responder is not (or no longer) a ring member and does not answer ring queries.
    NotMember,
    /// "I am leaving (or have just left): here is my successor list." A leaving node
    /// answers every request this way for `Config::leave_linger_rounds` stabilization
    /// intervals after its notices, so that the nodes further back that still list it
    /// (it told only its neighbours) drop it and take its list at once, instead of
    /// timing out on it.
    Departed {
        /// The leaver's successor list.
        successors: Vec<Peer>,
    },
    /// Answer to [`Request::GetNeighbors`] from a node that has begun to leave (it is
    /// checking its list, or waiting for a predecessor): read as [`Response::Neighbors`],
    /// but an asker that adopts it as its successor keeps up to r of its own entries past
    /// the end of the leaver's list. Its list is unchecked and may die with it.
    NeighborsLeaving {
        /// The responder's predecessor, if it has one.
        predecessor: Option<Peer>,
        /// The responder's successor list, nearest first.
        successors: Vec<Peer>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn peer(n: u8) -> Peer {
        Peer::from_addr(format!("127.0.0.{n}:2000").parse().expect("valid"))
    }

    #[test]
    fn genuine_peers_and_the_peers_a_message_names() {
        let addr: SocketAddr = "10.0.0.1:2000".parse().expect("addr");
        assert!(Peer::from_addr(addr).is_genuine(1));
        let v3 = Peer::new(Id::for_vnode(addr, 3), addr);
        assert!(v3.is_genuine(4));
        assert!(!v3.is_genuine(3), "position 3 is not below 3");
        assert!(!Peer::new(Id::for_key("anywhere"), addr).is_genuine(16));
        let m = Message::Response {
            id: 1,
            body: Response::Step {
                successors: vec![peer(1), peer(2)],
                closer: vec![peer(3)],
            },
        };
        assert_eq!(m.peers(), vec![peer(1), peer(2), peer(3)]);
        let m = Message::Request {
            id: 2,
            body: Request::Leaving {
                predecessor: Some(peer(4)),
                successors: vec![peer(5)],
            },
        };
        assert_eq!(m.peers(), vec![peer(4), peer(5)]);
        let m = Message::Request {
            id: 3,
            body: Request::LeavingChecked {
                predecessor: Some(peer(4)),
                successors: vec![peer(5)],
                dead: vec![peer(6)],
            },
        };
        assert_eq!(m.peers(), vec![peer(4), peer(5), peer(6)]);
    }

    #[test]
    fn postcard_round_trip() {
        let msgs = vec![
            Message::Request {
                id: 1,
                body: Request::Ping,
            },
            Message::Request {
                id: 2,
                body: Request::GetNeighbors,
            },
            Message::Request {
                id: 3,
                body: Request::Rectify,
            },
            Message::Request {
                id: u64::MAX,
                body: Request::FindStep { key: Id::MAX },
            },
            Message::Request {
                id: 5,
                body: Request::Leaving {
                    predecessor: Some(peer(1)),
                    successors: vec![peer(2), peer(3)],
                },
            },
            Message::Response {
                id: 6,
                body: Response::Pong,
            },
            Message::Response {
                id: 7,
                body: Response::Neighbors {
                    predecessor: None,
                    successors: vec![peer(4)],
                },
            },
            Message::Response {
                id: 8,
                body: Response::Step {
                    successors: vec![],
                    closer: vec![peer(5)],
                },
            },
            Message::Response {
                id: 9,
                body: Response::Ack,
            },
            Message::Response {
                id: 10,
                body: Response::NotMember,
            },
            Message::Request {
                id: 11,
                body: Request::LeavingChecked {
                    predecessor: None,
                    successors: vec![peer(6)],
                    dead: vec![peer(7), peer(8)],
                },
            },
        ];
        for m in msgs {
            let bytes = postcard::to_stdvec(&m).expect("encode");
            let back: Message = postcard::from_bytes(&bytes).expect("decode");
            assert_eq!(back, m);
        }
    }

    proptest! {
        /// Arbitrary bytes never panic the decoder; whatever decodes re-encodes to a prefix
        /// of the input.
        #[test]
        fn hostile_bytes_do_not_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            if let Ok((m, rest)) = postcard::take_from_bytes::<Message>(&bytes) {
                let again = postcard::to_stdvec(&m).expect("encode");
                prop_assert_eq!(&again[..], &bytes[..bytes.len() - rest.len()]);
            }
        }
    }
}
