//! A lookup's path, hop by hop, for the live view: Chord's `find_successor` taken from
//! outside, asking each node on the way for its routing state (as the iterative lookups
//! of the paper's section 4 do), then the node's own answer beside it.

use chord_core::{Id, Peer};
use chord_net::Status;
use serde::Serialize;

use super::ring::{PeerJson, Walker};

/// Most hops a traced lookup takes (a ring of a million nodes needs about 20).
const MAX_HOPS: usize = 64;

/// What a node's routing state says about `key`.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// This node, or one of its successors, is the key's owner.
    Owner(Peer),
    /// Ask one of these next, the closest preceding the key first.
    Next(Vec<Peer>),
}

/// One step of `find_successor(key)` at the node whose state is `s`: the owner if the key
/// falls between the node and a successor in its list (`(me, s1]`, `(s1, s2]`, …), else
/// the fingers and successors that precede the key, closest first
/// (`closest_preceding_node`).
pub fn step(s: &Status, key: Id) -> Step {
    let me = s.me;
    if let Some(pred) = s.predecessor {
        if key.in_half_open(pred.id, me.id) {
            return Step::Owner(me);
        }
    }
    let mut from = me.id;
    for p in &s.successors {
        if key.in_half_open(from, p.id) {
            return Step::Owner(*p);
        }
        from = p.id;
    }
    let mut next: Vec<Peer> = s
        .fingers
        .iter()
        .map(|f| f.peer)
        .chain(s.successors.iter().copied())
        .filter(|p| p.id.in_open(me.id, key))
        .collect();
    next.sort_by_key(|p| p.id.distance_to(key));
    next.dedup_by_key(|p| p.id);
    match (next.is_empty(), s.successors.first()) {
        (false, _) => Step::Next(next),
        (true, Some(succ)) => Step::Owner(*succ),
        (true, None) => Step::Owner(me),
    }
}

/// A traced lookup, as `/api/lookup` answers it.
#[derive(Debug, Serialize)]
pub struct Trace {
    /// The key's name, as typed.
    pub name: String,
    /// Its id (SHA-1 of the name, as `chord lookup` takes it).
    pub key: String,
    /// The nodes asked, in order, from the node serving the view.
    pub path: Vec<PeerJson>,
    /// The owner found by the path (`None` if the trace broke off; see `error`).
    pub owner: Option<PeerJson>,
    /// What the serving node's own lookup answered, for comparison.
    pub node_says: Option<NodeSays>,
    /// Why the trace broke off, if it did.
    pub error: Option<String>,
}

/// A node's own answer to a lookup.
#[derive(Debug, Serialize)]
pub struct NodeSays {
    pub owner: PeerJson,
    pub hops: u32,
}

/// Trace the lookup of `name` from the walker's start node.
pub async fn trace(walker: &mut Walker, name: &str) -> Trace {
    let key = Id::for_key(name);
    let mut t = Trace {
        name: name.to_string(),
        key: key.to_string(),
        path: Vec::new(),
        owner: None,
        node_says: walker
            .lookup(walker.start(), key)
            .await
            .map(|(owner, hops)| NodeSays {
                owner: PeerJson::from(&owner),
                hops,
            }),
        error: None,
    };
    let Some(mut at) = walker.status(walker.start()).await else {
        t.error = Some(format!("{} does not answer", walker.start()));
        return t;
    };
    t.path.push(PeerJson::from(&at.me));
    while t.path.len() <= MAX_HOPS {
        match step(&at, key) {
            Step::Owner(p) => {
                t.owner = Some(PeerJson::from(&p));
                return t;
            }
            Step::Next(candidates) => {
                let mut answered = None;
                for (i, c) in candidates.iter().enumerate() {
                    match walker.ask(*c).await {
                        super::ring::Asked::Status(s) => {
                            answered = Some(*s);
                            break;
                        }
                        // The rest at once, as a walk does.
                        super::ring::Asked::Silent if i == 0 => {
                            walker.probe(&candidates[1..]).await;
                        }
                        _ => {}
                    }
                }
                let Some(s) = answered else {
                    t.error = Some(format!(
                        "none of the nodes {} routes through answered",
                        PeerJson::from(&at.me).addr
                    ));
                    return t;
                };
                t.path.push(PeerJson::from(&s.me));
                at = s;
            }
        }
    }
    t.error = Some(format!("no owner after {MAX_HOPS} hops"));
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn peer(n: u8) -> Peer {
        let mut b = [0u8; 20];
        b[0] = n;
        Peer {
            id: Id(b),
            addr: SocketAddr::from(([127, 0, 0, 1], u16::from(n))),
        }
    }

    fn key(n: u8) -> Id {
        peer(n).id
    }

    fn status(me: u8, pred: u8, succ: &[u8], fingers: &[u8]) -> Status {
        let mut s = Status::new(peer(me));
        s.predecessor = Some(peer(pred));
        s.successors = succ.iter().map(|&n| peer(n)).collect();
        s.fingers = fingers
            .iter()
            .enumerate()
            .map(|(i, &n)| chord_net::Finger::new(i as u8, peer(n).id, peer(n)))
            .collect();
        s
    }

    #[test]
    fn a_key_between_a_node_and_a_successor_is_owned_by_that_successor() {
        let s = status(10, 200, &[20, 30], &[20, 100]);
        assert_eq!(step(&s, key(15)), Step::Owner(peer(20)));
        assert_eq!(step(&s, key(25)), Step::Owner(peer(30)));
        assert_eq!(
            step(&s, key(5)),
            Step::Owner(peer(10)),
            "(pred, me] is mine"
        );
    }

    #[test]
    fn otherwise_the_closest_preceding_node_is_asked_first() {
        let s = status(10, 200, &[20, 30], &[20, 60, 100]);
        assert_eq!(
            step(&s, key(90)),
            Step::Next(vec![peer(60), peer(30), peer(20)])
        );
        // Past the top of the circle: 100 precedes 250.
        assert_eq!(
            step(&s, key(150)),
            Step::Next(vec![peer(100), peer(60), peer(30), peer(20)])
        );
    }
}
