//! The rise/fall state machine of one health-checked backend, without I/O.

use serde::{Deserialize, Serialize};

/// What the checks say of a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Not checked yet.
    Unknown,
    Up,
    Down,
}

/// Consecutive-result thresholds, as HAProxy's `rise`/`fall` (and Envoy's healthy/unhealthy
/// thresholds): an up backend goes down after `fall` failures in a row, a down backend comes
/// up after `rise` successes in a row. A backend not checked yet has no history to protect, so
/// its first result decides at once (a new backend serves after one good check).
#[derive(Debug, Clone)]
pub struct Tracker {
    state: State,
    rise: u32,
    fall: u32,
    /// Results in a row that disagree with `state`.
    streak: u32,
}

impl Tracker {
    /// `rise` and `fall` are at least 1 (0 is taken as 1).
    pub fn new(rise: u32, fall: u32) -> Self {
        Tracker {
            state: State::Unknown,
            rise: rise.max(1),
            fall: fall.max(1),
            streak: 0,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// Feeds one check result; returns the new state when it changes.
    pub fn observe(&mut self, ok: bool) -> Option<State> {
        let (agrees, threshold, next) = match (self.state, ok) {
            (State::Unknown, true) => (false, 1, State::Up),
            (State::Unknown, false) => (false, 1, State::Down),
            (State::Up, true) | (State::Down, false) => (true, 0, self.state),
            (State::Up, false) => (false, self.fall, State::Down),
            (State::Down, true) => (false, self.rise, State::Up),
        };
        if agrees {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        if self.streak < threshold {
            return None;
        }
        self.streak = 0;
        self.state = next;
        Some(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(t: &mut Tracker, results: &str) -> Vec<Option<State>> {
        results.chars().map(|c| t.observe(c == '+')).collect()
    }

    #[test]
    fn first_result_decides() {
        let mut t = Tracker::new(3, 3);
        assert_eq!(t.state(), State::Unknown);
        assert_eq!(t.observe(true), Some(State::Up));
        let mut t = Tracker::new(3, 3);
        assert_eq!(t.observe(false), Some(State::Down));
    }

    #[test]
    fn fall_failures_in_a_row_take_it_down() {
        let mut t = Tracker::new(2, 3);
        t.observe(true);
        // Two failures, a success (resets), then three failures.
        assert_eq!(
            run(&mut t, "--+---"),
            [None, None, None, None, None, Some(State::Down)]
        );
        assert_eq!(t.state(), State::Down);
    }

    #[test]
    fn rise_successes_in_a_row_bring_it_up() {
        let mut t = Tracker::new(2, 1);
        t.observe(false);
        assert_eq!(run(&mut t, "+-++"), [None, None, None, Some(State::Up)]);
        assert_eq!(run(&mut t, "-"), [Some(State::Down)]);
    }

    #[test]
    fn zero_thresholds_act_as_one() {
        let mut t = Tracker::new(0, 0);
        t.observe(true);
        assert_eq!(t.observe(false), Some(State::Down));
        assert_eq!(t.observe(true), Some(State::Up));
    }
}
