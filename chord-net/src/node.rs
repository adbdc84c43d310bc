//! The node runtime: a builder, a handle, and the driver task that runs chord-core.
//!
//! The driver owns the `chord_core::Node`s (one per virtual node) and everything mutable;
//! connection tasks and the handle talk to it over one bounded channel. It runs on a thread
//! of its own with an `async-executor`, so the handle works from any async runtime (or
//! none): its methods only send on and receive from `async-channel`s.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_channel::{Receiver, Sender};
use async_net::TcpListener;
use chord_core::{Config, Event, Id, LookupError, LookupId, LookupOutcome, Message, Peer, Time};
use futures_lite::FutureExt as _;
use tracing::{debug, info, warn};

use crate::admission::Admission;
use crate::budget::Budget;
use crate::conn::{
    is_maintenance_msg, serve_inbound, serve_outbound, Input, Listening, Outbox, Reply, Shared,
};
use crate::frame::encode;
use crate::rate::PerAddress;
use crate::wire::{
    ClientRequest, ClientResponse, Finger, Frame, Refusal, RemoteError, ServiceError, Status,
};
use crate::{ControlToken, Error, Limits, NetworkKey};

/// An application service running on a node: it receives its own requests (from peers
/// through [`Node::call`], or from clients through [`crate::Client::call`]) and answers
/// each with bytes in its own encoding. chord-files is such a service; others can be
/// written the same way, without touching this crate.
pub trait Service: Send + Sync + 'static {
    /// Answer one request. `node` is the node the service runs on (to call other nodes);
    /// `from` is the sending peer's listening address, or `None` for a client.
    fn handle(
        &self,
        node: Node,
        from: Option<SocketAddr>,
        request: Vec<u8>,
    ) -> Pin<Box<dyn Future<Output = Vec<u8>> + Send>>;
}

/// Inputs waiting for the driver, per queue (a bounded channel allocates its capacity up
/// front: 2 x 1024 x ~300 bytes). A full queue makes connection readers wait.
const DRIVER_QUEUE: usize = 1024;

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

/// Builds and starts a [`Node`].
///
/// ```no_run
/// # async fn demo() -> Result<(), chord_net::Error> {
/// use chord_net::Node;
/// let first = Node::builder().listen("127.0.0.1:2000".parse().unwrap()).start().await?;
/// let second = Node::builder()
///     .listen("127.0.0.1:2001".parse().unwrap())
///     .join(first.addr())
///     .start()
///     .await?;
/// let owner = second.lookup(chord_core::Id::for_key("song.mp3")).await?;
/// println!("{} holds song.mp3 ({} hops)", owner.owner.addr, owner.hops);
/// second.leave().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct NodeBuilder {
    listen: SocketAddr,
    join: Option<SocketAddr>,
    config: Config,
    vnodes: u16,
    limits: Limits,
    services: HashMap<u16, Arc<dyn Service>>,
    defer_client_leave: bool,
    key: Option<NetworkKey>,
    control: Option<ControlToken>,
}

impl std::fmt::Debug for NodeBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeBuilder")
            .field("listen", &self.listen)
            .field("join", &self.join)
            .field("config", &self.config)
            .field("vnodes", &self.vnodes)
            .field("limits", &self.limits)
            .field("services", &self.services.keys().collect::<Vec<_>>())
            .field("encrypted", &self.key.is_some())
            .finish()
    }
}

impl Default for NodeBuilder {
    fn default() -> NodeBuilder {
        NodeBuilder {
            listen: SocketAddr::from(([127, 0, 0, 1], 2000)),
            join: None,
            config: Config::default(),
            vnodes: 1,
            limits: Limits::default(),
            services: HashMap::new(),
            defer_client_leave: false,
            key: None,
            control: None,
        }
    }
}

impl NodeBuilder {
    /// Address to listen on (default 127.0.0.1:2000; port 0 picks a free port). The node's
    /// id is SHA-1 of the address it actually listens on.
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// Join the ring of the node at `addr` (default: start a new ring).
    pub fn join(mut self, addr: SocketAddr) -> Self {
        self.join = Some(addr);
        self
    }

    /// Successor list length r (default 8).
    pub fn successors(mut self, r: usize) -> Self {
        self.config.successor_list_len = r.max(1);
        self
    }

    /// Ring positions hosted by this node (default 1).
    pub fn vnodes(mut self, v: u16) -> Self {
        self.vnodes = v.max(1);
        self
    }

    /// Protocol settings (intervals, timeouts).
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Resource limits.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Obey control requests ([`crate::wire::ClientRequest::Control`], such as `chord
    /// leave`) that carry this token and come from the node's own host. Without a token
    /// (the default) no request on the ring port can change the node.
    pub fn control_token(mut self, token: ControlToken) -> Self {
        self.control = Some(token);
        self
    }

    /// Let the application handle an operator's request to leave: instead of leaving at
    /// once, the node answers the client and resolves [`Node::leave_requested`], so that
    /// the application can hand its data over and then call [`Node::leave`].
    pub fn defer_client_leave(mut self, defer: bool) -> Self {
        self.defer_client_leave = defer;
        self
    }

    /// Run an application service under number `id` (replacing any earlier one).
    pub fn service(mut self, id: u16, service: Arc<dyn Service>) -> Self {
        self.services.insert(id, service);
        self
    }

    /// Encrypt and authenticate every connection with this network key (Noise `NNpsk0`,
    /// see [`crate::noise`]). Nodes and clients without the same key are refused.
    pub fn network_key(mut self, key: NetworkKey) -> Self {
        self.key = Some(key);
        self
    }

    /// Bind, start the driver, and (with [`NodeBuilder::join`]) join the ring. Resolves
    /// once the node is a ring member.
    pub async fn start(self) -> Result<Node, Error> {
        if self.vnodes > self.limits.max_vnodes {
            return Err(Error::TooManyVnodes {
                vnodes: self.vnodes,
                max: self.limits.max_vnodes,
            });
        }
        if self.listen.ip().is_unspecified() {
            // Peers identify a node by the address it listens on (its ids are derived
            // from it), so it must be one they can reach it at.
            return Err(Error::Bind(
                self.listen,
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "listen on a specific address (e.g. 192.168.1.5), not a wildcard",
                ),
            ));
        }
        let listener = TcpListener::bind(self.listen)
            .await
            .map_err(|e| Error::Bind(self.listen, e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::Bind(self.listen, e))?;
        let (tx, rx) = async_channel::bounded::<Input>(DRIVER_QUEUE);
        let (ready_tx, ready_rx) = async_channel::bounded::<Result<(), Error>>(1);
        let (done_tx, done_rx) = async_channel::bounded::<()>(1);
        let ids: Vec<Id> = (0..self.vnodes).map(|v| Id::for_vnode(addr, v)).collect();
        let (leave_tx, leave_rx) = async_channel::bounded::<()>(1);
        let node = Node {
            addr,
            ids: ids.clone(),
            tx: tx.clone(),
            done: done_rx.clone(),
            call_timeout: self.limits.call_timeout,
            leave_requests: leave_rx,
            key: self.key.clone(),
            _owner: Some(Arc::new(Owner(tx.clone()))),
        };
        let mut driver = Driver::new(addr, &self, node.detached(), rx, ready_tx);
        if self.defer_client_leave {
            driver.leave_requested = Some(leave_tx);
        }
        let limits = self.limits.clone();
        let key = self.key.clone();
        let accept_tx = tx.clone();
        let shared = driver.shared.clone();
        std::thread::Builder::new()
            .name(format!("chord-node-{addr}"))
            .spawn(move || {
                let ex = async_executor::Executor::new();
                let shared = Listening {
                    me: addr,
                    limits,
                    key,
                    admission: Admission::default(),
                    shared,
                    driver: accept_tx,
                };
                let accept = accept_loop(&ex, listener, shared);
                futures_lite::future::block_on(
                    ex.run(futures_lite::future::or(driver.run(&ex), accept)),
                );
                // Dropping the executor here drops every connection task.
                drop(ex);
                drop(done_tx);
            })
            .map_err(Error::Spawn)?;
        match ready_rx.recv().await {
            Ok(Ok(())) => Ok(node),
            Ok(Err(e)) => {
                node.kill();
                node.stopped().await;
                Err(e)
            }
            Err(_) => Err(Error::Stopped),
        }
    }
}

async fn accept_loop(ex: &async_executor::Executor<'_>, listener: TcpListener, shared: Listening) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                ex.spawn(serve_inbound(stream, shared.clone())).detach();
            }
            Err(e) => {
                // Out of file descriptors, usually: back off rather than spin.
                warn!("accept failed: {e}");
                async_io::Timer::after(Duration::from_millis(100)).await;
            }
        }
    }
}

/// A running Chord node. Cheap to clone; the node stops when [`Node::leave`] or
/// [`Node::kill`] is called, when its host asks it to leave, or when the last of its
/// handles is dropped (it then leaves gracefully, as [`Node::leave`] would; handles made
/// by [`Node::detached`], such as the ones services get, do not count).
#[derive(Clone, Debug)]
pub struct Node {
    addr: SocketAddr,
    ids: Vec<Id>,
    tx: Sender<Input>,
    done: Receiver<()>,
    call_timeout: Duration,
    leave_requests: Receiver<()>,
    key: Option<NetworkKey>,
    _owner: Option<Arc<Owner>>,
}

/// Held by every handle that keeps the node running; the last one dropped makes it leave.
#[derive(Debug)]
struct Owner(Sender<Input>);

impl Drop for Owner {
    fn drop(&mut self) {
        let (reply, _) = async_channel::bounded(1);
        let leave = Input::Command(Command::Leave { reply });
        // Never lost to a full queue, and never blocking the thread that dropped the
        // handle (it may be the node's own executor): sent from a thread of its own.
        if let Err(async_channel::TrySendError::Full(leave)) = self.0.try_send(leave) {
            let tx = self.0.clone();
            let _ = std::thread::Builder::new()
                .name("chord-node-drop".into())
                .spawn(move || {
                    let _ = tx.send_blocking(leave);
                });
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

    async fn command<T>(&self, make: impl FnOnce(Sender<T>) -> Command) -> Result<T, Error> {
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
    pub async fn status(&self) -> Result<Status, Error> {
        self.command(|reply| Command::Status { reply }).await
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
        let wait = self.call_timeout;
        let answer = futures_lite::future::or(
            async {
                self.command(|reply| Command::Call {
                    to,
                    service,
                    body,
                    reply,
                })
                .await
                .map(Some)
            },
            async {
                async_io::Timer::after(wait).await;
                Ok(None)
            },
        )
        .await?;
        match answer {
            Some(Ok(bytes)) => Ok(bytes),
            Some(Err(e)) => Err(Error::Service(to, e)),
            None => Err(Error::Timeout(to)),
        }
    }

    /// Stop at once without telling anyone, as a crash would.
    pub fn kill(&self) {
        let _ = self.tx.try_send(Input::Command(Command::Kill));
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

/// How often refused control requests are logged at most.
const REFUSALS_LOGGED_EVERY: Duration = Duration::from_secs(10);

/// Counts refusals between log lines.
#[derive(Default)]
struct Refusals {
    since_logged: u64,
    logged: Option<Instant>,
}

impl Refusals {
    /// Count one; `Some(n)` when a line is due, for the `n` refusals it covers.
    fn count(&mut self, now: Instant) -> Option<u64> {
        self.since_logged += 1;
        if self
            .logged
            .is_some_and(|t| now.duration_since(t) < REFUSALS_LOGGED_EVERY)
        {
            return None;
        }
        self.logged = Some(now);
        Some(std::mem::take(&mut self.since_logged))
    }
}

struct Driver {
    addr: SocketAddr,
    epoch: Instant,
    nodes: Vec<chord_core::Node>,
    join: Option<SocketAddr>,
    limits: Limits,
    key: Option<NetworkKey>,
    tx: Sender<Input>,
    /// Ring maintenance and the handle's commands: served first.
    rx: Receiver<Input>,
    /// Everything else (see [`Shared::work`]).
    work_rx: Receiver<Input>,
    /// Maintenance inputs taken since the last work input.
    urgent_in_a_row: u32,
    ready: Option<Sender<Result<(), Error>>>,
    pool: HashMap<SocketAddr, Outbox>,
    lookups: HashMap<(usize, LookupId), Pending>,
    subscribers: Vec<Sender<Event>>,
    leaving: Vec<Sender<()>>,
    stop: bool,
    handle: Node,
    services: HashMap<u16, Arc<dyn Service>>,
    /// Node-wide budgets: memory held in frames, service requests being served.
    shared: Shared,
    /// Service calls awaiting an answer: destination and who waits.
    calls: HashMap<u64, (SocketAddr, CallReply)>,
    next_call: u64,
    /// With deferred client leaves: where to signal a request.
    leave_requested: Option<Sender<()>>,
    /// The operator's token, if control requests are obeyed at all.
    control: Option<ControlToken>,
    /// Refused control requests: logged at most once per [`REFUSALS_LOGGED_EVERY`], with
    /// how many there were (anyone can send them: a line each filled the log).
    refusals: Refusals,
    /// Peers whose ids were checked against their addresses.
    genuine: std::collections::HashSet<Peer>,
}

/// Where the answer of a service call goes.
type CallReply = Sender<Result<Vec<u8>, ServiceError>>;

/// Who waits for a lookup.
enum Pending {
    Handle(Sender<Result<LookupOutcome, LookupError>>),
    Client { id: u64, reply: Reply },
}

impl Driver {
    fn new(
        addr: SocketAddr,
        b: &NodeBuilder,
        handle: Node,
        rx: Receiver<Input>,
        ready: Sender<Result<(), Error>>,
    ) -> Driver {
        // Clients' requests, service traffic and lookup steps: served after maintenance.
        let (work, work_rx) = async_channel::bounded::<Input>(DRIVER_QUEUE);
        let nodes = (0..b.vnodes)
            .map(|v| {
                chord_core::Node::new(Peer::new(Id::for_vnode(addr, v), addr), b.config.clone())
            })
            .collect();
        Driver {
            addr,
            epoch: Instant::now(),
            nodes,
            join: b.join,
            limits: b.limits.clone(),
            key: b.key.clone(),
            tx: handle.tx.clone(),
            rx,
            ready: Some(ready),
            pool: HashMap::new(),
            lookups: HashMap::new(),
            subscribers: Vec::new(),
            leaving: Vec::new(),
            stop: false,
            handle,
            services: b.services.clone(),
            shared: Shared {
                memory: Budget::new(b.limits.memory_budget),
                services: Budget::new(b.limits.max_service_requests),
                lookups: Budget::new(b.limits.max_client_lookups),
                rates: Arc::new(PerAddress::new(
                    b.limits.client_rate_per_ip,
                    b.limits.client_burst_per_ip,
                )),
                vnodes: b.vnodes,
                work,
            },
            work_rx,
            urgent_in_a_row: 0,
            calls: HashMap::new(),
            next_call: 1,
            leave_requested: None,
            control: b.control.clone(),
            refusals: Refusals::default(),
            genuine: std::collections::HashSet::new(),
        }
    }

    fn now(&self) -> Time {
        Time(self.epoch.elapsed().as_micros() as u64)
    }

    async fn run(mut self, ex: &async_executor::Executor<'_>) {
        let now = self.now();
        match self.join {
            Some(j) => self.nodes[0].join(Peer::new(Id::for_addr(j), j), now),
            None => self.nodes[0].create(now),
        }
        self.flush(ex);
        while !self.stop {
            let deadline = self.nodes.iter().filter_map(|n| n.poll_timeout()).min();
            let (rx, work) = (self.rx.clone(), self.work_rx.clone());
            // Maintenance first: work is taken when no maintenance is waiting, and after
            // every 16 maintenance inputs in a row, so that neither can starve the other.
            let work_turn = self.urgent_in_a_row >= 16;
            let next = async {
                if work_turn {
                    if let Ok(i) = work.try_recv() {
                        return Some((i, false));
                    }
                }
                match rx.try_recv() {
                    Ok(i) => Some((i, true)),
                    Err(_) => {
                        futures_lite::future::or(
                            async { rx.recv().await.ok().map(|i| (i, true)) },
                            async { work.recv().await.ok().map(|i| (i, false)) },
                        )
                        .await
                    }
                }
            };
            let input = match deadline {
                Some(t) => {
                    let at = self.epoch + Duration::from_micros(t.0);
                    futures_lite::future::or(next, async {
                        async_io::Timer::at(at).await;
                        None
                    })
                    .await
                }
                None => next.await,
            };
            let now = self.now();
            if let Some((input, urgent)) = input {
                self.urgent_in_a_row = if urgent { self.urgent_in_a_row + 1 } else { 0 };
                self.on_input(input, now, ex);
            }
            for n in &mut self.nodes {
                if n.poll_timeout().is_some_and(|t| t <= now) {
                    n.handle_timeout(now);
                }
            }
            self.flush(ex);
        }
        info!(addr = %self.addr, "node stopped");
    }

    /// Is `p`'s id one its address can hold (`Id::for_vnode(addr, v)`, `v <
    /// Limits::max_vnodes`)? Answers are remembered (a bounded set, emptied when full), so
    /// honest traffic costs a hash per new peer.
    fn genuine(&mut self, p: &Peer) -> bool {
        if self.genuine.contains(p) {
            return true;
        }
        if !p.is_genuine(self.limits.max_vnodes) {
            return false;
        }
        if self.genuine.len() >= 8192 {
            self.genuine.clear();
        }
        self.genuine.insert(*p);
        true
    }

    fn vnode_of(&self, id: Id) -> Option<usize> {
        self.nodes.iter().position(|n| n.me().id == id)
    }

    fn on_input(&mut self, input: Input, now: Time, ex: &async_executor::Executor<'_>) {
        match input {
            Input::Peer {
                from,
                vnodes,
                frame,
                reply,
            } => match frame {
                Frame::Chord {
                    from_vnode,
                    to,
                    msg,
                } => {
                    let Some(v) = self.vnode_of(to) else {
                        debug!(%from, "message for a ring position we do not host");
                        return;
                    };
                    // Ids bound to hosts: a peer speaks only for the positions it announced,
                    // and names only peers whose ids their addresses can hold.
                    if from_vnode >= vnodes {
                        debug!(%from, from_vnode, vnodes, "position not announced: dropped");
                        return;
                    }
                    // No list longer than chord-core reads (64), before any id is hashed.
                    let peers = msg.peers();
                    if peers.len() > 2 * chord_core::MAX_PEERS_PER_MESSAGE + 1 {
                        debug!(%from, "message with over-long peer lists: dropped");
                        return;
                    }
                    if !peers.iter().all(|p| self.genuine(p)) {
                        debug!(%from, "message naming a peer under a false id: dropped");
                        return;
                    }
                    // The sender's id follows from its address: it cannot claim another.
                    let sender = Peer::new(Id::for_vnode(from, from_vnode), from);
                    self.nodes[v].handle(sender, msg, now);
                }
                Frame::ServiceRequest { id, service, body } => {
                    // A peer's request is not waited for: Busy if the node is full.
                    self.serve(
                        Some(from),
                        id,
                        service,
                        body,
                        Answer::Wire(reply),
                        false,
                        ex,
                    )
                }
                Frame::ServiceResponse { id, body } => {
                    if let Some((to, r)) = self.calls.remove(&id) {
                        if to == from {
                            let _ = r.try_send(body);
                        }
                    }
                }
                other => debug!(%from, "unexpected frame from a peer: {other:?}"),
            },
            Input::Client {
                frame,
                reply,
                from_host,
            } => match frame {
                Frame::ServiceRequest { id, service, body } => {
                    // The connection's reader waited for room before handing it on.
                    self.serve(None, id, service, body, Answer::Wire(reply), true, ex)
                }
                frame => self.on_client(frame, reply, from_host, now),
            },
            Input::Inbound { addr, tx } => {
                // Answers to that peer may use its connection until we open our own.
                self.pool.entry(addr).or_insert(tx);
            }
            Input::Refused { addr, why } => {
                if self.ready.is_some() && self.join == Some(addr) {
                    // The bootstrap node will never let us in: say why, now.
                    if let Some(r) = self.ready.take() {
                        let _ = r.try_send(Err(Error::Refused(addr, why)));
                    }
                    self.stop = true;
                } else if why == Refusal::Busy {
                    debug!(%addr, "peer refused us: {why}");
                } else {
                    warn!(%addr, "peer refused us: {why}");
                }
            }
            Input::InboundClosed { addr } => {
                // Only if that was the connection kept for the peer (not our own to it).
                if self.pool.get(&addr).is_some_and(|tx| tx.is_closed()) {
                    self.pool.remove(&addr);
                }
            }
            Input::Closed { addr } => {
                if self.pool.get(&addr).is_some_and(|tx| tx.is_closed()) {
                    self.pool.remove(&addr);
                }
                // Calls that went out on that connection will never be answered.
                self.calls.retain(|_, (to, r)| {
                    if *to == addr {
                        let _ = r.try_send(Err(ServiceError::Unreachable));
                        false
                    } else {
                        true
                    }
                });
            }
            Input::Command(Command::Call {
                to,
                service,
                body,
                reply,
            }) => {
                self.calls.retain(|_, (_, r)| !r.is_closed());
                if to == self.addr {
                    let local = Answer::Local(reply);
                    self.serve(Some(self.addr), 0, service, body, local, false, ex);
                    return;
                }
                let id = self.next_call;
                self.next_call += 1;
                match encode(&Frame::ServiceRequest { id, service, body }) {
                    Ok(bytes) => {
                        if self.send_to(to, bytes, false, ex) {
                            self.calls.insert(id, (to, reply));
                        } else {
                            // The peer is not reading what we sent it already.
                            let _ = reply.try_send(Err(ServiceError::Busy));
                        }
                    }
                    Err(_) => {
                        let _ = reply.try_send(Err(ServiceError::Busy));
                    }
                }
            }
            Input::Command(c) => self.on_command(c, now),
        }
    }

    /// Run a service request on its own task, within the in-flight bound. `admitted`: the
    /// caller already took a service slot (a client's connection did; its reply holds
    /// it); otherwise a full node answers `Busy`.
    #[allow(clippy::too_many_arguments)]
    fn serve(
        &mut self,
        from: Option<SocketAddr>,
        id: u64,
        service: u16,
        body: Vec<u8>,
        answer: Answer,
        admitted: bool,
        ex: &async_executor::Executor<'_>,
    ) {
        let Some(svc) = self.services.get(&service).cloned() else {
            answer.send(id, Err(ServiceError::NoSuchService));
            return;
        };
        let slot = if admitted {
            // The connection's reader took the slot; it goes with the reply.
            crate::budget::Lease::none()
        } else {
            match self.shared.services.try_take(1) {
                // As for clients: bytes of requests waiting for admission do not count.
                Some(slot) if !self.shared.memory.spent_unparked() => slot,
                _ => {
                    answer.send(id, Err(ServiceError::Busy));
                    return;
                }
            }
        };
        // A service that panics, in its call or in its future, answers its caller with
        // `Failed` and frees its slot; the node goes on.
        let node = self.handle.clone();
        let call = std::panic::catch_unwind(AssertUnwindSafe(|| svc.handle(node, from, body)));
        let Ok(fut) = call else {
            tracing::error!(service, "a service panicked");
            answer.send(id, Err(ServiceError::Failed));
            return;
        };
        ex.spawn(async move {
            let out = AssertUnwindSafe(fut).catch_unwind().await;
            drop(slot);
            match out {
                Ok(out) => answer.send(id, Ok(out)),
                Err(_) => {
                    tracing::error!(service, "a service panicked");
                    answer.send(id, Err(ServiceError::Failed));
                }
            }
        })
        .detach();
    }

    fn on_command(&mut self, c: Command, now: Time) {
        match c {
            Command::Lookup { key, reply } => {
                let lid = self.nodes[0].lookup(key, now);
                self.lookups.insert((0, lid), Pending::Handle(reply));
            }
            Command::Status { reply } => {
                let _ = reply.try_send(self.status());
            }
            Command::Subscribe { reply } => {
                let (tx, rx) = async_channel::bounded(1024);
                self.subscribers.push(tx);
                let _ = reply.try_send(rx);
            }
            Command::Leave { reply } => self.start_leave(reply, now),
            Command::Kill => self.stop = true,
            Command::Call { .. } => {} // handled in on_input
        }
    }

    fn start_leave(&mut self, reply: Sender<()>, now: Time) {
        self.leaving.push(reply);
        for n in &mut self.nodes {
            n.leave(now);
        }
    }

    fn on_client(&mut self, frame: Frame, reply: Reply, from_host: bool, now: Time) {
        let Frame::ClientRequest { id, body } = frame else {
            return;
        };
        let answer = match body {
            ClientRequest::Lookup { key } => {
                if !self.nodes[0].is_member() {
                    ClientResponse::Error(RemoteError::NotMember)
                } else {
                    let lid = self.nodes[0].lookup(key, now);
                    self.lookups.insert((0, lid), Pending::Client { id, reply });
                    return;
                }
            }
            ClientRequest::Status => ClientResponse::Status(self.status()),
            // Anyone could send it: never obeyed (an anonymous shutdown).
            ClientRequest::Leave => ClientResponse::Error(RemoteError::NotAllowed),
            ClientRequest::Control { token, command } => {
                let allowed = from_host && self.control.as_ref().is_some_and(|t| *t == token);
                if !allowed {
                    if let Some(n) = self.refusals.count(Instant::now()) {
                        warn!(
                            "refused {n} control request(s) (last: {command:?}): not from the host with the token"
                        );
                    }
                    send_client(reply, id, ClientResponse::Error(RemoteError::NotAllowed));
                    return;
                }
                match &self.leave_requested {
                    Some(app) => {
                        let _ = app.try_send(());
                    }
                    None => {
                        let (tx, _rx) = async_channel::bounded(1);
                        self.start_leave(tx, now);
                    }
                }
                ClientResponse::Leaving
            }
        };
        send_client(reply, id, answer);
    }

    fn status(&self) -> Status {
        let n = &self.nodes[0];
        Status {
            me: n.me(),
            predecessor: n.predecessor(),
            successors: n.successors().to_vec(),
            fingers: n
                .fingers()
                .rows()
                .into_iter()
                .map(|(i, start, peer)| Finger {
                    index: i as u8,
                    start,
                    peer,
                })
                .collect(),
            member: n.is_member(),
        }
    }

    /// Move every node's output into the world, until nothing is left (messages between
    /// our own virtual nodes are delivered at once and may cause more).
    fn flush(&mut self, ex: &async_executor::Executor<'_>) {
        let now = self.now();
        loop {
            let mut moved = false;
            for v in 0..self.nodes.len() {
                while let Some(t) = self.nodes[v].poll_transmit() {
                    moved = true;
                    self.route(v, t.to, t.message, now, ex);
                }
                while let Some(e) = self.nodes[v].poll_event() {
                    moved = true;
                    self.on_event(v, e);
                }
            }
            if !moved {
                break;
            }
        }
    }

    fn route(
        &mut self,
        v: usize,
        to: Peer,
        msg: Message,
        now: Time,
        ex: &async_executor::Executor<'_>,
    ) {
        if to.addr == self.addr {
            if let Some(w) = self.vnode_of(to.id) {
                let from = self.nodes[v].me();
                self.nodes[w].handle(from, msg, now);
            }
            return;
        }
        // Lookup steps are the traffic a client can multiply; everything else keeps the
        // ring together and goes first.
        let urgent = is_maintenance_msg(&msg);
        let frame = Frame::Chord {
            from_vnode: v as u16,
            to: to.id,
            msg,
        };
        let Ok(bytes) = encode(&frame) else {
            return;
        };
        self.send_to(to.addr, bytes, urgent, ex);
    }

    /// Queue an encoded frame for the node at `addr`, opening a connection if needed;
    /// ring maintenance (`urgent`) is written before anything else queued. False if it
    /// was dropped.
    fn send_to(
        &mut self,
        addr: SocketAddr,
        bytes: Vec<u8>,
        urgent: bool,
        ex: &async_executor::Executor<'_>,
    ) -> bool {
        let tx = match self.pool.get(&addr) {
            Some(tx) if !tx.is_closed() => tx.clone(),
            _ => {
                let (tx, rx) = Outbox::new(&self.limits, &self.shared.memory);
                ex.spawn(serve_outbound(
                    addr,
                    self.addr,
                    self.limits.clone(),
                    self.key.clone(),
                    (tx.clone(), rx),
                    self.shared.clone(),
                    self.tx.clone(),
                ))
                .detach();
                self.pool.insert(addr, tx.clone());
                tx
            }
        };
        // A full queue means the peer is not keeping up: drop, and let the protocol's
        // timeout treat it as silence rather than grow without bound.
        let sent = tx.push(bytes, urgent);
        if !sent {
            debug!(to = %addr, "send queue full, message dropped");
        }
        sent
    }

    fn on_event(&mut self, v: usize, e: Event) {
        match &e {
            Event::Joined if v == 0 => {
                if let Some(r) = self.ready.take() {
                    let _ = r.try_send(Ok(()));
                }
                // The other ring positions join through the first, locally.
                let boot = self.nodes[0].me();
                let now = self.now();
                for w in 1..self.nodes.len() {
                    self.nodes[w].join(boot, now);
                }
            }
            Event::JoinFailed(err) if v == 0 => {
                if let Some(r) = self.ready.take() {
                    let _ = r.try_send(Err(Error::Join(*err)));
                }
                self.stop = true;
            }
            Event::LookupDone { id, result } => match self.lookups.remove(&(v, *id)) {
                Some(Pending::Handle(reply)) => {
                    let _ = reply.try_send(result.clone());
                }
                Some(Pending::Client { id: rid, reply }) => {
                    let answer = match result {
                        Ok(out) => ClientResponse::Lookup {
                            owner: out.owner,
                            hops: out.hops,
                        },
                        Err(e) => ClientResponse::Error(RemoteError::Lookup(*e)),
                    };
                    send_client(reply, rid, answer);
                }
                None => {}
            },
            Event::Left if self.nodes.iter().all(|n| n.has_left()) => {
                for r in self.leaving.drain(..) {
                    let _ = r.try_send(());
                }
                self.stop = true;
            }
            _ => {}
        }
        self.subscribers.retain(|s| !s.is_closed());
        for s in &self.subscribers {
            let _ = s.try_send(e.clone());
        }
    }
}

/// Where a service's answer goes.
enum Answer {
    /// Onto a connection, as a `ServiceResponse` frame.
    Wire(Reply),
    /// To a local caller of [`Node::call`].
    Local(CallReply),
}

impl Answer {
    fn send(self, id: u64, body: Result<Vec<u8>, ServiceError>) {
        match self {
            Answer::Wire(reply) => {
                if let Ok(bytes) = encode(&Frame::ServiceResponse { id, body }) {
                    reply.send(bytes);
                }
            }
            Answer::Local(tx) => {
                let _ = tx.try_send(body);
            }
        }
    }
}

fn send_client(reply: Reply, id: u64, body: ClientResponse) {
    if let Ok(bytes) = encode(&Frame::ClientResponse { id, body }) {
        reply.send(bytes);
    }
}
