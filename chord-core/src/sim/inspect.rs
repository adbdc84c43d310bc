//! Looking at a simulation: time, hosts, members, nodes, traffic, lookups, the truth.

use super::*;

impl Sim {
    /// Virtual time now.
    pub fn now(&self) -> Time {
        self.now
    }

    /// Settings.
    pub fn config(&self) -> &SimConfig {
        &self.cfg
    }

    /// The simulator's random number generator (for scenario drivers; using it keeps runs
    /// deterministic).
    pub fn rng(&mut self) -> &mut ChaCha8Rng {
        &mut self.rng
    }

    /// Number of hosts ever added.
    pub fn host_count(&self) -> usize {
        self.hosts.len()
    }

    /// Hosts that are alive.
    pub fn live_hosts(&self) -> Vec<HostId> {
        (0..self.hosts.len())
            .filter(|h| self.hosts[*h].alive)
            .collect()
    }

    /// Live hosts that have not started to leave.
    pub fn staying_hosts(&self) -> Vec<HostId> {
        (0..self.hosts.len())
            .filter(|h| {
                self.hosts[*h].alive
                    && !self.hosts[*h]
                        .nodes
                        .iter()
                        .any(|i| self.nodes[*i].node.is_leaving())
            })
            .collect()
    }

    /// Number of live ring members (ring positions, so hosts × vnodes).
    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    /// Has the ring member `id` started to leave (it stays a member while it checks its
    /// list before it tells its neighbours)?
    pub fn is_leaving(&self, id: Id) -> bool {
        self.by_id
            .get(&id)
            .is_some_and(|&i| self.nodes[i].node.is_leaving())
    }

    /// Live ring members in id order, with their host.
    pub fn members(&self) -> impl Iterator<Item = (Id, HostId)> + '_ {
        self.members
            .values()
            .map(|i| (self.nodes[*i].node.me().id, self.nodes[*i].host))
    }

    /// The address of a host.
    pub fn host_addr_of(&self, h: HostId) -> SocketAddr {
        self.hosts[h].addr
    }

    /// Is the host alive?
    pub fn is_alive(&self, h: HostId) -> bool {
        self.hosts[h].alive
    }

    /// The node objects of a host.
    pub fn host_nodes(&self, h: HostId) -> impl Iterator<Item = &Node> {
        self.hosts[h].nodes.iter().map(|i| &self.nodes[*i].node)
    }

    /// The node whose id is `id`, if it was ever created.
    pub fn node(&self, id: Id) -> Option<&Node> {
        self.by_id.get(&id).map(|i| &self.nodes[*i].node)
    }

    /// The host of ring position `id`.
    pub fn host_of(&self, id: Id) -> Option<HostId> {
        self.by_id.get(&id).map(|i| self.nodes[*i].host)
    }

    /// Message counters so far.
    pub fn traffic(&self) -> Traffic {
        self.traffic
    }

    /// Lookups finished so far (drains the record).
    pub fn take_lookup_records(&mut self) -> Vec<LookupRecord> {
        std::mem::take(&mut self.finished)
    }

    /// Lookups issued and not finished yet.
    pub fn lookups_in_flight(&self) -> usize {
        self.nodes.iter().map(|n| n.lookups.len()).sum::<usize>()
            + self
                .queue
                .iter()
                .filter(|Reverse((_, _, slot))| {
                    matches!(self.slots[*slot as usize], Some(Action::RetryLookup { .. }))
                })
                .count()
    }

    /// The live member responsible for `key`: the first member at or after it.
    pub fn responsible(&self, key: Id) -> Option<Peer> {
        let i = self
            .members
            .range(key..)
            .next()
            .or_else(|| self.members.iter().next())
            .map(|(_, i)| *i)?;
        Some(self.nodes[i].node.me())
    }
}
