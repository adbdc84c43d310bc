//! Token buckets for clients' requests: per connection and per source address (an IPv6
//! /64 counts as one address, as for connection limits). A request that finds no token
//! waits for one (its connection is not read meanwhile), so a flood costs the flooder
//! time and the node nothing.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A token bucket that may go into debt: `take` says how long the taker must wait for
/// its token, so that waiting takers are served in order at the bucket's rate.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    pub(crate) fn full(burst: f64, now: Instant) -> Bucket {
        Bucket {
            tokens: burst,
            at: now,
        }
    }

    /// Take one token at `rate` per second (at most `burst` saved): the wait before it is
    /// due (zero if one was there).
    pub(crate) fn take(&mut self, rate: f64, burst: f64, now: Instant) -> Duration {
        // A rate of 0 (or less, or NaN) from a configuration would wait for ever: treat it
        // as one request an hour.
        let rate = if rate > 0.0 { rate } else { 1.0 / 3600.0 };
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(burst) - 1.0;
        self.at = now;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::try_from_secs_f64(-self.tokens / rate).unwrap_or(Duration::from_secs(3600))
        }
    }

    /// Is the bucket full again (nothing owed, nothing to remember)?
    fn is_full(&self, rate: f64, burst: f64, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens + elapsed * rate >= burst
    }
}

/// Most addresses remembered at once; full buckets are forgotten first, and past the
/// bound every new address shares one bucket.
const MAX_ADDRESSES: usize = 4096;

/// Buckets per source address.
pub(crate) struct PerAddress {
    rate: f64,
    burst: f64,
    buckets: Mutex<(HashMap<IpAddr, Bucket>, Bucket)>,
}

impl PerAddress {
    pub(crate) fn new(rate: f64, burst: f64) -> PerAddress {
        let now = Instant::now();
        PerAddress {
            rate,
            burst,
            buckets: Mutex::new((HashMap::new(), Bucket::full(burst, now))),
        }
    }

    /// Take a token for `ip`: the wait before it is due.
    pub(crate) fn take(&self, ip: IpAddr, now: Instant) -> Duration {
        let ip = address_group(ip);
        let (rate, burst) = (self.rate, self.burst);
        let mut g = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let (map, overflow) = &mut *g;
        if !map.contains_key(&ip) && map.len() >= MAX_ADDRESSES {
            map.retain(|_, b| !b.is_full(rate, burst, now));
            if map.len() >= MAX_ADDRESSES {
                return overflow.take(rate, burst, now);
            }
        }
        map.entry(ip)
            .or_insert_with(|| Bucket::full(burst, now))
            .take(rate, burst, now)
    }
}

/// The address a limit counts `ip` under: itself, an IPv4-mapped IPv6 address as IPv4, and
/// other IPv6 addresses by their /64 (one host usually has a whole /64 to choose from).
pub(crate) fn address_group(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_pace_and_refill() {
        let t0 = Instant::now();
        let mut b = Bucket::full(3.0, t0);
        for _ in 0..3 {
            assert_eq!(b.take(10.0, 3.0, t0), Duration::ZERO);
        }
        // In debt: the 4th and 5th wait 0.1 s and 0.2 s at 10 per second.
        let w4 = b.take(10.0, 3.0, t0);
        let w5 = b.take(10.0, 3.0, t0);
        assert!((w4.as_secs_f64() - 0.1).abs() < 1e-9, "{w4:?}");
        assert!((w5.as_secs_f64() - 0.2).abs() < 1e-9, "{w5:?}");
        // A second later the debt is paid and the burst back.
        let t1 = t0 + Duration::from_secs(1);
        assert!(b.is_full(10.0, 3.0, t1));
        assert_eq!(b.take(10.0, 3.0, t1), Duration::ZERO);

        // Per address: two addresses do not share; a /64 does.
        let p = PerAddress::new(10.0, 1.0);
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        let c: IpAddr = "10.0.0.2".parse().expect("ip");
        assert_eq!(p.take(a, t0), Duration::ZERO);
        assert!(p.take(a, t0) > Duration::ZERO);
        assert_eq!(p.take(c, t0), Duration::ZERO);
        let x: IpAddr = "2001:db8::1".parse().expect("ip");
        let y: IpAddr = "2001:db8::2".parse().expect("ip");
        assert_eq!(p.take(x, t0), Duration::ZERO);
        assert!(p.take(y, t0) > Duration::ZERO, "same /64");
    }

    #[test]
    fn the_address_map_is_bounded() {
        let p = PerAddress::new(1.0, 1.0);
        let t0 = Instant::now();
        for i in 0..(MAX_ADDRESSES as u32 + 100) {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            p.take(ip, t0);
        }
        let g = p.buckets.lock().expect("lock");
        assert!(g.0.len() <= MAX_ADDRESSES);
    }
}
