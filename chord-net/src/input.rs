//! What the driver is fed: frames and connection news from the connection tasks, and
//! commands from the handle ([`Input`]).

use std::net::SocketAddr;

use async_channel::{Receiver, Sender};
use chord_core::{Event, Id, LookupError, LookupOutcome};

use crate::outbox::{Outbox, Reply};
use crate::wire::{Frame, Refusal, ServiceError, Status};

/// What a connection task tells the driver.
pub(crate) enum Input {
    /// A frame from the peer listening at `from`, which announced `vnodes` ring positions;
    /// answers may go to `reply`.
    Peer {
        from: SocketAddr,
        vnodes: u16,
        frame: Frame,
        reply: Reply,
    },
    /// A frame from a client; answers go to `reply`. `from_host`: the client connects from
    /// the node's own host (see [`crate::control`]).
    Client {
        frame: Frame,
        reply: Reply,
        from_host: bool,
    },
    /// A peer connection opened by the other side: frames for `addr` may go to `tx`.
    Inbound { addr: SocketAddr, tx: Outbox },
    /// The node at `addr` refused our connection.
    Refused { addr: SocketAddr, why: Refusal },
    /// The connection to `addr` (ours) is gone.
    Closed { addr: SocketAddr },
    /// A connection the peer at `addr` opened is gone.
    InboundClosed { addr: SocketAddr },
    /// A command from the handle.
    Command(Command),
}

/// Commands from the handle to the driver.
pub(crate) enum Command {
    Call {
        to: SocketAddr,
        service: u16,
        body: Vec<u8>,
        reply: CallReply,
    },
    Lookup {
        key: Id,
        reply: Sender<Result<LookupOutcome, LookupError>>,
    },
    Status {
        reply: Sender<Status>,
    },
    Subscribe {
        reply: Sender<Receiver<Event>>,
    },
    Leave {
        reply: Sender<()>,
    },
    Kill,
}

/// Where a service call's answer goes.
pub(crate) type CallReply = Sender<Result<Vec<u8>, ServiceError>>;
