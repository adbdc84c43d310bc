//! The node's periodic timers, one slot each (as quinn-proto's `TimerTable`): when
//! stabilize, fix_fingers and merge probing are due next. The other deadlines are part of
//! a state and live with it, so that they cannot outlive it or disagree with it: each
//! request's and lookup's (with resends and hedges) in `pending` and `lookups`, the end of
//! the linger in `Phase::Lingering(until)`, the leave check's in `LeaveCheck`, and the
//! gate that lets seeds be probed only every `seed_probe_interval` inside merge probing
//! (`next_seed_probe`; it fires nothing by itself). `Node::poll_timeout` takes the
//! earliest of all of them.

use std::time::Duration;

use crate::Time;

/// A periodic task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Timer {
    Stabilize,
    FixFingers,
    Merge,
}

impl Timer {
    const ALL: [Timer; 3] = [Timer::Stabilize, Timer::FixFingers, Timer::Merge];
}

/// When each [`Timer`] is due (all at once when the node starts).
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct TimerTable {
    at: [Time; Timer::ALL.len()],
}

impl TimerTable {
    /// Make `timer` due at `at`.
    pub(super) fn set(&mut self, timer: Timer, at: Time) {
        self.at[timer as usize] = at;
    }

    /// When `timer` is due.
    pub(super) fn get(&self, timer: Timer) -> Time {
        self.at[timer as usize]
    }

    /// Is `timer` due at `now`? If so it is set again `every` from now.
    pub(super) fn fire(&mut self, timer: Timer, now: Time, every: Duration) -> bool {
        if now < self.get(timer) {
            return false;
        }
        self.set(timer, now + every);
        true
    }
}
