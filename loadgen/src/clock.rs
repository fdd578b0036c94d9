//! One monotonic clock for the whole process.
//!
//! Send and receive timestamps are nanoseconds since a single [`Instant`] taken the first
//! time the clock is read, so a timestamp written by a sender task and read by a receiver
//! task in the same process compare directly, with no wall-clock skew.

use std::sync::LazyLock;
use std::time::Instant;

static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

/// Starts the clock (idempotent); call before the first timestamp so it is small.
pub fn start() {
    LazyLock::force(&EPOCH);
}

/// Nanoseconds since the process clock started.
pub fn now_nanos() -> u64 {
    u64::try_from(EPOCH.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// The instant `nanos` after the clock started.
pub fn instant_at(nanos: u64) -> Instant {
    *EPOCH + std::time::Duration::from_nanos(nanos)
}
