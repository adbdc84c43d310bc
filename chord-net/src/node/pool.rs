//! The connections the driver sends on, one per peer address: our own outbound one, or,
//! until we open it, the one the peer opened to us.

use super::*;

#[derive(Default)]
pub(super) struct Pool {
    conns: HashMap<SocketAddr, Outbox>,
}

impl Pool {
    /// A live connection to `addr`, if there is one.
    pub(super) fn live(&self, addr: SocketAddr) -> Option<Outbox> {
        self.conns.get(&addr).filter(|tx| !tx.is_closed()).cloned()
    }

    /// Send to `addr` on `tx` from now on.
    pub(super) fn insert(&mut self, addr: SocketAddr, tx: Outbox) {
        self.conns.insert(addr, tx);
    }

    /// The peer at `addr` connected to us: answers to it may use that connection until we
    /// open our own.
    pub(super) fn keep_inbound(&mut self, addr: SocketAddr, tx: Outbox) {
        self.conns.entry(addr).or_insert(tx);
    }

    /// A connection to or from `addr` closed: forget the one we kept if it is that one
    /// (not another, newer one to the same peer).
    pub(super) fn closed(&mut self, addr: SocketAddr) {
        if self.conns.get(&addr).is_some_and(|tx| tx.is_closed()) {
            self.conns.remove(&addr);
        }
    }
}
