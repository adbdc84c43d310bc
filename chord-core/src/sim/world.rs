//! Changing the simulated world: hosts that join, crash and leave, loss, partitions,
//! seeds, and the lookups a scenario issues.

use super::*;

impl Sim {
    pub(super) fn host_addr(h: usize) -> SocketAddr {
        // Loopback addresses only: 127.0.0.0/8 has room for 16 million hosts. Nothing is
        // ever sent to them; they only name simulated hosts and feed their ids.
        let n = (h + 1) as u32;
        let ip = Ipv4Addr::new(127, (n >> 16) as u8, (n >> 8) as u8, n as u8);
        SocketAddr::V4(SocketAddrV4::new(ip, 2000))
    }

    pub(super) fn add_host(&mut self) -> HostId {
        let h = self.hosts.len();
        let addr = Self::host_addr(h);
        let mut idx = Vec::new();
        for v in 0..self.cfg.vnodes.max(1) {
            let me = Peer::new(Id::for_vnode(addr, v), addr);
            let i = self.nodes.len();
            self.nodes.push(SimNode {
                node: Node::new(me, self.cfg.node.clone()),
                host: h,
                timer: None,
                lookups: HashMap::new(),
            });
            self.by_id.insert(me.id, i);
            idx.push(i);
        }
        self.hosts.push(Host {
            addr,
            alive: true,
            nodes: idx,
            group: 0,
        });
        h
    }

    /// Add a host whose ring positions join now, each through a random live member (the
    /// first host creates the ring). Returns the host.
    pub fn add_joining_host(&mut self) -> HostId {
        self.add_joining_host_in(0)
    }

    /// [`Sim::add_joining_host`] for a host in partition group `group` (see
    /// [`Sim::partition`]); it joins through random members until one on its side
    /// answers (each peer it joins through becomes one of its seeds, see
    /// [`Node::add_seed`]; [`Sim::add_seed`] adds others).
    pub fn add_joining_host_in(&mut self, group: u8) -> HostId {
        let h = self.add_host();
        self.hosts[h].group = group;
        let nodes = self.hosts[h].nodes.clone();
        for i in nodes {
            if self.members.is_empty() {
                self.nodes[i].node.create(self.now);
                self.sync(i);
            } else {
                self.start_join(i);
            }
        }
        h
    }

    pub(super) fn random_member(&mut self) -> Option<usize> {
        if self.members.is_empty() {
            return None;
        }
        // Deterministic: the BTreeMap iterates in id order.
        let k = self.rng.random_range(0..self.members.len());
        let members = &self.members;
        let order = self
            .member_order
            .get_or_insert_with(|| members.values().copied().collect());
        order.get(k).copied()
    }

    pub(super) fn start_join(&mut self, i: usize) {
        if !self.hosts[self.nodes[i].host].alive {
            return;
        }
        let Some(b) = self.random_member() else {
            self.nodes[i].node.create(self.now);
            self.sync(i);
            return;
        };
        let bootstrap = self.nodes[b].node.me();
        self.nodes[i].node.join(bootstrap, self.now);
        self.sync(i);
    }

    /// Crash a host: it stops at once, without telling anyone.
    pub fn crash(&mut self, h: HostId) {
        if !self.hosts[h].alive {
            return;
        }
        self.hosts[h].alive = false;
        for i in self.hosts[h].nodes.clone() {
            let id = self.nodes[i].node.me().id;
            self.members.remove(&id);
            self.member_order = None;
            self.nodes[i].lookups.clear();
            self.nodes[i].timer = None;
        }
    }

    /// Ask every ring position of a host to leave gracefully. The host stops when all have
    /// left (or immediately if none was a member).
    pub fn leave(&mut self, h: HostId) {
        if !self.hosts[h].alive {
            return;
        }
        for i in self.hosts[h].nodes.clone() {
            // It stays a member while it checks its list; `sync` takes it out of the
            // members (it is no longer responsible for anything) once it sends its notices.
            self.nodes[i].node.leave(self.now);
            self.sync(i);
        }
    }

    /// Make every ring position of host `h` keep probing host `seed`'s first position for
    /// a ring that formed apart ([`Node::add_seed`]).
    pub fn add_seed(&mut self, h: HostId, seed: HostId) {
        let Some(&first) = self.hosts[seed].nodes.first() else {
            return;
        };
        let peer = self.nodes[first].node.me();
        for i in self.hosts[h].nodes.clone() {
            self.nodes[i].node.add_seed(peer);
        }
    }

    /// Change the message loss probability from now on.
    pub fn set_loss(&mut self, p: f64) {
        self.cfg.loss = p.clamp(0.0, 1.0);
    }

    /// Put hosts in partition groups: messages between different groups are dropped.
    /// `group(h)` gives each host's group; call with `|_| 0` to heal.
    pub fn partition(&mut self, group: impl Fn(HostId) -> u8) {
        for (h, host) in self.hosts.iter_mut().enumerate() {
            host.group = group(h);
        }
    }

    /// Would crashing `h` leave some live member without a live successor, or the ring
    /// without members? (The fault assumption of Zave's proof: a member's whole successor
    /// list never fails between two stabilizations.)
    ///
    /// Zave's model changes a node's state in atomic steps; here a stabilize answer can be
    /// in flight while its sender and everything in its list die, and the receiver would
    /// then adopt a list with no live entry. So lists in flight count too: every
    /// `Neighbors` answer on the wire must keep a survivor among its sender and its list.
    pub fn crash_would_break_ring(&self, h: HostId) -> bool {
        // A member that has started to leave (it is checking its list) will be gone soon.
        let survives = |p: &Peer| {
            self.members
                .get(&p.id)
                .is_some_and(|&j| self.nodes[j].host != h && !self.nodes[j].node.is_leaving())
        };
        let mut others = 0;
        for &m in self.members.values() {
            if self.nodes[m].host == h {
                continue;
            }
            others += 1;
            let s = self.nodes[m].node.successors();
            if !s.is_empty() && !s.iter().any(survives) {
                return true;
            }
        }
        let in_flight_list_dies = self.slots.iter().flatten().any(|a| match a {
            Action::Deliver {
                to,
                from,
                msg:
                    Message::Response {
                        body:
                            crate::Response::Neighbors { successors, .. }
                            | crate::Response::NeighborsLeaving { successors, .. },
                        ..
                    },
            } => {
                // The receiver keeps the list only up to itself (it wraps round in a small
                // ring), and at most r entries: the sender and r - 1 of its list. Only those
                // can be its live successor.
                let me = self.nodes[*to].node.me().id;
                let keep = self.nodes[*to]
                    .node
                    .successor_list_capacity()
                    .saturating_sub(1);
                self.nodes[*to].host != h
                    && self.hosts[self.nodes[*to].host].alive
                    && !survives(&self.nodes[*from].node.me())
                    && !successors
                        .iter()
                        .take_while(|p| p.id != me)
                        .take(keep)
                        .any(survives)
            }
            _ => false,
        });
        others == 0 || in_flight_list_dies
    }

    /// Start a lookup for `key` at the ring position `from`; the result is judged when it
    /// arrives and kept in [`Sim::take_lookup_records`]. A failed or wrong result is
    /// retried `retries` times, one second apart.
    pub fn lookup(&mut self, from: Id, key: Id, retries: u32) {
        let Some(&i) = self.by_id.get(&from) else {
            return;
        };
        if !self.hosts[self.nodes[i].host].alive {
            return;
        }
        let lid = self.nodes[i].node.lookup(key, self.now);
        self.nodes[i].lookups.insert(
            lid,
            PendingLookup {
                key,
                retries_left: retries,
                started: self.now,
            },
        );
        self.sync(i);
    }

    /// A random live member's id.
    pub fn random_member_id(&mut self) -> Option<Id> {
        let i = self.random_member()?;
        Some(self.nodes[i].node.me().id)
    }
}
