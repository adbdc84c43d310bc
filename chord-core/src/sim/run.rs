//! Running a simulation: the event queue, delivering messages with loss and latency,
//! firing timers, and checking the invariants on the way.

use super::*;

impl Sim {
    pub(super) fn schedule(&mut self, at: Time, a: Action) {
        self.seq += 1;
        let slot = match self.free_slots.pop() {
            Some(k) => {
                self.slots[k as usize] = Some(a);
                k
            }
            None => {
                self.slots.push(Some(a));
                (self.slots.len() - 1) as u32
            }
        };
        self.queue.push(Reverse((at, self.seq, slot)));
    }

    /// Run until virtual time `until` (inclusive), checking the invariants on the way
    /// every [`SimConfig::check_every`].
    pub fn run_until(&mut self, until: Time) {
        if let Some(every) = self.cfg.check_every {
            while self.next_check <= until {
                let t = self.next_check;
                self.run_events_until(t);
                self.checks += 1;
                if !self.unordered_appendages().is_empty() {
                    self.appendage_disorder += 1;
                }
                if let Err(vs) = self.check_invariants() {
                    if self.first_violation_dump.is_none() {
                        let why: Vec<String> = vs.iter().map(|v| self.explain(v)).collect();
                        self.first_violation_dump =
                            Some(format!("{}\n{}", why.join("\n"), self.dump()));
                    }
                    self.violation_count += vs.len() as u64;
                    for v in vs {
                        if self.violations.len() < 100 {
                            self.violations.push((t, v));
                        }
                    }
                }
                self.next_check = t + every;
            }
        }
        self.run_events_until(until);
    }

    /// Grow the ring to `n` hosts by joins: waves as large as the ring already is, joins
    /// spread over one stabilization interval, four intervals between waves.
    pub fn grow_to(&mut self, n: usize) {
        let interval = self.cfg.node.stabilize_interval;
        while self.host_count() < n {
            let wave = (n - self.host_count()).min(self.host_count().max(1));
            let start = self.now;
            for k in 0..wave {
                self.run_until(start + interval.mul_f64(k as f64 / wave as f64));
                self.add_joining_host();
            }
            self.run_for(interval * 4);
        }
    }

    /// Run one stabilization interval at a time until every successor list, predecessor
    /// and finger is exact, at most `max_rounds` intervals. Returns the intervals it took,
    /// or `None` if the ring did not settle.
    pub fn settle(&mut self, max_rounds: u32) -> Option<u32> {
        for round in 0..=max_rounds {
            if self.is_ideal() && self.finger_accuracy() >= 1.0 {
                return Some(round);
            }
            if round < max_rounds {
                self.run_for(self.cfg.node.stabilize_interval);
            }
        }
        None
    }

    /// Run one stabilization interval at a time until every successor list and
    /// predecessor is exact (fingers may still be catching up), at most `max_rounds`
    /// intervals. Returns the intervals it took, or `None`.
    pub fn heal(&mut self, max_rounds: u32) -> Option<u32> {
        for round in 0..=max_rounds {
            if self.is_ideal() {
                return Some(round);
            }
            if round < max_rounds {
                self.run_for(self.cfg.node.stabilize_interval);
            }
        }
        None
    }

    pub(super) fn run_events_until(&mut self, until: Time) {
        while let Some(Reverse((at, _, _))) = self.queue.peek() {
            if *at > until {
                break;
            }
            let Some(Reverse((at, _, slot))) = self.queue.pop() else {
                break;
            };
            self.now = at;
            let action = self.slots[slot as usize].take();
            self.free_slots.push(slot);
            if let Some(action) = action {
                self.step(action);
            }
        }
        self.now = self.now.max(until);
    }

    /// Run for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }

    pub(super) fn step(&mut self, action: Action) {
        match action {
            Action::Deliver { to, from, msg } => {
                if !self.hosts[self.nodes[to].host].alive {
                    self.traffic.dropped += 1;
                    return;
                }
                let from = self.nodes[from].node.me();
                self.nodes[to].node.handle(from, msg, self.now);
                self.sync(to);
            }
            Action::Timer { node } => {
                if self.nodes[node].timer != Some(self.now) {
                    return; // superseded
                }
                self.nodes[node].timer = None;
                if !self.hosts[self.nodes[node].host].alive {
                    return;
                }
                self.nodes[node].node.handle_timeout(self.now);
                self.sync(node);
            }
            Action::Join { node } => self.start_join(node),
            Action::RetryLookup {
                node,
                key,
                retries_left,
            } => {
                let from = self.nodes[node].node.me().id;
                if self.hosts[self.nodes[node].host].alive && self.nodes[node].node.is_member() {
                    self.lookup(from, key, retries_left);
                }
            }
        }
    }

    /// Move a node's outputs into the world: messages onto the network, events into the
    /// truth and the lookup record, its next deadline into the queue.
    pub(super) fn sync(&mut self, i: usize) {
        while let Some(t) = self.nodes[i].node.poll_transmit() {
            self.traffic.sent += 1;
            let Some(&to) = self.by_id.get(&t.to.id) else {
                self.traffic.dropped += 1;
                continue;
            };
            let from_group = self.hosts[self.nodes[i].host].group;
            let to_group = self.hosts[self.nodes[to].host].group;
            let lost = self.cfg.loss > 0.0 && self.rng.random_bool(self.cfg.loss.min(1.0));
            if lost || from_group != to_group || self.nodes[to].node.me().addr != t.to.addr {
                self.traffic.dropped += 1;
                continue;
            }
            let lo = self.cfg.latency_min.as_micros() as u64;
            let hi = self.cfg.latency_max.as_micros().max(lo as u128) as u64;
            let lat = if hi > lo {
                self.rng.random_range(lo..=hi)
            } else {
                lo
            };
            self.schedule(
                Time(self.now.0 + lat),
                Action::Deliver {
                    to,
                    from: i,
                    msg: t.message,
                },
            );
        }
        while let Some(e) = self.nodes[i].node.poll_event() {
            self.on_event(i, e);
        }
        let node = &self.nodes[i].node;
        if node.is_leaving() && !node.is_member() && self.members.remove(&node.me().id).is_some() {
            self.member_order = None;
        }
        if let Some(t) = self.nodes[i].node.poll_timeout() {
            let t = t.max(self.now);
            if self.nodes[i].timer.is_none_or(|cur| t < cur) {
                self.nodes[i].timer = Some(t);
                self.schedule(t, Action::Timer { node: i });
            }
        }
    }

    pub(super) fn on_event(&mut self, i: usize, e: Event) {
        match e {
            Event::Joined => {
                let id = self.nodes[i].node.me().id;
                self.members.insert(id, i);
                self.member_order = None;
            }
            Event::JoinFailed(_) => {
                let at = self.now + self.cfg.join_retry;
                self.schedule(at, Action::Join { node: i });
            }
            Event::Left => {
                let id = self.nodes[i].node.me().id;
                self.members.remove(&id);
                self.member_order = None;
                let h = self.nodes[i].host;
                if self.hosts[h]
                    .nodes
                    .iter()
                    .all(|n| self.nodes[*n].node.has_left())
                {
                    self.hosts[h].alive = false;
                }
            }
            Event::LookupDone { id, result } => {
                let Some(p) = self.nodes[i].lookups.remove(&id) else {
                    return;
                };
                let truth = self.responsible(p.key).map(|t| t.id);
                let (correct, hops) = match &result {
                    Ok(out) => (Some(out.owner.id) == truth, out.hops),
                    Err(_) => (false, 0),
                };
                let wrong = result.is_ok() && !correct;
                if !correct && p.retries_left > 0 {
                    let at = self.now + self.retry_delay;
                    self.schedule(
                        at,
                        Action::RetryLookup {
                            node: i,
                            key: p.key,
                            retries_left: p.retries_left - 1,
                        },
                    );
                    // Attempts are counted when the final one is recorded.
                    let c = self.retry_counts.entry((i, p.key)).or_insert((0, false));
                    c.0 += 1;
                    c.1 |= wrong;
                    return;
                }
                let (retried, wrong_before) =
                    self.retry_counts.remove(&(i, p.key)).unwrap_or((0, false));
                self.finished.push(LookupRecord {
                    key: p.key,
                    correct,
                    wrong: wrong || wrong_before,
                    hops,
                    attempts: 1 + retried,
                    latency: self.now - p.started,
                });
            }
            Event::PredecessorChanged { .. } | Event::SuccessorsChanged(_) => {}
        }
    }
}
