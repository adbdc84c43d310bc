//! The client side: ask a running node for a lookup, its status, or to leave.

use std::net::SocketAddr;

use async_net::TcpStream;
use chord_core::{Id, Peer};

use crate::conn::{open, Opened, Reader, Writer};
use crate::frame::{decode, read_body_into, read_frame, write_frame, FrameError};
use crate::wire::{ClientRequest, ClientResponse, Frame, Hello, Status};
use crate::{Error, Limits, NetworkKey};

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
    pub async fn connect_with_key(
        addr: SocketAddr,
        limits: Limits,
        key: Option<&NetworkKey>,
    ) -> Result<Client, Error> {
        let stream = futures_lite::future::or(
            async {
                TcpStream::connect(addr)
                    .await
                    .map_err(|e| Error::Connect(addr, e))
            },
            async {
                async_io::Timer::after(limits.connect_timeout).await;
                Err(Error::Frame(addr, FrameError::Timeout))
            },
        )
        .await?;
        let _ = stream.set_nodelay(true);
        match open(stream, Hello::client(), key, &limits)
            .await
            .map_err(|e| Error::Frame(addr, e))?
        {
            Opened::Welcome { r, w } => Ok(Client {
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
            .map_err(|e| Error::Frame(addr, e))?;
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

    /// Find the node responsible for `key`: the owner and the hops it took.
    pub async fn lookup(&mut self, key: Id) -> Result<(Peer, u32), Error> {
        // A lookup may take as long as the node's lookup timeout.
        match self
            .request(
                ClientRequest::Lookup { key },
                std::time::Duration::from_secs(30),
            )
            .await?
        {
            ClientResponse::Lookup { owner, hops } => Ok((owner, hops)),
            _ => Err(Error::Unexpected(self.addr)),
        }
    }

    /// The node's routing state.
    pub async fn status(&mut self) -> Result<Status, Error> {
        match self
            .request(ClientRequest::Status, self.limits.frame_timeout)
            .await?
        {
            ClientResponse::Status(s) => Ok(s),
            _ => Err(Error::Unexpected(self.addr)),
        }
    }

    /// Send a request to service `service` on the node and wait for its answer.
    pub async fn call(&mut self, service: u16, body: Vec<u8>) -> Result<Vec<u8>, Error> {
        self.call_into(service, body, Vec::new()).await
    }

    /// [`Client::call`], reading the answer into `buf` (its allocation is reused: pass back
    /// the buffers of earlier answers to keep a transfer from allocating fresh memory).
    pub async fn call_into(
        &mut self,
        service: u16,
        body: Vec<u8>,
        mut buf: Vec<u8>,
    ) -> Result<Vec<u8>, Error> {
        let id = self.next_id;
        self.next_id += 1;
        let addr = self.addr;
        let request = Frame::ServiceRequest { id, service, body };
        write_frame(&mut self.w, &request, self.limits.frame_timeout)
            .await
            .map_err(|e| Error::Frame(addr, e))?;
        loop {
            buf = read_body_into(
                &mut self.r,
                buf,
                self.limits.max_frame,
                self.limits.call_timeout,
                self.limits.frame_timeout,
            )
            .await
            .map_err(|e| Error::Frame(addr, e))?;
            // The usual answer: keep its payload in the buffer just read (no copy).
            if let Some((rid, at)) = crate::wire::service_answer_at(&buf) {
                if rid == id {
                    buf.drain(..at);
                    return Ok(buf);
                }
                continue; // a late answer to an earlier request
            }
            match decode::<Frame>(&buf).map_err(|e| Error::Frame(addr, e))? {
                Frame::ServiceResponse { id: rid, body } if rid == id => {
                    return body.map_err(|e| Error::Service(addr, e));
                }
                Frame::ServiceResponse { .. } | Frame::ClientResponse { .. } => {}
                _ => return Err(Error::Unexpected(addr)),
            }
        }
    }

    /// Ask the node to leave the ring gracefully and stop.
    pub async fn leave(&mut self) -> Result<(), Error> {
        match self
            .request(ClientRequest::Leave, self.limits.frame_timeout)
            .await?
        {
            ClientResponse::Leaving => Ok(()),
            _ => Err(Error::Unexpected(self.addr)),
        }
    }
}
