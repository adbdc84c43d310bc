//! The messages on the wire, after the handshake. See docs/protocol.md for the bytes.
//!
//! Variants are only ever added at the end of an enum; the golden-bytes tests below pin
//! the encoding of every message that exists.

use std::net::SocketAddr;

use chord_core::{Id, LookupError, Message, Peer};
use serde::{Deserialize, Serialize};

/// First four bytes of every handshake.
pub const MAGIC: [u8; 4] = *b"CHRD";
/// Protocol version spoken by this crate (3: the hello announces the vnode count).
pub const VERSION: u16 = 3;

/// Who opens a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// Another ring node.
    Peer,
    /// A client (the `chord` command or an application) asking for a service.
    Client,
}

/// The first frame on a connection, from the side that opened it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Must be [`MAGIC`].
    pub magic: [u8; 4],
    /// The sender's protocol version.
    pub version: u16,
    /// Peer or client.
    pub role: Role,
    /// A peer's listening address (its ids are derived from it); `None` for clients.
    pub listen: Option<SocketAddr>,
    /// The sender holds a network key: a Noise handshake follows (see [`crate::noise`]).
    pub encrypted: bool,
    /// A peer's number of ring positions (virtual nodes): its ids are
    /// `Id::for_vnode(listen, v)` for `v` below it, and no others. 0 for clients.
    pub vnodes: u16,
}

impl Hello {
    /// The hello of a peer listening on `listen` with `vnodes` ring positions.
    pub fn peer(listen: SocketAddr, vnodes: u16) -> Hello {
        Hello {
            magic: MAGIC,
            version: VERSION,
            role: Role::Peer,
            listen: Some(listen),
            encrypted: false,
            vnodes,
        }
    }

    /// The hello of a client.
    pub fn client() -> Hello {
        Hello {
            magic: MAGIC,
            version: VERSION,
            role: Role::Client,
            listen: None,
            encrypted: false,
            vnodes: 0,
        }
    }

    /// The magic and version at the start of a hello's bytes, whatever follows them: so
    /// that a node can refuse another version with a clear answer even when the rest of
    /// that version's hello has another shape.
    pub fn magic_and_version(body: &[u8]) -> Option<([u8; 4], u16)> {
        postcard::take_from_bytes::<([u8; 4], u16)>(body)
            .ok()
            .map(|(mv, _)| mv)
    }
}

/// The answer to a [`Hello`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HelloReply {
    /// Accepted: the node's listening address and number of ring positions.
    Welcome {
        /// The node's listening address.
        addr: SocketAddr,
        /// Ring positions (virtual nodes) it hosts.
        vnodes: u16,
    },
    /// Refused, with the reason; the connection is closed after this frame.
    Refused(Refusal),
}

/// Why a handshake was refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Refusal {
    /// The first bytes were not [`MAGIC`]: not a Chord node.
    #[error("not a chord connection (wrong magic)")]
    BadMagic,
    /// The versions differ.
    #[error("protocol version {theirs} is not supported (this node speaks {ours})")]
    Version {
        /// The version the node speaks.
        ours: u16,
        /// The version that was offered.
        theirs: u16,
    },
    /// A peer must say where it listens.
    #[error("a peer must announce its listening address")]
    NoListenAddress,
    /// The node has too many connections.
    #[error("too many connections")]
    Busy,
    /// The node uses a network key and the other side offered none.
    #[error("this ring requires a network key")]
    NetworkKeyRequired,
    /// The other side offered encryption but the node has no network key.
    #[error("this node does not use a network key; connect without one")]
    NoNetworkKey,
    /// The encrypted handshake failed: the keys differ.
    #[error("the network key does not match this ring's")]
    WrongNetworkKey,
    /// A peer announced a listening address on another IP than the one it connects from:
    /// it would take ring ids that are not its own.
    #[error("a peer connecting from {seen} cannot announce an address on another IP")]
    AddressMismatch {
        /// The IP address the connection came from.
        seen: std::net::IpAddr,
    },
    /// A peer announced no ring position, or more than the node accepts from one address.
    #[error("a peer may hold 1 to {max} ring positions, not {announced}")]
    Vnodes {
        /// What the peer announced.
        announced: u16,
        /// The most this node accepts.
        max: u16,
    },
}

/// Where the payload of a successful service answer starts in `body`, a frame body, with
/// the answer's id: `Some((id, at))` if `body` is `Frame::ServiceResponse { id, body:
/// Ok(bytes) }` (the bytes are then `body[at..]`, to its end). Lets a receiver keep the
/// payload in the buffer it read instead of copying it (file chunks are 1 MiB).
pub fn service_answer_at(body: &[u8]) -> Option<(u64, usize)> {
    const SERVICE_RESPONSE: u32 = 4; // Frame's variant index, pinned by a test
    let (variant, rest) = enum_variant(body)?;
    if variant != SERVICE_RESPONSE {
        return None;
    }
    let (id, rest) = postcard::take_from_bytes::<u64>(rest).ok()?;
    let (ok, rest) = enum_variant(rest)?;
    if ok != 0 {
        return None;
    }
    Some((id, bytes_to_end(body, rest)?))
}

/// The length prefix and the fields of a `Frame::ServiceRequest { id, service, body }`
/// frame whose `body` is `len` bytes: `head ++ body` is exactly the frame
/// [`crate::frame::encode`] makes, so a large body can be written from where it is
/// instead of being copied into a frame first.
pub fn service_request_head(
    id: u64,
    service: u16,
    len: usize,
) -> Result<Vec<u8>, crate::frame::FrameError> {
    const SERVICE_REQUEST: u32 = 3; // Frame's variant index, pinned by a test
    let mut head = postcard::to_extend(&(SERVICE_REQUEST, id, service, len), vec![0u8; 4])?;
    let prefix = crate::frame::length_prefix(head.len() - 4 + len)?;
    head[..4].copy_from_slice(&prefix);
    Ok(head)
}

/// The variant index at the start of a postcard-encoded enum, and what follows it.
pub fn enum_variant(encoded: &[u8]) -> Option<(u32, &[u8])> {
    postcard::take_from_bytes::<u32>(encoded).ok()
}

/// Where the bytes of a postcard byte string start in `encoded`, given `rest`, the end
/// of `encoded` that holds the string: `None` unless the string runs exactly to the end.
/// The zero-copy readers of service answers and file data use it to keep a payload in
/// the buffer it was read into.
pub fn bytes_to_end(encoded: &[u8], rest: &[u8]) -> Option<usize> {
    let (bytes, rest) = postcard::take_from_bytes::<&[u8]>(rest).ok()?;
    rest.is_empty().then(|| encoded.len() - bytes.len())
}

/// One frame after the handshake.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Frame {
    /// A Chord message between ring positions. The sender's id is not sent: it is
    /// `Id::for_vnode(listen, from_vnode)` of the connection's peer, so it cannot be forged.
    Chord {
        /// Which of the sender's virtual nodes sent it.
        from_vnode: u16,
        /// The receiving ring position.
        to: Id,
        /// The message.
        msg: Message,
    },
    /// A client's request.
    ClientRequest {
        /// Chosen by the client, echoed in the response.
        id: u64,
        /// What is asked.
        body: ClientRequest,
    },
    /// The answer to a client's request.
    ClientResponse {
        /// The request's id.
        id: u64,
        /// The answer.
        body: ClientResponse,
    },
    /// A request for an application service (such as file storage) registered on the
    /// receiving node with [`crate::NodeBuilder::service`].
    ServiceRequest {
        /// Chosen by the sender, echoed in the response.
        id: u64,
        /// Which service.
        service: u16,
        /// The service's own encoding of the request.
        #[serde(with = "serde_bytes")]
        body: Vec<u8>,
    },
    /// The answer to a [`Frame::ServiceRequest`].
    ServiceResponse {
        /// The request's id.
        id: u64,
        /// The service's answer, or why there is none.
        #[serde(with = "result_bytes")]
        body: Result<Vec<u8>, ServiceError>,
    },
}

/// Byte payloads as postcard byte strings (one copy) rather than sequences of `u8`
/// (one call per byte). The bytes on the wire are the same either way: a varint length,
/// then the bytes.
mod result_bytes {
    use super::ServiceError;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(
        r: &Result<Vec<u8>, ServiceError>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        r.as_ref().map(|v| serde_bytes::Bytes::new(v)).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Result<Vec<u8>, ServiceError>, D::Error> {
        let r: Result<serde_bytes::ByteBuf, ServiceError> = Deserialize::deserialize(d)?;
        Ok(r.map(serde_bytes::ByteBuf::into_vec))
    }
}

/// Why a service request got no answer from the service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ServiceError {
    /// No service with that number runs on the node.
    #[error("no such service")]
    NoSuchService,
    /// The node has too many service requests under way.
    #[error("the node is busy")]
    Busy,
    /// The connection to the node failed before it answered.
    #[error("the node could not be reached")]
    Unreachable,
    /// The service failed while answering (it panicked); the node goes on serving.
    #[error("the service failed while answering")]
    Failed,
}

/// What a client can ask a node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientRequest {
    /// Find the node responsible for `key`.
    Lookup {
        /// The key's id.
        key: Id,
    },
    /// The node's routing state.
    Status,
    /// Leave the ring gracefully and stop. No longer obeyed from anyone (it was an
    /// anonymous shutdown): answered [`RemoteError::NotAllowed`]. See
    /// [`ClientRequest::Control`].
    Leave,
    /// A request that changes the node rather than asks it, from its operator: obeyed only
    /// from the node's own host (a loopback address or the node's IP) with the node's
    /// control token (see [`crate::ControlToken`]).
    Control {
        /// The node's control token.
        token: crate::ControlToken,
        /// What to do.
        command: ControlCommand,
    },
    /// The routing state of one of the node's ring positions (a node with virtual nodes
    /// has several; [`ClientRequest::Status`] gives the first). Answered
    /// [`RemoteError::NotHere`] if the node holds no such position.
    StatusOf {
        /// The position's id.
        position: Id,
    },
}

/// What an operator can make a node do ([`ClientRequest::Control`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControlCommand {
    /// Leave the ring gracefully and stop.
    Leave,
}

/// What a node answers a client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientResponse {
    /// Answer to [`ClientRequest::Lookup`].
    Lookup {
        /// The responsible node.
        owner: Peer,
        /// Hops the lookup took.
        hops: u32,
    },
    /// Answer to [`ClientRequest::Status`].
    Status(Status),
    /// The node is leaving (answer to [`ClientRequest::Leave`]).
    Leaving,
    /// The request failed.
    Error(RemoteError),
}

/// An error a node reports to a client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum RemoteError {
    /// The lookup failed.
    #[error("lookup failed: {0}")]
    Lookup(LookupError),
    /// The node is not a ring member (joining or leaving).
    #[error("the node is not a ring member")]
    NotMember,
    /// The node is overloaded.
    #[error("the node is busy")]
    Busy,
    /// A request that changes the node came from elsewhere than its host, or without its
    /// control token.
    #[error("only the node's operator, on its host, can do that (with its control token)")]
    NotAllowed,
    /// The node holds no ring position with the id asked about.
    #[error("no ring position with that id here")]
    NotHere,
}

/// A node's routing state, as `chord status` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The node (its first ring position).
    pub me: Peer,
    /// Its predecessor.
    pub predecessor: Option<Peer>,
    /// Its successor list, nearest first.
    pub successors: Vec<Peer>,
    /// Its distinct fingers: (first index served, start of that finger, the node).
    pub fingers: Vec<Finger>,
    /// Whether it is a ring member.
    pub member: bool,
}

/// One row of a finger table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finger {
    /// The first finger index this node serves.
    pub index: u8,
    /// `me + 2^index`.
    pub start: Id,
    /// The finger.
    pub peer: Peer,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chord_core::{Request, Response};

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn peer() -> Peer {
        Peer::new(Id([0x11; 20]), "127.0.0.1:2000".parse().expect("valid"))
    }

    /// The encoding of each message, pinned. A change here breaks compatibility with
    /// deployed nodes: add variants at the end instead and bump nothing.
    #[test]
    fn golden_bytes() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (
                postcard::to_stdvec(&Hello::peer("127.0.0.1:2000".parse().expect("valid"), 1))
                    .expect("enc"),
                "43485244030001007f000001d00f0001",
            ),
            (
                postcard::to_stdvec(&Hello::client()).expect("enc"),
                "434852440301000000",
            ),
            (
                postcard::to_stdvec(&Hello {
                    encrypted: true,
                    ..Hello::client()
                })
                .expect("enc"),
                "434852440301000100",
            ),
            (
                postcard::to_stdvec(&HelloReply::Refused(Refusal::WrongNetworkKey)).expect("enc"),
                "0106",
            ),
            (
                postcard::to_stdvec(&HelloReply::Refused(Refusal::Version {
                    ours: 1,
                    theirs: 2,
                }))
                .expect("enc"),
                "01010102",
            ),
            (
                postcard::to_stdvec(&Frame::Chord {
                    from_vnode: 0,
                    to: Id([0xaa; 20]),
                    msg: Message::Request {
                        id: 5,
                        body: Request::FindStep {
                            key: Id([0x01; 20]),
                        },
                    },
                })
                .expect("enc"),
                "0000aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa000503\
                 0101010101010101010101010101010101010101",
            ),
            (
                postcard::to_stdvec(&Frame::Chord {
                    from_vnode: 1,
                    to: Id([0xaa; 20]),
                    msg: Message::Response {
                        id: 300,
                        body: Response::Neighbors {
                            predecessor: None,
                            successors: vec![peer()],
                        },
                    },
                })
                .expect("enc"),
                // Chord, vnode 1, to, Response, id 300 (varint ac02), Neighbors, no
                // predecessor, one peer: id, SocketAddr::V4, ip, port 2000 (varint d00f).
                "0001aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa01ac0201\
                 00011111111111111111111111111111111111111111\
                 007f000001d00f",
            ),
            (
                // Request 5: CheckPredecessor (added at the end, 2026-11-27).
                postcard::to_stdvec(&Frame::Chord {
                    from_vnode: 0,
                    to: Id([0xaa; 20]),
                    msg: Message::Request {
                        id: 7,
                        body: Request::CheckPredecessor,
                    },
                })
                .expect("enc"),
                "0000aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa000705",
            ),
            (
                // Request 6: LeavingChecked { predecessor, successors, dead } (added at the
                // end, 2026-11-27): no predecessor, no live entry, one dead entry.
                postcard::to_stdvec(&Frame::Chord {
                    from_vnode: 0,
                    to: Id([0xaa; 20]),
                    msg: Message::Request {
                        id: 7,
                        body: Request::LeavingChecked {
                            predecessor: None,
                            successors: vec![],
                            dead: vec![peer()],
                        },
                    },
                })
                .expect("enc"),
                "0000aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa000706\
                 000001\
                 1111111111111111111111111111111111111111\
                 007f000001d00f",
            ),
            (
                // Response 5: Departed { successors } (added at the end, 2026-11-27).
                postcard::to_stdvec(&Frame::Chord {
                    from_vnode: 0,
                    to: Id([0xaa; 20]),
                    msg: Message::Response {
                        id: 7,
                        body: Response::Departed {
                            successors: vec![peer()],
                        },
                    },
                })
                .expect("enc"),
                "0000aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa010705\
                 011111111111111111111111111111111111111111\
                 007f000001d00f",
            ),
            (
                // Response 6: NeighborsLeaving { predecessor, successors } (added at the
                // end, 2026-11-28).
                postcard::to_stdvec(&Frame::Chord {
                    from_vnode: 0,
                    to: Id([0xaa; 20]),
                    msg: Message::Response {
                        id: 7,
                        body: Response::NeighborsLeaving {
                            predecessor: None,
                            successors: vec![peer()],
                        },
                    },
                })
                .expect("enc"),
                "0000aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa010706\
                 00011111111111111111111111111111111111111111\
                 007f000001d00f",
            ),
            (
                postcard::to_stdvec(&Frame::ClientRequest {
                    id: 1,
                    body: ClientRequest::Status,
                })
                .expect("enc"),
                "010101",
            ),
            (
                postcard::to_stdvec(&Frame::ClientRequest {
                    id: 1,
                    body: ClientRequest::StatusOf {
                        position: Id([0x22; 20]),
                    },
                })
                .expect("enc"),
                "0101042222222222222222222222222222222222222222",
            ),
            (
                // ServiceRequest (3), id 2, service 7, 2 bytes of body.
                postcard::to_stdvec(&Frame::ServiceRequest {
                    id: 2,
                    service: 7,
                    body: vec![0xca, 0xfe],
                })
                .expect("enc"),
                "03020702cafe",
            ),
            (
                // ServiceResponse (4), id 2, Err (1), NoSuchService (0).
                postcard::to_stdvec(&Frame::ServiceResponse {
                    id: 2,
                    body: Err(ServiceError::NoSuchService),
                })
                .expect("enc"),
                "04020100",
            ),
        ];
        for (bytes, want) in cases {
            let want: String = want.split_whitespace().collect();
            assert_eq!(hex(&bytes), want);
        }
    }

    #[test]
    fn service_answers_are_found_in_place() {
        for len in [0usize, 1, 127, 128, 70_000, 1 << 20] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            for id in [1u64, 300, u64::MAX] {
                let f = Frame::ServiceResponse {
                    id,
                    body: Ok(payload.clone()),
                };
                let body = postcard::to_stdvec(&f).expect("enc");
                let (got, at) = service_answer_at(&body).expect("found");
                assert_eq!(got, id);
                assert_eq!(&body[at..], &payload[..]);
            }
        }
        // Errors, other frames, trailing or missing bytes: not this fast path.
        let err = Frame::ServiceResponse {
            id: 1,
            body: Err(ServiceError::Busy),
        };
        let req = Frame::ServiceRequest {
            id: 1,
            service: 1,
            body: vec![1, 2, 3],
        };
        for f in [err, req] {
            assert_eq!(
                service_answer_at(&postcard::to_stdvec(&f).expect("enc")),
                None
            );
        }
        let mut body = postcard::to_stdvec(&Frame::ServiceResponse {
            id: 1,
            body: Ok(vec![9; 10]),
        })
        .expect("enc");
        body.push(0);
        assert_eq!(service_answer_at(&body), None);
        assert_eq!(service_answer_at(&body[..body.len() - 2]), None);
        assert_eq!(service_answer_at(&[]), None);
    }

    #[test]
    fn a_service_request_head_and_body_are_the_frame() {
        for len in [0usize, 1, 127, 128, 16_383, 16_384, 65_536, 1 << 20] {
            for (id, service) in [(0u64, 0u16), (1, 1), (300, 65_535), (u64::MAX, 128)] {
                let body: Vec<u8> = (0..len).map(|i| (i * 31) as u8).collect();
                let whole = crate::frame::encode(&Frame::ServiceRequest {
                    id,
                    service,
                    body: body.clone(),
                })
                .expect("encode");
                let mut parts = service_request_head(id, service, len).expect("head");
                parts.extend_from_slice(&body);
                assert_eq!(parts, whole, "len {len} id {id} service {service}");
            }
        }
    }

    #[test]
    fn every_frame_round_trips() {
        let frames = vec![
            Frame::ClientRequest {
                id: 9,
                body: ClientRequest::Lookup { key: Id::MAX },
            },
            Frame::ClientRequest {
                id: 10,
                body: ClientRequest::Leave,
            },
            Frame::ClientRequest {
                id: 11,
                body: ClientRequest::Control {
                    token: crate::ControlToken::from_bytes([3; 32]),
                    command: ControlCommand::Leave,
                },
            },
            Frame::ClientResponse {
                id: 11,
                body: ClientResponse::Error(RemoteError::NotAllowed),
            },
            Frame::ClientRequest {
                id: 12,
                body: ClientRequest::StatusOf { position: Id::MAX },
            },
            Frame::ClientResponse {
                id: 12,
                body: ClientResponse::Error(RemoteError::NotHere),
            },
            Frame::ClientResponse {
                id: 9,
                body: ClientResponse::Lookup {
                    owner: peer(),
                    hops: 3,
                },
            },
            Frame::ClientResponse {
                id: 1,
                body: ClientResponse::Status(Status {
                    me: peer(),
                    predecessor: Some(peer()),
                    successors: vec![peer()],
                    fingers: vec![Finger {
                        index: 3,
                        start: Id::ZERO,
                        peer: peer(),
                    }],
                    member: true,
                }),
            },
            Frame::ClientResponse {
                id: 2,
                body: ClientResponse::Error(RemoteError::Lookup(LookupError::Timeout)),
            },
            Frame::ClientResponse {
                id: 3,
                body: ClientResponse::Leaving,
            },
            Frame::ServiceRequest {
                id: 4,
                service: 7,
                body: vec![1, 2, 3],
            },
            Frame::ServiceResponse {
                id: 4,
                body: Ok(vec![9]),
            },
            Frame::ServiceResponse {
                id: 5,
                body: Err(ServiceError::NoSuchService),
            },
        ];
        for f in frames {
            let bytes = postcard::to_stdvec(&f).expect("enc");
            assert_eq!(crate::frame::decode::<Frame>(&bytes).expect("dec"), f);
        }
    }
}
