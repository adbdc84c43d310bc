//! A node's routing state as the API gives it ([`crate::Node::status`],
//! [`crate::Client::status`], [`crate::ring::walk`]), apart from the wire's
//! [`crate::wire::Status`] that carries it to clients: the two can change apart (a field
//! added here need not break deployed nodes, and a wire change need not break
//! applications).

use chord_core::{Id, Peer};
use serde::{Deserialize, Serialize};

use crate::wire;

/// A node's routing state, as `chord status` shows it. Serializable (as the wire type it
/// replaced in the API was), for applications that store or forward it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Status {
    /// The node (its first ring position).
    pub me: Peer,
    /// Its predecessor.
    pub predecessor: Option<Peer>,
    /// Its successor list, nearest first.
    pub successors: Vec<Peer>,
    /// Its distinct fingers, by the first index each serves.
    pub fingers: Vec<Finger>,
    /// Whether it is a ring member.
    pub member: bool,
}

/// One row of a finger table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Finger {
    /// The first finger index this node serves.
    pub index: u8,
    /// `me + 2^index`.
    pub start: Id,
    /// The finger.
    pub peer: Peer,
}

impl Status {
    /// The status of a node that knows nobody yet: no predecessor, successors or fingers,
    /// not a member (for applications and tests that build one; fill the fields in).
    pub fn new(me: Peer) -> Status {
        Status {
            me,
            predecessor: None,
            successors: Vec::new(),
            fingers: Vec::new(),
            member: false,
        }
    }
}

impl Finger {
    /// Row `index` of a finger table: it starts at `start` and points at `peer`.
    pub fn new(index: u8, start: Id, peer: Peer) -> Finger {
        Finger { index, start, peer }
    }
}

impl From<wire::Status> for Status {
    fn from(s: wire::Status) -> Status {
        Status {
            me: s.me,
            predecessor: s.predecessor,
            successors: s.successors,
            fingers: s.fingers.into_iter().map(Finger::from).collect(),
            member: s.member,
        }
    }
}

impl From<wire::Finger> for Finger {
    fn from(f: wire::Finger) -> Finger {
        Finger {
            index: f.index,
            start: f.start,
            peer: f.peer,
        }
    }
}
