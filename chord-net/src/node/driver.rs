//! The driver: the task that owns the chord-core state machines (one per virtual node)
//! and everything mutable, fed by the handle's commands and the connections' inputs over
//! one bounded channel.

use super::*;

/// How often refused control requests are logged at most.
pub(super) const REFUSALS_LOGGED_EVERY: Duration = Duration::from_secs(10);

/// Counts refusals between log lines.
#[derive(Default)]
pub(super) struct Refusals {
    pub(super) since_logged: u64,
    pub(super) logged: Option<Instant>,
}

impl Refusals {
    /// Count one; `Some(n)` when a line is due, for the `n` refusals it covers.
    pub(super) fn count(&mut self, now: Instant) -> Option<u64> {
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

pub(super) struct Driver {
    pub(super) addr: SocketAddr,
    pub(super) epoch: Instant,
    pub(super) nodes: Vec<chord_core::Node>,
    pub(super) join: Option<SocketAddr>,
    pub(super) limits: Limits,
    pub(super) key: Option<NetworkKey>,
    pub(super) tx: Sender<Input>,
    /// Ring maintenance and the handle's commands: served first.
    pub(super) rx: Receiver<Input>,
    /// Everything else (see [`Shared::work`]).
    pub(super) work_rx: Receiver<Input>,
    /// Maintenance inputs taken since the last work input.
    pub(super) urgent_in_a_row: u32,
    pub(super) ready: Option<Sender<Result<(), Error>>>,
    pub(super) pool: Pool,
    pub(super) lookups: HashMap<(usize, LookupId), Pending>,
    pub(super) subscribers: Vec<Sender<Event>>,
    pub(super) leaving: Vec<Sender<()>>,
    pub(super) stop: bool,
    pub(super) handle: Node,
    pub(super) services: HashMap<u16, Arc<dyn Service>>,
    /// Node-wide budgets: memory held in frames, service requests being served.
    pub(super) shared: Shared,
    /// Service calls awaiting an answer.
    pub(super) calls: Calls,
    /// With deferred client leaves: where to signal a request.
    pub(super) leave_requested: Option<Sender<()>>,
    /// The operator's token, if control requests are obeyed at all.
    pub(super) control: Option<ControlToken>,
    /// Refused control requests: logged at most once per [`REFUSALS_LOGGED_EVERY`], with
    /// how many there were (anyone can send them: a line each filled the log).
    pub(super) refusals: Refusals,
    /// Peers whose ids were checked against their addresses.
    pub(super) genuine: std::collections::HashSet<Peer>,
}

/// Who waits for a lookup.
pub(super) enum Pending {
    Handle(Sender<Result<LookupOutcome, LookupError>>),
    Client { id: u64, reply: Reply },
}

impl Driver {
    pub(super) fn new(
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
            pool: Pool::default(),
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
            calls: Calls::new(),
            leave_requested: None,
            control: b.control.clone(),
            refusals: Refusals::default(),
            genuine: std::collections::HashSet::new(),
        }
    }

    pub(super) fn now(&self) -> Time {
        Time(self.epoch.elapsed().as_micros() as u64)
    }

    pub(super) async fn run(mut self, ex: &async_executor::Executor<'_>) {
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
        // Close both queues and drop what is still in them: a handle's command queued
        // before the stop holds the sender its caller waits on, and a closed channel
        // keeps its messages for as long as any sender lives (the handle's own). Dropped
        // here, every such caller gets `Error::Stopped` at once instead of waiting for
        // ever (found with the kill test: `status` calls queued behind the kill hung).
        for q in [&self.rx, &self.work_rx] {
            q.close();
            while q.try_recv().is_ok() {}
        }
        info!(addr = %self.addr, "node stopped");
    }

    /// Is `p`'s id one its address can hold (`Id::for_vnode(addr, v)`, `v <
    /// Limits::max_vnodes`)? Answers are remembered (a bounded set, emptied when full), so
    /// honest traffic costs a hash per new peer.
    pub(super) fn genuine(&mut self, p: &Peer) -> bool {
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

    pub(super) fn vnode_of(&self, id: Id) -> Option<usize> {
        self.nodes.iter().position(|n| n.me().id == id)
    }

    pub(super) fn on_input(&mut self, input: Input, now: Time, ex: &async_executor::Executor<'_>) {
        match input {
            Input::Peer {
                from,
                vnodes,
                frame,
                reply,
            } => self.on_peer_frame(from, vnodes, frame, reply, now, ex),
            Input::Client {
                frame: Frame::ServiceRequest { id, service, body },
                reply,
                ..
            } => {
                // The connection's reader waited for room before handing it on.
                let call = ServiceCall {
                    from: None,
                    service,
                    body,
                };
                self.serve(call, id, Answer::Wire(reply), true, ex)
            }
            Input::Client {
                frame,
                reply,
                from_host,
            } => self.on_client(frame, reply, from_host, now),
            Input::Inbound { addr, tx } => self.pool.keep_inbound(addr, tx),
            Input::Refused { addr, why } => self.on_refused(addr, why),
            Input::InboundClosed { addr } => self.pool.closed(addr),
            Input::Closed { addr } => {
                self.pool.closed(addr);
                self.calls.unreachable(addr);
            }
            Input::Command(c) => self.on_command(c, now, ex),
        }
    }

    /// A frame from the peer listening at `from`, which announced `vnodes` positions.
    fn on_peer_frame(
        &mut self,
        from: SocketAddr,
        vnodes: u16,
        frame: Frame,
        reply: Reply,
        now: Time,
        ex: &async_executor::Executor<'_>,
    ) {
        match frame {
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
                let call = ServiceCall {
                    from: Some(from),
                    service,
                    body,
                };
                self.serve(call, id, Answer::Wire(reply), false, ex)
            }
            Frame::ServiceResponse { id, body } => self.calls.answered(id, from, body),
            other => debug!(%from, "unexpected frame from a peer: {other:?}"),
        }
    }

    /// A peer refused our connection.
    fn on_refused(&mut self, addr: SocketAddr, why: Refusal) {
        if self.ready.is_some() && self.join == Some(addr) {
            // The bootstrap node will never let us in: say why, now.
            if let Some(r) = self.ready.take() {
                answer(&r, Err(Error::Refused(addr, why)));
            }
            self.stop = true;
        } else if why == Refusal::Busy {
            debug!(%addr, "peer refused us: {why}");
        } else {
            warn!(%addr, "peer refused us: {why}");
        }
    }

    /// A service call from the handle: served here if it is for us, else sent.
    fn start_call(
        &mut self,
        to: SocketAddr,
        service: u16,
        body: Vec<u8>,
        reply: CallReply,
        ex: &async_executor::Executor<'_>,
    ) {
        let id = self.calls.next_id();
        if to == self.addr {
            let call = ServiceCall {
                from: Some(self.addr),
                service,
                body,
            };
            self.serve(call, 0, Answer::Local(reply), false, ex);
            return;
        }
        let sent = match encode(&Frame::ServiceRequest { id, service, body }) {
            Ok(bytes) => self.send_to(to, bytes, false, ex),
            // Cannot happen within the frame limit; as good as a full queue.
            Err(_) => false,
        };
        if sent {
            self.calls.insert(id, to, reply);
        } else {
            // The peer is not reading what we sent it already.
            answer(&reply, Err(ServiceError::Busy));
        }
    }

    /// Run a service request on its own task, within the in-flight bound. `admitted`: the
    /// caller already took a service slot (a client's connection did; its reply holds
    /// it); otherwise a full node answers `Busy`.
    pub(super) fn serve(
        &mut self,
        call: ServiceCall,
        id: u64,
        answer: Answer,
        admitted: bool,
        ex: &async_executor::Executor<'_>,
    ) {
        let ServiceCall {
            from,
            service,
            body,
        } = call;
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

    pub(super) fn on_command(&mut self, c: Command, now: Time, ex: &async_executor::Executor<'_>) {
        match c {
            Command::Lookup { key, reply } => {
                let lid = self.nodes[0].lookup(key, now);
                self.lookups.insert((0, lid), Pending::Handle(reply));
            }
            Command::Status { reply } => {
                answer(&reply, self.status());
            }
            Command::Subscribe { reply } => {
                let (tx, rx) = async_channel::bounded(1024);
                self.subscribers.push(tx);
                answer(&reply, rx);
            }
            Command::Leave { reply } => self.start_leave(reply, now),
            Command::Kill => self.stop = true,
            Command::Call {
                to,
                service,
                body,
                reply,
            } => self.start_call(to, service, body, reply, ex),
        }
    }

    pub(super) fn start_leave(&mut self, reply: Sender<()>, now: Time) {
        self.leaving.push(reply);
        for n in &mut self.nodes {
            n.leave(now);
        }
    }

    pub(super) fn on_client(&mut self, frame: Frame, reply: Reply, from_host: bool, now: Time) {
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
            ClientRequest::Status => ClientResponse::Status(self.status_of(0)),
            ClientRequest::StatusOf { position } => {
                match self.nodes.iter().position(|n| n.me().id == position) {
                    Some(v) => ClientResponse::Status(self.status_of(v)),
                    None => ClientResponse::Error(RemoteError::NotHere),
                }
            }
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
                        // Full: a request is pending already, and one is enough.
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

    pub(super) fn status(&self) -> Status {
        self.status_of(0)
    }

    /// The routing state of ring position `v` (an index into `nodes`).
    fn status_of(&self, v: usize) -> Status {
        let n = &self.nodes[v];
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
    pub(super) fn flush(&mut self, ex: &async_executor::Executor<'_>) {
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

    pub(super) fn route(
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
        // Our own message, far below 4 GiB: encoding it cannot fail.
        let Ok(bytes) = encode(&frame) else {
            return;
        };
        self.send_to(to.addr, bytes, urgent, ex);
    }

    /// Queue an encoded frame for the node at `addr`, opening a connection if needed;
    /// ring maintenance (`urgent`) is written before anything else queued. False if it
    /// was dropped.
    pub(super) fn send_to(
        &mut self,
        addr: SocketAddr,
        bytes: Vec<u8>,
        urgent: bool,
        ex: &async_executor::Executor<'_>,
    ) -> bool {
        let tx = match self.pool.live(addr) {
            Some(tx) => tx,
            None => {
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

    pub(super) fn on_event(&mut self, v: usize, e: Event) {
        match &e {
            Event::Joined if v == 0 => {
                if let Some(r) = self.ready.take() {
                    answer(&r, Ok(()));
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
                    answer(&r, Err(Error::Join(*err)));
                }
                self.stop = true;
            }
            Event::LookupDone { id, result } => match self.lookups.remove(&(v, *id)) {
                Some(Pending::Handle(reply)) => {
                    answer(&reply, result.clone());
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
                    answer(&r, ());
                }
                self.stop = true;
            }
            _ => {}
        }
        self.subscribers.retain(|s| !s.is_closed());
        for s in &self.subscribers {
            // Full: the subscriber is more than 1024 events behind and misses this one,
            // as `Node::events` says; the driver never waits for a subscriber.
            let _ = s.try_send(e.clone());
        }
    }
}

/// A service request to run: who asked (a peer's listening address, this node's own for
/// its own calls, `None` for a client), which service, and the request's bytes.
pub(super) struct ServiceCall {
    pub(super) from: Option<SocketAddr>,
    pub(super) service: u16,
    pub(super) body: Vec<u8>,
}

/// Where a service's answer goes.
pub(super) enum Answer {
    /// Onto a connection, as a `ServiceResponse` frame.
    Wire(Reply),
    /// To a local caller of [`Node::call`].
    Local(CallReply),
}

impl Answer {
    pub(super) fn send(self, id: u64, body: Result<Vec<u8>, ServiceError>) {
        match self {
            Answer::Wire(reply) => {
                // A service's answer is bounded by the frame limit long before 4 GiB, so
                // encoding cannot fail; a failed send means the connection is gone.
                if let Ok(bytes) = encode(&Frame::ServiceResponse { id, body }) {
                    reply.send(bytes);
                }
            }
            Answer::Local(tx) => {
                answer(&tx, body);
            }
        }
    }
}

/// Answer a client (as [`Answer::send`]: encoding cannot fail, and a connection that is
/// gone has nobody to tell).
pub(super) fn send_client(reply: Reply, id: u64, body: ClientResponse) {
    if let Ok(bytes) = encode(&Frame::ClientResponse { id, body }) {
        reply.send(bytes);
    }
}

/// Answer a request on its reply channel. A reply channel is made for one answer
/// (`bounded(1)`) and sent to once, so it is never full: a failed send means the asker
/// stopped waiting (it timed out, or its future was dropped), and the answer has nobody
/// to go to. Dropping it is right.
pub(super) fn answer<T>(reply: &Sender<T>, value: T) {
    let _ = reply.try_send(value);
}
