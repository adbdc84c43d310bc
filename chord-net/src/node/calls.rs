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
    /// `from`. Anyone else answering it is ignored, and the call goes on waiting for its
    /// own answer (found in review: the call was forgotten first, so any peer could end
    /// our calls to others with a guessed id, and the caller saw the node as stopped).
    pub(super) fn answered(
        &mut self,
        id: u64,
        from: SocketAddr,
        body: Result<Vec<u8>, ServiceError>,
    ) {
        if self.waiting.get(&id).is_some_and(|(to, _)| *to == from) {
            if let Some((_, r)) = self.waiting.remove(&id) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_peer_called_can_answer_a_call() {
        let (b, evil): (SocketAddr, SocketAddr) = (
            "127.0.0.2:2000".parse().expect("addr"),
            "127.0.0.66:2000".parse().expect("addr"),
        );
        let mut calls = Calls::new();
        let id = calls.next_id();
        let (tx, rx) = async_channel::bounded(1);
        calls.insert(id, b, tx);
        calls.answered(id, evil, Ok(b"forged".to_vec()));
        assert!(!rx.is_closed(), "a stranger's answer ended the call");
        assert!(rx.try_recv().is_err());
        calls.answered(id, b, Ok(b"real".to_vec()));
        assert_eq!(rx.try_recv().expect("answered"), Ok(b"real".to_vec()));
    }
}
