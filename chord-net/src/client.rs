//! The client side: ask a running node for a lookup, its status, or to leave.

use std::net::SocketAddr;

use async_net::TcpStream;
use chord_core::{Id, Peer};

use crate::frame::{read_frame, write_frame, FrameError};
use crate::wire::{ClientRequest, ClientResponse, Frame, Hello, HelloReply, Status};
use crate::{Error, Limits};

/// A connection to one node, as a client.
///
/// ```no_run
/// # async fn demo() -> Result<(), chord_net::Error> {
/// let mut c = chord_net::Client::connect("127.0.0.1:2000".parse().unwrap()).await?;
/// let (owner, hops) = c.lookup(chord_core::Id::for_key("song.mp3")).await?;
/// println!("{} ({hops} hops)", owner.addr);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Client {
    addr: SocketAddr,
    stream: TcpStream,
    limits: Limits,
    next_id: u64,
}

impl Client {
    /// Connect and shake hands.
    pub async fn connect(addr: SocketAddr) -> Result<Client, Error> {
        Client::connect_with(addr, Limits::default()).await
    }

    /// Connect with the given limits (timeouts, frame cap).
    pub async fn connect_with(addr: SocketAddr, limits: Limits) -> Result<Client, Error> {
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
        let mut c = Client {
            addr,
            stream,
            limits,
            next_id: 1,
        };
        let frame_err = |e| Error::Frame(addr, e);
        write_frame(&mut c.stream, &Hello::client(), c.limits.frame_timeout)
            .await
            .map_err(frame_err)?;
        let reply: HelloReply = read_frame(
            &mut c.stream,
            1024,
            c.limits.handshake_timeout,
            c.limits.handshake_timeout,
        )
        .await
        .map_err(frame_err)?;
        match reply {
            HelloReply::Welcome { .. } => Ok(c),
            HelloReply::Refused(why) => Err(Error::Refused(addr, why)),
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
        write_frame(&mut self.stream, &make(id), self.limits.frame_timeout)
            .await
            .map_err(|e| Error::Frame(addr, e))?;
        loop {
            let f: Frame = read_frame(
                &mut self.stream,
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
        let wait = self.limits.call_timeout;
        match self
            .exchange(|id| Frame::ServiceRequest { id, service, body }, wait)
            .await?
        {
            Frame::ServiceResponse { body, .. } => body.map_err(|e| Error::Service(self.addr, e)),
            _ => Err(Error::Unexpected(self.addr)),
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
