//! Round-trip time estimates per peer, for request timeouts that follow the network.
//!
//! The estimator is TCP's (Jacobson/Karels, as RFC 6298 states it): a smoothed RTT and a
//! mean deviation per peer, and a retransmission timeout `srtt + 4·rttvar` clamped to
//! `[floor, ceiling]`. Samples come only from requests answered without a resend (Karn's
//! rule: the answer to a resent request could be to either copy). A peer that answered
//! only after a resend keeps the timeout that worked ([`RttTable::backed_off`]) until a
//! clean sample arrives, so a peer farther away than the floor gets measured at all.
//!
//! A node talks to a bounded set of peers at a time (its successors, predecessor,
//! fingers and the hops of its lookups), but over its life to any number, so the table is
//! bounded: past [`RttTable::CAPACITY`] peers the one heard from least recently is
//! forgotten. It is small and kept compact (a simulator runs 10^4 nodes or more, each
//! with a table): a vector searched linearly through an inline array of id prefixes,
//! times in microseconds as `u32` (up to 71 minutes, far above any timeout ceiling).

use std::time::Duration;

use crate::{Id, Time};

#[derive(Clone, Copy, Debug)]
struct Estimate {
    peer: Id,
    /// Smoothed RTT and mean deviation, in microseconds (0 and 0 before a first sample).
    srtt: u32,
    rttvar: u32,
    /// A timeout that worked after resends, kept until a clean sample (microseconds).
    backoff: u32,
}

fn prefix(id: Id) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&id.0[..4]);
    u32::from_ne_bytes(b)
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

fn duration(us: u32) -> Duration {
    Duration::from_micros(u64::from(us))
}

/// Per-peer RTT estimates. See the [module documentation](self).
#[derive(Clone, Default)]
pub struct RttTable {
    /// The first 4 bytes of each estimate's peer, in the order of `peers` (the first
    /// `peers.len()` are in use), compared first: the scan is on the path of every
    /// request and answer, and a short run of inline prefixes is 2 cache lines where a
    /// stride through the estimates was 24 (5% of the simulator's time at 3,000 nodes).
    keys: [u32; RttTable::CAPACITY],
    /// When each estimate's peer last answered a request of ours, in the same order:
    /// inline too, as a new peer's slot is the least recent's (a scan of all of them).
    lasts: [Time; RttTable::CAPACITY],
    peers: Vec<Estimate>,
    /// A smoothed timeout over every peer measured (microseconds, 0 before any), for
    /// peers never measured: the network is likely alike.
    typical: u32,
}

impl std::fmt::Debug for RttTable {
    /// The estimates with when each peer was last heard (not the unused inline slots).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RttTable")
            .field(
                "peers",
                &self.peers.iter().zip(&self.lasts).collect::<Vec<_>>(),
            )
            .field("typical", &self.typical)
            .finish()
    }
}

impl RttTable {
    /// Most peers with an estimate at once.
    pub const CAPACITY: usize = 32;

    /// An empty table.
    pub fn new() -> RttTable {
        RttTable::default()
    }

    /// Does `peer` have an estimate?
    pub fn knows(&self, peer: Id) -> bool {
        self.get(peer).is_some_and(|e| e.srtt > 0 || e.rttvar > 0)
    }

    fn find(&self, peer: Id) -> Option<usize> {
        let key = prefix(peer);
        self.keys[..self.peers.len()]
            .iter()
            .zip(&self.peers)
            .position(|(k, e)| *k == key && e.peer == peer)
    }

    fn get(&self, peer: Id) -> Option<&Estimate> {
        self.find(peer).map(|i| &self.peers[i])
    }

    /// Take in a round-trip sample for `peer`, measured at `now`.
    pub fn sample(&mut self, peer: Id, rtt: Duration, now: Time) {
        let rtt = micros(rtt);
        let e = self.entry(peer, now);
        if e.srtt == 0 && e.rttvar == 0 {
            e.srtt = rtt;
            e.rttvar = rtt / 2;
        } else {
            let err = e.srtt.abs_diff(rtt);
            e.rttvar = (u64::from(e.rttvar) * 3 / 4 + u64::from(err) / 4) as u32;
            e.srtt = (u64::from(e.srtt) * 7 / 8 + u64::from(rtt) / 8) as u32;
        }
        e.backoff = 0;
        let rto = u64::from(e.srtt) + 4 * u64::from(e.rttvar);
        let rto = u32::try_from(rto).unwrap_or(u32::MAX);
        self.typical = if self.typical == 0 {
            rto
        } else {
            (u64::from(self.typical) * 7 / 8 + u64::from(rto) / 8) as u32
        };
    }

    /// `peer` answered only after resends, the last of which waited `wait`: keep that as
    /// its timeout until a clean sample (Karn's backoff).
    pub fn backed_off(&mut self, peer: Id, wait: Duration, now: Time) {
        let e = self.entry(peer, now);
        e.backoff = e.backoff.max(micros(wait));
    }

    fn entry(&mut self, peer: Id, now: Time) -> &mut Estimate {
        let i = match self.find(peer) {
            Some(i) => i,
            None => {
                let len = self.peers.len();
                if len >= Self::CAPACITY {
                    // The least recent (the lowest id among those heard at that moment).
                    let lasts = &self.lasts[..len];
                    let least = lasts.iter().min().copied();
                    let oldest = (0..len)
                        .filter(|&i| Some(lasts[i]) == least)
                        .min_by_key(|&i| self.peers[i].peer);
                    if let Some(i) = oldest {
                        self.keys[i] = self.keys[len - 1];
                        self.lasts[i] = self.lasts[len - 1];
                        self.peers.swap_remove(i);
                    }
                }
                let len = self.peers.len();
                self.keys[len] = prefix(peer);
                self.peers.push(Estimate {
                    peer,
                    srtt: 0,
                    rttvar: 0,
                    backoff: 0,
                });
                len
            }
        };
        self.lasts[i] = now;
        &mut self.peers[i]
    }

    /// The timeout for a first try to `peer`: `srtt + 4·rttvar` within `[floor, ceiling]`;
    /// for a peer never measured, a smoothed average of the measured peers' timeouts (the
    /// network is likely alike), or `floor` when none is measured.
    pub fn timeout(&self, peer: Id, floor: Duration, ceiling: Duration) -> Duration {
        let t = match self.get(peer) {
            Some(e) if e.srtt > 0 || e.rttvar > 0 || e.backoff > 0 => {
                (duration(e.srtt) + duration(e.rttvar) * 4).max(duration(e.backoff))
            }
            _ if self.typical > 0 => duration(self.typical),
            _ => floor,
        };
        t.clamp(floor, ceiling.max(floor))
    }

    /// Has `peer` answered a request of ours at or after `t`? Only the
    /// [`RttTable::CAPACITY`] peers heard from last are kept: an answer older than that
    /// many others' is forgotten, and this says no.
    pub fn heard_since(&self, peer: Id, t: Time) -> bool {
        self.find(peer).is_some_and(|i| self.lasts[i] >= t)
    }

    /// When `peer` last answered a request of ours, if that is still kept (see
    /// [`RttTable::heard_since`]).
    pub fn last_heard(&self, peer: Id) -> Option<Time> {
        self.find(peer).map(|i| self.lasts[i])
    }

    /// Has any peer been measured?
    pub fn any_measured(&self) -> bool {
        self.typical > 0
    }

    /// The smoothed RTT of `peer`, if measured.
    pub fn srtt(&self, peer: Id) -> Option<Duration> {
        self.get(peer)
            .filter(|e| e.srtt > 0 || e.rttvar > 0)
            .map(|e| duration(e.srtt))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> Id {
        let mut b = [0u8; 20];
        b[0] = n;
        Id(b)
    }

    const FLOOR: Duration = Duration::from_millis(200);
    const CEILING: Duration = Duration::from_secs(10);

    #[test]
    fn unknown_peers_get_the_floor_and_slow_ones_more() {
        let mut t = RttTable::new();
        assert_eq!(t.timeout(id(1), FLOOR, CEILING), FLOOR);
        for _ in 0..20 {
            t.sample(id(1), Duration::from_millis(2000), Time::ZERO);
        }
        let rto = t.timeout(id(1), FLOOR, CEILING);
        assert!(rto >= Duration::from_millis(2000), "{rto:?}");
        assert!(rto < Duration::from_millis(2600), "{rto:?}");
        // A fast peer stays at the floor.
        t.sample(id(2), Duration::from_millis(1), Time::ZERO);
        assert_eq!(t.timeout(id(2), FLOOR, CEILING), FLOOR);
    }

    #[test]
    fn jitter_widens_the_timeout_and_the_ceiling_holds() {
        let mut t = RttTable::new();
        for k in 0..40u64 {
            let ms = if k % 2 == 0 { 100 } else { 900 };
            t.sample(id(1), Duration::from_millis(ms), Time::ZERO);
        }
        let rto = t.timeout(id(1), FLOOR, CEILING);
        assert!(rto > Duration::from_millis(1500), "{rto:?}");
        t.sample(id(3), Duration::from_secs(60), Time::ZERO);
        assert_eq!(t.timeout(id(3), FLOOR, CEILING), CEILING);
    }

    #[test]
    fn a_peer_answering_only_after_resends_keeps_the_timeout_that_worked() {
        let mut t = RttTable::new();
        t.backed_off(id(4), Duration::from_secs(2), Time::ZERO);
        assert!(!t.knows(id(4)));
        assert_eq!(t.timeout(id(4), FLOOR, CEILING), Duration::from_secs(2));
        // A clean sample replaces it.
        t.sample(id(4), Duration::from_millis(50), Time::ZERO);
        assert!(t.knows(id(4)));
        assert_eq!(t.timeout(id(4), FLOOR, CEILING), FLOOR);
    }

    #[test]
    fn the_table_is_bounded_and_forgets_the_least_recent() {
        let mut t = RttTable::new();
        for k in 0..RttTable::CAPACITY as u64 + 10 {
            let mut b = [0u8; 20];
            b[..8].copy_from_slice(&k.to_be_bytes());
            t.sample(Id(b), Duration::from_millis(5), Time(k));
        }
        assert_eq!(t.peers.len(), RttTable::CAPACITY);
        assert!(!t.knows(Id([0u8; 20])));
    }

    #[test]
    fn among_peers_heard_at_the_same_moment_the_lowest_id_is_forgotten_first() {
        let mut t = RttTable::new();
        // Ids whose first bytes (the inline prefixes) are all equal: only the whole id
        // tells them apart.
        let peer = |k: u8| {
            let mut b = [7u8; 20];
            b[19] = k;
            Id(b)
        };
        t.sample(peer(200), Duration::from_millis(5), Time(1));
        for k in 0..RttTable::CAPACITY as u8 - 1 {
            t.sample(peer(100 - k), Duration::from_millis(5), Time(2));
        }
        assert!(t.heard_since(peer(100), Time(2)));
        assert_eq!(t.last_heard(peer(200)), Some(Time(1)));
        // Full: the least recent goes first, then the lowest id heard at Time(2).
        t.sample(peer(1), Duration::from_millis(5), Time(3));
        assert!(!t.knows(peer(200)));
        t.sample(peer(2), Duration::from_millis(5), Time(3));
        let lowest = 100 - (RttTable::CAPACITY as u8 - 2);
        assert!(!t.knows(peer(lowest)));
        assert!(t.knows(peer(lowest + 1)) && t.knows(peer(1)) && t.knows(peer(2)));
        assert_eq!(t.last_heard(peer(2)), Some(Time(3)));
    }
}
