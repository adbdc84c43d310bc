//! The sliding window both directions of a transfer use: a pool of routes (each with its
//! own connections, one request at a time), one job in flight per busy route, results
//! taken in the order the jobs started.

use std::future::Future;

use futures::stream::{FuturesOrdered, StreamExt};

/// At most one job per route of the pool in flight; [`Window::next`] gives results in
/// the order [`Window::start`] began them and puts their routes back in the pool.
pub(crate) struct Window<R, F: Future> {
    idle: Vec<R>,
    in_flight: FuturesOrdered<F>,
}

impl<R, T, F: Future<Output = (R, T)>> Window<R, F> {
    /// A window as wide as `routes`.
    pub(crate) fn new(routes: Vec<R>) -> Window<R, F> {
        Window {
            idle: routes,
            in_flight: FuturesOrdered::new(),
        }
    }

    /// Whether a route is free for another job.
    pub(crate) fn has_room(&self) -> bool {
        !self.idle.is_empty()
    }

    /// A free route, to use between jobs (it stays in the pool).
    pub(crate) fn free_route(&mut self) -> Option<&mut R> {
        self.idle.last_mut()
    }

    /// Start `job` on a free route; the job gives the route back with its result. `false`
    /// (and `job` not run) if every route is busy.
    pub(crate) fn start(&mut self, job: impl FnOnce(R) -> F) -> bool {
        match self.idle.pop() {
            Some(route) => {
                self.in_flight.push_back(job(route));
                true
            }
            None => false,
        }
    }

    /// The result of the oldest job still in flight (`None`: none is).
    pub(crate) async fn next(&mut self) -> Option<T> {
        let (route, result) = self.in_flight.next().await?;
        self.idle.push(route);
        Some(result)
    }

    /// The pool, once no job is in flight (jobs still running are dropped).
    pub(crate) fn into_routes(self) -> Vec<R> {
        self.idle
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Jobs finish out of order; results come in the order they started, and never more
    /// than the pool's width run at once.
    #[test]
    fn results_in_order_and_never_wider_than_the_pool() {
        futures_lite::future::block_on(async {
            let running = std::cell::Cell::new(0usize);
            let most = std::cell::Cell::new(0usize);
            let mut w = Window::new(vec![0u8, 1, 2]);
            let mut got = Vec::new();
            let mut next = 0u64;
            while got.len() < 10 {
                while next < 10 && w.has_room() {
                    let (running, most) = (&running, &most);
                    let i = next;
                    assert!(w.start(|route| async move {
                        running.set(running.get() + 1);
                        most.set(most.get().max(running.get()));
                        // Later jobs finish sooner.
                        for _ in 0..(10 - i) {
                            futures_lite::future::yield_now().await;
                        }
                        running.set(running.get() - 1);
                        (route, i)
                    }));
                    next += 1;
                }
                got.push(w.next().await.expect("a job in flight"));
            }
            assert_eq!(got, (0..10).collect::<Vec<_>>());
            assert_eq!(most.get(), 3);
            assert!(w.next().await.is_none());
            assert_eq!(w.into_routes().len(), 3);
        });
    }
}
