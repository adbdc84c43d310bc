//! Replication as a plan: from what this node and an item's holders have, the copies to
//! send and the local copies to drop. Pure, so that every rule is tested without a
//! network; [`crate::maintain::maintain`] only does the asking, sending and deleting.
//!
//! The rules, per item:
//! * the *best* version is the highest among this node's copy and every holder's answer;
//! * one node sends it to the holders that lack it or hold an older version: the first
//!   holder (owner first) that has the best version, or this node when no holder has it
//!   (it is outside the replica set: a node leaving the range or the ring). Without the
//!   single sender, every holder pushed the same item to a newcomer at once;
//! * a node whose copy is older than the best never sends it (a holder back from a crash
//!   on an old store cannot roll a record back or bring a deleted one back);
//! * a node outside the replica set drops its copy once every holder has said it holds
//!   the same version or a newer one (a holder that did not answer keeps the copy here).

use std::net::SocketAddr;

use crate::record::Version;

/// What a holder said of one item: `None` if it did not answer, `Some(None)` if it does
/// not hold the item, `Some(Some(v))` if it holds version `v`.
pub type Said = Option<Option<Version>>;

/// One holder of a group of items, and what it said of each.
#[derive(Clone, Debug)]
pub struct Holder {
    /// Its address.
    pub addr: SocketAddr,
    /// Per item of the group, in order.
    pub said: Vec<Said>,
}

/// The plan for one group of items held here.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// `(item, holder)`: send this node's copy of item to that holder.
    pub send: Vec<(usize, SocketAddr)>,
    /// Items whose local copy can go.
    pub drop: Vec<usize>,
}

/// Plan the maintenance of a group of items that share their holders.
///
/// `mine[i]` is the version of this node's copy of item `i`; `holders` are the item's
/// replica set, owner first (this node among them if it is one); `k` the replication
/// factor; `leaving` that this node is about to leave the ring (it then counts as outside
/// the set, sends what no other node will, and drops nothing).
pub fn plan(me: SocketAddr, mine: &[Version], holders: &[Holder], k: usize, leaving: bool) -> Plan {
    let mut out = Plan::default();
    let in_set = holders.iter().any(|h| h.addr == me);
    for (i, &my) in mine.iter().enumerate() {
        let said = |h: &Holder| -> Said {
            if h.addr == me {
                Some(Some(my))
            } else {
                // A missing entry counts as no answer.
                h.said.get(i).copied().flatten()
            }
        };
        let best = holders
            .iter()
            .filter_map(|h| said(h).flatten())
            .fold(my, Ord::max);
        if my < best {
            // Stale here. Outside the set, the copy is useless: some holder has better.
            if !in_set && !leaving {
                out.drop.push(i);
            }
            continue;
        }
        let first = holders
            .iter()
            .find(|h| said(h) == Some(Some(best)))
            .map(|h| h.addr);
        let duty = leaving || first.is_none_or(|a| a == me);
        let mut everywhere = true;
        for h in holders.iter().filter(|h| h.addr != me) {
            match said(h) {
                None => everywhere = false,
                Some(Some(v)) if v >= best => {}
                Some(_) if duty => out.send.push((i, h.addr)),
                Some(_) => everywhere = false,
            }
        }
        // A copy sent is not yet a copy held: drop only what every holder already has.
        let sent_here = out.send.iter().any(|(j, _)| *j == i);
        if !in_set && !leaving && holders.len() >= k && everywhere && !sent_here {
            out.drop.push(i);
        }
    }
    out
}

/// The holders' claims that `todo` takes on trust, as `(item, index in holders)`: a claim
/// to hold the same version as this node's copy, when that copy is to be dropped, or when
/// this node leaves the sending to the claimant and some holder still lacks the item.
/// Anyone in the ring can answer `Versions`; before a copy goes or a repair is left to
/// someone else, these claims are proven (a holder shows it has the bytes *now*: see
/// `FilesRequest::Prove`). Claims of a newer version are not listed: those are shown in
/// full (a record fetched and its signature checked) before they are planned with.
pub fn relied_on(
    me: SocketAddr,
    mine: &[Version],
    holders: &[Holder],
    todo: &Plan,
) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for (i, &my) in mine.iter().enumerate() {
        let said = |h: &Holder| h.said.get(i).copied().flatten();
        let claims = |h: &&Holder| h.addr != me && said(h) == Some(Some(my));
        if todo.drop.contains(&i) {
            out.extend(
                holders
                    .iter()
                    .enumerate()
                    .filter(|(_, h)| claims(h))
                    .map(|(n, _)| (i, n)),
            );
            continue;
        }
        let best = holders
            .iter()
            .filter(|h| h.addr != me)
            .filter_map(|h| said(h).flatten())
            .fold(my, Ord::max);
        if my < best || todo.send.iter().any(|(j, _)| *j == i) {
            continue;
        }
        // The first holder with our version sends, if it is not us: trusted only if some
        // holder is waiting for it.
        let first = holders
            .iter()
            .position(|h| h.addr == me || said(h) == Some(Some(my)));
        let Some(first) = first.filter(|&f| holders[f].addr != me) else {
            continue;
        };
        let waiting = holders
            .iter()
            .filter(|h| h.addr != me)
            .any(|h| match said(h) {
                Some(None) => true,
                Some(Some(v)) => v < my,
                None => false,
            });
        if waiting {
            out.push((i, first));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(seq: u64) -> Version {
        Version {
            seq,
            tombstone: 0,
            digest: [0; 32],
        }
    }

    fn a(n: u8) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, n], 4000))
    }

    fn h(n: u8, said: &[Said]) -> Holder {
        Holder {
            addr: a(n),
            said: said.to_vec(),
        }
    }

    const ME: u8 = 1;

    #[test]
    fn the_first_holder_with_the_item_sends_it_once() {
        // Owner (me) and a holder have it, the third lacks it: only I send.
        let p = plan(
            a(ME),
            &[v(0)],
            &[h(ME, &[]), h(2, &[Some(Some(v(0)))]), h(3, &[Some(None)])],
            3,
            false,
        );
        assert_eq!(p.send, vec![(0, a(3))]);
        assert!(p.drop.is_empty());
        // Same, seen from the second holder: it is not the first, sends nothing.
        let p = plan(
            a(2),
            &[v(0)],
            &[h(ME, &[Some(Some(v(0)))]), h(2, &[]), h(3, &[Some(None)])],
            3,
            false,
        );
        assert_eq!(p, Plan::default());
    }

    /// What a plan takes on trust: the claims a drop rests on, and the claim of the holder
    /// left to send while another waits; nothing when every holder already has the item.
    #[test]
    fn claims_relied_on_are_those_a_drop_or_a_repair_left_to_others_rests_on() {
        // Outside the set, every holder claims it: the drop rests on all three claims.
        let holders = [
            h(2, &[Some(Some(v(0)))]),
            h(3, &[Some(Some(v(0)))]),
            h(4, &[Some(Some(v(0)))]),
        ];
        let p = plan(a(ME), &[v(0)], &holders, 3, false);
        assert_eq!(p.drop, vec![0]);
        assert_eq!(
            relied_on(a(ME), &[v(0)], &holders, &p),
            vec![(0, 0), (0, 1), (0, 2)]
        );
        // In the set, second; the first claims it and the third lacks it: I leave the
        // send to the first, on its word.
        let holders = [h(ME, &[Some(Some(v(0)))]), h(2, &[]), h(3, &[Some(None)])];
        let p = plan(a(2), &[v(0)], &holders, 3, false);
        assert_eq!(p, Plan::default());
        assert_eq!(relied_on(a(2), &[v(0)], &holders, &p), vec![(0, 0)]);
        // Nobody waits: nothing to prove.
        let holders = [
            h(ME, &[Some(Some(v(0)))]),
            h(2, &[]),
            h(3, &[Some(Some(v(0)))]),
        ];
        let p = plan(a(2), &[v(0)], &holders, 3, false);
        assert!(relied_on(a(2), &[v(0)], &holders, &p).is_empty());
        // I send myself: nothing taken on trust.
        let holders = [h(ME, &[]), h(2, &[Some(Some(v(0)))]), h(3, &[Some(None)])];
        let p = plan(a(ME), &[v(0)], &holders, 3, false);
        assert!(relied_on(a(ME), &[v(0)], &holders, &p).is_empty());
        // Once the first's claim is disproved (no answer), the duty is mine.
        let holders = [h(ME, &[None]), h(2, &[]), h(3, &[Some(None)])];
        let p = plan(a(2), &[v(0)], &holders, 3, false);
        assert_eq!(p.send, vec![(0, a(3))]);
        assert!(relied_on(a(2), &[v(0)], &holders, &p).is_empty());
    }

    #[test]
    fn a_stale_holder_never_pushes_its_old_version() {
        // I came back with seq 1; the others have the tombstone at seq 2.
        let p = plan(
            a(3),
            &[v(1)],
            &[h(ME, &[Some(Some(v(2)))]), h(2, &[Some(None)]), h(3, &[])],
            3,
            false,
        );
        assert_eq!(
            p,
            Plan::default(),
            "no send of seq 1, no drop (I am a holder)"
        );
        // The first holder with seq 2 sends it to me and to the holder that lacks it.
        let p = plan(
            a(ME),
            &[v(2)],
            &[h(ME, &[]), h(2, &[Some(None)]), h(3, &[Some(Some(v(1)))])],
            3,
            false,
        );
        assert_eq!(p.send, vec![(0, a(2)), (0, a(3))]);
    }

    #[test]
    fn outside_the_set_copies_go_only_once_every_holder_has_them() {
        let set = |s3: Said| {
            [
                h(2, &[Some(Some(v(5)))]),
                h(3, &[s3]),
                h(4, &[Some(Some(v(5)))]),
            ]
        };
        // Every holder has it: drop.
        let p = plan(a(ME), &[v(5)], &set(Some(Some(v(5)))), 3, false);
        assert_eq!(
            p,
            Plan {
                send: vec![],
                drop: vec![0]
            }
        );
        // One did not answer: keep.
        let p = plan(a(ME), &[v(5)], &set(None), 3, false);
        assert_eq!(p, Plan::default());
        // One lacks it, another holder has it: that holder sends; I keep mine meanwhile.
        let p = plan(a(ME), &[v(5)], &set(Some(None)), 3, false);
        assert_eq!(p, Plan::default());
        // No holder has it: I send to all, and keep mine until they confirm.
        let none = [
            h(2, &[Some(None)]),
            h(3, &[Some(None)]),
            h(4, &[Some(None)]),
        ];
        let p = plan(a(ME), &[v(5)], &none, 3, false);
        assert_eq!(p.send, vec![(0, a(2)), (0, a(3)), (0, a(4))]);
        assert!(p.drop.is_empty());
        // A newer version is held: my old copy outside the set goes at once.
        let p = plan(a(ME), &[v(4)], &set(Some(None)), 3, false);
        assert_eq!(
            p,
            Plan {
                send: vec![],
                drop: vec![0]
            }
        );
        // Fewer holders than k (a small ring): keep.
        let p = plan(a(ME), &[v(5)], &set(Some(Some(v(5))))[..2], 3, false);
        assert_eq!(p, Plan::default());
    }

    #[test]
    fn a_leaver_sends_what_others_lack_and_drops_nothing() {
        let p = plan(
            a(ME),
            &[v(1), v(7)],
            &[
                h(2, &[Some(Some(v(1))), Some(Some(v(6)))]),
                h(3, &[Some(None), Some(Some(v(7)))]),
            ],
            2,
            true,
        );
        assert_eq!(p.send, vec![(0, a(3)), (1, a(2))]);
        assert!(p.drop.is_empty());
    }
}
