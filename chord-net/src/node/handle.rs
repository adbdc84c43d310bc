//! [`Node`]: the handle an application holds. Its methods only send commands to the
//! driver and wait for the answers, so it works from any async runtime, or none.

use super::*;

/// A running Chord node. Cheap to clone; the node stops when [`Node::leave`] or
/// [`Node::kill`] is called, when its host asks it to leave, or when the last of its
/// handles is dropped (it then leaves gracefully, as [`Node::leave`] would; handles made
/// by [`Node::detached`], such as the ones services get, do not count).
#[derive(Clone, Debug)]
pub struct Node {
    pub(super) addr: SocketAddr,
    pub(super) ids: Vec<Id>,
    pub(super) tx: Sender<Input>,
    pub(super) done: Receiver<()>,
    pub(super) call_timeout: Duration,
    pub(super) leave_requests: Receiver<()>,
    pub(super) key: Option<NetworkKey>,
    /// A kill was sent (or is on its way from a thread of its own): one is enough.
    pub(super) killing: Arc<std::sync::atomic::AtomicBool>,
    pub(super) _owner: Option<Arc<Owner>>,
}

/// Held by every handle that keeps the node running; the last one dropped makes it leave.
#[derive(Debug)]
pub(super) struct Owner(pub(super) Sender<Input>);

impl Drop for Owner {
    fn drop(&mut self) {
        let (reply, _) = async_channel::bounded(1);
        send_surely(&self.0, Input::Command(Command::Leave { reply }));
    }
}

/// Send `input` to the driver even when its queue is full, without blocking the calling
/// thread (it may be the node's own executor): from a thread of its own then. Lost if
/// the driver has stopped already, when there is nothing left to do, and if the system
/// cannot start a thread (out of threads or memory): blocking here instead could
/// deadlock the node's own executor, so that input is dropped, and logged.
fn send_surely(tx: &Sender<Input>, input: Input) {
    if let Err(async_channel::TrySendError::Full(input)) = tx.try_send(input) {
        let tx = tx.clone();
        let spawned = std::thread::Builder::new()
            .name("chord-node-send".into())
            .spawn(move || {
                // Err: the driver has stopped; nothing left to do.
                let _ = tx.send_blocking(input);
            });
        if let Err(e) = spawned {
            tracing::warn!("a command to the node was lost: no thread to send it from: {e}");
        }
    }
}

impl Node {
    /// A builder with the defaults.
    pub fn builder() -> NodeBuilder {
        NodeBuilder::default()
    }

    /// A handle to the same node that does not keep it running: the node stops when the
    /// last handle that is not detached is dropped. For tasks that serve the node (a
    /// maintenance loop, a service) and must not outlive it by holding it up.
    pub fn detached(&self) -> Node {
        Node {
            _owner: None,
            ..self.clone()
        }
    }

    /// The network key the node was started with, if any (clients of its ring need it).
    pub fn network_key(&self) -> Option<&NetworkKey> {
        self.key.as_ref()
    }

    /// The address the node listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The node's (first) ring position.
    pub fn id(&self) -> Id {
        self.ids[0]
    }

    /// All ring positions it hosts.
    pub fn ids(&self) -> &[Id] {
        &self.ids
    }

    pub(super) async fn command<T>(
        &self,
        make: impl FnOnce(Sender<T>) -> Command,
    ) -> Result<T, Error> {
        let (tx, rx) = async_channel::bounded(1);
        self.tx
            .send(Input::Command(make(tx)))
            .await
            .map_err(|_| Error::Stopped)?;
        rx.recv().await.map_err(|_| Error::Stopped)
    }

    /// Find the live node responsible for `key`.
    pub async fn lookup(&self, key: Id) -> Result<LookupOutcome, Error> {
        self.command(|reply| Command::Lookup { key, reply })
            .await?
            .map_err(Error::Lookup)
    }

    /// Routing state of the first ring position.
    pub async fn status(&self) -> Result<crate::Status, Error> {
        Ok(self
            .command(|reply| Command::Status { reply })
            .await?
            .into())
    }

    /// A stream of protocol events (range changes, lookups, leave). Events are dropped for
    /// a subscriber that falls more than 1024 behind.
    pub async fn events(&self) -> Result<Receiver<Event>, Error> {
        self.command(|reply| Command::Subscribe { reply }).await
    }

    /// Leave the ring gracefully (neighbours are told) and stop.
    pub async fn leave(&self) -> Result<(), Error> {
        self.command(|reply| Command::Leave { reply }).await?;
        self.stopped().await;
        Ok(())
    }

    /// Send a request to service `service` on the node at `to` (possibly this one) and wait
    /// for its answer, at most [`Limits::call_timeout`].
    pub async fn call(
        &self,
        to: SocketAddr,
        service: u16,
        body: Vec<u8>,
    ) -> Result<Vec<u8>, Error> {
        let call = self.command(|reply| Command::Call {
            to,
            service,
            body,
            reply,
        });
        match crate::frame::timeout(self.call_timeout, call).await {
            Some(answer) => answer?.map_err(|e| Error::Service(to, e)),
            None => Err(Error::Timeout(to)),
        }
    }

    /// Stop at once without telling anyone, as a crash would.
    pub fn kill(&self) {
        // Not lost to a full queue (a node under load must still stop when told), and sent
        // once however often it is called (found in review: 300 kills on a full queue made
        // 300 threads); a second kill has nothing to add.
        if !self.killing.swap(true, std::sync::atomic::Ordering::SeqCst) {
            send_surely(&self.tx, Input::Command(Command::Kill));
        }
    }

    /// Resolves when a client has asked this node to leave (only with
    /// [`NodeBuilder::defer_client_leave`]; otherwise never).
    pub async fn leave_requested(&self) {
        if self.leave_requests.recv().await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Resolves when the node has stopped.
    pub async fn stopped(&self) {
        let _ = self.done.recv().await;
    }
}
