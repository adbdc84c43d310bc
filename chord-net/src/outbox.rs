//! The sending side of a connection ([`Outbox`]), as the driver and the connection's
//! reader hold it, and the way back to whoever sent a request ([`Reply`]).

use async_channel::{Receiver, Sender};

use crate::budget::{Budget, Lease};
use crate::frame::encode;
use crate::wire::Frame;
use crate::Limits;

/// A frame waiting to be written, with its shares of the connection's and the node's
/// byte budgets (given back once it is written or dropped).
pub(crate) struct Queued {
    pub(crate) bytes: Vec<u8>,
    pub(crate) _conn: Lease,
    pub(crate) _node: Lease,
}

/// The sending side of a connection: two queues, ring maintenance first, each bounded in
/// frames, and together in bytes (per connection, and against the node's budget).
#[derive(Clone)]
pub(crate) struct Outbox {
    pub(crate) urgent: Sender<Queued>,
    pub(crate) bulk: Sender<Queued>,
    pub(crate) conn: Budget,
    pub(crate) node: Budget,
}

/// Frames of ring maintenance queued per connection.
pub(crate) const URGENT_QUEUE: usize = 64;

/// The writer's end of an [`Outbox`].
pub(crate) struct OutboxRx {
    pub(crate) urgent: Receiver<Queued>,
    pub(crate) bulk: Receiver<Queued>,
}

impl Drop for OutboxRx {
    /// However the connection ends (its writer failed, or its task was dropped when the
    /// connection was reclaimed), what is still queued is dropped now, with its budget
    /// shares: clones of the `Outbox` (the driver's pool) would otherwise keep it.
    fn drop(&mut self) {
        self.urgent.close();
        self.bulk.close();
        while self.urgent.try_recv().is_ok() || self.bulk.try_recv().is_ok() {}
    }
}

impl Outbox {
    pub(crate) fn new(limits: &Limits, node: &Budget) -> (Outbox, OutboxRx) {
        // Maintenance is a few frames in flight per peer; a bounded channel allocates its
        // whole capacity up front, so this one is kept small.
        let (utx, urx) = async_channel::bounded(URGENT_QUEUE.min(limits.max_in_flight));
        let (btx, brx) = async_channel::bounded(limits.max_in_flight);
        let out = Outbox {
            urgent: utx,
            bulk: btx,
            conn: Budget::new(limits.max_queued_bytes),
            node: node.clone(),
        };
        (
            out,
            OutboxRx {
                urgent: urx,
                bulk: brx,
            },
        )
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.urgent.is_closed()
    }

    pub(crate) fn close(&self) {
        self.urgent.close();
        self.bulk.close();
    }

    /// Queue a frame of our own: ring maintenance (`urgent`) goes first and is only
    /// bounded in frames; anything else is also refused when the connection's bytes are
    /// spent (its peer is not reading). False if dropped.
    pub(crate) fn push(&self, bytes: Vec<u8>, urgent: bool) -> bool {
        let conn = if urgent {
            self.conn.force(bytes.len())
        } else {
            match self.conn.try_take(bytes.len()) {
                Some(l) => l,
                None => return false,
            }
        };
        let q = Queued {
            _node: self.node.force(bytes.len()),
            _conn: conn,
            bytes,
        };
        let tx = if urgent { &self.urgent } else { &self.bulk };
        tx.try_send(q).is_ok()
    }

    /// Answer service request `id` with `Busy` (the client backs off and tries again).
    pub(crate) fn busy(&self, id: u64) {
        let busy = Frame::ServiceResponse {
            id,
            body: Err(crate::wire::ServiceError::Busy),
        };
        // Encoding our own small frame cannot fail (only a body over 4 GiB can); false
        // from `answer` means the connection is gone, and the asker with it.
        if let Ok(bytes) = encode(&busy) {
            self.answer(bytes);
        }
    }

    /// Queue the answer to a request that was admitted: kept whatever its size (admission
    /// bounded how many there can be). False if the connection is gone.
    pub(crate) fn answer(&self, bytes: Vec<u8>) -> bool {
        let q = Queued {
            _node: self.node.force(bytes.len()),
            _conn: self.conn.force(bytes.len()),
            bytes,
        };
        self.bulk.try_send(q).is_ok()
    }
}

/// The way back to whoever sent a request: its connection, and what the request holds
/// while it is served (its place among the connection's requests in flight, and its
/// bytes of the node's budget), given back when the answer is queued or the request is
/// dropped unanswered.
pub(crate) struct Reply {
    pub(crate) out: Outbox,
    pub(crate) _held: [Lease; 4],
}

impl Reply {
    /// Queue the answer. Dropped if the connection is gone (the asker cannot read it any
    /// more), or if its queue is full: on a peer's connection that the driver also sends
    /// its own frames on, the queue can fill; the peer then sees the request as lost and
    /// its protocol's timeout handles it.
    pub(crate) fn send(self, bytes: Vec<u8>) {
        let _ = self.out.answer(bytes);
    }
}
