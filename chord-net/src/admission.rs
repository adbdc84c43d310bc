//! Admission: which inbound connections a node keeps.
//!
//! A new connection first takes a *handshake* slot (at most [`Limits::max_handshakes`]
//! at once, and at most [`Limits::max_connections_per_ip`] connections per address or
//! IPv6 /64); past either it is refused at once. Once its hello is read it moves to the
//! slots of its class: peers have [`Limits::peer_slots`] of their own, clients the rest
//! of [`Limits::max_connections`]. When a class is full the newcomer is not refused: the
//! connection of that class idle the longest is closed to make room, so connections that
//! are merely held open cannot lock everyone out.

use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use async_channel::{Receiver, Sender};
use futures_lite::AsyncRead;

use crate::rate::address_group;
use crate::Limits;

/// The two classes of admitted connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Class {
    Peer = 0,
    Client = 1,
}

/// A node's admission state, shared by its accepted connections.
#[derive(Clone)]
pub(crate) struct Admission(Arc<Mutex<State>>);

struct State {
    epoch: Instant,
    per_ip: HashMap<IpAddr, usize>,
    handshakes: usize,
    handshakes_per_ip: HashMap<IpAddr, usize>,
    classes: [HashMap<u64, Member>; 2],
    next: u64,
}

/// An admitted connection: when it was last active, and how to close it.
struct Member {
    last: Arc<AtomicU64>,
    close: Sender<()>,
}

impl Default for Admission {
    fn default() -> Admission {
        Admission(Arc::new(Mutex::new(State {
            epoch: Instant::now(),
            per_ip: HashMap::new(),
            handshakes: 0,
            handshakes_per_ip: HashMap::new(),
            classes: [HashMap::new(), HashMap::new()],
            next: 0,
        })))
    }
}

/// A connection's place; given back when dropped.
pub(crate) struct Ticket {
    state: Arc<Mutex<State>>,
    ip: Option<IpAddr>,
    admitted: Option<(Class, u64)>,
}

/// What an admitted connection keeps: its activity clock (to wrap its reader in) and the
/// signal that it was reclaimed for a newcomer.
pub(crate) struct Admitted {
    pub(crate) activity: Activity,
    pub(crate) closed: Receiver<()>,
}

impl Admission {
    fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
        state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A handshake slot for a connection from `ip`, unless the limits are reached.
    pub(crate) fn try_acquire(&self, ip: Option<IpAddr>, limits: &Limits) -> Option<Ticket> {
        let ip = ip.map(address_group);
        let mut s = Admission::lock(&self.0);
        if s.handshakes >= limits.max_handshakes {
            return None;
        }
        if let Some(ip) = ip {
            if s.per_ip.get(&ip).copied().unwrap_or(0) >= limits.max_connections_per_ip
                || s.handshakes_per_ip.get(&ip).copied().unwrap_or(0)
                    >= limits.max_handshakes_per_ip
            {
                return None;
            }
            *s.per_ip.entry(ip).or_insert(0) += 1;
            *s.handshakes_per_ip.entry(ip).or_insert(0) += 1;
        }
        s.handshakes += 1;
        Some(Ticket {
            state: self.0.clone(),
            ip,
            admitted: None,
        })
    }
}

impl Ticket {
    /// The handshake is done: take a slot of `class`, closing the connection of that class
    /// idle the longest if it is full.
    pub(crate) fn admit(&mut self, class: Class, limits: &Limits) -> Admitted {
        let cap = match class {
            Class::Peer => limits.peer_slots,
            Class::Client => limits.max_connections.saturating_sub(limits.peer_slots),
        }
        .max(1);
        let mut s = Admission::lock(&self.state);
        let now = s.epoch.elapsed().as_millis() as u64;
        let members = &mut s.classes[class as usize];
        while members.len() >= cap {
            let Some(idlest) = members
                .iter()
                .min_by_key(|(_, m)| m.last.load(Ordering::Relaxed))
                .map(|(id, _)| *id)
            else {
                break;
            };
            if let Some(m) = members.remove(&idlest) {
                tracing::debug!(?class, "closing the idlest connection for a newcomer");
                m.close.close();
            }
        }
        let (close, closed) = async_channel::bounded(1);
        let last = Arc::new(AtomicU64::new(now));
        let id = s.next;
        s.next += 1;
        s.classes[class as usize].insert(
            id,
            Member {
                last: last.clone(),
                close,
            },
        );
        if self.admitted.is_none() {
            s.handshakes = s.handshakes.saturating_sub(1);
            if let Some(ip) = self.ip {
                decrement(&mut s.handshakes_per_ip, ip);
            }
        }
        self.admitted = Some((class, id));
        Admitted {
            activity: Activity {
                last,
                epoch: s.epoch,
            },
            closed,
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut s = Admission::lock(&self.state);
        match self.admitted {
            None => {
                s.handshakes = s.handshakes.saturating_sub(1);
                if let Some(ip) = self.ip {
                    decrement(&mut s.handshakes_per_ip, ip);
                }
            }
            Some((class, id)) => {
                s.classes[class as usize].remove(&id);
            }
        }
        if let Some(ip) = self.ip {
            decrement(&mut s.per_ip, ip);
        }
    }
}

/// One less for `ip`, forgetting it at zero.
fn decrement(counts: &mut HashMap<IpAddr, usize>, ip: IpAddr) {
    if let Some(n) = counts.get_mut(&ip) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            counts.remove(&ip);
        }
    }
}

/// When a connection last received bytes.
#[derive(Clone)]
pub(crate) struct Activity {
    last: Arc<AtomicU64>,
    epoch: Instant,
}

/// A reader that marks its connection active whenever bytes arrive.
pub(crate) struct Tracked<R> {
    pub(crate) inner: R,
    pub(crate) activity: Activity,
}

impl<R: AsyncRead + Unpin> AsyncRead for Tracked<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(n)) = &r {
            if *n > 0 {
                let now = this.activity.epoch.elapsed().as_millis() as u64;
                this.activity.last.store(now, Ordering::Relaxed);
            }
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_address_and_handshakes_and_idlest_reclaimed() {
        let limits = Limits {
            max_handshakes: 3,
            max_handshakes_per_ip: 2,
            max_connections_per_ip: 2,
            max_connections: 3,
            peer_slots: 1,
            ..Limits::default()
        };
        let adm = Admission::default();
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        let b: IpAddr = "10.0.0.2".parse().expect("ip");
        let c: IpAddr = "10.0.0.3".parse().expect("ip");
        let d: IpAddr = "10.0.0.4".parse().expect("ip");
        let t1 = adm.try_acquire(Some(a), &limits).expect("first");
        let _t2 = adm.try_acquire(Some(a), &limits).expect("second");
        assert!(adm.try_acquire(Some(a), &limits).is_none(), "per address");
        // The same host over IPv4-mapped IPv6 is the same address.
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().expect("ip");
        assert!(adm.try_acquire(Some(mapped), &limits).is_none());
        let _t3 = adm.try_acquire(Some(b), &limits).expect("third");
        assert!(adm.try_acquire(Some(c), &limits).is_none(), "handshakes");
        drop(t1);
        // Admitted connections leave the handshake slots.
        let mut x = adm.try_acquire(Some(c), &limits).expect("after a drop");
        let ax = x.admit(Class::Client, &limits);
        let mut y = adm
            .try_acquire(Some(d), &limits)
            .expect("x left its handshake slot");
        let ay = y.admit(Class::Client, &limits);
        // Client slots: 3 - 1 = 2, both taken. A newcomer reclaims the idlest (x).
        ay.activity.last.store(1_000_000, Ordering::Relaxed);
        let mut z = adm.try_acquire(Some(b), &limits).expect("newcomer");
        let _az = z.admit(Class::Client, &limits);
        assert!(ax.closed.is_closed(), "the idlest was closed");
        assert!(!ay.closed.is_closed(), "the active one stays");
        // Handshakes per address: two at once from one address, a third only once one is
        // admitted.
        let per = Limits {
            max_handshakes_per_ip: 2,
            max_connections_per_ip: 10,
            ..Limits::default()
        };
        let e: IpAddr = "10.0.0.7".parse().expect("ip");
        let adm2 = Admission::default();
        let mut h1 = adm2.try_acquire(Some(e), &per).expect("1");
        let _h2 = adm2.try_acquire(Some(e), &per).expect("2");
        assert!(
            adm2.try_acquire(Some(e), &per).is_none(),
            "handshakes per address"
        );
        let _a1 = h1.admit(Class::Client, &per);
        assert!(adm2.try_acquire(Some(e), &per).is_some(), "one finished");
        // The peer slot is apart from the clients'.
        let mut p = adm
            .try_acquire(Some("10.0.0.9".parse().expect("ip")), &limits)
            .expect("peer");
        let ap = p.admit(Class::Peer, &limits);
        assert!(!ap.closed.is_closed());
        assert!(!ay.closed.is_closed(), "a peer does not push out a client");
    }
}
