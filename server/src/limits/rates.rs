//! Request and byte rates, per connection and per user over all of their connections.
//!
//! - **Requests.** Every data frame takes a turn of its connection's request rate and,
//!   once the connection is logged in, of its user's. A frame over either is refused with
//!   `RateLimited` before it is decoded. The user's rate is what bounds one account: it
//!   does not grow with the account's connections, nor start afresh when one reconnects.
//!   A request for history pays one more turn for every [`MESSAGES_PER_TURN`] messages it
//!   asks for past the first ten ([`extra_turns`]): a page of 200 messages costs the server
//!   far more than a key lookup, and on the worker that encodes it, everyone else waits.
//! - **Bytes.** A connection, and a user over all of their connections, may send
//!   [`RateSettings::inbound_kib_per_sec`] KiB a second, in bursts of one largest frame.
//!   Past that the session waits before it reads on ([`ConnectionRates::pace`]), so TCP
//!   pushes back on the sender: a client that writes faster is read more slowly, never
//!   refused, and whatever it writes costs the server no more than the rate.
//!
//! The per-user state lives in keyed limiters (governor) that forget users whose budgets
//! are full again, so memory follows the users active in the last second or two.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};

use governor::clock::QuantaClock;
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use shared::protocol::{ClientMsg, MAX_FRAME_BYTES, MAX_HISTORY_PAGE};

/// The unit of the byte budgets.
const KIB: usize = 1024;

/// How many admissions pass between two sweeps of the per-user limiters.
const SWEEP_EVERY: u32 = 4096;

/// History messages one turn of the request rate pays for.
pub const MESSAGES_PER_TURN: u16 = 10;

/// The turns of the request rate `msg` takes beyond the one every frame takes: one per
/// [`MESSAGES_PER_TURN`] history messages asked for (up to [`MAX_HISTORY_PAGE`]), less
/// the first.
pub fn extra_turns(msg: &ClientMsg) -> u32 {
    let messages = match msg {
        ClientMsg::FetchHistory(fetch) => fetch.limit,
        ClientMsg::JoinRoom(join) => join.history_limit,
        _ => 0,
    };
    u32::from(messages.min(MAX_HISTORY_PAGE).div_ceil(MESSAGES_PER_TURN)).saturating_sub(1)
}

/// The rates, from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct RateSettings {
    /// Requests per second (sustained) a connection, and a user, may make; bursts of twice
    /// this pass.
    pub requests_per_sec: NonZeroU32,
    /// KiB per second (sustained) a connection, and a user, may send.
    pub inbound_kib_per_sec: NonZeroU32,
}

impl RateSettings {
    fn request_burst(self) -> NonZeroU32 {
        self.requests_per_sec
            .saturating_mul(NonZeroU32::MIN.saturating_add(1))
    }

    fn requests(self) -> Quota {
        Quota::per_second(self.requests_per_sec).allow_burst(self.request_burst())
    }

    fn bytes(self) -> Quota {
        // One largest frame must always fit in the bucket, or it could never be read.
        let burst = self.inbound_kib_per_sec.max(largest_frame_kib());
        Quota::per_second(self.inbound_kib_per_sec).allow_burst(burst)
    }
}

/// [`MAX_FRAME_BYTES`] in KiB, rounded up.
fn largest_frame_kib() -> NonZeroU32 {
    NonZeroU32::new(u32::try_from(MAX_FRAME_BYTES.div_ceil(KIB)).unwrap_or(u32::MAX))
        .unwrap_or(NonZeroU32::MIN)
}

/// The byte budget's cells a frame of `len` bytes takes (at least one, at most a largest
/// frame's, which every bucket holds).
fn cells(len: usize) -> NonZeroU32 {
    let kib = u32::try_from(len.div_ceil(KIB)).unwrap_or(u32::MAX);
    NonZeroU32::new(kib)
        .unwrap_or(NonZeroU32::MIN)
        .min(largest_frame_kib())
}

/// Every user's request and byte budgets; one per server.
#[derive(Debug)]
pub struct UserRates {
    requests: DefaultKeyedRateLimiter<String>,
    bytes: DefaultKeyedRateLimiter<String>,
    admissions: AtomicU32,
}

impl UserRates {
    /// Empty budgets at `settings`' rates.
    pub fn new(settings: RateSettings) -> Self {
        Self {
            requests: RateLimiter::keyed(settings.requests()),
            bytes: RateLimiter::keyed(settings.bytes()),
            admissions: AtomicU32::new(0),
        }
    }

    fn admit(&self, user: &str, turns: NonZeroU32) -> bool {
        if self
            .admissions
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(SWEEP_EVERY)
        {
            self.requests.retain_recent();
            self.bytes.retain_recent();
        }
        matches!(
            self.requests.check_key_n(&user.to_owned(), turns),
            Ok(Ok(()))
        )
    }

    /// Users with a budget in use (a user whose budgets are full again may be forgotten).
    pub fn tracked(&self) -> usize {
        self.requests.len().max(self.bytes.len())
    }
}

/// One connection's request and byte budgets.
#[derive(Debug)]
pub struct ConnectionRates {
    requests: DefaultDirectRateLimiter,
    bytes: DefaultDirectRateLimiter,
    /// The request rate's burst: no request may take more turns than this less one.
    request_burst: NonZeroU32,
}

impl ConnectionRates {
    /// Full budgets at `settings`' rates, timed by `clock`.
    pub fn new(settings: RateSettings, clock: &QuantaClock) -> Self {
        Self {
            requests: RateLimiter::direct_with_clock(settings.requests(), clock.clone()),
            bytes: RateLimiter::direct_with_clock(settings.bytes(), clock.clone()),
            request_burst: settings.request_burst(),
        }
    }

    /// Whether a frame may be handled: it takes a turn of the connection's request rate
    /// and, for a logged-in connection, of `user`'s.
    pub fn admit(&self, users: &UserRates, user: Option<&str>) -> bool {
        self.admit_n(users, user, NonZeroU32::MIN)
    }

    /// Whether a decoded request may go on: it takes its [`extra_turns`] (at most the
    /// burst less the frame's own turn, so that any request can pass a full budget).
    pub fn admit_request(&self, users: &UserRates, user: Option<&str>, msg: &ClientMsg) -> bool {
        let most = self.request_burst.get().saturating_sub(1);
        NonZeroU32::new(extra_turns(msg).min(most))
            .is_none_or(|turns| self.admit_n(users, user, turns))
    }

    fn admit_n(&self, users: &UserRates, user: Option<&str>, turns: NonZeroU32) -> bool {
        matches!(self.requests.check_n(turns), Ok(Ok(())))
            && user.is_none_or(|user| users.admit(user, turns))
    }

    /// Waits until a frame of `len` bytes fits the connection's byte budget and, for a
    /// logged-in connection, `user`'s; the caller reads nothing more meanwhile.
    pub async fn pace(&self, users: &UserRates, user: Option<&str>, len: usize) {
        let cells = cells(len);
        // `cells` never exceeds a bucket, so neither wait can fail.
        let _ = self.bytes.until_n_ready(cells).await;
        if let Some(user) = user {
            let _ = users.bytes.until_key_n_ready(&user.to_owned(), cells).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    fn settings(requests: u32, kib: u32) -> RateSettings {
        RateSettings {
            requests_per_sec: NonZeroU32::new(requests).expect("non-zero"),
            inbound_kib_per_sec: NonZeroU32::new(kib).expect("non-zero"),
        }
    }

    fn admitted(conn: &ConnectionRates, users: &UserRates, user: Option<&str>, n: u32) -> u32 {
        (0..n).map(|_| u32::from(conn.admit(users, user))).sum()
    }

    #[test]
    fn a_users_connections_share_one_request_budget() {
        let s = settings(5, 1024);
        let clock = QuantaClock::default();
        let users = UserRates::new(s);
        let (one, two) = (
            ConnectionRates::new(s, &clock),
            ConnectionRates::new(s, &clock),
        );
        // Burst of twice the rate: 10, whichever connection asks.
        let first = admitted(&one, &users, Some("mallory"), 8);
        let second = admitted(&two, &users, Some("mallory"), 8);
        assert_eq!(first, 8);
        assert!(second <= 3, "the second connection got {second}");
        // A fresh connection does not start afresh either.
        let three = ConnectionRates::new(s, &clock);
        assert!(admitted(&three, &users, Some("mallory"), 8) <= 1);
        // Another user (on a connection of her own) is untouched.
        let hers = ConnectionRates::new(s, &clock);
        assert_eq!(admitted(&hers, &users, Some("alice"), 8), 8);
        assert!(users.tracked() >= 2);
    }

    #[test]
    fn before_login_only_the_connection_counts() {
        let s = settings(5, 1024);
        let clock = QuantaClock::default();
        let users = UserRates::new(s);
        let conn = ConnectionRates::new(s, &clock);
        let got = admitted(&conn, &users, None, 20);
        assert!((10..=11).contains(&got), "{got}");
        assert_eq!(users.tracked(), 0);
    }

    #[test]
    fn frames_take_a_cell_per_started_kib_and_at_most_a_largest_frame() {
        assert_eq!(cells(0).get(), 1);
        assert_eq!(cells(1).get(), 1);
        assert_eq!(cells(KIB + 1).get(), 2);
        assert_eq!(cells(MAX_FRAME_BYTES), largest_frame_kib());
        assert_eq!(cells(usize::MAX), largest_frame_kib());
    }

    #[test]
    fn history_costs_a_turn_per_ten_messages() {
        use shared::protocol::{FetchHistory, JoinRoom, ListRooms};
        let room = shared::RoomName::parse("lobby").expect("valid");
        let fetch = |limit| {
            ClientMsg::FetchHistory(FetchHistory {
                room: room.clone(),
                before_seq: None,
                limit,
            })
        };
        assert_eq!(extra_turns(&fetch(0)), 0);
        assert_eq!(extra_turns(&fetch(10)), 0);
        assert_eq!(extra_turns(&fetch(11)), 1);
        assert_eq!(extra_turns(&fetch(200)), 19);
        assert_eq!(extra_turns(&fetch(u16::MAX)), 19, "charged as served");
        let join = ClientMsg::JoinRoom(JoinRoom {
            name: room.clone(),
            password: None,
            history_limit: 50,
        });
        assert_eq!(extra_turns(&join), 4);
        assert_eq!(extra_turns(&ClientMsg::ListRooms(ListRooms::default())), 0);

        // 5 a second, bursts of 10: one full page takes the whole burst but its own turn.
        let s = settings(5, 1024);
        let clock = QuantaClock::default();
        let users = UserRates::new(s);
        let conn = ConnectionRates::new(s, &clock);
        assert!(conn.admit(&users, Some("bob")));
        assert!(conn.admit_request(&users, Some("bob"), &fetch(200)));
        assert!(!conn.admit(&users, Some("bob")), "the page used the burst");
    }

    #[tokio::test]
    async fn bytes_past_the_burst_wait_for_the_rate() {
        // 1 MiB/s with a burst of one largest frame (4 MiB): 4 MiB pass at once, the next
        // 512 KiB wait about half a second.
        let s = settings(1000, 1024);
        let clock = QuantaClock::default();
        let users = UserRates::new(s);
        let conn = ConnectionRates::new(s, &clock);
        let start = Instant::now();
        conn.pace(&users, Some("alice"), MAX_FRAME_BYTES).await;
        conn.pace(&users, Some("alice"), 512 * KIB).await;
        assert!(
            start.elapsed() >= Duration::from_millis(400),
            "the next half MiB waited only {:?}",
            start.elapsed()
        );
    }

    #[tokio::test]
    async fn a_users_byte_budget_spans_connections() {
        let s = settings(1000, 1024);
        let clock = QuantaClock::default();
        let users = UserRates::new(s);
        let one = ConnectionRates::new(s, &clock);
        let two = ConnectionRates::new(s, &clock);
        let start = Instant::now();
        one.pace(&users, Some("mallory"), MAX_FRAME_BYTES).await;
        // The second connection's own bucket is full, but the user's is empty.
        two.pace(&users, Some("mallory"), 512 * KIB).await;
        assert!(start.elapsed() >= Duration::from_millis(400));
    }
}
