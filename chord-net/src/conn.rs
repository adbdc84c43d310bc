//! Connections: the handshake, and the reader and writer halves of an established one.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chord_core::Message;

use async_channel::Sender;
use async_net::TcpStream;
use futures_lite::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tracing::debug;

use crate::admission::{Admission, Class, Tracked};
use crate::budget::{Budget, Lease};
use crate::frame::{
    decode, encode, read_body, read_body_leased, timeout, with_deadline, write_bytes, write_frame,
    FrameError,
};
use crate::input::Input;
use crate::noise::{self, NetworkKey, NoiseError, NoiseReader, NoiseWriter};
use crate::outbox::{Outbox, OutboxRx, Reply};
use crate::rate::{Bucket, PerAddress};
use crate::wire::{ClientRequest, Frame, Hello, HelloReply, Refusal, Role, MAGIC, VERSION};
use crate::Limits;

/// The reading half of an established connection (plain or encrypted).
pub(crate) type Reader = Box<dyn AsyncRead + Send + Unpin>;

/// A plain connection's reads go through a small buffer: a frame's header and a small
/// body then come in one system call, not three (the 1-byte wait for a frame, the rest
/// of the header, the body). Bodies larger than the buffer bypass it. (An encrypted
/// connection reads whole Noise messages already.)
fn buffered(r: TcpStream) -> futures_lite::io::BufReader<TcpStream> {
    futures_lite::io::BufReader::with_capacity(READ_BUFFER, r)
}

/// The read buffer of a plain connection (per connection, whatever it sends).
const READ_BUFFER: usize = 4096;
/// The writing half of an established connection (plain or encrypted).
pub(crate) type Writer = Box<dyn AsyncWrite + Send + Unpin>;

/// How the opening side's handshake ended.
pub(crate) enum Opened {
    /// Accepted: the connection's halves, and the node's number of ring positions.
    Welcome { r: Reader, w: Writer, vnodes: u16 },
    /// Refused, with the node's reason.
    Refused(Refusal),
}

/// The opening side of the handshake (a peer or a client): send `hello` (and, with a
/// network key, the first Noise message), read the answer (and the second Noise message).
pub(crate) async fn open(
    stream: TcpStream,
    mut hello: Hello,
    key: Option<&NetworkKey>,
    limits: &Limits,
) -> Result<Opened, FrameError> {
    hello.encrypted = key.is_some();
    let frame = encode(&hello)?;
    let mut noise = match key {
        Some(k) => Some(k.initiator(&frame[4..]).map_err(NoiseError::Handshake)?),
        None => None,
    };
    let mut r = stream.clone();
    let mut w = stream;
    let t = limits.handshake_timeout;
    with_deadline(t, async {
        write_bytes(&mut w, &frame, t).await?;
        if let Some(hs) = noise.as_mut() {
            noise::write_message(&mut w, hs, &[]).await?;
        }
        let body = read_body(&mut r, 1024, t, t).await?;
        let vnodes = match decode::<HelloReply>(&body)? {
            HelloReply::Refused(why) => return Ok(Opened::Refused(why)),
            HelloReply::Welcome { vnodes, .. } => vnodes,
        };
        let (r, w): (Reader, Writer) = match noise {
            None => (Box::new(buffered(r)), Box::new(w)),
            Some(mut hs) => {
                // The welcome again, authenticated this time.
                if noise::read_message(&mut r, &mut hs).await? != body {
                    return Err(NoiseError::WelcomeMismatch.into());
                }
                let (tr, tw) = noise::split(hs)?;
                (
                    Box::new(NoiseReader::new(r, tr)),
                    Box::new(NoiseWriter::new(w, tw)),
                )
            }
        };
        Ok(Opened::Welcome { r, w, vnodes })
    })
    .await
}

/// What every accepted connection of a node shares.
#[derive(Clone)]
pub(crate) struct Listening {
    /// The node's listening address.
    pub(crate) me: SocketAddr,
    pub(crate) limits: Limits,
    pub(crate) key: Option<NetworkKey>,
    pub(crate) admission: Admission,
    pub(crate) shared: Shared,
    pub(crate) driver: Sender<Input>,
}

/// Why a hello is refused, if it is: the checks that need nothing but the hello, where
/// it came from (`remote`), the limits, and whether the ring is keyed.
pub(crate) fn check_hello(
    hello: &Hello,
    remote: Option<SocketAddr>,
    limits: &Limits,
    keyed: bool,
) -> Result<(), Refusal> {
    // Ids are SHA-1 of the listening address: a peer may only announce an address on the
    // IP it connects from, or it could take another node's ids.
    let mismatch = match (hello.role, hello.listen, remote) {
        (Role::Peer, Some(listen), Some(seen)) if listen.ip() != seen.ip() => Some(seen.ip()),
        _ => None,
    };
    check_magic_and_version(hello.magic, hello.version)?;
    if hello.role == Role::Peer && hello.listen.is_none() {
        Err(Refusal::NoListenAddress)
    } else if let Some(seen) = mismatch {
        Err(Refusal::AddressMismatch { seen })
    } else if hello.role == Role::Peer && !(1..=limits.max_vnodes).contains(&hello.vnodes) {
        Err(Refusal::Vnodes {
            announced: hello.vnodes,
            max: limits.max_vnodes,
        })
    } else if keyed && !hello.encrypted {
        Err(Refusal::NetworkKeyRequired)
    } else if !keyed && hello.encrypted {
        Err(Refusal::NoNetworkKey)
    } else {
        Ok(())
    }
}

/// The first check of a hello, which every version's hello can be read far enough for
/// (see `Hello::magic_and_version`): ours, and our protocol version?
fn check_magic_and_version(magic: [u8; 4], version: u16) -> Result<(), Refusal> {
    if magic != MAGIC {
        Err(Refusal::BadMagic)
    } else if version != VERSION {
        Err(Refusal::Version {
            ours: VERSION,
            theirs: version,
        })
    } else {
        Ok(())
    }
}

/// The responder's side of the handshake, the mirror of [`open`]: read the hello, check
/// it ([`check_hello`]), complete the Noise handshake on a keyed ring, and answer with a
/// welcome, or a refusal and close. `None` when the connection was refused or failed (the
/// reason is logged at debug level).
async fn accept(
    stream: TcpStream,
    remote: Option<SocketAddr>,
    l: &Listening,
) -> Option<(Hello, Reader, Writer)> {
    let (limits, key) = (&l.limits, l.key.as_ref());
    let mut r = stream.clone();
    let mut w = stream;
    let t = limits.handshake_timeout;
    let body = match read_body(&mut r, 1024, t, t).await {
        Ok(body) => body,
        Err(e) => {
            debug!(?remote, "handshake failed: {e}");
            return None;
        }
    };
    // Magic and version first: another version's hello may have another shape, and
    // deserves a clear refusal all the same.
    let early = Hello::magic_and_version(&body).map(|(m, v)| check_magic_and_version(m, v));
    if let Some(Err(refusal)) = early {
        debug!(?remote, "refusing connection: {refusal}");
        refuse(r, w, refusal, limits.frame_timeout).await;
        return None;
    }
    let hello = match decode::<Hello>(&body) {
        Ok(h) => h,
        Err(e) => {
            debug!(?remote, "handshake failed: {e}");
            return None;
        }
    };
    let mut refusal = check_hello(&hello, remote, limits, key.is_some()).err();
    let mut noise = None;
    if let (None, Some(k)) = (&refusal, key) {
        let Ok(mut hs) = k.responder(&body) else {
            return None;
        };
        match with_deadline(t, noise::read_message(&mut r, &mut hs)).await {
            Ok(_) => noise = Some(hs),
            Err(FrameError::Noise(_)) => refusal = Some(Refusal::WrongNetworkKey),
            Err(e) => {
                debug!(?remote, "handshake failed: {e}");
                return None;
            }
        }
    }
    if let Some(refusal) = refusal {
        debug!(?remote, "refusing connection: {refusal}");
        refuse(r, w, refusal, limits.frame_timeout).await;
        return None;
    }
    let welcome = encode(&HelloReply::Welcome {
        addr: l.me,
        vnodes: l.shared.vnodes,
    })
    .ok()?;
    write_bytes(&mut w, &welcome, limits.frame_timeout)
        .await
        .ok()?;
    let (r, w): (Reader, Writer) = match noise {
        None => (Box::new(buffered(r)), Box::new(w)),
        Some(mut hs) => {
            // The welcome again, authenticated this time.
            let sent = with_deadline(t, noise::write_message(&mut w, &mut hs, &welcome[4..])).await;
            let (tr, tw) = sent.and_then(|()| Ok(noise::split(hs)?)).ok()?;
            (
                Box::new(NoiseReader::new(r, tr)),
                Box::new(NoiseWriter::new(w, tw)),
            )
        }
    };
    Some((hello, r, w))
}

/// Serve one accepted connection until it closes.
pub(crate) async fn serve_inbound(stream: TcpStream, l: Listening) {
    let remote = stream.peer_addr().ok();
    let Some(mut ticket) = l.admission.try_acquire(remote.map(|a| a.ip()), &l.limits) else {
        // Over a limit: say so at once and close, without waiting for a hello, so that a
        // flood of silent connections costs nothing past the limit.
        debug!(?remote, "refusing connection: too many");
        refuse(
            stream.clone(),
            stream,
            Refusal::Busy,
            Duration::from_millis(100),
        )
        .await;
        return;
    };
    let Some((hello, r, w)) = accept(stream, remote, &l).await else {
        return;
    };
    let Listening {
        me,
        limits,
        key,
        shared,
        driver,
        ..
    } = l;
    let class = match hello.role {
        Role::Peer => Class::Peer,
        Role::Client => Class::Client,
    };
    let admitted = ticket.admit(class, &limits);
    let mut r: Reader = Box::new(Tracked {
        inner: r,
        activity: admitted.activity.clone(),
    });
    // On a keyed ring the handshake proves nothing until the other side sends a frame
    // under the session keys (a replayed first message completes it too): the first
    // frame must come within the handshake deadline.
    let first_idle = if key.is_some() {
        limits.handshake_timeout
    } else {
        limits.idle_timeout
    };
    let (tx, rx) = Outbox::new(&limits, &shared.memory);
    let writer = write_loop(w, rx, limits.frame_timeout);
    let who = match (hello.role, hello.listen) {
        (Role::Peer, Some(addr)) => Who::Peer {
            addr,
            vnodes: hello.vnodes,
        },
        _ => Who::Client {
            ip: remote.map(|a| a.ip()),
            from_host: crate::control::from_host(remote, me),
        },
    };
    let reader = async {
        if let Who::Peer { addr, .. } = who {
            // An error means the driver has stopped; the read loop then ends too.
            let _ = driver
                .send(Input::Inbound {
                    addr,
                    tx: tx.clone(),
                })
                .await;
        }
        read_loop(&mut r, &limits, first_idle, &tx, &shared, who, &driver).await;
        // Reader done: let the writer finish what is queued, then stop.
        tx.close();
    };
    // Reclaimed for a newcomer: everything is dropped, which closes the socket.
    futures_lite::future::or(
        async {
            futures_lite::future::zip(reader, writer).await;
        },
        async {
            let _ = admitted.closed.recv().await;
        },
    )
    .await;
    tx.close();
    if let Who::Peer { addr, .. } = who {
        // The driver may have kept this connection for answers to that peer. (An error
        // means the driver has stopped: nobody to tell.)
        let _ = driver.send(Input::InboundClosed { addr }).await;
    }
    drop(ticket);
}

/// Send a refusal and close gracefully: the other side's hello (or first Noise message)
/// may still be unread, and closing with unread bytes would reset the connection and could
/// destroy the refusal before it is read. So: send, shut our side, and read what is left
/// for a moment (bounded in bytes and time) before dropping the socket.
async fn refuse(mut r: TcpStream, mut w: TcpStream, why: Refusal, deadline: Duration) {
    use futures_lite::AsyncReadExt;
    if write_frame(&mut w, &HelloReply::Refused(why), deadline)
        .await
        .is_err()
    {
        return;
    }
    let _ = w.shutdown(std::net::Shutdown::Write);
    let mut sink = [0u8; 1024];
    let mut left: usize = 16 * 1024;
    let _ = with_deadline(Duration::from_millis(200), async {
        while left > 0 {
            let n = r.read(&mut sink).await?;
            if n == 0 {
                break;
            }
            left = left.saturating_sub(n);
        }
        Ok(())
    })
    .await;
}

/// Connect to `addr` from the IP address `local` (the one we listen on), so that the peer
/// sees the IP our ids are derived from, within `timeout`.
pub(crate) async fn connect_from(
    local: IpAddr,
    addr: SocketAddr,
    timeout: Duration,
) -> std::io::Result<TcpStream> {
    use socket2::{Domain, Protocol, Socket, Type};
    let stream = blocking::unblock(move || -> std::io::Result<std::net::TcpStream> {
        let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        s.bind(&SocketAddr::new(local, 0).into())?;
        s.connect_timeout(&addr.into(), timeout)?;
        Ok(s.into())
    })
    .await?;
    let stream = TcpStream::from(async_io::Async::new(stream)?);
    Ok(stream)
}

/// Open a peer connection to `addr` and serve it; frames to send arrive on `rx`.
pub(crate) async fn serve_outbound(
    addr: SocketAddr,
    me: SocketAddr,
    limits: Limits,
    key: Option<NetworkKey>,
    (tx, rx): (Outbox, OutboxRx),
    shared: Shared,
    driver: Sender<Input>,
) {
    let result = async {
        let stream = connect_from(me.ip(), addr, limits.connect_timeout).await?;
        let _ = stream.set_nodelay(true);
        let hello = Hello::peer(me, shared.vnodes);
        let (mut r, w, vnodes) = match open(stream, hello, key.as_ref(), &limits).await? {
            Opened::Welcome { r, w, vnodes } => (r, w, vnodes),
            Opened::Refused(why) => {
                // An error means the driver has stopped: nobody to tell.
                let _ = driver.send(Input::Refused { addr, why }).await;
                return Ok(());
            }
        };
        let who = Who::Peer { addr, vnodes };
        let reader = read_loop(
            &mut r,
            &limits,
            limits.idle_timeout,
            &tx,
            &shared,
            who,
            &driver,
        );
        let writer = write_loop(w, rx, limits.frame_timeout);
        // Either half ending ends the connection.
        futures_lite::future::or(reader, writer).await;
        Ok::<(), FrameError>(())
    }
    .await;
    if let Err(e) = result {
        debug!(%addr, "connection failed: {e}");
    }
    tx.close();
    // An error means the driver has stopped: nobody to tell.
    let _ = driver.send(Input::Closed { addr }).await;
}

/// What connections share with the node: its budgets, the clients' rate limits, and the
/// driver's second queue (work that waits behind ring maintenance).
#[derive(Clone)]
pub(crate) struct Shared {
    /// Bytes of frames held (see [`Limits::memory_budget`]).
    pub(crate) memory: Budget,
    /// Service requests being served (see [`Limits::max_service_requests`]).
    pub(crate) services: Budget,
    /// Clients' lookups in flight (see [`Limits::max_client_lookups`]).
    pub(crate) lookups: Budget,
    /// Clients' requests per source address (see [`Limits::client_rate_per_ip`]).
    pub(crate) rates: Arc<PerAddress>,
    /// The node's own number of ring positions (announced in our hellos).
    pub(crate) vnodes: u16,
    /// The driver's queue for clients' requests, service traffic and lookup steps; ring
    /// maintenance (and the handle's commands) go on the other, which the driver serves
    /// first.
    pub(crate) work: Sender<Input>,
}

/// Who is on the other side of a connection being read, and so what its frames become
/// for the driver.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Who {
    /// A ring node listening at `addr` with `vnodes` positions.
    Peer { addr: SocketAddr, vnodes: u16 },
    /// A client, connecting from `ip` (if known); `from_host`: from this node's host.
    Client { ip: Option<IpAddr>, from_host: bool },
}

impl Who {
    /// A frame from this side, for the driver.
    fn input(self, frame: Frame, reply: Reply) -> Input {
        match self {
            Who::Peer { addr, vnodes } => Input::Peer {
                from: addr,
                vnodes,
                frame,
                reply,
            },
            Who::Client { from_host, .. } => Input::Client {
                frame,
                reply,
                from_host,
            },
        }
    }
}

/// Service requests from one client connection served at once; past it the client waits
/// (transfers use one request per connection at a time).
const SERVICE_REQUESTS_PER_CLIENT: usize = 4;
/// Service requests from one peer served at once; past it the peer is answered `Busy`. A
/// peer sends all its calls (repair, hand-over) on one connection, so it gets more.
const SERVICE_REQUESTS_PER_PEER: usize = 16;

/// Does this frame keep the ring together (and so go first)? Everything but lookup steps
/// and service traffic, which clients can multiply.
fn is_maintenance(frame: &Frame) -> bool {
    matches!(frame, Frame::Chord { msg, .. } if is_maintenance_msg(msg))
}

/// Does this Chord message keep the ring together? All but lookup steps and their answers.
pub(crate) fn is_maintenance_msg(msg: &Message) -> bool {
    use chord_core::{Request, Response};
    !matches!(
        msg,
        Message::Request {
            body: Request::FindStep { .. },
            ..
        } | Message::Response {
            body: Response::Step { .. },
            ..
        }
    )
}

/// Read frames and hand them to the driver, with backpressure: nothing more is read while
/// the connection's answers are not being read by its peer (its bytes are spent) or,
/// from a client, while it has its fill of requests in flight. A client's request waits
/// for a token of its connection's and its address's rate limits; its lookup for room
/// among the node's client lookups; its service request for the node's memory and a
/// service slot. A peer is never waited for on the node's account (its connection
/// carries ring maintenance): its service requests past the limits are answered `Busy`,
/// here or by the driver. Ring maintenance goes to `driver`, everything else to the
/// driver's work queue.
async fn read_loop(
    r: &mut Reader,
    limits: &Limits,
    first_idle: Duration,
    out: &Outbox,
    shared: &Shared,
    who: Who,
    driver: &Sender<Input>,
) {
    let requests = Budget::new(limits.max_requests_per_conn);
    let client = matches!(who, Who::Client { .. });
    let services_here = Budget::new(if client {
        SERVICE_REQUESTS_PER_CLIENT
    } else {
        SERVICE_REQUESTS_PER_PEER
    });
    let mut bucket = Bucket::full(
        if client {
            limits.client_burst_per_conn
        } else {
            limits.peer_burst_per_conn
        },
        Instant::now(),
    );
    let mut idle = first_idle;
    loop {
        loop {
            if out.is_closed() {
                return;
            }
            if out.conn.over() {
                out.conn.room().await;
            } else if client && requests.over() {
                requests.room().await;
            } else {
                break;
            }
        }
        let read = read_body_leased(
            r,
            Vec::new(),
            limits.max_frame,
            idle,
            limits.frame_timeout,
            Some(&shared.memory),
        )
        .await;
        idle = limits.idle_timeout;
        let (frame, body) =
            match read.and_then(|(body, lease)| Ok((decode::<Frame>(&body)?, lease))) {
                Ok(x) => x,
                Err(e) => {
                    debug!("closing connection: {e}");
                    return;
                }
            };
        if client
            && !matches!(
                frame,
                Frame::ClientRequest { .. } | Frame::ServiceRequest { .. }
            )
        {
            // A client has nothing else to send (a Chord frame from it would go to the
            // maintenance queue, ahead of everyone's work).
            debug!("closing a client connection that sent a peer's frame");
            return;
        }
        let is_request = matches!(
            frame,
            Frame::ServiceRequest { .. }
                | Frame::Chord {
                    msg: Message::Request { .. },
                    ..
                }
        );
        if !client && is_request {
            // Peers are paced too (anyone can say it is a peer on an open ring), at rates
            // far above what a ring's own traffic needs.
            let wait = bucket.take(
                limits.peer_rate_per_conn,
                limits.peer_burst_per_conn,
                Instant::now(),
            );
            if !wait.is_zero() {
                async_io::Timer::after(wait).await;
            }
        }
        if let (
            Who::Client { ip, .. },
            Frame::ClientRequest { .. } | Frame::ServiceRequest { .. },
        ) = (who, &frame)
        {
            let now = Instant::now();
            let mut wait = bucket.take(
                limits.client_rate_per_conn,
                limits.client_burst_per_conn,
                now,
            );
            if let Some(ip) = ip {
                wait = wait.max(shared.rates.take(ip, now));
            }
            if !wait.is_zero() {
                async_io::Timer::after(wait).await;
            }
        }
        let held = match &frame {
            Frame::ClientRequest { body: req, .. } if client => {
                // Taken, not only waited for: many connections wait at once, and all of
                // them would pass a check made before any of them took its share.
                let lookup = if matches!(req, ClientRequest::Lookup { .. }) {
                    shared.lookups.take(1).await
                } else {
                    Lease::none()
                };
                [requests.force(1), lookup, body, Lease::none()]
            }
            Frame::ServiceRequest { id, .. } => {
                if client {
                    // A slot among the connection's, then a service slot, taken while the
                    // node's memory is not spent, not counting the bytes of requests
                    // waiting here (this one's included): they come back only once served.
                    // Within the frame deadline, else Busy (the client backs off and tries
                    // again): a body never waits unbounded, whoever it waits for.
                    let parked = shared.memory.park(body.amount());
                    let admitted = timeout(limits.frame_timeout, async {
                        services_here.room().await;
                        loop {
                            shared.memory.room_unparked().await;
                            let slot = shared.services.take(1).await;
                            if !shared.memory.spent_unparked() {
                                break slot;
                            }
                        }
                    })
                    .await;
                    drop(parked);
                    let Some(slot) = admitted else {
                        out.busy(*id);
                        continue;
                    };
                    [requests.force(1), services_here.force(1), body, slot]
                } else if services_here.over() {
                    out.busy(*id);
                    continue;
                } else {
                    [services_here.force(1), body, Lease::none(), Lease::none()]
                }
            }
            _ => [body, Lease::none(), Lease::none(), Lease::none()],
        };
        let queue = if is_maintenance(&frame) {
            driver
        } else {
            &shared.work
        };
        let reply = Reply {
            out: out.clone(),
            _held: held,
        };
        if queue.send(who.input(frame, reply)).await.is_err() {
            return; // node stopped
        }
    }
}

/// Write queued frames, ring maintenance first. On a failed write (the peer does not
/// read within the deadline, or is gone) everything queued is dropped and its budget
/// given back at once.
async fn write_loop(mut w: Writer, rx: OutboxRx, deadline: Duration) {
    loop {
        let next = match rx.urgent.try_recv() {
            Ok(q) => Some(q),
            Err(_) => match rx.bulk.try_recv() {
                Ok(q) => Some(q),
                Err(_) => {
                    let either =
                        futures_lite::future::or(async { rx.urgent.recv().await.ok() }, async {
                            rx.bulk.recv().await.ok()
                        })
                        .await;
                    // One queue closed: the other may still hold frames.
                    either
                        .or_else(|| rx.urgent.try_recv().ok())
                        .or_else(|| rx.bulk.try_recv().ok())
                }
            },
        };
        let Some(q) = next else {
            break;
        };
        if write_bytes(&mut w, &q.bytes, deadline).await.is_err() {
            return; // dropping `rx` drops what is queued
        }
    }
    let _ = with_deadline(deadline, async { Ok(w.close().await?) }).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every refusal `check_hello` can give, and a hello it takes, without a socket.
    #[test]
    fn hellos_are_checked_without_a_connection() {
        let limits = Limits::default();
        let listen: SocketAddr = "10.0.0.1:2000".parse().expect("addr");
        let from: SocketAddr = "10.0.0.1:40000".parse().expect("addr");
        let elsewhere: SocketAddr = "10.0.0.2:40000".parse().expect("addr");
        let check = |h: &Hello, remote, keyed| check_hello(h, Some(remote), &limits, keyed);
        assert_eq!(check(&Hello::peer(listen, 1), from, false), Ok(()));
        assert_eq!(check(&Hello::client(), elsewhere, false), Ok(()));
        let bad_magic = Hello {
            magic: *b"XXXX",
            ..Hello::peer(listen, 1)
        };
        assert_eq!(check(&bad_magic, from, false), Err(Refusal::BadMagic));
        let old = Hello {
            version: VERSION + 1,
            ..Hello::client()
        };
        assert_eq!(
            check(&old, from, false),
            Err(Refusal::Version {
                ours: VERSION,
                theirs: VERSION + 1
            })
        );
        let no_listen = Hello {
            listen: None,
            ..Hello::peer(listen, 1)
        };
        assert_eq!(
            check(&no_listen, from, false),
            Err(Refusal::NoListenAddress)
        );
        assert_eq!(
            check(&Hello::peer(listen, 1), elsewhere, false),
            Err(Refusal::AddressMismatch {
                seen: elsewhere.ip()
            })
        );
        for vnodes in [0, limits.max_vnodes + 1] {
            assert_eq!(
                check(&Hello::peer(listen, vnodes), from, false),
                Err(Refusal::Vnodes {
                    announced: vnodes,
                    max: limits.max_vnodes
                })
            );
        }
        assert_eq!(
            check(&Hello::client(), from, true),
            Err(Refusal::NetworkKeyRequired)
        );
        let encrypted = Hello {
            encrypted: true,
            ..Hello::client()
        };
        assert_eq!(check(&encrypted, from, false), Err(Refusal::NoNetworkKey));
        assert_eq!(check(&encrypted, from, true), Ok(()));
    }

    /// A connection reclaimed for a newcomer (its tasks dropped) while the driver's pool
    /// still holds a clone of its `Outbox`: what was queued must give its budget back.
    #[test]
    fn dropping_the_writer_side_gives_the_queued_bytes_back() {
        let limits = Limits::default();
        let node = Budget::new(1 << 20);
        let (tx, rx) = Outbox::new(&limits, &node);
        let kept = tx.clone();
        assert!(tx.push(vec![0; 1000], false));
        assert!(tx.answer(vec![0; 2000]));
        assert!(tx.push(vec![0; 10], true));
        assert_eq!(node.used(), 3010);
        drop(rx);
        assert_eq!(node.used(), 0, "queued frames outlived their connection");
        assert!(kept.is_closed());
        assert!(!kept.push(vec![0; 10], true));
        assert_eq!(node.used(), 0);
    }
}
