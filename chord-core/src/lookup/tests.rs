//! The lookup state machine on its own, without any node or network.

use super::*;
use std::net::SocketAddr;

/// A peer at position `x` (in units of 2^152, so 0..=255 covers the ring).
fn p(x: u8) -> Peer {
    let mut b = [0u8; 20];
    b[0] = x;
    let addr: SocketAddr = format!("127.0.0.{x}:1").parse().expect("valid");
    Peer::new(Id(b), addr)
}

fn key(x: u8) -> Id {
    let mut b = [0u8; 20];
    b[0] = x;
    b[19] = 1; // just after position x
    Id(b)
}

#[test]
fn local_owner_needs_only_confirmation() {
    // Node 10 with successors 20, 30: key 15 is owned by 20.
    let mut l = Lookup::from_local(key(15), p(10), &[p(20), p(30)], &[], 16);
    assert_eq!(l.poll(), LookupAction::Confirm(p(20)));
    assert_eq!(l.poll(), LookupAction::Wait);
    l.on_confirm(p(20), Some(p(10)), &[p(30)]);
    match l.poll() {
        LookupAction::Done(out) => {
            assert_eq!(out.owner, p(20));
            assert_eq!(out.hops, 0);
            assert_eq!(out.successors, vec![p(30)]);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn routes_through_closest_preceding_hops() {
    // Node 10 knows fingers 50 and 100; key 120.
    let mut l = Lookup::from_local(key(120), p(10), &[p(20)], &[p(100), p(50)], 16);
    assert_eq!(l.poll(), LookupAction::Query(p(100)));
    l.on_step(p(100), &[p(110), p(130)], &[p(110)]);
    assert_eq!(l.poll(), LookupAction::Query(p(110)));
    l.on_step(p(110), &[p(130), p(140)], &[]);
    assert_eq!(l.poll(), LookupAction::Confirm(p(130)));
    l.on_confirm(p(130), Some(p(110)), &[p(140)]);
    match l.poll() {
        LookupAction::Done(out) => {
            assert_eq!(out.owner, p(130));
            assert_eq!(out.hops, 2);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn dead_hop_is_skipped_for_the_next_best() {
    let mut l = Lookup::from_local(key(120), p(10), &[p(20)], &[p(100), p(50)], 16);
    assert_eq!(l.poll(), LookupAction::Query(p(100)));
    l.on_failure(p(100).id);
    assert_eq!(l.poll(), LookupAction::Query(p(50)));
    l.on_step(p(50), &[p(60)], &[p(110)]);
    assert_eq!(l.poll(), LookupAction::Query(p(110)));
    l.on_step(p(110), &[p(130)], &[]);
    assert_eq!(l.poll(), LookupAction::Confirm(p(130)));
    assert_eq!(l.failed_peers().collect::<Vec<_>>(), vec![p(100).id]);
}

#[test]
fn dead_owner_falls_to_the_next_successor() {
    // 110's first successor 130 died; 140 now owns key 120.
    let mut l = Lookup::from_local(key(120), p(110), &[p(130), p(140), p(150)], &[], 16);
    assert_eq!(l.poll(), LookupAction::Confirm(p(130)));
    l.on_failure(p(130).id);
    assert_eq!(l.poll(), LookupAction::Confirm(p(140)));
    l.on_confirm(p(140), None, &[p(150)]);
    assert!(matches!(l.poll(), LookupAction::Done(out) if out.owner == p(140)));
}

#[test]
fn dead_successors_before_the_key_are_tried_then_skipped() {
    // Node 10's list is 20, 30, 200: key 120 lies after 20 and 30, which are tried as hops
    // first; when both are dead, 200 is the owner.
    let mut l = Lookup::from_local(key(120), p(10), &[p(20), p(30), p(200)], &[], 16);
    assert_eq!(l.poll(), LookupAction::Query(p(30)));
    l.on_failure(p(30).id);
    assert_eq!(l.poll(), LookupAction::Query(p(20)));
    l.on_failure(p(20).id);
    assert_eq!(l.poll(), LookupAction::Confirm(p(200)));
}

#[test]
fn newer_node_before_the_owner_takes_over() {
    // The covering node 110 believes 130 owns key 120, but 125 joined: 130 reports it as
    // its predecessor, and 125 is confirmed next.
    let mut l = Lookup::from_local(key(120), p(110), &[p(130)], &[], 16);
    assert_eq!(l.poll(), LookupAction::Confirm(p(130)));
    l.on_confirm(p(130), Some(p(125)), &[p(140)]);
    assert_eq!(l.poll(), LookupAction::Confirm(p(125)));
    l.on_confirm(p(125), Some(p(110)), &[p(130)]);
    assert!(matches!(l.poll(), LookupAction::Done(out) if out.owner == p(125)));
}

#[test]
fn hostile_answers_are_ignored() {
    let mut l = Lookup::from_local(key(120), p(10), &[p(20)], &[p(100)], 16);
    assert_eq!(l.poll(), LookupAction::Query(p(100)));
    // An answer from someone never asked changes nothing.
    l.on_step(p(99), &[p(121)], &[p(119)]);
    assert_eq!(l.poll(), LookupAction::Wait);
    // 100 claims "closer" nodes that are behind it or past the key: not taken.
    l.on_step(p(100), &[p(105)], &[p(5), p(200), p(100)]);
    assert_eq!(l.poll(), LookupAction::Query(p(105)));
    // A confirmation from a node we did not ask is ignored.
    l.on_confirm(p(7), None, &[]);
    assert_eq!(l.poll(), LookupAction::Wait);
}

#[test]
fn gives_up_when_out_of_candidates_or_budget() {
    let mut l = Lookup::new(key(120), &[p(50)], 16);
    assert_eq!(l.poll(), LookupAction::Query(p(50)));
    l.on_failure(p(50).id);
    assert_eq!(l.poll(), LookupAction::Failed(LookupError::NoRoute));

    // A chain of hops that never covers the key stops at the query budget.
    let mut l = Lookup::new(key(250), &[p(1)], 5);
    for x in 1..=5u8 {
        assert_eq!(l.poll(), LookupAction::Query(p(x)));
        l.on_step(p(x), &[p(x + 1)], &[p(x + 1)]);
    }
    assert_eq!(l.poll(), LookupAction::Failed(LookupError::TooManyQueries));
}

#[test]
fn an_owner_that_does_not_own_the_key_hands_on_to_its_predecessor_then_gives_up() {
    // Node 10 with successors 20, 30: key 15 is owned by 20.
    let mut l = Lookup::from_local(key(15), p(10), &[p(20), p(30)], &[], 16);
    assert_eq!(l.poll(), LookupAction::Confirm(p(20)));
    // 20's confirmation is lost: 30 is tried next.
    l.on_failure(p(20).id);
    assert_eq!(l.poll(), LookupAction::Confirm(p(30)));
    // 30 says its predecessor is 20, so 30 does not own key 15: 20 gets a second chance.
    l.on_confirm(p(30), Some(p(20)), &[p(40)]);
    assert_eq!(l.poll(), LookupAction::Confirm(p(20)));
    l.on_confirm(p(20), Some(p(10)), &[p(30)]);
    match l.poll() {
        LookupAction::Done(out) => assert_eq!(out.owner, p(20)),
        other => panic!("{other:?}"),
    }

    // The same, but 20 stays silent: the lookup says it is unsure instead of naming 30.
    let mut l = Lookup::from_local(key(15), p(10), &[p(20), p(30)], &[], 16);
    assert_eq!(l.poll(), LookupAction::Confirm(p(20)));
    l.on_failure(p(20).id);
    assert_eq!(l.poll(), LookupAction::Confirm(p(30)));
    l.on_confirm(p(30), Some(p(20)), &[p(40)]);
    assert_eq!(l.poll(), LookupAction::Confirm(p(20)));
    l.on_failure(p(20).id);
    assert_eq!(l.poll(), LookupAction::Confirm(p(30)));
    l.on_confirm(p(30), Some(p(20)), &[p(40)]);
    assert_eq!(l.poll(), LookupAction::Failed(LookupError::Unsure));

    // Once 30 has noticed and taken 10 as its predecessor, 30 is the answer.
    let mut l = Lookup::from_local(key(15), p(10), &[p(20), p(30)], &[], 16);
    assert_eq!(l.poll(), LookupAction::Confirm(p(20)));
    l.on_failure(p(20).id);
    assert_eq!(l.poll(), LookupAction::Confirm(p(30)));
    l.on_confirm(p(30), Some(p(10)), &[p(40)]);
    match l.poll() {
        LookupAction::Done(out) => assert_eq!(out.owner, p(30)),
        other => panic!("{other:?}"),
    }
}

/// 110's list is 130, 140; key 120 is owned by 130, whose confirmation is lost, and 140
/// is being confirmed.
fn owner_130_lost_140_asked() -> Lookup {
    let mut l = Lookup::from_local(key(120), p(110), &[p(130), p(140)], &[], 16);
    assert_eq!(l.poll(), LookupAction::Confirm(p(130)));
    l.on_failure(p(130).id);
    assert_eq!(l.poll(), LookupAction::Confirm(p(140)));
    l
}

#[test]
fn an_owner_without_a_predecessor_whose_list_passes_the_key_hands_on() {
    // 110's list is 130, 140: key 120 is owned by 130, whose confirmation is lost. 140
    // has no predecessor (it dropped a dead one) but its list, round the ring, names 130
    // before it: 140 does not own key 120, and 130 gets a second chance.
    let mut l = owner_130_lost_140_asked();
    l.on_confirm(p(140), None, &[p(150), p(10), p(130)]);
    assert_eq!(l.poll(), LookupAction::Confirm(p(130)));
    l.on_confirm(p(130), Some(p(110)), &[p(140)]);
    assert!(matches!(l.poll(), LookupAction::Done(out) if out.owner == p(130)));

    // 130 silent again: likely dead, its news not round the ring yet; 140 is the owner.
    let mut l = owner_130_lost_140_asked();
    l.on_confirm(p(140), None, &[p(150), p(10), p(130)]);
    assert_eq!(l.poll(), LookupAction::Confirm(p(130)));
    l.on_failure(p(130).id);
    assert_eq!(l.poll(), LookupAction::Confirm(p(140)));
    l.on_confirm(p(140), None, &[p(150), p(10), p(130)]);
    assert!(matches!(l.poll(), LookupAction::Done(out) if out.owner == p(140)));

    // An entry before the key, then one in [key, 140): the latter is asked.
    let mut l = owner_130_lost_140_asked();
    l.on_confirm(p(140), None, &[p(150), p(10), p(125), p(130)]);
    assert_eq!(l.poll(), LookupAction::Confirm(p(125)));

    // A list that stops before the key does not count against 140.
    let mut l = owner_130_lost_140_asked();
    l.on_confirm(p(140), None, &[p(150), p(10), p(110)]);
    assert!(matches!(l.poll(), LookupAction::Done(out) if out.owner == p(140)));
}

#[test]
fn a_node_without_a_predecessor_owns_its_own_id() {
    // A lookup of a node's own id (a merge probe) ends at the node itself; with no
    // predecessor its list, whatever it holds, names nobody nearer (found in review: an
    // interval [key, key) taken as the whole ring sent the lookup back and forth between
    // the node and its successor until its query budget ran out).
    let mut l = owner_130_lost_140_asked();
    // 140's list wraps round to 120's own position.
    let own = Peer::new(key(120), p(120).addr);
    l.on_confirm(p(140), None, &[p(150), p(10), own]);
    assert_eq!(l.poll(), LookupAction::Confirm(own));
    l.on_confirm(own, None, &[p(130), p(140)]);
    assert!(matches!(l.poll(), LookupAction::Done(out) if out.owner == own));
}

/// Candidates whose ranks agree in their first 8 bytes (the prefixes the search reads
/// first) are still found, ordered and told apart by their whole rank.
#[test]
fn candidates_sharing_a_rank_prefix_are_told_apart() {
    // Position 100 plus a low byte: the same first 8 bytes, and so the same rank prefix
    // for a key far from all of them.
    let near = |low: u8| {
        let mut b = [0u8; 20];
        b[0] = 100;
        b[19] = low;
        Peer::new(Id(b), SocketAddr::from(([127, 0, 1, low], 1)))
    };
    let k = key(200);
    let mut l = Lookup::new(k, &[near(5), near(9), near(7), near(8)], 16);
    // Best first: the one nearest before the key.
    assert_eq!(l.poll(), LookupAction::Query(near(9)));
    l.on_failure(near(9).id);
    assert_eq!(l.poll(), LookupAction::Query(near(8)));
    // Its answer is found among the others of its prefix, and names a better hop.
    l.on_step(near(8), &[p(150)], &[]);
    assert_eq!(l.poll(), LookupAction::Query(p(150)));
    l.on_failure(p(150).id);
    assert_eq!(l.poll(), LookupAction::Query(near(7)));
    l.on_failure(near(7).id);
    assert_eq!(l.poll(), LookupAction::Query(near(5)));
    l.on_failure(near(5).id);
    assert_eq!(l.poll(), LookupAction::Failed(LookupError::NoRoute));
    assert_eq!(l.hops(), 1);
    let failed: Vec<Id> = l.failed_peers().collect();
    assert_eq!(failed, vec![p(150).id, near(9).id, near(7).id, near(5).id]);
}
