//! Registration quotas: accounts per client address and in total, per window.
//!
//! Both are governor rate limiters whose bucket holds the window's quota and refills
//! evenly over the window, so a quota of 5 per hour allows 5 at once and then one every 12
//! minutes. The address is checked first, so a client over its own quota cannot use up the
//! server's. Addresses whose buckets are full again are pruned once more than
//! [`PRUNE_ABOVE`] are remembered, so the memory follows the addresses that registered in
//! the last window.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::address::ClientAddress;
use crate::error::HandlerError;

/// Addresses remembered before the ones at full quota are pruned.
pub const PRUNE_ABOVE: usize = 4096;

/// The registration quotas.
#[derive(Debug)]
pub struct RegistrationQuota {
    per_address: DefaultKeyedRateLimiter<ClientAddress>,
    total: DefaultDirectRateLimiter,
    clock: DefaultClock,
}

/// `count` per `window`, all of them at once if need be.
fn quota(count: NonZeroU32, window: Duration) -> Quota {
    let period = (window / count.get()).max(Duration::from_nanos(1));
    Quota::with_period(period)
        .unwrap_or_else(|| Quota::per_second(count))
        .allow_burst(count)
}

impl RegistrationQuota {
    /// Quotas of `per_address` and `total` registrations per `window`.
    pub fn new(per_address: NonZeroU32, total: NonZeroU32, window: Duration) -> Self {
        Self {
            per_address: RateLimiter::keyed(quota(per_address, window)),
            total: RateLimiter::direct(quota(total, window)),
            clock: DefaultClock::default(),
        }
    }

    /// Takes one registration from `address`'s quota and the server's.
    ///
    /// # Errors
    /// [`HandlerError::Throttled`] with the time until one is free again.
    pub fn take(&self, address: ClientAddress) -> Result<(), HandlerError> {
        let refused = |not_until: governor::NotUntil<_>, what| HandlerError::Throttled {
            what,
            retry_after: not_until.wait_time_from(self.clock.now()),
        };
        let own = self.per_address.check_key(&address);
        if self.per_address.len() > PRUNE_ABOVE {
            self.per_address.retain_recent();
            self.per_address.shrink_to_fit();
        }
        own.map_err(|n| refused(n, "too many accounts registered from your address"))?;
        self.total
            .check()
            .map_err(|n| refused(n, "too many accounts registered on this server just now"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(v: u32) -> NonZeroU32 {
        NonZeroU32::new(v).expect("non-zero")
    }

    fn address(last: u8) -> ClientAddress {
        ClientAddress::of([10, 0, 0, last].into())
    }

    #[test]
    fn each_address_has_its_quota_and_all_share_the_total() {
        let quota = RegistrationQuota::new(n(2), n(3), Duration::from_secs(3600));
        assert!(quota.take(address(1)).is_ok());
        assert!(quota.take(address(1)).is_ok());
        match quota.take(address(1)) {
            Err(HandlerError::Throttled { retry_after, .. }) => {
                assert!(retry_after > Duration::from_secs(60), "{retry_after:?}");
            }
            other => panic!("the address's third is refused: {other:?}"),
        }
        assert!(
            quota.take(address(2)).is_ok(),
            "another address has its own"
        );
        assert!(
            matches!(quota.take(address(3)), Err(HandlerError::Throttled { .. })),
            "the total is used up"
        );
    }
}
