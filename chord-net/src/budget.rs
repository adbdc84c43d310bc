//! Budgets: how much a node (or one connection) may hold at once, in bytes or in
//! requests, with a way to wait for room.
//!
//! A [`Lease`] is a share of a budget; it is given back when dropped, so whatever holds
//! memory (a queued frame, a request being served) holds its lease next to it and the
//! count cannot drift. Waiting uses `event-listener` (the smol family's notification
//! primitive), so a connection that waits for room costs no polling.

use std::sync::{Arc, Mutex};

use event_listener::Event;

/// A limited quantity shared by tasks: bytes of memory, or requests in flight.
#[derive(Clone)]
pub(crate) struct Budget(Arc<Inner>);

struct Inner {
    used: Mutex<usize>,
    limit: usize,
    freed: Event,
}

/// A share of a [`Budget`], returned on drop.
pub(crate) struct Lease {
    inner: Option<Arc<Inner>>,
    n: usize,
}

impl Budget {
    /// A budget of `limit` units.
    pub(crate) fn new(limit: usize) -> Budget {
        Budget(Arc::new(Inner {
            used: Mutex::new(0),
            limit,
            freed: Event::new(),
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, usize> {
        self.0.used.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Units in use.
    pub(crate) fn used(&self) -> usize {
        *self.lock()
    }

    /// Is the budget spent (nothing more should start)?
    pub(crate) fn over(&self) -> bool {
        self.used() >= self.0.limit
    }

    /// Take `n` units whatever is left: for what is already in memory and must be kept
    /// (an answer to a request that was admitted). Makes the budget [`Budget::over`].
    pub(crate) fn force(&self, n: usize) -> Lease {
        *self.lock() += n;
        Lease {
            inner: Some(self.0.clone()),
            n,
        }
    }

    /// Take `n` units if they fit. When nothing is in use anything fits, so that one item
    /// larger than the whole budget can still pass, alone.
    pub(crate) fn try_take(&self, n: usize) -> Option<Lease> {
        let mut used = self.lock();
        if *used > 0 && used.saturating_add(n) > self.0.limit {
            return None;
        }
        *used += n;
        Some(Lease {
            inner: Some(self.0.clone()),
            n,
        })
    }

    /// Take `n` units, waiting until they fit.
    pub(crate) async fn take(&self, n: usize) -> Lease {
        loop {
            if let Some(l) = self.try_take(n) {
                return l;
            }
            let listener = self.0.freed.listen();
            if let Some(l) = self.try_take(n) {
                return l;
            }
            listener.await;
        }
    }

    /// Wait until the budget is not spent.
    pub(crate) async fn room(&self) {
        self.room_beyond(0).await;
    }

    /// Wait until the budget would not be spent without `own` units (what the waiter
    /// itself holds: waiting for those to come back would wait for ever).
    pub(crate) async fn room_beyond(&self, own: usize) {
        let spent = || self.used().saturating_sub(own) >= self.0.limit;
        loop {
            if !spent() {
                return;
            }
            let listener = self.0.freed.listen();
            if !spent() {
                return;
            }
            listener.await;
        }
    }
}

impl Lease {
    /// A lease of nothing (for what is not counted).
    pub(crate) fn none() -> Lease {
        Lease { inner: None, n: 0 }
    }

    /// Units held.
    pub(crate) fn amount(&self) -> usize {
        self.n
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            {
                let mut used = inner.used.lock().unwrap_or_else(|e| e.into_inner());
                *used = used.saturating_sub(self.n);
            }
            inner.freed.notify(usize::MAX);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_come_back_and_waiters_wake() {
        let b = Budget::new(10);
        let a = b.try_take(6).expect("fits");
        assert!(b.try_take(5).is_none(), "6 + 5 > 10");
        let c = b.try_take(4).expect("6 + 4 fits");
        assert!(b.over());
        drop(a);
        assert_eq!(b.used(), 4);
        assert!(!b.over());
        // Forced leases pass the limit.
        let f = b.force(100);
        assert!(b.over());
        // A waiter wakes when room comes back.
        let b2 = b.clone();
        let waiter = std::thread::spawn(move || {
            futures_lite::future::block_on(async {
                b2.room().await;
                b2.take(5).await
            })
            .n
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        drop(f);
        drop(c);
        assert_eq!(waiter.join().expect("waiter"), 5);
        assert_eq!(b.used(), 0, "the waiter's lease was dropped with it");
        // One item larger than the whole budget passes alone.
        let big = b.try_take(1000).expect("alone");
        assert!(b.try_take(1).is_none());
        drop(big);
    }
}
