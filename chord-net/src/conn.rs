//! Connections: the handshake, and the reader and writer halves of an established one.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_channel::{Receiver, Sender};
use async_net::TcpStream;
use tracing::debug;

use crate::frame::{read_frame, write_bytes, write_frame, FrameError};
use crate::wire::{Frame, Hello, HelloReply, Refusal, Role, MAGIC, VERSION};
use crate::Limits;

/// What a connection task tells the driver.
pub(crate) enum Input {
    /// A frame from the peer listening at `from`; answers may go to `reply`.
    Peer {
        from: SocketAddr,
        frame: Frame,
        reply: Sender<Vec<u8>>,
    },
    /// A frame from a client; answers go to `reply`.
    Client {
        frame: Frame,
        reply: Sender<Vec<u8>>,
    },
    /// A peer connection opened by the other side: frames for `addr` may go to `tx`.
    Inbound {
        addr: SocketAddr,
        tx: Sender<Vec<u8>>,
    },
    /// The connection to `addr` (ours) is gone.
    Closed { addr: SocketAddr },
    /// A command from the handle.
    Command(crate::node::Command),
}

/// Counts open connections, to refuse new ones past the limit.
#[derive(Clone, Default)]
pub(crate) struct ConnCount(Arc<AtomicUsize>);

pub(crate) struct ConnGuard(Arc<AtomicUsize>);

impl ConnCount {
    pub(crate) fn try_acquire(&self, max: usize) -> Option<ConnGuard> {
        let n = self.0.fetch_add(1, Ordering::SeqCst);
        if n >= max {
            self.0.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(ConnGuard(self.0.clone()))
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Serve one accepted connection until it closes.
pub(crate) async fn serve_inbound(
    stream: TcpStream,
    me: SocketAddr,
    vnodes: u16,
    limits: Limits,
    count: ConnCount,
    driver: Sender<Input>,
) {
    let remote = stream.peer_addr().ok();
    let guard = count.try_acquire(limits.max_connections);
    let mut r = stream.clone();
    let mut w = stream;
    let hello: Hello = match read_frame(
        &mut r,
        1024,
        limits.handshake_timeout,
        limits.handshake_timeout,
    )
    .await
    {
        Ok(h) => h,
        Err(e) => {
            debug!(?remote, "handshake failed: {e}");
            return;
        }
    };
    let refusal = if hello.magic != MAGIC {
        Some(Refusal::BadMagic)
    } else if hello.version != VERSION {
        Some(Refusal::Version {
            ours: VERSION,
            theirs: hello.version,
        })
    } else if hello.role == Role::Peer && hello.listen.is_none() {
        Some(Refusal::NoListenAddress)
    } else if guard.is_none() {
        Some(Refusal::Busy)
    } else {
        None
    };
    if let Some(refusal) = refusal {
        debug!(?remote, "refusing connection: {refusal}");
        let _ = write_frame(&mut w, &HelloReply::Refused(refusal), limits.frame_timeout).await;
        return;
    }
    let welcome = HelloReply::Welcome { addr: me, vnodes };
    if write_frame(&mut w, &welcome, limits.frame_timeout)
        .await
        .is_err()
    {
        return;
    }
    let (tx, rx) = async_channel::bounded::<Vec<u8>>(limits.max_in_flight);
    let writer = write_loop(w, rx, limits.frame_timeout);
    let reader = async {
        match (hello.role, hello.listen) {
            (Role::Peer, Some(addr)) => {
                let _ = driver
                    .send(Input::Inbound {
                        addr,
                        tx: tx.clone(),
                    })
                    .await;
                read_loop(
                    &mut r,
                    &limits,
                    |frame| Input::Peer {
                        from: addr,
                        frame,
                        reply: tx.clone(),
                    },
                    &driver,
                )
                .await
            }
            _ => {
                read_loop(
                    &mut r,
                    &limits,
                    |frame| Input::Client {
                        frame,
                        reply: tx.clone(),
                    },
                    &driver,
                )
                .await
            }
        }
        // Reader done: let the writer finish what is queued, then stop.
        tx.close();
    };
    futures_lite::future::zip(reader, writer).await;
    drop(guard);
}

/// Open a peer connection to `addr` and serve it; frames to send arrive on `rx`.
pub(crate) async fn serve_outbound(
    addr: SocketAddr,
    me: SocketAddr,
    limits: Limits,
    (tx, rx): (Sender<Vec<u8>>, Receiver<Vec<u8>>),
    driver: Sender<Input>,
) {
    let result = async {
        let stream = futures_lite::future::or(
            async { TcpStream::connect(addr).await.map_err(FrameError::Io) },
            async {
                async_io::Timer::after(limits.connect_timeout).await;
                Err(FrameError::Timeout)
            },
        )
        .await?;
        let mut r = stream.clone();
        let mut w = stream;
        write_frame(&mut w, &Hello::peer(me), limits.frame_timeout).await?;
        let reply: HelloReply = read_frame(
            &mut r,
            1024,
            limits.handshake_timeout,
            limits.handshake_timeout,
        )
        .await?;
        if let HelloReply::Refused(why) = reply {
            debug!(%addr, "peer refused us: {why}");
            return Ok(());
        }
        let reader = read_loop(
            &mut r,
            &limits,
            |frame| Input::Peer {
                from: addr,
                frame,
                reply: tx.clone(),
            },
            &driver,
        );
        let writer = write_loop(w, rx.clone(), limits.frame_timeout);
        // Either half ending ends the connection.
        futures_lite::future::or(reader, writer).await;
        Ok::<(), FrameError>(())
    }
    .await;
    if let Err(e) = result {
        debug!(%addr, "connection failed: {e}");
    }
    rx.close();
    let _ = driver.send(Input::Closed { addr }).await;
}

async fn read_loop(
    r: &mut TcpStream,
    limits: &Limits,
    wrap: impl Fn(Frame) -> Input,
    driver: &Sender<Input>,
) {
    loop {
        match read_frame::<_, Frame>(
            r,
            limits.max_frame,
            limits.idle_timeout,
            limits.frame_timeout,
        )
        .await
        {
            Ok(frame) => {
                if driver.send(wrap(frame)).await.is_err() {
                    return; // node stopped
                }
            }
            Err(e) => {
                debug!("closing connection: {e}");
                return;
            }
        }
    }
}

async fn write_loop(mut w: TcpStream, rx: Receiver<Vec<u8>>, deadline: Duration) {
    while let Ok(bytes) = rx.recv().await {
        if write_bytes(&mut w, &bytes, deadline).await.is_err() {
            rx.close();
            return;
        }
    }
    let _ = w.shutdown(std::net::Shutdown::Write);
}
