//! # chord-core
//!
//! The Chord distributed hash table as pure ring logic: no sockets, no clocks, no threads,
//! no async runtime. Everything here is driven by the caller, which makes it equally at
//! home under a real network runtime (`chord-net`) and inside the deterministic
//! simulator (`sim`) that checks it at scale.
//!
//! A tour, in reading order:
//!
//! * [`id`]: 160-bit identifiers (SHA-1, as in the Chord paper) and ring intervals.
//! * [`message`]: the requests and responses nodes exchange.
//! * [`successors`] and [`finger`]: the routing state of one node.
//! * [`lookup`]: an iterative lookup as a small state machine.
//! * [`rtt`]: round-trip estimates per peer (Jacobson/Karels) for adaptive timeouts.
//! * [`node`]: one ring position: join, stabilize, rectify, fix_fingers, leave (Pamela
//!   Zave's corrected Chord), with the quinn-proto style interface `handle`,
//!   `handle_timeout`, `poll_transmit`, `poll_timeout`, `poll_event`.
//! * `sim` (feature `sim`, off by default; `features = ["sim"]`): thousands of nodes on a virtual clock, with
//!   latency, loss, crashes, joins, leaves and partitions, and an invariant checker.
//!
//! ## From the paper to the code
//!
//! | Chord paper (Stoica et al.) / Zave | here |
//! |---|---|
//! | `n.find_successor(id)` | [`Node::lookup`], iterative: a [`Lookup`] decides whom to ask, `node/lookups.rs` drives it; one step is a [`Request::FindStep`] |
//! | `n.closest_preceding_node(id)` | [`Node::closest_preceding_nodes`] (several, best first, for fallback) |
//! | `n.create()`, `n.join(n')` | [`Node::create`], [`Node::join`] (`node/join.rs`): a member only once the owner's successor list is copied (Zave) |
//! | `n.stabilize()` | `node/stabilize.rs`: [`Request::GetNeighbors`] to the first successor |
//! | `n.notify(n')`, `n.check_predecessor()` | rectify (Zave), `node/rectify.rs`: [`Request::Rectify`]; the predecessor is pinged before it is replaced |
//! | `n.fix_fingers()`, `finger[k]` | `node/fingers.rs`, [`FingerTable`] |
//! | successor list of length r | [`SuccessorList`] (counted in hosts with virtual nodes) |
//! | voluntary departure | [`Node::leave`], `node/leave.rs`: [`Request::LeavingChecked`] |
//! | (not in the paper) merging rings after a partition | `node/merge.rs`: remembered peers and seeds probed |
//! | Zave's invariants (one ordered ring, no loops, a live successor) | `sim`'s invariant checker |
//!
//! ```
//! use chord_core::sim::{Sim, SimConfig};
//! // Build a 16-node ring by joins, let it settle, and check Zave's invariants.
//! let mut sim = Sim::new(SimConfig { seed: 7, ..SimConfig::default() });
//! sim.grow_to(16);
//! sim.settle(60);
//! assert!(sim.check_invariants().is_ok());
//! assert!(sim.is_ideal());
//! ```

#![forbid(unsafe_code)]

pub mod finger;
pub mod id;
pub mod lookup;
pub mod message;
pub mod node;
pub mod rtt;
#[cfg(feature = "sim")]
pub mod sim;
pub mod successors;
pub mod time;

pub use finger::FingerTable;
pub use id::{Id, ParseIdError, ID_BITS, ID_BYTES};
pub use lookup::{Lookup, LookupAction, LookupError, LookupOutcome};
pub use message::{Message, Peer, Request, Response, MAX_PEERS_PER_MESSAGE};
pub use node::{Config, Event, JoinError, LookupId, Node, Transmit};
pub use rtt::RttTable;
pub use successors::SuccessorList;
pub use time::Time;
