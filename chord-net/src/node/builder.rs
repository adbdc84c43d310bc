//! [`NodeBuilder`]: a node's settings, and `start`, which binds, spawns the driver's
//! thread and the accept loop, and joins the ring.

use super::*;

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
    pub(super) listen: SocketAddr,
    pub(super) join: Option<SocketAddr>,
    pub(super) config: Config,
    pub(super) vnodes: u16,
    pub(super) limits: Limits,
    pub(super) services: HashMap<u16, Arc<dyn Service>>,
    pub(super) defer_client_leave: bool,
    pub(super) key: Option<NetworkKey>,
    pub(super) control: Option<ControlToken>,
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
            killing: Arc::default(),
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

pub(super) async fn accept_loop(
    ex: &async_executor::Executor<'_>,
    listener: TcpListener,
    shared: Listening,
) {
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
