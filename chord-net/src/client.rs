//! The client side: ask a running node for a lookup, its status, or to leave.

use std::net::SocketAddr;

use async_net::TcpStream;
use chord_core::{Id, Peer};

use crate::conn::{open, Opened, Reader, Writer};
use crate::frame::{decode, read_body_into, read_frame, timeout, write_frame};
use crate::wire::{ClientRequest, ClientResponse, ControlCommand, Frame, Hello};
use crate::Status;
use crate::{ControlToken, Error, Limits, NetworkKey};

/// A connection to one node, as a client.
///
/// ```no_run
/// # async fn demo() -> Result<(), chord_net::Error> {
/// let mut c = chord_net::Client::connect("127.0.0.1:2000".parse().unwrap()).await?;
/// let (owner, hops) = c.lookup(chord_core::Id::for_key("song.mp3")).await?;
/// println!("{} ({hops} hops)", owner.addr);
/// # Ok(()) }
/// ```
pub struct Client {
    addr: SocketAddr,
    r: Reader,
    w: Writer,
    limits: Limits,
    next_id: u64,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("addr", &self.addr)
            .field("next_id", &self.next_id)
            .finish_non_exhaustive()
    }
}

/// Most finger rows a status is taken with: one per bit of an id.
const MAX_FINGERS: usize = chord_core::ID_BITS;

impl Client {
    /// Connect and shake hands.
    pub async fn connect(addr: SocketAddr) -> Result<Client, Error> {
        Client::connect_with(addr, Limits::default()).await
    }

    /// Connect with the given limits (timeouts, frame cap).
    pub async fn connect_with(addr: SocketAddr, limits: Limits) -> Result<Client, Error> {
        Client::connect_with_key(addr, limits, None).await
    }

    /// Connect to a ring that uses a network key (or to one that does not, with `None`).
    /// A node that refuses because it has too many connections is tried again, with
    /// jittered exponential backoff, for up to [`Limits::busy_deadline`].
    pub async fn connect_with_key(
        addr: SocketAddr,
        limits: Limits,
        key: Option<&NetworkKey>,
    ) -> Result<Client, Error> {
        let mut backoff = Backoff::new(limits.busy_deadline);
        loop {
            match Client::connect_once(addr, limits.clone(), key).await {
                Err(Error::Refused(_, crate::wire::Refusal::Busy)) if backoff.wait().await => {}
                other => return other,
            }
        }
    }

    async fn connect_once(
        addr: SocketAddr,
        limits: Limits,
        key: Option<&NetworkKey>,
    ) -> Result<Client, Error> {
        let stream = timeout(limits.connect_timeout, TcpStream::connect(addr))
            .await
            .ok_or(Error::Timeout(addr))?
            .map_err(|e| Error::Connect(addr, e))?;
        let _ = stream.set_nodelay(true);
        match open(stream, Hello::client(), key, &limits)
            .await
            .map_err(|e| frame_error(addr, e))?
        {
            Opened::Welcome { r, w, .. } => Ok(Client {
                addr,
                r,
                w,
                limits,
                next_id: 1,
            }),
            Opened::Refused(why) => Err(Error::Refused(addr, why)),
        }
    }

    /// The node's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Send `make(id)` and read frames until the answer with that id arrives (late
    /// answers to earlier requests are skipped). `wait` bounds the wait for the answer.
    async fn exchange(
        &mut self,
        make: impl FnOnce(u64) -> Frame,
        wait: std::time::Duration,
    ) -> Result<Frame, Error> {
        let id = self.next_id;
        self.next_id += 1;
        let addr = self.addr;
        write_frame(&mut self.w, &make(id), self.limits.frame_timeout)
            .await
            .map_err(|e| Error::Frame(addr, e))?;
        loop {
            let f: Frame = read_frame(
                &mut self.r,
                self.limits.max_frame,
                wait,
                self.limits.frame_timeout,
            )
            .await
            .map_err(|e| frame_error(addr, e))?;
            match &f {
                Frame::ClientResponse { id: rid, .. } | Frame::ServiceResponse { id: rid, .. } => {
                    if *rid == id {
                        return Ok(f);
                    }
                }
                _ => return Err(Error::Unexpected(addr)),
            }
        }
    }

    async fn request(
        &mut self,
        body: ClientRequest,
        wait: std::time::Duration,
    ) -> Result<ClientResponse, Error> {
        match self
            .exchange(|id| Frame::ClientRequest { id, body }, wait)
            .await?
        {
            Frame::ClientResponse {
                body: ClientResponse::Error(e),
                ..
            } => Err(Error::Remote(self.addr, e)),
            Frame::ClientResponse { body, .. } => Ok(body),
            _ => Err(Error::Unexpected(self.addr)),
        }
    }

    /// Find the node responsible for `key`: the owner and the hops it took. Waits up to
    /// 30 s for the answer: a lookup may take up to three of the node's lookup timeouts
    /// (`Config::lookup_timeout`, 10 s by default) while its steps keep being answered;
    /// past that, [`Error::Timeout`].
    pub async fn lookup(&mut self, key: Id) -> Result<(Peer, u32), Error> {
        match self
            .request(
                ClientRequest::Lookup { key },
                std::time::Duration::from_secs(30),
            )
            .await?
        {
            // An owner under an id its address cannot hold is not an answer.
            ClientResponse::Lookup { owner, hops } if owner.is_genuine(self.limits.max_vnodes) => {
                Ok((owner, hops))
            }
            _ => Err(Error::Unexpected(self.addr)),
        }
    }

    /// The node's routing state.
    pub async fn status(&mut self) -> Result<Status, Error> {
        match self
            .request(ClientRequest::Status, self.limits.frame_timeout)
            .await?
        {
            ClientResponse::Status(s) => self.checked(s),
            _ => Err(Error::Unexpected(self.addr)),
        }
    }

    /// A status as the node gave it, made safe to keep: the node must be under an id its
    /// own address can hold (not necessarily the address dialled: a port forward or a
    /// tunnel may stand between); peers under ids their addresses cannot hold are dropped,
    /// and the lists cut to what an honest node sends (a peer that answers with thousands
    /// of made-up entries cannot make a ring walk hold them).
    fn checked(&self, s: crate::wire::Status) -> Result<Status, Error> {
        let max = self.limits.max_vnodes;
        if !s.me.is_genuine(max) {
            return Err(Error::Unexpected(self.addr));
        }
        let mut s = s;
        s.predecessor = s.predecessor.filter(|p| p.is_genuine(max));
        s.successors.truncate(chord_core::MAX_PEERS_PER_MESSAGE);
        s.successors.retain(|p| p.is_genuine(max));
        s.fingers.truncate(MAX_FINGERS);
        s.fingers.retain(|f| f.peer.is_genuine(max));
        Ok(s.into())
    }

    /// The routing state of the node's ring position `position` (one of its virtual
    /// nodes; [`Client::status`] gives the first). `Error::Remote(.., NotHere)` if the node
    /// holds no such position.
    pub async fn status_of(&mut self, position: Id) -> Result<Status, Error> {
        match self
            .request(
                ClientRequest::StatusOf { position },
                self.limits.frame_timeout,
            )
            .await?
        {
            ClientResponse::Status(s) => self.checked(s),
            _ => Err(Error::Unexpected(self.addr)),
        }
    }

    /// Send a request to service `service` on the node and wait for its answer.
    pub async fn call(&mut self, service: u16, body: Vec<u8>) -> Result<Vec<u8>, Error> {
        self.call_into(service, body, Vec::new()).await
    }

    /// [`Client::call`], reading the answer into `buf` (its allocation is reused: pass back
    /// the buffers of earlier answers to keep a transfer from allocating fresh memory).
    /// A `Busy` answer is retried with jittered exponential backoff for up to
    /// [`Limits::busy_deadline`].
    pub async fn call_into(
        &mut self,
        service: u16,
        body: Vec<u8>,
        buf: Vec<u8>,
    ) -> Result<Vec<u8>, Error> {
        let mut backoff = Backoff::new(self.limits.busy_deadline);
        let mut request = Frame::ServiceRequest {
            id: 0,
            service,
            body,
        };
        let mut buf = buf;
        loop {
            match self.call_once(&mut request, std::mem::take(&mut buf)).await {
                Err((Error::Service(_, crate::wire::ServiceError::Busy), b))
                    if backoff.wait().await =>
                {
                    buf = b;
                }
                Err((e, _)) => return Err(e),
                Ok(answer) => return Ok(answer),
            }
        }
    }

    /// One try of a service call: `request`'s id is set here. On failure the buffer comes
    /// back for the next try.
    async fn call_once(
        &mut self,
        request: &mut Frame,
        buf: Vec<u8>,
    ) -> Result<Vec<u8>, (Error, Vec<u8>)> {
        let id = self.next_id;
        self.next_id += 1;
        let addr = self.addr;
        if let Frame::ServiceRequest { id: rid, .. } = request {
            *rid = id;
        }
        let written = match &*request {
            // A large body (a file's chunk) goes out from where it is: the frame is not
            // built as one more copy of it.
            Frame::ServiceRequest { service, body, .. } if body.len() >= DIRECT_WRITE => {
                match crate::wire::service_request_head(id, *service, body.len()) {
                    Ok(head) => {
                        crate::frame::write_parts(
                            &mut self.w,
                            &[&head, body],
                            self.limits.frame_timeout,
                        )
                        .await
                    }
                    Err(e) => Err(e),
                }
            }
            r => write_frame(&mut self.w, r, self.limits.frame_timeout).await,
        };
        if let Err(e) = written {
            return Err((Error::Frame(addr, e), buf));
        }
        let mut buf = buf;
        // One deadline for the whole call: a peer that keeps sending stale answers (to
        // earlier ids) must not keep it waiting past its timeout (found in review: a
        // frame every 300 ms held a 1 s call for good).
        let deadline = std::time::Instant::now() + self.limits.call_timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err((Error::Timeout(addr), buf));
            }
            buf = read_body_into(
                &mut self.r,
                buf,
                self.limits.max_frame,
                left,
                self.limits.frame_timeout,
            )
            .await
            .map_err(|e| (frame_error(addr, e), Vec::new()))?;
            // The usual answer: keep its payload in the buffer just read (no copy).
            if let Some((rid, at)) = crate::wire::service_answer_at(&buf) {
                if rid == id {
                    buf.drain(..at);
                    return Ok(buf);
                }
                continue; // a late answer to an earlier request
            }
            match decode::<Frame>(&buf) {
                Ok(Frame::ServiceResponse { id: rid, body }) if rid == id => {
                    return body.map_err(|e| (Error::Service(addr, e), buf));
                }
                Ok(Frame::ServiceResponse { .. } | Frame::ClientResponse { .. }) => {}
                Ok(_) => return Err((Error::Unexpected(addr), buf)),
                Err(e) => return Err((Error::Frame(addr, e), buf)),
            }
        }
    }

    /// Ask the node to leave the ring gracefully and stop, as its operator: `token` is the
    /// node's control token, and this must run on the node's host (see
    /// [`crate::ControlToken`]); anything else is refused with
    /// [`crate::wire::RemoteError::NotAllowed`].
    pub async fn leave(&mut self, token: &ControlToken) -> Result<(), Error> {
        let req = ClientRequest::Control {
            token: token.clone(),
            command: ControlCommand::Leave,
        };
        match self.request(req, self.limits.frame_timeout).await? {
            ClientResponse::Leaving => Ok(()),
            _ => Err(Error::Unexpected(self.addr)),
        }
    }
}

/// Jittered exponential backoff within a deadline: 50 ms doubling up to 2 s, each wait
/// drawn uniformly from [d/2, d] so that clients refused together do not return together.
struct Backoff {
    until: std::time::Instant,
    next: std::time::Duration,
    tries: u32,
}

impl Backoff {
    fn new(deadline: std::time::Duration) -> Backoff {
        Backoff {
            until: std::time::Instant::now() + deadline,
            next: std::time::Duration::from_millis(50),
            tries: 0,
        }
    }

    /// Wait before the next try; false (at once) if the deadline would pass.
    async fn wait(&mut self) -> bool {
        let d = self.next.mul_f64(0.5 + fastrand::f64() / 2.0);
        if std::time::Instant::now() + d > self.until {
            return false;
        }
        self.tries += 1;
        self.next = (self.next * 2).min(std::time::Duration::from_secs(2));
        async_io::Timer::after(d).await;
        true
    }
}

/// A frame error talking to `addr`; no frame in time (a handshake or an answer) is
/// [`Error::Timeout`], as a connect that does not complete is.
fn frame_error(addr: SocketAddr, e: crate::frame::FrameError) -> Error {
    match e {
        crate::frame::FrameError::Timeout => Error::Timeout(addr),
        e => Error::Frame(addr, e),
    }
}

/// Service request bodies from this size on are written from where they are (two writes)
/// instead of copied into one frame (one write): worth it for a file's chunks, not for
/// the small requests of records, where one write is cheaper than the copy saved.
const DIRECT_WRITE: usize = 64 * 1024;
