//! # chord-net
//!
//! Chord on real TCP. A newcomer's tour:
//!
//! * [`frame`]: 4-byte big-endian length + postcard body, checked before allocation,
//!   trailing bytes rejected, every read under a deadline.
//! * [`wire`]: the handshake ([`wire::Hello`]) and the frames that follow it.
//! * `conn` (private): the handshake and the reader/writer tasks of a connection.
//! * [`node`]: the runtime. [`Node::builder`] binds, starts a driver thread that runs
//!   `chord_core::Node`, and gives a [`Node`] handle: `lookup`, `status`, `events`, `leave`.
//! * [`client`]: the client side of the protocol (`chord lookup`, `status`, `ring`, `leave`).
//!
//! The runtime is built on async-net, async-io, async-channel and async-executor (the
//! crates under smol and async-std). The node runs on its own thread, so the handle can be
//! used from smol, async-std, tokio or plain `block_on` alike.
//!
//! ```no_run
//! # fn main() -> Result<(), chord_net::Error> {
//! futures_lite::future::block_on(async {
//!     let a = chord_net::Node::builder().listen("127.0.0.1:0".parse().unwrap()).start().await?;
//!     let b = chord_net::Node::builder().listen("127.0.0.1:0".parse().unwrap()).join(a.addr()).start().await?;
//!     let found = b.lookup(chord_core::Id::for_key("hello.txt")).await?;
//!     println!("hello.txt belongs to {}", found.owner.addr);
//!     b.leave().await?;
//!     a.leave().await
//! })
//! # }
//! ```

#![forbid(unsafe_code)]

mod admission;
mod budget;
pub mod client;
mod conn;
mod control;
mod errors;
pub mod frame;
mod input;
pub mod node;
pub mod noise;
mod outbox;
mod rate;
pub mod ring;
mod status;
pub mod wire;

use std::net::SocketAddr;
use std::time::Duration;

/// The ring's own types, so that an application needs no direct chord-core dependency.
pub use chord_core::{Config, Event, Id, LookupOutcome, Peer};
pub use client::Client;
pub use control::ControlToken;
pub use node::{Node, NodeBuilder, Service};
pub use noise::NetworkKey;
pub use status::{Finger, Status};

/// Resource limits of a node, with safe defaults.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest frame body accepted (default 8 MiB).
    pub max_frame: u32,
    /// Most open inbound connections, peers and clients (default 1024), of which
    /// [`Limits::peer_slots`] are kept for peers. When a class is full, its connection idle
    /// the longest is closed to admit a newcomer.
    pub max_connections: usize,
    /// Inbound connections kept for ring peers, apart from clients (default 256).
    pub peer_slots: usize,
    /// Connections still in their handshake at once; more are refused with `Busy` at once
    /// (default 128).
    pub max_handshakes: usize,
    /// Of those, from one address or IPv6 /64 (default 16), so that one host cannot keep
    /// every handshake slot busy with hellos it never finishes.
    pub max_handshakes_per_ip: usize,
    /// Most open inbound connections from one IP address, or one IPv6 /64 (default 256),
    /// so that one host cannot take every connection.
    pub max_connections_per_ip: usize,
    /// Frames queued per connection before new ones are dropped (default 256).
    pub max_in_flight: usize,
    /// Bytes of frames queued on one connection (default 8 MiB). Past it, the node stops
    /// reading that connection's requests until its peer reads the answers (or the write
    /// deadline closes it), and drops its own lookups and calls to that peer.
    pub max_queued_bytes: usize,
    /// Requests read from one connection and not yet answered (default 32); past it the
    /// node reads no more from that connection until some are answered. This bounds the
    /// lookups in flight per client.
    pub max_requests_per_conn: usize,
    /// Bytes of frames the node holds at once for everyone: queued answers, and frames
    /// above 16 KiB being read or served (default 64 MiB). When it is spent, clients'
    /// service requests wait and peers' are answered `Busy`; ring maintenance, lookups and
    /// status go on. Requests waiting for a service slot do not count for admission (they
    /// cannot give their bytes back by waiting), so with [`Limits::max_service_requests`]
    /// answers of at most 4 MiB in flight a node holds at most about twice this + one
    /// frame + 4 MiB x `max_service_requests` + 20 KiB per connection (84 KiB while it
    /// reads a large frame) of frame memory, whatever its peers do.
    pub memory_budget: usize,
    /// An idle connection is closed after this long (default 120 s).
    pub idle_timeout: Duration,
    /// A frame must arrive whole within this long once it has started (default 10 s).
    pub frame_timeout: Duration,
    /// The handshake must complete within this long (default 5 s).
    pub handshake_timeout: Duration,
    /// Connecting to a peer may take this long (default 3 s).
    pub connect_timeout: Duration,
    /// Service requests handled at once (default 32); a client's further requests wait
    /// (its connection is not read meanwhile), a peer's are answered `Busy`.
    pub max_service_requests: usize,
    /// How long [`Node::call`] waits for an answer (default 30 s).
    pub call_timeout: Duration,
    /// Requests per second a client connection may send (default 1,000, with a burst of
    /// [`Limits::client_burst_per_conn`]); past it the connection is read at this pace.
    pub client_rate_per_conn: f64,
    /// Requests saved up by an idle client connection (default 200).
    pub client_burst_per_conn: f64,
    /// Requests per second from all the client connections of one address (an IPv6 /64
    /// counts as one) together (default 2,000, burst [`Limits::client_burst_per_ip`]).
    pub client_rate_per_ip: f64,
    /// Requests saved up by an idle address (default 400).
    pub client_burst_per_ip: f64,
    /// Requests per second (Chord requests and service requests) one peer connection may
    /// send (default 5,000, burst [`Limits::peer_burst_per_conn`]): far above a ring's own
    /// traffic, but anyone can claim to be a peer on a ring without a network key.
    pub peer_rate_per_conn: f64,
    /// Requests saved up by an idle peer connection (default 1,000).
    pub peer_burst_per_conn: f64,
    /// Clients' lookups in flight on the node at once (default 256); more wait.
    pub max_client_lookups: usize,
    /// Most ring positions (virtual nodes) a peer may announce, and the bound under which
    /// every id learned second-hand must be `Id::for_vnode(addr, v)` (default 16). Every
    /// node of a ring should use the same value.
    pub max_vnodes: u16,
    /// How long a [`Client`] keeps retrying, with jittered exponential backoff, when a
    /// node answers that it is busy (too many connections, or service requests) before
    /// giving up (default 30 s).
    pub busy_deadline: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_frame: frame::DEFAULT_MAX_FRAME,
            max_connections: 1024,
            peer_slots: 256,
            max_handshakes: 128,
            max_handshakes_per_ip: 16,
            max_connections_per_ip: 256,
            max_in_flight: 256,
            max_queued_bytes: 8 << 20,
            max_requests_per_conn: 32,
            memory_budget: 64 << 20,
            idle_timeout: Duration::from_secs(120),
            frame_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(3),
            max_service_requests: 32,
            call_timeout: Duration::from_secs(30),
            client_rate_per_conn: 1000.0,
            client_burst_per_conn: 200.0,
            client_rate_per_ip: 2000.0,
            client_burst_per_ip: 400.0,
            peer_rate_per_conn: 5000.0,
            peer_burst_per_conn: 1000.0,
            max_client_lookups: 256,
            max_vnodes: 16,
            busy_deadline: Duration::from_secs(30),
        }
    }
}

/// Errors of the node runtime and the client.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Could not listen on the address.
    #[error("cannot listen on {0}")]
    Bind(SocketAddr, #[source] std::io::Error),
    /// The node would host more ring positions than [`Limits::max_vnodes`] allows (its
    /// peers would refuse it).
    #[error("{vnodes} ring positions is more than the limit of {max}")]
    TooManyVnodes {
        /// Asked for.
        vnodes: u16,
        /// The limit.
        max: u16,
    },
    /// Could not start the node's thread.
    #[error("cannot start the node thread")]
    Spawn(#[source] std::io::Error),
    /// Joining the ring failed.
    #[error("could not join the ring")]
    Join(#[source] chord_core::JoinError),
    /// A lookup failed.
    #[error("lookup failed")]
    Lookup(#[source] chord_core::LookupError),
    /// The node has stopped.
    #[error("the node has stopped")]
    Stopped,
    /// Could not connect to a node.
    #[error("cannot connect to {0}")]
    Connect(SocketAddr, #[source] std::io::Error),
    /// The connection failed or carried a bad frame.
    #[error("connection to {0} failed")]
    Frame(SocketAddr, #[source] frame::FrameError),
    /// The node refused the handshake.
    #[error("{0} refused the connection")]
    Refused(SocketAddr, #[source] wire::Refusal),
    /// The node answered with an error.
    #[error("{0} answered with an error")]
    Remote(SocketAddr, #[source] wire::RemoteError),
    /// The service answered with an error.
    #[error("service request to {0} failed")]
    Service(SocketAddr, #[source] wire::ServiceError),
    /// No answer in time.
    #[error("no answer from {0} in time")]
    Timeout(SocketAddr),
    /// The node answered something that does not fit the question.
    #[error("{0} sent an unexpected answer")]
    Unexpected(SocketAddr),
}
