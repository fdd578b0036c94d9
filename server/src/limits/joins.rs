//! Growing delays after failed room joins.
//!
//! A join that fails for want of the right password (`WrongPassword`, or
//! `RoomUnavailable`, which a missing room answers too) is a strike against the (user,
//! room) pair and against the user. Past a few free strikes, each further one blocks that
//! pair, or the user, for a delay that doubles with every strike up to a ceiling; a join
//! while blocked is refused at once, with the time left, before anything is looked up or
//! hashed. The first is what stops guessing one room's password, the second guessing
//! across many rooms. A successful join clears its pair's strikes; a user's strikes are
//! forgotten once they have made none for [`JoinBackoff::forget_after`] (clearing them on
//! any success would let a guesser reset them with a room of their own).
//!
//! Rooms are keyed by name, whether they exist or not, so the throttle behaves the same
//! for a hidden room as for a missing one. Memory is bounded: idle entries are pruned, and
//! past [`MAX_ENTRIES`] the ones that block nothing are dropped first.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use shared::{RoomName, Username};

use crate::error::HandlerError;

/// The most (user, room) or user entries remembered; past it idle and non-blocking ones
/// are dropped.
pub const MAX_ENTRIES: usize = 65_536;

/// How strikes turn into delays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinBackoff {
    /// Failures on one room before its delays start.
    pub free_per_room: u32,
    /// Failures across all rooms before the user's delays start.
    pub free_per_user: u32,
    /// The first delay; each further failure doubles it.
    pub first_delay: Duration,
    /// The longest delay.
    pub max_delay: Duration,
    /// Strikes are forgotten after this long without a new one.
    pub forget_after: Duration,
}

impl Default for JoinBackoff {
    /// 3 free failures per room and 10 per user, then 1 s, 2 s, 4 s … up to 5 minutes;
    /// forgotten after 30 idle minutes.
    fn default() -> Self {
        Self {
            free_per_room: 3,
            free_per_user: 10,
            first_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(300),
            forget_after: Duration::from_secs(1800),
        }
    }
}

/// One key's failures.
#[derive(Debug, Clone, Copy)]
struct Strikes {
    count: u32,
    last: Instant,
    blocked_until: Instant,
}

/// Strike counts for one kind of key.
#[derive(Debug)]
struct Ledger<K> {
    entries: HashMap<K, Strikes>,
}

impl<K: Hash + Eq> Ledger<K> {
    fn new() -> Self {
        Self {
            entries: HashMap::new(),
        }
    }

    /// How long `key` is still blocked, if it is.
    fn blocked(&self, key: &K, now: Instant) -> Option<Duration> {
        self.entries
            .get(key)
            .map(|s| s.blocked_until.saturating_duration_since(now))
            .filter(|left| !left.is_zero())
    }

    /// Records a failure; past `free` of them the key is blocked for a doubling delay.
    fn strike(&mut self, key: K, free: u32, rules: &JoinBackoff, now: Instant) {
        if self.entries.len() >= MAX_ENTRIES {
            self.prune(rules, now);
        }
        let strikes = self.entries.entry(key).or_insert(Strikes {
            count: 0,
            last: now,
            blocked_until: now,
        });
        if now.saturating_duration_since(strikes.last) > rules.forget_after {
            strikes.count = 0;
        }
        strikes.count = strikes.count.saturating_add(1);
        strikes.last = now;
        if let Some(over) = strikes.count.checked_sub(free).filter(|&o| o > 0) {
            let doubling = 1u32.checked_shl(over - 1).unwrap_or(u32::MAX);
            let delay = rules
                .first_delay
                .checked_mul(doubling)
                .unwrap_or(rules.max_delay)
                .min(rules.max_delay);
            strikes.blocked_until = now + delay;
        }
    }

    /// Drops idle entries, and if that is not enough, every entry that blocks nothing now.
    fn prune(&mut self, rules: &JoinBackoff, now: Instant) {
        self.entries
            .retain(|_, s| now.saturating_duration_since(s.last) <= rules.forget_after);
        if self.entries.len() >= MAX_ENTRIES {
            self.entries.retain(|_, s| s.blocked_until > now);
        }
    }
}

/// Both ledgers behind one lock.
#[derive(Debug)]
struct Ledgers {
    per_room: Ledger<(String, String)>,
    per_user: Ledger<String>,
}

/// The failed-join throttle; shared by every connection.
#[derive(Debug)]
pub struct JoinThrottle {
    rules: JoinBackoff,
    /// A std mutex: nothing is awaited while it is held.
    ledgers: Mutex<Ledgers>,
}

impl JoinThrottle {
    /// A throttle with these rules.
    pub fn new(rules: JoinBackoff) -> Self {
        Self {
            rules,
            ledgers: Mutex::new(Ledgers {
                per_room: Ledger::new(),
                per_user: Ledger::new(),
            }),
        }
    }

    fn keys(user: &Username, room: &RoomName) -> (String, String) {
        (user.canonical(), room.canonical())
    }

    /// Whether `user` may try to join `room` now.
    ///
    /// # Errors
    /// [`HandlerError::Throttled`] with the time left while the pair or the user is
    /// blocked.
    pub fn check(&self, user: &Username, room: &RoomName) -> Result<(), HandlerError> {
        let now = Instant::now();
        let ledgers = self.ledgers.lock().unwrap_or_else(PoisonError::into_inner);
        let pair = Self::keys(user, room);
        let left = ledgers
            .per_room
            .blocked(&pair, now)
            .max(ledgers.per_user.blocked(&pair.0, now));
        match left {
            Some(retry_after) => Err(HandlerError::Throttled {
                what: "too many failed attempts to join",
                retry_after,
            }),
            None => Ok(()),
        }
    }

    /// Records a join refused for a wrong password or a missing room.
    pub fn failed(&self, user: &Username, room: &RoomName) {
        let now = Instant::now();
        let mut ledgers = self.ledgers.lock().unwrap_or_else(PoisonError::into_inner);
        let pair = Self::keys(user, room);
        let user_key = pair.0.clone();
        let rules = &self.rules;
        ledgers
            .per_room
            .strike(pair, rules.free_per_room, rules, now);
        ledgers
            .per_user
            .strike(user_key, rules.free_per_user, rules, now);
    }

    /// Records a successful join: the pair's strikes are cleared.
    pub fn succeeded(&self, user: &Username, room: &RoomName) {
        let mut ledgers = self.ledgers.lock().unwrap_or_else(PoisonError::into_inner);
        ledgers.per_room.entries.remove(&Self::keys(user, room));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(s: &str) -> Username {
        Username::parse(s).expect("username")
    }

    fn room(s: &str) -> RoomName {
        RoomName::parse(s).expect("room name")
    }

    fn rules() -> JoinBackoff {
        JoinBackoff {
            free_per_room: 2,
            free_per_user: 5,
            first_delay: Duration::from_secs(10),
            max_delay: Duration::from_secs(35),
            forget_after: Duration::from_secs(3600),
        }
    }

    fn retry_after(r: Result<(), HandlerError>) -> Duration {
        match r {
            Err(HandlerError::Throttled { retry_after, .. }) => retry_after,
            other => panic!("expected a throttle, got {other:?}"),
        }
    }

    #[test]
    fn delays_start_after_the_free_failures_and_double_up_to_the_ceiling() {
        let mut ledger = Ledger::new();
        let now = Instant::now();
        let r = rules();
        let mut delays = Vec::new();
        for _ in 0..6 {
            ledger.strike("k", r.free_per_room, &r, now);
            delays.push(ledger.blocked(&"k", now).unwrap_or_default().as_secs());
        }
        assert_eq!(delays, [0, 0, 10, 20, 35, 35]);
    }

    #[test]
    fn a_blocked_pair_is_refused_and_success_clears_it() {
        let throttle = JoinThrottle::new(rules());
        let (alice, secret, other) = (user("alice"), room("secret"), room("other"));
        for _ in 0..3 {
            throttle.check(&alice, &secret).expect("not blocked yet");
            throttle.failed(&alice, &secret);
        }
        let left = retry_after(throttle.check(&alice, &secret));
        assert!(left > Duration::from_secs(5) && left <= Duration::from_secs(10));
        assert!(
            throttle.check(&alice, &other).is_ok(),
            "other rooms are open"
        );
        assert!(
            throttle.check(&user("bob"), &secret).is_ok(),
            "other users too"
        );
        throttle.succeeded(&alice, &secret);
        assert!(throttle.check(&alice, &secret).is_ok());
    }

    #[test]
    fn failures_across_rooms_block_the_user() {
        let throttle = JoinThrottle::new(rules());
        let alice = user("alice");
        for i in 0..6 {
            throttle.failed(&alice, &room(&format!("guess{i}")));
        }
        retry_after(throttle.check(&alice, &room("fresh")));
    }

    #[test]
    fn old_strikes_are_forgotten_and_memory_is_bounded() {
        let r = rules();
        let mut ledger = Ledger::new();
        let start = Instant::now();
        ledger.strike(0usize, r.free_per_room, &r, start);
        ledger.strike(0usize, r.free_per_room, &r, start);
        let later = start + r.forget_after + Duration::from_secs(1);
        ledger.strike(0usize, r.free_per_room, &r, later);
        assert!(
            ledger.blocked(&0, later).is_none(),
            "the count started over"
        );
        for k in 1..=MAX_ENTRIES {
            ledger.strike(k, r.free_per_room, &r, later);
        }
        assert!(ledger.entries.len() <= MAX_ENTRIES);
    }
}
