//! Service calls to other nodes that await an answer ([`Node::call`]): which peer each
//! went to, and who waits for it.

use super::driver::answer;
use super::*;

pub(super) struct Calls {
    next: u64,
    waiting: HashMap<u64, (SocketAddr, CallReply)>,
}

impl Calls {
    /// No call yet; ids start at 1 (0 is a local call's, which never waits here).
    pub(super) fn new() -> Calls {
        Calls {
            next: 1,
            waiting: HashMap::new(),
        }
    }

    /// An id for a new call, after forgetting the calls whose caller stopped waiting.
    pub(super) fn next_id(&mut self) -> u64 {
        self.waiting.retain(|_, (_, r)| !r.is_closed());
        let id = self.next;
        self.next += 1;
        id
    }

    /// The call `id`, sent to `to`, waits for its answer.
    pub(super) fn insert(&mut self, id: u64, to: SocketAddr, reply: CallReply) {
        self.waiting.insert(id, (to, reply));
    }

    /// An answer from `from` to the call `id`: to its caller, if that call went to
    /// `from` (anyone else answering it is ignored).
    pub(super) fn answered(
        &mut self,
        id: u64,
        from: SocketAddr,
        body: Result<Vec<u8>, ServiceError>,
    ) {
        if let Some((to, r)) = self.waiting.remove(&id) {
            if to == from {
                answer(&r, body);
            }
        }
    }

    /// The connection to `addr` closed: the calls that went out on it will never be
    /// answered.
    pub(super) fn unreachable(&mut self, addr: SocketAddr) {
        self.waiting.retain(|_, (to, r)| {
            if *to == addr {
                answer(r, Err(ServiceError::Unreachable));
                false
            } else {
                true
            }
        });
    }
}
