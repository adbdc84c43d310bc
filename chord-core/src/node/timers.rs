//! The node's periodic timers, one slot each (as quinn-proto's `TimerTable`): when
//! stabilize, fix_fingers and merge probing are due next. Request and lookup deadlines
//! live with the requests and lookups themselves.

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
