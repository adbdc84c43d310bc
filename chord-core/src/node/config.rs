//! Protocol settings.

use std::time::Duration;

/// Protocol settings. The defaults suit a LAN or loopback ring.
#[derive(Clone, Debug)]
pub struct Config {
    /// Length `r` of the successor list (default 8). A ring survives up to `r - 1`
    /// consecutive failures between stabilizations.
    pub successor_list_len: usize,
    /// Grow the successor list to `2·log2 N`, with N estimated from the list itself, the
    /// length the Chord paper's failure analysis assumes (default off).
    pub adaptive_successor_list: bool,
    /// Upper bound for the adaptive length (default 32).
    pub max_successor_list_len: usize,
    /// Period of stabilize (default 1 s).
    pub stabilize_interval: Duration,
    /// Period of fix_fingers; each tick refreshes the next distinct finger (default 1 s).
    pub fix_fingers_interval: Duration,
    /// How long to wait for an answer before resending or, with no resends left, taking
    /// the peer as failed, at least (default 1 s). This is the timeout for a peer never
    /// measured while no peer is; for the others it is the RTT estimate (`srtt + 4·rttvar`,
    /// Jacobson/Karels) when that is longer, up to `max_request_timeout`, and a peer never
    /// measured gets a smoothed average of the measured ones' timeouts. While no peer has
    /// been measured, each resend waits twice as long.
    pub request_timeout: Duration,
    /// The most a request waits for an answer, however slow the peer has been (default
    /// 10 s).
    pub max_request_timeout: Duration,
    /// Resends of an unanswered request before the peer counts as failed (default 1). Over
    /// TCP a lost message is rare, but a false suspicion costs a live successor, so one
    /// more try is cheap insurance.
    pub request_retries: u32,
    /// How long a whole lookup may take (default 10 s); one whose steps are answered is
    /// given more (each answer leaves it at least half of this), up to three times this.
    pub lookup_timeout: Duration,
    /// Most requests one lookup may send (default 128).
    pub lookup_max_queries: u32,
    /// Step requests a lookup keeps in flight at once, to its best untried candidates
    /// (Kademlia's α, default 1), not counting slow ones: a step unanswered after twice
    /// the peer's smoothed round trip (a quarter of the timeout for a peer never
    /// measured) lets the lookup ask the next candidate meanwhile (a hedged request), so a
    /// dead or slow hop costs that delay rather than a timeout and a resend, and a
    /// healthy path costs no extra messages.
    pub lookup_parallelism: usize,
    /// Closest preceding nodes returned per lookup step, so the asker can skip dead hops
    /// (default 4).
    pub closer_per_step: usize,
    /// How often to probe a remembered peer that dropped out of our tables, to find and
    /// merge with a ring that formed apart during a partition (default 10 s).
    pub merge_interval: Duration,
    /// How many such peers to remember (default 16; 0 turns merging off).
    pub remembered_peers: usize,
    /// How often to probe a seed (a bootstrap address, see [`Node::add_seed`](crate::Node::add_seed)) the same
    /// way (default 60 s): a ring split by a partition merges through it even when every
    /// peer met across the partition is gone. A node alone (its successor list empty)
    /// probes its seeds in turn with its other remembered peers, every `merge_interval`.
    pub seed_probe_interval: Duration,
    /// How long a node that told us it was leaving is kept out of our successor list,
    /// whatever stale lists say (default 60 s). A node that comes back at the same address
    /// sooner is taken again as soon as it rectifies us or answers us directly.
    pub departed_horizon: Duration,
    /// Stabilization intervals a leaving node stays up after its neighbours acknowledged
    /// its notices, answering every request with its successor list
    /// ([`Response::Departed`](crate::Response::Departed)), so that nodes further back that list it skip it at once
    /// (default 2; 0 leaves at once).
    pub leave_linger_rounds: u32,
    /// Stabilization rounds in a row in which every successor and every other node we
    /// know stays silent before we give them up and carry on as a ring of one (default 3).
    /// The silent ones are remembered and probed, so the ring merges again if they come
    /// back.
    pub silent_rounds_to_alone: u32,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            successor_list_len: 8,
            adaptive_successor_list: false,
            max_successor_list_len: 32,
            stabilize_interval: Duration::from_secs(1),
            fix_fingers_interval: Duration::from_secs(1),
            request_timeout: Duration::from_secs(1),
            max_request_timeout: Duration::from_secs(10),
            request_retries: 1,
            lookup_timeout: Duration::from_secs(10),
            lookup_max_queries: 128,
            lookup_parallelism: 1,
            closer_per_step: 4,
            merge_interval: Duration::from_secs(10),
            remembered_peers: 16,
            seed_probe_interval: Duration::from_secs(60),
            departed_horizon: Duration::from_secs(60),
            leave_linger_rounds: 2,
            silent_rounds_to_alone: 3,
        }
    }
}
