//! The ring as the live view shows it: walked by successors from one node, like `chord
//! ring`, but carrying on past a node that does not answer (drawn as such until
//! stabilization takes it out of its neighbours' lists), and what changed between two
//! walks, in words.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chord_core::Peer;
use chord_files::wire::{FilesRequest, FilesResponse};
use chord_net::{Client, Limits, NetworkKey, Status};
use serde::Serialize;

/// Most nodes a view walks (the page draws them all; a bigger ring is cut short, and
/// `complete` says so).
pub const MAX_NODES: usize = 1024;

/// How long one question to one node may take, connecting included.
const ASK_DEADLINE: Duration = Duration::from_secs(2);

/// How long a whole walk may take; a longer one is cut short (not `complete`).
const WALK_BUDGET: Duration = Duration::from_secs(5);

/// How long an address that did not answer is taken as silent without asking again.
const SILENT_FOR: Duration = Duration::from_secs(30);

/// Largest answer a view takes from a node (an honest status is about 12 KiB).
const MAX_ANSWER: u32 = 256 * 1024;

/// A peer as JSON: its id in hex and its address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PeerJson {
    pub id: String,
    pub addr: String,
}

impl From<&Peer> for PeerJson {
    fn from(p: &Peer) -> PeerJson {
        PeerJson {
            id: p.id.to_string(),
            addr: p.addr.to_string(),
        }
    }
}

/// One row of a finger table, as JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FingerJson {
    pub index: u8,
    pub peer: PeerJson,
}

/// One node of the ring: what it says of itself (nothing if it did not answer).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RingNode {
    pub id: String,
    pub addr: String,
    /// Did it answer? A node that does not is still in its predecessor's list.
    pub answering: bool,
    pub successor: Option<PeerJson>,
    pub predecessor: Option<PeerJson>,
    pub successors: Vec<PeerJson>,
    pub fingers: Vec<FingerJson>,
    /// Bytes its files service stores (`None`: it did not say).
    pub stored: Option<u64>,
    /// Items (blocks and records) it holds (`None`: it did not say).
    pub items: Option<u64>,
}

impl RingNode {
    /// A node that answered with `s`.
    pub fn answered(s: &Status, stats: Option<(u64, u64)>) -> RingNode {
        RingNode {
            id: s.me.id.to_string(),
            addr: s.me.addr.to_string(),
            answering: true,
            successor: s.successors.first().map(PeerJson::from),
            predecessor: s.predecessor.as_ref().map(PeerJson::from),
            successors: s.successors.iter().map(PeerJson::from).collect(),
            fingers: s
                .fingers
                .iter()
                .map(|f| FingerJson {
                    index: f.index,
                    peer: PeerJson::from(&f.peer),
                })
                .collect(),
            stored: stats.map(|s| s.0),
            items: stats.map(|s| s.1),
        }
    }

    /// A node named in a successor list that did not answer.
    fn silent(p: &Peer) -> RingNode {
        RingNode {
            id: p.id.to_string(),
            addr: p.addr.to_string(),
            answering: false,
            successor: None,
            predecessor: None,
            successors: Vec::new(),
            fingers: Vec::new(),
            stored: None,
            items: None,
        }
    }
}

/// A walk of the ring: the JSON of `chord ring --json` and `/api/ring`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RingView {
    /// The nodes in successor order, the node walked from first.
    pub nodes: Vec<RingNode>,
    /// Every node answered, each one's successor names the next as its predecessor, and
    /// the walk goes round the circle once (as `chord ring` checks).
    pub consistent: bool,
    /// The walk came back to its start (not cut short at [`MAX_NODES`] or at a node
    /// without successors).
    pub complete: bool,
}

impl RingView {
    /// How many nodes, in words: positions, and hosts when virtual nodes make them
    /// differ ("5 nodes", "16 positions on 4 hosts").
    pub fn size(&self) -> String {
        let hosts: HashSet<&str> = self.nodes.iter().map(|n| n.addr.as_str()).collect();
        match (self.nodes.len(), hosts.len()) {
            (1, _) => "1 node".into(),
            (n, h) if n == h => format!("{n} nodes"),
            (n, h) => format!("{n} positions on {h} hosts"),
        }
    }

    /// The view of a walk in which every node answered (`chord ring`).
    pub fn of_walk(walk: &[Status], stats: &[Option<(u64, u64)>]) -> RingView {
        RingView {
            nodes: walk
                .iter()
                .enumerate()
                .map(|(i, s)| RingNode::answered(s, stats.get(i).copied().flatten()))
                .collect(),
            consistent: chord_net::ring::is_consistent(walk),
            complete: true,
        }
    }
}

/// Asks the nodes of a ring, keeping one connection to each node it walked last.
pub struct Walker {
    start: SocketAddr,
    key: Option<NetworkKey>,
    limits: Limits,
    clients: HashMap<SocketAddr, Client>,
    /// Addresses that did not answer, and until when they are taken as silent.
    silent: HashMap<SocketAddr, Instant>,
}

impl Walker {
    /// A walker that starts at `start` (with the ring's network key, if any).
    pub fn new(start: SocketAddr, key: Option<NetworkKey>) -> Walker {
        let limits = Limits {
            connect_timeout: Duration::from_secs(1),
            frame_timeout: ASK_DEADLINE,
            handshake_timeout: ASK_DEADLINE,
            busy_deadline: Duration::ZERO,
            max_frame: MAX_ANSWER,
            ..Limits::default()
        };
        Walker {
            start,
            key,
            limits,
            clients: HashMap::new(),
            silent: HashMap::new(),
        }
    }

    /// The node the walks start at.
    pub fn start(&self) -> SocketAddr {
        self.start
    }

    /// A connection to `addr`: the kept one, or a new one.
    async fn client(&mut self, addr: SocketAddr) -> Option<&mut Client> {
        if !self.clients.contains_key(&addr) {
            let c = deadline(Client::connect_with_key(
                addr,
                self.limits.clone(),
                self.key.as_ref(),
            ))
            .await?;
            self.clients.insert(addr, c);
        }
        self.clients.get_mut(&addr)
    }

    /// How many times to ask `addr`: twice over a kept connection (it may have been
    /// closed since: then a new one), once over a new one.
    fn tries(&self, addr: SocketAddr) -> usize {
        if self.clients.contains_key(&addr) {
            2
        } else {
            1
        }
    }

    /// The status of the node at `addr`, within [`ASK_DEADLINE`]; a kept connection that
    /// fails is dropped and a new one tried once.
    pub async fn status(&mut self, addr: SocketAddr) -> Option<Status> {
        for _ in 0..self.tries(addr) {
            let c = self.client(addr).await?;
            if let Some(s) = deadline(c.status()).await {
                return Some(s);
            }
            self.clients.remove(&addr);
        }
        None
    }

    /// The status of ring position `p` (one of the virtual nodes of the node at
    /// `p.addr`), within [`ASK_DEADLINE`]. An address that did not answer is not asked
    /// again for [`SILENT_FOR`].
    pub async fn ask(&mut self, p: Peer) -> Asked {
        if self.is_silent(p.addr) {
            return Asked::Silent;
        }
        for _ in 0..self.tries(p.addr) {
            let Some(c) = self.client(p.addr).await else {
                break;
            };
            match within(c.status_of(p.id)).await {
                Some(Ok(s)) if s.me.id == p.id => return Asked::Status(Box::new(s)),
                // A refusal (no such position here) or an answer for another position:
                // the host answers, but not for this position; a second try would say
                // the same.
                Some(Ok(_)) | Some(Err(chord_net::Error::Remote(..))) => return Asked::NotHere,
                Some(Err(_)) | None => {
                    self.clients.remove(&p.addr);
                }
            }
        }
        self.mark_silent(p.addr);
        Asked::Silent
    }

    fn is_silent(&mut self, addr: SocketAddr) -> bool {
        let now = Instant::now();
        self.silent.retain(|_, until| *until > now);
        self.silent.contains_key(&addr)
    }

    fn mark_silent(&mut self, addr: SocketAddr) {
        if self.silent.len() < MAX_NODES {
            self.silent.insert(addr, Instant::now() + SILENT_FOR);
        }
    }

    /// Connect to the addresses of `peers` not known yet, all at once, within one
    /// [`ASK_DEADLINE`]: those that answer are kept for [`Walker::ask`], the others taken
    /// as silent. After one silent entry of a list the rest is probed this way, so that a
    /// list of addresses that accept and never answer costs a walk one deadline, not one
    /// each.
    pub async fn probe(&mut self, peers: &[Peer]) {
        let mut addrs: Vec<SocketAddr> = Vec::new();
        for p in peers {
            if !self.clients.contains_key(&p.addr)
                && !self.is_silent(p.addr)
                && !addrs.contains(&p.addr)
            {
                addrs.push(p.addr);
            }
        }
        addrs.truncate(chord_core::MAX_PEERS_PER_MESSAGE);
        let (limits, key) = (&self.limits, self.key.as_ref());
        let connected = futures::future::join_all(
            addrs
                .iter()
                .map(|&a| deadline(Client::connect_with_key(a, limits.clone(), key))),
        )
        .await;
        for (a, c) in addrs.into_iter().zip(connected) {
            match c {
                Some(c) => {
                    self.clients.insert(a, c);
                }
                None => self.mark_silent(a),
            }
        }
    }

    /// The node at `addr`'s own lookup of `key`: the owner and the hops it took.
    pub async fn lookup(&mut self, addr: SocketAddr, key: chord_core::Id) -> Option<(Peer, u32)> {
        let c = self.client(addr).await?;
        let answer = deadline(c.lookup(key)).await;
        if answer.is_none() {
            self.clients.remove(&addr);
        }
        answer
    }

    /// Bytes stored and items held by the files service at `addr`, if it says.
    pub async fn stats(&mut self, addr: SocketAddr) -> Option<(u64, u64)> {
        let req = chord_files::encode(&FilesRequest::Stats).ok()?;
        let c = self.client(addr).await?;
        let answer = deadline(c.call(chord_files::SERVICE, req)).await;
        let Some(answer) = answer else {
            self.clients.remove(&addr);
            return None;
        };
        match chord_files::decode::<FilesResponse>(&answer).ok()? {
            FilesResponse::Stats { stored, items } => Some((stored, items)),
            _ => None,
        }
    }

    /// Walk the ring from the start node by successors. A node that does not answer is
    /// kept, as silent, and the walk goes on with the next entry of the last answering
    /// node's successor list; an entry its host says it does not hold is left out. A walk
    /// stops after [`MAX_NODES`] positions or [`WALK_BUDGET`] (then it is not `complete`).
    /// `None` if the start node does not answer.
    pub async fn walk(&mut self) -> Option<RingView> {
        let began = Instant::now();
        let first = self.status(self.start).await?;
        let mut nodes = Vec::new();
        let mut statuses = Vec::new();
        let mut seen = HashSet::new();
        let mut all_answered = true;
        let mut next: Vec<Peer> = first.successors.clone();
        let mut complete = false;
        seen.insert(first.me.id);
        let mut hosts = HashSet::from([first.me.addr]);
        let stats = self.stats(first.me.addr).await;
        nodes.push(RingNode::answered(&first, stats));
        statuses.push(first);
        while nodes.len() < MAX_NODES && began.elapsed() < WALK_BUDGET {
            let Some(p) = next.first().copied() else {
                break;
            };
            if seen.contains(&p.id) {
                complete = true;
                break;
            }
            seen.insert(p.id);
            match self.ask(p).await {
                Asked::Status(s) => {
                    // A host's bytes and items once, at its first position walked.
                    let stats = if hosts.insert(p.addr) {
                        self.stats(p.addr).await
                    } else {
                        None
                    };
                    nodes.push(RingNode::answered(&s, stats));
                    next = s.successors.clone();
                    statuses.push(*s);
                }
                Asked::Silent => {
                    // Skip to the next entry of the list that named it, after asking the
                    // rest of the list at once.
                    all_answered = false;
                    nodes.push(RingNode::silent(&p));
                    next.remove(0);
                    self.probe(&next).await;
                }
                Asked::NotHere => {
                    next.remove(0);
                }
            }
        }
        let walked: HashSet<SocketAddr> =
            nodes.iter().filter_map(|n| n.addr.parse().ok()).collect();
        self.clients.retain(|a, _| walked.contains(a));
        Some(RingView {
            consistent: all_answered && complete && chord_net::ring::is_consistent(&statuses),
            complete,
            nodes,
        })
    }
}

/// What asking a ring position for its status gave.
pub enum Asked {
    /// Its status.
    Status(Box<Status>),
    /// Its host answers, but holds no such position.
    NotHere,
    /// Nothing in time.
    Silent,
}

/// `f`'s value if it comes within [`ASK_DEADLINE`] and is `Ok`.
async fn deadline<T, E>(f: impl std::future::Future<Output = Result<T, E>>) -> Option<T> {
    within(f).await?.ok()
}

/// `f`'s result if it comes within [`ASK_DEADLINE`].
async fn within<T>(f: impl std::future::Future<Output = T>) -> Option<T> {
    chord_net::frame::timeout(ASK_DEADLINE, f).await
}

/// One thing that happened between two walks, for the page's log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Change {
    /// `join`, `leave`, `crash`, `gap-closed`, `stabilize`, `rectify`, `items`, `ring`.
    pub kind: &'static str,
    /// The node it is about (its id), if any.
    pub node: Option<String>,
    /// In words.
    pub text: String,
    /// When it was seen, in milliseconds since the Unix epoch.
    pub at_ms: u64,
}

/// What tells one walk from the next. A node that leaves gracefully tells its neighbours,
/// so it is gone from the next walk without ever being seen silent: a *leave*. A node
/// that crashes is first seen silent (its predecessor still names it): a *crash*; when
/// stabilization drops it from the lists, the gap is closed. `silent` carries the nodes
/// seen silent from one call to the next.
pub struct Changes {
    silent: HashSet<String>,
}

impl Changes {
    pub fn new() -> Changes {
        Changes {
            silent: HashSet::new(),
        }
    }

    /// The changes from `old` to `new`, seen at `at_ms`.
    pub fn between(&mut self, old: &RingView, new: &RingView, at_ms: u64) -> Vec<Change> {
        let before: HashMap<&str, &RingNode> =
            old.nodes.iter().map(|n| (n.id.as_str(), n)).collect();
        let after: HashMap<&str, &RingNode> =
            new.nodes.iter().map(|n| (n.id.as_str(), n)).collect();
        let mut out = Vec::new();
        let change = |kind, n: &RingNode, text: String| Change {
            kind,
            node: Some(n.id.clone()),
            text,
            at_ms,
        };
        for n in &new.nodes {
            let was = before.get(n.id.as_str());
            if !n.answering {
                if self.silent.insert(n.id.clone()) {
                    out.push(change(
                        "crash",
                        n,
                        format!("{} stopped answering (crashed?)", name(n)),
                    ));
                }
                continue;
            }
            if self.silent.remove(&n.id) {
                out.push(change("join", n, format!("{} answers again", name(n))));
            }
            let Some(was) = was else {
                out.push(change("join", n, format!("{} joined", name(n))));
                continue;
            };
            if !was.answering {
                continue;
            }
            if was.successor != n.successor {
                out.push(change(
                    "stabilize",
                    n,
                    format!("{}: successor is now {}", name(n), peer(&n.successor)),
                ));
            }
            if was.predecessor != n.predecessor {
                out.push(change(
                    "rectify",
                    n,
                    format!("{}: predecessor is now {}", name(n), peer(&n.predecessor)),
                ));
            }
            if was.items != n.items {
                if let Some(items) = n.items {
                    let delta = i128::from(items) - i128::from(was.items.unwrap_or(0));
                    out.push(change(
                        "items",
                        n,
                        format!("{} holds {items} items ({delta:+})", name(n)),
                    ));
                }
            }
        }
        // A walk cut short says nothing of the nodes it did not reach.
        let gone = if new.complete { &old.nodes[..] } else { &[] };
        for n in gone {
            if after.contains_key(n.id.as_str()) {
                continue;
            }
            if self.silent.remove(&n.id) {
                out.push(change(
                    "gap-closed",
                    n,
                    format!("stabilization closed the gap of {}", name(n)),
                ));
            } else {
                out.push(change("leave", n, format!("{} left", name(n))));
            }
        }
        if old.consistent != new.consistent {
            out.push(Change {
                kind: "ring",
                node: None,
                text: if new.consistent {
                    format!("ring consistent ({})", new.size())
                } else {
                    "ring not consistent".into()
                },
                at_ms,
            });
        }
        out
    }
}

/// A node in a log line: its address and the first digits of its id.
fn name(n: &RingNode) -> String {
    format!("{} ({})", n.addr, &n.id[..n.id.len().min(8)])
}

fn peer(p: &Option<PeerJson>) -> String {
    p.as_ref()
        .map_or("(none)".into(), |p| format!("{} ({})", p.addr, &p.id[..8]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, succ: &str, pred: &str) -> RingNode {
        let p = |s: &str| {
            Some(PeerJson {
                id: s.repeat(8),
                addr: format!("127.0.0.1:{}", s.len()),
            })
        };
        RingNode {
            id: id.repeat(8),
            addr: "127.0.0.1:1".into(),
            answering: true,
            successor: p(succ),
            predecessor: p(pred),
            successors: Vec::new(),
            fingers: Vec::new(),
            stored: Some(0),
            items: Some(0),
        }
    }

    fn view(nodes: Vec<RingNode>, consistent: bool) -> RingView {
        RingView {
            nodes,
            consistent,
            complete: true,
        }
    }

    fn kinds(c: &[Change]) -> Vec<&str> {
        c.iter().map(|c| c.kind).collect()
    }

    #[test]
    fn a_crash_is_seen_silent_then_its_gap_closes() {
        let mut ch = Changes::new();
        let ring = view(
            vec![
                node("a", "b", "c"),
                node("b", "c", "a"),
                node("c", "a", "b"),
            ],
            true,
        );
        let mut b_silent = ring.clone();
        b_silent.nodes[1] = RingNode {
            answering: false,
            successor: None,
            predecessor: None,
            stored: None,
            items: None,
            ..node("b", "c", "a")
        };
        b_silent.consistent = false;
        assert_eq!(kinds(&ch.between(&ring, &b_silent, 0)), ["crash", "ring"]);
        // Still silent: nothing new.
        assert_eq!(
            kinds(&ch.between(&b_silent, &b_silent, 0)),
            Vec::<&str>::new()
        );
        let healed = view(vec![node("a", "c", "c"), node("c", "a", "a")], true);
        assert_eq!(
            kinds(&ch.between(&b_silent, &healed, 0)),
            ["stabilize", "rectify", "gap-closed", "ring"]
        );
    }

    #[test]
    fn a_node_gone_without_being_silent_left_and_a_new_one_joined() {
        let mut ch = Changes::new();
        let ring = view(vec![node("a", "b", "b"), node("b", "a", "a")], true);
        let after = view(vec![node("a", "c", "c"), node("c", "a", "a")], true);
        let c = ch.between(&ring, &after, 0);
        assert_eq!(kinds(&c), ["stabilize", "rectify", "join", "leave"]);
        assert!(c[3].text.ends_with("left"), "{}", c[3].text);
    }

    /// Found in review: a member listing addresses that accept connections and never
    /// answer cost every walk 2 s each, 120 s with 60 of them. One that did not answer is
    /// now taken as silent, without asking, for a while.
    #[test]
    fn a_position_that_does_not_answer_is_not_asked_again_for_a_while() {
        // Accepted by the kernel, never answered.
        let hole = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = hole.local_addr().expect("addr");
        let p = Peer::new(chord_core::Id::for_addr(addr), addr);
        let mut w = Walker::new(addr, None);
        futures_lite::future::block_on(async {
            assert!(matches!(w.ask(p).await, Asked::Silent));
            assert!(w.silent.contains_key(&p.addr), "remembered as silent");
            assert!(w.clients.is_empty(), "no connection kept to it");
            assert!(matches!(w.ask(p).await, Asked::Silent));
            // Another position of that address: silent too, without asking.
            let q = Peer::new(chord_core::Id::for_vnode(addr, 1), addr);
            assert!(matches!(w.ask(q).await, Asked::Silent));
        });
    }

    /// Found in the second review: a member listing 60 positions at addresses that never
    /// answer kept every walk past its time budget (2 s each). After the first silent
    /// entry, the rest of the list is probed at once: one deadline for all.
    #[test]
    fn a_list_of_silent_addresses_costs_one_deadline() {
        let holes: Vec<std::net::TcpListener> = (0..20)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
            .collect();
        let peers: Vec<Peer> = holes
            .iter()
            .map(|h| {
                let a = h.local_addr().expect("addr");
                Peer::new(chord_core::Id::for_addr(a), a)
            })
            .collect();
        let mut w = Walker::new(peers[0].addr, None);
        futures_lite::future::block_on(w.probe(&peers));
        for p in &peers {
            assert!(w.is_silent(p.addr), "{} not marked silent", p.addr);
        }
    }

    /// Found in review: a walk cut short (time budget) reported every node it did not
    /// reach as gone ("left", "gap closed").
    #[test]
    fn a_walk_cut_short_reports_nobody_gone() {
        let mut ch = Changes::new();
        let ring = view(vec![node("a", "b", "b"), node("b", "a", "a")], true);
        let mut short = view(vec![node("a", "b", "b")], false);
        short.complete = false;
        assert_eq!(kinds(&ch.between(&ring, &short, 0)), ["ring"]);
    }

    #[test]
    fn items_held_are_reported_with_their_change() {
        let mut ch = Changes::new();
        let ring = view(vec![node("a", "a", "a")], true);
        let mut more = ring.clone();
        more.nodes[0].items = Some(3);
        let c = ch.between(&ring, &more, 0);
        assert_eq!(kinds(&c), ["items"]);
        assert!(c[0].text.contains("3 items (+3)"), "{}", c[0].text);
    }

    /// Found in review: a node answering `Stats` with 1 then 2^63 items overflowed the
    /// difference (a panic in debug builds that stopped the view's walks).
    #[test]
    fn any_item_counts_make_a_change_without_overflow() {
        let mut ch = Changes::new();
        let mut a = view(vec![node("a", "a", "a")], true);
        a.nodes[0].items = Some(1);
        let mut b = a.clone();
        b.nodes[0].items = Some(u64::MAX);
        let c = ch.between(&a, &b, 0);
        assert!(
            c[0].text.contains("(+18446744073709551614)"),
            "{}",
            c[0].text
        );
        let c = ch.between(&b, &a, 0);
        assert!(
            c[0].text.contains("(-18446744073709551614)"),
            "{}",
            c[0].text
        );
    }
}
