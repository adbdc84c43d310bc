//! Budgets: how much a node (or one connection) may hold at once, in bytes or in
//! requests, with a way to wait for room.
//!
//! A [`Lease`] is a share of a budget; it is given back when dropped, so whatever holds
//! memory (a queued frame, a request being served) holds its lease next to it and the
//! count cannot drift. Waiting uses `event-listener` (the smol family's notification
//! primitive), so a connection that waits for room costs no polling.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use event_listener::Event;

/// A limited quantity shared by tasks: bytes of memory, or requests in flight.
#[derive(Clone)]
pub(crate) struct Budget(Arc<Inner>);

struct Inner {
    used: Mutex<usize>,
    limit: usize,
    freed: Event,
    /// Held by the one growing lease allowed past the limit (see [`Budget::grow`]).
    overdraft: AtomicBool,
    /// Units held by requests that wait for admission (see [`Budget::park`]).
    parked: AtomicUsize,
}

/// Units counted as parked until dropped (see [`Budget::park`]).
pub(crate) struct Parked {
    inner: Arc<Inner>,
    n: usize,
}

impl Drop for Parked {
    fn drop(&mut self) {
        self.inner.parked.fetch_sub(self.n, Ordering::AcqRel);
    }
}

/// A share of a [`Budget`], returned on drop.
pub(crate) struct Lease {
    inner: Option<Arc<Inner>>,
    n: usize,
    /// This lease holds its budget's overdraft (given back on drop).
    overdraft: bool,
}

impl Budget {
    /// A budget of `limit` units.
    pub(crate) fn new(limit: usize) -> Budget {
        Budget(Arc::new(Inner {
            used: Mutex::new(0),
            limit,
            freed: Event::new(),
            overdraft: AtomicBool::new(false),
            parked: AtomicUsize::new(0),
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
            overdraft: false,
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
            overdraft: false,
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

    /// Add `n` units to `lease`, a share of this budget held by something that grows as
    /// its bytes arrive (a frame being read), waiting until they fit. Growing holders could
    /// otherwise wait for each other for ever, each holding part of the budget and waiting
    /// for the rest; so one at a time may go past the limit: the first to find the budget
    /// spent takes the *overdraft* and keeps it until its lease is dropped. What is held
    /// stays within the limit plus what that one holder grows by.
    pub(crate) async fn grow(&self, lease: &mut Lease, n: usize) {
        loop {
            if lease.overdraft {
                lease.absorb(self.force(n));
                return;
            }
            if let Some(l) = self.try_take(n) {
                lease.absorb(l);
                return;
            }
            if self.take_overdraft() {
                let mut l = self.force(n);
                l.overdraft = true;
                lease.absorb(l);
                return;
            }
            let listener = self.0.freed.listen();
            if let Some(l) = self.try_take(n) {
                lease.absorb(l);
                return;
            }
            if !self.0.overdraft.load(Ordering::Acquire) {
                continue;
            }
            listener.await;
        }
    }

    fn take_overdraft(&self) -> bool {
        self.0
            .overdraft
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Count `n` units (held by the caller) as parked until the guard is dropped: units of
    /// a request that waits for admission, which it cannot give back by waiting. Waiters
    /// in [`Budget::room_unparked`] do not count parked units, so such requests never wait
    /// for each other's bytes (with the overdraft, what is held can pass the limit, and
    /// each would wait for the others for ever). Waiters are woken: their wait got easier.
    pub(crate) fn park(&self, n: usize) -> Parked {
        self.0.parked.fetch_add(n, Ordering::AcqRel);
        self.0.freed.notify(usize::MAX);
        Parked {
            inner: self.0.clone(),
            n,
        }
    }

    /// Is the budget spent by what is not parked?
    pub(crate) fn spent_unparked(&self) -> bool {
        let parked = self.0.parked.load(Ordering::Acquire);
        self.used().saturating_sub(parked) >= self.0.limit
    }

    /// Wait until the budget is not spent by what is not parked.
    pub(crate) async fn room_unparked(&self) {
        self.wait_while(Budget::spent_unparked).await;
    }

    /// Wait until the budget is not spent.
    pub(crate) async fn room(&self) {
        self.wait_while(Budget::over).await;
    }

    /// Wait until `spent` is false, checking again whenever units come back (or are
    /// parked).
    async fn wait_while(&self, spent: fn(&Budget) -> bool) {
        loop {
            if !spent(self) {
                return;
            }
            let listener = self.0.freed.listen();
            if !spent(self) {
                return;
            }
            listener.await;
        }
    }
}

impl Lease {
    /// A lease of nothing (for what is not counted).
    pub(crate) fn none() -> Lease {
        Lease {
            inner: None,
            n: 0,
            overdraft: false,
        }
    }

    /// Hold `other`'s units (and overdraft) too: both must be shares of one budget.
    fn absorb(&mut self, mut other: Lease) {
        let Some(inner) = other.inner.take() else {
            return;
        };
        debug_assert!(self.inner.as_ref().is_none_or(|i| Arc::ptr_eq(i, &inner)));
        self.inner.get_or_insert(inner);
        self.n += std::mem::take(&mut other.n);
        self.overdraft |= std::mem::take(&mut other.overdraft);
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
            if self.overdraft {
                inner.overdraft.store(false, Ordering::Release);
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

    /// Requests waiting for admission do not count each other's bytes (parked), only what
    /// else is held: nine of them past the limit once waited for each other for ever.
    #[test]
    fn parked_units_do_not_count_for_admission() {
        let b = Budget::new(10);
        // Three requests of 5 (one past the limit on the overdraft): not counting its own
        // bytes, each still saw the other two fill the budget.
        let held: Vec<Lease> = (0..3).map(|_| b.force(5)).collect();
        assert!(held.iter().all(|l| b.used() - l.amount() >= 10));
        assert!(b.spent_unparked());
        let parked: Vec<Parked> = held.iter().map(|l| b.park(l.amount())).collect();
        assert!(!b.spent_unparked(), "only parked units are held");
        let answers = b.force(10);
        assert!(b.spent_unparked(), "what is not parked counts");
        drop((answers, parked, held));
        assert!(!b.spent_unparked());
        assert_eq!(b.used(), 0);
    }

    /// Growing leases (frames read as their bytes arrive) never wait for each other for
    /// ever: when the budget is spent, one of them may go on past it (the overdraft), and
    /// the others wait until it is dropped.
    #[test]
    fn growing_leases_do_not_wait_for_each_other_for_ever() {
        use futures_lite::future::{block_on, poll_once};
        let b = Budget::new(10);
        let (mut a, mut c) = (Lease::none(), Lease::none());
        block_on(b.grow(&mut a, 6));
        block_on(b.grow(&mut c, 4));
        assert_eq!(b.used(), 10);
        // a needs 3 more; c holds the rest and needs more too: a takes the overdraft.
        block_on(b.grow(&mut a, 3));
        assert_eq!((a.amount(), b.used()), (9, 13));
        // c waits: the budget is spent and the overdraft is taken ...
        let b2 = b.clone();
        let waiter = std::thread::spawn(move || {
            block_on(b2.grow(&mut c, 2));
            c.amount()
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(
            !waiter.is_finished(),
            "grew past the limit without the overdraft"
        );
        // ... until a is dropped, with its overdraft.
        drop(a);
        assert_eq!(waiter.join().expect("waiter"), 6);
        assert_eq!(b.used(), 0);
        let full = b.try_take(10).expect("fits");
        let mut d = Lease::none();
        assert!(
            block_on(poll_once(b.grow(&mut d, 5))).is_some(),
            "the overdraft came back with its lease"
        );
        assert_eq!(b.used(), 15);
        drop((full, d));
        assert_eq!(b.used(), 0);
    }
}
